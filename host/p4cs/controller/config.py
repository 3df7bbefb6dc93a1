"""The controller's configuration file (YAML), validated with file:line error messages.

A configuration says which switch to drive, what the switch's ports look like, which hosts
sit behind them, the virtual services (VIP:port) and the server groups they balance over.
Nothing is applied before the whole file validated: a bad file changes nothing.

    switch:   {address: 127.0.0.1:9559, device_id: 1, target: dpdk, packet_io: direct}
    ports:                                   # switch ports: MAC, gateway address (and MTU,
      1: {mac: "02:00:00:00:01:fe", gateway: 10.0.1.254/24}   # default 1500: the interface's)
      2: {mac: "02:00:00:00:02:fe", gateway: 10.0.2.254/24}
    hosts:                                   # optional: static neighbours (win over ARP)
      - {name: client1, ip: 10.0.1.1, mac: "02:00:00:00:01:01", port: 1}
      - {name: ace,     ip: 10.0.2.1, port: 2}          # no mac: resolved with ARP
    neighbours: {refresh_s: 60, retrans_s: 1, probes: 3, retry_s: 10}   # ARP timers (optional)
    groups:
      ace:
        scheduler: rr                        # p4cs.capabilities.SCHEDULERS
        slow_start_s: 0                      # weight ramp of a server that comes back
        health: {type: http, path: /, expect: 200, interval_s: 2, timeout_s: 1, rise: 2, fall: 3}
        servers: [{address: 10.0.2.1, port: 80, weight: 1, upper_threshold: 0, lower_threshold: 0}]
    services:
      - name: web
        vip: 10.0.0.100
        port: 80
        mode: transparent                    # or snat (then snat_address: …)
        protocol: http                       # or tls (routed on the ClientHello), or smtp,
                                             # pop3, imap (the switch greets first); tcp or
                                             # udp: an L4 service, balanced in the data
                                             # plane (default_group only, a maglev group)
        routes:                              # URL-prefix / Host routing, first match wins
          - {prefix: "/~lcs1/", group: ace}
          - {host: "shop.example", group: ace}
        rules: rules.conf                    # optional: a rule file (p4cs rules), relative to this file
        default_group: ace
        persistence: {timeout_s: 300, netmask: 255.255.255.255}   # client-IP persistence
        # tls service: persistence: {kind: tls-session, timeout_s: 300, max_sessions: 100000}
        # http service: persistence: {kind: cookie-learn, name: SESSIONID, timeout_s: 3600}
        #               or {kind: cookie-insert, name: SRV, key: "a secret"}
        server_pool: {idle: 4, max_age_s: 30}   # http + snat: idle server connections kept
                                             # open per server, new clients spliced onto them
    limits: {max_header_bytes: 16384, max_body_bytes: 1048576, request_timeout_s: 10,
             mss: auto}                      # MSS announced to clients: auto = smallest port MTU - 40
    control: {socket: /run/p4cs/controller.sock, metrics_port: 9100, access_log: /var/log/p4cs/access.log}
    dataplane: {flow_table_size: 1048576}    # overrides of p4cs.params (as compiled)
    ha: {store: "redis://127.0.0.1:6379/0", prefix: p4cs:sw1, lease_ms: 1000}  # optional
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from p4cs import capabilities
from p4cs import params as params_mod
from p4cs.csproc.httpcookie import valid_name as valid_cookie_name
from p4cs.errors import InputError, grpc_address


class ConfigError(InputError):
    """A configuration problem, with file and line."""

    def __init__(self, msg: str, path: Path | str | None = None, line: int | None = None):
        msg = " ".join(str(msg).split())            # one line, whatever the file held
        self.msg, self.path, self.line = msg, path, line
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{msg}")


class _Map(dict):
    """A mapping that remembers the line of each key."""

    line: int = 0
    key_lines: dict


class _Seq(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    m = _Map()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for knode, vnode in node.value:
        k = loader.construct_object(knode, deep=True)
        if isinstance(k, (list, dict, set)):
            raise ConfigError("a key must be a plain value, not a list or mapping", None,
                              knode.start_mark.line + 1)
        if k in m:
            raise ConfigError(f"duplicate key {k!r}", None, knode.start_mark.line + 1)
        m[k] = loader.construct_object(vnode, deep=True)
        m.key_lines[k] = vnode.start_mark.line + 1
    return m


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq(loader.construct_object(n, deep=True) for n in node.value)
    s.line = node.start_mark.line + 1
    return s


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
SCHEDULERS = tuple(capabilities.SCHEDULERS)
MODES = ("transparent", "snat")
PROTOCOLS = tuple(capabilities.PROTOCOL_FIELDS) + tuple(capabilities.L4_PROTOCOLS)


def _show(v: Any) -> str:
    """A value for an error message: short, one line, whatever the file holds."""
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, (list, tuple, set)):
        return "a list"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def ip_to_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


@dataclass(frozen=True)
class PortConf:
    number: int
    mac: str
    gateway: ipaddress.IPv4Interface
    mtu: int = 1500         # the interface's MTU (the switch forwards frames up to it)


@dataclass(frozen=True)
class HostConf:
    name: str
    ip: str
    mac: str | None         # None: resolved with ARP
    port: int


@dataclass(frozen=True)
class NeighbourConf:
    """ARP timers of :mod:`p4cs.controller.neighbours`."""
    refresh_s: float = 60.0
    retrans_s: float = 1.0
    probes: int = 3
    retry_s: float = 10.0


@dataclass(frozen=True)
class ServerConf:
    address: str
    port: int
    weight: int = 1
    upper_threshold: int = 0     # ipvsadm -x: no new connections at this many (0: none)
    lower_threshold: int = 0     # ipvsadm -y: new ones again under this many


@dataclass(frozen=True)
class HealthConf:
    """Active checks of a group's servers (keepalived/HAProxy terms): every ``interval_s``
    a check (``tcp``: a handshake; ``http``: GET ``path`` answered with ``expect``) that
    fails after ``timeout_s``; ``rise`` successes in a row bring a server up, ``fall``
    failures in a row take it down."""

    type: str = "tcp"
    interval_s: float = 2.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 3
    path: str = "/"
    expect: int = 200


@dataclass(frozen=True)
class GroupConf:
    name: str
    scheduler: str
    servers: tuple[ServerConf, ...]
    slow_start_s: float = 0.0
    health: HealthConf | None = None


@dataclass(frozen=True)
class ServerPoolConf:
    idle: int = 4                           # idle connections per server
    max_age_s: float = 30.0                 # closed when unused this long after the handshake


@dataclass(frozen=True)
class PersistenceConf:
    timeout_s: float = 300.0
    netmask: str = "255.255.255.255"
    kind: str = "client-ip"                 # capabilities.PERSISTENCE
    max_sessions: int = 100_000             # tls-session, cookie-learn: templates per service
    name: str | None = None                 # cookie-learn, cookie-insert: the cookie
    key: str | None = None                  # cookie-insert: the key of the server ids


#: The keys of each persistence kind (``kind`` aside) in a configuration.
PERSISTENCE_KEYS: dict[str, tuple[str, ...]] = {
    "client-ip": ("timeout_s", "netmask"),
    "tls-session": ("timeout_s", "max_sessions"),
    "cookie-learn": ("name", "timeout_s", "max_sessions"),
    "cookie-insert": ("name", "key"),
}


@dataclass(frozen=True)
class RouteConf:
    group: str
    prefix: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class ServiceConf:
    name: str
    vip: str
    port: int
    mode: str
    snat_address: str | None
    routes: tuple[RouteConf, ...]
    rules: Path | None
    default_group: str | None
    protocol: str = "http"
    persistence: PersistenceConf | None = None
    server_pool: ServerPoolConf | None = None

    @property
    def l4(self) -> bool:
        """Balanced entirely in the data plane (capabilities.L4_PROTOCOLS)."""
        return self.protocol in capabilities.L4_PROTOCOLS


@dataclass(frozen=True)
class SwitchConf:
    address: str = "127.0.0.1:9559"
    device_id: int = 1
    target: str = "dpdk"
    p4info: Path | None = None
    p4blob: Path | None = None
    #: direct: the switch's direct packet channel when it offers one; p4runtime: the stream
    packet_io: str = "direct"
    #: with packet_io direct: the interface cabled to the switch's CPU port (BMv2
    #: ``p4cs switch --packet-veth``), where packet-ins and packet-outs ride with their headers
    packet_port: str | None = None
    #: channel: the primary's flow Writes on the switch's channel socket when it offers one
    #: (p4cs.controller.chanwriter); grpc: every Write over gRPC
    writes: str = "channel"


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16384
    max_body_bytes: int = 1 << 20
    request_timeout_s: float = 10.0
    max_pending: int = 10000
    max_pending_per_client: int = 1000
    server_connect_timeout_s: float = 3.0
    teardown_delay_s: float = 2.0
    half_closed_idle_s: float = 30.0   # one side's FIN seen, no packet either way that long
    flow_idle_timeout_s: int = 300
    window_scale: int | str | None = "auto"   # offered to clients: "auto" (the servers'),
    #                                           0..14, or null (no window scaling)
    udp_idle_timeout_s: int = 300   # ipvsadm --set's UDP timeout, for UDP services
    mss: int = 1460         # MSS announced to clients (``auto``: the smallest port MTU - 40)


@dataclass(frozen=True)
class ControlConf:
    socket: str = "/run/p4cs/controller.sock"
    metrics_port: int = 0   # 0: no metrics HTTP endpoint
    access_log: str | None = None   # one line per spliced connection: a file, syslog or -


@dataclass(frozen=True)
class HaConf:
    """Primary/backup election through a store shared by the controllers of one switch."""
    store: str              # redis://host:port/db, unix:///path or an absolute socket path
    prefix: str             # of every key these controllers share
    lease_ms: int = 1000    # a dead primary's lease lapses after this; a backup then takes it


@dataclass(frozen=True)
class Config:
    path: Path | None
    switch: SwitchConf
    ports: dict[int, PortConf]
    hosts: tuple[HostConf, ...]
    groups: dict[str, GroupConf]
    services: tuple[ServiceConf, ...]
    limits: Limits
    control: ControlConf
    dataplane: params_mod.DataplaneParams       # the data-plane parameters of switch.target
    ha: HaConf | None = None                    # None: no store, no election
    neighbours: NeighbourConf = NeighbourConf()

    def l4_groups(self) -> set[str]:
        """The groups of L4 services (theirs alone: the CS processor does not know them)."""
        return {s.default_group for s in self.services if s.l4}

    def host_by_ip(self, ip: str) -> HostConf | None:
        for h in self.hosts:
            if h.ip == ip:
                return h
        return None

    def port_for_ip(self, ip: str) -> int | None:
        """The switch port whose gateway subnet contains ip."""
        addr = ipaddress.IPv4Address(ip)
        for p in self.ports.values():
            if addr in p.gateway.network:
                return p.number
        return None


class _V:
    """Validation helpers bound to one file."""

    def __init__(self, path: Path | None):
        self.path = path

    def err(self, msg: str, node: Any = None, key: Any = None) -> ConfigError:
        line = None
        if isinstance(node, _Map):
            line = node.key_lines.get(key, node.line) if key is not None else node.line
        elif isinstance(node, _Seq):
            line = node.line
        return ConfigError(msg, self.path, line)

    def map(self, parent: Any, key: str, required: bool = False) -> _Map:
        v = parent.get(key) if isinstance(parent, dict) else None
        if v is None:
            if required:
                raise self.err(f"missing section '{key}'", parent)
            m = _Map(); m.line = getattr(parent, "line", 0); m.key_lines = {}
            return m
        if not isinstance(v, dict):
            raise self.err(f"'{key}' must be a mapping", parent, key)
        return v

    def seq(self, parent: Any, key: str, required: bool = False) -> list:
        v = parent.get(key)
        if v is None:
            if required:
                raise self.err(f"missing '{key}'", parent)
            return []
        if not isinstance(v, list):
            raise self.err(f"'{key}' must be a list", parent, key)
        return v

    def known(self, m: _Map, keys: set[str], what: str) -> None:
        for k in m:
            if k not in keys:
                raise self.err(f"unknown key '{k}' in {what} (expected one of: {', '.join(sorted(keys))})", m, k)

    def str_(self, m: _Map, key: str, required: bool = True, default: str | None = None) -> str | None:
        v = m.get(key, default)
        if v is None:
            if required:
                raise self.err(f"missing '{key}'", m)
            return None
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise self.err(f"'{key}' must be a string", m, key)
        return str(v)

    def int_(self, m: _Map, key: str, lo: int, hi: int, default: int | None = None) -> int:
        v = m.get(key, default)
        if v is None:
            raise self.err(f"missing '{key}'", m)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise self.err(f"'{key}' must be an integer in [{lo}, {hi}], got {_show(v)}", m, key)
        return v

    def num(self, m: _Map, key: str, lo: float, hi: float, default: float) -> float:
        v = m.get(key, default)
        if (not isinstance(v, (int, float)) or isinstance(v, bool)
                or not math.isfinite(v) or not lo <= v <= hi):
            raise self.err(f"'{key}' must be a number in [{lo:g}, {hi:g}], got {_show(v)}", m, key)
        return float(v)

    def ip(self, m: _Map, key: str, required: bool = True) -> str | None:
        v = self.str_(m, key, required)
        if v is None:
            return None
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            raise self.err(f"'{key}': {_show(v)} is not an IPv4 address", m, key) from None

    def file_(self, m: _Map, key: str, base: Path) -> Path | None:
        v = self.str_(m, key, required=False)
        if v is None:
            return None
        if not v or "\0" in v:
            raise self.err(f"'{key}' must be a file name", m, key)
        return base / v

    def mac(self, m: _Map, key: str) -> str:
        v = self.str_(m, key)
        if not _MAC.match(v):
            raise self.err(f"'{key}': {_show(v)} is not a MAC address (aa:bb:cc:dd:ee:ff)", m, key)
        return v.lower()



def _window_scale(v: _V, lm: _Map, default: int | str | None) -> int | str | None:
    ws = lm.get("window_scale", default)
    if ws is None or ws == "auto":
        return ws
    if not isinstance(ws, int) or isinstance(ws, bool) or not 0 <= ws <= 14:
        raise v.err(f"'window_scale' must be \"auto\", an integer in [0, 14] or null, "
                    f"got {_show(ws)}", lm, "window_scale")
    return ws


def _mss(v: _V, lm: _Map, ports: dict[int, PortConf]) -> int:
    """The MSS announced to clients: ``auto`` (default) is the smallest port MTU less 40
    bytes of IPv4 and TCP headers, so that a client's segments reach every server whole."""
    mss = lm.get("mss", "auto")
    if mss == "auto":
        return min((p.mtu for p in ports.values()), default=PortConf.mtu) - 40
    if not isinstance(mss, int) or isinstance(mss, bool) or not 88 <= mss <= 65495:
        raise v.err(f"'mss' must be \"auto\" or an integer in [88, 65495], got {_show(mss)}",
                    lm, "mss")
    return mss


def parse_config(text: str, path: Path | str | None = None) -> Config:
    path = Path(path) if path is not None else None
    try:
        doc = yaml.load(text, Loader=_Loader)
    except ConfigError as exc:
        raise ConfigError(exc.msg, path, exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"YAML syntax error: {getattr(exc, 'problem', None) or getattr(exc, 'reason', exc)}", path,
                          mark.line + 1 if mark else None) from None
    except RecursionError:
        raise ConfigError("nested too deeply", path) from None
    except ValueError as exc:       # e.g. an integer of more digits than Python converts
        raise ConfigError(f"unreadable value: {exc}", path) from None
    if not isinstance(doc, dict):
        raise ConfigError("the configuration must be a YAML mapping", path, 1)
    v = _V(path)
    v.known(doc, {"switch", "ports", "hosts", "neighbours", "groups", "services", "limits", "control", "dataplane",
                  "ha"}, "the top level")

    sw = v.map(doc, "switch")
    v.known(sw, {"address", "device_id", "target", "p4info", "p4blob", "packet_io", "packet_port",
                 "writes"}, "switch")
    base = path.parent if path else Path.cwd()
    target = v.str_(sw, "target", False, "dpdk")
    if target not in ("dpdk", "bmv2"):
        raise v.err(f"switch.target must be dpdk or bmv2, got {target!r}", sw, "target")
    packet_io = v.str_(sw, "packet_io", False, "direct")
    if packet_io not in ("direct", "p4runtime"):
        raise v.err(f"switch.packet_io must be direct or p4runtime, got {packet_io!r}", sw,
                    "packet_io")
    writes = v.str_(sw, "writes", False, "channel")
    if writes not in ("channel", "grpc"):
        raise v.err(f"switch.writes must be channel or grpc, got {writes!r}", sw, "writes")
    packet_port = v.str_(sw, "packet_port", False, None)
    if packet_port is not None:
        if packet_io != "direct":
            raise v.err("switch.packet_port needs switch.packet_io: direct (the switch sends "
                        "its packet-ins on that port, not on the P4Runtime stream)", sw,
                        "packet_port")
        if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}", packet_port):
            raise v.err(f"switch.packet_port: {packet_port!r} is not an interface name", sw,
                        "packet_port")
    address = v.str_(sw, "address", False, "127.0.0.1:9559")
    try:
        grpc_address(address)
    except ValueError as exc:
        raise v.err(f"switch.address: {exc}", sw, "address") from None
    switch = SwitchConf(
        address=address,
        device_id=v.int_(sw, "device_id", 0, 2**63 - 1, 1),
        target=target,
        p4info=v.file_(sw, "p4info", base),
        p4blob=v.file_(sw, "p4blob", base),
        packet_io=packet_io,
        packet_port=packet_port,
        writes=writes,
    )

    ports: dict[int, PortConf] = {}
    pm = v.map(doc, "ports", required=True)
    port_of_mac: dict[str, int] = {}
    for num, pc in pm.items():
        if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < 512:
            raise v.err(f"port number must be an integer in [0, 511], got {_show(num)}", pm, num)
        if not isinstance(pc, dict):
            raise v.err(f"port {num} must be a mapping with mac and gateway", pm, num)
        v.known(pc, {"mac", "gateway", "mtu"}, f"port {num}")
        gw = v.str_(pc, "gateway")
        try:
            gwi = ipaddress.IPv4Interface(gw)
        except ValueError:
            raise v.err(f"gateway {gw!r} is not an IPv4 interface (a.b.c.d/len)", pc, "gateway") from None
        mac = v.mac(pc, "mac")
        if mac in port_of_mac:
            raise v.err(f"port {num} has the MAC address {mac} of port {port_of_mac[mac]}", pc, "mac")
        port_of_mac[mac] = num
        ports[num] = PortConf(num, mac, gwi, v.int_(pc, "mtu", 576, 65535, PortConf.mtu))

    hosts = []
    seen_ips: set[str] = set()
    for h in v.seq(doc, "hosts"):
        if not isinstance(h, dict):
            raise v.err("each host must be a mapping", doc.get("hosts"))
        v.known(h, {"name", "ip", "mac", "port"}, "a host")
        ip = v.ip(h, "ip")
        if ip in seen_ips:
            raise v.err(f"host address {ip} listed twice", h, "ip")
        seen_ips.add(ip)
        port = v.int_(h, "port", 0, 511)
        if port not in ports:
            raise v.err(f"host {ip}: port {port} is not in 'ports'", h, "port")
        hosts.append(HostConf(v.str_(h, "name", False, ip), ip,
                              v.mac(h, "mac") if h.get("mac") is not None else None, port))

    groups: dict[str, GroupConf] = {}
    gm = v.map(doc, "groups", required=True)
    for name, g in gm.items():
        if not isinstance(g, dict):
            raise v.err(f"group {_show(name)} must be a mapping", gm, name)
        v.known(g, {"scheduler", "servers", "slow_start_s", "health"}, f"group {name}")
        sched = v.str_(g, "scheduler", False, "rr")
        if sched not in SCHEDULERS:
            raise v.err(f"group {name}: unknown scheduler {_show(sched)} (expected {', '.join(SCHEDULERS)})", g, "scheduler")
        servers = []
        for s in v.seq(g, "servers", required=True):
            if not isinstance(s, dict):
                raise v.err(f"group {name}: each server must be a mapping", g, "servers")
            v.known(s, {"address", "port", "weight", "upper_threshold", "lower_threshold"},
                    f"a server of group {name}")
            upper = v.int_(s, "upper_threshold", 0, 10_000_000, 0)
            lower = v.int_(s, "lower_threshold", 0, 10_000_000, 0)
            if lower and (not upper or lower > upper):
                raise v.err(f"group {name}: lower_threshold needs an upper_threshold at least "
                            "as large", s, "lower_threshold")
            servers.append(ServerConf(v.ip(s, "address"), v.int_(s, "port", 1, 65535),
                                      v.int_(s, "weight", 0, 1000, 1), upper, lower))
        if not servers:
            raise v.err(f"group {name} has no servers", g, "servers")
        health = _health(v, g["health"], name) if g.get("health") is not None else None
        groups[str(name)] = GroupConf(str(name), sched, tuple(servers),
                                      v.num(g, "slow_start_s", 0.0, 3600, 0.0), health)

    services = []
    for s in v.seq(doc, "services", required=True):
        if not isinstance(s, dict):
            raise v.err("each service must be a mapping", doc.get("services"))
        v.known(s, {"name", "vip", "port", "mode", "snat_address", "routes", "rules", "default_group",
                    "protocol", "persistence", "server_pool"}, "a service")
        proto = v.str_(s, "protocol", False, "http")
        if proto not in PROTOCOLS:
            raise v.err(f"protocol must be one of {', '.join(PROTOCOLS)}, got {proto!r}", s, "protocol")
        if proto != "http" and s.get("routes"):
            raise v.err(f"routes match HTTP requests: a {proto} service decides with 'rules'", s, "routes")
        mode = v.str_(s, "mode", False, "transparent")
        if mode not in MODES:
            raise v.err(f"mode must be transparent or snat, got {_show(mode)}", s, "mode")
        if s.get("rules") is not None and s.get("routes"):
            raise v.err("a service has either 'routes' or 'rules', not both", s, "routes")
        snat = v.ip(s, "snat_address", required=(mode == "snat"))
        routes = []
        for r in v.seq(s, "routes"):
            if not isinstance(r, dict):
                raise v.err("each route must be a mapping", s, "routes")
            v.known(r, {"prefix", "host", "group"}, "a route")
            grp = v.str_(r, "group")
            if grp not in groups:
                raise v.err(f"route names unknown group {_show(grp)}", r, "group")
            _usable(v, groups[grp], r, "group")
            if r.get("prefix") is None and r.get("host") is None:
                raise v.err("a route needs 'prefix' and/or 'host'", r)
            prefix = v.str_(r, "prefix", False)
            if prefix is not None and not prefix.startswith("/") and prefix != "*":
                raise v.err(f"route prefix {_show(prefix)} must start with '/' (or be '*')", r, "prefix")
            routes.append(RouteConf(grp, prefix, v.str_(r, "host", False)))
        dg = v.str_(s, "default_group", False)
        if dg is not None:
            if dg not in groups:
                raise v.err(f"default_group names unknown group {_show(dg)}", s, "default_group")
            _usable(v, groups[dg], s, "default_group")
        rules = v.file_(s, "rules", base)
        if rules is not None:
            if not rules.is_file():
                raise v.err(f"rule file {rules} does not exist", s, "rules")
            _check_rule_file(v, rules, groups, s, proto)
        if proto in capabilities.L4_PROTOCOLS:
            _check_l4_service(v, s, proto, mode, dg, groups)
        persistence = None
        if s.get("persistence") is not None:
            pm_ = v.map(s, "persistence")
            v.known(pm_, {"kind", "timeout_s", "netmask", "max_sessions", "name", "key"}, "persistence")
            kind = v.str_(pm_, "kind", False, PersistenceConf.kind)
            if kind not in capabilities.PERSISTENCE:
                raise v.err(f"persistence kind must be one of {', '.join(capabilities.PERSISTENCE)}, "
                            f"got {_show(kind)}", pm_, "kind")
            if kind == "tls-session" and proto != "tls":
                raise v.err(f"tls-session persistence needs protocol tls, not {proto}", pm_, "kind")
            if kind.startswith("cookie-") and proto != "http":
                raise v.err(f"{kind} persistence needs protocol http, not {proto}", pm_, "kind")
            for key, what in (("netmask", "a netmask"), ("max_sessions", "max_sessions"),
                              ("name", "a cookie name"), ("timeout_s", "timeout_s"),
                              ("key", "a key")):
                if pm_.get(key) is not None and key not in PERSISTENCE_KEYS[kind]:
                    owners = [k for k, keys in PERSISTENCE_KEYS.items() if key in keys]
                    raise v.err(f"{what} belongs to {' and '.join(owners)} persistence, not {kind}",
                                pm_, key)
            cookie = v.str_(pm_, "name", "name" in PERSISTENCE_KEYS[kind])
            if cookie is not None and not valid_cookie_name(cookie):
                raise v.err(f"cookie name {_show(cookie)} is not a token (RFC 6265: letters, "
                            "digits and !#$%&'*+-.^_`|~)", pm_, "name")
            mask = v.ip(pm_, "netmask", required=False) or PersistenceConf.netmask
            bits = int(ipaddress.IPv4Address(mask))
            if bits and (-bits & 0xFFFFFFFF) & ((-bits & 0xFFFFFFFF) - 1):
                raise v.err(f"persistence netmask {mask} is not a netmask", pm_, "netmask")
            persistence = PersistenceConf(v.num(pm_, "timeout_s", 1.0, 86400 * 7, PersistenceConf.timeout_s),
                                          mask, kind, v.int_(pm_, "max_sessions", 1, 100_000_000,
                                                             PersistenceConf.max_sessions), cookie,
                                          v.str_(pm_, "key", False))
        services.append(ServiceConf(v.str_(s, "name", False, f"{s.get('vip')}:{s.get('port')}"),
                                    v.ip(s, "vip"), v.int_(s, "port", 1, 65535), mode, snat,
                                    tuple(routes), rules, dg, proto, persistence,
                                    _server_pool(v, s, proto, mode)))
    if not services:
        raise v.err("at least one service is needed", doc)
    seen = set()
    taken: dict[str, str] = {}      # addresses a VIP must not be, and whose they are
    for g in groups.values():
        for srv in g.servers:
            taken.setdefault(srv.address, f"the address of a server of group {g.name}")
    for h in hosts:
        taken.setdefault(h.ip, f"the address of host {h.name}")
    for p in ports.values():
        taken.setdefault(str(p.gateway.ip), f"the gateway address of port {p.number}")
    for svc, sm in zip(services, v.seq(doc, "services")):
        if (svc.vip, svc.port) in seen:
            raise v.err(f"service {svc.vip}:{svc.port} defined twice", sm, "port")
        seen.add((svc.vip, svc.port))
        if svc.vip in taken:
            raise v.err(f"the VIP {svc.vip} of service {svc.name} is {taken[svc.vip]}", sm, "vip")

    _check_l4_groups(v, services, v.seq(doc, "services"), groups, gm)

    lm = v.map(doc, "limits")
    v.known(lm, set(Limits.__dataclass_fields__), "limits")
    d = Limits()
    limits = Limits(
        max_header_bytes=v.int_(lm, "max_header_bytes", 256, 1 << 20, d.max_header_bytes),
        max_body_bytes=v.int_(lm, "max_body_bytes", 0, 1 << 30, d.max_body_bytes),
        request_timeout_s=v.num(lm, "request_timeout_s", 0.1, 3600, d.request_timeout_s),
        max_pending=v.int_(lm, "max_pending", 1, 10_000_000, d.max_pending),
        max_pending_per_client=v.int_(lm, "max_pending_per_client", 1, 10_000_000,
                                      d.max_pending_per_client),
        server_connect_timeout_s=v.num(lm, "server_connect_timeout_s", 0.1, 600, d.server_connect_timeout_s),
        teardown_delay_s=v.num(lm, "teardown_delay_s", 0.0, 600, d.teardown_delay_s),
        half_closed_idle_s=v.num(lm, "half_closed_idle_s", 0.0, 86400, d.half_closed_idle_s),
        flow_idle_timeout_s=v.int_(lm, "flow_idle_timeout_s", 1, 86400 * 7, d.flow_idle_timeout_s),
        window_scale=_window_scale(v, lm, d.window_scale),
        udp_idle_timeout_s=v.int_(lm, "udp_idle_timeout_s", 1, 86400 * 7, d.udp_idle_timeout_s),
        mss=_mss(v, lm, ports),
    )
    cm = v.map(doc, "control")
    v.known(cm, {"socket", "metrics_port", "access_log"}, "control")
    control = ControlConf(v.str_(cm, "socket", False, ControlConf.socket),
                          v.int_(cm, "metrics_port", 0, 65535, 0),
                          v.str_(cm, "access_log", False))
    dataplane = _dataplane(v, v.map(doc, "dataplane"), target)
    l4 = [(svc, sm) for svc, sm in zip(services, v.seq(doc, "services")) if svc.l4]
    if len(l4) > dataplane.l4_services:
        raise v.err(f"{len(l4)} L4 services (protocol tcp / udp), the data plane has room for "
                    f"{dataplane.l4_services} (dataplane.l4_services)", l4[-1][1], "protocol")
    ha = _ha(v, doc, switch) if doc.get("ha") is not None else None
    nm = v.map(doc, "neighbours")
    v.known(nm, set(NeighbourConf.__dataclass_fields__), "neighbours")
    nd = NeighbourConf()
    neighbours = NeighbourConf(v.num(nm, "refresh_s", 1.0, 86400, nd.refresh_s),
                               v.num(nm, "retrans_s", 0.1, 60, nd.retrans_s),
                               v.int_(nm, "probes", 1, 100, nd.probes),
                               v.num(nm, "retry_s", 0.1, 3600, nd.retry_s))
    return Config(path, switch, ports, tuple(hosts), groups, tuple(services), limits, control,
                  dataplane, ha, neighbours)


_STORE_SCHEMES = ("redis://", "rediss://", "unix://")


def _ha(v: _V, doc: _Map, switch: SwitchConf) -> HaConf:
    hm = v.map(doc, "ha")
    v.known(hm, {"store", "prefix", "lease_ms"}, "ha")
    store = v.str_(hm, "store")
    if not (store.startswith(_STORE_SCHEMES) or store.startswith("/")):
        raise v.err(f"ha.store {store!r}: expected redis://host:port[/db], unix:///path or an "
                    "absolute socket path", hm, "store")
    prefix = v.str_(hm, "prefix", False, f"p4cs:{switch.address}:{switch.device_id}")
    if not prefix:
        raise v.err("ha.prefix must not be empty", hm, "prefix")
    return HaConf(store, prefix, v.int_(hm, "lease_ms", 100, 60000, HaConf.lease_ms))


def _server_pool(v: _V, s: _Map, proto: str, mode: str) -> ServerPoolConf | None:
    """A service's ``server_pool``: idle connections the switch opens to its servers
    (docs/csproc.md section 16)."""
    if s.get("server_pool") is None:
        return None
    pm = v.map(s, "server_pool")
    v.known(pm, {"idle", "max_age_s"}, "server_pool")
    if proto != "http":
        raise v.err(f"a server pool needs protocol http, not {proto}", s, "server_pool")
    if mode != "snat":
        raise v.err("a server pool needs mode snat: the switch opens the pooled connections "
                    "before it knows their client, so from its snat_address", s, "server_pool")
    d = ServerPoolConf()
    return ServerPoolConf(v.int_(pm, "idle", 0, 1024, d.idle),
                          v.num(pm, "max_age_s", 0.1, 3600, d.max_age_s))


def _health(v: _V, hm: Any, group: str) -> HealthConf:
    if not isinstance(hm, dict):
        raise v.err(f"group {group}: 'health' must be a mapping", hm)
    v.known(hm, set(HealthConf.__dataclass_fields__), f"the health check of group {group}")
    d = HealthConf()
    kind = v.str_(hm, "type", False, d.type)
    if kind not in capabilities.HEALTH_CHECKS:
        raise v.err(f"health check type must be one of {', '.join(capabilities.HEALTH_CHECKS)}, "
                    f"got {kind!r}", hm, "type")
    path = v.str_(hm, "path", False, d.path)
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise v.err(f"health check path {path!r} must start with '/' and have no spaces", hm, "path")
    h = HealthConf(kind, v.num(hm, "interval_s", 0.1, 3600, d.interval_s),
                   v.num(hm, "timeout_s", 0.1, 600, d.timeout_s), v.int_(hm, "rise", 1, 100, d.rise),
                   v.int_(hm, "fall", 1, 100, d.fall), path, v.int_(hm, "expect", 100, 599, d.expect))
    if h.timeout_s > h.interval_s:
        raise v.err("health check timeout_s must not exceed interval_s", hm, "timeout_s")
    return h


def _check_l4_service(v: _V, s: _Map, proto: str, mode: str, group: str | None,
                      groups: dict[str, GroupConf]) -> None:
    """What an L4 service (balanced in the data plane) cannot have."""
    if mode != "transparent":
        raise v.err(f"a {proto} service is balanced in the data plane, in transparent mode only: "
                    "SNAT needs a source port per connection and a reverse entry that the "
                    "server's answers find, and the data plane can neither allocate ports nor "
                    "learn an entry for the other direction", s, "mode")
    for key in ("rules", "routes", "persistence"):
        if s.get(key):
            raise v.err(f"a {proto} service has no content to decide on: no {key} (its "
                        "connections are balanced by Maglev hashing in the data plane)", s, key)
    if group is None:
        raise v.err(f"a {proto} service needs a default_group", s)
    g = groups[group]
    if g.scheduler != "maglev":
        raise v.err(f"group {group} of {proto} service: the data plane balances with Maglev, "
                    f"so its scheduler must be maglev, not {g.scheduler}", s, "default_group")
    if g.health is not None:
        raise v.err(f"group {group} of {proto} service: health checks are not applied to the "
                    "data plane's Maglev table (remove the server or set its weight to 0)",
                    s, "default_group")


def _check_l4_groups(v: _V, services: list[ServiceConf], nodes: list,
                     groups: dict[str, GroupConf], gm: _Map) -> None:
    """The answers of an L4 service's servers are recognised by their (address, protocol,
    port) alone: no other service may use those servers."""
    owner: dict[tuple[str, int, str], str] = {}
    for svc, sm in zip(services, nodes):
        if not svc.l4:
            continue
        for srv in groups[svc.default_group].servers:
            key = (srv.address, srv.port, svc.protocol)
            if owner.setdefault(key, svc.name) != svc.name:
                raise v.err(f"server {srv.address}:{srv.port}/{svc.protocol} of service {svc.name} "
                            f"also serves L4 service {owner[key]}: the answers of a server "
                            "must name one service", sm, "default_group")
    l4_groups = {svc.default_group: svc.name for svc in services if svc.l4}
    l4_servers = {(a, p) for a, p, _ in owner}
    for svc, sm in zip(services, nodes):
        if svc.l4:
            continue
        named = sorted(({svc.default_group, *(r.group for r in svc.routes)} - {None})
                       & l4_groups.keys())
        if named:
            raise v.err(f"group {named[0]} belongs to L4 service {l4_groups[named[0]]}: service "
                        f"{svc.name} cannot use it too", sm)
    for g in groups.values():
        if g.name in l4_groups:
            continue
        for srv in g.servers:
            if (srv.address, srv.port) in l4_servers:
                raise v.err(f"server {srv.address}:{srv.port} of group {g.name} is also a server "
                            "of an L4 service: the answers of a server must name one service",
                            gm.get(g.name), "servers")


def _usable(v: _V, group: GroupConf, node: _Map, key: str) -> None:
    """A group a service sends to needs a server with a weight above 0."""
    if not any(s.weight for s in group.servers):
        raise v.err(f"every server of group {group.name} has weight 0: nothing could be chosen",
                    node, key)


def rule_target_errors(ruleset: Any, groups: dict[str, GroupConf]) -> list[str]:
    """``file:line: ...`` for each action of ``ruleset`` (a ``p4cs.rules`` RuleSet) that
    names no configured group (routeTo, loadBalance) or server (forward: a group, or a
    server ``group/address:port``)."""
    servers = {f"{g.name}/{s.address}:{s.port}" for g in groups.values() for s in g.servers}
    errors, seen = [], set()
    for clause in ruleset.clauses:
        a = clause.action
        if a.kind not in ("routeTo", "loadBalance", "forward") or a.target in groups:
            continue
        if a.kind == "forward" and a.target in servers:
            continue
        rule = ruleset.rules[clause.rule].name
        if (a.line, a.target) in seen:
            continue
        seen.add((a.line, a.target))
        what = "server or group" if a.kind == "forward" else "group"
        errors.append(f"{ruleset.source}:{a.line}: rule {rule}: {a.kind} names unknown "
                      f"{what} {_show(a.target)}")
    return errors


def _check_rule_file(v: _V, path: Path, groups: dict[str, GroupConf], node: _Map,
                     protocol: str) -> None:
    """The rule file parses, names only configured groups and uses only fields the requests
    of a ``protocol`` service have (its errors name the rule's file:line, the ConfigError
    the configuration's 'rules:' line)."""
    try:
        from p4cs.rules.ruleset import load_rules, protocol_problems
        from p4cs.rules.parser import RuleError
    except ModuleNotFoundError:
        raise v.err("rule files need p4cs.rules, which this installation lacks", node, "rules") from None
    try:
        ruleset = load_rules(path)
    except RuleError as exc:
        raise v.err(f"{exc.messages[0].splitlines()[0]}" if exc.messages else str(exc),
                    node, "rules") from None
    errors = protocol_problems(ruleset, protocol) + rule_target_errors(ruleset, groups)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise v.err(errors[0] + more, node, "rules")


def _dataplane(v: _V, dm: _Map, target: str) -> params_mod.DataplaneParams:
    """The data-plane parameters of ``target`` with the section's overrides (they must be the
    ones the P4 program was compiled with: `p4cs generate --config` reads the same section)."""
    fields = set(params_mod.DataplaneParams.__dataclass_fields__) - {"target"}  # switch.target
    v.known(dm, fields, "dataplane")
    overrides: dict[str, Any] = {}
    for key in dm:
        if key == "flow_timeouts_s":
            seq = dm[key]
            if (not isinstance(seq, list) or not seq
                    or any(not isinstance(t, int) or isinstance(t, bool) or t <= 0 for t in seq)):
                raise v.err(f"'{key}' must be a non-empty list of positive integers (seconds)", dm, key)
            overrides[key] = tuple(seq)
        elif key == "cpu_port":
            overrides[key] = v.int_(dm, key, 0, 511)
        else:
            overrides[key] = v.int_(dm, key, 1, 2**32 - 1)
    try:
        return params_mod.with_overrides(params_mod.defaults(target), overrides)
    except ValueError as exc:       # relations between parameters (cpu_port < max_ports)
        raise v.err(str(exc), dm) from None


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    return parse_config(text, path)
