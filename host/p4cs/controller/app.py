"""The p4cs controller: drives one switch through P4Runtime and runs the CS processor.

* connects with finsy and pushes the pipeline when asked; as a backup (another controller is
  primary) it writes nothing and waits to become primary;
* as primary, reconciles the static part of the data plane with the configuration
  (:mod:`p4cs.controller.reconcile`: only the difference is written): ports (egress_table),
  ARP answers for switch-owned addresses, virtual services (vip_table), real servers
  (backend_table, transparent mode), switch-local addresses (local_table), host routes
  (ipv4_route) and the clone session that carries FIN/RST copies; the flow table is kept:
  spliced connections of a previous controller run on until their entries expire;
* feeds every packet-in to the CS processor (:mod:`p4cs.csproc`) and executes its effects:
  packet-outs (on the direct packet channel of the DPDK target or the P4Runtime stream,
  :mod:`p4cs.controller.packetchan`), batched flow installs (both directions before the
  buffered request is relayed), delayed flow removals, logs;
* turns idle-timeout notifications into ``Engine.flow_expired``; the removal of flow entries
  and the harvest of their counters are :mod:`p4cs.controller.teardown`'s;
* keeps a session with the switch: when the connection is lost (the switch restarted or went
  away) it reconnects with backoff and reconciles again; flows whose entries are gone then
  (a restarted switch is empty) are handed to ``Engine.flow_lost``, which resets both ends;
  every change (connecting, connected, primary, backup, lost, reconnecting) is logged and
  shown by ``status`` and the metrics;
* with an ``ha`` section, only the holder of the store's lease connects
  (:mod:`p4cs.controller.ha`); losing primary, with or without it, makes a backup, never an exit;
* serves a control socket (JSON lines: status, connections, rules.load, and the live edits of
  :mod:`p4cs.controller.operator`) and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any

from finsy import (P4CloneSessionEntry, P4TableAction, P4TableEntry, P4TableMatch,
                   Switch, SwitchOptions)
from finsy.grpcutil import GRPCStatusCode
from finsy.p4client import P4ClientError
from finsy.switch import SwitchEvent
from finsy.proto import p4r

from p4cs.constants import REASON_ARP, REASON_VIP_MISS
from p4cs.controller import chanwriter, l4, neighbours, syncookies
from p4cs.controller.config import Config, ServiceConf, mac_to_int, rule_target_errors
from p4cs.controller.p4rt import (FlowEncoder, decode_match_key, read_counter_cells,
                                  read_entities, write_raw)
from p4cs.controller.operator import Operator, log_effect, quiet_engine
from p4cs.controller.packetchan import PacketIn, PacketPath, advertised_channel
from p4cs.controller.reconcile import BaseTables, FlowScan
from p4cs.controller.teardown import RawTimeoutSwitch, Teardown, key_of, removes_ended_entries
from p4cs.controller.spread import pure_syn_tuple, segment_tuple
from p4cs.controller.switchstats import SwitchStats
from p4cs.controller.traffic import FlowBook, Rates, inactive_per_server, meta_of
from p4cs.controller.workers import Workers, tune_gc
from p4cs.csproc import effects as fx
from p4cs.csproc.engine import Config as EngineConfig
from p4cs.csproc.engine import Engine, VirtualService
from p4cs.csproc.health import HealthCheck
from p4cs.csproc.packet import ip_int, ip_str
from p4cs.csproc.policy import Persistence
from p4cs.csproc.routing import PrefixRouter, Route, RuleSetDecider
from p4cs.csproc.schedulers import Server, ServerGroup
from p4cs.csproc.serverpool import ServerPool
from p4cs.csproc.timers import wake_time
from p4cs.errors import InputError

LOG = logging.getLogger("p4cs.controller")

TCP = 6
#: Flow-install WriteRequests in flight at once (_install_loop). One: every connection that
#: becomes ready while a Write is in flight goes in the next one. Two (a second Write at once)
#: gave ~4 % fewer connections per second for ~10 % more switch-side CPU and 1.4x the Writes
#: in interleaved runs (docs/benchmarks.md, new connections runs 19-20): a Write costs the
#: P4Runtime server and the controller ~0.5 ms of CPU whatever it carries.
INSTALL_WRITES_IN_FLIGHT = 1
#: Longest sleep of the timer loop: a timer armed by what does not wake it (a live edit, a
#: health change) runs at most this late.
TIMER_IDLE_S = 0.5
#: Idle-timeout notifications queued (each carries up to 1000 entries on the DPDK target).
IDLE_QUEUE = 4096
#: Delays between attempts to reach a lost switch: doubled from the first up to the last.
BACKOFF_S = (0.2, 5.0)
#: A session that lasted this long was not a failure: the next loss starts the backoff over.
STABLE_S = 10.0
#: Seconds a stopping controller may take before it exits anyway (ControllerApp._request_stop).
STOP_GRACE_S = 10.0
#: Seconds between samples of the traffic counters (rates in the status and the metrics);
#: a status request takes a new sample when the latest is older than ``FRESH_S``.
SAMPLE_S = 5.0
FRESH_S = 1.0
#: Session states, as logged and shown by `p4cs status` and the metrics.
STATES = ("connecting", "connected", "primary", "backup", "lost", "reconnecting")
#: Errors of a write that mean the session or the role is gone, not that the intent is bad.
_TRANSIENT = (GRPCStatusCode.UNAVAILABLE, GRPCStatusCode.CANCELLED,
              GRPCStatusCode.DEADLINE_EXCEEDED, GRPCStatusCode.PERMISSION_DENIED)


class FlowIds:
    """Allocator of flow ids (the index of a flow's counters).

    An id is free, owned (a flow this controller installed) or adopted: the id of an entry
    found in the flow table when the controller became primary that it does not know
    (installed by a previous controller). Adopted ids stay reserved until their entry expires,
    so a new flow never shares a live entry's counter slot."""

    FREE, OWNED, ADOPTED = 0, 1, 2

    def __init__(self, size: int):
        self.size = size
        self.reset((), ())

    def reset(self, owned: Iterable[int], adopted: Iterable[int]) -> None:
        """Start over from what the flow table holds."""
        self._state = bytearray(self.size)
        self._next = 1            # 0 is never handed out: it reads as "no flow"
        self._free: deque[int] = deque()     # released ids below _next
        self._used = 0
        self.adopted = 0
        for fid in owned:
            self._mark(fid, self.OWNED)
        for fid in adopted:
            self._mark(fid, self.ADOPTED)

    def _mark(self, fid: int, state: int) -> None:
        if 0 < fid < self.size and not self._state[fid]:
            self._state[fid] = state
            self._used += 1
            self.adopted += state == self.ADOPTED

    def get(self) -> int:
        if self._free:
            fid = self._free.popleft()
        else:
            fid = self._state.find(self.FREE, self._next)
            if fid < 0:
                self._next = self.size
                raise RuntimeError("flow ids exhausted")
            self._next = fid + 1
        self._state[fid] = self.OWNED
        self._used += 1
        return fid

    def put(self, fid: int) -> None:
        """Free an owned or adopted id (a free one is left alone)."""
        if not 0 < fid < self.size or not self._state[fid]:
            return
        self.adopted -= self._state[fid] == self.ADOPTED
        self._state[fid] = self.FREE
        self._used -= 1
        if fid < self._next:
            self._free.append(fid)

    def is_adopted(self, fid: int) -> bool:
        return 0 < fid < self.size and self._state[fid] == self.ADOPTED

    def available(self) -> int:
        return self.size - 1 - self._used


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _key_str(key: fx.FlowKey) -> str:
    """A flow key as text: source:port->destination:port."""
    return f"{ip_str(key.src_ip)}:{key.sport}->{ip_str(key.dst_ip)}:{key.dport}"


def _add_worker_status(part: dict, stats: dict, counts: dict, inactive: dict,
                       pooled: dict) -> None:
    """Add a worker's answer (``workers.py``) to the controller's own figures."""
    for k, v in part["csproc"].items():
        stats[k] = stats.get(k, 0) + v
    for name, (active, inact, total, pool) in part["servers"].items():
        if name in counts:
            a, t = counts[name]
            counts[name] = (a + active, t + total)
        inactive[name] = inactive.get(name, 0) + inact
        mine = pooled.setdefault(name, {"idle": 0, "opening": 0})
        pooled[name] = {k: mine.get(k, 0) + pool.get(k, 0) for k in mine.keys() | pool.keys()}


def _merge_rules(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """Rule hits of two engines: hits added, the latest hit's age."""
    merged = {(r["service"], r["rule"]): dict(r) for r in ours}
    for r in theirs:
        m = merged.get((r["service"], r["rule"]))
        if m is None:
            merged[(r["service"], r["rule"])] = dict(r)
        else:
            m["hits"] += r["hits"]
            m["last_hit_ago_s"] = min(m["last_hit_ago_s"], r["last_hit_ago_s"])
    return [merged[k] for k in sorted(merged, key=lambda k: (k[0], k[1] or ""))]


class AlreadyRunning(Exception):
    """The control socket belongs to a live controller."""


def _answers(path: Path) -> bool:
    """Whether a process accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _weight(w: Any) -> int:
    if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 1000:
        raise ValueError("'weight' must be an integer in [0, 1000]")
    return w


class ControllerApp:
    #: CS-processor engines (``--workers``): this one and n_workers - 1 worker processes
    n_workers = 1

    def __init__(self, cfg: Config, p4info: Path, p4blob: Path | None = None,
                 push_pipeline: bool = False, packet_io: str | None = None,
                 workers: int = 1, access_log: str | None = None, writes: str | None = None):
        self.cfg = cfg
        self.access_log = access_log
        self.writes = writes or cfg.switch.writes
        if self.writes not in chanwriter.MODES:
            raise ValueError(f"writes must be one of {', '.join(chanwriter.MODES)}, "
                             f"got {self.writes!r}")
        self.p4info = p4info
        self.p4blob = p4blob
        self.push = push_pipeline
        self.params = cfg.dataplane
        self.rule_stores: dict[str, Any] = {}
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.n_workers = workers
        self.engine = self._make_engine()
        self.flow_ids = FlowIds(self.params.flow_table_size)
        self.flow_of: dict[tuple, int] = {}       # flow key -> flow id
        self.flow_conn: dict[int, int] = {}       # flow id -> the CS processor's connection id
        self._adopted_syns: dict[tuple, list] = {}  # key -> SYNs held (_syn_on_adopted)
        self.book = FlowBook()                      # flow id -> what it carries, totals
        self.rates = Rates()
        self.traffic: dict = {}                     # the latest sample (sample_traffic)
        # flow id -> (its FlowMeta, the counts the latest traffic sample used)
        self._sampled: dict[int, tuple[Any, tuple[int, int]]] = {}
        self.switch_stats = SwitchStats(cfg.switch.target)  # the switch's own, sampled with it
        self.enc: FlowEncoder | None = None
        self.switch: Switch | None = None
        self.counters = {"packet_in": 0, "packet_out": 0, "flows_installed": 0, "install_writes": 0,
                         "flows_removed": 0, "install_errors": 0, "idle_timeouts": 0,
                         "fastpath_packets": 0, "fastpath_bytes": 0, "reconnects": 0,
                         "takeovers": 0, "teardown_rpcs": 0, "adopted_flows_removed": 0,
                         **dict.fromkeys(chanwriter.COUNTERS, 0)}
        self.state = "connecting"
        self._state_since = time.monotonic()
        self.election_id: int | None = None     # None: finsy's default (no store)
        self._socket_inode = 0
        # flow installs to batch: (effect, what its flows carry: None for worker 0's engine)
        self._installs: list[tuple[fx.InstallFlows, list | None]] = []
        # keys with an install queued or in flight, and the removals that wait for them
        self._installing: dict[tuple, int] = {}     # key -> installs of it not written yet
        self._after_install: list[fx.RemoveFlows] = []
        self._install_event = asyncio.Event()
        # removals' Deletes that go out with the next install Write (write_deletes): (keys,
        # serialized updates, future of their errors); None while no install loop runs
        self._deletes: list[tuple[set, list[bytes], asyncio.Future]] | None = None
        self._tick_wake: asyncio.Future | None = None   # the timer loop's sleep
        self._tick_at = 0.0                               # and when it ends
        self._stop = asyncio.Event()
        self.failure: str | None = None
        mode = packet_io or cfg.switch.packet_io
        port = cfg.switch.packet_port
        if port is not None and mode != "direct":
            LOG.warning("packet I/O over P4Runtime: switch.packet_port %s is not used (a switch "
                        "that sends its packet-ins there sends none on the stream)", port)
            port = None
        self.packets = PacketPath(mode, self._handle_packets, port)
        self._tasks: list[asyncio.Task] = []
        self.ready = asyncio.Event()
        self.operator = Operator(self)
        self.teardown = Teardown(self)
        self.l4_retired = l4.Retired()
        self._refresh: asyncio.Task | None = None
        self.workers = Workers(self, workers) if workers > 1 else None
        self._worker_status: dict[int, dict] = {}     # the latest answers of the workers
        if self.workers is not None:
            # the data plane spreads the punts over the workers' own channels where it can
            self.packets.spread = lambda: (self.workers.n, self.workers.spread.request())
            self.packets.on_lease = self.workers.attach
            self.packets.on_lease_end = self.workers.detach

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _decider(svc: ServiceConf, stores: dict[str, Any], groups: dict[str, Any]):
        """The service's decider: its rule store (checked against the protocol's fields and
        the configuration's ``groups`` at every load) or its URL-prefix routes."""
        if svc.rules is not None:
            from p4cs.rules.ruleset import protocol_problems
            from p4cs.rules.store import RuleStore
            store = RuleStore(check=lambda rs, proto=svc.protocol: (
                protocol_problems(rs, proto) + rule_target_errors(rs, groups)))
            errors = store.reload(svc.rules)
            if errors:
                raise ValueError(f"rules of service {svc.name}: " + "; ".join(map(str, errors)))
            stores[svc.name] = store
            return RuleSetDecider(store)
        routes = [Route(name=f"{svc.name}#{i + 1}", target=r.group, prefix=r.prefix or "/",
                        host=r.host) for i, r in enumerate(svc.routes)]
        return PrefixRouter(routes)

    @classmethod
    def engine_parts(cls, cfg: Config, stores: dict[str, Any], health: bool = True,
                     share: tuple[int, int] = (0, 1)) -> tuple[
            list[VirtualService], dict[str, ServerGroup], EngineConfig]:
        """The services, server groups and engine settings ``cfg`` asks for; the rule
        stores of its services go in ``stores``; ``health``: with the groups' health checks
        (a worker's engine follows the controller's); ``share``: (worker, workers), the
        worker's part of the SNAT ports and of the global half-bound limit (the per-client
        one holds in each worker: no client takes more than that of any worker's share).
        ValueError: a rule file is bad."""
        groups = {}
        l4_groups = cfg.l4_groups()
        for name, g in cfg.groups.items():
            if name in l4_groups:
                continue
            hc = g.health
            check = None if hc is None or not health else HealthCheck(hc.type, hc.interval_s, hc.timeout_s,
                                                        hc.rise, hc.fall, hc.path, hc.expect)
            groups[name] = ServerGroup(
                name, [Server(f"{name}/{s.address}:{s.port}", s.address, s.port, s.weight,
                              upper=s.upper_threshold, lower=s.lower_threshold)
                       for s in g.servers], g.scheduler, g.slow_start_s, check)
        content_groups = {n: g for n, g in cfg.groups.items() if n not in l4_groups}
        services = [VirtualService(svc.name, svc.vip, svc.port, cls._decider(svc, stores, content_groups),
                                   default_group=svc.default_group, mode=svc.mode,
                                   snat_ip=svc.snat_address, protocol=svc.protocol,
                                   persistence=None if svc.persistence is None else
                                   Persistence(svc.persistence.timeout_s,
                                               svc.persistence.netmask,
                                               svc.persistence.kind,
                                               svc.persistence.max_sessions,
                                               svc.persistence.name,
                                               svc.persistence.key),
                                   server_pool=None if svc.server_pool is None else
                                   ServerPool(svc.server_pool.idle, svc.server_pool.max_age_s))
                    for svc in cfg.services if not svc.l4]
        lim = cfg.limits
        ecfg = EngineConfig(max_header_bytes=lim.max_header_bytes, max_body_bytes=lim.max_body_bytes,
                            request_timeout=lim.request_timeout_s,
                            max_half_bound=-(-lim.max_pending // share[1]),
                            max_half_bound_per_client=lim.max_pending_per_client,
                            time_wait=lim.teardown_delay_s, flow_idle_timeout=lim.flow_idle_timeout_s,
                            half_closed_idle=lim.half_closed_idle_s,
                            window_scale=lim.window_scale, mss=lim.mss,
                            server_connect_timeout=lim.server_connect_timeout_s,
                            snat_share=share)
        return services, groups, ecfg

    def _make_engine(self) -> Engine:
        cfg = self.cfg
        services, groups, ecfg = self.engine_parts(cfg, self.rule_stores,
                                                   share=(0, self.n_workers))
        topo = neighbours.from_config(cfg, time.monotonic())
        self.resolver = neighbours.Resolver(topo, self._send_packets)
        engine = Engine(services, groups, topo, ecfg)
        quiet_engine(engine)
        return engine

    # ------------------------------------------------------------------ base tables
    def base_entries(self) -> list:
        """The static data-plane state this configuration asks for."""
        cfg, cpu = self.cfg, self.params.cpu_port
        entries: list = []
        add = entries.append
        for p in cfg.ports.values():
            add(P4TableEntry("egress_table", match=P4TableMatch(out_port=p.number),
                             action=P4TableAction("send", port=p.number)))
        add(P4TableEntry("egress_table", match=P4TableMatch(out_port=cpu), action=P4TableAction("send", port=cpu)))
        owned: dict[str, int] = {}     # switch-owned address -> MAC answering ARP for it
        for p in cfg.ports.values():
            owned[str(p.gateway.ip)] = mac_to_int(p.mac)
        first_mac = mac_to_int(next(iter(cfg.ports.values())).mac)
        for svc in cfg.services:
            port = cfg.port_for_ip(svc.vip)
            owned.setdefault(svc.vip, mac_to_int(cfg.ports[port].mac) if port is not None else first_mac)
            if svc.snat_address:
                sport = cfg.port_for_ip(svc.snat_address)
                owned.setdefault(svc.snat_address,
                                 mac_to_int(cfg.ports[sport].mac) if sport is not None else first_mac)
        for ip, mac in owned.items():
            add(P4TableEntry("arp_table", match=P4TableMatch(target_addr=ip), action=P4TableAction("arp_reply", mac=mac)))
            add(P4TableEntry("local_table", match=P4TableMatch(addr=ip), action=P4TableAction("punt_local")))
        backends: set[tuple[str, int]] = set()
        l4_groups = cfg.l4_groups()
        for svc in cfg.services:
            if svc.l4:
                continue
            add(P4TableEntry("vip_table", match=P4TableMatch(vip_addr=svc.vip, protocol=TCP, vip_port=svc.port),
                             action=P4TableAction("punt_vip")))
            if svc.mode == "transparent":
                for g in cfg.groups.values():
                    if g.name not in l4_groups:
                        for s in g.servers:
                            backends.add((s.address, s.port))
        for addr, port in sorted(backends):
            add(P4TableEntry("backend_table", match=P4TableMatch(server_addr=addr, protocol=TCP, server_port=port),
                             action=P4TableAction("punt_backend")))
        entries.extend(syncookies.service_entries(self.engine))
        entries.extend(l4.entries(cfg))
        entries.extend(self.l4_retired.entries())
        entries.extend(self.resolver.routes())
        return entries

    def clone_session(self) -> P4CloneSessionEntry:
        """FIN/RST of spliced flows are copied to the CPU port through this session."""
        return P4CloneSessionEntry(self.params.flow_end_session, replicas=[self.params.cpu_port])

    # ------------------------------------------------------------------ running
    async def _ready(self, sw: Switch) -> None:
        """Called whenever the channel is ready and whenever this controller's role changes
        (finsy cancels the loops of the previous role first). A backup writes nothing; the
        primary reconciles the switch with its intent, then starts the loops."""
        self.switch = sw
        if not sw.is_primary:
            self.ready.clear()
            self._set_state("backup", f"primary election id {sw.primary_id}")
            LOG.info("backup controller of %s (primary election id %d): writing nothing",
                     self.cfg.switch.address, sw.primary_id)
            return
        self.enc = FlowEncoder(sw.p4info)
        self.teardown.end_expiry = removes_ended_entries(sw, "flow_table")
        await syncookies.adopt_scales(sw, self.engine)
        scales = syncookies.offers(self.engine)
        base = BaseTables(self.base_entries(), self.clone_session(), "flow_table")
        try:
            written = await base.reconcile(sw)
        except P4ClientError as exc:
            if exc.code in _TRANSIENT:
                raise       # the session (or the role) went away: the session loop goes on
            # Nothing useful can run on a switch without its base tables: stop, non-zero.
            LOG.error("cannot program the switch: %s", exc)
            self.failure = f"cannot program the switch: {exc.message or exc}"
            self._stop.set()
            return
        LOG.info("programmed %d base entries (%d writes to reconcile the switch)",
                 len(base.entries), len(written))
        scanned = asyncio.Event()
        sw.create_task(self._idle_loop(sw, scanned))
        await asyncio.sleep(0)      # its queue is open before the flow table is read
        await self._adopt_flows(sw)
        scanned.set()
        if self.writes == "channel":
            sw.create_task(chanwriter.run(sw, advertised_channel, self.counters))
        for coro in (self.packets.run(sw), self._timer_loop(), self._install_loop(sw),
                     self.teardown.run(sw), self.resolver.run(sw, self.enc),
                     syncookies.run(sw, self.engine, keys_changed=self._keys_changed),
                     syncookies.follow_scales(sw, self.engine, scales)):
            sw.create_task(coro)
        self.ready.set()
        self._set_state("primary", f"election id {sw.election_id}")
        LOG.info("controller ready: %d service(s)", len(self.cfg.services))

    def _writes_active(self) -> str:
        """How the flow Writes go right now: ``channel`` or ``grpc``."""
        return "grpc" if chanwriter.writer_of(self.switch) is None else "channel"

    def _keys_changed(self) -> None:
        if self.workers is not None:
            self.workers.broadcast(("cookies", self.engine.cookies))

    async def _adopt_flows(self, sw: Switch) -> None:
        """Keep the flow table as it is. Flows this controller knows continue; entries it does
        not know (a previous controller's) are left to expire, their flow ids reserved until
        then; known flows whose entry is gone (expired while nobody listened, or the switch
        restarted) are lost: the CS processor resets their connections."""
        enc = self.enc
        scan = FlowScan(self.flow_of, decode_match_key, enc.flow_id)
        probe = p4r.Entity(table_entry=p4r.TableEntry(table_id=enc.splice.table_id))
        try:
            async for ent in read_entities(sw, [probe]):
                scan.add(ent.table_entry)
        except P4ClientError as exc:
            LOG.warning("cannot read the flow table (%s): its entries are kept, but the flow ids "
                        "of entries this controller did not install may be reused (their "
                        "counters then add up)", exc.message)
            return
        gone = scan.gone()
        for key in gone:
            del self.flow_of[key]
        self.flow_ids.reset(scan.kept.values(), scan.adopted)
        if gone:
            # Count and zero the counters of the slots they leave (unless an entry of another
            # controller uses the same slot now).
            stale = [f for f in gone.values() if not self.flow_ids.is_adopted(f)]
            for f in set(gone.values()) - set(stale):
                self.book.drop(f)       # its slot counts another controller's flow now
            if stale:
                await self.teardown.harvest(sw, stale)
            now = time.monotonic()
            for key in gone:
                await self.to_engine(fx.FlowKey(*key), "flow_lost", fx.FlowKey(*key), now)
        LOG.info("flow table: %d flow(s) continue, %d entr(ies) of another controller left to "
                 "expire, %d flow(s) gone", len(scan.kept), self.flow_ids.adopted, len(gone))

    async def _handle_packets(self, pkts: list[PacketIn], retaken: bool = False,
                              counted: bool = False) -> None:
        """Packet-ins (every one read at a wake-up): to the CS processor, their effects
        executed together. ``retaken``: packet-ins held back before (``_hold_syns``: counted
        and checked then); ``counted``: SYNs a worker read on its own channel and sent back
        (counted there, checked here)."""
        engine = self.engine
        now = time.monotonic()
        if not retaken and not counted:
            self.counters["packet_in"] += len(pkts)
        if not retaken and (self.flow_ids.adopted or
                            (self.workers is not None and self.workers.orphan_of)):
            pkts = self._hold_syns(pkts)
        if self.workers is not None:
            pkts = self.workers.dispatch(pkts, self._flow_frame)
        pkts = engine.superseded(pkts)      # handshake ACKs read with their request
        effects: list = []
        for payload, port, reason in pkts:
            if reason == REASON_ARP:
                self.resolver.reply(payload, port, now)
            else:
                effects += engine.handle(payload, port, reason, now)
        if effects:
            await self._execute(effects)
        self._timers_changed()

    def _hold_syns(self, pkts: list[PacketIn]) -> list[PacketIn]:
        """``pkts`` but the pure SYNs to hold back. The data plane punts a SYN when an entry
        has its 5-tuple; the CS processor answers it, and the client's ACK would meet that
        entry. An engine deletes the entries of a closed connection it knows before it answers
        (``Engine._reincarnate``); for the entries no engine knows, the controller does:

        * a dead worker's connection (``Workers.orphan_keys``): both its entries are deleted
          with the next removal batch, the SYN taken after it;
        * an entry this controller did not install (adopted after a restart or a takeover):
          ``_syn_on_adopted``."""
        out = []
        orphans = self.workers is not None and self.workers.orphan_of
        for pkt in pkts:
            if pkt[2] == REASON_VIP_MISS:
                t = pure_syn_tuple(pkt[0])
                if t is not None:
                    key = (t[0], t[1], TCP, t[2], t[3])
                    keys = self.workers.orphan_keys(key) if orphans else None
                    if keys is not None:
                        self.teardown.remove(keys, again=[pkt])
                        continue
                    if self.flow_ids.adopted and key not in self.flow_of and self.ready.is_set():
                        held = self._adopted_syns.get(key)
                        if held is not None:            # a retransmission meanwhile
                            held.append(pkt)
                        else:
                            self._adopted_syns[key] = [pkt]
                            self.switch.create_task(self._syn_on_adopted(self.switch, key))
                        continue
            out.append(pkt)
        return out

    async def _syn_on_adopted(self, sw: Switch, key: tuple) -> None:
        """A pure SYN on a 5-tuple that is no flow of this controller's while it holds entries
        of another's: if the flow table has an entry with that key, it and the entry of the
        reverse direction (the key the splice's rewrite leads to) are deleted and their counts
        harvested before the SYN (and any retransmission of it meanwhile) goes to the CS
        processor."""
        enc = self.enc
        try:
            found = await self._read_flow(sw, key)
            if found:
                rev = enc.reverse_key(found[0])
                if rev is not None and rev not in self.flow_of:
                    found += await self._read_flow(sw, rev)
                keys = [k for k in map(key_of, found) if k is not None]
                fids = [f for e in found if (f := enc.flow_id(e)) is not None
                        and self.flow_ids.is_adopted(f)]
                try:
                    await write_raw(sw, [enc.delete_raw(k) for k in keys])
                except P4ClientError as exc:
                    if not exc.is_not_found_only:       # NOT_FOUND: expired meanwhile
                        raise
                self.counters["adopted_flows_removed"] += len(keys)
                LOG.info("a new connection on the 4-tuple of %d adopted flow entr(ies): removed "
                         "first (%s)", len(keys), ", ".join(map(_key_str, keys)))
                if fids:
                    await self.teardown.harvest(sw, fids)
        except P4ClientError as exc:
            LOG.warning("cannot remove an adopted flow entry before a new connection on its "
                        "4-tuple: %s", exc)
        finally:
            pkts = self._adopted_syns.pop(key, [])
        await self._handle_packets(pkts, retaken=True)

    async def _read_flow(self, sw: Switch, key: tuple) -> list[p4r.TableEntry]:
        """The flow-table entry of ``key``, if there is one."""
        probe = p4r.Entity(table_entry=p4r.TableEntry.FromString(
            self.enc.match_entry_raw(fx.FlowKey(*key))))
        try:
            return [e.table_entry async for e in read_entities(sw, [probe])]
        except P4ClientError as exc:
            if exc.code != GRPCStatusCode.NOT_FOUND:
                raise
            return []

    def _flow_frame(self, frame: bytes) -> bool:
        """Whether ``frame`` (a FIN/RST copy) carries the key of an installed flow: it was
        copied as it arrived, not as the splice rewrote it."""
        t = segment_tuple(frame)
        return t is not None and (t[0], t[1], TCP, t[2], t[3]) in self.flow_of

    async def to_engine(self, key: fx.FlowKey, call: str, arg: Any, now: float) -> None:
        """``Engine.<call>(arg, now)`` in the engine that holds the connection of the flow
        ``key`` (a worker's, with ``--workers``), its effects executed."""
        w = 0 if self.workers is None else self.workers.owner(key)
        if w:
            self.workers.call(w, call, arg)
        else:
            await self._execute(getattr(self.engine, call)(arg, now))
            self._timers_changed()

    async def execute_worker(self, index: int, effects: list, metas: list) -> None:
        """Effects of worker ``index``'s engine; ``metas``: what the flows of its installs
        carry (traffic.FlowMeta, one list per InstallFlows)."""
        out: list = []
        it = iter(metas)
        for e in effects:
            if isinstance(e, fx.PacketOut):
                out.append((e.port, e.frame))
            elif isinstance(e, fx.InstallFlows):
                self._queue_install(e, next(it))
            elif isinstance(e, fx.RemoveFlows):
                self._flows_ended(e)
            elif isinstance(e, fx.CountFlows):
                self._count_flows(e)
        if out and self.ready.is_set():     # not primary: the retransmissions try again
            await self._send_packets(self.switch, out)

    async def _idle_loop(self, sw: Switch, scanned: asyncio.Event) -> None:
        async for mark, note in sw.read_idle_timeouts(queue_size=IDLE_QUEUE):
            await scanned.wait()    # entries read by _adopt_flows may expire while it runs
            await self.teardown.expired(sw, mark, note)

    async def _timer_loop(self) -> None:
        """Run the engine's timers when they are due. The loop sleeps until the earliest
        deadline rounded up to the timers' grain (``timers.wake_time``; at most
        ``TIMER_IDLE_S``); packets and calls that arm an earlier timer wake it
        (``_timers_changed``), the others leave it asleep: at thousands of connections per
        second a wake-up after every batch of packet-ins was 6 % of the controller's CPU."""
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            effects = self.engine.tick(now)
            if effects:
                await self._execute(effects)
            if self.l4_retired.expire(now) and (self._refresh is None or self._refresh.done()):
                self._refresh = asyncio.ensure_future(self.operator.refresh_base())
            deadline = self.engine.next_deadline()
            now = time.monotonic()
            wait = TIMER_IDLE_S if deadline is None else max(0.0, min(TIMER_IDLE_S,
                                                                      wake_time(deadline) - now))
            self._tick_at = now + wait
            wake = self._tick_wake = loop.create_future()
            handle = loop.call_at(loop.time() + wait, _resolve, wake)
            try:
                await wake
            finally:
                handle.cancel()
                self._tick_wake = None

    def _timers_changed(self) -> None:
        """Wake the timer loop if the engine's earliest deadline is now before its wake-up."""
        wake = self._tick_wake
        if wake is not None and not wake.done():
            deadline = self.engine.next_deadline()
            if deadline is not None and wake_time(deadline) < self._tick_at:
                wake.set_result(None)

    async def _execute(self, effects: list) -> None:
        sw = self.switch
        out: list = []
        for e in effects:
            if isinstance(e, fx.PacketOut):
                out.append((e.port, e.frame))
            elif isinstance(e, fx.InstallFlows):
                self._queue_install(e, None)
            elif isinstance(e, fx.RemoveFlows):
                self._flows_ended(e)
            elif isinstance(e, fx.CountFlows):
                self._count_flows(e)
            elif isinstance(e, fx.Log):
                log_effect(e)
        if out:
            await self._send_packets(sw, out)

    async def _send_packets(self, sw: Switch, out: list[tuple[int, bytes]]) -> None:
        """Packet-outs, (port, frame) each."""
        self.counters["packet_out"] += len(out)
        await self.packets.send(sw, self.enc, out)

    async def _install_loop(self, sw: Switch) -> None:
        """Batch the flow installs of all connections that are ready: one WriteRequest. Up to
        ``INSTALL_WRITES_IN_FLIGHT`` Writes are in flight; the batch is taken when one can go,
        so every connection that became ready meanwhile is in it. With more than one in
        flight, a batch with a key of one in flight waits for it first (its INSERT and the
        later MODIFY must not pass each other)."""
        inflight: collections.deque = collections.deque()   # (task, keys)
        self._deletes = []
        try:
            while True:
                await self._install_event.wait()
                # A free place first, then the batch: what becomes ready while a Write is
                # awaited goes in the same one (before, the batch was taken first and the
                # connections ready meanwhile made a Write of their own after it).
                for item in [x for x in inflight if x[0].done()]:
                    inflight.remove(item)
                    await item[0]
                while len(inflight) >= INSTALL_WRITES_IN_FLIGHT:
                    await inflight.popleft()[0]
                self._install_event.clear()
                batch, self._installs = self._installs, []
                dels, self._deletes = self._deletes, []
                keys: set = set()
                if INSTALL_WRITES_IN_FLIGHT > 1:    # with one, none is in flight now
                    keys = {tuple(f.key) for inst, _m in batch for f in inst.flows}
                    for dkeys, _u, _f in dels:
                        keys |= dkeys
                while inflight and (inflight[0][0].done()
                                    or any(keys & k for _t, k in inflight)):
                    await inflight.popleft()[0]
                inflight.append((sw.create_task(self._install(sw, batch, dels)), keys))
        finally:
            dels, self._deletes = self._deletes or [], None
            for _k, _u, fut in dels:
                if not fut.done():
                    fut.set_exception(ConnectionError("the session ended"))

    async def write_deletes(self, sw: Switch, keys: set, updates: list[bytes]) -> tuple[dict, bool]:
        """Write the Delete ``updates`` (of ``keys``) with the next flow-install Write, or alone
        when none is due (one WriteRequest either way: a removal costs no RPC of its own while
        connections are being bound). Returns the errors of the updates by index and whether
        they went with installs; raises P4ClientError when the whole Write failed."""
        if self._deletes is None:           # no install loop (not primary): on their own
            try:
                await write_raw(sw, updates)
            except P4ClientError as exc:
                if not exc.details:
                    raise
                return dict(exc.details), False
            return {}, False
        fut = asyncio.get_running_loop().create_future()
        self._deletes.append((keys, updates, fut))
        self._install_event.set()
        return await fut

    async def _install(self, sw: Switch, batch: list[tuple[fx.InstallFlows, list | None]],
                       dels: list | None = None) -> None:
        """One Write of ``batch`` (_install_loop): the flow ids and entries planned at once,
        the connections' packets sent once it is written. ``dels``: removals' Deletes
        (write_deletes) that go first in the same WriteRequest."""
        updates, owners, ukeys = [], [], []
        failed: set[int] = set()
        fresh: set[int] = set()       # update indexes: the INSERTs of new incarnations of a key
        superseded: list[int] = []    # flow ids of the previous incarnations of those keys
        for i, (inst, metas) in enumerate(batch):
            owned = [self._flow_of_conn(f) for f in inst.flows]
            if owned.count(None) > self.flow_ids.available():
                failed.add(i)        # no flow id (counter slot) left: refuse the connection
                continue
            for j, f in enumerate(inst.flows):
                key = tuple(f.key)
                fid = owned[j]
                if fid is None:
                    old = self.flow_of.get(key)
                    if old is not None:
                        # The 4-tuple's previous connection (closed) still holds the key:
                        # its entry is expiring or gone. The new one gets its own flow id.
                        superseded.append(old)
                        fresh.add(len(updates))
                    fid = self.flow_ids.get()
                    self.flow_of[key] = fid
                    self.flow_conn[fid] = f.conn_id
                    self.book.add(fid, meta_of(self.engine, f) if metas is None
                                  else metas[j])
                    utype = p4r.Update.INSERT
                else:
                    utype = p4r.Update.MODIFY
                updates.append(self._splice_update(f, fid, utype))
                owners.append(i)
                ukeys.append(f.key)
        if failed:
            LOG.warning("flow ids exhausted: %d connection(s) refused", len(failed))
        written = set(owners)
        try:
            failed |= await self._write_flows(sw, updates, owners, ukeys, fresh, dels or [])
        finally:    # written, failed, or the session ended: removals may follow now
            self._installed(batch)
        if superseded:
            # Their counts are final now (the entry is gone, or the write replaced it).
            self.teardown.superseded(superseded)
        self.counters["install_errors"] += len(failed)
        self.counters["flows_installed"] += sum(len(batch[i][0].flows)
                                                for i in written - failed)
        now = time.monotonic()
        out: list = []
        for i, (inst, _metas) in enumerate(batch):
            if i in failed:
                for f in inst.flows:
                    fid = self._flow_of_conn(f)
                    if fid is not None:
                        del self.flow_of[tuple(f.key)]
                        # (a removal waiting for this Write may have marked it ending)
                        self.teardown.release(fid)
                        self.book.drop(fid)
                conn_ids = {f.conn_id for f in inst.flows}
                for cid in conn_ids:
                    await self.to_engine(inst.flows[0].key, "install_failed", cid, now)
                # One direction may have gone in: remove whatever is there.
                self.teardown.remove([f.key for f in inst.flows])
            else:
                out.extend((p.port, p.frame) for p in inst.then)
        if out:
            await self._send_packets(sw, out)

    def _queue_install(self, e: fx.InstallFlows, metas: list | None) -> None:
        """``e`` goes into the next coalesced Write; ``metas``: what its flows carry (None:
        worker 0's engine knows)."""
        self._installs.append((e, metas))
        installing = self._installing
        for f in e.flows:
            k = tuple(f.key)
            installing[k] = installing.get(k, 0) + 1
        self._install_event.set()

    def _flows_ended(self, e: fx.RemoveFlows) -> None:
        if self._installing and any(tuple(k) in self._installing for k in e.keys):
            # Its connection's install of one of these keys is not written yet: the
            # removal follows it (it would find no owner, or overtake the Write).
            self._after_install.append(e)
        else:
            self.teardown.flows_ended(e)

    def _installed(self, batch: list[tuple[fx.InstallFlows, list | None]]) -> None:
        """The Write of ``batch`` is over: the removals that waited for its keys go on."""
        installing = self._installing
        for inst, _m in batch:
            for f in inst.flows:
                k = tuple(f.key)
                n = installing.get(k, 0) - 1
                if n > 0:
                    installing[k] = n
                else:
                    installing.pop(k, None)     # keys at zero leave
        waiting, self._after_install = self._after_install, []
        for e in waiting:
            self._flows_ended(e)

    def _flow_of_conn(self, f: fx.FlowSpec) -> int | None:
        """The flow id of ``f``'s key if the entry is ``f``'s connection's own (installed
        before: the write modifies it), None if the key is free or another connection's."""
        fid = self.flow_of.get(tuple(f.key))
        return fid if fid is not None and self.flow_conn.get(fid) == f.conn_id else None

    def _splice_update(self, f: fx.FlowSpec, fid: int, utype: int) -> bytes:
        return self.enc.splice_update(f, fid, utype)

    async def _write_flows(self, sw: Switch, updates: list[bytes], owners: list[int],
                           keys: list[fx.FlowKey], fresh: set[int],
                           dels: list | None = None) -> set[int]:
        """Write the updates; the batch indexes of the connections whose updates failed. A new
        incarnation's INSERT that meets the previous connection's entry still in place
        (ALREADY_EXISTS) is retried once as a DELETE and an INSERT. ``dels`` (write_deletes)
        go first in the same request; their futures get their own errors."""
        dels = dels or []
        pre = [u for _k, us, _f in dels for u in us]
        if not updates and not pre:
            return set()
        if updates:
            self.counters["install_writes"] += 1
        merged = bool(updates)
        try:
            try:
                await write_raw(sw, pre + updates)
            except P4ClientError as exc:
                if not exc.details:
                    for _k, _u, fut in dels:
                        if not fut.done():
                            fut.set_exception(exc)
                    if updates:
                        LOG.warning("flow install failed for %d connection(s): %s",
                                    len(set(owners)), exc)
                    return set(owners)
                details = dict(exc.details)
            else:
                details = {}
        except BaseException as exc:   # cancelled: the removals are told
            for _k, _u, fut in dels:
                if not fut.done():
                    fut.set_exception(ConnectionError(f"write interrupted: {exc!r}"))
            raise
        base = 0
        for _k, us, fut in dels:
            errs = {k - base: e for k, e in details.items() if base <= k < base + len(us)}
            base += len(us)
            if not fut.done():
                fut.set_result((errs, merged))
        bad = {k - base: e for k, e in details.items() if k >= base}
        if not bad:
            return set()
        retry = [k for k, e in bad.items()
                 if k in fresh and e.canonical_code == GRPCStatusCode.ALREADY_EXISTS]
        if retry:
            again = []
            for k in retry:
                again.append(self.enc.delete_raw(keys[k]))
                again.append(updates[k])
            try:
                await write_raw(sw, again)
                for k in retry:
                    del bad[k]
            except P4ClientError as exc2:
                # a DELETE may meet nothing (the entry expired meanwhile): only the INSERTs count
                still = ({retry[j // 2] for j in exc2.details if j % 2} if exc2.details
                         else set(retry))
                for k in set(retry) - still:
                    del bad[k]
        failed = {owners[k] for k in bad}
        if failed:
            kinds: dict[tuple[str, str], int] = {}
            for e in bad.values():
                kinds[(e.canonical_code.name, e.message)] = \
                    kinds.get((e.canonical_code.name, e.message), 0) + 1
            LOG.warning("flow install failed for %d connection(s): %d of %d updates (%s)",
                        len(failed), len(bad), len(updates),
                        "; ".join(f"{c} x{n}: {m}" for (c, m), n in sorted(kinds.items())))
        return failed

    def _count_flows(self, e: fx.CountFlows) -> None:
        """The packets of a half-closed connection's entries, read and handed to its engine
        (``Engine.flows_counted``). Rare (a connection half-closed for a while): one Read each."""
        fids = [self.flow_of.get(tuple(k)) for k in e.keys]
        if None in fids or self.state != "primary" or self.switch is None:
            return      # entries being removed or expiring, or not primary: asked again later
        self.switch.create_task(self._count_flows_read(self.switch, e.keys, fids))

    async def _count_flows_read(self, sw: Switch, keys: tuple, fids: list[int]) -> None:
        counts = await self._flow_counters(sw, fids)
        if any(self.flow_of.get(tuple(k)) != f for k, f in zip(keys, fids)):
            return      # removed or taken by a new connection meanwhile
        packets = sum(counts[f][0] for f in fids) if all(f in counts for f in fids) else None
        await self.to_engine(keys[0], "flows_counted", (keys[0], packets), time.monotonic())

    async def _flow_counters(self, sw: Switch, fids: list[int]) -> dict[int, tuple[int, int]]:
        """flow id -> (packets, bytes) of its counter cell."""
        try:
            return await read_counter_cells(sw, self.enc.flow_counter_id, fids)
        except P4ClientError as exc:
            LOG.warning("cannot read flow counters: %s", exc)
            return {}

    async def _live_counters(self, fids: list[int]) -> dict[int, tuple[int, int]]:
        """Counters of installed flows (none unless connected as primary)."""
        if not fids or self.state != "primary" or self.switch is None:
            return {}
        return await self._flow_counters(self.switch, fids)

    async def _uncounted(self, skip: Container[int] = ()) -> dict[int, tuple[int, int]]:
        """Counters of the flows whose counts are not in the totals yet (the installed ones,
        and those being removed or waiting to be harvested: out of flow_of, still in book),
        except ``skip``. Those harvested while the cells are read are in the totals then and
        left out (they count once)."""
        fids = set(self.flow_of.values()) | set(self.book.meta)
        live = await self._live_counters(sorted(f for f in fids if f not in skip))
        counted = set(self.flow_of.values()) | set(self.book.meta)
        return {fid: v for fid, v in live.items() if fid in counted}

    async def fastpath_totals(self) -> dict:
        """Fast-path packets/bytes: finished flows plus the flows installed now (when
        connected as primary)."""
        live = (await self._uncounted()).values()
        return {"packets": self.counters["fastpath_packets"] + sum(p for p, _ in live),
                "bytes": self.counters["fastpath_bytes"] + sum(b for _, b in live),
                "controller_packet_in": self.counters["packet_in"],
                "controller_packet_out": self.counters["packet_out"]}

    async def sample_traffic(self) -> dict:
        """Totals and rates per server and per service, now (kept for the metrics)."""
        # Not read: the entries left to expire after a FIN/RST (Teardown.ending; at thousands
        # of connections per second nearly all the entries), whose final counts come with their
        # expiry notification a few seconds later; meanwhile each counts with what an earlier
        # sample read of it, if one did, so that no total goes back.
        ending = self.teardown.ending
        live = await self._uncounted(skip=ending)
        prev, meta = self._sampled, self.book.meta
        for fid in ending:
            was = prev.get(fid)
            # the same flow (a flow id is reused once its flow is over)
            if was is not None and was[0] is meta.get(fid) and fid not in live:
                live[fid] = was[1]
        self._sampled = {fid: (m, v) for fid, v in live.items()
                         if (m := meta.get(fid)) is not None}
        now = time.monotonic()
        sample = self.rates.update(self.book.totals(live), now)
        sample["fastpath"] = {
            "packets": self.counters["fastpath_packets"] + sum(p for p, _ in live.values()),
            "bytes": self.counters["fastpath_bytes"] + sum(b for _, b in live.values())}
        self.traffic = sample
        await self.switch_stats.sample(self.switch)
        return sample

    async def flow_status(self, client: str) -> list[dict]:
        """The flows of the connection of ``client`` (ip:port) with their counters."""
        installed = set(self.flow_of.values())
        flows = [(fid, m) for fid, m in self.book.flows_of(client) if fid in installed]
        counts = await self._live_counters([fid for fid, _ in flows])
        return [{"flow_id": fid, "direction": m.direction, "client": m.client,
                 "service": m.service, "server": m.server,
                 "packets": counts.get(fid, (None, None))[0],
                 "bytes": counts.get(fid, (None, None))[1]} for fid, m in flows]

    async def _sample_loop(self) -> None:
        while True:
            await self.sample_traffic()
            await self._ask_workers()
            await asyncio.sleep(SAMPLE_S)

    # ------------------------------------------------------------------ operator surface
    def status(self) -> dict:
        st = self.engine.stats
        stats = st.as_dict() if hasattr(st, "as_dict") else dict(vars(st))
        inactive = inactive_per_server(self.engine)
        pooled = {srv.name: p for srv, p in self.engine.pools.sizes().items()}
        counts = {srv.name: (srv.active, srv.total) for g in self.engine.groups.values()
                  for srv in g.servers}
        rules = self.engine.rule_hits.listing(time.monotonic())
        for part in self._worker_status.values():
            _add_worker_status(part, stats, counts, inactive, pooled)
            rules = _merge_rules(rules, part["rules"])
        return {
            "switch": self.cfg.switch.address,
            "primary": self.state == "primary",
            "state": self.state,
            "state_for_s": round(time.monotonic() - self._state_since, 3),
            "election_id": self.election_id,
            "ha": None if self.cfg.ha is None else {"store": self.cfg.ha.store,
                                                    "prefix": self.cfg.ha.prefix},
            "services": [{"name": s.name, "vip": s.vip, "port": s.port, "mode": s.mode,
                          "protocol": s.protocol, "rules": str(s.rules) if s.rules else None,
                          "groups": self._service_groups(s),
                          "window_scale": self._offered_scale(s)}
                         for s in self.cfg.services],
            "groups": {name: [{"server": srv.name, "address": f"{ip_str(srv.ip)}:{srv.port}",
                               "scheduler": g.algorithm,
                               "active": counts[srv.name][0],
                               "inactive": inactive.get(srv.name, 0),
                               "total": counts[srv.name][1],
                               "up": srv.up, "weight": srv.weight, "overloaded": srv.overloaded,
                               "health": self.engine.health.state(srv),
                               "wscale": srv.scale if srv.scale_known else "unknown",
                               "pooled": pooled.get(srv.name, {"idle": 0, "opening": 0})}
                              for srv in g.servers]
                       for name, g in self.engine.groups.items()},
            "flows": len(self.flow_of),
            "adopted_flows": self.flow_ids.adopted,
            "packet_io": self.packets.active,
            "writes": self._writes_active(),
            "workers": [{"worker": 0, "pid": os.getpid(), "restarts": 0,
                         "accepted": self.engine.stats.accepted}] + (
                [] if self.workers is None else [
                    {**w, "accepted": self._worker_status.get(w["worker"], {})
                     .get("csproc", {}).get("accepted", 0)} for w in self.workers.listing()]),
            "counters": self._all_counters(),
            "neighbours": self.resolver.table.as_list(time.monotonic()),
            "csproc": stats,
            "rules": rules,
            "traffic": self.traffic,
            "dataplane": self.switch_stats.latest,
            "l4": l4.status(self.cfg, self.l4_retired, time.monotonic()),
        }

    def _all_counters(self) -> dict:
        """The controller's counters, with the packets the workers read and wrote on their
        own channels (their latest answers) added to its own."""
        out = {**self.counters, **self.resolver.counters, **self.packets.counters,
               **({} if self.workers is None else self.workers.counters)}
        for part in self._worker_status.values():
            for k, v in (part.get("channel") or {}).items():
                out[k] = out.get(k, 0) + v
        return out

    def _offered_scale(self, svc: ServiceConf) -> int | None:
        """The window scale the switch offers the clients of ``svc`` now (None: none)."""
        es = self.engine.services.get((ip_int(svc.vip), svc.port))
        return None if es is None else self.engine.svc_window_scale(es)

    def _service_groups(self, svc: ServiceConf) -> list[str]:
        """The groups a service sends connections to (a rule file may name any)."""
        if svc.l4:
            return [svc.default_group]
        if svc.rules is not None:
            return sorted(self.engine.groups)
        names = [r.group for r in svc.routes if r.group] + \
            ([svc.default_group] if svc.default_group else [])
        return sorted(set(names) & set(self.engine.groups))

    async def handle_control(self, req: dict) -> dict:
        resp = await self.operator.handle(req)
        if resp is not None:
            return resp
        op = req.get("op")
        if op == "status":
            if self.rates.age(time.monotonic()) >= FRESH_S:
                await self.sample_traffic()
            await self._ask_workers()
            return {"ok": True, "status": self.status()}
        if op == "flow":
            client = req.get("client")
            if not isinstance(client, str):
                return {"ok": False, "errors": ["'client' (ip:port, a string) is required"]}
            return {"ok": True, "flows": await self.flow_status(client)}
        if op == "fastpath":
            return {"ok": True, "fastpath": await self.fastpath_totals()}
        if op == "connections":
            conns = self.engine.connections()
            if self.workers is not None:
                conns = [{**c, "worker": 0} for c in conns]
                for part in (await self.workers.ask("connections")).values():
                    conns += part
            return {"ok": True, "connections": conns}
        if op == "templates":
            templates = self.engine.templates(time.monotonic())
            if self.workers is not None:
                for part in (await self.workers.ask("templates")).values():
                    templates += part
            return {"ok": True, "templates": templates}
        if op == "server.weight":
            try:
                self.engine.set_weight(str(req.get("group")), str(req.get("server")),
                                       _weight(req.get("weight")), time.monotonic())
            except ValueError as exc:
                return {"ok": False, "errors": [str(exc)]}
            return {"ok": True}
        if op == "rules.load":
            path = req.get("path")
            if not isinstance(path, str):
                return {"ok": False, "errors": ["'path' (a string) is required"]}
            stores = self.rule_stores
            if req.get("service"):
                stores = {k: v for k, v in stores.items() if k == req["service"]}
            if not stores:
                return {"ok": False, "errors": ["no service of this controller uses a rule file"]}
            errors: list[str] = []
            for name, store in stores.items():
                errs = store.reload(Path(path))
                errors.extend(f"{name}: {e}" for e in errs)
            self._rules_to_workers(stores)
            return {"ok": not errors, "errors": errors} if errors else {"ok": True}
        return {"ok": False, "errors": [f"unknown op {op!r}"]}

    async def _serve_control(self) -> asyncio.AbstractServer | None:
        path = Path(self.cfg.control.socket)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                if _answers(path):
                    raise AlreadyRunning(f"control socket {path} belongs to a running controller")
                path.unlink()       # left behind by a controller that is gone
        except OSError as exc:
            LOG.warning("control socket %s unavailable: %s", path, exc)
            return None

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    try:
                        req = json.loads(line)
                        if not isinstance(req, dict):
                            raise ValueError("a JSON object is expected")
                        resp = await self.handle_control(req)
                    except (ValueError, json.JSONDecodeError) as exc:
                        resp = {"ok": False, "errors": [f"bad request: {exc}"]}
                    writer.write(json.dumps(resp, default=str).encode() + b"\n")
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_unix_server(client, path=str(path), limit=1 << 20)
        self._socket_inode = path.stat().st_ino
        LOG.info("control socket %s", path)
        return server

    def _close_control(self, server: asyncio.AbstractServer) -> None:
        """Stop serving; remove the socket unless another controller has replaced it."""
        server.close()
        path = Path(self.cfg.control.socket)
        try:
            if path.stat().st_ino == self._socket_inode:
                path.unlink()
        except OSError:
            pass

    def _start_metrics(self) -> None:
        port = self.cfg.control.metrics_port
        if not port:
            return
        from p4cs.controller.metrics import start_metrics
        try:
            start_metrics(self, port)
        except OSError as exc:
            raise InputError(f"{self.cfg.path or 'configuration'}: control.metrics_port {port}: "
                             f"{exc.strerror or exc}") from None

    def _reload_all_rules(self) -> None:
        for name, store in self.rule_stores.items():
            svc = next(s for s in self.cfg.services if s.name == name)
            errs = store.reload(svc.rules)
            if errs:
                LOG.error("SIGHUP: rules of %s not reloaded: %s", name, "; ".join(map(str, errs)))
            else:
                LOG.info("SIGHUP: rules of %s reloaded from %s", name, svc.rules)
        self._rules_to_workers(self.rule_stores)

    def _rules_to_workers(self, stores: dict[str, Any]) -> None:
        """The workers load the rule files the stores hold now (those that loaded)."""
        if self.workers is not None:
            self.workers.broadcast(("rules", {name: st.path for name, st in stores.items()}))

    async def _ask_workers(self) -> None:
        """The workers' counters, connections per server and rule hits, for the status."""
        if self.workers is not None:
            self._worker_status = await self.workers.ask("status")

    def _set_state(self, state: str, detail: str = "") -> None:
        if state != self.state:
            self.state = state
            self._state_since = time.monotonic()
        LOG.info("switch %s: %s%s", self.cfg.switch.address, state, f" ({detail})" if detail else "")

    async def _session(self, force_pipeline: bool) -> None:
        """One connection to the switch, until it is lost or the controller stops. finsy
        calls ``_ready`` at every role change on it."""
        opts = SwitchOptions(p4info=self.p4info, p4blob=self.p4blob, p4force=force_pipeline,
                             device_id=self.cfg.switch.device_id, ready_handler=self._ready,
                             **({} if self.election_id is None
                                else {"initial_election_id": self.election_id}))
        sw = RawTimeoutSwitch("p4cs", self.cfg.switch.address, opts,
                              handled=lambda: self.counters["packet_in"])
        down = asyncio.Event()
        sw.ee.on(SwitchEvent.CHANNEL_UP, lambda _sw: self._set_state("connected"))
        sw.ee.on(SwitchEvent.CHANNEL_DOWN, lambda _sw: down.set())
        self._set_state("connecting")
        try:
            async with sw:
                self.switch = sw
                stop = asyncio.ensure_future(self._stop.wait())
                lost = asyncio.ensure_future(down.wait())
                try:
                    await asyncio.wait([stop, lost], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    lost.cancel()
        finally:
            self.switch = None
            self.ready.clear()

    async def _sessions(self) -> None:
        """Keep a session with the switch until the controller stops: after a loss, try
        again after a delay that doubles up to ``BACKOFF_S[1]``."""
        delay = BACKOFF_S[0]
        force = self.push       # --push: once; a reconnect keeps the switch's pipeline
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self._session(force)
                why = "switch disconnected"
            except P4ClientError as exc:
                why = exc.message or str(exc)
            except (OSError, asyncio.TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
            if self._stop.is_set():
                return
            force = False
            if time.monotonic() - started >= STABLE_S:
                delay = BACKOFF_S[0]
            self._set_state("lost", why)
            self._set_state("reconnecting", f"in {delay:.1f} s")
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            self.counters["reconnects"] += 1
            delay = min(2 * delay, BACKOFF_S[1])

    async def _elected(self) -> None:
        """With a store: wait for the lease as a backup, hold a session while it is held."""
        from p4cs.controller.ha import Lease, Store, TemplateSync
        ha = self.cfg.ha
        store = Store(ha.store, ha.prefix, ha.lease_ms / 2000)
        lease = Lease(store, ha.lease_ms)
        templates = TemplateSync(store)
        policy = self.engine.policy
        try:
            while not self._stop.is_set():
                self._set_state("backup", f"waiting for the lease in {ha.store}")
                eid = await lease.acquire(self._stop)
                if eid is None:
                    return
                self.counters["takeovers"] += 1
                self.election_id = eid
                LOG.info("holding the lease (%s): primary with election id %d", lease.holder, eid)
                taken = policy.import_templates(await templates.load(), time.monotonic())
                if taken:
                    LOG.info("took over %d persistence template(s) from the store", taken)
                keep = asyncio.ensure_future(lease.keep())
                run = asyncio.ensure_future(self._sessions())
                sync = asyncio.ensure_future(
                    templates.run(lambda: policy.export_templates(time.monotonic())))
                try:
                    await asyncio.wait([keep, run], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (run, keep, sync):
                        task.cancel()
                    await asyncio.gather(run, keep, sync, return_exceptions=True)
                if keep.done() and not keep.cancelled():
                    LOG.warning("lost the lease: %s", keep.result())
            await lease.release()
        finally:
            await store.close()

    def _request_stop(self) -> None:
        """SIGTERM / SIGINT: stop; a shutdown still unfinished after ``STOP_GRACE_S`` seconds
        is logged with what it waits for, and the process exits anyway (status 1)."""
        if self._stop.is_set():
            return
        self._stop.set()
        asyncio.get_running_loop().call_later(STOP_GRACE_S, self._stop_overdue)

    @staticmethod
    def _stop_overdue() -> None:
        pending = sorted({repr(t.get_coro()) for t in asyncio.all_tasks() if not t.done()})
        LOG.error("shutdown did not finish within %.0f s, exiting; still pending: %s",
                  STOP_GRACE_S, "; ".join(pending)[:2000])
        logging.shutdown()
        os._exit(1)

    async def run(self) -> None:
        tune_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_all_rules)
        server = await self._serve_control()
        if self.workers is not None:
            await self.workers.start()
        sampler = asyncio.ensure_future(self._sample_loop())
        try:
            self._start_metrics()
            await (self._elected() if self.cfg.ha is not None else self._sessions())
        finally:
            sampler.cancel()
            if self.workers is not None:
                await self.workers.stop()
            if server is not None:
                self._close_control(server)
        if self.failure:
            raise SystemExit(f"p4cs controller: {self.failure}")
