"""Mail services through the switch: the switch greets the client itself, decides on the
envelope (smtp.to, smtp.from) or the user (pop3.user, imap.user), replays the client's
commands to the chosen server and splices.  Real servers (aiosmtpd and the lab's POP3 and
IMAP servers), real clients (smtplib, poplib, imaplib); messages are checked byte for byte
(sha256) where they land and where they are read."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

pytest.importorskip("aiosmtpd")

CLIENTS = Path(__file__).resolve().parent / "mailclients.py"

SMTP_RULES = """\
spam: if (smtp.from == "spam@bad.example") { reject; }
boss: if (smtp.from == "boss@corp.example") { routeTo(www_smtp); }
to_a: if (suffix(smtp.to, "@a.example")) { routeTo(ace_smtp); }
to_b: if (suffix(smtp.to, "@b.example")) { routeTo(wait_smtp); }
"""


def mail_groups(names) -> dict:
    groups = {}
    for proto, port in (("smtp", 25), ("pop3", 110), ("imap", 143)):
        for n, ip in names:
            groups[f"{n}_{proto}"] = {"scheduler": "rr", "servers": [{"address": ip, "port": port}]}
    return groups


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("mail")
    (d / "smtp.rules").write_text(SMTP_RULES)
    services = [{"name": "mx.p4cs.test", "port": 25, "protocol": "smtp",
                 "rules": str(d / "smtp.rules")}]
    ips = [("ace", "10.0.2.1"), ("wait", "10.0.2.2"), ("www", "10.0.2.3")]
    lab = make_lab("m", services=services, groups=mail_groups(ips), mail=True)
    assert [h.ip for h in lab.servers] == [ip for _, ip in ips]
    return lab


def client(lab, cmd: str, *args: str) -> dict:
    r = lab.client_exec([sys.executable, str(CLIENTS), cmd, "--vip", lab.vip, *args],
                        timeout=120)
    assert r.returncode == 0, f"{cmd} {args} failed ({r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def delivered(lab, server: str, user: str) -> list[str]:
    box = lab.mail_spool(server) / user
    return [hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(box.glob("*.eml"), key=lambda p: int(p.stem))]


def test_smtp_routed_by_recipient_and_sender_byte_exact(lab):
    a = client(lab, "smtp", "--to", "carol@a.example", "--size", "300000", "--seed", "1")
    assert a["ok"], a
    assert a["ehlo"].startswith("mx.p4cs.test") and a["features"] == ["8bitmime", "size"]
    b = client(lab, "smtp", "--to", "dave@b.example", "--size", "5000", "--seed", "2")
    assert b["ok"], b
    c = client(lab, "smtp", "--from", "boss@corp.example", "--to", "erin@a.example",
               "--seed", "3")
    assert c["ok"], c
    assert delivered(lab, "ace", "carol") == [a["sha256"]]
    assert delivered(lab, "wait", "dave") == [b["sha256"]]
    assert delivered(lab, "www", "erin") == [c["sha256"]]      # smtp.from rule first
    assert delivered(lab, "ace", "erin") == []


def test_smtp_rejected_sender_gets_550(lab):
    r = client(lab, "smtp", "--from", "spam@bad.example", "--to", "carol@a.example")
    assert not r["ok"]
    assert r["refused"]["carol@a.example"][0] == 550
    # the switch still serves the next client
    ok = client(lab, "smtp", "--to", "frank@b.example", "--seed", "4")
    assert ok["ok"] and delivered(lab, "wait", "frank") == [ok["sha256"]]
