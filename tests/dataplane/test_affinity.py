"""The daemon's thread keeps the CPU affinity it was started with (EAL pins its main lcore to
one CPU: the thread would wait for that CPU while others are idle); EAL arguments given by
the caller keep EAL's placement."""
from __future__ import annotations

import asyncio
import os

import pytest

from conftest import CPU_PORT, FLOW_SPEC


def affinity_of(swxd_binary, workdir, eal: str | None) -> set[int]:
    from p4cs.switch.dpdk.daemon import SwxDaemon

    async def go():
        d = SwxDaemon(FLOW_SPEC, {0: "sink", 1: "sink"}, CPU_PORT, binary=str(swxd_binary),
                      workdir=workdir, eal=eal)
        await d.start()
        try:
            return os.sched_getaffinity(d.proc.pid)
        finally:
            await d.stop()
    return asyncio.run(go())


@pytest.mark.root
@pytest.mark.dpdk
def test_affinity_as_started_unless_eal_arguments_are_given(swxd_binary, workdir):
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one CPU: nothing to compare")
    assert affinity_of(swxd_binary, workdir, None) == cpus
    last = max(cpus)
    eal = f"-l {last} --no-huge --no-pci --no-shconf -m 1024 --log-level=*:notice"
    assert affinity_of(swxd_binary, workdir, eal) == {last}
