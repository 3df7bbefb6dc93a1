"""Lab(package=...): the Lab's processes run another p4cs package (a before/after benchmark,
``bench/http_vs_haproxy.py --before``) with this checkout's daemon unless one is named."""

from __future__ import annotations

import shutil
import sys

from p4cs import paths
from p4cs.lab.stack import Lab

PROBE = ("import os, p4cs; print(p4cs.__file__); print(os.environ.get('P4CS_SWXD')); "
         "print(os.environ['PYTHONPATH'])")


def _run(lab: Lab) -> list[str]:
    try:
        p = lab._spawn("probe", [sys.executable, "-c", PROBE])     # noqa: SLF001
        assert p.wait(timeout=60) == 0
        return (lab.workdir / "probe.log").read_text().splitlines()
    finally:
        shutil.rmtree(lab.workdir, ignore_errors=True)


def test_the_lab_runs_the_package_it_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("P4CS_SWXD", raising=False)
    pkg = tmp_path / "host" / "p4cs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    got = _run(Lab("tpkga", package=tmp_path / "host"))
    assert got[0] == str(pkg / "__init__.py")
    assert got[1] == paths.daemon_binary()          # this checkout's daemon
    assert got[2].split(":")[0] == str(tmp_path / "host")


def test_a_named_daemon_is_kept_and_without_a_package_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("P4CS_SWXD", "/opt/other/p4cs-swxd")
    pkg = tmp_path / "host" / "p4cs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert _run(Lab("tpkgb", package=tmp_path / "host"))[1] == "/opt/other/p4cs-swxd"
    monkeypatch.delenv("P4CS_SWXD")
    got = _run(Lab("tpkgc"))
    assert got[0] == str(paths.PACKAGE / "__init__.py") and got[1] == "None"
