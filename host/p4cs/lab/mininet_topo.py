"""The content-switch star as a Mininet topology, with p4cs as the switch (the BMv2 pattern).

Debian's mininet 2.3.0 installs its Python package in ``/usr/lib/python3/dist-packages``; a
virtualenv Python does not see it, so this module appends that directory to ``sys.path`` (at the
end: the virtualenv's packages keep precedence) before importing Mininet.

!!! Never call Mininet's cleanup (``mn -c``, ``mininet.clean.cleanup()``, ``Mininet(cleanup=True)``).
It kills processes *by name* (every ``ofprotocol``, ``ovs-*``, ``controller``, ``ivs``, ...)
and deletes every link matching ``*-eth*`` in the namespace it runs in: on a shared machine that
destroys other people's work. This module never calls it. To make even Mininet's own
defaults harmless, run the whole thing in a private sandbox (``--sandbox``):
``unshare --net --pid --mount-proc --fork`` gives Mininet an empty network namespace (its
"root" namespace, with its own loopback for the switch's gRPC port), a PID namespace whose
``/proc`` shows only its own processes, and a private mount namespace. Everything disappears
when the sandbox's first process exits.

Port numbering: Mininet numbers switch ports from 1 (port 0 is the switch's ``lo`` control
interface) and the presets number P4 data ports from 1 (port 0 is the embedded DPDK target's
CPU port; BMv2's is 255), so they coincide: the host with ``switch_port=k`` is wired to
``sw1-eth<k>`` and p4cs gets ``--iface k=sw1-eth<k>``.

With ``--content-switch`` (:class:`ContentSwitch`) the whole content switch runs: origin servers
on the server hosts and ``p4cs controller``, which pushes the pipeline on BMv2.

    sudo .venv/bin/python -m p4cs.lab.mininet_topo --sandbox --switch p4cs --target dpdk --cli
    sudo .venv/bin/python -m p4cs.lab.mininet_topo --sandbox --target bmv2 --content-switch
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p4cs import paths
from p4cs.lab.netns import VIP, HostSpec, Mode, Topology, derive_mac
from p4cs.lab.netns import preset_hosts as _netns_preset_hosts

DIST_PACKAGES = "/usr/lib/python3/dist-packages"
SWITCH_NAME = "sw1"
MININET_PREFIX = "mn"  # MAC derivation prefix: same scheme as p4cs.lab.netns


def ensure_mininet_path() -> str | None:
    """Make Debian's mininet importable; returns None when it is, else the reason it is not."""
    try:
        import mininet  # noqa: F401
        return None
    except ImportError:
        pass
    if os.path.isdir(os.path.join(DIST_PACKAGES, "mininet")) and DIST_PACKAGES not in sys.path:
        sys.path.append(DIST_PACKAGES)
    try:
        import mininet  # noqa: F401,F811
    except ImportError as exc:
        return f"mininet is not importable ({exc}); `apt-get install -y mininet`"
    if shutil.which("mnexec") is None:
        return "mnexec not on PATH (Debian package mininet)"
    return None


MININET_MISSING = ensure_mininet_path()
if MININET_MISSING is None:
    from mininet.link import Intf
    from mininet.node import Host, Switch
    from mininet.topo import Topo
else:  # keep the module importable (tests skip; the classes below cannot be used)
    Host = Switch = Topo = Intf = object  # type: ignore[misc,assignment]


def p4cs_command() -> list[str]:
    """How to run the ``p4cs`` CLI: the script next to this Python, on PATH, or ``-m``."""
    here = Path(sys.executable).with_name("p4cs")
    if here.exists():
        return [str(here)]
    found = shutil.which("p4cs")
    return [found] if found else [sys.executable, "-m", "p4cs.cli"]


def p4cs_switch_missing(cmd: Sequence[str] | None = None) -> str | None:
    """None if ``p4cs switch`` exists, else why not (for a clear test skip)."""
    argv = [*(cmd or p4cs_command()), "switch", "--help"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shlex.join(argv)}` cannot run: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return f"`p4cs switch` is not available ({shlex.join(argv)} -> {proc.returncode}: {tail[0]})"
    return None


def mininet_port(p4_port: int) -> int:
    """Mininet port of a P4 port (identical; 0 is reserved on both sides)."""
    if p4_port < 1:
        raise ValueError(f"P4 port {p4_port}: Mininet data ports start at 1 (0 is lo)")
    return p4_port


class P4CSSwitch(Switch):  # type: ignore[misc,valid-type]
    """Mininet switch that runs ``p4cs switch`` on its data interfaces.

    ``start()`` launches exactly one process and remembers its PID; ``stop()`` terminates
    exactly that PID (SIGTERM, then SIGKILL after ``stop_timeout``) and never kills by name.
    """

    def __init__(self, name: str, target: str = "dpdk", grpc_port: int = 9559,
                 p4cs_cmd: Sequence[str] | None = None, extra_args: Sequence[str] = (),
                 log_file: str | None = None, ready_timeout: float = 60.0,
                 stop_timeout: float = 5.0, **params: Any) -> None:
        if target not in ("dpdk", "bmv2"):
            raise ValueError(f"target must be dpdk or bmv2, not {target!r}")
        super().__init__(name, **params)
        self.target = target
        self.grpc_port = grpc_port
        self.p4cs_cmd = list(p4cs_cmd or p4cs_command())
        self.extra_args = list(extra_args)
        if log_file is None:  # unique even across PID namespaces (every sandbox has a pid 1)
            fd, log_file = tempfile.mkstemp(prefix=f"p4cs-{name}-", suffix=".log")
            os.close(fd)
        self.log_file = log_file
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def p4_ports(self) -> dict[int, str]:
        """P4 port -> interface name, for every data interface (not ``lo``)."""
        return {port: intf.name for port, intf in sorted(self.intfs.items())
                if intf.name != "lo"}

    def switch_argv(self) -> list[str]:
        argv = [*self.p4cs_cmd, "switch", "--target", self.target]
        for port, ifname in self.p4_ports().items():
            argv += ["--iface", f"{port}={ifname}"]
        return argv + ["--grpc-addr", self.grpc_addr, *self.extra_args]

    def start(self, controllers: Sequence[Any]) -> None:
        for intf in self.intfList():
            if intf.name != "lo":
                _quiet_interface(self, intf.name)
                self.cmd("ip", "link", "set", intf.name, "up")
        log = open(self.log_file, "wb")
        try:
            # Node.popen runs `mnexec -da <pid>` which execs the command: proc.pid is p4cs.
            self.proc = self.popen(self.switch_argv(), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"p4cs switch exited with {self.proc.returncode}; "
                                   f"log {self.log_file}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"p4cs switch not listening on {self.grpc_addr} after "
                           f"{self.ready_timeout}s; log {self.log_file}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.log_file).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 (Mininet's signature)
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        super().stop(deleteIntfs)


class KernelBridge(Switch):  # type: ignore[misc,valid-type]
    """A Linux bridge made with iproute2 (Mininet's LinuxBridge needs brctl, not installed
    here). L2 only: for smoke tests of the Mininet wiring without a P4 switch."""

    def start(self, controllers: Sequence[Any]) -> None:
        self.cmd("ip", "link", "add", self.name, "type", "bridge", "stp_state", "0")
        for intf in self.intfList():
            if intf.name != "lo":
                _quiet_interface(self, intf.name)
                self.cmd("ip", "link", "set", intf.name, "master", self.name, "up")
        self.cmd("ip", "link", "set", self.name, "up")

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803
        self.cmd("ip", "link", "del", self.name)
        super().stop(deleteIntfs)


def _quiet_interface(node: Any, ifname: str) -> None:
    """IPv6 off and offloads off (a software data plane must see wire-format frames)."""
    node.cmd(f"sysctl -q -w net.ipv6.conf.{ifname}.disable_ipv6=1")
    node.cmd(f"ethtool -K {ifname} tx off rx off tso off gso off gro off >/dev/null 2>&1")


class P4CSTopo(Topo):  # type: ignore[misc,valid-type]
    """Clients and servers (``HostSpec``s, the same as the namespace presets) around one switch.
    Host names, IPs, MACs and gateways follow ``p4cs.lab.netns``; the switch is ``sw1``."""

    def build(self, hosts: Sequence[HostSpec] = (), prefix: str = MININET_PREFIX,
              **_opts: Any) -> None:  # noqa: D102
        sw = self.addSwitch(SWITCH_NAME)
        for h in hosts:
            route = f"via {h.gateway}" if h.gateway else None
            node = self.addHost(h.name, ip=f"{h.ip}/{h.prefix_len}", mac=h.mac,
                                defaultRoute=route)
            # the switch-side MAC is the gateway MAC the P4 switch answers ARP with
            self.addLink(node, sw, port1=0, port2=mininet_port(h.switch_port),
                         addr2=gateway_mac(h.switch_port, prefix))


def preset_hosts(n_clients: int = 1, n_servers: int = 3, mode: Mode = "transparent",
                 prefix: str = MININET_PREFIX) -> list[HostSpec]:
    """The content-switch preset's hosts with their MACs resolved (same scheme as netns)."""
    return list(Topology(prefix, _netns_preset_hosts(n_clients, n_servers, mode)).hosts.values())


def gateway_mac(p4_port: int, prefix: str = MININET_PREFIX) -> str:
    """MAC the P4 switch answers ARP with for the gateway on ``p4_port`` (same as netns)."""
    return derive_mac(prefix, 0x01, p4_port)


def configure_hosts(net: Any, hosts: Sequence[HostSpec], prefix: str = MININET_PREFIX) -> None:
    """After ``net.start()``: IPv6 and offloads off on every host, and a permanent ARP entry
    for each host's gateway (so hosts never depend on the switch answering ARP)."""
    for h in hosts:
        node = net.get(h.name)
        node.cmd("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 "
                 "net.ipv6.conf.default.disable_ipv6=1")
        for intf in node.intfList():
            if intf.name != "lo":
                _quiet_interface(node, intf.name)
        if h.loopback_ips:
            node.cmd("sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2")
            for ip in h.loopback_ips:
                node.cmd(f"ip addr add {ip}/32 dev lo")
        if h.gateway:
            node.setARP(h.gateway, gateway_mac(h.switch_port, prefix))


def describe(hosts: Sequence[HostSpec], switch: Any | None = None,
             prefix: str = MININET_PREFIX, mode: Mode | None = None) -> dict[str, Any]:
    """Same shape as ``Topology.describe()`` (the controller reads either); with the preset's
    ``mode``, also the VIP of the content switch."""
    desc = Topology(prefix, hosts, mode=mode, vip=VIP if mode else None).describe()
    desc["kind"] = "mininet"
    desc["switch"]["netns"] = None  # the switch's interfaces live in Mininet's root namespace
    for p in desc["switch"]["ports"]:
        p["ifname"] = f"{SWITCH_NAME}-eth{mininet_port(p['port'])}"
        p["mac"] = gateway_mac(p["port"], prefix)
    for h in desc["hosts"]:
        h["netns"] = None
        h["ifname"] = f"{h['name']}-eth0"
    if switch is not None and isinstance(switch, P4CSSwitch):
        desc["switch"]["grpc_addr"] = switch.grpc_addr
        desc["switch"]["pid"] = switch.proc.pid if switch.proc else None
        desc["switch"]["argv"] = switch.switch_argv()
    return desc


def build_net(hosts: Sequence[HostSpec], switch: str = "p4cs", **switch_opts: Any) -> Any:
    """A Mininet object (not started) for ``hosts``; no OpenFlow controller, never cleanup."""
    if MININET_MISSING:
        raise RuntimeError(MININET_MISSING)
    from functools import partial

    import mininet.net
    from mininet.net import Mininet

    # Mininet.init() calls fixLimits(), which raises host-wide sysctls (net.core.wmem_max,
    # net.core.netdev_max_backlog, kernel.pty.max, ...) and RLIMITs. Not on a shared machine.
    mininet.net.fixLimits = lambda: None
    cls = partial(P4CSSwitch, **switch_opts) if switch == "p4cs" else KernelBridge
    return Mininet(topo=P4CSTopo(hosts=hosts), switch=cls, host=Host, controller=None,
                   autoSetMacs=False, cleanup=False, build=True)


def _smoke(net: Any, hosts: Sequence[HostSpec], switch: str) -> dict[str, Any]:
    """Checks that run inside the sandbox after ``net.start()``; returns facts as JSON."""
    out: dict[str, Any] = {"switch": switch, "hosts": {}}
    for h in hosts:
        node = net.get(h.name)
        out["hosts"][h.name] = {
            "ip": node.IP(), "mac": node.MAC(),
            "ipv6_off": node.cmd("cat /proc/sys/net/ipv6/conf/all/disable_ipv6").strip() == "1",
            "route": node.cmd("ip route show default").strip(),
            "arp": node.cmd(f"ip neigh show {h.gateway}").strip() if h.gateway else "",
        }
    sw = net.get(SWITCH_NAME)
    out["switch_ifaces"] = {i.name: i.MAC() for i in sw.intfList() if i.name != "lo"}
    if isinstance(sw, P4CSSwitch):
        out["pid"] = sw.proc.pid if sw.proc else None
        out["alive"] = bool(sw.proc and sw.proc.poll() is None)
        out["argv"] = sw.switch_argv()
        out["log_file"] = sw.log_file
    else:  # L2 bridge: two servers share a subnet, so they can ping each other through it
        servers = [h for h in hosts if h.role == "server"]
        if len(servers) >= 2:
            res = net.get(servers[0].name).cmd(f"ping -c 2 -i 0.2 -W 2 {servers[1].ip}")
            out["ping_s1_s2"] = " 0% packet loss" in res
    return out


class ContentSwitch:
    """The rest of the content switch around a started ``P4CSSwitch``: an origin server
    (``p4cs.lab.server``, ports 80 and 8080, ``X-Server: <host>``) on every server host and
    ``p4cs controller`` with the lab's configuration (``p4cs.lab.stack.controller_config``: each
    server a group, ``/~lcs1/`` → s1, ``/~lcs2/`` → s2, the rest over all servers). Every
    process is started here and stopped by its PID."""

    def __init__(self, hosts: Sequence[HostSpec], mode: Mode = "transparent",
                 workdir: str | None = None) -> None:
        self.net: Any = None
        self.hosts = list(hosts)
        self.mode = mode
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="p4cs-mininet-"))
        self.control_socket = str(self.workdir / "controller.sock")
        #: where the switch's output goes (P4CSSwitch's log_file)
        self.switch_log = str(self.workdir / "switch.log")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def servers(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.role == "server"]

    def _log(self, name: str) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def _spawn(self, name: str, argv: list[str], node: Any = None) -> subprocess.Popen[bytes]:
        env = dict(paths.subprocess_env(), PYTHONUNBUFFERED="1")
        with open(self.workdir / f"{name}.log", "wb") as log:
            if node is None:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
            else:
                p = node.popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def start(self, net: Any, timeout: float = 120.0) -> None:
        """After ``net.start()``: servers, then the controller; returns once the controller
        has programmed the switch."""
        import yaml

        from p4cs.lab.stack import controller_config, wait_controller_ready

        self.net = net
        for h in self.servers:
            for port in (80, 8080):
                self._spawn(f"server-{h.name}-{port}",
                            [sys.executable, "-m", "p4cs.lab.server", "--bind", h.ip,
                             "--port", str(port), "--name", h.name], net.get(h.name))
        for h in self.servers:
            for port in (80, 8080):
                self._wait_listen(h, port)
        sw = net.get(SWITCH_NAME)
        names = [h.name for h in self.servers]
        cfg = controller_config(describe(self.hosts, sw, mode=self.mode),
                                target=sw.target, grpc_addr=sw.grpc_addr,
                                control_socket=self.control_socket, names=names.__getitem__)
        cfg_path = self.workdir / "controller.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        ctl = self._spawn("controller", [*p4cs_command(), "controller", "--config", str(cfg_path)])
        wait_controller_ready(ctl, lambda: self._log("controller"), sw.log_tail,
                              self.control_socket, timeout)

    def _wait_listen(self, h: HostSpec, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if h.ip in self.net.get(h.name).cmd(f"ss -Hltn 'sport = :{port}'"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"no server listening on {h.ip}:{port}: "
                           f"{self._log(f'server-{h.name}-{port}')}")

    def get(self, path: str, client: str = "c1", timeout: float = 30.0) -> dict[str, Any]:
        """One curl GET through the VIP from ``client``: status code and answering server."""
        out = self.net.get(client).cmd(
            f"curl -sS --max-time {timeout:g} -o /dev/null -D - -w '%{{http_code}}\\n' "
            f"http://{VIP}{path}")
        lines = out.strip().splitlines()
        server = next((ln.split(":", 1)[1].strip() for ln in lines
                       if ln.lower().startswith("x-server:")), None)
        return {"path": path, "status": lines[-1].strip() if lines else "", "server": server}

    def status(self) -> dict[str, Any]:
        from p4cs.controller.cli import control_request

        return control_request({"op": "status"}, self.control_socket).get("status", {})

    def stop(self, keep_workdir: bool = False) -> None:
        """Stop every process; the work directory (configuration, logs) is removed unless
        ``keep_workdir``."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if keep_workdir:
            print(f"logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _in_sandbox(args: argparse.Namespace) -> int:
    from mininet.log import setLogLevel

    setLogLevel("warning")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # fresh netns: lo is down
    hosts = preset_hosts(args.clients, args.servers, args.mode)
    opts: dict[str, Any] = {}
    if args.switch == "p4cs":
        opts = dict(target=args.target, grpc_port=args.grpc_port,
                    extra_args=shlex.split(args.switch_args or ""))
    cs = ContentSwitch(hosts, args.mode) if args.content_switch else None
    if cs is not None:
        opts["log_file"] = cs.switch_log
    net = build_net(hosts, args.switch, **opts)
    stop_pid = None
    done = False
    try:
        net.start()
        configure_hosts(net, hosts)
        sw = net.get(SWITCH_NAME)
        if cs is not None:
            cs.start(net)
            result = {"switch": describe(hosts, sw, mode=args.mode)["switch"],
                      "requests": [cs.get(p) for p in args.request]}
            st = cs.status()
            result["controller"] = {"flows_installed": st["counters"]["flows_installed"],
                                    "packet_in": st["counters"]["packet_in"],
                                    "spliced": st["csproc"]["spliced"]}
        elif args.smoke:
            result = _smoke(net, hosts, args.switch)
            stop_pid = result.get("pid")
        else:
            result = describe(hosts, sw)
        print(json.dumps(result, indent=2), flush=True)
        if args.cli:
            from mininet.cli import CLI

            CLI(net)
        done = cs is None or all(r["status"] == "200" for r in result["requests"])
    finally:
        try:
            net.stop()  # stops P4CSSwitch's own PID; never mininet.clean.cleanup()
        finally:
            if cs is not None:
                cs.stop(keep_workdir=not done)
    if stop_pid is not None:
        print(json.dumps({"stopped_pid": stop_pid,
                          "gone": not os.path.exists(f"/proc/{stop_pid}")}), flush=True)
    return 0 if done else 1


def sandbox_argv(argv: Sequence[str]) -> list[str]:
    """Re-run this module with ``argv`` inside a private net/pid/mount namespace."""
    return ["unshare", "--net", "--pid", "--mount", "--mount-proc", "--fork",
            sys.executable, "-m", "p4cs.lab.mininet_topo", "--inside-sandbox", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m p4cs.lab.mininet_topo",
                                 description="Content-switch star in Mininet, p4cs as switch.")
    ap.add_argument("--sandbox", action="store_true",
                    help="run inside unshare --net --pid --mount (strongly recommended)")
    ap.add_argument("--inside-sandbox", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--switch", choices=["p4cs", "bridge"], default="p4cs")
    ap.add_argument("--target", choices=["dpdk", "bmv2"], default="dpdk")
    ap.add_argument("--grpc-port", type=int, default=9559)
    ap.add_argument("--switch-args", default="", help="extra arguments for `p4cs switch`")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--mode", choices=["transparent", "snat", "dsr"], default="transparent")
    ap.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    ap.add_argument("--smoke", action="store_true", help="start, check, print JSON, stop")
    ap.add_argument("--content-switch", action="store_true",
                    help="also origin servers and the controller; GET the --request paths "
                         "through the VIP from c1 and print who answered")
    ap.add_argument("--request", action="append", default=None, metavar="PATH",
                    help="with --content-switch: a path to GET (repeatable; default /~lcs1/, "
                         "/~lcs2/, / three times)")
    args = ap.parse_args(argv)
    if args.content_switch and args.switch != "p4cs":
        ap.error("--content-switch needs --switch p4cs")
    if args.request is None:
        args.request = ["/~lcs1/", "/~lcs2/", "/", "/", "/"]
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    if MININET_MISSING:
        print(MININET_MISSING, file=sys.stderr)
        return 2
    if args.switch == "p4cs":
        missing = p4cs_switch_missing()
        if args.target == "bmv2" and shutil.which("simple_switch_grpc") is None:
            missing = "simple_switch_grpc (BMv2) is not on PATH: see docs/topologies.md"
        if missing:
            print(missing, file=sys.stderr)
            return 3
    if args.sandbox and not args.inside_sandbox:
        inner = [a for a in argv if a != "--sandbox"]
        return subprocess.run(sandbox_argv(inner), env=paths.subprocess_env()).returncode
    if not args.inside_sandbox:
        print("warning: running Mininet in this network namespace (no --sandbox); it will "
              "create sw1-eth* links here", file=sys.stderr)
    return _in_sandbox(args)


__all__ = ["P4CSSwitch", "P4CSTopo", "KernelBridge", "ContentSwitch", "build_net", "configure_hosts",
           "describe", "preset_hosts", "gateway_mac", "p4cs_switch_missing", "MININET_MISSING",
           "main"]

if __name__ == "__main__":
    sys.exit(main())
