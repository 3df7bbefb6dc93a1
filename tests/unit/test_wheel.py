"""The wheel is a complete p4cs: installed (not editable) into a fresh virtualenv and run from a
directory outside the source tree, it finds the P4 program, the compiled pipelines and, when the
daemon was built before the wheel, the data-plane daemon and its DPDK headers inside the
installed package, never in the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "examples" / "lcs.rules"
REQUEST = REPO / "tests" / "rules" / "data" / "lcs1.http"

PROBE = """
import json
import os
import p4cs
from p4cs import paths
import p4cs.switch.dpdk.server  # the P4Runtime server and everything it imports
from p4cs.controller.cli import default_artifacts

headers = paths.dpdk_headers()
print(json.dumps({
    "package": p4cs.__file__,
    "checkout": str(paths.checkout()),
    "files": [str(p) for p in (paths.p4src(), paths.spec(), paths.p4info("dpdk"),
                               paths.p4info("bmv2"), paths.bmv2_json(), *default_artifacts("dpdk"),
                               *default_artifacts("bmv2"))],
    "daemon": paths.daemon_binary(),
    "daemon_runs": os.access(paths.daemon_binary(), os.X_OK),
    "headers": str(headers) if headers else None,
}))
"""


def _run(argv: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{argv} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv python, site-packages of the venv, clean environment, outside directory)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "P4CS_SWXD", "P4CS_DPDK_HEADERS", "VIRTUAL_ENV")}
    # setuptools' build and egg-info directories go to tmp, so the source tree stays untouched
    extra = tmp / "build.cfg"
    extra.write_text(f"[build]\nbuild_base = {tmp / 'build'}\n[egg_info]\negg_base = {tmp}\n")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", REPO],
         tmp, dict(env, DIST_EXTRA_CONFIG=str(extra)))
    (wheel,) = (tmp / "dist").glob("p4cs-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "-q", wheel], tmp, env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp, env).stdout.strip())
    # the dependencies come from this interpreter's environment (no network), after the wheel's p4cs
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_p4cs_test_dependencies.pth").write_text("".join(f"{d}\n" for d in deps))
    outside = tmp / "elsewhere"
    outside.mkdir()
    return wheel, python, site, env, outside


def test_wheel_holds_only_the_p4cs_package(installed):
    wheel = installed[0]
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"p4cs", *(t for t in tops if t.startswith("p4cs-") and t.endswith(".dist-info"))}
    for f in ("p4cs/p4src/include/arch.p4", "p4cs/p4src/pna/p4cs.p4", "p4cs/p4src/v1model/p4cs.p4",
              "p4cs/p4src/build/dpdk/p4cs.spec", "p4cs/p4src/build/dpdk/p4cs.p4info.txtpb",
              "p4cs/p4src/build/dpdk/context.json", "p4cs/p4src/build/bmv2/p4cs.json",
              "p4cs/p4src/build/bmv2/p4cs.p4info.txtpb", "p4cs/rules/grammar.lark"):
        assert f in names


def test_installed_package_finds_its_files_inside_itself(installed):
    wheel, python, site, env, outside = installed
    got = json.loads(_run([python, "-c", PROBE], outside, env).stdout)
    assert Path(got["package"]).parent == site / "p4cs"
    assert got["checkout"] == "None"
    for f in got["files"]:
        assert Path(f).is_relative_to(site / "p4cs"), f
        assert Path(f).exists(), f
    shipped = "p4cs/dataplane/p4cs-swxd" in zipfile.ZipFile(wheel).namelist()
    if shipped:
        assert got["daemon"] == str(site / "p4cs" / "dataplane" / "p4cs-swxd")
        assert got["daemon_runs"]
        assert got["headers"] == str(site / "p4cs" / "dataplane" / "dpdk-headers")
    else:
        assert got["daemon"] == "p4cs-swxd"  # left to PATH, not taken from the source tree
        assert got["headers"] is None


def test_installed_cli_runs_outside_the_source_tree(installed):
    _, python, _, env, outside = installed
    p4cs = python.with_name("p4cs")
    res = _run([p4cs, "rules", "eval", "--json", RULES, REQUEST], outside, env)
    decision = json.loads(res.stdout)
    assert (decision["rule"], decision["target"]) == ("R10", "ace")
    assert "--iface" in _run([p4cs, "switch", "--help"], outside, env).stdout
    # the P4 sources ship with the compiled pipelines: the installed copy checks as current
    assert _run([p4cs, "generate", "--check"], outside, env).stdout.split("\n")[:2] == [
        "dpdk: up to date", "bmv2: up to date"]
