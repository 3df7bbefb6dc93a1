"""End-to-end tests of the content switch: real TCP stacks in network namespaces, nginx and
the lab's Python servers behind the switch, curl and Python socket clients in front, the
switch (``p4cs switch``) and the controller with the CS processor in between.

Every test runs once per target: the embedded DPDK target (``[dpdk]``) and BMv2
(``[bmv2]``, ``simple_switch_grpc`` with the committed ``p4src/build/bmv2`` pipeline; skipped
with the reason where it is not installed). Each test module builds one
:class:`p4cs.lab.stack.Lab` per target (module-scoped fixture ``make_lab``) with a prefix unique
to this process and target; the namespaces are removed when the module's tests on that target
end, whatever happened, and their removal is checked.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HOST = Path(__file__).resolve().parents[2] / "host"
if str(HOST) not in sys.path:
    sys.path.insert(0, str(HOST))

from p4cs import paths  # noqa: E402
from p4cs.lab.netns import cleanup_prefix, prefix_namespaces  # noqa: E402


def _unavailable(target: str) -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests build network namespaces: run as root"
    if target == "dpdk":
        daemon = paths.daemon_binary()
        if not (os.path.isfile(daemon) or shutil.which(daemon)):
            return f"the data-plane daemon {daemon} is not built (make setup)"
    else:
        if shutil.which("simple_switch_grpc") is None:
            return "BMv2 simple_switch_grpc is not on PATH (docs/topologies.md: BMv2 from source)"
        if not paths.bmv2_json().is_file():
            return f"{paths.bmv2_json()} is missing (p4cs generate --target bmv2 --compile)"
    for tool in ("ip", "ethtool", "nginx", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    return None


def lab_prefix(letter: str, target: str = "dpdk") -> str:
    """``e2e<pid % 1000><letter>``, ``b`` appended on BMv2: at most 10 characters, unique to
    this run, module and target."""
    return f"e2e{os.getpid() % 1000}{letter}" + ("b" if target == "bmv2" else "")


@pytest.fixture(scope="module", params=["dpdk", pytest.param("bmv2", marks=pytest.mark.bmv2)])
def target(request) -> str:
    """The P4 target the module's Lab runs: every end-to-end test runs on both."""
    return request.param


@pytest.fixture(scope="module")
def make_lab(request, target) -> Iterator[Callable[..., object]]:
    """``make_lab(letter, **lab_kwargs)`` starts a Lab on ``target`` for the module; torn down
    at its end."""
    reason = _unavailable(target)
    if reason:
        pytest.skip(reason)
    from p4cs.lab.stack import Lab

    labs: list = []

    def make(letter: str, **kw):
        prefix = lab_prefix(letter, target)
        cleanup_prefix(prefix)          # leftovers of a crashed run with the same pid
        lab = Lab(prefix, target=target, **kw)
        labs.append(lab)
        lab.__enter__()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            try:
                failed = getattr(request.node, "e2e_failed", False)
                if failed:
                    lab.keep_workdir = True
                    sys.stderr.write(f"\n[e2e] logs of {lab.prefix} kept in {lab.workdir}\n")
                lab.stop()
            finally:
                cleanup_prefix(lab.prefix)
                assert not prefix_namespaces(lab.prefix), f"namespaces of {lab.prefix} left behind"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember in the module node that one of its tests failed (the logs are then kept)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "e2e" in str(item.fspath):
        mod = item.getparent(pytest.Module)
        if mod is not None:
            mod.e2e_failed = True
