"""pytest entry of the PTF conformance suite: one run of every PTF test per target.

* DPDK (the embedded target, `p4cs switch`): runs wherever the daemon and the DPDK artifacts
  are built (CI); skipped, with the reason, only when they are not (or without root).
* BMv2 (`simple_switch_grpc` + the v1model program compiled with p4c): skipped, with the
  reason, when either is not installed.

The per-test PTF results are written to the terminal; the pytest test fails if any PTF test
failed, with every failure's traceback and the tail of the target's log in the message.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _load_runner():
    spec = importlib.util.spec_from_file_location("p4cs_ptf_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


run = _load_runner()


def _report(request, text: str) -> None:
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        for line in text.splitlines():
            tr.write_line(line)
    else:
        print(text)


def _run_target(request, tmp_path, target: str) -> None:
    why = run.unavailable(target)
    if why:
        pytest.skip(f"PTF on {target}: {why}")
    tests = os.environ.get("P4CS_PTF_TESTS", "").split()
    res = run.run_suite(target, tests, logdir=tmp_path / f"ptf-{target}")
    if res.skipped:
        pytest.skip(f"PTF on {target}: {res.skipped}")
    _report(request, res.summary() + f"\n(logs: {res.rundir})")
    if res.returncode != 0:
        parts = [res.summary()]
        for name, text in res.details.items():
            parts.append(f"--- {name} ---\n{text}")
        if not res.results:
            parts.append("--- PTF output ---\n" + res.output[-4000:])
        if res.target_log:
            parts.append("--- target log (tail) ---\n" + res.target_log)
        pytest.fail("\n".join(parts), pytrace=False)


@pytest.mark.root
@pytest.mark.dpdk
@pytest.mark.slow
def test_ptf_dpdk(request, tmp_path):
    _run_target(request, tmp_path, "dpdk")


@pytest.mark.root
@pytest.mark.bmv2
@pytest.mark.slow
def test_ptf_bmv2(request, tmp_path):
    _run_target(request, tmp_path, "bmv2")
