"""A content switch in network namespaces: topology, real servers, the switch, the controller.

Used by ``p4cs demo``, the end-to-end tests and the benchmarks, so that all three exercise the
same thing a user would run by hand:

* ``p4cs.lab.netns.content_switch_topology``: client(s) and servers, each in its namespace,
  joined to the switch namespace by veths (offloads off);
* in every server namespace nginx (static content, port 80; ``/session/`` sets a new
  ``SESSIONID`` cookie on every answer) and the p4cs echo server
  (``python -m p4cs.lab.server``, port 8080: POST bodies, keep-alive, chosen response sizes);
  with ``mail=True`` also the lab mail servers (``python -m p4cs.lab.mailserver``: SMTP 25,
  POP3 110, IMAP 143, mailboxes under ``mail_spool(name)``);
* ``p4cs switch`` on the switch-side veths, P4Runtime on loopback: the embedded DPDK target, or
  with ``target="bmv2"`` BMv2's ``simple_switch_grpc`` (the controller pushes its pipeline);
* ``p4cs controller`` with a configuration generated from the topology.

Every process is started by this module and stopped by PID; the namespaces carry the lab's
prefix and are removed on stop, also after a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from p4cs import paths
from p4cs.params import TARGETS
from p4cs.lab.server import file_chunks
from p4cs.lab.netns import Topology, content_switch_topology

P4CS = [sys.executable, "-m", "p4cs.cli"]

#: Server names of the demo, after the source documents' LCS demo hosts.
DEFAULT_SERVER_NAMES = ("ace", "wait", "www")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    keepalive_timeout 65;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen {ip}:80 default_server backlog=4096;
        root {dir}/www;
        add_header X-Server {name} always;
        location / {{ }}
        location /session/ {{
            # an application session: a new cookie value for every response
            add_header X-Server {name} always;
            add_header Set-Cookie "SESSIONID=$request_id; Path=/" always;
            return 200 "{name}\n";
        }}
    }}
}}
"""


#: The switch's own address in the servers' subnet: the source of SNAT services.
SNAT_IP = "10.0.2.253"


def controller_config(desc: dict, *, target: str, grpc_addr: str, control_socket: str,
                      names: Callable[[int], str], services: list[dict] | None = None,
                      groups: dict[str, Any] | None = None,
                      limits: dict[str, Any] | None = None, static_server_macs: bool = True,
                      neighbours: dict[str, Any] | None = None,
                      packet_io: str = "direct", packet_port: str | None = None,
                      writes: str = "channel") -> dict:
    """The controller configuration of a content-switch topology described by ``desc``
    (``Topology.describe()`` or the Mininet topology's ``describe()``): its ports, hosts, one
    group per server (named by ``names(i)``) plus ``all`` (port 80) and ``echo`` (8080), and,
    unless ``services`` are given, the web service routing ``/~lcs1/`` and ``/~lcs2/`` to the
    first two servers and the echo service. Without ``static_server_macs`` the servers are
    left out of ``hosts:`` (the controller resolves them with ARP, timers ``neighbours``).
    ``packet_io``: the controller's packet I/O (``switch.packet_io``); ``packet_port``: the
    interface cabled to the switch's CPU port (``switch.packet_port``); ``writes``: how its
    flow Writes go (``switch.writes``; written only when not the default, ``channel``, which
    an older controller does not know)."""
    mode = desc["mode"]
    mtu = {"mtu": desc["mtu"]} if desc.get("mtu", 1500) != 1500 else {}
    ports = {p["port"]: {"mac": p["mac"], "gateway": f"{p['gateway_ip'] or SNAT_IP}/24", **mtu}
             for p in desc["switch"]["ports"]}
    hosts = [{"name": h["name"], "ip": h["ip"], "mac": h["mac"], "port": h["switch_port"]}
             for h in desc["hosts"] if static_server_macs or h["role"] != "server"]
    servers = [h["ip"] for h in desc["hosts"] if h["role"] == "server"]
    server_names = [names(i) for i in range(len(servers))]
    groups = groups or {
        **{n: {"scheduler": "rr", "servers": [{"address": ip, "port": 80}]}
           for n, ip in zip(server_names, servers)},
        "all": {"scheduler": "wrr", "servers": [{"address": ip, "port": 80} for ip in servers]},
        "echo": {"scheduler": "rr", "servers": [{"address": ip, "port": 8080} for ip in servers]},
    }
    if services is None:
        services = [
            {"name": "web", "port": 80,
             "routes": [{"prefix": "/~lcs1/", "group": server_names[0]},
                        {"prefix": "/~lcs2/", "group": server_names[1 % len(server_names)]}],
             "default_group": "all"},
            {"name": "echo", "port": 8080, "default_group": "echo"},
        ]
    svcs = []
    for s in services:
        s = dict(s)
        s.setdefault("vip", desc["vip"])
        s.setdefault("mode", "snat" if mode == "snat" else "transparent")
        if s["mode"] == "snat":
            s.setdefault("snat_address", SNAT_IP)
        svcs.append(s)
    return {
        "switch": {"address": grpc_addr, "device_id": 1, "target": target, "packet_io": packet_io,
                   **({"packet_port": packet_port} if packet_port else {}),
                   **({"writes": writes} if writes != "channel" else {})},
        "ports": ports,
        "hosts": hosts,
        "groups": groups,
        "services": svcs,
        "limits": dict(limits or {}),
        "control": {"socket": control_socket},
        **({} if neighbours is None else {"neighbours": neighbours}),
    }


def wait_controller_ready(ctl: subprocess.Popen, ctl_log: Callable[[], str],
                          switch_log: Callable[[], str], control_socket: str,
                          timeout: float = 60.0) -> None:
    """Wait until the controller ``ctl`` is primary and has programmed the switch; a
    RuntimeError with both logs if it exits, fails or runs out of time."""
    from p4cs.controller.cli import control_request

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if ctl.poll() is not None:
            raise RuntimeError("controller exited:\n" + ctl_log())
        log = ctl_log()
        if "ControllerApp._ready' failed" in log:
            # finsy logs the failure and keeps the process (and the primary role) alive
            raise RuntimeError(f"controller failed to program the switch:\n{log}\n"
                               f"switch:\n{switch_log()}")
        try:
            resp = control_request({"op": "status"}, control_socket)
            st = resp.get("status") or {}
            if st.get("primary") and "controller ready" in log:
                return
            last = resp
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"controller not ready ({last}):\n{ctl_log()}\nswitch:\n{switch_log()}")


@dataclass
class Lab:
    prefix: str
    n_servers: int = 3
    n_clients: int = 1
    mode: str = "transparent"
    #: the P4 target: ``dpdk`` (the embedded DPDK target) or ``bmv2`` (simple_switch_grpc)
    target: str = "dpdk"
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES
    #: services: list of dicts as in the controller config (vip/port added by default)
    services: list[dict] | None = None
    groups: dict[str, Any] | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    big_files: dict[str, int] = field(default_factory=dict)   # name -> bytes, under /big/
    mail: bool = False      # SMTP, POP3 and IMAP lab servers on every server
    #: False: the servers are left out of the controller's ``hosts:`` (resolved with ARP)
    static_server_macs: bool = True
    neighbours: dict[str, Any] | None = None    # the controller's ARP timers
    #: the controller's packet I/O: ``direct`` (the DPDK target's channel; on BMv2 a packet
    #: port, ``p4cs switch --packet-veth``) or ``p4runtime``
    packet_io: str = "direct"
    #: the controller's flow Writes (``switch.writes``): ``channel`` (the DPDK target's
    #: channel socket) or ``grpc``; None: ``grpc`` with packet I/O ``p4runtime`` (everything
    #: over P4Runtime's gRPC), else ``channel``
    writes: str | None = None
    #: CS-processor workers of the controller (``p4cs controller --workers``)
    workers: int = 1
    #: DPDK target: how the switch attaches its interfaces (``p4cs switch --port-type``)
    port_type: str = "afxdp"
    #: DPDK target: the flow tables' memory resident from the start (``p4cs switch --prefault``)
    prefault: bool = False
    #: the MTU of every veth (the switch's ports, and the controller's ``ports:``, follow it)
    mtu: int = 1500
    #: the directory holding the ``p4cs`` package that the switch, the controller and the lab
    #: servers run (another checkout's ``host/``, with its extensions built: a before/after
    #: benchmark); None: this one. Its switch runs this checkout's daemon and DPDK headers
    #: (or ``$P4CS_SWXD`` / ``$P4CS_DPDK_HEADERS`` where set).
    package: Path | None = None
    workdir: Path | None = None
    log_level: str = "info"
    keep_workdir: bool = False

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}: expected one of {', '.join(TARGETS)}")
        self.topo: Topology = content_switch_topology(self.prefix, n_clients=self.n_clients,
                                                      n_servers=self.n_servers, mode=self.mode,
                                                      mtu=self.mtu)
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._own_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix=f"p4cs-{self.prefix}-"))
        self.workdir.chmod(0o755)   # nginx workers (user nobody) read the document roots below
        self.grpc_port = free_port()
        self.control_socket = str(self.workdir / "controller.sock")
        self.config_path = self.workdir / "controller.yaml"

    # ------------------------------------------------------------------ names
    @property
    def packet_port(self) -> str | None:
        """BMv2 with direct packet I/O: the controller's end of the switch's packet port (in
        the caller's namespace; it goes with the switch's namespace)."""
        return f"{self.prefix}pk" if self.target == "bmv2" and self.packet_io == "direct" else None

    @property
    def vip(self) -> str:
        return self.topo.vip

    @property
    def clients(self):
        return self.topo.clients()

    @property
    def servers(self):
        return self.topo.servers()

    def server_name(self, i: int) -> str:
        names = list(self.server_names)
        return names[i] if i < len(names) else f"srv{i + 1}"

    def mail_spool(self, name: str) -> Path:
        """The mailboxes of server ``name``'s mail servers: ``<user>/<n>.eml``."""
        return self.workdir / f"srv-{name}" / "mail"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Lab":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.topo.create()
        self._start_servers()
        self._start_switch()
        self._write_config()
        self._start_controller()
        self.wait_ready()

    def stop(self) -> None:
        for name, p in reversed(self._procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for name, p in reversed(self._procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()
        self.topo.destroy()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self, name: str, argv: Sequence[str], host: str | None = None, **kw) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        env = dict(paths.subprocess_env(), PYTHONUNBUFFERED="1")
        if self.package is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.package), env["PYTHONPATH"]])
            env.setdefault("P4CS_SWXD", paths.daemon_binary())
            headers = paths.dpdk_headers()
            if headers is not None:
                env.setdefault("P4CS_DPDK_HEADERS", str(headers))
        if host is None:
            p = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, **kw)
        else:
            p = self.topo.popen(host, list(argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, **kw)
        self._procs.append((name, p))
        return p

    def log_of(self, name: str) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def _start_servers(self) -> None:
        for i, h in enumerate(self.servers):
            name = self.server_name(i)
            d = self.workdir / f"srv-{name}"
            (d / "tmp").mkdir(parents=True, exist_ok=True)
            www = d / "www"
            for sub in ("", "~lcs1", "~lcs2", "big"):
                (www / sub).mkdir(parents=True, exist_ok=True)
                (www / sub / "index.html").write_text(f"{name}: /{sub + '/' if sub else ''}\n")
            for fname, size in self.big_files.items():
                dst = www / "big" / fname
                # deterministic, incompressible-ish content, same on every server
                with open(dst, "wb") as f:
                    for chunk in file_chunks(size):
                        f.write(chunk)
            for p in [d, *d.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
            (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, ip=h.ip, name=name))
            self._spawn(f"nginx-{name}", ["nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
                        host=h.name)
            self._spawn(f"echo-{name}", [sys.executable, "-m", "p4cs.lab.server", "--bind", h.ip,
                                         "--port", "8080", "--name", name], host=h.name)
            if self.mail:
                self._spawn(f"mail-{name}", [sys.executable, "-m", "p4cs.lab.mailserver", "--bind", h.ip,
                                             "--name", name, "--spool", str(self.mail_spool(name))],
                            host=h.name)
        ports = (80, 8080, 25, 110, 143) if self.mail else (80, 8080)
        for i, h in enumerate(self.servers):
            for port in ports:
                self._wait_listen(h.name, h.ip, port)

    def _wait_listen(self, host: str, ip: str, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.topo.exec(host, ["ss", "-Hltn", f"sport = :{port}"], check=False)
            if ip in (r.stdout or ""):
                return
            time.sleep(0.05)
        raise RuntimeError(f"no server listening on {ip}:{port} in {host}: "
                           f"{self.log_of('nginx-' + host)} {self.log_of('echo-' + host)}")

    def _start_switch(self) -> None:
        argv = [*P4CS, "switch", "--netns", self.topo.switch_netns,
                "--grpc-addr", f"127.0.0.1:{self.grpc_port}"]
        if self.target == "dpdk":
            argv += ["--workdir", str(self.workdir / "swxd"), "--port-type", self.port_type]
            if self.prefault:
                argv.append("--prefault")
        else:
            argv += ["--target", self.target, "--workdir", str(self.workdir / self.target)]
            if self.packet_port:
                argv += ["--packet-veth", self.packet_port]
        for port, ifname in sorted(self.topo.switch_ifaces.items()):
            argv += ["--iface", f"{port}={ifname}"]
        self._spawn("switch", argv)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.grpc_port)) == 0:
                    return
            if self._procs[-1][1].poll() is not None:
                raise RuntimeError("p4cs switch exited:\n" + self.log_of("switch"))
            time.sleep(0.1)
        raise RuntimeError("p4cs switch did not start listening:\n" + self.log_of("switch"))

    def config(self) -> dict:
        return controller_config(self.topo.describe(), target=self.target,
                                 grpc_addr=f"127.0.0.1:{self.grpc_port}",
                                 control_socket=self.control_socket, names=self.server_name,
                                 services=self.services, groups=self.groups, limits=self.limits,
                                 static_server_macs=self.static_server_macs,
                                 neighbours=self.neighbours, packet_io=self.packet_io,
                                 packet_port=self.packet_port,
                                 writes=self.writes or ("grpc" if self.packet_io == "p4runtime"
                                                        else "channel"))

    def _write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def _start_controller(self) -> None:
        self._spawn("controller", [*P4CS, "controller", "--config", str(self.config_path),
                                   "--log-level", self.log_level,
                                   "--workers", str(self.workers)])

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_controller_ready(dict(self._procs)["controller"], lambda: self.log_of("controller"),
                              lambda: self.log_of("switch"), self.control_socket, timeout)

    # ------------------------------------------------------------------ using it
    def control(self, req: dict) -> dict:
        from p4cs.controller.cli import control_request
        return control_request(req, self.control_socket)

    def status(self) -> dict:
        resp = self.control({"op": "status"})
        if not resp.get("ok"):
            raise RuntimeError(resp)
        return resp["status"]

    def curl(self, path: str, *, client: int = 0, port: int = 80, args: Sequence[str] = (),
             timeout: float = 20.0) -> subprocess.CompletedProcess:
        url = f"http://{self.vip}:{port}{path}"
        return self.topo.exec(self.clients[client].name,
                              ["curl", "-sS", "--max-time", str(timeout), *args, url], check=False)

    def client_exec(self, argv: Sequence[str], client: int = 0, **kw) -> subprocess.CompletedProcess:
        return self.topo.exec(self.clients[client].name, list(argv), check=False, **kw)
