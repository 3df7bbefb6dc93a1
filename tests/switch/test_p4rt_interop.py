"""Interoperability: p4runtime-shell (its own virtualenv, P4Runtime 1.4 protos, protobuf 3)
and finsy (the controller's client) against the DPDK target's P4Runtime server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from finsy import P4TableAction, P4TableEntry, P4TableMatch, Switch, SwitchOptions

from .conftest import MINI_P4INFO, MINI_SPEC, T_FLOW, flow_entry, upd

pytestmark = [pytest.mark.dpdk]

ROOT = Path(__file__).resolve().parents[2]
SHELL_PY = ROOT / ".venv-p4rt-shell" / "bin" / "python"


def test_p4runtime_shell_reads_flow_table(switch, client_factory):
    if not SHELL_PY.exists():
        pytest.skip(".venv-p4rt-shell is absent (create it with `scripts/setup.sh --test`)")
    c = client_factory(switch.addr)
    c.arbitrate(10)
    c.write([upd("INSERT", flow_entry(0x0A000001, 0x0A000100 + i, port=2, flow_id=i)) for i in range(5)])
    script = textwrap.dedent(
        f"""
        import json, logging
        import p4runtime_sh.shell as sh
        logging.disable(logging.CRITICAL)
        # device id 1, a backup's election id, P4Info fetched from the switch (no push)
        sh.setup(device_id=1, grpc_addr="{switch.addr}", election_id=(0, 1), verbose=False)
        out = []
        for e in sh.TableEntry("MainControlImpl.flow_table").read():
            m = e.msg()
            out.append({{
                "match": [fm.exact.value.hex() for fm in m.match],
                "action": m.action.action.action_id,
                "params": [p.value.hex() for p in m.action.action.params],
            }})
        n_counters = sum(1 for _ in sh.CounterEntry("MainControlImpl.flow_pkts").read())
        print(json.dumps({{"entries": out, "counters": n_counters}}))
        sh.teardown()
        """
    )
    res = subprocess.run([str(SHELL_PY), "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(got["entries"]) == 5
    assert sorted(e["match"][1] for e in got["entries"]) == [f"0a0001{i:02x}" for i in range(5)]
    assert all(e["params"][0] == "02" for e in got["entries"])
    assert got["counters"] == 1024


def test_finsy_controller_connects_without_push(switch):
    """finsy with the same P4Info + spec sees a matching cookie: no pipeline push."""

    async def run():
        opts = SwitchOptions(p4info=MINI_P4INFO, p4blob=MINI_SPEC, device_id=1)
        async with Switch("sw", switch.addr, opts) as sw:
            assert sw.is_primary
            key = P4TableMatch({"meta.k_src": 1, "meta.k_dst": 2})
            await sw.write([+P4TableEntry("flow_table", match=key,
                                          action=P4TableAction("flow_fwd", port=1, flow_id=3),
                                          idle_timeout_ns=10 * 10**9)])
            got = [e async for e in sw.read(P4TableEntry("flow_table"))]
            assert len(got) == 1, got
            assert got[0].match["k_dst"] == 2 and got[0].idle_timeout_ns == 10 * 10**9
            await sw.delete([P4TableEntry("flow_table", match=key)])
            return [e async for e in sw.read(P4TableEntry("flow_table"))]

    pid_before = switch.daemon_pid
    assert asyncio.run(run()) == []
    assert switch.daemon_pid == pid_before  # the pipeline was not re-pushed
    assert switch.server.pipe.shadow[T_FLOW] == {}


def test_controller_counter_cells_read_as_finsy_reads_them(switch):
    """The controller's raw read of single counter cells (p4rt.read_counter_cells, chunked)
    gives what finsy's own Read of the same cells gives."""
    from finsy import P4CounterEntry

    from p4cs.controller.p4rt import read_counter_cells

    from .conftest import C_FLOW

    cells = [7, 0, 1023, 3, 500, 501, 64, 9]
    lines = []
    for i in cells:
        lines += [f"reg write flow_pkts_0_packets {i} {i * 3 + 1}",
                  f"reg write flow_pkts_0_bytes {i} {i * 100 + 60}"]
    switch.call(switch.server.pipe.daemon.request(lines))

    async def run():
        opts = SwitchOptions(p4info=MINI_P4INFO, p4blob=MINI_SPEC, device_id=1)
        async with Switch("sw", switch.addr, opts) as sw:
            mine = await read_counter_cells(sw, C_FLOW, cells + [20], chunk=3)
            theirs = {c.index: (c.data.packet_count, c.data.byte_count)
                      async for c in sw.read([P4CounterEntry("flow_pkts", index=i)
                                              for i in cells + [20]])}
            return mine, theirs

    mine, theirs = asyncio.run(run())
    assert mine == theirs
    assert mine[1023] == (1023 * 3 + 1, 102360) and mine[20] == (0, 0) and len(mine) == 9
