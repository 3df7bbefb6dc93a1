"""Content rules driving the switch end to end: URL and XML rules decide the server, and a
rule file hot-reloaded into the running controller (`p4cs rules load`) changes the decisions
of new connections; an invalid file is refused and the old rules stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

RULES_A = """\
R1: if (prefix(url, "/~lcs1/")) { routeTo(ace); }
R2: if (method == "POST" && xml.purchase:1.item:2.subTotal >= 50000) { routeTo(ace); }
R3: if (method == "POST") { routeTo(wait); }
R4: if (prefix(url, "/")) { routeTo(www); }
"""
RULES_B = """\
R1: if (prefix(url, "/~lcs1/")) { routeTo(wait); }
R4: if (prefix(url, "/")) { routeTo(ace); }
"""


def order(subtotal: int) -> str:
    return ("<?xml version='1.0'?><purchase><customerName>CCL</customerName>"
            "<item><subTotal>10</subTotal></item>"
            f"<item><subTotal>{subtotal}</subTotal></item>"
            f"<totalAmount>{subtotal + 10}</totalAmount></purchase>")


def server_of(lab, path: str, *args: str) -> str:
    r = lab.curl(path, args=["-s", "-o", "/dev/null", "-D", "-", *args])
    for line in r.stdout.splitlines():
        if line.lower().startswith("x-server:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no X-Server in the answer to {path}: rc={r.returncode} {r.stdout!r} {r.stderr!r}")


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    (d / "a.rules").write_text(RULES_A)
    services = [{"name": "web", "port": 80, "rules": str(d / "a.rules"), "default_group": "all"}]
    lab = make_lab("r", services=services)
    lab.rules_dir = d
    return lab


def test_url_and_xml_rules_pick_the_server(lab):
    assert server_of(lab, "/~lcs1/") == "ace"
    assert server_of(lab, "/other") == "www"
    # XML web switching: the second item's subTotal decides (nginx answers 405 to a POST on a
    # static file, with the X-Server header of the server that got it).
    big = ["-X", "POST", "-H", "Content-Type: text/xml", "--data-binary", order(60000)]
    small = ["-X", "POST", "-H", "Content-Type: TEXT/XML", "--data-binary", order(2000)]
    assert server_of(lab, "/purchase", *big) == "ace"
    assert server_of(lab, "/purchase", *small) == "wait"


def rules_load(lab, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "p4cs.cli", "rules", "load", str(path),
                           "--socket", lab.control_socket], capture_output=True, text=True, timeout=60)


def test_hot_reload(lab):
    bad = lab.rules_dir / "bad.rules"
    bad.write_text('R1: if (prefix(url, "/") { routeTo(ace); }\n')       # missing ')'
    r = rules_load(lab, bad)
    assert r.returncode != 0
    assert "bad.rules:1:" in (r.stdout + r.stderr)
    assert server_of(lab, "/~lcs1/") == "ace"          # the old rules stay

    good = lab.rules_dir / "b.rules"
    good.write_text(RULES_B)
    r = rules_load(lab, good)
    assert r.returncode == 0, r.stdout + r.stderr
    assert server_of(lab, "/~lcs1/") == "wait"
    assert server_of(lab, "/other") == "ace"
