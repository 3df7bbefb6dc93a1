"""End-to-end tests of the content switch: real TCP stacks in network namespaces, nginx and
the lab's Python servers behind the switch, curl and Python socket clients in front, the
embedded DPDK target (``p4cs switch``) and the controller with the CS processor in between.

Each test module builds one :class:`p4cs.lab.stack.Lab` (module-scoped fixture ``make_lab``) with
a prefix unique to this process; the namespaces are removed when the module ends, whatever
happened, and their removal is checked.
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


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests build network namespaces: run as root"
    daemon = paths.daemon_binary()
    if not (os.path.isfile(daemon) or shutil.which(daemon)):
        return f"the data-plane daemon {daemon} is not built (make setup)"
    for tool in ("ip", "ethtool", "nginx", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    return None


def lab_prefix(letter: str) -> str:
    """``e2e<pid % 1000><letter>``: at most 10 characters, unique to this run and module."""
    return f"e2e{os.getpid() % 1000}{letter}"


@pytest.fixture(scope="module")
def make_lab(request) -> Iterator[Callable[..., object]]:
    """``make_lab(letter, **lab_kwargs)`` starts a Lab for the module; torn down at its end."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    from p4cs.lab.stack import Lab

    labs: list = []

    def make(letter: str, **kw):
        prefix = lab_prefix(letter)
        cleanup_prefix(prefix)          # leftovers of a crashed run with the same pid
        lab = Lab(prefix, **kw)
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
