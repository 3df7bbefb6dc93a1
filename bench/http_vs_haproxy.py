#!/usr/bin/env python3
"""p4cs vs HAProxy 2.6 vs direct-to-one-server: same namespaces, same veths, same nginx
servers, same run.

Topology: ``p4cs.lab.stack.Lab`` (content_switch_topology: client c1, servers s1..s3 with nginx on
port 80, ``p4cs switch`` on the switch-side veths, ``p4cs controller``; service ``web`` on
VIP 10.0.0.100:80, default group ``all`` = the three servers). The three targets take turns
on the *same* veths:

* ``p4cs``: the content switch as the Lab runs it (client -> http://10.0.0.100/).
* ``haproxy``: HAProxy 2.6 in the switch namespace (HTTP mode, ``nbthread 1``, ``balance
  roundrobin`` over the three nginx, ``maxconn 4000``), listening on the same VIP:80.
* ``haproxy-splice`` (optional, add it to ``--targets``): the same HAProxy process through a
  second frontend on VIP:81 whose frontend and backend set ``option splice-request`` and
  ``option splice-response`` (payload moved by the kernel with splice(), not copied through
  HAProxy's buffers).
* ``direct``: the client talks to s1 (http://10.0.2.1/) through the switch namespace's
  kernel router (ip_forward).

p4cs runs on the embedded DPDK target (default) or on BMv2 (``--target bmv2``); with
``--target dpdk,bmv2`` there is one Lab per target (prefixes ``<prefix>d`` and ``<prefix>b``),
both measured in every round (``p4cs-dpdk``, ``p4cs-bmv2``, and their ratio); HAProxy and
direct then run on the first Lab's namespaces. The controller's packet I/O is the switch's
direct packet channel (``--packet-io direct``, the default) or the P4Runtime stream
(``p4runtime``); ``--packet-io direct,p4runtime`` makes one Lab per mode as well (results
``p4cs-direct`` and ``p4cs-p4runtime``, prefixes ``<prefix>d`` / ``<prefix>p``). Its flow
Writes go on the switch's channel socket (``--writes channel``; the default, but ``grpc``
with ``--packet-io p4runtime``) or over gRPC (``grpc``); ``--writes channel,grpc`` makes one
Lab each (``p4cs-channel``, ``p4cs-grpc``).
The DPDK switch attaches its veths with AF_PACKET (``--port-type``, default ``afpacket``): an
AF_XDP port keeps redirecting the veth's frames to its socket while the daemon is stopped, so
the kernel phases would see no traffic; ``--port-type afpacket,afxdp`` adds a second Lab (prefix
``<prefix>x``) whose switch uses AF_XDP, measured in the p4cs phase (``p4cs-afpacket``,
``p4cs-afxdp``), while HAProxy and direct use the first Lab's namespaces.

``--daemon-sched 0,all,all/100`` measures the DPDK daemon's data-plane thread with each
scheduling setting in turn, in every round, on the same Lab (results ``p4cs@0``, ``p4cs@all``,
``p4cs@all/100``): ``CPUS[/SLICE]``, the CPU affinity (``N``, ``N-M`` or ``all``) and the
scheduler's slice in microseconds (``sched_setattr``'s ``sched_runtime`` of a SCHED_OTHER
thread, EEVDF, Linux 6.12+; none: the kernel's default slice), set on every thread of the
daemon before each of its wrk runs.

``--sched`` records the scheduler's events (``perf sched record``) during every run but the
first and last second, and reports how long the switch side's thread (the daemon's, or
HAProxy's) waited, runnable, for a CPU at each wake-up (``switch_sched_delay_ms``: p50, p99,
p99.9, max; ``perf sched timehist``'s ``sch delay``).

``--mtu N`` gives every veth that MTU (default 1500; the controller's ports and the MSS the
switch announces follow it, so at 9000 every side uses jumbo frames; an AF_XDP port falls back
to AF_PACKET above ~3.5 KB). The Labs create the veths with checksum/TSO/GSO/GRO offloads off;
``--offloads on`` turns them on for every target (HAProxy's and direct's best setting: the
kernel moves 64 KB super-frames; the p4cs AF_PACKET ports complete partial checksums and pass
super-frames whole through the pipeline, or cut them into wire-sized segments with
``P4CS_SWXD_GSO=cut`` in the environment, docs/targets.md), ``--offloads off,on`` measures every target in both settings in each round
(those with offloads on named ``<target>+tso``). Ratios: ``ratio_to_haproxy`` and
``ratio_to_direct`` against the peer with the same offloads, ``ratio_to_best_haproxy`` against
the fastest HAProxy setting of the run.

For the kernel phases (haproxy, direct) the p4cs data plane (``p4cs-swxd`` or
``simple_switch_grpc``) is stopped (SIGSTOP: its sockets would otherwise see and punt the same
frames) and the switch namespace
becomes a router that owns the gateway addresses on its ports (same MACs as the P4 gateway:
nothing changes for the hosts) and the VIP; for the p4cs phase that is undone and the daemon
continues (SIGCONT). Every round measures every target; medians over rounds; ratios are
against HAProxy of the same run.

Tests per target (wrk 4.1 in the client namespace unless noted):
  newconn   wrk -t2 -c50 -H "Connection: close" GET /         new connections/s (1 request each)
  keepalive wrk -t2 -c50 GET /                                requests/s on keep-alive
  get1m     wrk -t1 -c4 GET /big/1M                           MB/s
  get100m   wrk -t1 -c1 GET /big/100M                         MB/s
  get100m_c4 wrk -t1 -c4 GET /big/100M                       MB/s (optional)
with p50 / p99 latency from wrk --latency (and p99.9 from wrk's histogram, ``p999_ms``), and
the CPU seconds the switch side
(p4cs: daemon + P4Runtime server + controller, each also on its own; haproxy: haproxy) and the
nginx servers used, per second (``cpu_share``), per request in milliseconds
(``cpu_ms_per_request``: per connection in ``newconn``) and, for the get tests, per MiB
received (``cpu_ms_per_mb``).

    sudo .venv/bin/python bench/http_vs_haproxy.py [--rounds 3] [--duration 8] [--json FILE]
                                                   [--target dpdk|bmv2|dpdk,bmv2]
                                                   [--packet-io direct|p4runtime|direct,p4runtime]
                                                   [--writes channel|grpc|channel,grpc]
                                                   [--port-type afpacket|afxdp|afpacket,afxdp]
                                                   [--mtu 1500] [--offloads off|on|off,on]
                                                   [--daemon-sched 0,all] [--sched]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host"))

from p4cs.lab.stack import Lab  # noqa: E402
from p4cs.lab.netns import SWITCH, cleanup_prefix  # noqa: E402

HAPROXY_CFG = """\
global
    nbthread 1
    maxconn 4000
defaults
    mode {mode}
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind {vip}:80
    maxconn 4000
    default_backend be
backend be
    balance roundrobin
{servers}
frontend fe_splice
    bind {vip}:{splice_port}
    maxconn 4000
    option splice-request
    option splice-response
    default_backend be_splice
backend be_splice
    balance roundrobin
    option splice-request
    option splice-response
{servers}
"""
#: The VIP port of HAProxy's second frontend, which moves payload with the kernel's splice()
#: (target ``haproxy-splice``).
SPLICE_PORT = 81

#: HAProxy's address towards the servers of a SNAT-mode Lab (on-link in their subnet)
KERNEL_SERVER_SIDE = "10.0.2.250"

TESTS = {
    "newconn": (["-t2", "-c50", "-H", "Connection: close"], "/"),
    "keepalive": (["-t2", "-c50"], "/"),
    "get1m": (["-t1", "-c4"], "/big/1M"),
    "get100m": (["-t1", "-c1"], "/big/100M"),
    # optional (not in the default --tests): 4 connections at once, to see the per-connection
    # window limit of spliced connections (no window scaling)
    "get100m_c4": (["-t1", "-c4"], "/big/100M"),
}
DEFAULT_TESTS = ("newconn", "keepalive", "get1m", "get100m")


def load() -> str:
    a = os.getloadavg()
    return f"{a[0]:.2f} {a[1]:.2f} {a[2]:.2f}"


def cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def sched_wait(pid: int) -> tuple[int, int]:
    """Nanoseconds the thread ``pid`` spent runnable, waiting for a CPU, and its number of
    times on a CPU (/proc/PID/schedstat); zeros for 0."""
    if not pid:
        return 0, 0
    with open(f"/proc/{pid}/schedstat") as f:
        _run, wait, slices = (int(x) for x in f.read().split())
    return wait, slices


#: TCP counters of the client's namespace (/proc/net/snmp, /proc/net/netstat) kept per run.
TCP_COUNTERS = ("RetransSegs", "TCPTimeouts", "TCPLossProbes", "DelayedACKs")


def tcp_counters(lab: Lab) -> dict[str, int]:
    """The client namespace's TCP counters (TCP_COUNTERS) so far."""
    text = subprocess.run(["ip", "netns", "exec", lab.topo.netns(lab.clients[0].name), "cat",
                           "/proc/net/snmp", "/proc/net/netstat"],
                          capture_output=True, text=True).stdout.splitlines()
    out: dict[str, int] = {}
    for names, values in zip(text[::2], text[1::2]):
        if names.startswith(("Tcp:", "TcpExt:")):
            out.update((k, int(v)) for k, v in zip(names.split()[1:], values.split()[1:])
                       if k in TCP_COUNTERS)
    return out


def port_drops(lab: Lab) -> dict[str, int]:
    """The switch's drop counters so far (its controller's status: per-port counters of the
    DPDK target), summed over its data ports: ``rx_drops`` (receive ring full), ``tx_drops``,
    and ``cpu_tx_drops`` (packets to the controller); empty when not available."""
    dp = lab.status().get("dataplane") or {}
    data = [p for p in dp.get("ports") or () if p["type"] not in ("cpu", "copy")]
    if not dp.get("available"):
        return {}
    return {"rx_drops": sum(p["rx_drops"] for p in data),
            "tx_drops": sum(p["tx_drops"] for p in data),
            "cpu_tx_drops": sum(p["tx_drops"] for p in dp["ports"] if p["type"] == "cpu")}


def sched_delays(data: Path, tid: int) -> dict[str, float]:
    """p50 / p99 / p99.9 / max of the scheduling delays (ms) of thread ``tid`` in a ``perf
    sched record`` file, and how many wake-ups."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", str(data), "-t", str(tid)],
                         capture_output=True, text=True).stdout
    delays = sorted(float(m.group(1)) for m in
                    re.finditer(rf"\[{tid}(?:/\d+)?\]\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s*$", out, re.M))
    if not delays:
        return {"n": 0}
    def pct(q: float) -> float:
        return round(delays[min(len(delays) - 1, int(q * len(delays)))], 3)
    return {"n": len(delays), "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999),
            "max": round(delays[-1], 3)}


def daemon_sched(spec: str) -> tuple[set[int], int]:
    """``CPUS[/SLICE]``: the CPUs (``N``, ``N-M`` or ``all``) and the slice (µs; 0: the
    kernel's default) of a daemon setting; ValueError."""
    cpus_spec, _, slice_spec = spec.partition("/")
    if cpus_spec == "all":
        cpus = set(range(os.cpu_count() or 1))
    else:
        lo, _, hi = cpus_spec.partition("-")
        cpus = set(range(int(lo), int(hi or lo) + 1))
    if not cpus or max(cpus) >= (os.cpu_count() or 1):
        raise ValueError(spec)
    slice_us = int(slice_spec) if slice_spec else 0
    if slice_spec and not 100 <= slice_us <= 100_000:
        raise ValueError(spec)
    return cpus, slice_us


def set_slice(tid: int, slice_us: int) -> None:
    """The EEVDF slice of a SCHED_OTHER thread (nice 0), as ``sched_setattr`` sets it (0:
    the kernel's default)."""
    import ctypes
    attr = struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, slice_us * 1000, 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(314, tid, buf, 0) != 0:     # x86-64 sched_setattr
        raise OSError(ctypes.get_errno(), f"sched_setattr of thread {tid}")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            for c in (task / "children").read_text().split():
                out += tree(int(c))
        except OSError:
            pass
    return out


def proc_stat() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def machine_split(a: list[int], b: list[int]) -> dict[str, float]:
    """Whole-machine CPU between two /proc/stat readings, in cores (sums to the core count)."""
    d = [y - x for x, y in zip(a, b)]
    tot = sum(d) or 1
    n = os.cpu_count() or 1
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {k: round(n * v / tot, 2) for k, v in zip(names, d) if k in
            ("user", "system", "softirq", "idle", "steal")}


def _size(s: str) -> float:
    m = re.match(r"([\d.]+)([KMG]?B)", s)
    if not m:
        return 0.0
    return float(m.group(1)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(2)]


def _ms(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


#: wrk script printing the 99.9th percentile of its latency histogram (microseconds).
P999_LUA = """done = function(summary, latency, requests)
  io.write(string.format("p99.9 %d\\n", latency:percentile(99.9)))
end
"""


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Transfer/sec:\s+(\S+)", text)
    out["mb_per_s"] = round(_size(m.group(1)) / (1 << 20), 2) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}_ms"] = round(_ms(m.group(1)), 3) if m else None
    m = re.search(r"^p99\.9 (\d+)$", text, re.M)
    out["p999_ms"] = round(int(m.group(1)) / 1000, 3) if m else None
    m = re.search(r"(\d+) requests in [^,]+, (\S+) read", text)
    out["requests"] = int(m.group(1)) if m else 0
    out["mb_read"] = round(_size(m.group(2)) / (1 << 20), 1) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return out


#: Lab prefix letter of each port type (``--port-type afpacket,afxdp``).
PREFIX_TAG = {"afpacket": "p", "afxdp": "x", "channel": "c", "grpc": "g"}

#: The data-plane process of each target (its /proc comm), stopped during the kernel phases.
DATAPLANE_COMM = {"dpdk": "p4cs-swxd", "bmv2": "simple_switch_g"}   # simple_switch_grpc


class Bench:
    WHAT = "p4cs vs HAProxy 2.6 vs direct, same namespaces/veths/nginx, interleaved"
    #: HAProxy's proxy mode (http or tcp)
    HAPROXY_MODE = "http"

    def lab_kwargs(self) -> dict[str, Any]:
        """What the Labs are made with beyond target, servers, packet I/O and port type."""
        return {"big_files": {"1M": 1 << 20, "100M": 100 << 20}}

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """Options of a variant."""

    def extra_results(self) -> dict[str, Any]:
        """Measurements of a variant after the rounds (the Labs still run)."""
        return {}

    def make_labs(self) -> dict[str, Lab]:
        """One Lab per P4 target, named in the results ``p4cs`` (one target) or
        ``p4cs-<target>`` (and packet I/O mode, ``p4cs-<mode>``, ``p4cs-<target>-<mode>``
        with several)."""
        args = self.args
        labs: dict[str, Lab] = {}
        prefaults = getattr(args, "prefault", None) or [False]
        writes = getattr(args, "writes", None) or [None]
        combos = [(t, io, pt, nw, pf, wr) for t in args.target for io in args.packet_io
                  for pt in args.port_type for nw in args.workers
                  for pf in (prefaults if t == "dpdk" else [False]) for wr in writes]
        for t, io, pt, nw, pf, wr in combos:
            parts = ([t] if len(args.target) > 1 else []) + \
                ([io] if len(args.packet_io) > 1 else []) + \
                ([pt] if len(args.port_type) > 1 else []) + \
                ([f"w{nw}"] if len(args.workers) > 1 else []) + \
                ([wr] if len(writes) > 1 else [])
            tags = [PREFIX_TAG.get(x, x if x.startswith("w") else x[0]) for x in parts]
            if pf and len(prefaults) > 1:
                parts.append("prefault")
                tags.append("f")
            name = "-".join(["p4cs", *parts])
            labs[name] = Lab(args.prefix + "".join(tags), target=t, n_servers=3, packet_io=io,
                             port_type=pt, mtu=args.mtu, workers=nw, prefault=pf, writes=wr,
                             **self.lab_kwargs())
        before = getattr(args, "before", None)
        if before is not None:
            # the first Lab's settings, with the other checkout's package (--before)
            first = next(iter(labs.values()))
            labs["p4cs-before"] = Lab(args.prefix + "o", target=first.target, n_servers=3,
                                      packet_io=first.packet_io, port_type=first.port_type,
                                      mtu=args.mtu, workers=first.workers,
                                      prefault=first.prefault, package=before,
                                      **self.lab_kwargs())
        return labs

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.labs: dict[str, Lab] = self.make_labs()
        #: the p4cs results: name -> (its Lab, the scheduling setting of its daemon: CPUs and
        #: slice; None: as the daemon sets it)
        self.variants: dict[str, tuple[str, tuple[set[int], int] | None]] = {
            (f"{name}@{spec}" if spec else name): (name, daemon_sched(spec) if spec else None)
            for name in self.labs for spec in (args.daemon_sched or [""])}
        #: the Lab of the kernel phases (HAProxy, direct): the first target's
        self.lab = next(iter(self.labs.values()))
        self.haproxy: subprocess.Popen | None = None
        self.daemon_pid = 0
        self.stopped = False
        self.in_kernel = False      # the kernel phase's addresses are set, the daemon stopped

    # ---------------------------------------------------------------- setup
    def start(self) -> None:
        for lab in self.labs.values():
            lab.start()
            c1 = lab.topo.netns("c1")
            for k, v in (("net.ipv4.ip_local_port_range", "1024 65000"),
                         ("net.ipv4.tcp_tw_reuse", "1")):
                subprocess.run(["ip", "netns", "exec", c1, "sysctl", "-qw", f"{k}={v}"], check=True)
        lab = self.lab
        topo = lab.topo
        sw = dict(lab._procs)["switch"]  # noqa: SLF001
        dp_comm = DATAPLANE_COMM[lab.target]
        for p in tree(sw.pid):
            if comm(p) == dp_comm:
                self.daemon_pid = p
        if not self.daemon_pid:
            raise RuntimeError(f"{dp_comm} not found under the switch process")
        ns = topo.switch_netns
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"],
                       check=True)
        servers = "\n".join(f"    server s{i + 1} {h.ip}:80 maxconn 4000"
                            for i, h in enumerate(lab.servers))
        cfg = Path(lab.workdir) / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(mode=self.HAPROXY_MODE, vip=lab.vip, servers=servers,
                                          splice_port=SPLICE_PORT))
        self.hap_log = open(Path(lab.workdir) / "haproxy.log", "w")
        self.haproxy = topo.popen(SWITCH, ["haproxy", "-db", "-f", str(cfg)],
                                  stdout=self.hap_log, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        if self.haproxy.poll() is not None:
            raise RuntimeError("haproxy exited: " + (Path(lab.workdir) / "haproxy.log").read_text())

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            if self.daemon_pid:
                os.kill(self.daemon_pid, signal.SIGCONT)
        except OSError:
            pass
        if self.haproxy and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
        for lab in self.labs.values():
            try:
                lab.stop()
            finally:
                cleanup_prefix(lab.prefix)

    # ---------------------------------------------------------------- phases
    def _sw(self, *argv: str, check: bool = True) -> None:
        subprocess.run(["ip", "-n", self.lab.topo.switch_netns, *argv], check=check,
                       capture_output=True)

    def set_offloads(self, on: bool) -> None:
        """Offloads (checksum, TSO/GSO, GRO) on or off on every veth of every Lab."""
        for lab in self.labs.values():
            lab.topo.set_offloads(on)

    def kernel_phase(self) -> None:
        """Daemon stopped; the switch namespace routes and owns the gateways and the VIP."""
        self.in_kernel = True
        topo = self.lab.topo
        os.kill(self.daemon_pid, signal.SIGSTOP)
        ns = topo.switch_netns
        for h in topo.hosts.values():
            ifn = topo.switch_ifname(h.switch_port)
            if h.role == "client":
                self._sw("addr", "add", f"{h.gateway}/24", "dev", ifn)
            else:   # a server of a SNAT-mode Lab has no gateway: an address of its subnet
                #       that is not the Lab's SNAT address (p4cs's SNAT ports would meet
                #       HAProxy's connections in the servers' TIME_WAIT)
                gw = h.gateway or KERNEL_SERVER_SIDE
                self._sw("addr", "add", f"{gw}/32", "dev", ifn)
                self._sw("route", "add", f"{h.ip}/32", "dev", ifn, "src", gw)
        self._sw("addr", "add", f"{self.lab.vip}/32", "dev", "lo")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)
        time.sleep(0.5)

    def p4cs_phase(self) -> None:
        self.in_kernel = False
        topo = self.lab.topo
        ns = topo.switch_netns
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                       check=True)
        for h in topo.hosts.values():
            self._sw("addr", "flush", "dev", topo.switch_ifname(h.switch_port), check=False)
        self._sw("addr", "del", f"{self.lab.vip}/32", "dev", "lo", check=False)
        self._sw("neigh", "flush", "all", check=False)
        os.kill(self.daemon_pid, signal.SIGCONT)
        self.settle()

    def settle(self, quiet_s: float = 1.0, timeout_s: float = 30.0) -> None:
        """Wait until the stale frames of the kernel phase have drained through the switch:
        the stopped daemon's rings kept copies of HAProxy's and direct's frames (thousands per
        port), which it punts to the controller when it continues (``not_for_us``,
        ``syncookies_invalid``). Done when the controller's packet-ins stay still for
        ``quiet_s`` (at least 2 s after the daemon continued); a p4cs run measured meanwhile
        would share the CPUs with that work."""
        time.sleep(2.0)
        deadline = time.monotonic() + timeout_s
        seen = -1
        while time.monotonic() < deadline:
            n = self.lab.status()["counters"]["packet_in"]
            if n == seen:
                return
            seen = n
            time.sleep(quiet_s)

    # ---------------------------------------------------------------- measuring
    def lab_of(self, target: str) -> Lab:
        return self.labs.get(self.variants.get(target, (target, None))[0], self.lab)

    def dataplane_pid(self, target: str) -> int:
        """The data-plane process of a p4cs result (its main thread runs the pipeline); 0:
        none."""
        lab = self.lab_of(target)
        sw = dict(lab._procs)["switch"]  # noqa: SLF001
        return next((p for p in tree(sw.pid) if comm(p) == DATAPLANE_COMM[lab.target]), 0)

    def pin(self, target: str) -> None:
        """The scheduling setting of the variant ``target`` on every thread of its Lab's
        daemon."""
        setting = self.variants.get(target, (target, None))[1]
        pid = self.dataplane_pid(target)
        if setting is None or not pid:
            return
        cpus, slice_us = setting
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), cpus)
            set_slice(int(tid), slice_us)

    def cpu_groups(self, target: str) -> dict[str, float]:
        """CPU seconds so far: the switch side (and, for p4cs, its data-plane daemon, its
        P4Runtime server and its controller on their own) and the nginx servers."""
        lab = self.lab_of(target)
        procs = dict(lab._procs)  # noqa: SLF001
        out: dict[str, float] = {}
        if target in self.variants:
            sw = {p: cpu_s(p) for p in tree(procs["switch"].pid)}
            out["daemon"] = sum(v for p, v in sw.items() if comm(p) == DATAPLANE_COMM[lab.target])
            out["switch_server"] = sum(sw.values()) - out["daemon"]
            ctl = procs["controller"].pid
            out["controller"] = cpu_s(ctl)
            # CS-processor worker processes (``--workers``): the controller's children
            out["workers"] = sum(cpu_s(p) for p in tree(ctl) if p != ctl)
            out["switch_side"] = out["daemon"] + out["switch_server"] + out["controller"] + \
                out["workers"]
        elif target.startswith("haproxy"):
            out["switch_side"] = cpu_s(self.haproxy.pid)
        else:
            out["switch_side"] = 0.0
        out["servers"] = sum(cpu_s(p) for name, pr in procs.items() if name.startswith("nginx-")
                             for p in tree(pr.pid))
        return out

    def switch_tid(self, target: str) -> int:
        """The thread that forwards the packets of ``target`` (0: the kernel's, direct)."""
        if target in self.variants:
            return self.dataplane_pid(target)
        if target.startswith("haproxy") and self.haproxy:
            return next((p for p in tree(self.haproxy.pid) if comm(p) == "haproxy"), 0)
        return 0

    def wrk(self, target: str, test: str) -> dict[str, Any]:
        opts, path = TESTS[test]
        lab = self.lab_of(target)
        host = {"direct": lab.servers[0].ip,
                "haproxy-splice": f"{lab.vip}:{SPLICE_PORT}"}.get(target, lab.vip)
        d = self.args.duration
        script = Path(lab.workdir) / "p999.lua"
        script.write_text(P999_LUA)
        argv = ["wrk", *opts, "-d", f"{d}s", "--timeout", "30s", "--latency", "-s", str(script),
                f"http://{host}{path}"]
        self.pin(target)
        pid = self.dataplane_pid(target) if target in self.variants else 0
        d0 = port_drops(lab) if pid else {}
        tcp0 = tcp_counters(lab)
        c0, t0, m0 = self.cpu_groups(target), time.monotonic(), proc_stat()
        w0 = sched_wait(pid)
        tid = self.switch_tid(target) if self.args.sched and d > 2 else 0
        rec = Path(lab.workdir) / "sched.data"
        perf = subprocess.Popen(["perf", "sched", "record", "-a", "-q", "-o", str(rec), "--",
                                 "sh", "-c", f"sleep 1; exec sleep {d - 2}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
            if tid else None
        r = lab.client_exec(argv, timeout=d + 120, capture_output=True, text=True)
        wall = time.monotonic() - t0
        c1, m1 = self.cpu_groups(target), proc_stat()
        w1 = sched_wait(pid)
        res = parse_wrk(r.stdout)
        tcp1 = tcp_counters(lab)
        res["client_tcp"] = {k: tcp1.get(k, 0) - v for k, v in tcp0.items()}
        if perf is not None:
            perf.wait(60)
            res["switch_sched_delay_ms"] = sched_delays(rec, tid)
            rec.unlink(missing_ok=True)
        if pid:
            d1 = port_drops(lab)
            res["port_drops"] = {k: d1.get(k, 0) - v for k, v in d0.items()}
            # runnable but waiting for a CPU: ms per second of the run, and per wake-up
            res["daemon_runq_wait_ms_per_s"] = round((w1[0] - w0[0]) / 1e6 / wall, 2)
            res["daemon_runq_wait_us_per_run"] = round((w1[0] - w0[0]) / 1e3
                                                       / max(w1[1] - w0[1], 1), 2)
        res["cpu_share"] = {k: round((c1[k] - c0[k]) / wall, 3) for k in c0}
        res["cpu_ms_per_request"] = {k: round(1000 * (c1[k] - c0[k]) / max(res["requests"], 1), 4)
                                     for k in c0}
        if test.startswith("get"):
            res["cpu_ms_per_mb"] = {k: round(1000 * (c1[k] - c0[k]) / max(res["mb_read"], 1e-9), 3)
                                    for k in c0}
        res["machine_cores"] = machine_split(m0, m1)   # everyone's, other suites included
        res["load"] = load()
        if r.returncode != 0 or not res["requests"]:
            res["error"] = (r.stderr or r.stdout)[-500:]
        return res


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    med: dict[str, dict[str, Any]] = {}
    for target, tests in runs.items():
        med[target] = {}
        for test, rs in tests.items():
            m: dict[str, Any] = {}
            for k in ("rps", "mb_per_s", "p50_ms", "p99_ms", "p999_ms",
                      "daemon_runq_wait_ms_per_s", "daemon_runq_wait_us_per_run"):
                vals = [r[k] for r in rs if r.get(k) is not None]
                m[k] = round(statistics.median(vals), 3) if vals else None
            for key, nd in (("cpu_share", 3), ("cpu_ms_per_request", 4), ("cpu_ms_per_mb", 3)):
                if key in rs[0]:
                    m[key] = {k: round(statistics.median(r[key][k] for r in rs), nd)
                              for k in rs[0][key]}
            delays = [r["switch_sched_delay_ms"] for r in rs
                      if r.get("switch_sched_delay_ms", {}).get("n")]
            if delays:
                m["switch_sched_delay_ms"] = {k: round(statistics.median(x[k] for x in delays), 3)
                                              for k in delays[0]}
            m["errors"] = sum(r["non2xx"] + r["socket_errors"] for r in rs)
            if "machine_cores" in rs[0]:
                m["machine_idle_cores"] = round(statistics.median(r["machine_cores"]["idle"]
                                                                  for r in rs), 2)
            med[target][test] = m

    def ratios(peer_of: Callable[[str], list[str]]) -> dict[str, Any]:
        """Every target against the best of its peers ``peer_of(target)`` in this run."""
        out: dict[str, Any] = {}
        for target in med:
            peers = [p for p in peer_of(target) if p in med and p != target]
            if not peers:
                continue
            out[target] = {}
            for test in med[target]:
                key = "mb_per_s" if test.startswith("get") else "rps"  # get1m, get100m, ...
                h = max((med[p].get(test, {}).get(key) or 0 for p in peers), default=0)
                if h:
                    out[target][test] = round(med[target][test][key] / h, 3)
        return {t: r for t, r in out.items() if r}

    def base(t: str) -> str:
        return t.split("+")[0]

    def same_settings(peer: str) -> Callable[[str], list[str]]:
        # a peer measured with the same offloads (``+tso`` or not) as the target
        return lambda t: [] if base(t) == peer else [peer + t[len(base(t)):]]

    out = {"median": med, "ratio_to_haproxy": ratios(same_settings("haproxy"))}
    haproxies = [t for t in med if t.startswith("haproxy")]
    if len(haproxies) > 1:
        out["ratio_to_best_haproxy"] = ratios(
            lambda t: [] if t.startswith("haproxy") else haproxies)
    out["ratio_to_direct"] = ratios(same_settings("direct"))
    return out


def main(argv: list[str] | None = None, bench_cls: type = Bench, doc: str = __doc__,
         default_tests: tuple[str, ...] = DEFAULT_TESTS) -> int:
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--prefix", default=f"hx{os.getpid() % 10000}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--tests", default=",".join(default_tests),
                    help=f"comma-separated, of {', '.join(TESTS)}")
    ap.add_argument("--targets", default="p4cs,haproxy,direct")
    ap.add_argument("--target", default="dpdk",
                    help="P4 target(s) of p4cs: dpdk, bmv2, or dpdk,bmv2 (one Lab each, "
                         "measured in turn in every round: results p4cs-dpdk and p4cs-bmv2)")
    ap.add_argument("--packet-io", default="direct",
                    help="the controller's packet I/O: direct, p4runtime, or direct,p4runtime "
                         "(one Lab each, measured in turn in every round)")
    ap.add_argument("--writes", default="",
                    help="the controller's flow Writes: channel, grpc, or channel,grpc (one Lab "
                         "each, results p4cs-channel and p4cs-grpc); default: the Lab's "
                         "(grpc with --packet-io p4runtime, else channel)")
    ap.add_argument("--port-type", default="afpacket",
                    help="how the DPDK switch attaches its veths: afpacket, afxdp, or "
                         "afpacket,afxdp (one Lab each, results p4cs-afpacket and p4cs-afxdp; "
                         "the kernel phases, HAProxy and direct, run on the first Lab's "
                         "namespaces, which must not be afxdp: its sockets take the frames)")
    ap.add_argument("--mtu", type=int, default=1500,
                    help="MTU of every veth (the switch's ports and the controller's MSS follow)")
    ap.add_argument("--offloads", default="off",
                    help="checksum/TSO/GSO/GRO offloads of the veths: off (as the Labs make "
                         "them), on, or off,on (every target measured in both settings, those "
                         "with offloads on named <target>+tso)")
    ap.add_argument("--daemon-sched", default="",
                    help="scheduling settings of the DPDK daemon's thread, each measured in "
                         "turn on the same Lab: comma-separated CPUS[/SLICE] (CPUS: N, N-M or "
                         "all; SLICE: µs), e.g. 0,all,all/100 (results p4cs@0, p4cs@all, "
                         "p4cs@all/100); default: as the daemon sets it")
    ap.add_argument("--sched", action="store_true",
                    help="perf sched record during each run: the scheduling delays of the "
                         "switch side's thread (needs perf)")
    ap.add_argument("--workers", default="1",
                    help="CS-processor workers of the controller, comma-separated: one p4cs "
                         "lab per count (p4cs controller --workers)")
    ap.add_argument("--prefault", default="off",
                    help="DPDK target: off, on or off,on (one p4cs lab each, p4cs-prefault for "
                         "on): the flow tables' memory resident from the start (p4cs switch "
                         "--prefault), the cost per connection of a switch that has run a while")
    ap.add_argument("--before", metavar="DIR",
                    help="another checkout of p4cs (its extensions built: setup.py build_ext "
                         "--inplace): one more Lab, p4cs-before, the first Lab's settings with "
                         "that checkout's switch, controller and P4 program (this checkout's "
                         "daemon, or $P4CS_SWXD), in every round: before/after in one run")
    ap.add_argument("--json")
    bench_cls.add_arguments(ap)
    args = ap.parse_args(argv)
    tests = args.tests.split(",")
    args.target = args.target.split(",")
    args.packet_io = args.packet_io.split(",")
    args.writes = [w for w in args.writes.split(",") if w]
    if set(args.writes) - {"channel", "grpc"} or len(set(args.writes)) != len(args.writes):
        ap.error(f"--writes: channel, grpc or channel,grpc expected, got {args.writes!r}")
    args.port_type = args.port_type.split(",")
    args.offloads = args.offloads.split(",")
    args.daemon_sched = [c for c in args.daemon_sched.split(",") if c]
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        ap.error(f"--workers: comma-separated integers expected, got {args.workers!r}")
    pf = args.prefault.split(",")
    if not pf or set(pf) - {"off", "on"} or len(set(pf)) != len(pf):
        ap.error(f"--prefault: off, on or off,on expected, got {args.prefault!r}")
    args.prefault = [x == "on" for x in pf]
    if args.before is not None:
        if bench_cls.make_labs is not Bench.make_labs:
            ap.error("--before: not with this bench (it makes its own Labs)")
        args.before = Path(args.before).resolve() / "host"
        if not (args.before / "p4cs" / "__init__.py").is_file():
            ap.error(f"--before: no p4cs package in {args.before}")
    bad = [t for t in tests if t not in TESTS] + [t for t in args.target if t not in DATAPLANE_COMM] \
        + [m for m in args.packet_io if m not in ("direct", "p4runtime")] \
        + [p for p in args.port_type if p not in PREFIX_TAG] \
        + [o for o in args.offloads if o not in ("off", "on")]
    if bad:
        ap.error(f"unknown test, target, port type or offload setting: {', '.join(bad)}")
    try:
        for spec in args.daemon_sched:
            daemon_sched(spec)
    except ValueError:
        ap.error(f"--daemon-sched {','.join(args.daemon_sched)}: expected CPUS[/SLICE] such as "
                 "0, 0-1, all or all/100 (slice 100..100000 µs)")
    if not 576 <= args.mtu <= 65535:
        ap.error(f"--mtu {args.mtu}: expected 576..65535")
    if args.port_type[0] == "afxdp" and set(args.targets.split(",")) - {"p4cs"}:
        ap.error("the kernel phases (haproxy, direct) need an afpacket Lab first in --port-type")
    try:
        b = bench_cls(args)     # makes the Labs: a --prefix too long for their names fails here
    except ValueError as exc:
        ap.error(f"--prefix {args.prefix!r}: {exc}")
    # "p4cs" in --targets stands for p4cs on every --target
    targets = [n for t in args.targets.split(",") for n in (b.variants if t == "p4cs" else [t])]
    suffix = {"off": "", "on": "+tso"}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        t + suffix[o]: {x: [] for x in tests} for o in args.offloads for t in targets}
    loads = [load()]
    try:
        b.start()
        for rnd in range(args.rounds):
            for offloads in args.offloads:
                b.set_offloads(offloads == "on")
                for phase in ("p4cs", "kernel"):
                    if phase == "p4cs":
                        here = [t for t in targets if t in b.variants]
                        if not here:
                            continue
                        if b.in_kernel:
                            b.p4cs_phase()
                    else:
                        here = [t for t in targets if t not in b.variants]
                        if not here:
                            continue
                        if not b.in_kernel:
                            b.kernel_phase()
                    for test in tests:
                        for target in here:
                            r = b.wrk(target, test)
                            name = target + suffix[offloads]
                            runs[name][test].append(r)
                            print(f"round {rnd} {name:9s} {test:9s} rps {r['rps']:>10.1f} "
                                  f"MB/s {r['mb_per_s']:>8.1f} p50 {r['p50_ms']} p99 {r['p99_ms']} "
                                  f"p99.9 {r['p999_ms']} "
                                  + (f"runq {r['daemon_runq_wait_ms_per_s']} ms/s "
                                     f"{r['daemon_runq_wait_us_per_run']} us/run "
                                     if "daemon_runq_wait_ms_per_s" in r else "")
                                  + (f"sched delay {r['switch_sched_delay_ms']} "
                                     if "switch_sched_delay_ms" in r else "")
                                  + (f"drops {r['port_drops']} " if "port_drops" in r else "")
                                  + f"client tcp {r['client_tcp']} " +
                                  f"cpu {r['cpu_share']} machine {r['machine_cores']} "
                                  f"err {r['non2xx'] + r['socket_errors']} "
                                  f"load {r['load']}" + (f" ERROR {r['error']}" if 'error' in r else ""),
                                  file=sys.stderr, flush=True)
        extra = b.extra_results()
        if b.in_kernel:         # the controllers' status wants their switch running
            b.p4cs_phase()
        status = {name: lab.status() for name, lab in b.labs.items()}
    finally:
        b.stop()
    loads.append(load())
    out = {"what": b.WHAT,
           "rounds": args.rounds, "duration_s": args.duration,
           "tests": {k: f"wrk {' '.join(v[0])} -d{args.duration}s --latency <url>{v[1]}"
                     for k, v in TESTS.items() if k in tests},
           "p4_targets": args.target, "packet_io": args.packet_io, "port_type": args.port_type,
           "prefault": args.prefault,
           "before": None if args.before is None else str(args.before.parent),
           "mtu": args.mtu, "offloads": args.offloads, "load_before_after": loads,
           **summarize(runs),
           "csproc_after": (status["p4cs"].get("csproc") if "p4cs" in status and
                            args.before is None else
                            {name: st.get("csproc") for name, st in status.items()}),
           "packet_io_after": {name: st.get("packet_io") for name, st in status.items()},
           "controller_counters_after": {name: st.get("counters") for name, st in status.items()},
           **extra,
           "runs": runs}
    shown = ["median", *(k for k in out if k.startswith("ratio_to_")), "load_before_after", *extra]
    for a, b in (("p4cs", "p4cs-before"), ("p4cs-bmv2", "p4cs-dpdk"),
                 ("p4cs-direct", "p4cs-p4runtime"),
                 ("p4cs-pool", "p4cs-nopool"), ("p4cs-nonsticky", "p4cs-sticky")):
        if {a, b} <= set(runs):
            med = out["median"]
            key_ = f"ratio_{a[5:] or 'now'}_to_{b[5:]}"
            out[key_] = {
                test: round(med[a][test][key] / med[b][test][key], 4)
                for test in tests
                for key in ["mb_per_s" if test.startswith("get") else "rps"]
                if med[b][test][key]}
            shown.append(key_)
    print(json.dumps({k: out[k] for k in shown}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
