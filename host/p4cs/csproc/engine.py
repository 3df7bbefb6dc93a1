"""The CS processor: TCP delayed binding as a pure state machine over Ethernet frames.

See docs/csproc.md for the design (sequence spaces, ownership of acknowledged bytes,
options policy, limits).  Nothing here does I/O or reads a clock: the caller passes
``now`` (monotonic seconds) and executes the returned effects in order.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
from dataclasses import dataclass
from typing import Iterable, Protocol

from . import packet as P
from .admission import Admission
from .cookies import SynCookies
from .effects import (TCP, CountFlows, Effect, FlowKey, FlowSpec, InstallFlows, Log,
                      PacketOut, RemoveFlows)
from .framing import RequestFramer, one_request
from .health import HealthMonitor
from .httpcookie import ResponseWatch, request_cookie, session_key
from .keepalive import Ka, KeepAlive
from .dialogue import DIALOG, REPLAY, Dialogues
from .mail import make_front
from .packet import (ACK, FIN, MOD32, PSH, RST, SYN, BadFrame, Segment, ip_int, ip_str,
                     seq_rel)
from .policy import COOKIE_KINDS, Choice, Persistence, Policy
from .reassembly import Reassembler, RequestBuffer
from .rulehits import RuleHits
from .schedulers import Server, ServerGroup
from .serverpool import Pools, ServerPool
from .stats import Stats
from .timers import Timers
from . import tls
from ..capabilities import PROTOCOL_FIELDS

from ..constants import (  # packet-in reasons: p4cs.constants is their one source
    REASON_BACKEND_MISS,  # flow miss, server -> client / SNAT address
    REASON_FLOW_END,  # copy of a FIN/RST of a spliced flow
    REASON_IP_EXCEPTION,  # IPv4 options or fragment towards a virtual service
    REASON_LOCAL,  # to a switch-local address (SNAT replies may come this way)
    REASON_VIP_MISS,  # flow miss, client -> VIP
)

# Connection states
RECV = "recv"            # handshake done with the client, reading the request
CONNECTING = "connecting"  # request classified, SYN sent to the server
RELAYING = "relaying"    # client->server flow installed; waiting for the server to ACK
#                          the bytes the switch acknowledged itself (see docs)
SPLICED = "spliced"      # both flows installed: the data plane carries the connection
CLOSING = "closing"      # the switch answered itself (4xx/5xx) and is closing
TIME_WAIT = "time_wait"  # flows scheduled for removal; tombstone until they are gone
RESETTING = "resetting"  # its flows are gone (switch restarted, or server down): resetting
#                          its ends, which only the data plane knew the sequence numbers of

_CLIENT, _SERVER = 1, 2   # the legs of a connection, as bits

_HALF_BOUND = (RECV, CONNECTING, CLOSING, DIALOG, REPLAY)

PROTOCOLS = tuple(PROTOCOL_FIELDS)
AUTO = "auto"        # Config.window_scale: learn the servers' scale

REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout",
           413: "Content Too Large", 431: "Request Header Fields Too Large",
           302: "Found", 500: "Internal Server Error", 503: "Service Unavailable"}


class Topology(Protocol):
    """What the engine needs to know about the switch's surroundings."""

    def port_mac(self, port: int) -> bytes:
        """The switch's own MAC address on data-plane port ``port``."""

    def route(self, ip: int) -> tuple[int, bytes] | None:
        """(port, next-hop MAC) towards host ``ip`` (a real server), or None."""

    def port_ip(self, port: int) -> int | None:
        """The switch's own address on data-plane port ``port`` (health probes come from
        it), or None."""


class StaticTopology:
    """A fixed table: ``port_macs`` {port: mac}; ``hosts`` {ip: (port, mac)};
    ``default`` (port, mac) for other destinations (a gateway) or None; ``port_ips``
    {port: the switch's address there}."""

    def __init__(self, port_macs: dict, hosts: dict | None = None, default=None,
                 port_ips: dict | None = None):
        self._pm = {int(p): P.mac_bytes(m) for p, m in port_macs.items()}
        self._pip = {int(p): ip_int(ip) for p, ip in (port_ips or {}).items()}
        self._hosts = {ip_int(ip): (int(p), P.mac_bytes(m))
                       for ip, (p, m) in (hosts or {}).items()}
        self._default = None if default is None else (int(default[0]),
                                                      P.mac_bytes(default[1]))

    def port_mac(self, port: int) -> bytes:
        return self._pm[port]

    def route(self, ip: int):
        return self._hosts.get(ip, self._default)

    def port_ip(self, port: int) -> int | None:
        return self._pip.get(port)


def scatter(n: int) -> float:
    """A fixed share in [0, 1) for the integer ``n``, scattered (Fibonacci hashing): what
    ``n`` and ``n + 1`` get are far apart."""
    return ((n * 0x9E3779B1) & 0xFFFFFFFF) / 4294967296.0


@dataclass
class Config:
    mss: int = 1460                 # MSS advertised to clients; <= every server's MSS
    max_header_bytes: int = 8192    # request line + headers (431 above)
    max_body_bytes: int = 65536     # buffered body when the rules need it (413 above)
    request_timeout: float = 10.0   # complete request within this (408, slowloris)
    max_half_bound: int = 10000     # connections with state but no flows (see admission)
    max_half_bound_per_client: int = 1000   # of them from one client address (RST above)
    max_ooo_segments: int = 16      # out-of-order segments kept per connection
    max_buffered_bytes: int = 64 << 20  # all connections together (backpressure above)
    server_syn_rto: float = 1.0     # first SYN retransmission towards a server
    server_syn_retries: int = 2     # then give up on that server (1+2+4 = 7 s worst)
    # each retransmission interval is stretched by up to this fraction, a fixed share per
    # connection: SYNs sent in one burst (many clients at once) are not retransmitted in one
    # burst again, into the same full queue of a slow switch
    server_syn_jitter: float = 0.5
    server_connect_timeout: float = 7.0   # give up on a server's SYN after this anyway
    redispatch: int = 1             # other servers of the group tried after a failure
    relay_rto: float = 0.2          # retransmission of switch-owned request bytes
    relay_retries: int = 6
    time_wait: float = 2.0          # delay before removing the flows of a closed conn
    # extra life of the tombstone after that delay: it outlives the entries a FIN or RST left
    # to expire (3 s after their last packet on DPDK), so that a new SYN that still meets
    # them finds it (_reincarnate)
    tombstone_margin: float = 3.0
    # a spliced connection of which one side's FIN was seen and the other's not (the other
    # side is still sending, or its FIN copy was lost on the way to the CPU): its entries'
    # packet counts are read this often (CountFlows), and when no packet went either way
    # in between the connection is taken as closed (0: never, the idle timeout ends it);
    # 30 s as HAProxy's `timeout client-fin` example (IPVS's tcpfin: 120 s)
    half_closed_idle: float = 30.0
    close_timeout: float = 5.0      # max life of a connection the switch is closing
    reset_probes: int = 3           # probes to each leg of a RESETTING connection, one per
    reset_probe_interval: float = 0.6  # interval (Linux answers out-of-window segments at most
    #                                    every 0.5 s); then the connection is forgotten
    flow_idle_timeout: float = 300.0
    snat_ports: tuple[int, int] = (20000, 59999)
    snat_share: tuple[int, int] = (0, 1)  # (worker, workers): the ports p % workers == worker
    log_interval: float = 1.0       # rate limit of repetitive debug/warning logs
    ttl: int = 64
    # Window scale offered to clients that offer one (RFC 7323).  The data plane copies
    # server->client windows untouched, so it must be the servers' own scale: "auto" learns
    # it per service from the servers' SYN-ACKs (scaling stays off until it is known); a
    # number is used as it is; None: never offered (64 KiB windows).  docs/csproc.md §6.
    window_scale: int | str | None = "auto"
    smtp_max_size: int = 10 << 20   # SIZE advertised by SMTP services; <= every server's

    def __post_init__(self):
        if not 88 <= self.mss <= 65495:
            raise ValueError("mss out of range")
        if self.max_header_bytes < 64 or self.max_body_bytes < 0:
            raise ValueError("bad request limits")
        ws = self.window_scale
        if ws is not None and ws != AUTO and not (type(ws) is int and 0 <= ws <= 14):
            raise ValueError('window_scale must be 0..14, "auto" or None')
        if self.smtp_max_size < 1:
            raise ValueError("smtp_max_size must be positive")


@dataclass
class VirtualService:
    """One VIP:port.  ``mode`` is ``transparent`` (the server sees the client's address
    and must route its replies through the switch) or ``snat`` (the server sees
    ``snat_ip`` and a port from the pool).  ``protocol`` is ``http`` (the client speaks
    first), ``tls`` (decided on the ClientHello, TLS not terminated: docs/csproc.md
    section 14) or ``smtp``, ``pop3``, ``imap`` (the switch greets the client and talks to
    it up to the command the rules decide on: section 13).  ``persistence``: client-IP,
    TLS-session or (http) cookie persistence (``policy.Persistence``), or None.
    ``server_pool``: idle connections to the servers kept open for new clients
    (``serverpool.ServerPool``, section 16; http and snat only), or None."""

    name: str
    vip: str | int
    port: int
    decider: object                 # routing.Decider
    default_group: str | None = None
    mode: str = "transparent"
    snat_ip: str | int | None = None
    protocol: str = "http"
    persistence: Persistence | None = None
    server_pool: ServerPool | None = None

    def __post_init__(self):
        self.vip = ip_int(self.vip)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"service {self.name}: protocol must be one of "
                             + ", ".join(PROTOCOLS))
        if self.mode not in ("transparent", "snat"):
            raise ValueError(f"service {self.name}: mode must be transparent or snat")
        if self.persistence is not None and self.persistence.kind == "tls-session" \
                and self.protocol != "tls":
            raise ValueError(f"service {self.name}: tls-session persistence needs protocol tls")
        if self.persistence is not None and self.persistence.kind in COOKIE_KINDS \
                and self.protocol != "http":
            raise ValueError(f"service {self.name}: {self.persistence.kind} persistence needs "
                             "protocol http")
        if self.server_pool is not None:
            if self.protocol != "http":
                raise ValueError(f"service {self.name}: a server pool needs protocol http")
            if self.mode != "snat":
                raise ValueError(f"service {self.name}: a server pool needs mode snat (a "
                                 "pooled connection is opened before its client is known)")
        if self.mode == "snat":
            if self.snat_ip is None:
                raise ValueError(f"service {self.name}: snat mode needs snat_ip")
            self.snat_ip = ip_int(self.snat_ip)


class ClientLeg:
    """The client's side: the client terminates its TCP on the VIP."""

    __slots__ = ("ip", "port", "vip", "vport", "sw_port", "mac", "isn", "our_isn",
                 "snd_nxt", "mss", "win", "ws", "rws", "nxt", "fin")

    def __init__(self, seg: Segment, sw_port: int):
        self.ip, self.port, self.vip, self.vport = seg.sip, seg.sport, seg.dip, seg.dport
        self.sw_port = sw_port     # data-plane port towards the client
        self.mac = seg.smac
        self.isn = (seg.seq - 1) & MOD32       # the client's ISN
        self.our_isn = (seg.ack - 1) & MOD32   # the switch's (the SYN cookie)
        self.snd_nxt = seg.ack
        self.win = seg.window      # the client's last advertised window, as sent
        self.ws = None      # client's window scale, when scaling is on for this conn
        self.rws = 0        # shift of the windows the switch advertises to the client
        self.fin = False    # FIN seen from the client once spliced
        # mss, and nxt (the client's next sequence number once spliced), are set later


class ServerLeg:
    """The server's side: the switch's SYN, then the splice."""

    __slots__ = ("ip", "port", "src_ip", "src_port", "sw_port", "mac", "key", "isn",
                 "our_isn", "mss", "syn_tries", "syn_sent", "nxt", "fin")

    def __init__(self):
        self.key = None        # (ip, port, src_ip, src_port): the entry in conns_s
        self.src_port = None   # src_ip:src_port is the client as the server sees it
        self.fin = False       # FIN seen from the server once spliced
        # ip, port (the server's), sw_port, mac (next hop), our_isn (the switch's ISN
        # towards the server: the client's, plus the bytes a front does not replay), isn,
        # mss, syn_tries, syn_sent, nxt are set when the server is chosen and when it answers


class Conn:
    """Connection-wide state; the legs are ``cl`` and ``sl``, the request ``req`` (None
    once spliced or closed), the policy's ``choice`` (None before server selection).
    ``front`` is the dialogue of a server-speaks-first service (None for HTTP); ``tail``
    the offset in ``req`` from which the client's bytes are relayed as they are."""

    __slots__ = (
        "id", "svc", "state", "cl", "sl", "req", "framer", "front", "tail", "choice",
        "rule", "created", "deadline", "queued", "tgen", "c2s", "s2c", "relay_tries", "owned_end",
        "resp", "resp_seq", "our_fin_acked", "close_hard", "close_tries", "probe_legs",
        "reset_legs", "relay", "hello", "watch", "dp_end", "shift", "ka", "half_count",
    )

    def __init__(self, cl: ClientLeg, req: RequestBuffer):
        self.cl = cl
        self.sl = ServerLeg()
        self.req = req
        self.front = None
        self.tail = 0
        self.choice = None
        self.deadline = None
        self.queued = None
        self.tgen = 0
        self.resp = None
        self.our_fin_acked = False
        self.rule = None
        self.c2s = self.s2c = None
        # Not None: the request goes to the server rewritten by one_request (b"" until the
        # splice, then the rewritten bytes, which _relay_segments sends instead of req.buf).
        self.relay = None
        # Not None: a tls.ServerHelloWatch; the server's first bytes come to the engine
        # until its ServerHello told which TLS session it holds (docs/csproc.md section 14).
        self.hello = None
        # Not None: an httpcookie.ResponseWatch; the server's first response comes to the
        # engine up to the end of its header block (cookie persistence, section 15).
        self.watch = None
        self.dp_end = 0        # legs whose FIN or RST hit their flow entry (_CLIENT | _SERVER)
        # The server's sequence number of the client's byte at offset 0, minus the client's
        # (mod 2**32): 0 on a connection the switch opened with the client's ISN, P - C on a
        # pooled connection of ISN P (docs/csproc.md section 16).
        self.shift = 0
        # Not None: a keepalive.Ka; every request of the connection is classified on its
        # own (a NONSTICKY decision, docs/csproc.md section 17).
        self.ka = None
        self.half_count = None  # packets of its entries at the last CountFlows (half-closed)


class Engine:
    def __init__(self, services: Iterable[VirtualService],
                 groups: dict[str, ServerGroup] | Iterable[ServerGroup],
                 topology: Topology, config: Config | None = None,
                 secret: bytes | None = None, stats: Stats | None = None):
        self.cfg = config or Config()
        self.topo = topology
        self.stats = stats or Stats()
        self.rule_hits = RuleHits()
        # Log effects nobody would write: "spliced" (the access log's lines) and debug ones
        # on the per-connection path are not built when these are off (the controller turns
        # them off without an access log or below debug level): two per connection otherwise.
        self.log_spliced = True
        self.log_debug = True
        secret = secret if secret is not None else os.urandom(32)
        self.cookies = SynCookies(secret)
        self.services = {(s.vip, s.port): s for s in services}
        self.policy = Policy(self.services.values(), groups, self.cfg)
        self.groups = self.policy.groups
        self.health = HealthMonitor(self.groups.values(), topology, self._pm, secret,
                                    self.cfg.ttl, self._health_change, self._learn_scale,
                                    self.cfg.window_scale == AUTO)
        self._svc_ws: dict[str, int | None] = {}   # service -> scale offered (auto)
        self._svc_ws_last: dict[str, int] = {}     # service -> last scale it offered
        self.pools = Pools(self.cfg, topology, self.policy, self._pm, self.stats, secret,
                           self._learn_scale)
        self.reasm = Reassembler(self.stats, self.cfg)
        self.admission = Admission(self.cfg.max_half_bound, self.cfg.max_half_bound_per_client,
                                   self.stats)
        self.dlg = Dialogues(self)
        self.ka = KeepAlive(self)
        self.conns_c: dict[tuple, Conn] = {}
        self.conns_s: dict[tuple, Conn] = {}
        self.by_id: dict[int, Conn] = {}
        self._next_id = 1
        self._timers = Timers()
        self._pmac: dict[int, bytes] = {}
        self._rl: dict[str, list] = {}
        self._options()

    def _options(self) -> None:
        self._mss_opt = P.mss_option(self.cfg.mss)

    # ------------------------------------------------------------------ window scale
    def svc_window_scale(self, svc: VirtualService) -> int | None:
        """The window scale the switch offers the clients of ``svc`` (None: none)."""
        ws = self.cfg.window_scale
        if ws != AUTO:
            return ws
        s = self._svc_ws.get(svc.name, -1)
        if s == -1:
            s = self._svc_ws[svc.name] = self._learned_scale(svc)
            if s is not None:
                self._svc_ws_last[svc.name] = s
        return s

    def seed_window_scale(self, svc: VirtualService, scale: int) -> None:
        """Offer ``scale`` to the clients of ``svc`` while no scale of its servers is known
        (a new primary takes the one its predecessor learned); the first scale learned from
        the servers replaces it."""
        if self.cfg.window_scale == AUTO and self.svc_window_scale(svc) is None:
            if not any(s.scale_known for s in self._svc_servers(svc)):
                self._svc_ws[svc.name] = self._svc_ws_last[svc.name] = scale

    def _svc_servers(self, svc: VirtualService):
        """The servers ``svc`` can send connections to: those of the groups its routes and
        default group name; every group for a rule set (a rule may name any)."""
        names = getattr(svc.decider, "group_names", None)
        if names is None:
            for g in self.groups.values():
                yield from g.servers
            return
        for n in set(names()) | {svc.default_group}:
            g = self.groups.get(n)
            if g is not None:
                yield from g.servers
            elif n in self.policy.servers_by_name:          # a forward rule's server
                yield self.policy.servers_by_name[n][0]

    def _learned_scale(self, svc: VirtualService) -> int | None:
        """The smallest scale the service's servers announced, None if one of them announced
        none (it then reads, and sends, windows unscaled) or no scale is known yet.  A server
        with a larger scale than offered is read by clients as having a smaller receive
        window than it has: safe (docs/csproc.md section 6)."""
        scale = None
        for s in self._svc_servers(svc):
            if not s.scale_known:
                continue
            if s.scale is None:
                return None
            if scale is None or s.scale < scale:
                scale = s.scale
        return scale

    def _learn_scale(self, server: Server, scale: int | None, now: float) -> list:
        """``server`` announced window scale ``scale`` (None: none) in a SYN-ACK."""
        if server.scale_known and server.scale == scale:
            return []
        old = server.scale if server.scale_known else "unknown"
        server.scale, server.scale_known = scale, True
        self._svc_ws.clear()
        if self.cfg.window_scale != AUTO:
            return []
        return [Log("info", "server window scale learned",
                    {"server": server.name, "wscale": "none" if scale is None else scale,
                     "was": "none" if old is None else old})]

    # ------------------------------------------------------------------ public API
    def handle(self, frame: bytes, ingress_port: int, reason: int,
               now: float) -> list[Effect]:
        """Process one packet-in.  Never raises: bad frames are counted and dropped."""
        st = self.stats
        st.packets += 1
        self.policy.clock = now
        try:
            try:
                seg = P.parse(frame)
            except BadFrame as e:
                return self._bad(e.args[0], now, ingress_port, reason)
            except Exception:  # noqa: BLE001 - e.g. a non-bytes frame
                return self._bad("garbage", now, ingress_port, reason)
            if reason == REASON_VIP_MISS or reason == REASON_IP_EXCEPTION:
                return self._from_client(seg, frame, ingress_port, now)
            if reason == REASON_BACKEND_MISS or reason == REASON_LOCAL:
                return self._from_server(seg, frame, ingress_port, now)
            if reason == REASON_FLOW_END:
                return self._fin_copy(seg, now)
            return self._bad("unknown_reason", now, ingress_port, reason)
        except Exception as e:  # noqa: BLE001 - a bug must not kill the controller
            st.bad_frames += 1
            return self._rl_log("internal", "error", "internal error handling a packet",
                                now, error=repr(e), reason=reason)

    def superseded(self, pkts: list) -> list:
        """``pkts``, a batch of packet-ins ((frame, port, reason) each), without the handshake
        ACKs a request of the same batch supersedes (``packet.superseded_acks``): a client's
        ACK of the data plane's SYN-ACK whose 4-tuple has no connection here, or a closed one
        (a tombstone), followed in the batch by the client's first data segment, which carries
        the same seq and ack. That segment validates the cookie and opens the connection as
        the ACK would have, a few microseconds later; one frame fewer to handle. A pure ACK
        of a connection that lives is always handled (a duplicate ACK means something)."""
        if len(pkts) < 2:
            return pkts
        found = P.superseded_acks(pkts, REASON_VIP_MISS)
        if not found:
            return pkts
        get = self.conns_c.get
        skip = set()
        for i, key in found:
            c = get(key)
            if c is None or c.state == TIME_WAIT:
                skip.add(i)
        if not skip:
            return pkts
        self.stats.acks_superseded += len(skip)
        return [p for i, p in enumerate(pkts) if i not in skip]

    def tick(self, now: float) -> list[Effect]:
        """Run the timers due at ``now`` (call every 10-100 ms)."""
        out: list[Effect] = []
        self.policy.expire(now)
        try:
            out += self.health.tick(now)
        except Exception as e:  # noqa: BLE001
            out += self._rl_log("internal", "error", "internal error in health checks", now,
                                error=repr(e))
        try:
            out += self.pools.tick(now)
        except Exception as e:  # noqa: BLE001
            out += self._rl_log("internal", "error", "internal error in server pools", now,
                                error=repr(e))
        tm = self._timers
        get = self.by_id.get
        # Every entry due comes out at once, in deadline order; an entry re-armed for a later
        # deadline that is due too runs in that order among them (``later``); what a timeout
        # arms for ``now`` or before comes out with the next batch.
        while batch := tm.pop_all_due(now):
            later: list = []
            i, n = 0, len(batch)
            while True:
                if later and (i == n or later[0] < batch[i]):
                    when, cid, gen = heapq.heappop(later)
                elif i < n:
                    when, cid, gen = batch[i]
                    i += 1
                else:
                    break
                c = get(cid)
                if c is None or c.tgen != gen:
                    continue
                c.queued = None
                d = c.deadline
                if d is None:
                    continue
                if d > when:            # armed later meanwhile: its entry goes in now (_arm)
                    c.queued = d
                    if d <= now:
                        heapq.heappush(later, (d, cid, gen))
                    else:
                        tm.push(d, cid, gen)
                    continue
                c.deadline = None
                try:
                    out += self._timeout(c, now)
                except Exception as e:  # noqa: BLE001
                    out += self._rl_log("internal", "error", "internal error in a timer", now,
                                        error=repr(e), conn=cid)
        return out

    def templates(self, now: float) -> list[dict]:
        """The persistence templates (ipvsadm -L -c style)."""
        return self.policy.template_list(now)

    def next_deadline(self) -> float | None:
        """Earliest pending timer (may be stale: calling tick() then is harmless)."""
        t = self._timers.next_deadline()
        for d in (self.health.next_deadline(), self.pools.next_deadline()):
            if d is not None and (t is None or d < t):
                t = d
        return t

    def _conn_of_flow(self, key: FlowKey) -> Conn | None:
        """The connection whose client or server leg the flow ``key`` carries."""
        k = (key.src_ip, key.sport, key.dst_ip, key.dport)
        return self.conns_c.get(k) or self.conns_s.get(k)

    def flow_expired(self, key: FlowKey, now: float) -> list[Effect]:
        """The data plane aged out ``key`` (idle timeout notification)."""
        c = self._conn_of_flow(key)
        if c is None or c.state not in (SPLICED, RELAYING):
            return []
        self.stats.flows_expired += 1
        if self._half_closed(c):
            # Half-closed: a FIN's hit moved that entry to the short expiry profile, and the
            # side still closing may be retransmitting with backoff under loss (no SACK: its
            # gaps grow past those seconds). Closed as after both FINs, the tombstone carries
            # its late segments in software for time_wait + tombstone_margin.
            return self._teardown(c, now, "half-closed, flow entry expired")
        keys = self._installed(c)
        self._free(c)
        return [RemoveFlows(keys, 0.0),
                Log("debug", "flows idle-expired", {"conn": c.id, "key": tuple(key)})]

    def flows_counted(self, arg: tuple[FlowKey, int | None], now: float) -> list[Effect]:
        """``(key, packets)``: the packets the entries of a ``CountFlows`` effect carried (their
        sum; None: not read). A half-closed connection whose entries carried none since the
        previous count is closed (its other FIN went unseen)."""
        key, packets = arg
        c = self._conn_of_flow(key)
        if c is None or not self._half_closed(c):
            return []
        if packets is not None and packets == c.half_count:
            self.stats.half_closed_idle += 1
            return self._teardown(c, now, "half-closed and idle")
        c.half_count = packets
        if self.cfg.half_closed_idle > 0:
            self._arm(c, now + self.cfg.half_closed_idle)
        return []

    def flow_lost(self, key: FlowKey, now: float) -> list[Effect]:
        """The entries of ``key`` are gone without an idle timeout (the switch restarted):
        the connection cannot go on, and both its ends must be reset (:meth:`_start_reset`)."""
        c = self._conn_of_flow(key)
        if c is None or c.state not in (SPLICED, RELAYING):
            return []
        self.stats.flows_lost += 1
        return self._start_reset(c, now, _CLIENT | _SERVER, 0.0, "flow entries lost")

    def install_failed(self, conn_id: int, now: float) -> list[Effect]:
        """The controller could not write an InstallFlows batch of ``conn_id``: reset
        both sides and forget the connection."""
        c = self.by_id.get(conn_id)
        if c is None:
            return []
        self.stats.install_failures += 1
        if c.state == TIME_WAIT:   # already closed: just make sure nothing stays behind
            keys = [c.c2s.key, c.s2c.key]
            self._free(c)
            return [RemoveFlows(keys, 0.0)]
        return self._abort(c, now, "flow install failed", level="warning")

    def set_weight(self, group: str, server: str, weight: int, now: float) -> None:
        """New weight of ``server`` (its name) in ``group``: 0 drains it; ValueError if
        there is no such server."""
        g = self.groups.get(group)
        s = next((s for s in g.servers if s.name == server), None) if g else None
        if s is None:
            raise ValueError(f"no server {server!r} in group {group!r}")
        g.set_weight(s, weight, now)

    def reconfigure(self, services: Iterable[VirtualService],
                    groups: dict[str, ServerGroup], config: Config, now: float) -> list[Effect]:
        """Serve ``services`` with ``groups`` under ``config`` from now on (a live edit).
        Running connections keep their service and server; a group or server of the same
        name as a running one is updated in place (``ServerGroup.update``), so its
        connections and counters carry on.  Returns the resets of the pooled connections
        the new configuration no longer has a use for."""
        merged = {}
        for name, g in groups.items():
            old = self.groups.get(name)
            if old is not None:
                old.update(g, now)
                g = old
            merged[name] = g
        for f in dataclasses.fields(config):
            setattr(self.cfg, f.name, getattr(config, f.name))
        self._options()
        services = list(services)
        self.policy.replace(services, merged)
        self.groups = merged
        self.health.replace(merged.values(), self.cfg.window_scale == AUTO)
        self.services = {(s.vip, s.port): s for s in services}
        self._svc_ws.clear()
        return self.pools.replace(services, self._svc_servers)

    def reset_server(self, server: Server, now: float, why: str = "server down") -> list[Effect]:
        """End the connections bound to ``server`` (``why``): spliced ones are reset (both
        sides) and their flows removed, connecting ones go to another server; its idle
        pooled connections are reset."""
        out: list = self.pools.drop_server(server)
        for c in list(self.by_id.values()):
            ch = c.choice
            if ch is None or ch.server is not server:
                continue
            if c.state in (SPLICED, RELAYING):
                out += self._reset_spliced(c, now, why)
            elif c.state == CONNECTING:
                out += self._next_server(c, server, now, why)
        return out

    def _health_change(self, server: Server, group: ServerGroup, up: bool, now: float,
                       detail: str) -> list:
        """A health check changed ``server``'s state: tell the scheduler; a server that
        went down takes no new connections, and its connections are reset (both sides)
        and their flows removed."""
        group.set_up(server, up, now)
        out: list = [Log("warning" if not up else "info",
                         "server " + ("up" if up else "down"),
                         {"server": server.name, "group": group.name, "why": detail})]
        if up:
            return out
        return out + self.reset_server(server, now)

    def connections(self) -> list[dict]:
        """A snapshot for listings (ipvsadm -Lc style)."""
        out = []
        for c in self.by_id.values():
            srv = None if c.choice is None else c.choice.server
            out.append({"id": c.id, "state": c.state, "service": c.svc.name,
                        "client": f"{ip_str(c.cl.ip)}:{c.cl.port}",
                        "server": None if srv is None else f"{ip_str(srv.ip)}:{srv.port}",
                        "rule": c.rule})
        return out

    # ------------------------------------------------------------------ helpers
    def _pm(self, port: int) -> bytes:
        m = self._pmac.get(port)
        if m is None:
            m = self._pmac[port] = P.mac_bytes(self.topo.port_mac(port))
        return m

    def _rl_log(self, _key: str, level: str, msg: str, now: float, **fields) -> list:
        """At most one log per ``_key`` per ``log_interval``; reports the suppressed."""
        e = self._rl.get(_key)
        if e is None:
            self._rl[_key] = [now, 0]
            return [Log(level, msg, fields)]
        if now - e[0] >= self.cfg.log_interval:
            if e[1]:
                fields["suppressed"] = e[1]
            e[0], e[1] = now, 0
            return [Log(level, msg, fields)]
        e[1] += 1
        return []

    def _bad(self, kind: str, now: float, port: int, reason: int) -> list:
        st = self.stats
        st.bad_frames += 1
        st.bad_kinds[kind] = st.bad_kinds.get(kind, 0) + 1
        return self._rl_log("bad:" + kind, "debug", "dropped bad frame", now, kind=kind,
                            port=port, reason=reason)

    def _arm(self, c: Conn, when: float) -> None:
        """``c``'s timer runs at ``when`` (and not at any time armed before). ``c.queued`` is
        the deadline of its entry in the timers: a later ``when`` adds no entry (it waits
        behind that one and goes in when it comes out, in ``tick``), an earlier one adds one
        and leaves the other behind (its ``tgen`` no longer matches). The half-close and the
        tombstone come after the server SYN's timer is queued and add none: a third as many
        entries held."""
        c.deadline = when
        q = c.queued
        if q is None or when < q:
            c.tgen += 1
            c.queued = when
            self._timers.push(when, c.id, c.tgen)

    def _disarm(self, c: Conn) -> None:
        c.deadline = None           # its entry, if any, runs nothing when it comes out

    def _to_client(self, c: Conn, seq: int, ack: int, flags: int, payload: bytes = b"",
                   window: int | None = None, options: bytes = b"") -> PacketOut:
        cl = c.cl
        return PacketOut(cl.sw_port, P.build(
            self._pm(cl.sw_port), cl.mac, cl.vip, cl.ip, cl.vport, cl.port, seq, ack, flags,
            self._rwnd(c) if window is None else window, payload, options, self.cfg.ttl))

    def _to_server(self, c: Conn, seq: int, ack: int, flags: int, payload: bytes = b"",
                   options: bytes = b"") -> PacketOut:
        # The client's window, as the client advertised it: with scaling on, the server
        # applies the client's own scale (relayed in our SYN), except in the SYN itself,
        # whose window field is never scaled.
        cl, sl = c.cl, c.sl
        win = cl.win
        if flags & SYN and cl.ws:
            win <<= cl.ws
        return PacketOut(sl.sw_port, P.build(
            self._pm(sl.sw_port), sl.mac, sl.src_ip, sl.ip, sl.src_port, sl.port, seq, ack,
            flags, min(win, 65535), payload, options, self.cfg.ttl))

    def _rwnd(self, c: Conn) -> int:
        # Right edge cisn+1+cap never moves left; this window is also the buffer limit.
        # With scaling the space is rounded up to a whole unit: the right edge may then
        # lie up to 2**S-1 bytes beyond cap (reassembly trims there), never before it.
        free = max(0, c.req.cap - len(c.req.buf))
        rws = c.cl.rws
        if rws:
            free = (free + (1 << rws) - 1) >> rws
        return min(65535, free)

    def _synack_opts(self, ws: int | None) -> bytes:
        """Options of our SYN-ACK: MSS, plus our scale ``ws`` when scaling is on (both sides
        offer it)."""
        if ws is None:
            return self._mss_opt
        return self._mss_opt + P.wscale_option(ws)

    @staticmethod
    def _rst_reply(seg: Segment, port: int, smac: bytes) -> PacketOut:
        """RFC 9293 reset for a segment that belongs to no connection."""
        if seg.flags & ACK:
            seq, ack, flags = seg.ack, 0, RST
        else:
            ln = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN
                                                                      else 0)
            seq, ack, flags = 0, seg.seq + ln, RST | ACK
        return PacketOut(port, P.build(smac, seg.smac, seg.dip, seg.sip, seg.dport,
                                       seg.sport, seq, ack, flags, 0))

    def _rcv_nxt(self, c: Conn) -> int:
        req = c.req
        return (c.cl.isn + 1 + len(req.buf) + (1 if req.fin_rcvd else 0)) & MOD32

    def _log(self, c: Conn, level: str, msg: str, **fields) -> Log:
        fields["conn"] = c.id
        fields["client"] = f"{ip_str(c.cl.ip)}:{c.cl.port}"
        fields["service"] = c.svc.name
        return Log(level, msg, fields)

    # ------------------------------------------------------------------ client side
    def _from_client(self, seg: Segment, frame: bytes, port: int, now: float) -> list:
        c = self.conns_c.get((seg.sip, seg.sport, seg.dip, seg.dport))
        if c is None:
            svc = self.services.get((seg.dip, seg.dport))
            if svc is None:
                self.stats.not_for_us += 1
                return []
            return self._new_client_segment(svc, seg, port, now)
        st = c.state
        if st == RECV or st == CONNECTING:
            return self._client_segment(c, seg, now)
        if st == SPLICED and c.ka is not None:
            return self.ka.client(c, seg, frame, now)
        if st == SPLICED or st == RELAYING or st == TIME_WAIT:
            if st == TIME_WAIT and self._new_incarnation(c, seg, now):
                return self._reincarnate(c, seg, port, now)
            return self._sw_splice(c, seg, frame, True, now)
        if st == CLOSING:
            return self._closing_segment(c, seg, now)
        if st == DIALOG or st == REPLAY:
            return self._client_segment(c, seg, now)
        if st == RESETTING:
            if c.reset_legs & _CLIENT and self._new_incarnation(c, seg, now):
                return self._reincarnate(c, seg, port, now)
            return self._resetting_segment(c, seg, port, _CLIENT)
        return []

    def _new_client_segment(self, svc: VirtualService, seg: Segment, port: int,
                            now: float) -> list:
        f = seg.flags
        st = self.stats
        if f & RST:
            return []
        if f & SYN:
            if f & ACK:
                return [self._rst_reply(seg, port, self._pm(port))]
            st.syn_received += 1
            ws = self.svc_window_scale(svc) if seg.wscale is not None else None
            # The cookie carries the client's scale only when scaling is on (we offer ours).
            isn = self.cookies.make(seg.sip, seg.dip, seg.sport, seg.dport, seg.seq,
                                    seg.mss, now, None if ws is None else seg.wscale)
            st.syncookies_sent += 1
            return [PacketOut(port, P.build(
                self._pm(port), seg.smac, seg.dip, seg.sip, seg.dport, seg.sport, isn,
                seg.seq + 1, SYN | ACK, self.synack_window(svc), b"",
                self._synack_opts(ws), self.cfg.ttl))]
        if not f & ACK:
            return []
        ck = self.cookies.check_opts(seg.sip, seg.dip, seg.sport, seg.dport,
                                     (seg.seq - 1) & MOD32, (seg.ack - 1) & MOD32, now)
        if ck is None:
            st.syncookies_invalid += 1
            return self._rl_log("cookie", "debug", "ACK without valid SYN cookie dropped",
                                now, client=f"{ip_str(seg.sip)}:{seg.sport}")
        admitted, victim = self.admission.admit(seg.sip)
        if not admitted:
            per_client = st.half_bound < self.cfg.max_half_bound
            return [self._rst_reply(seg, port, self._pm(port))] + self._rl_log(
                "half_bound_client" if per_client else "half_bound", "warning",
                ("max_half_bound_per_client" if per_client else "max_half_bound")
                + " reached: connection reset", now, client=f"{ip_str(seg.sip)}:{seg.sport}",
                limit=(self.cfg.max_half_bound_per_client if per_client
                       else self.cfg.max_half_bound))
        out = [] if victim is None else self._evict(victim, now)
        cl = ClientLeg(seg, port)
        cl.mss, cws = ck
        if cws is not None:                  # scaling on: both sides offered it
            rws = self.svc_window_scale(svc)
            if rws is None:                  # no longer offered: the scale of the SYN-ACK
                rws = self._svc_ws_last.get(svc.name)
            if rws is not None:
                cl.ws, cl.rws = cws, rws
        c = Conn(cl, RequestBuffer(self._cap(svc)))
        c.id = self._next_id
        self._next_id += 1
        c.svc = svc
        c.created = now
        self.conns_c[(cl.ip, cl.port, cl.vip, cl.vport)] = c
        self.by_id[c.id] = c
        st.accepted += 1
        self.admission.opened(c)
        if svc.protocol != "http":
            if svc.protocol == "tls":
                c.state = RECV
                c.framer = tls.HelloFramer(self.cfg.max_header_bytes)
                self._arm(c, now + self.cfg.request_timeout)
                return out + self._client_segment(c, seg, now)
            c.state = DIALOG
            c.front = make_front(svc.protocol, svc.name, self.cfg)
            return out + self.dlg.start(c, now) + self._client_segment(c, seg, now)
        c.state = RECV
        c.framer = RequestFramer(bool(getattr(svc.decider, "needs_body", False)),
                                 self.cfg.max_header_bytes, self.cfg.max_body_bytes)
        self._arm(c, now + self.cfg.request_timeout)
        return out + self._client_segment(c, seg, now)

    def _new_incarnation(self, c: Conn, seg: Segment, now: float) -> bool:
        """Whether a client segment on the 4-tuple of ``c`` (closed, TIME_WAIT) opens a new
        connection, as a host's TIME_WAIT lets a new SYN through (RFC 1122 4.2.2.13): a pure
        SYN (its entry still in the flow table sent it here), or the ACK of a handshake the
        data plane answered with a valid cookie once the entry was gone. A late segment of
        the closed connection is neither."""
        f = seg.flags
        if f & SYN:
            return not f & ACK
        return bool(f & ACK) and not f & RST and self.cookies.check_opts(
            seg.sip, seg.dip, seg.sport, seg.dport, (seg.seq - 1) & MOD32,
            (seg.ack - 1) & MOD32, now) is not None

    def _reincarnate(self, c: Conn, seg: Segment, port: int, now: float) -> list:
        """End the tombstone ``c`` for a new connection on its 4-tuple. A SYN is answered
        once the closed connection's entries are deleted (the client's ACK must not meet
        them); the ACK of a cookie handshake starts the new connection at once (its entries
        are gone: the ACK missed)."""
        keys = self._installed(c)
        svc = c.svc
        self._free(c)
        self.stats.reincarnations += 1
        out = self._new_client_segment(svc, seg, port, now)
        if seg.flags & SYN:
            return [RemoveFlows(keys, 0.0, then=tuple(e for e in out if isinstance(e, PacketOut))),
                    *(e for e in out if not isinstance(e, PacketOut))]
        return out

    def _evict(self, c: Conn, now: float) -> list:
        """Make room for a client with fewer half-bound connections: reset ``c``, an idle
        connection of the address that holds the most."""
        out = [self._to_client(c, c.cl.snd_nxt, 0, RST, window=0)]
        self._free(c)
        return out + self._rl_log("evict", "warning",
                                  "max_half_bound reached: idle connection of the biggest "
                                  "holder reset", now, client=f"{ip_str(c.cl.ip)}:{c.cl.port}",
                                  limit=self.cfg.max_half_bound)

    def _client_segment(self, c: Conn, seg: Segment, now: float) -> list:
        """A segment from the client while the switch terminates its TCP."""
        f = seg.flags
        cl, req = c.cl, c.req
        base = (cl.isn + 1) & MOD32
        if f & RST:
            rel = seq_rel(seg.seq, base)
            if 0 <= rel <= req.cap:
                self.stats.client_resets += 1
                out = [self.dlg.server_rst(c)] if c.state == REPLAY else []
                self._free(c)
                return out + [self._log(c, "debug", "client reset before splicing")]
            return []
        if f & SYN:
            if seg.seq == cl.isn and not f & ACK:   # our SYN-ACK was lost
                return [self._to_client(c, cl.our_isn, seg.seq + 1, SYN | ACK, b"",
                                        min(65535, req.cap),
                                        self._synack_opts(None if cl.ws is None else cl.rws))]
            return []
        if not f & ACK:
            return []
        cl.win = seg.window
        out: list = []
        n0 = len(req.buf)
        gap, dup = self.reasm.segment(req, seq_rel(seg.seq, base), seg.payload, bool(f & FIN))
        new = len(req.buf) > n0
        if c.state == RECV:
            fr = c.framer
            if new:
                fr.feed(bytes(req.buf[n0:]))
            if fr.error is not None:
                return self._refuse(c, fr.error, fr.error_reason, now)
            if fr.ready:
                return self._decide(c, now)
            if new:
                self.admission.active(c)
            if req.fin_rcvd:
                self.stats.client_early_close += 1
                if not req.buf:
                    return self._close_with(c, None, now, "client closed without request")
                return self._close_with(c, 400, now,
                                        "client closed before a complete request")
            if new or gap or dup:
                # The request is incomplete: acknowledge what is contiguous so that the
                # client can send more.  These bytes are now the switch's to deliver.
                req.acked = len(req.buf) + (1 if req.fin_rcvd else 0)
                out.append(self._to_client(c, cl.snd_nxt, self._rcv_nxt(c), ACK))
            return out
        if c.state == DIALOG:
            return self.dlg.client_segment(c, seg, new, gap, dup, now)
        # CONNECTING or REPLAY: keep buffering (bounded by the window), do not acknowledge: the
        # server will, through the splice.  Only answer gaps, so fast retransmit works.
        if gap and req.acked:
            out.append(self._to_client(c, cl.snd_nxt, (base + req.acked) & MOD32, ACK))
        return out

    def _drop_request(self, c: Conn) -> None:
        """The request is with the server, or abandoned: forget it and its bytes."""
        if c.req is not None:
            self.reasm.release(c.req)
            c.req = None
        c.relay = None

    def synack_window(self, svc: VirtualService) -> int:
        """The window of the service's SYN-ACK (never scaled, RFC 7323); the data plane
        announces the same one when it answers the SYN itself."""
        return min(65535, self._cap(svc))

    def _cap(self, svc: VirtualService) -> int:
        """Bytes the switch buffers for one request: the right edge of its window."""
        cfg = self.cfg
        if getattr(svc.decider, "needs_body", False):
            return cfg.max_header_bytes + cfg.max_body_bytes
        return cfg.max_header_bytes

    def _decide(self, c: Conn, now: float) -> list:
        cl = c.cl
        self.admission.busy(c)
        out, ch, server = self._choose(c, now)
        if ch.status is not None and ch.status != 503:
            return out + self._answer(c, ch, now)
        c.choice = ch
        if server is None:
            return out + self._answer(c, ch, now)
        if not ch.sticky:
            pers = c.svc.persistence
            if c.svc.protocol == "http" and not (pers is not None and pers.kind in COOKIE_KINDS):
                # every later request is classified on its own (section 17)
                c.ka = Ka(cl.snd_nxt, now)
                return out + self._connect(c, server, now)
            out += self._rl_log("nonsticky", "warning",
                                "NONSTICKY on a service with cookie persistence or not HTTP: "
                                "connection stays on its first server", now, rule=c.rule)
        if c.front is None and getattr(c.svc.decider, "rejects", False) \
                and c.svc.protocol == "http":
            # A later request on this connection would ride the fast path unclassified:
            # the server is asked to close after this one (docs/csproc.md section 9).  The
            # switch owns the request (acknowledges it) because it relays it rewritten.
            req = c.req
            c.relay = b""
            req.acked = len(req.buf) + (1 if req.fin_rcvd else 0)
            out.append(self._to_client(c, cl.snd_nxt, self._rcv_nxt(c), ACK))
        return out + self._connect(c, server, now)

    def _choose(self, c: Conn, now: float) -> tuple[list, Choice, Server | None]:
        """Classify the buffered request of ``c``: (effects, the policy's Choice, the server
        to connect to or None)."""
        st = self.stats
        cl = c.cl
        out: list = []
        raw = bytes(c.req.buf) if c.front is None else c.front.decider_input(c.req.buf)
        try:
            d = c.svc.decider.decide(raw, (ip_str(cl.ip), cl.port), (ip_str(cl.vip), cl.vport))
        except Exception as e:  # noqa: BLE001 - a rules bug answers 503, not a crash
            out.append(self._log(c, "error", "decider raised", error=repr(e)))
            return out, Choice(503, "decider error"), None
        st.decided += 1
        c.rule = getattr(d, "rule", None)
        self.rule_hits.hit(c.svc.name, c.rule, now)
        for msg in getattr(d, "logs", ()) or ():
            out.append(self._log(c, "info", str(msg), rule=c.rule))
        pers = c.svc.persistence
        if pers is not None and pers.kind == "tls-session":
            offer = tls.Offer(c.framer.hello)
            c.hello = tls.ServerHelloWatch(offer)
            ch, server = self.policy.choose(c.svc, d, cl.ip, cl.vip, offer.keys)
        elif pers is not None and pers.kind in COOKIE_KINDS:
            v = request_cookie(bytes(c.req.buf), pers.name.encode())
            keys = () if v is None else (session_key(v),) if pers.kind == "cookie-learn" \
                else (v.decode("latin-1"),)
            ch, server = self.policy.choose(c.svc, d, cl.ip, cl.vip, keys)
        else:
            ch, server = self.policy.choose(c.svc, d, cl.ip, cl.vip)
        if ch.unknown_group is not None:
            out.append(self._log(c, "warning", "rule names an unknown group",
                                 rule=c.rule, group=ch.unknown_group))
        return out, ch, server

    def _answer(self, c: Conn, ch: Choice, now: float) -> list:
        """The switch answers the request of ``c`` itself: the choice's 403 or 302, or
        503 (no server)."""
        if ch.status == 403:
            self.stats.rejected += 1
            return self._close_with(c, 403, now, ch.why)
        if ch.status == 302:
            self.stats.redirected += 1
            return self._close_with(c, 302, now, ch.why, location=ch.location)
        return self._refuse(c, 503, ch.why, now)

    def _connect(self, c: Conn, server: Server, now: float) -> list:
        ch = c.choice
        route = self.topo.route(server.ip)
        if route is None:
            return [self._log(c, "warning", "no route to server", server=server.name)] \
                + self._next_server(c, server, now, "no route")
        cl, sl = c.cl, c.sl
        out: list = []
        if c.svc.server_pool is not None:
            p = self.pools.take(c.svc, server, cl.mss, cl.ws)
            out = self.pools.fill(c.svc, server, cl.mss, cl.ws, now)
            if p is not None:
                return out + self._splice_pooled(c, server, p, now)
        src = self.policy.source(c.svc, cl.ip, cl.port)
        if src is None:
            return self._refuse(c, 503, "SNAT port pool exhausted", now)
        sl.src_ip, sl.src_port = src
        skey = (server.ip, server.port, sl.src_ip, sl.src_port)
        if skey in self.conns_s:
            self._release_source(c)
            return self._next_server(c, server, now, "server-side 4-tuple in use")
        self.policy.bind(ch, server)
        sl.ip, sl.port = server.ip, server.port
        sl.sw_port, sl.mac = route[0], P.mac_bytes(route[1])
        sl.key = skey
        self.conns_s[skey] = c
        sl.our_isn = cl.isn if c.front is None else (cl.isn + c.front.skip()) & MOD32
        c.state = CONNECTING
        sl.syn_tries = 0
        sl.syn_sent = now
        return [self._send_syn(c, now)] + out

    def _splice_pooled(self, c: Conn, server: Server, p, now: float) -> list:
        """Splice ``c`` onto the idle pooled connection ``p`` to ``server``: the server's
        side of ``c`` is ``p``'s, ISNs included (docs/csproc.md section 16)."""
        cl, sl = c.cl, c.sl
        self.policy.bind(c.choice, server)
        sl.ip, sl.port, sl.sw_port, sl.mac = server.ip, server.port, p.sw_port, p.mac
        sl.src_ip, sl.src_port, sl.key = p.src, p.sport, p.key
        self.conns_s[p.key] = c
        sl.our_isn, sl.isn, sl.mss = p.isn, p.sisn, p.smss
        sl.syn_tries, sl.syn_sent = 0, now
        c.shift = (p.isn - cl.isn) & MOD32
        out = [] if cl.ws is None else self._server_scale(c, p.sws, now)
        return out + self._splice(c, now)

    def _send_syn(self, c: Conn, now: float) -> PacketOut:
        cl, sl = c.cl, c.sl
        cfg = self.cfg
        rto = cfg.server_syn_rto * (1 << sl.syn_tries)
        rto *= 1.0 + cfg.server_syn_jitter * scatter(c.id)
        self._arm(c, min(now + rto, sl.syn_sent + cfg.server_connect_timeout))
        sl.syn_tries += 1
        opts = P.mss_option(cl.mss)
        if cl.ws is not None:
            opts += P.wscale_option(cl.ws)   # the server reads the client's windows
        return self._to_server(c, sl.our_isn, 0, SYN, b"", opts)

    def _release_server(self, c: Conn) -> None:
        sl = c.sl
        if sl.key is not None:
            if self.conns_s.get(sl.key) is c:
                del self.conns_s[sl.key]
            sl.key = None
        if c.choice is not None:
            self.policy.release(c.choice)
        self._release_source(c)

    def _release_source(self, c: Conn) -> None:
        sl = c.sl
        if sl.src_port is not None:
            self.policy.release_source(c.svc, sl.src_port)
            sl.src_port = None

    def _next_server(self, c: Conn, failed: Server, now: float, why: str) -> list:
        """Server ``failed`` before anything was relayed: redispatch or 503."""
        self._release_server(c)
        ch = c.choice
        self.policy.failed(ch, failed)
        ch.server = None
        c.state = RECV
        s = self.policy.redispatch(ch)
        if s is not None:
            self.stats.redispatched += 1
            return [self._log(c, "info", "redispatching", why=why, server=s.name)] \
                + self._connect(c, s, now)
        return self._refuse(c, 503, why, now)

    # ------------------------------------------------------------------ server side
    def _from_server(self, seg: Segment, frame: bytes, port: int, now: float) -> list:
        c = self.conns_s.get((seg.sip, seg.sport, seg.dip, seg.dport))
        if c is None:
            pooled = self.pools.segment(seg, now)
            if pooled is not None:
                return pooled
            probe = self.health.segment(seg, now)
            if probe is not None:
                return probe
            if seg.flags & SYN and seg.flags & ACK:
                # SYN-ACK for a connection we gave up on: clear the server's half-open.
                return [self._rst_reply(seg, port, self._pm(port))]
            self.stats.not_for_us += 1
            return []
        if c.state == CONNECTING:
            return self._server_handshake(c, seg, now)
        if c.state == RELAYING:
            return self._relaying_segment(c, seg, frame, now)
        if c.state == SPLICED or c.state == TIME_WAIT:
            if c.ka is not None and c.state == SPLICED:
                return self.ka.server(c, seg, frame, now)
            return self._sw_splice(c, seg, frame, False, now)
        if c.state == REPLAY:
            return self.dlg.server_segment(c, seg, now)
        if c.state == RESETTING:
            return self._resetting_segment(c, seg, port, _SERVER)
        return []

    def _server_handshake(self, c: Conn, seg: Segment, now: float) -> list:
        f = seg.flags
        cl, sl = c.cl, c.sl
        want = (sl.our_isn + 1) & MOD32
        if f & RST:
            if f & ACK and seg.ack == want:
                self.stats.server_refused += 1
                server = c.choice.server
                return [self._log(c, "warning", "server refused connection",
                                  server=server.name)] + \
                    self._next_server(c, server, now, "server refused") + \
                    self.health.passive(server, now, "refused")
            return []
        if f & SYN and f & ACK:
            if seg.ack != want:
                return [PacketOut(sl.sw_port, P.build(
                    self._pm(sl.sw_port), sl.mac, sl.src_ip, sl.ip, sl.src_port, sl.port,
                    seg.ack, 0, RST, 0))]
            sl.isn = seg.seq
            sl.mss = seg.mss or 536
            # Our SYN offered scaling: the answer tells the server's scale.
            out = [] if cl.ws is None else self._server_scale(c, seg.wscale, now)
            if c.front is not None:
                return out + self.dlg.server_up(c, now)
            return out + self._splice(c, now)
        return []

    def _server_scale(self, c: Conn, wscale: int | None, now: float) -> list:
        """The server of ``c`` announced ``wscale`` in the SYN-ACK of a SYN that offered
        the client's scale."""
        server = c.choice.server
        out = self._learn_scale(server, wscale, now)
        if wscale != c.cl.rws:
            # The client reads the server's (copied) windows with our scale.  Keep going:
            # see docs/csproc.md section 6 for why this is safe.
            self.stats.wscale_mismatch += 1
            out += self._rl_log("wscale", "warning",
                                "server window scale differs from the scale offered "
                                "to the client", now, server=server.name,
                                server_wscale=wscale, window_scale=c.cl.rws)
        return out

    def _splice(self, c: Conn, now: float) -> list:
        st = self.stats
        cl, sl, req = c.cl, c.sl, c.req
        seq_delta = (cl.snd_nxt - sl.isn - 1) & MOD32
        ack_delta = (-seq_delta) & MOD32
        # Bytes the switch added to the request shift the client's sequence space.
        grown = 0
        if c.relay is not None:
            c.relay = one_request(bytes(req.buf))
            grown = len(c.relay) - len(req.buf)
        idle = self.cfg.flow_idle_timeout
        c.c2s = FlowSpec(FlowKey(cl.ip, cl.vip, TCP, cl.port, cl.vport), sl.sw_port,
                         sl.mac, self._pm(sl.sw_port), sl.src_ip, sl.ip, sl.src_port,
                         sl.port, (grown + c.shift) & MOD32, ack_delta, idle, c.id, "c2s")
        c.s2c = FlowSpec(FlowKey(sl.ip, sl.src_ip, TCP, sl.port, sl.src_port), cl.sw_port,
                         cl.mac, self._pm(cl.sw_port), cl.vip, cl.ip, cl.vport, cl.port,
                         seq_delta, (-grown - c.shift) & MOD32, idle, c.id, "s2c")
        if c.ka is not None:
            # NONSTICKY: no entry yet; the request goes to the server from here (section 17)
            self.reasm.drop_ooo(req)
            st.spliced += 1
            self.admission.closed(c)
            st.spliced_active += 1
            c.state = SPLICED
            self._disarm(c)
            logs = [self._log(c, "info", "spliced", server=c.choice.server.name, rule=c.rule,
                              bytes=len(req.buf), nonsticky=c.ka.requests + 1,
                              rtt_ms=round((now - sl.syn_sent) * 1e3, 3))] \
                if self.log_spliced else []
            return logs + self.ka.spliced(c, now)
        # The buffered request, in server-sized segments; the first one completes the
        # server's handshake (ACK of its SYN) so no separate pure ACK is needed.
        then = self._relay_segments(c, c.tail)
        sl.nxt = (sl.isn + 1) & MOD32
        cl.nxt = self._rcv_nxt(c)
        self.reasm.drop_ooo(req)
        c.framer = None
        st.spliced += 1
        self.admission.closed(c)
        st.spliced_active += 1
        logs = [self._log(c, "info", "spliced", server=c.choice.server.name, rule=c.rule,
                          bytes=len(req.buf), rtt_ms=round((now - sl.syn_sent) * 1e3, 3),
                          bind_ms=round((now - c.created) * 1e3, 3))] if self.log_spliced else []
        pers = c.svc.persistence
        if pers is not None and pers.kind in COOKIE_KINDS:
            c.watch = self._response_watch(c, pers)
        if req.acked > c.tail or c.hello is not None or c.watch is not None:
            # The switch acknowledged part of the request itself: the client will never
            # resend it, so the switch must see the server acknowledge it before the
            # server->client flow goes in (until then those packets come to us).  A TLS
            # session to learn keeps them coming until the server's ServerHello, a cookie
            # to learn or insert until the first response's header block.
            c.state = RELAYING
            c.owned_end = None
            held = self._held(c)
            if held:
                c.watch.deadline = now + self.cfg.flow_idle_timeout
            if req.acked > c.tail:
                c.owned_end = (cl.isn + 1 + req.acked + grown + c.shift) & MOD32
                c.relay_tries = 0
                self._arm(c, now + self.cfg.relay_rto)
            elif held:
                self._arm_watch(c, now)
            else:
                self._disarm(c)
            if held:
                # Both directions come here until the client has the inserted line.
                return then + logs
            return [InstallFlows([c.c2s], then)] + logs
        c.state = SPLICED
        self._disarm(c)
        self._drop_request(c)
        return [InstallFlows([c.c2s, c.s2c], then)] + logs

    def _response_watch(self, c: Conn, pers: Persistence) -> ResponseWatch | None:
        """The watch of the first response of a cookie service's connection: None when
        the request carries the cookie the switch would insert."""
        name = pers.name.encode()
        if pers.kind == "cookie-learn":
            return ResponseWatch(name, None)
        sid = self.policy.server_id(c.svc, c.choice.server).encode()
        if request_cookie(bytes(c.req.buf), name) == sid:
            return None
        return ResponseWatch(name, b"Set-Cookie: " + name + b"=" + sid + b"; Path=/\r\n")

    def _arm_watch(self, c: Conn, now: float) -> None:
        """The timer of a connection that inserts a cookie: it checks the watch's deadline
        every ``request_timeout`` (a timer entry, dead or alive, lives no longer)."""
        self._arm(c, min(c.watch.deadline, now + self.cfg.request_timeout))

    @staticmethod
    def _half_closed(c: Conn) -> bool:
        """A spliced connection (not NONSTICKY) of which one side's FIN was seen."""
        return c.state == SPLICED and c.ka is None and (c.cl.fin or c.sl.fin)

    @staticmethod
    def _held(c: Conn) -> bool:
        """Whether both directions of the RELAYING connection ``c`` come to the engine
        (a cookie to insert: no flow is installed until the client has it)."""
        return c.watch is not None and c.watch.line is not None

    def _relay_segments(self, c: Conn, start: int) -> list:
        """Segments of the buffered request from offset ``start`` towards the server."""
        out = []
        sl, req = c.sl, c.req
        size = max(64, min(sl.mss, 65495))
        buf = req.buf if c.relay is None else c.relay
        fin = req.fin_rcvd
        n = len(buf)
        ack = (sl.isn + 1) & MOD32
        base = c.cl.isn + 1 + c.shift
        off = start
        while True:
            chunk = bytes(buf[off:off + size])
            last = off + size >= n
            flags = ACK
            if chunk and last:
                flags |= PSH
            if last and fin:
                flags |= FIN
            out.append(self._to_server(c, base + off, ack, flags, chunk))
            off += size
            if last:
                return out

    def _relaying_segment(self, c: Conn, seg: Segment, frame: bytes, now: float) -> list:
        f = seg.flags
        out: list = []
        if f & SYN:
            # Our ACK of its SYN-ACK (the first relay segment) was lost: resend it all.
            return self._relay_segments(c, c.tail) if f & ACK else []
        if f & RST:
            out.append(PacketOut(c.cl.sw_port, P.apply_splice(frame, c.s2c)))
            return out + self._teardown(c, now, "server reset")
        if seg.payload or f & FIN:
            if c.watch is not None:
                out += self._watch_server(c, seg, frame, now)
                if c.state != RELAYING:
                    return out
            else:
                out.append(PacketOut(c.cl.sw_port, P.apply_splice(frame, c.s2c)))
                self.stats.sw_spliced += 1
                self._advance(c.sl, seg)
                if f & FIN:
                    c.sl.fin = True
                if c.hello is not None:
                    out += self._server_hello(c, seg, now)
        if f & ACK:
            if c.owned_end is not None and P.seq_le(c.owned_end, seg.ack):
                c.owned_end = None          # the server has all the switch owned
                self._disarm(c)
                if self._held(c):
                    self._arm_watch(c, now)
            if c.owned_end is None:
                w = c.watch
                if c.hello is not None or w is not None and not (
                        w.settled and (w.point is None or w.acked)):
                    if not seg.payload and not f & FIN:
                        # The client's bytes are the server's to acknowledge (only a TLS
                        # session or a response header to read keeps this direction
                        # here): pass its ACK on.
                        out.append(PacketOut(c.cl.sw_port, P.apply_splice(
                            frame, self._s2c_spec(c, seq_rel(seg.seq, (c.sl.isn + 1) & MOD32)))))
                        self.stats.sw_spliced += 1
                    return out
                out += self._hand_over(c, now)
            elif not seg.payload and not f & FIN:
                off = seq_rel(seg.ack, (c.cl.isn + 1 + c.shift) & MOD32)
                # duplicate ACK: resend from the hole (offsets of what the server is sent)
                if c.tail <= off < len(c.req.buf) + ((c.c2s.seq_delta - c.shift) & MOD32):
                    out += self._relay_segments(c, off)[:1]
        return out

    def _hand_over(self, c: Conn, now: float) -> list:
        """Nothing left to wait for in a RELAYING connection: the return flow goes in (both
        flows when the engine inserted a cookie: their deltas now count its line)."""
        flows = [c.c2s, c.s2c] if self._held(c) else [c.s2c]
        c.state = SPLICED
        c.watch = None
        self._disarm(c)
        self._drop_request(c)
        out: list = [InstallFlows(flows, [])]
        if c.cl.fin and c.sl.fin:
            out += self._teardown(c, now, "closed")
        return out

    def _server_hello(self, c: Conn, seg: Segment, now: float) -> list:
        """The server's bytes of a RELAYING connection whose TLS session is to be learned:
        once its ServerHello has passed, its template (if any) points to the server."""
        done, key = c.hello.feed(seq_rel(seg.seq, (c.sl.isn + 1) & MOD32), seg.payload)
        if not done and not seg.flags & FIN:
            return []
        c.hello = None
        return [] if key is None else self._learn_session(c, key, "TLS session", now)

    def _learn_session(self, c: Conn, key: str, what: str, now: float) -> list:
        """The connection's server holds session ``key``: its template points there."""
        if not self.policy.learn(c.svc, c.choice, key):
            self.stats.sessions_not_learned += 1
            return self._rl_log("sessions", "warning", what + " not learned: "
                                "max_sessions templates in use", now, service=c.svc.name)
        return [self._log(c, "debug", what + " learned", server=c.choice.server.name,
                          session=key)]

    # ------------------------------------------------------------------ first response
    def _watch_server(self, c: Conn, seg: Segment, frame: bytes, now: float) -> list:
        """A server segment with data or FIN while the engine reads the first response's
        header block (docs/csproc.md section 15): read it, and send the client what may go
        already (rewritten once the insertion point is known)."""
        w, sl = c.watch, c.sl
        a = seq_rel(seg.seq, (sl.isn + 1) & MOD32)
        data = seg.payload
        stop = a + len(data)            # the segment's end (offset)
        out: list = []
        if not w.settled:
            sent = w.safe
            w.feed(a, data)
            if seg.flags & FIN:
                w.close()
            if w.settled:
                out = self._response_read(c, now)
                if c.state != RELAYING:
                    return out
                if w.point is not None and sent < a <= len(w.buf):
                    # the insertion point lies in bytes held back (a CR): send them now
                    data = bytes(w.buf[sent:a]) + data
                    a = sent
                w.buf = bytearray()
            elif w.line is not None:
                data = data[:max(0, w.safe - a)]     # what lies before the insertion point
                if not data:
                    return out
        self.stats.sw_spliced += 1
        fin = a + len(data) == stop and seg.flags & FIN
        end = (sl.isn + 1 + a + len(data) + (1 if fin else 0)) & MOD32
        if fin:
            sl.fin = True
        if P.seq_lt(sl.nxt, end):
            sl.nxt = end
        p = w.point
        if p is None or not a <= p < a + len(data):
            if data is seg.payload:
                return out + [PacketOut(c.cl.sw_port, P.apply_splice(
                    frame, self._s2c_spec(c, a)))]
            return out + self._s2c_data(c, seg, a, data, self._s2c_spec(c, a).seq_delta)
        # The segment holds the insertion point: the line goes before the final CRLF.
        k = p - a
        base = (c.s2c.seq_delta - len(w.line)) & MOD32
        data = data[:k] + w.line + data[k:]
        mss = c.cl.mss
        if len(data) <= mss or not k:
            return out + self._s2c_data(c, seg, a, data, base)
        # two pieces at least, split at the point: an ACK of the first never falls inside
        # the line
        return out + self._s2c_data(c, seg, a, data[:k], base, last=False) + \
            self._s2c_data(c, seg, p, data[k:], base)

    def _response_read(self, c: Conn, now: float) -> list:
        """The watch of the first response just ended: learn its cookie, or move the
        connection's sequence spaces past the line to insert."""
        w = c.watch
        st = self.stats
        if w.bad is not None:
            st.bad_responses += 1
            if w.line is not None:
                return self._abort(c, now, "not an HTTP response: " + w.bad, "warning")
            return self._rl_log("bad_response", "info", "first response is not HTTP: "
                                "no cookie learned", now, service=c.svc.name, why=w.bad)
        if w.oversize:
            st.limit_response_header += 1
            return self._rl_log("response_header", "info", "first response header too long: "
                                "passed unchanged", now, service=c.svc.name)
        if w.point is not None:
            n = len(w.line)
            c.s2c = dataclasses.replace(c.s2c, seq_delta=(c.s2c.seq_delta + n) & MOD32)
            c.c2s = dataclasses.replace(c.c2s, ack_delta=(c.c2s.ack_delta - n) & MOD32)
            st.cookies_inserted += 1
        if w.learned is not None:
            return self._learn_session(c, session_key(w.learned), "cookie", now)
        return []

    @staticmethod
    def _s2c_spec(c: Conn, off: int) -> FlowSpec:
        """The server -> client rewrite of a segment at stream offset ``off``: bytes before
        an inserted line keep the sequence delta they had."""
        w = c.watch
        if w is None or w.point is None or off >= w.point:
            return c.s2c
        return dataclasses.replace(c.s2c, seq_delta=(c.s2c.seq_delta - len(w.line)) & MOD32)

    def _s2c_data(self, c: Conn, seg: Segment, a: int, data: bytes, delta: int,
                  last: bool = True) -> list:
        """Server bytes ``data`` at stream offset ``a`` to the client (sequence delta
        ``delta``), in segments of at most the client's MSS; the last carries ``seg``'s
        PSH and FIN when ``last``."""
        cl = c.cl
        seq = (c.sl.isn + 1 + a + delta) & MOD32
        ack = (seg.ack + c.s2c.ack_delta) & MOD32
        mss = cl.mss
        out = []
        for off in range(0, len(data), mss):
            tail = last and off + mss >= len(data)
            flags = ACK | (seg.flags & (PSH | FIN) if tail else 0)
            out.append(PacketOut(cl.sw_port, P.build(
                self._pm(cl.sw_port), cl.mac, cl.vip, cl.ip, cl.vport, cl.port, seq + off,
                ack, flags, seg.window, data[off:off + mss], b"", self.cfg.ttl)))
        return out

    def _held_client(self, c: Conn, seg: Segment, frame: bytes, now: float) -> list:
        """A client packet while the engine inserts a cookie: its ACK maps into the
        server's space without the inserted line (an ACK inside the line stops at the
        point); once the client has the whole line, the flows go in."""
        w = c.watch
        self.stats.sw_spliced += 1
        spec = c.c2s
        got = False
        if w.point is not None and seg.flags & ACK:
            n = len(w.line)
            rel = seq_rel((seg.ack + spec.ack_delta + n) & MOD32, (c.sl.isn + 1) & MOD32)
            k = min(n, max(0, rel - w.point))
            got = k == n
            if not got:
                spec = dataclasses.replace(spec, ack_delta=(spec.ack_delta + n - k) & MOD32)
        out = [PacketOut(c.sl.sw_port, P.apply_splice(frame, spec))]
        self._advance(c.cl, seg)
        if seg.flags & (FIN | RST):
            out += self._close_seen(c, seg, True, now)
        if got and c.state == RELAYING:
            w.acked = True
            if c.owned_end is None:
                out += self._hand_over(c, now)
        return out

    @staticmethod
    def _advance(leg: ClientLeg | ServerLeg, seg: Segment) -> None:
        """Track the next sequence number of the leg ``seg`` came from."""
        end = (seg.seq + len(seg.payload) + (1 if seg.flags & FIN else 0)) & MOD32
        if P.seq_lt(leg.nxt, end):
            leg.nxt = end

    # ------------------------------------------------------------------ spliced
    def _sw_splice(self, c: Conn, seg: Segment, frame: bytes, from_client: bool,
                   now: float) -> list:
        """A packet of a spliced connection that missed in the data plane (its flow is
        being installed, or being removed): rewrite it exactly as the data plane does."""
        if from_client and c.state == RELAYING and self._held(c):
            return self._held_client(c, seg, frame, now)
        self.stats.sw_spliced += 1
        if from_client:
            out = [PacketOut(c.sl.sw_port, P.apply_splice(frame, c.c2s))]
            self._advance(c.cl, seg)
        else:
            out = [PacketOut(c.cl.sw_port, P.apply_splice(frame, c.s2c))]
            self._advance(c.sl, seg)
        if c.state != TIME_WAIT and seg.flags & (FIN | RST):
            out += self._close_seen(c, seg, from_client, now)
        return out

    def _fin_copy(self, seg: Segment, now: float) -> list:
        """A FIN/RST copy of a spliced flow.  Depending on the target the copy is the
        frame as received or as rewritten by ``splice``: all four views are recognised."""
        if not seg.flags & (FIN | RST):
            return []
        k = (seg.sip, seg.sport, seg.dip, seg.dport)
        r = (seg.dip, seg.dport, seg.sip, seg.sport)
        rewritten = False
        c = self.conns_c.get(k)
        from_client = True
        if c is None:
            c = self.conns_s.get(k)
            from_client = False
            if c is None:
                c = self.conns_s.get(r)          # client -> server, after the rewrite
                from_client = rewritten = True
                if c is None:
                    c = self.conns_c.get(r)      # server -> client, after the rewrite
                    from_client = False
                    rewritten = True
        if c is None or c.state not in (SPLICED, RELAYING):
            return []
        if rewritten:
            seg.seq = (seg.seq - (c.c2s if from_client else c.s2c).seq_delta) & MOD32
        c.dp_end |= _CLIENT if from_client else _SERVER
        self._advance(c.cl if from_client else c.sl, seg)
        return self._close_seen(c, seg, from_client, now)

    def _close_seen(self, c: Conn, seg: Segment, from_client: bool, now: float) -> list:
        if seg.flags & RST:
            return self._teardown(c, now, "reset by " + ("client" if from_client
                                                        else "server"))
        if from_client:
            c.cl.fin = True
        else:
            c.sl.fin = True
        if c.cl.fin and c.sl.fin and c.state == SPLICED:
            return self._teardown(c, now, "closed")
        if c.state == SPLICED and c.ka is None and self.cfg.half_closed_idle > 0:
            self._arm(c, now + self.cfg.half_closed_idle)
        return []

    def _teardown(self, c: Conn, now: float, why: str) -> list:
        """Schedule removal of the flows after ``time_wait``; keep a tombstone until then
        (software-splices late packets, keeps the 4-tuple and SNAT port reserved)."""
        st = self.stats
        st.teardowns += 1
        st.spliced_active -= 1
        keys = self._installed(c)
        c.state = TIME_WAIT
        c.watch = None
        self.policy.release(c.choice)
        self._drop_request(c)
        tw = self.cfg.time_wait
        self._arm(c, now + tw + self.cfg.tombstone_margin)
        ended: tuple = ()
        if c.dp_end & _CLIENT and c.c2s.key in keys:
            ended = (c.c2s.key,)
        if c.dp_end & _SERVER and c.s2c.key in keys:
            ended += (c.s2c.key,)
        out: list = [RemoveFlows(keys, tw, ended)]
        if self.log_debug:
            out.append(self._log(c, "debug", "teardown", why=why, server=c.choice.server.name))
        return out

    @staticmethod
    def _installed(c: Conn) -> list:
        """Keys of the flow entries of a RELAYING or SPLICED connection."""
        if c.state == RELAYING:
            return [] if Engine._held(c) else [c.c2s.key]
        if c.ka is not None:
            return [c.s2c.key] if c.ka.s2c_in else []
        return [c.c2s.key, c.s2c.key]

    def _reset_spliced(self, c: Conn, now: float, why: str) -> list:
        """End a spliced connection whose server went down (or away): its flows are removed
        and its client reset (:meth:`_start_reset`); the server gets its RST with the
        client's."""
        keys = self._installed(c)
        self.policy.release(c.choice)
        out = self._start_reset(c, now, _CLIENT, 0.0, why, server=c.choice.server.name)
        # The first probe goes out once the removal is written: the client's answer must not
        # meet the old flow (it would go to the server and be lost, and Linux answers the next
        # probe only ~0.5 s later).
        probes = tuple(e for e in out if isinstance(e, PacketOut))
        return [RemoveFlows(keys, 0.0, then=probes)] + \
            [e for e in out if not isinstance(e, PacketOut)]

    def _start_reset(self, c: Conn, now: float, legs: int, first: float, why: str,
                     **fields) -> list:
        """Reset a connection whose flows are gone. The data plane carried it, so nobody
        knows how far each end's stream got: each leg in ``legs`` is probed with a segment
        at an old sequence number, which a synchronized TCP answers with an ACK carrying its
        RCV.NXT (RFC 9293 3.10.7.4); that ACK has no flow entry, comes here and gets the
        RST at exactly that number. Probes go out ``first`` seconds from now, then every
        ``reset_probe_interval``, ``reset_probes`` times; then the connection is forgotten."""
        self.stats.spliced_active -= 1
        c.state = RESETTING
        c.probe_legs = legs
        c.reset_legs = 0
        c.close_tries = 0
        if first > 0:
            self._arm(c, now + first)
            out = []
        else:
            out = self._reset_probes(c, now)
        return out + [self._log(c, "warning", why + ": resetting", **fields)]

    def _reset_probes(self, c: Conn, now: float) -> list:
        if not c.probe_legs:    # every probed leg answered and was reset (_resetting_segment)
            self._free(c)
            return []
        if c.close_tries >= self.cfg.reset_probes:
            self._free(c)
            return [self._log(c, "info", "no answer to the reset probes: connection forgotten")]
        c.close_tries += 1
        self._arm(c, now + self.cfg.reset_probe_interval)
        out = []
        if c.probe_legs & _CLIENT:
            out.append(self._to_client(c, (c.sl.nxt + c.s2c.seq_delta - 1) & MOD32, c.cl.nxt,
                                       ACK, window=0))
        if c.probe_legs & _SERVER:
            out.append(self._to_server(c, (c.cl.nxt + c.c2s.seq_delta - 1) & MOD32, c.sl.nxt, ACK))
        return out

    def _resetting_segment(self, c: Conn, seg: Segment, port: int, leg: int) -> list:
        """A leg of a RESETTING connection answered: reset it at the ACK it sent. A client
        whose server is not probed (it went down) takes the server's RST with it, once.
        A leg that was reset is answered so until the next probe time, when the connection
        is forgotten: segments of the data plane still in flight when its entries went may
        have moved the leg's RCV.NXT past the ACK the RST answered, and a TCP answers an
        RST that is in its window but not exact with a challenge ACK at RCV.NXT (RFC 5961
        3.2), whose RST is exact."""
        if seg.flags & RST or not seg.flags & ACK or not (c.probe_legs | c.reset_legs) & leg:
            return []
        out = [self._rst_reply(seg, port, self._pm(port))]
        if leg == _CLIENT and not c.reset_legs & _CLIENT and not c.probe_legs & _SERVER:
            out.append(self._to_server(c, (seg.seq + c.c2s.seq_delta) & MOD32, 0, RST))
        c.probe_legs &= ~leg
        c.reset_legs |= leg
        if not c.probe_legs and c.choice is not None:
            self.policy.release(c.choice)       # no longer counts on its server
        return out

    def _abort(self, c: Conn, now: float, why: str, level: str = "info") -> list:
        """Reset both legs, remove whatever flows exist, forget the connection."""
        out: list = []
        if c.state in (RELAYING, SPLICED, TIME_WAIT):
            rst_seq = (c.sl.nxt + c.s2c.seq_delta) & MOD32
            if c.ka is not None and P.seq_lt(rst_seq, c.ka.cack):
                rst_seq = c.ka.cack     # the body rode the entry: the client has more
            out.append(self._to_client(c, rst_seq, 0, RST, window=0))
            out.append(self._to_server(c, (c.cl.nxt + c.c2s.seq_delta) & MOD32, 0, RST))
            out.append(RemoveFlows([c.c2s.key, c.s2c.key], 0.0))
        elif c.state == CONNECTING:
            out.append(self._to_client(c, c.cl.snd_nxt, 0, RST, window=0))
        elif c.state in (RECV, CLOSING):
            out.append(self._to_client(c, c.cl.snd_nxt, 0, RST, window=0))
        out.append(self._log(c, level, "connection aborted", why=why))
        self._free(c)
        return out

    # ------------------------------------------------------------------ local answers
    def _refuse(self, c: Conn, status: int, why: str, now: float) -> list:
        st = self.stats
        name = {400: "bad_requests", 408: "limit_timeout", 413: "limit_body",
                        431: "limit_header", 503: "no_server"}.get(status)
        if status == 400 and c.svc.protocol == "tls":
            name = "bad_hellos"
        if name:
            setattr(st, name, getattr(st, name) + 1)
        level = "info" if status in (400, 408, 413, 431) else "warning"
        return self._close_with(c, status, now, why, level=level)

    def _close_with(self, c: Conn, status: int | None, now: float, why: str,
                    location: str | None = None, level: str = "info") -> list:
        """Answer ``status`` (None: no response) with FIN, then wait for the client.  A
        front answers in its protocol, and goes on with the dialogue after a refusal of
        the decision command."""
        fields = {"why": why, "rule": c.rule}
        if status is not None:
            fields["status"] = status
        if c.front is not None:
            resp, close = c.front.refusal(status, location)
            if not close:
                return self.dlg.refused(c, resp, now, fields)
        elif status is None:
            resp = b""
        elif c.svc.protocol == "tls":
            if status in (400, 408, 413, 431):
                # Not a ClientHello in time: nothing to answer in TLS, reset.
                return self._abort(c, now, why)
            resp = tls.alert(status)
        else:
            text = REASONS.get(status, "Error")
            body = (f"<html><body><h1>{status} {text}</h1></body></html>\n").encode()
            hdr = [f"HTTP/1.1 {status} {text}", "Content-Type: text/html",
                   f"Content-Length: {len(body)}", "Cache-Control: no-cache",
                   "Connection: close"]
            if location is not None:
                loc = location.replace("\r", "").replace("\n", "")
                hdr.append(f"Location: {loc}")
            resp = ("\r\n".join(hdr) + "\r\n\r\n").encode("latin-1", "replace") + body
        return self._close_resp(c, resp, now, fields, level)

    def _close_resp(self, c: Conn, resp: bytes, now: float, fields: dict,
                    level: str = "info") -> list:
        """Send ``resp`` with FIN after what the client has not acknowledged yet."""
        if c.state == CONNECTING:
            self._release_server(c)
        cl = c.cl
        pending = c.resp or b""
        c.resp = pending + resp
        c.resp_seq = (cl.snd_nxt - len(pending)) & MOD32
        cl.snd_nxt = (cl.snd_nxt + len(resp) + 1) & MOD32
        c.state = CLOSING
        c.ka = None
        self.reasm.drop_ooo(c.req)
        c.framer = None
        c.close_hard = now + self.cfg.close_timeout
        c.close_tries = 0
        self._arm(c, min(now + 0.5, c.close_hard))
        return self._send_resp(c) + [self._log(c, level, "closing client connection",
                                               **fields)]

    def _send_resp(self, c: Conn) -> list:
        out = []
        resp = c.resp
        ack = self._rcv_nxt(c)
        size = c.cl.mss
        off = 0
        while True:
            chunk = resp[off:off + size]
            last = off + size >= len(resp)
            flags = ACK | (PSH | FIN if last else 0)
            if not chunk:
                flags = ACK | FIN
            out.append(self._to_client(c, c.resp_seq + off, ack, flags, chunk))
            off += size
            if last:
                return out

    def _closing_segment(self, c: Conn, seg: Segment, now: float) -> list:
        f = seg.flags
        if f & RST:
            self._free(c)
            return []
        if f & SYN:
            return []
        cl, req = c.cl, c.req
        if f & ACK and seg.ack == cl.snd_nxt:
            c.our_fin_acked = True
        out = []
        if f & FIN:
            end = (seg.seq + len(seg.payload)) & MOD32
            if not req.fin_rcvd:
                req.fin_rcvd = True
                self.reasm.release(req)   # what came before the FIN is not wanted any more
                cl.isn = (end - 1) & MOD32   # so that _rcv_nxt() acks the FIN
            out.append(self._to_client(c, cl.snd_nxt, (end + 1) & MOD32, ACK, window=0))
        if c.our_fin_acked and req.fin_rcvd:
            # Linger for retransmitted FINs (our ACK may be lost), then forget.
            self._arm(c, now + self.cfg.time_wait)
            c.close_hard = now + self.cfg.time_wait
        return out

    # ------------------------------------------------------------------ timers
    def _timeout(self, c: Conn, now: float) -> list:
        cfg = self.cfg
        st = c.state
        if st == RECV:
            return self._refuse(c, 408, "request timeout", now)
        if st == CONNECTING:
            sl = c.sl
            if sl.syn_tries <= cfg.server_syn_retries and \
                    now < sl.syn_sent + cfg.server_connect_timeout:
                return [self._send_syn(c, now)]
            self.stats.server_timeouts += 1
            server = c.choice.server
            return [self._log(c, "warning", "server did not answer SYN",
                              server=server.name)] + \
                self._next_server(c, server, now, "server connect timeout") + \
                self.health.passive(server, now, "no answer to SYN")
        if st == RELAYING:
            if c.owned_end is None:     # only a cookie to insert has a timer then
                if now < c.watch.deadline:
                    self._arm_watch(c, now)
                    return []
                return self._abort(c, now, "no first response from the server in time",
                                   level="warning")
            if c.relay_tries >= cfg.relay_retries:
                self.stats.server_timeouts += 1
                return self._abort(c, now, "server did not acknowledge the request",
                                   level="warning")
            c.relay_tries += 1
            self._arm(c, now + cfg.relay_rto * (1 << c.relay_tries))
            return self._relay_segments(c, c.tail)
        if st == CLOSING:
            done = c.our_fin_acked and c.req.fin_rcvd
            if now >= c.close_hard or done:
                out = []
                if not done:
                    out.append(self._to_client(c, c.cl.snd_nxt, 0, RST, window=0))
                self._free(c)
                return out
            c.close_tries += 1
            self._arm(c, min(now + 0.5 * (1 << c.close_tries), c.close_hard))
            return [] if c.our_fin_acked else self._send_resp(c)
        if st == DIALOG:
            return self.dlg.dialog_timeout(c, now)
        if st == REPLAY:
            return self.dlg.replay_timeout(c, now)
        if st == RESETTING:
            return self._reset_probes(c, now)
        if st == SPLICED and c.ka is not None:
            return self.ka.timeout(c, now)
        if self._half_closed(c):
            if cfg.half_closed_idle <= 0:
                return []       # turned off by a live edit since: the idle timeout ends it
            # half-closed: count its entries' packets (flows_counted answers); once more later
            # should the answer not come
            self._arm(c, now + cfg.half_closed_idle)
            keys = self._installed(c)
            return [CountFlows(tuple(keys))] if keys else []
        if st == TIME_WAIT:
            self._free(c)
        return []

    def _free(self, c: Conn) -> None:
        st = self.stats
        if c.state in _HALF_BOUND:
            self.admission.closed(c)
        elif c.state == SPLICED or c.state == RELAYING:
            st.spliced_active -= 1
        c.state = "freed"
        self._disarm(c)
        self._release_server(c)
        cl = c.cl
        k = (cl.ip, cl.port, cl.vip, cl.vport)
        if self.conns_c.get(k) is c:
            del self.conns_c[k]
        self.by_id.pop(c.id, None)
        self._drop_request(c)
