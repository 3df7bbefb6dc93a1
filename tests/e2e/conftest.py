"""End-to-end tests of the content switch: real TCP stacks in network namespaces, nginx and
the lab's Python servers behind the switch, curl and Python socket clients in front, the
switch (``p4cs switch``) and the controller with the CS processor in between.

Every test runs once per target: the embedded DPDK target (``[dpdk]``, the controller's
packet I/O on the switch's direct packet channel) and BMv2 (``[bmv2]``, ``simple_switch_grpc``
with the committed ``p4src/build/bmv2`` pipeline, packet I/O on the P4Runtime stream; skipped
with the reason where it is not installed). Modules that set ``P4RUNTIME_PACKET_IO = True``
also run on the DPDK target with the controller's packet I/O on the P4Runtime stream
(``[dpdk-p4runtime]``). Each test module builds one :class:`p4cs.lab.stack.Lab` per variant
(module-scoped fixture ``make_lab``) with a prefix unique to this process and variant; the
namespaces are removed when the module's tests on that variant end, whatever happened, and
their removal is checked.
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


def lab_prefix(letter: str, variant: str = "dpdk") -> str:
    """``e2e<pid % 1000><letter>``, ``b`` appended on BMv2, ``p`` with the packet I/O on the
    P4Runtime stream: at most 10 characters, unique to this run, module and variant."""
    return f"e2e{os.getpid() % 1000}{letter}" + {"bmv2": "b", "dpdk-p4runtime": "p",
                                                 "bmv2-p4runtime": "q"}.get(variant, "")


def pytest_generate_tests(metafunc):
    """The variants of a module: ``dpdk`` and ``bmv2``, plus ``dpdk-p4runtime`` and
    ``bmv2-p4runtime`` in modules with ``P4RUNTIME_PACKET_IO = True``."""
    if "variant" in metafunc.fixturenames:
        stream = getattr(metafunc.module, "P4RUNTIME_PACKET_IO", False)
        bmv2 = ["bmv2", "bmv2-p4runtime"] if stream else ["bmv2"]
        metafunc.parametrize("variant", ["dpdk", *(["dpdk-p4runtime"] if stream else []),
                                         *(pytest.param(v, marks=pytest.mark.bmv2) for v in bmv2)],
                             scope="module")


@pytest.fixture(scope="module")
def target(variant) -> str:
    """The P4 target the module's Lab runs: every end-to-end test runs on both."""
    return variant.split("-")[0]


@pytest.fixture(scope="module")
def packet_io(variant) -> str:
    """The controller's packet I/O: ``direct`` (the DPDK daemon's channel; on BMv2 a packet
    port cabled to the CPU port) or ``p4runtime``."""
    return "p4runtime" if variant.endswith("-p4runtime") else "direct"


@pytest.fixture(scope="module")
def make_lab(request, variant, target, packet_io) -> Iterator[Callable[..., object]]:
    """``make_lab(letter, **lab_kwargs)`` starts a Lab of ``variant`` for the module; torn down
    at its end."""
    reason = _unavailable(target)
    if reason:
        pytest.skip(reason)
    from p4cs.lab.stack import Lab

    labs: list = []

    def make(letter: str, **kw):
        prefix = lab_prefix(letter, variant)
        cleanup_prefix(prefix)          # leftovers of a crashed run with the same pid
        lab = Lab(prefix, target=target, packet_io=packet_io, **kw)
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
