"""CS-processor workers: ``p4cs controller --workers N``.

The controller process keeps everything that talks to the switch (the P4Runtime primary, the
packet channel, flow installs and removals, the flow-id allocator, SYN-cookie keys, neighbour
resolution, health checks) and runs worker 0's engine itself; workers 1..N-1 are child
processes (``python -m p4cs.controller.workers FD``) that each run an engine for their share
of the connections (:mod:`p4cs.controller.spread`).

Where the switch spreads the punts itself (the embedded DPDK target's direct packet channel:
one pair of CPU and copy sockets per worker, ``dataplane/src/spread.c``), the controller
passes worker k its pair and the CPU port's socket for its packet-outs (SCM_RIGHTS, on a
second socket of its own: ``attach``); the worker then reads its punts and FIN/RST copies
and writes its packet-outs itself, and sends the controller only its flow installs, removals
and counts. Otherwise (BMv2's packet port, the P4Runtime stream, a switch with fewer
channels) the controller reads every punted frame and hands a worker its frames over a Unix
stream socket. Either way it executes the effects that come back: packet-outs are written
to the CPU port, flow installs go into the controller's next batched Write, removals to
:mod:`p4cs.controller.teardown`. A frame that reaches the controller's own socket but
belongs to a worker is handed on as before. What the controller learns for a
worker's flow (a failed install, an expiry, a lost entry) goes back to the worker that owns
the flow's key. The controller keeps the workers' engines in step: SYN-cookie keys at every
change (before the data plane gets them), the health and learned window scale of every server
and the neighbour table, the rule files, weights and live edits.

A worker that dies is started again. Its half-bound connections die with it: for as long as
a connection could still be half-bound (the request and server-connect timeouts), the new
worker answers a client segment of a connection it does not know with a RST, and a server's
SYN-ACK for one is reset by the engine as always. Spliced connections run on in the data
plane; their expiries reach the new worker, which knows nothing of them (the controller frees
their flow ids) but takes back their SNAT ports, which it did not hand out meanwhile; it hands
out the ports its predecessor used last at the very end. A SYN on the 4-tuple of one of those
connections while its entries live waits for their deletion (``Workers.orphan_keys``).

Messages are pickled tuples with a 4-byte length; both ends are this module. Effects travel
as plain tuples (``encode`` / ``decode``): pickling the effect dataclasses costs about ten
times as much.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from p4cs.constants import REASON_FLOW_END, REASON_IP_EXCEPTION, REASON_VIP_MISS
from p4cs.controller.neighbours import from_config
from p4cs.controller.operator import log_effect, quiet_engine, setup_logging
from p4cs.controller.packetchan import SEND_TIMEOUT_S, _mmsg, read_port
from p4cs.controller.spread import Spreader, pure_syn_tuple, segment_tuple
from p4cs.controller.traffic import FlowMeta, inactive_per_server, meta_of
from p4cs.csproc import effects as fx
from p4cs.csproc import packet as P
from p4cs.csproc.engine import Config as EngineConfig
from p4cs.csproc.engine import Engine
from p4cs.csproc.packet import ACK, RST, SYN, ip_int
from p4cs.csproc.timers import wake_time

if TYPE_CHECKING:
    from p4cs.controller.app import ControllerApp

LOG = logging.getLogger("p4cs.controller")

_LEN = struct.Struct("!I")
#: Seconds between two checks of the state the workers follow (servers, neighbours).
SYNC_S = 0.1
#: Seconds a status request waits for the workers' answers.
ASK_TIMEOUT_S = 2.0
#: Seconds before a dead worker is started again: doubled, up to the last, while it keeps
#: dying within STABLE_S of its start.
RESTART_S = (0.2, 5.0)
STABLE_S = 10.0
#: How often the index of the dead workers' entries forgets those that left the table.
PRUNE_S = 5.0


def pack(msg: Any) -> bytes:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


def unpack(buf: bytearray) -> list:
    """The complete messages at the head of ``buf`` (removed from it)."""
    out, pos, n = [], 0, len(buf)
    while n - pos >= 4:
        (ln,) = _LEN.unpack_from(buf, pos)
        if n - pos - 4 < ln:
            break
        out.append(pickle.loads(memoryview(buf)[pos + 4:pos + 4 + ln]))
        pos += 4 + ln
    del buf[:pos]
    return out


_SPEC_FIELDS = fx.FlowSpec.__slots__


def encode(effects: list, engine) -> list[tuple]:
    """A worker's effects (Log effects excluded) as tuples; an install carries what its flows
    carry (traffic.FlowMeta, for the controller's traffic book)."""
    out: list[tuple] = []
    for e in effects:
        if isinstance(e, fx.PacketOut):
            out.append((0, e.port, e.frame))
        elif isinstance(e, fx.InstallFlows):
            metas = [meta_of(engine, f) for f in e.flows]
            out.append((1, [tuple(getattr(f, n) for n in _SPEC_FIELDS) for f in e.flows],
                        [(p.port, p.frame) for p in e.then],
                        [None if m is None else (m.service, m.server, m.direction, m.client,
                                                 m.conn_id) for m in metas]))
        elif isinstance(e, fx.RemoveFlows):
            out.append((2, [tuple(k) for k in e.keys], e.after, [tuple(k) for k in e.ended],
                        [(p.port, p.frame) for p in e.then]))
        elif isinstance(e, fx.CountFlows):
            out.append((3, [tuple(k) for k in e.keys]))
    return out


#: A worker's connection ids as the controller keeps them: ``base | id`` (``Worker.base``:
#: the worker and its incarnation), unique among all engines and restarts.
CONN_ID_BITS = 32


def decode(items: list[tuple], base: int = 0) -> tuple[list, list]:
    """The effects of ``encode``'s tuples, and the FlowMeta lists of their installs; the
    connection ids of the flows get ``base``."""
    effects: list = []
    metas: list = []
    for it in items:
        kind = it[0]
        if kind == 0:
            effects.append(fx.PacketOut(it[1], it[2]))
        elif kind == 1:
            flows = [fx.FlowSpec(fx.FlowKey(*t[0]), *t[1:11], base | t[11], t[12])
                     for t in it[1]]
            effects.append(fx.InstallFlows(flows, [fx.PacketOut(p, f) for p, f in it[2]]))
            metas.append([None if m is None else FlowMeta(*m[:4], base | m[4]) for m in it[3]])
        elif kind == 2:
            effects.append(fx.RemoveFlows([fx.FlowKey(*k) for k in it[1]], it[2],
                                          tuple(fx.FlowKey(*k) for k in it[3]),
                                          tuple(fx.PacketOut(p, f) for p, f in it[4])))
        elif kind == 3:
            effects.append(fx.CountFlows(tuple(fx.FlowKey(*k) for k in it[1])))
        else:
            raise ValueError(f"unknown effect kind {kind!r}")
    return effects, metas


def server_states(engine) -> list[tuple]:
    """(group, server, up, scale known, scale, weight) of every server of ``engine``."""
    return [(g.name, s.name, s.up, s.scale_known, s.scale, s.weight)
            for g in engine.groups.values() for s in g.servers]


def spreader_for(cfg, n: int, mask: int | None) -> Spreader:
    """The spread of ``cfg``'s frames over ``n`` workers, clients by ``mask``
    (``client_mask``)."""
    content = [s for s in cfg.services if not s.l4]
    local = {ip_int(str(p.gateway.ip)) for p in cfg.ports.values()}
    local |= {ip_int(s.vip) for s in content}
    return Spreader(n, {(ip_int(s.vip), s.port) for s in content},
                    {ip_int(s.snat_address) for s in content if s.snat_address},
                    EngineConfig.snat_ports, local, mask)


def client_mask(cfg) -> int | None:
    """How the clients of ``cfg`` are spread (``Spreader``'s ``client_mask``): by address
    and port (None), or by address under the broadest netmask of the services whose
    persistence keeps templates."""
    mask = None
    for s in cfg.services:
        p = s.persistence
        if not s.l4 and p is not None and p.kind != "cookie-insert":    # that one keeps none
            m = ip_int(p.netmask) if p.kind == "client-ip" else 0xFFFFFFFF
            mask = m if mask is None else mask & m
    return mask


# ---------------------------------------------------------------------------- controller side

class Worker:
    """One child process and its socket, as the controller sees it."""

    def __init__(self, index: int):
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.started = 0.0
        self.restarts = 0
        self.delay = RESTART_S[0]
        #: the controller's end of the socket that passes the worker its channel's sockets,
        #: and whether the worker sends the controller the pure SYNs it reads (``hold_syns``)
        self.fds: socket.socket | None = None
        self.hold = True
        #: SNAT (address, port) its segments to servers came from, the latest used last
        self.snat_used: dict[tuple[int, int], None] = {}

    @property
    def base(self) -> int:
        """What the controller adds to this incarnation's connection ids (``decode``): an
        install of a restarted worker never takes an entry of its predecessor's for its own."""
        return (self.index << 16 | self.restarts) << CONN_ID_BITS


class Workers:
    """Workers 1..n-1 of a controller (worker 0 is its own engine)."""

    def __init__(self, app: "ControllerApp", n: int):
        self.app = app
        self.n = n
        self.spread = spreader_for(app.cfg, n, client_mask(app.cfg))
        self.pool = [Worker(i) for i in range(1, n)]
        self.counters = {"worker_restarts": 0, "worker_messages_bad": 0,
                         "worker_orphan_flows_removed": 0, "worker_frames_relayed": 0}
        #: flow key -> connection id, and connection id -> flow keys, of the connections of
        #: dead workers whose entries were in the flow table when the worker died
        self.orphan_of: dict[tuple, int] = {}
        self._orphans: dict[int, list[tuple]] = {}
        self._prune_at = 0.0
        self._asks: dict[int, tuple[asyncio.Future, dict]] = {}
        self._ask_id = 0
        self._tasks: list[asyncio.Task] = []
        self._synced: tuple = ()
        self._stopping = False
        #: the direct packet channel's lease while the workers hold its sockets (``attach``)
        self._lease = None

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        for w in self.pool:
            await self._spawn(w, restarted=False)
        self._tasks.append(asyncio.ensure_future(self._sync_loop()))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for w in self.pool:
            if w.writer is not None:
                w.writer.close()
            if w.fds is not None:
                w.fds.close()
            if w.proc is not None and w.proc.poll() is None:
                w.proc.terminate()
        for w in self.pool:
            if w.proc is not None:
                try:
                    await asyncio.wait_for(asyncio.to_thread(w.proc.wait), 5.0)
                except asyncio.TimeoutError:
                    w.proc.kill()

    async def _spawn(self, w: Worker, restarted: bool) -> None:
        app = self.app
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds_ours, fds_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            w.proc = subprocess.Popen(
                [sys.executable, "-m", "p4cs.controller.workers", str(theirs.fileno()),
                 str(fds_theirs.fileno())],
                pass_fds=[theirs.fileno(), fds_theirs.fileno()], stdin=subprocess.DEVNULL)
        except BaseException:
            fds_ours.close()
            raise
        finally:
            theirs.close()
            fds_theirs.close()
        if w.fds is not None:
            w.fds.close()
        w.fds = fds_ours
        w.started = time.monotonic()
        reader, w.writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 24)
        eng = app.engine
        snat, held = self._snat_order(w) if restarted else ({}, [])
        w.writer.write(pack(("init", {
            "snat": snat, "held": held,
            "cfg": app.cfg, "index": w.index, "n": self.n, "restarted": restarted,
            "cookies": eng.cookies, "servers": server_states(eng),
            "neighbours": app.resolver.table.entries,
            "rules": {name: store.path for name, store in app.rule_stores.items()},
            "log_level": logging.getLogger().level, "access_log": app.access_log})))
        LOG.info("CS-processor worker %d started (pid %d)%s", w.index, w.proc.pid,
                 " again" if restarted else "")
        self._tasks.append(asyncio.ensure_future(self._read(w, reader)))
        if self._lease is not None:
            self._pass_channel(w)

    def _snat_order(self, w: Worker) -> tuple[dict[int, list[int]], list[tuple[int, int]]]:
        """The order in which a restarted worker hands out its SNAT ports: first those its
        predecessor did not use, then those it did, the ones used last last (a server may
        hold them in TIME_WAIT); without those of its flows still installed (spliced
        connections run on in the data plane), which it gets back when they expire."""
        sp = self.spread
        held = [(k[1], k[4]) for k in self.app.flow_of
                if k[1] in sp.snat and sp.lo <= k[4] <= sp.hi and k[4] % self.n == w.index]
        taken = set(held) | set(w.snat_used)
        order = {}
        for ip in sp.snat:
            order[ip] = [p for p in range(sp.lo + (w.index - sp.lo) % self.n, sp.hi + 1, self.n)
                         if (ip, p) not in taken] + \
                [p for i, p in w.snat_used if i == ip and (i, p) not in held]
        return order, held

    def _note_snat(self, w: Worker, effects: list) -> None:
        """Remember the SNAT ports of the worker's segments to servers, in order of use."""
        sp = self.spread
        self._note_sources(w, [src for e in effects if isinstance(e, fx.PacketOut)
                               and (src := sp.snat_source(e.frame)) is not None])

    @staticmethod
    def _note_sources(w: Worker, sources) -> None:
        """``_note_snat`` of SNAT (address, port) pairs (a worker that writes its packet-outs
        itself reports them)."""
        used = w.snat_used
        for src in sources:
            used.pop(src, None)
            used[src] = None

    async def _read(self, w: Worker, reader: asyncio.StreamReader) -> None:
        proc = w.proc
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(_LEN.unpack(head)[0])
                try:
                    msg = pickle.loads(body)
                except Exception:  # noqa: BLE001 - a worker's message is never trusted blindly
                    self.counters["worker_messages_bad"] += 1
                    continue
                await self._message(w, msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        if self._stopping:
            return
        if proc.poll() is None:
            proc.kill()
        rc = await asyncio.to_thread(proc.wait)
        self._orphan(w)
        self.counters["worker_restarts"] += 1
        w.restarts += 1
        LOG.warning("CS-processor worker %d (pid %d) ended (status %s): starting it again",
                    w.index, proc.pid, rc)
        if time.monotonic() - w.started >= STABLE_S:
            w.delay = RESTART_S[0]
        await asyncio.sleep(w.delay)
        w.delay = min(2 * w.delay, RESTART_S[1])
        if not self._stopping:
            await self._spawn(w, restarted=True)

    # -- what a dead worker leaves in the flow table ----------------------------------------

    def _orphan(self, w: Worker) -> None:
        """Index the flows of ``w``'s connections (this incarnation's) by connection id: its
        spliced connections run on in the data plane, but its successor knows nothing of them.
        A client that closes one and opens a new connection on the same 4-tuple while the
        entries still live (a few seconds after the FIN) sends a SYN the data plane punts; the
        successor would answer it at once and the client's ACK would meet the old entries.
        ``orphan_keys`` gives the controller the entries to delete first."""
        app = self.app
        self._prune_orphans()
        mine = w.base >> CONN_ID_BITS
        for k, fid in app.flow_of.items():
            cid = app.flow_conn.get(fid)
            if cid is not None and cid >> CONN_ID_BITS == mine:
                self.orphan_of[k] = cid
                self._orphans.setdefault(cid, []).append(k)

    def _prune_orphans(self) -> None:
        """Forget the orphan entries that left the flow table (expired, or taken by a new
        connection on their key)."""
        for k, cid in list(self.orphan_of.items()):
            if not self._holds(cid, k):
                del self.orphan_of[k]
                keys = self._orphans.get(cid)
                if keys is not None:
                    keys.remove(k)
                    if not keys:
                        del self._orphans[cid]

    def orphan_keys(self, key: tuple) -> list[tuple] | None:
        """The flow keys of the dead worker's connection whose entry ``key`` is (both
        directions), taken out of the index; None if ``key`` is no such entry."""
        cid = self.orphan_of.pop(key, None)
        if cid is None:
            return None
        keys = self._orphans.pop(cid, [key])
        for k in keys:
            self.orphan_of.pop(k, None)
        if not self._holds(cid, key):
            return None                 # expired or replaced meanwhile
        self.counters["worker_orphan_flows_removed"] += len(keys)
        return keys

    def _holds(self, cid: int, key: tuple) -> bool:
        """Whether the entry of ``key`` is still connection ``cid``'s."""
        fid = self.app.flow_of.get(key)
        return fid is not None and self.app.flow_conn.get(fid) == cid

    async def _message(self, w: Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "back":
            # pure SYNs the worker read on its channel while SYNs are held (``hold``): the
            # controller's checks first, then back to the worker (``dispatch``)
            try:
                pkts = [(bytes(p), int(port), int(r)) for p, port, r in msg[1]]
            except (ValueError, TypeError, IndexError):
                self.counters["worker_messages_bad"] += 1
                return
            await self.app._handle_packets(pkts, counted=True)   # noqa: SLF001
        elif kind == "snat":
            try:
                sources = [(int(ip), int(port)) for ip, port in msg[1]]
            except (ValueError, TypeError):
                self.counters["worker_messages_bad"] += 1
                return
            self._note_sources(w, sources)
        elif kind == "fx":
            try:
                effects, metas = decode(msg[1], w.base)
            except (ValueError, TypeError, IndexError):
                self.counters["worker_messages_bad"] += 1
                return
            if self.spread.snat:
                self._note_snat(w, effects)
            await self.app.execute_worker(w.index, effects, metas)
        elif kind == "answer":
            fut, got = self._asks.get(msg[1], (None, None))
            if fut is not None:
                got[w.index] = msg[2]
                if len(got) == len(self.pool) and not fut.done():
                    fut.set_result(None)
        else:
            self.counters["worker_messages_bad"] += 1

    # -- to the workers ---------------------------------------------------------------------

    def send(self, index: int, msg: tuple) -> None:
        w = self.pool[index - 1]
        if w.writer is not None and not w.writer.is_closing():
            w.writer.write(pack(msg))

    def call(self, index: int, call: str, arg: Any) -> None:
        """``Engine.<call>(arg, now)`` in worker ``index`` (an install_failed's connection id
        as the worker knows it)."""
        if call == "install_failed":
            arg &= (1 << CONN_ID_BITS) - 1
        self.send(index, (call, arg))

    def broadcast(self, msg: tuple) -> None:
        data = pack(msg)
        for w in self.pool:
            if w.writer is not None and not w.writer.is_closing():
                w.writer.write(data)

    def dispatch(self, pkts: list, owner_known) -> list:
        """Send the workers their frames; the frames of worker 0. A FIN/RST copy whose key is
        no flow's (``owner_known``: the copy as rewritten by the splice) goes to every worker,
        or, while the data plane spreads the punts (the DPDK pipeline's copies are the
        rewritten segments), to the worker ``Spreader.copy_worker`` names."""
        n = self.n
        per: list[list] = [[] for _ in range(n)]
        worker = self.spread.worker
        direct = self._lease is not None
        for pkt in pkts:
            payload, _port, reason = pkt
            if reason == REASON_FLOW_END and not owner_known(payload):
                t = segment_tuple(payload) if direct else None
                if t is not None:       # the DPDK pipeline's copy, as the splice rewrote it
                    per[self.spread.copy_worker(*t)].append(pkt)
                    continue
                for lst in per:
                    lst.append(pkt)
                continue
            per[worker(payload, reason)].append(pkt)
        for i in range(1, n):
            if per[i]:
                self.counters["worker_frames_relayed"] += len(per[i])
                self.send(i, ("pkts", per[i]))
        return per[0]

    # -- the direct packet channel's sockets -------------------------------------------------

    def attach(self, lease) -> None:
        """The channel's lease carries a pair of sockets per worker: pass worker k its pair
        and the CPU port's socket (its packet-outs), and the header layout of the frames."""
        if len(lease.extra) != len(self.pool):
            LOG.warning("the channel has %d worker sockets for %d workers: the controller "
                        "relays the frames", len(lease.extra), len(self.pool))
            return
        self._lease = lease
        for w in self.pool:
            self._pass_channel(w)

    def detach(self) -> None:
        """The lease ended: the workers drop their channel sockets."""
        if self._lease is None:
            return
        self._lease = None
        for w in self.pool:
            self._send_fds(w, ("channel_end",), [])

    def _pass_channel(self, w: Worker) -> None:
        lease = self._lease
        cpu, copy = lease.extra[w.index - 1]
        w.hold = self.hold_syns()
        self._send_fds(w, ("channel", lease.headers.codec(), w.hold),
                       [cpu.fileno(), copy.fileno(), lease.cpu.fileno()])

    def _send_fds(self, w: Worker, msg: tuple, fds: list[int]) -> None:
        if w.fds is None:
            return
        try:
            socket.send_fds(w.fds, [pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)], fds)
        except OSError as exc:      # a dead worker: its successor gets them
            LOG.debug("worker %d: channel sockets not passed: %s", w.index, exc)

    def hold_syns(self) -> bool:
        """Whether the workers send the controller the pure SYNs they read (so that it may
        first delete entries no engine knows: ``ControllerApp._hold_syns``)."""
        return bool(self.orphan_of or self.app.flow_ids.adopted)

    def reconfigure(self, cfg, reset: tuple[str, ...]) -> None:
        """A live edit: the workers run ``cfg`` too (``reset``: servers whose connections
        are reset), frames are spread by its services. The clients stay spread as they were
        (by address and port, or by network): a running connection's frames and flows keep
        their worker; a persistence edit changes that at the next start."""
        old = self.spread.request()
        self.spread = spreader_for(cfg, self.n, self.spread.mask)
        self.broadcast(("config", cfg, reset))
        if self._lease is not None and self.spread.request() != old:
            self._lease.renew_now("the services changed: the data plane spreads by the new ones")

    def owner(self, key: fx.FlowKey) -> int:
        """The worker whose engine holds the connection of the flow ``key``."""
        return self.spread.key_worker(key.src_ip, key.dst_ip, key.sport, key.dport)

    async def ask(self, what: str) -> dict[int, Any]:
        """Every live worker's answer to ``what`` (``status``, ``connections`` or
        ``templates``)."""
        self._ask_id += 1
        ask_id = self._ask_id
        fut = asyncio.get_running_loop().create_future()
        got: dict[int, Any] = {}
        self._asks[ask_id] = (fut, got)
        self.broadcast(("ask", ask_id, what))
        try:
            await asyncio.wait_for(fut, ASK_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass
        finally:
            del self._asks[ask_id]
        return got

    async def _sync_loop(self) -> None:
        """Servers (health, learned window scales, weights) and neighbours, when they change."""
        while True:
            app = self.app
            servers = server_states(app.engine)
            table = app.resolver.table
            routes = {ip: table.route(ip) for ip in table.entries}
            if (servers, routes) != self._synced:
                self._synced = (servers, routes)
                self.broadcast(("sync", servers, app.resolver.table.entries))
            if self._lease is not None:
                hold = self.hold_syns()
                for w in self.pool:
                    if hold != w.hold:      # on the sockets' own socket: in order with them
                        w.hold = hold
                        self._send_fds(w, ("hold", hold), [])
            if self.orphan_of and time.monotonic() >= self._prune_at:
                self._prune_orphans()       # the controller checks SYNs while any is left
                self._prune_at = time.monotonic() + PRUNE_S
            await asyncio.sleep(SYNC_S)

    def listing(self) -> list[dict]:
        own = self._lease is not None
        return [{"worker": w.index, "pid": None if w.proc is None else w.proc.pid,
                 "restarts": w.restarts, "channel": "own" if own else "relayed"}
                for w in self.pool]


# ---------------------------------------------------------------------------- worker side

class _Child:
    """The engine of worker ``index`` of ``n`` and the messages it takes."""

    def __init__(self, init: dict):
        from p4cs.controller.app import ControllerApp
        cfg = init["cfg"]
        self.cfg, self.index, self.n = cfg, init["index"], init["n"]
        self.access_log = init["access_log"]
        self.stores: dict[str, Any] = {}
        services, groups, ecfg = ControllerApp.engine_parts(cfg, self.stores, health=False,
                                                            share=(self.index, self.n))
        self.topo = from_config(cfg, time.monotonic())
        self.topo.entries = init["neighbours"]
        self.engine = Engine(services, groups, self.topo, ecfg)
        self.engine.cookies = init["cookies"]
        for name, path in init["rules"].items():
            store = self.stores.get(name)
            if store is not None and path and path != store.path:
                store.reload(path)
        for ip, order in init["snat"].items():
            self.engine.policy.order_sources(ip, order)
        self.held = set(init["held"])       # SNAT ports of the predecessor's running flows
        self.spread = spreader_for(cfg, self.n, None)   # its SNAT addresses and pool
        #: the worker's own share of the direct packet channel (child_main)
        self.channel_counters = {"packet_in": 0, "packet_out": 0, "packet_in_malformed": 0,
                                 "packet_out_dropped": 0}
        self._sync(init["servers"], time.monotonic())
        now = time.monotonic()
        # connections that may have been half-bound in the previous worker
        self.reset_until = (now + ecfg.request_timeout + ecfg.server_connect_timeout
                            if init["restarted"] else 0.0)

    def _sync(self, servers: list[tuple], now: float) -> list:
        eng = self.engine
        out: list = []
        for gname, sname, up, known, scale, weight in servers:
            g = eng.groups.get(gname)
            s = next((x for x in g.servers if x.name == sname), None) if g else None
            if s is None:
                continue
            if s.weight != weight:
                eng.set_weight(gname, sname, weight, now)
            if known and (not s.scale_known or s.scale != scale):
                out += eng._learn_scale(s, scale, now)     # noqa: SLF001 - as a SYN-ACK would
            if s.up != up:
                g.set_up(s, up, now)
                if not up:
                    out += eng.reset_server(s, now, "server down")
        return out

    def handle(self, msg: tuple, now: float) -> tuple[list, Any]:
        """Effects of one message, and an answer to send (None: none)."""
        eng = self.engine
        kind = msg[0]
        if kind == "pkts":
            out: list = []
            for payload, port, reason in eng.superseded(msg[1]):
                got = eng.handle(payload, port, reason, now)
                if now < self.reset_until and not any(isinstance(e, fx.PacketOut) for e in got):
                    got += self._orphan(payload, port, reason)
                out += got
            return out, None
        if kind in ("flow_expired", "flow_lost"):
            key = msg[1]
            if (key.dst_ip, key.dport) in self.held:        # the predecessor's connection
                self.held.discard((key.dst_ip, key.dport))
                eng.policy.release_port(key.dst_ip, key.dport)
            return getattr(eng, kind)(key, now), None
        if kind == "install_failed":
            return eng.install_failed(msg[1], now), None
        if kind == "flows_counted":
            return eng.flows_counted(msg[1], now), None
        if kind == "sync":
            self.topo.entries = msg[2]
            return self._sync(msg[1], now), None
        if kind == "cookies":
            eng.cookies = msg[1]
            return [], None
        if kind == "rules":
            for name, path in msg[1].items():
                store = self.stores.get(name)
                if store is not None:
                    store.reload(path)
            return [], None
        if kind == "config":
            return self._reconfigure(msg[1], msg[2], now), None
        if kind == "ask":
            return [], ("answer", msg[1], self._answer(msg[2], now))
        return [], None

    def snat_used(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
        """The SNAT (address, port) of the segments to servers among packet-outs, in order
        (the controller's ``Workers._note_snat`` when the worker writes them itself)."""
        sp = self.spread
        if not sp.snat:
            return []
        return [src for _port, frame in frames if (src := sp.snat_source(frame)) is not None]

    def _orphan(self, payload: bytes, port: int, reason: int) -> list:
        """A RST for a client segment of a connection the previous worker held half-bound."""
        if reason not in (REASON_VIP_MISS, REASON_IP_EXCEPTION):
            return []
        try:
            seg = P.parse(payload)
        except Exception:  # noqa: BLE001 - as in Engine.handle: a bad frame never kills a worker
            return []
        if seg.flags & (SYN | RST) or not seg.flags & ACK or \
                (seg.sip, seg.sport, seg.dip, seg.dport) in self.engine.conns_c:
            return []
        return [self.engine._rst_reply(seg, port, self.engine._pm(port))]  # noqa: SLF001

    def _reconfigure(self, cfg, reset: tuple, now: float) -> list:
        from p4cs.controller.app import ControllerApp
        stores: dict[str, Any] = {}
        services, groups, ecfg = ControllerApp.engine_parts(cfg, stores, health=False,
                                                            share=(self.index, self.n))
        eng = self.engine
        servers = {s.name: s for g in eng.groups.values() for s in g.servers}
        out = eng.reconfigure(services, groups, ecfg, now)
        self.cfg, self.stores = cfg, stores
        self.spread = spreader_for(cfg, self.n, None)
        for name in reset:
            if name in servers:
                out += eng.reset_server(servers[name], now, "server deleted")
        return out

    def _answer(self, what: str, now: float) -> Any:
        eng = self.engine
        if what == "connections":
            return [{**c, "worker": self.index} for c in eng.connections()]
        if what == "templates":
            return eng.templates(now)
        inactive = inactive_per_server(eng)
        pooled = eng.pools.sizes()
        return {"csproc": eng.stats.as_dict(), "rules": eng.rule_hits.listing(now),
                "channel": dict(self.channel_counters),
                "servers": {s.name: (s.active, inactive.get(s.name, 0), s.total,
                                     pooled.get(s, {"idle": 0, "opening": 0}))
                            for g in eng.groups.values() for s in g.servers}}


#: Allocations between two young-generation collections of Python's garbage collector (its
#: default, 700, made 6 % of the controller's CPU and full collections of 30-100 ms every few
#: seconds with the objects of ~16,000 connections alive; at 20,000: 1.3 %, pauses <= 30 ms).
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Fewer, not longer, garbage-collector passes in a process that binds connections
    (the controller and its workers); the older generations' ratios stay Python's."""
    _g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, g1, g2)


class _Channel:
    """A worker's own pair of the direct packet channel: its punts, its FIN/RST copies, and
    the CPU port's socket it writes its packet-outs to."""

    def __init__(self, codec, cpu: socket.socket, copy: socket.socket, tx: socket.socket):
        self.codec, self.cpu, self.copy, self.tx = codec, cpu, copy, tx
        for sock in (cpu, copy):
            sock.setblocking(False)
        # tx shares its file status flags with the controller's socket: never changed here

    def close(self) -> None:
        for sock in (self.cpu, self.copy, self.tx):
            sock.close()

    def read(self, counters: dict) -> tuple[list, bool]:
        """Every frame waiting on the two sockets (copies first: their order with the
        controller's calls, ``Teardown.expired``); False when the data plane closed them."""
        out: list = []
        for sock, copy in ((self.copy, True), (self.cpu, False)):
            try:
                pkts, bad, closed = read_port(sock, self.codec, copy, None)
            except OSError:
                return out, False
            out += pkts
            counters["packet_in_malformed"] += bad
            if closed:
                return out, False
        counters["packet_in"] += len(out)
        return out, True

    def send(self, frames: list[tuple[int, bytes]], counters: dict) -> bool:
        """Write packet-outs to the CPU port (waiting up to SEND_TIMEOUT_S while it is full,
        then dropping the rest); False when the socket failed."""
        datas = [self.codec.encode(port, frame) for port, frame in frames]
        fd = self.tx.fileno()
        deadline = None
        i = 0
        while i < len(datas):
            try:
                if _mmsg is not None:
                    i += _mmsg.send_many(fd, datas[i:])
                else:
                    os.write(fd, datas[i])
                    i += 1
                continue
            except BlockingIOError:
                pass
            except OSError:
                return False
            now = time.monotonic()
            deadline = deadline or now + SEND_TIMEOUT_S
            if now >= deadline:
                counters["packet_out_dropped"] += len(datas) - i
                break
            select.select([], [fd], [], deadline - now)
        counters["packet_out"] += i
        return True


def child_main(fd: int, fds_fd: int | None = None) -> None:
    """A worker process: its engine, fed by the controller on socket ``fd`` and, while it
    holds its pair of the direct packet channel (passed on ``fds_fd``), by the data plane,
    until the controller closes the socket."""
    tune_gc()
    sock = socket.socket(fileno=fd)
    fds = socket.socket(fileno=fds_fd) if fds_fd is not None else None
    buf = bytearray()
    child: _Child | None = None

    def read() -> bool:
        try:
            data = sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        buf.extend(data)
        return True

    while child is None:
        if not read():
            return
        for msg in unpack(buf):
            if msg[0] == "init":
                logging.basicConfig(level=msg[1]["log_level"] or logging.INFO,
                                    format=f"%(asctime)s %(name)s[w{msg[1]['index']}] "
                                           "%(levelname)s %(message)s")
                child = _Child(msg[1])
    setup_logging(child.access_log)
    quiet_engine(child.engine)
    sock.setblocking(False)
    if fds is not None:
        fds.setblocking(False)
    eng = child.engine
    chan: _Channel | None = None
    hold = True
    counters = child.channel_counters
    deadline = eng.next_deadline()
    while True:
        # the timers due within one grain run together (as in the controller's timer loop)
        wait = 0.5 if deadline is None else max(0.0, min(0.5, wake_time(deadline) -
                                                         time.monotonic()))
        if buf:
            wait = 0.0      # messages that came with the last read (the first, with init)
        watch = [sock] + ([fds] if fds is not None else []) + \
            ([chan.cpu, chan.copy] if chan is not None else [])
        ready, _w, _x = select.select(watch, [], [], wait)
        if fds is not None and fds in ready:
            chan, hold = _channel_messages(fds, chan, hold)
        if sock in ready and not read():
            if chan is not None:
                chan.close()
            return
        now = time.monotonic()
        out: list = []
        answers: list = []
        handled = False
        if chan is not None and (chan.cpu in ready or chan.copy in ready):
            pkts, alive = chan.read(counters)
            if hold:
                back: list = []
                keep: list = []
                for p in pkts:
                    syn = p[2] == REASON_VIP_MISS and pure_syn_tuple(p[0]) is not None
                    (back if syn else keep).append(p)
                if back:
                    answers.append(("back", back))
                    pkts = keep
            if pkts:
                out += child.handle(("pkts", pkts), now)[0]
                handled = True
            if not alive:
                LOG.warning("the data plane closed this worker's packet channel")
                chan.close()
                chan = None
        msgs = unpack(buf)
        for msg in msgs:
            effects, answer = child.handle(msg, now)
            out += effects
            if answer is not None:
                answers.append(answer)
        due = deadline is not None and deadline <= now
        if due:
            out += eng.tick(now)
        if due or msgs or handled:      # what was handled may have armed timers
            deadline = eng.next_deadline()
        for e in out:
            if isinstance(e, fx.Log):
                log_effect(e)
        if chan is not None:
            frames = [(e.port, e.frame) for e in out if isinstance(e, fx.PacketOut)]
            if frames:
                used = child.snat_used(frames)
                if used:
                    answers.append(("snat", used))
                if not chan.send(frames, counters):
                    LOG.warning("the CPU port failed: packet-outs go through the controller")
                    chan.close()
                    chan = None
                out = [e for e in out if not isinstance(e, fx.PacketOut)]
        send = encode(out, eng)
        msgs = ([("fx", send)] if send else []) + answers
        if msgs:
            sock.setblocking(True)
            try:
                sock.sendall(b"".join(pack(m) for m in msgs))
            except OSError:
                return
            sock.setblocking(False)


def _channel_messages(fds: socket.socket, chan: "_Channel | None",
                      hold: bool) -> tuple["_Channel | None", bool]:
    """The controller's messages on the socket that passes the channel's sockets: a new
    channel (its sockets attached), its end, whether to hold SYNs."""
    while True:
        try:
            data, got, _flags, _addr = socket.recv_fds(fds, 4096, 3)
        except (BlockingIOError, InterruptedError):
            return chan, hold
        except OSError:
            return chan, hold
        if not data:
            return chan, hold
        socks = [socket.socket(fileno=f) for f in got]
        try:
            msg = pickle.loads(data)
        except Exception:  # noqa: BLE001 - never trusted blindly
            msg = None
        if isinstance(msg, tuple) and msg and msg[0] == "channel" and len(socks) == 3:
            if chan is not None:
                chan.close()
            chan, hold = _Channel(msg[1], *socks), bool(msg[2])
            LOG.info("reading its own packet channel")
            continue
        for s in socks:
            s.close()
        if isinstance(msg, tuple) and msg and msg[0] == "channel_end":
            if chan is not None:
                chan.close()
                chan = None
        elif isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "hold":
            hold = bool(msg[1])


if __name__ == "__main__":
    try:
        child_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
    except KeyboardInterrupt:
        pass
    os._exit(0)
