"""Star topologies made of plain network namespaces and veth pairs (no Mininet).

One *switch* namespace ``<prefix>-sw`` and one namespace per host ``<prefix>-<name>``. Every host
is joined to the switch namespace by one veth pair, created directly across the two namespaces
(nothing ever appears in the caller's namespace):

    <prefix>-c1: eth0  <-- veth -->  <prefix>-p1  :<prefix>-sw
    <prefix>-s1: eth0  <-- veth -->  <prefix>-p2  :<prefix>-sw
    ...

``kind="p4"``: the switch namespace holds only the bare switch-side veths (no addresses, no
bridge); the P4 switch (``p4cs switch`` or ``simple_switch_grpc``, started by the caller inside
``topo.switch_netns``) binds to ``topo.switch_ifaces`` and must answer ARP for the gateways.

``kind="bridge"``: the kernel plays the switch, as the benchmark and functional baseline. One
Linux bridge per host subnet (``<prefix>-b0``, ``<prefix>-b1``, ...) enslaves the switch-side
veths of that subnet and carries the subnet's gateway address; ``ip_forward=1`` routes between
the subnets.

Every veth has IPv6 disabled, checksum/segmentation offloads off (so a user-space data plane
sees exactly the frames on the wire, with complete checksums), and the configured MTU. MACs are
deterministic, locally administered and derived from the prefix: ``02:HH:HH:KK:PP:PP`` with
``HH:HH`` a hash of the prefix, ``KK`` the kind (00 host, 01 switch port, 02 bridge) and
``PP:PP`` the switch port (or bridge index).

Only the namespaces are global objects; ``cleanup_prefix(prefix)`` deletes the namespaces named
``<prefix>-<word>`` (and ends the processes still inside them) and nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["client", "server"]
Kind = Literal["p4", "bridge"]
Mode = Literal["transparent", "snat", "dsr"]

SWITCH = "sw"
"""Name that stands for the switch namespace in ``Topology.exec`` / ``popen`` / ``netns``."""
HOST_IFNAME = "eth0"
"""Name of the (single) interface inside every host namespace."""
VIP = "10.0.0.100"
"""The content switch's virtual IP in the presets (reached through each client's gateway)."""

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
_HOST_RE = re.compile(r"^[a-z][a-z0-9]{0,14}$")
_MAX_PORT = 999  # "<prefix>-p<port>" must fit IFNAMSIZ-1 = 15 with a 10-character prefix
_NETNS_DIR = "/run/netns"

_MAC_HOST, _MAC_SWITCH_PORT, _MAC_BRIDGE = 0x00, 0x01, 0x02


class TopologyError(RuntimeError):
    """A topology could not be built or torn down; the message says which command failed."""


@dataclass(frozen=True)
class HostSpec:
    """One host of the star. ``mac=None`` derives a deterministic MAC from the prefix and port."""

    name: str
    role: Role
    ip: str
    prefix_len: int
    switch_port: int
    mac: str | None = None
    gateway: str | None = None
    """Default gateway (an address the switch owns and answers ARP for); None: no default route."""
    loopback_ips: tuple[str, ...] = ()
    """Extra /32 addresses on the host's ``lo`` (the VIP of a direct-server-return server)."""

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.ip}/{self.prefix_len}")


def derive_mac(prefix: str, kind: int, index: int) -> str:
    """Locally administered unicast MAC ``02:HH:HH:KK:II:II`` (see the module docstring)."""
    h = hashlib.sha256(prefix.encode()).digest()
    octets = (0x02, h[0], h[1], kind & 0xFF, (index >> 8) & 0xFF, index & 0xFF)
    return ":".join(f"{o:02x}" for o in octets)


def _run(argv: Sequence[str], *, check: bool = True, input: str | None = None,
         timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise TopologyError(f"`{' '.join(argv)}` failed ({proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(n for n in os.listdir(_NETNS_DIR) if not n.startswith("."))
    except FileNotFoundError:
        return []


def netns_pids(ns: str) -> list[int]:
    proc = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL whatever is left."""
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def delete_netns(ns: str) -> None:
    """End the processes inside ``ns`` and delete it (its veths go with it). Idempotent."""
    if ns not in list_netns():
        return
    _kill_pids(netns_pids(ns))
    _run(["ip", "netns", "delete", ns], check=False)
    if ns in list_netns():
        raise TopologyError(f"could not delete network namespace {ns}")


def prefix_namespaces(prefix: str) -> list[str]:
    """The existing namespaces that belong to ``prefix``: exactly ``<prefix>-<word>``."""
    _check_prefix(prefix)
    pat = re.compile(rf"^{re.escape(prefix)}-[a-z0-9]+$")
    return [n for n in list_netns() if pat.match(n)]


def cleanup_prefix(prefix: str) -> list[str]:
    """Remove what a crashed run with this prefix left behind: namespaces ``<prefix>-<word>``
    (processes inside them are terminated first; their veths and bridges vanish with them).
    Touches nothing else. Returns the deleted namespace names."""
    gone = []
    for ns in prefix_namespaces(prefix):
        delete_netns(ns)
        gone.append(ns)
    return gone


def _check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"prefix {prefix!r} must match {_PREFIX_RE.pattern} "
                         "(lowercase, no '-', at most 10 characters)")


class Topology:
    """A star of network namespaces around one switch namespace.

    >>> with content_switch_topology("demo") as topo:          # doctest: +SKIP
    ...     topo.exec("c1", ["ping", "-c1", "10.0.1.254"])
    """

    def __init__(self, prefix: str, hosts: Sequence[HostSpec], *, kind: Kind = "p4",
                 mtu: int = 1500, static_arp: bool = False, mode: str | None = None,
                 vip: str | None = None) -> None:
        _check_prefix(prefix)
        if not hosts:
            raise ValueError("a topology needs at least one host")
        if kind not in ("p4", "bridge"):
            raise ValueError(f"kind must be 'p4' or 'bridge', not {kind!r}")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"mtu {mtu} out of range")
        self.prefix = prefix
        self.kind: Kind = kind
        self.mtu = mtu
        self.static_arp = static_arp
        self.mode = mode
        self.vip = vip
        resolved: dict[str, HostSpec] = {}
        ports: set[int] = set()
        for h in hosts:
            if not _HOST_RE.match(h.name) or h.name == SWITCH:
                raise ValueError(f"host name {h.name!r} must match {_HOST_RE.pattern} "
                                 f"and not be {SWITCH!r}")
            if h.name in resolved:
                raise ValueError(f"duplicate host name {h.name!r}")
            if not 0 <= h.switch_port <= _MAX_PORT:
                raise ValueError(f"switch_port {h.switch_port} not in 0..{_MAX_PORT}")
            if h.switch_port in ports:
                raise ValueError(f"switch_port {h.switch_port} used twice")
            if h.role not in ("client", "server"):
                raise ValueError(f"role {h.role!r} must be 'client' or 'server'")
            iface = h.interface  # validates ip / prefix_len
            if h.gateway is not None and ipaddress.IPv4Address(h.gateway) not in iface.network:
                raise ValueError(f"{h.name}: gateway {h.gateway} outside {iface.network}")
            ports.add(h.switch_port)
            mac = (h.mac or derive_mac(prefix, _MAC_HOST, h.switch_port)).lower()
            resolved[h.name] = dataclasses.replace(h, mac=mac)
        self.hosts: dict[str, HostSpec] = resolved
        # Subnets in order of first appearance; in bridge mode each becomes one bridge.
        self._subnets: list[ipaddress.IPv4Network] = []
        for h in self.hosts.values():
            if h.interface.network not in self._subnets:
                self._subnets.append(h.interface.network)
        self._created: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []

    # ---- names --------------------------------------------------------------------------
    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}-sw"

    def netns(self, host: str) -> str:
        """Namespace of a host name, or of the switch for ``SWITCH``."""
        if host == SWITCH:
            return self.switch_netns
        if host not in self.hosts:
            raise KeyError(f"no host {host!r} in topology {self.prefix}")
        return f"{self.prefix}-{host}"

    def switch_ifname(self, port: int) -> str:
        return f"{self.prefix}-p{port}"

    @property
    def switch_ifaces(self) -> dict[int, str]:
        """Switch-side veth per P4 port (interfaces live in ``switch_netns``)."""
        return {h.switch_port: self.switch_ifname(h.switch_port)
                for h in sorted(self.hosts.values(), key=lambda h: h.switch_port)}

    def p4cs_switch_argv(self, target: str = "dpdk", grpc_addr: str = "127.0.0.1:9559",
                         p4cs: Sequence[str] = ("p4cs",), extra: Sequence[str] = ()) -> list[str]:
        """``p4cs switch`` on this topology's switch ports: the data plane runs inside
        ``switch_netns`` (``--netns``), the P4Runtime server in the caller's namespace."""
        argv = [*p4cs, "switch", "--target", target, "--netns", self.switch_netns]
        for port, ifname in self.switch_ifaces.items():
            argv += ["--iface", f"{port}={ifname}"]
        return [*argv, "--grpc-addr", grpc_addr, *extra]

    def switch_port_mac(self, port: int) -> str:
        return derive_mac(self.prefix, _MAC_SWITCH_PORT, port)

    def _bridge(self, net: ipaddress.IPv4Network) -> tuple[str, str]:
        i = self._subnets.index(net)
        return f"{self.prefix}-b{i}", derive_mac(self.prefix, _MAC_BRIDGE, i)

    def gateway_mac(self, port: int) -> str:
        """MAC that answers for the gateway address on ``port``: the switch-side veth's own MAC
        with the P4 switch, the subnet bridge's MAC with the kernel bridge."""
        if self.kind == "bridge":
            host = next(h for h in self.hosts.values() if h.switch_port == port)
            return self._bridge(host.interface.network)[1]
        return self.switch_port_mac(port)

    def host_by_port(self, port: int) -> HostSpec:
        return next(h for h in self.hosts.values() if h.switch_port == port)

    def clients(self) -> list[HostSpec]:
        return [h for h in self.hosts.values() if h.role == "client"]

    def servers(self) -> list[HostSpec]:
        return [h for h in self.hosts.values() if h.role == "server"]

    # ---- lifecycle ----------------------------------------------------------------------
    def create(self) -> Topology:
        """Build everything; on any failure remove what was built and re-raise."""
        wanted = [self.switch_netns] + [self.netns(n) for n in self.hosts]
        present = sorted(set(wanted) & set(list_netns()))
        if present:
            raise TopologyError(f"namespaces already exist: {', '.join(present)} (leftovers of "
                                f"a crashed run? `python -m p4cs.lab.netns down --prefix "
                                f"{self.prefix}` removes them)")
        try:
            self._create_netns(self.switch_netns)
            for h in self.hosts.values():
                self._create_netns(self.netns(h.name))
                self._create_link(h)
            self._configure_switch()
            for h in self.hosts.values():
                self._configure_host(h)
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Stop processes started with ``popen`` and delete every namespace this object
        created (with everything inside). Safe after a partial ``create`` and when repeated."""
        procs, self._procs = self._procs, []
        _kill_pids([p.pid for p in procs if p.poll() is None])
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        errors = []
        for ns in reversed(self._created):
            try:
                delete_netns(ns)
            except TopologyError as exc:
                errors.append(str(exc))
        self._created = [ns for ns in self._created if ns in list_netns()]
        if errors:
            raise TopologyError("; ".join(errors))

    def __enter__(self) -> Topology:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # ---- running commands ---------------------------------------------------------------
    def cmd(self, host: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside the namespace of ``host`` (or ``SWITCH``)."""
        return ["ip", "netns", "exec", self.netns(host), *argv]

    def exec(self, host: str, argv: Sequence[str], *, check: bool = True,
             timeout: float | None = 60.0, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` inside a namespace; output captured as text unless overridden."""
        kwargs.setdefault("capture_output", "stdout" not in kwargs and "stderr" not in kwargs)
        kwargs.setdefault("text", True)
        return subprocess.run(self.cmd(host, argv), check=check, timeout=timeout, **kwargs)

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` inside a namespace. ``ip netns exec`` execs the command, so
        ``proc.pid`` is the command itself; ``destroy()`` terminates it if still running."""
        proc = subprocess.Popen(self.cmd(host, argv), **kwargs)
        self._procs.append(proc)
        return proc

    # ---- description --------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-able description for the controller configuration and the demo."""
        gateways: dict[str, dict[str, Any]] = {}
        ports = []
        for port, ifname in self.switch_ifaces.items():
            h = self.host_by_port(port)
            ports.append({"port": port, "ifname": ifname, "mac": self.switch_port_mac(port),
                          "host": h.name, "gateway_ip": h.gateway,
                          "gateway_mac": self.gateway_mac(port) if h.gateway else None})
            if h.gateway:
                gw = gateways.setdefault(h.gateway, {
                    "ip": h.gateway, "subnet": str(h.interface.network),
                    "prefix_len": h.prefix_len, "ports": []})
                gw["ports"].append(port)
                if self.kind == "bridge":
                    gw["mac"] = self.gateway_mac(port)
                    gw["bridge"] = self._bridge(h.interface.network)[0]
        return {
            "prefix": self.prefix,
            "kind": self.kind,
            "mode": self.mode,
            "vip": self.vip,
            "mtu": self.mtu,
            "static_arp": self.static_arp,
            "switch": {"netns": self.switch_netns, "ports": ports},
            "gateways": list(gateways.values()),
            "hosts": [{"name": h.name, "role": h.role, "netns": self.netns(h.name),
                       "ifname": HOST_IFNAME, "ip": h.ip, "prefix_len": h.prefix_len,
                       "mac": h.mac, "switch_port": h.switch_port, "gateway": h.gateway,
                       "gateway_mac": self.gateway_mac(h.switch_port) if h.gateway else None,
                       "loopback_ips": list(h.loopback_ips)}
                      for h in self.hosts.values()],
        }

    # ---- building blocks ----------------------------------------------------------------
    def _create_netns(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        self._created.append(ns)
        # Before any interface exists, so that new interfaces inherit "IPv6 off".
        self._sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": "1",
                          "net.ipv6.conf.default.disable_ipv6": "1"}, optional=True)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _create_link(self, h: HostSpec) -> None:
        hns, sns = self.netns(h.name), self.switch_netns
        sw_if = self.switch_ifname(h.switch_port)
        # One command creates both ends directly in their namespaces: no name ever exists in
        # the caller's namespace, and it either fully happens or not at all.
        _run(["ip", "link", "add", HOST_IFNAME, "netns", hns, "mtu", str(self.mtu),
              "address", str(h.mac), "type", "veth",
              "peer", "name", sw_if, "netns", sns, "mtu", str(self.mtu),
              "address", self.switch_port_mac(h.switch_port)])
        for ns, ifname in ((hns, HOST_IFNAME), (sns, sw_if)):
            self._sysctl(ns, {f"net.ipv6.conf.{ifname}.disable_ipv6": "1"}, optional=True)
            self._offloads(ns, ifname, False)

    def _configure_switch(self) -> None:
        ns = self.switch_netns
        if self.kind == "bridge":
            self._sysctl(ns, {"net.ipv4.ip_forward": "1"})
            for net in self._subnets:
                br, mac = self._bridge(net)
                members = [h for h in self.hosts.values() if h.interface.network == net]
                _run(["ip", "-n", ns, "link", "add", br, "address", mac, "mtu", str(self.mtu),
                      "type", "bridge", "stp_state", "0", "forward_delay", "0"])
                self._sysctl(ns, {f"net.ipv6.conf.{br}.disable_ipv6": "1"}, optional=True)
                for h in members:
                    _run(["ip", "-n", ns, "link", "set", self.switch_ifname(h.switch_port),
                          "master", br])
                gws = sorted({h.gateway for h in members if h.gateway})
                for gw in gws:
                    _run(["ip", "-n", ns, "addr", "add", f"{gw}/{net.prefixlen}", "dev", br])
                _run(["ip", "-n", ns, "link", "set", br, "up"])
                if self.static_arp:
                    for h in members:
                        _run(["ip", "-n", ns, "neigh", "replace", h.ip, "lladdr", str(h.mac),
                              "dev", br, "nud", "permanent"])
        for ifname in self.switch_ifaces.values():
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def _configure_host(self, h: HostSpec) -> None:
        ns = self.netns(h.name)
        _run(["ip", "-n", ns, "addr", "add", str(h.interface), "dev", HOST_IFNAME])
        _run(["ip", "-n", ns, "link", "set", HOST_IFNAME, "up"])
        if h.loopback_ips:
            # LVS-DR style: own the address, never answer ARP for it on eth0.
            self._sysctl(ns, {"net.ipv4.conf.all.arp_ignore": "1",
                              "net.ipv4.conf.all.arp_announce": "2"})
            for ip in h.loopback_ips:
                _run(["ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "lo"])
        if h.gateway:
            if self.static_arp:
                _run(["ip", "-n", ns, "neigh", "replace", h.gateway,
                      "lladdr", self.gateway_mac(h.switch_port), "dev", HOST_IFNAME,
                      "nud", "permanent"])
            _run(["ip", "-n", ns, "route", "add", "default", "via", h.gateway,
                  "dev", HOST_IFNAME])

    @staticmethod
    def _sysctl(ns: str, values: dict[str, str], optional: bool = False) -> None:
        argv = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"]
        argv += [f"{k}={v}" for k, v in values.items()]
        proc = _run(argv, check=False)
        if proc.returncode != 0 and not optional:
            raise TopologyError(f"sysctl in {ns} failed: {proc.stderr.strip()}")

    def set_offloads(self, on: bool) -> None:
        """Checksum, segmentation and receive-coalescing offloads on or off on both ends of
        every veth (they are created off)."""
        for h in self.hosts.values():
            self._offloads(self.netns(h.name), HOST_IFNAME, on)
            self._offloads(self.switch_netns, self.switch_ifname(h.switch_port), on)

    @staticmethod
    def _offloads(ns: str, ifname: str, on: bool) -> None:
        """Checksum, segmentation and receive-coalescing offloads on or off (where the driver
        lets us). Off: a software data plane sees wire-format frames with complete checksums."""
        features = ["tx", "rx", "tso", "gso", "gro"]
        state = "on" if on else "off"
        base = ["ip", "netns", "exec", ns, "ethtool", "-K", ifname]
        if _run(base + [x for f in features for x in (f, state)], check=False).returncode == 0:
            return
        for f in features:  # some driver refuses one: apply the others one by one
            _run(base + [f, state], check=False)


# ---- presets --------------------------------------------------------------------------------
CLIENT_NET = ipaddress.IPv4Network("10.0.1.0/24")
SERVER_NET = ipaddress.IPv4Network("10.0.2.0/24")
GATEWAY_HOST = 254
FIRST_PORT = 1
"""Presets number data ports from 1: P4 port 0 is the embedded DPDK target's CPU port (and
Mininet's switch control port), so a preset's port numbers mean the same everywhere."""


def preset_hosts(n_clients: int = 1, n_servers: int = 3, mode: Mode = "transparent",
                 first_port: int = FIRST_PORT) -> list[HostSpec]:
    """The presets' hosts (MACs unresolved: a ``Topology`` derives them from its prefix)."""
    if mode not in ("transparent", "snat", "dsr"):
        raise ValueError(f"mode must be transparent, snat or dsr, not {mode!r}")
    if not (1 <= n_clients <= 100 and 1 <= n_servers <= 100):
        raise ValueError("1..100 clients and 1..100 servers")
    cgw = str(CLIENT_NET.network_address + GATEWAY_HOST)
    sgw = str(SERVER_NET.network_address + GATEWAY_HOST)
    hosts = []
    port = first_port
    for i in range(1, n_clients + 1):
        hosts.append(HostSpec(f"c{i}", "client", str(CLIENT_NET.network_address + i), 24,
                              port, gateway=cgw))
        port += 1
    for i in range(1, n_servers + 1):
        hosts.append(HostSpec(f"s{i}", "server", str(SERVER_NET.network_address + i), 24, port,
                              gateway=None if mode == "snat" else sgw,
                              loopback_ips=(VIP,) if mode == "dsr" else ()))
        port += 1
    return hosts


def content_switch_topology(prefix: str, n_clients: int = 1, n_servers: int = 3,
                            mode: Mode = "transparent", *, mtu: int = 1500,
                            static_arp: bool = False) -> Topology:
    """Clients ``c1..`` in 10.0.1.0/24 on P4 ports 1.., servers ``s1..`` in 10.0.2.0/24 on the
    following ports (port 0 is left to the CPU port); the switch owns ``.254`` in each subnet and the VIP 10.0.0.100 (reached
    through the clients' default route). Modes say how servers return traffic:

    * ``transparent``: servers route via 10.0.2.254, see real client addresses (NAT / delayed
      binding without source NAT).
    * ``snat``: servers have no default route: only traffic the switch source-NATs to its own
      server-side address comes back.
    * ``dsr``: as transparent, plus the VIP on each server's ``lo`` with ``arp_ignore=1`` /
      ``arp_announce=2`` (direct routing: MAC rewrite only).
    """
    return Topology(prefix, preset_hosts(n_clients, n_servers, mode), kind="p4", mtu=mtu,
                    static_arp=static_arp, mode=mode, vip=VIP)


def direct_topology(prefix: str, n_clients: int = 1, n_servers: int = 3, *, mtu: int = 1500,
                    static_arp: bool = False) -> Topology:
    """Same namespaces, addresses, MACs and veths as ``content_switch_topology`` (transparent),
    but the switch namespace is a Linux router: one bridge per subnet with the gateway address
    on it and ``ip_forward=1``. Clients reach servers by their own addresses (no VIP)."""
    return Topology(prefix, preset_hosts(n_clients, n_servers, "transparent"), kind="bridge",
                    mtu=mtu, static_arp=static_arp, mode="transparent", vip=None)


# ---- operator CLI ---------------------------------------------------------------------------
def _show(prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ns in prefix_namespaces(prefix):
        proc = _run(["ip", "-n", ns, "-j", "addr", "show"], check=False)
        links = json.loads(proc.stdout or "[]")
        out[ns] = {
            "pids": netns_pids(ns),
            "links": [{"ifname": ln["ifname"], "mac": ln.get("address"),
                       "state": ln.get("operstate"), "mtu": ln.get("mtu"),
                       "master": ln.get("master"),
                       "addrs": [f"{a['local']}/{a['prefixlen']}" for a in ln.get("addr_info", [])]}
                      for ln in links if ln["ifname"] != "lo" or len(ln.get("addr_info", [])) > 2]}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m p4cs.lab.netns",
                                 description="Bring a p4cs namespace topology up or down by hand.")
    ap.add_argument("action", choices=["up", "down", "show"])
    ap.add_argument("--prefix", required=True, help="namespace prefix, e.g. 'lab' -> lab-sw, lab-c1")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--mode", choices=["transparent", "snat", "dsr"], default="transparent")
    ap.add_argument("--kind", choices=["p4", "bridge"], default="p4",
                    help="p4: bare switch namespace for a P4 switch; bridge: Linux router baseline")
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--static-arp", action="store_true",
                    help="permanent neighbour entries for the gateways (no ARP needed)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.action == "down":
        print(json.dumps({"deleted": cleanup_prefix(args.prefix)}))
        return 0
    if args.action == "show":
        print(json.dumps(_show(args.prefix), indent=2))
        return 0
    if args.kind == "bridge":
        topo = direct_topology(args.prefix, args.clients, args.servers, mtu=args.mtu,
                               static_arp=args.static_arp)
    else:
        topo = content_switch_topology(args.prefix, args.clients, args.servers, args.mode,
                                       mtu=args.mtu, static_arp=args.static_arp)
    try:
        topo.create()
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(topo.describe(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
