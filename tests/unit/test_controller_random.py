"""The controller's books under random interleavings: connections bound through its own code
(``_handle_packets``, the install loop, the teardown loop, the expiry notifications, the
engine's timers) against a switch whose Writes fail at random (the whole Write, or some of
its updates: ALREADY_EXISTS, NOT_FOUND, INTERNAL) and whose entries expire at random, with
clients reusing their ports, FIN/RST copies, time jumps and live edits through the control
socket (servers taken out and put back, weights, timeouts). Run on the DPDK target's
semantics (entries a FIN hit end in the pipeline) and on BMv2's (the controller deletes), for
the example's service as it is, in SNAT mode with pooled server connections, and with
client-IP persistence.

At the end, once every entry has expired and every timer has run: no connection, no flow id
taken, nothing in ``flow_of``, the traffic book or the teardown's sets, no install waiting;
and the switch's table holds nothing the controller would still own."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest
from finsy import P4Schema
from finsy.p4client import P4ClientError
from finsy.proto import p4r
from finsy.proto import rpc_status as status_pb2
from google.protobuf import any_pb2

import p4cs.controller.app as appmod
import p4cs.controller.neighbours as nbmod
import p4cs.controller.operator as opmod
import p4cs.controller.teardown as tdmod
from p4cs import paths
from p4cs.constants import REASON_BACKEND_MISS, REASON_FLOW_END, REASON_VIP_MISS
from p4cs.controller.config import load_config, parse_config
from p4cs.controller.p4rt import FlowEncoder, decode_match_key
from p4cs.csproc import packet as P
from p4cs.csproc.effects import InstallFlows

REPO = Path(__file__).resolve().parents[2]
P4INFO = paths.p4info("dpdk")
GET = b"GET / HTTP/1.1\r\nHost: 10.0.0.100\r\nConnection: close\r\n\r\n"
CMAC = bytes.fromhex("020000000101")      # the client (examples/lcs.yaml)
SMAC = bytes.fromhex("020000000201")      # a server
SWMAC = bytes.fromhex("0200000001fe")     # the switch's port 1
OK, NOT_FOUND, ALREADY_EXISTS, INTERNAL = 0, 5, 6, 13


def _write_error(n: int, failing: dict[int, int]) -> P4ClientError:
    """The error finsy raises for a Write of ``n`` updates of which ``failing`` failed (index
    -> canonical code), or for a whole Write that failed (``failing`` empty)."""
    if not failing:
        err = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                   grpc.aio.Metadata(), "the switch went away")
        return P4ClientError(err, "Write")
    st = status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0], message="some updates failed")
    for i in range(n):
        a = any_pb2.Any()
        a.Pack(p4r.Error(canonical_code=failing.get(i, OK), message="x" if i in failing else ""))
        st.details.append(a)
    err = grpc.aio.AioRpcError(grpc.StatusCode.UNKNOWN, grpc.aio.Metadata(),
                               grpc.aio.Metadata(("grpc-status-details-bin",
                                                  st.SerializeToString())),
                               "some updates failed")
    return P4ClientError(err, "Write")


class _Clock:
    """The controller's ``time`` module, with a monotonic clock the test moves."""

    def __init__(self):
        import time
        self._time = time
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def __getattr__(self, name):
        return getattr(self._time, name)


class Switch:
    """The flow table as a P4Runtime server keeps it; Writes fail at random."""

    def __init__(self, rnd: random.Random, app):
        self.rnd, self.app = rnd, app
        self.entries: dict[tuple, p4r.TableEntry] = {}
        self.writes = 0

    @staticmethod
    def create_task(coro):
        return asyncio.ensure_future(coro)

    async def modify(self, entities) -> None:      # counter cells zeroed (BMv2's harvest)
        await asyncio.sleep(0)

    async def write(self, sw, updates: list[bytes]) -> None:
        await asyncio.sleep(0)
        self.writes += 1
        rnd = self.rnd
        if rnd.random() < 0.03:
            raise _write_error(len(updates), {})
        failing: dict[int, int] = {}
        for i, u in enumerate(updates):
            up = p4r.Update.FromString(u)
            te = up.entity.table_entry
            key = decode_match_key(te)
            if rnd.random() < 0.02:
                failing[i] = INTERNAL
            elif up.type == p4r.Update.INSERT:
                if key in self.entries:
                    failing[i] = ALREADY_EXISTS
                else:
                    self.entries[key] = te
            elif up.type == p4r.Update.MODIFY:
                if key in self.entries:
                    self.entries[key] = te
                else:
                    failing[i] = NOT_FOUND
            elif self.entries.pop(key, None) is None:          # DELETE
                failing[i] = NOT_FOUND
        if failing:
            raise _write_error(len(updates), failing)

    def expire(self, keys: list[tuple]) -> p4r.IdleTimeoutNotification:
        note = p4r.IdleTimeoutNotification()
        for k in keys:
            te = note.table_entry.add()
            te.CopyFrom(self.entries.pop(k))
            te.counter_data.packet_count = self.rnd.randint(0, 9)
            te.counter_data.byte_count = te.counter_data.packet_count * 100
        return note


#: The LCS example's service as it is, in SNAT mode with pooled server connections, and
#: with client-IP persistence.
VARIANTS = {
    "plain": "",
    "snat-pool": "    snat_address: 10.0.2.250\n    server_pool: {idle: 2, max_age_s: 20}\n",
    "persistence": "    persistence: {timeout_s: 30, netmask: 255.255.255.255}\n",
}


def _config(variant: str):
    text = (REPO / "examples" / "lcs.yaml").read_text()
    if variant == "snat-pool":
        text = text.replace("mode: transparent", "mode: snat")
    text = text.replace("    default_group: all\n", "    default_group: all\n" + VARIANTS[variant])
    return parse_config(text, "lcs.yaml")


class Run:
    def __init__(self, seed: int, end_expiry: bool, variant: str = "plain"):
        self.rnd = rnd = random.Random(seed)
        self.app = app = appmod.ControllerApp(_config(variant), P4INFO)
        app.enc = FlowEncoder(P4Schema(P4INFO))
        app.teardown.end_expiry = end_expiry
        self.sw = Switch(rnd, app)
        self.sent: list[tuple[int, bytes]] = []
        self.installs: list[InstallFlows] = []
        self.ports = rnd.choice([4, 16, 64])
        self.turns = 0

        async def send(sw, enc, frames):
            self.sent.extend(frames)

        async def counters(sw, fids):
            return {f: (1, 100) for f in fids}

        app.packets.send = send
        app.ready.set()                 # primary, its session's loops running (below)
        app._flow_counters = counters                        # noqa: SLF001
        queue = app._queue_install                           # noqa: SLF001

        def queue_install(e, metas):
            self.installs.append(e)
            queue(e, metas)

        app._queue_install = queue_install                   # noqa: SLF001

    async def settle(self) -> None:
        """Let the install and teardown loops run; now and then long enough for the
        teardown's batches (``BATCH_S``) to come due."""
        self.turns += 1
        for _ in range(3):
            await asyncio.sleep(0)
        if self.turns % 8 == 0:
            await asyncio.sleep(0.002)

    async def step(self) -> None:
        rnd, app = self.rnd, self.app
        eng = app.engine
        svc = next(iter(eng.services.values()))
        now = appmod.time.monotonic()
        r = rnd.random()
        if r < 0.35:                        # clients: the handshake's ACK and the request
            pkts = []
            for _ in range(rnd.randint(1, 6)):
                cip = P.ip_int("10.0.1.1")
                cport = 1024 + rnd.randrange(self.ports)
                cisn = rnd.randrange(1 << 32)
                cookie = eng.cookies.make(cip, svc.vip, cport, svc.port, cisn, 1460, now)
                for flags, data in ((P.ACK, b""), (P.ACK | P.PSH, GET)):
                    if flags == P.ACK and rnd.random() < 0.5:
                        continue
                    pkts.append((P.build(CMAC, SWMAC, cip, svc.vip, cport, svc.port, cisn + 1,
                                         cookie + 1, flags, 64240, data), 1, REASON_VIP_MISS))
            await app._handle_packets(pkts)             # noqa: SLF001
        elif r < 0.60:                      # the servers answer the switch's SYNs
            syns = [P.parse(f) for _p, f in self.sent]
            self.sent.clear()
            pkts = []
            for s in syns:
                if s.flags & P.SYN and not s.flags & P.ACK and rnd.random() < 0.9:
                    fl = P.SYN | P.ACK if rnd.random() < 0.95 else P.RST | P.ACK
                    pkts.append((P.build(SMAC, SWMAC, s.dip, s.sip, s.dport, s.sport,
                                         rnd.randrange(1 << 32), s.seq + 1, fl, 29200, b"",
                                         P.mss_option(1460) if fl & P.SYN else b""),
                                 2, REASON_BACKEND_MISS))
            await app._handle_packets(pkts)             # noqa: SLF001
        elif r < 0.72 and self.installs:    # FIN/RST copies of spliced flows
            pkts = []
            for _ in range(rnd.randint(1, 4)):
                e = rnd.choice(self.installs)
                if len(e.flows) != 2:
                    continue
                c2s, s2c = e.flows
                f = rnd.choice((c2s, s2c))
                port = (s2c if f is c2s else c2s).port
                fl = P.ACK | (P.FIN if rnd.random() < 0.85 else P.RST)
                pkts.append((P.build(f.smac, f.dmac, f.sip, f.dip, f.sport, f.dport,
                                     rnd.randrange(1 << 32), 0, fl, 29200), port,
                             REASON_FLOW_END))
            if pkts:
                await app._handle_packets(pkts)         # noqa: SLF001
        elif r < 0.82 and self.sw.entries:  # entries age out in the data plane
            keys = rnd.sample(list(self.sw.entries), rnd.randint(1, min(8, len(self.sw.entries))))
            await app.teardown.expired(self.sw, 0, self.sw.expire(keys))
        elif r < 0.86:                      # the operator edits the running configuration
            await self.operator()
        elif r < 0.92:                      # time passes: the engine's timers
            appmod.time.t += rnd.choice([0.05, 0.5, 2.0, 6.0])
            await app._execute(eng.tick(appmod.time.t))  # noqa: SLF001
        await self.settle()

    async def operator(self) -> None:
        """A control request as `p4cs` sends it: a server taken out of the group (its
        connections reset or not) or put back, a weight changed, the TCP timeouts set."""
        rnd, app = self.rnd, self.app
        addr = f"10.0.2.{rnd.randint(1, 3)}:80"
        x = rnd.random()
        if x < 0.3:
            req = {"op": "server.del", "group": "all", "address": addr,
                   "reset": rnd.random() < 0.5}
        elif x < 0.6:
            req = {"op": "server.add", "group": "all", "address": addr,
                   "weight": rnd.randint(1, 3)}
        elif x < 0.8:
            req = {"op": "server.weight", "group": "all", "server": f"all/{addr}",
                   "weight": rnd.choice([0, 1, 2])}
        else:
            req = {"op": "set", "tcp": rnd.choice([30, 300]), "tcpfin": rnd.choice([1, 2])}
        resp = await app.handle_control(req)
        assert isinstance(resp, dict) and "ok" in resp, resp

    async def finish(self) -> None:
        app = self.app
        for _ in range(4):
            for _ in range(8):
                await self.settle()
            if self.sw.entries:
                await app.teardown.expired(self.sw, 0, self.sw.expire(list(self.sw.entries)))
            appmod.time.t += 60.0
            await app._execute(app.engine.tick(appmod.time.t))  # noqa: SLF001
            await asyncio.sleep(0.02)       # superseded flow ids harvested


async def _play(seed: int, end_expiry: bool, steps: int, variant: str = "plain") -> Run:
    run = Run(seed, end_expiry, variant)
    app = run.app
    appmod.write_raw = run.sw.write     # (the fast_loops fixture puts the real one back)
    tasks = [asyncio.ensure_future(app._install_loop(run.sw)),        # noqa: SLF001
             asyncio.ensure_future(app.teardown.run(run.sw))]
    try:
        for _ in range(steps):
            await run.step()
        await run.finish()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return run


@pytest.fixture
def fast_loops(monkeypatch):
    clock = _Clock()                    # one clock for every module that reads one
    for mod in (appmod, tdmod, opmod, nbmod):
        monkeypatch.setattr(mod, "time", clock)
    monkeypatch.setattr(appmod, "write_raw", None)      # each run sets its switch's
    monkeypatch.setattr(tdmod, "BATCH_S", 0.001)
    monkeypatch.setattr(tdmod, "SUPERSEDED_S", 0.005)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("end_expiry", [True, False], ids=["dpdk", "bmv2"])
@pytest.mark.parametrize("seed", range(3))
def test_random_interleavings_leave_the_books_clean(seed, end_expiry, variant, fast_loops):
    run = asyncio.run(_play(seed, end_expiry, 300, variant))
    app, eng = run.app, run.app.engine
    assert not eng.by_id, [(c.id, c.state) for c in eng.by_id.values()]
    assert not app.flow_of, app.flow_of     # (flow_conn keeps freed ids' last owners)
    assert not app.book.meta, app.book.meta
    assert app.flow_ids.available() == app.flow_ids.size - 1, "flow ids not all freed"
    assert not app._installing and not app._installs and not app._after_install  # noqa: SLF001
    assert not app.teardown.ending
    assert not run.sw.entries, list(run.sw.entries)[:5]
    st = eng.stats
    assert st.spliced > 0 and run.sw.writes > 0


def test_the_random_interleavings_reach_the_hard_cases(fast_loops):
    """The runs above reincarnate connections on reused ports, fail installs and removals,
    and end entries both ways (a guard against a driver that never gets there)."""
    counters: dict[str, int] = {}
    for seed in range(4):
        for end_expiry in (True, False):
            run = asyncio.run(_play(seed, end_expiry, 300))
            for k, v in run.app.engine.stats.as_dict().items():
                counters[k] = counters.get(k, 0) + v
            for k, v in run.app.counters.items():
                if isinstance(v, int):
                    counters["app." + k] = counters.get("app." + k, 0) + v
    for k in ("reincarnations", "install_failures", "flows_expired", "teardowns",
              "app.install_errors", "app.flows_removed", "app.idle_timeouts"):
        assert counters.get(k, 0) > 0, (k, counters)


def test_a_failed_install_gives_its_flow_id_back_clean(fast_loops):
    """A removal the engine asked for while the connection's install was in flight, with its
    entry left to expire (a FIN hit it), runs once that Write is over and marks the flow id
    ``ending``; when the Write failed, that id is freed at once. It must leave ``ending``
    with it: the next flow to take the id was taken for a closed connection's, and its
    expiry never reached the engine (found by the random interleavings above)."""
    from p4cs.csproc import effects as fx

    app = appmod.ControllerApp(load_config(REPO / "examples" / "lcs.yaml"), P4INFO)
    app.enc = FlowEncoder(P4Schema(P4INFO))
    app.teardown.end_expiry = True
    key = fx.FlowKey(0x0A000201, 0x0A000101, 6, 80, 40000)
    flow = fx.FlowSpec(key, 1, b"\x02" * 6, b"\x04" * 6, 0x0A000064, 0x0A000101, 80, 40000,
                       5, 7, 300, conn_id=9, direction="s2c")
    gate = asyncio.Event()

    async def failing_write(sw, updates):
        await gate.wait()
        raise _write_error(len(updates), {0: INTERNAL})

    appmod.write_raw = failing_write

    async def run():
        loop = asyncio.ensure_future(app._install_loop(Switch(random.Random(0), app)))  # noqa: SLF001
        await app._execute([fx.InstallFlows([flow])])                  # noqa: SLF001
        for _ in range(5):
            await asyncio.sleep(0)
        fid = app.flow_of[tuple(key)]
        await app._execute([fx.RemoveFlows([key], 2.0, (key,))])      # noqa: SLF001
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return fid

    fid = asyncio.run(run())
    assert app.counters["install_errors"] == 1 and tuple(key) not in app.flow_of
    assert fid not in app.teardown.ending
    assert app.flow_ids.available() == app.flow_ids.size - 1


def test_an_edit_while_not_primary_runs_the_engines_effects(fast_loops):
    """A live edit while the controller has no session with the switch (or is backup) runs
    what the engine answers it with: its installs and removals wait for the next session's
    loops, only its packets are dropped. Before, every effect was dropped: a connection the
    edit redispatched onto a pooled server connection stayed spliced in the engine with no
    entry ever written (found by the random interleavings above, with edits)."""
    from p4cs.csproc import effects as fx

    app = appmod.ControllerApp(_config("plain"), P4INFO)
    app.enc = FlowEncoder(P4Schema(P4INFO))
    key = fx.FlowKey(0x0A000101, 0x0A000064, 6, 40000, 80)
    flow = fx.FlowSpec(key, 2, b"\x02" * 6, b"\x04" * 6, 0x0A000101, 0x0A000203, 40000, 80,
                       5, 7, 300, conn_id=9, direction="c2s")
    sent: list = []

    async def send(sw, enc, frames):
        sent.extend(frames)

    app.packets.send = send
    app.engine.reset_server = lambda server, now, why: [
        fx.RemoveFlows([key], 0.0), fx.InstallFlows([flow]), fx.PacketOut(1, b"x" * 60)]
    assert app.switch is None and not app.ready.is_set()

    async def edit():
        return await app.handle_control({"op": "server.del", "group": "all",
                                         "address": "10.0.2.3:80", "reset": True})

    assert asyncio.run(edit())["ok"]
    assert [k for k, _owner in app.teardown._removals] == [tuple(key)]   # noqa: SLF001
    assert [e.flows for e, _m in app._installs] == [[flow]]                # noqa: SLF001
    assert sent == []
