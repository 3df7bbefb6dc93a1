#!/usr/bin/env python3
"""Request latency through p4cs-swxd's fast path, against a Linux bridge on the same veths.

  sudo .venv/bin/python dataplane/bench/latency.py [--duration 10] [--connections 50]
       [--threads 2] [--repeat 3] [--daemon NAME=PATH[@afxdp] ...] [--offloads] [--json FILE]

Three namespaces: a client (wrk), a server (nginx, 1 worker, a 2-byte answer, keep-alive) and
the switch between them, joined by two veth pairs. The switch is either a Linux bridge or
p4cs-swxd on AF_PACKET (PATH@afxdp: AF_XDP) ports with tests/dataplane/data/flow.spec (ARP by port, IPv4 by a /32
route per host). wrk -tT -cC --latency for --duration seconds; p50 / p90 / p99 / p99.9 from
wrk's own histogram (a Lua `done` hook), plus requests/s. Cases run round robin, --repeat
rounds, medians reported. --offloads keeps the veths as they come (checksum offload, TSO on).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAEMON = REPO / "dataplane" / "build" / "p4cs-swxd"
SPEC = REPO / "tests" / "dataplane" / "data" / "flow.spec"
MAC_C, MAC_S = "02:00:00:00:00:10", "02:00:00:00:00:11"
IP_C, IP_S = "10.0.0.1", "10.0.0.2"

WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50\\":%d,\\"p90\\":%d,\\"p99\\":%d,\\"p999\\":%d,"
    .. "\\"max\\":%d,\\"requests\\":%d,\\"seconds\\":%f,\\"errors\\":%d}\\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout))
end
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  keepalive_requests 1000000;
  server {{
    listen {ip}:80;
    location / {{ return 200 "ok"; }}
  }}
}}
"""


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(list(args), check=check, capture_output=True)


class Topo:
    def __init__(self, offloads: bool):
        self.prefix = f"lat{os.getpid()}x{uuid.uuid4().hex[:4]}"
        self.sw, self.c, self.s = (self.prefix + x for x in ("sw", "c", "s"))
        self.offloads = offloads
        self.made: list[str] = []

    def up(self) -> None:
        for ns in (self.sw, self.c, self.s):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
        for i, (ns, mac, ip) in enumerate(((self.c, MAC_C, IP_C), (self.s, MAC_S, IP_S))):
            sh("ip", "link", "add", f"s{i}", "netns", self.sw, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            for n, ifn in ((self.sw, f"s{i}"), (ns, "eth0")):
                sh("ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.{ifn}.disable_ipv6=1")
                if not self.offloads:
                    sh("ip", "netns", "exec", n, "ethtool", "-K", ifn, "tx", "off", "tso", "off",
                       "gso", "off", "gro", "off", check=False)
                sh("ip", "-n", n, "link", "set", ifn, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def bridge(self, on: bool) -> None:
        if on:
            sh("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge")
            for i in (0, 1):
                sh("ip", "-n", self.sw, "link", "set", f"s{i}", "master", "br0")
            sh("ip", "-n", self.sw, "link", "set", "br0", "up")
        else:
            sh("ip", "-n", self.sw, "link", "del", "br0", check=False)

    def down(self) -> None:
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)


class Swxd:
    def __init__(self, binary: str, topo: Topo, workdir: Path):
        binary, _, kind = binary.partition("@")
        kind = kind or "afpacket"
        self.ctl, ctl_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.cpu, cpu_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = ["ip", "netns", "exec", topo.sw, binary, "--spec", str(SPEC), "--workdir", str(workdir),
               "--ctl-fd", str(ctl_b.fileno()), "--cpu-fd", str(cpu_b.fileno()), "--cpu-port", "2",
               "--port", f"0={kind}:s0", "--port", f"1={kind}:s1"]
        self.log = open(workdir / "swxd.log", "a")
        self.proc = subprocess.Popen(cmd, pass_fds=[ctl_b.fileno(), cpu_b.fileno()],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        ctl_b.close()
        cpu_b.close()
        mac = lambda m: int(m.replace(":", ""), 16)  # noqa: E731
        self.req("ping",
                 "table add port_table match 0 action fwd port 1",
                 "table add port_table match 1 action fwd port 0",
                 f"table add route_table match 0x0a000002/0xffffffff action route port 1 dmac {mac(MAC_S)}",
                 f"table add route_table match 0x0a000001/0xffffffff action route port 0 dmac {mac(MAC_C)}")

    def req(self, *lines: str) -> list[str]:
        self.ctl.settimeout(120)
        self.ctl.send("\n".join(lines).encode())
        out = self.ctl.recv(1 << 16).decode().split("\n")
        if any(not x.startswith("ok") for x in out):
            raise SystemExit(f"daemon: {lines} -> {out}")
        return out

    def losses(self) -> dict:
        """Frames lost in the ports (a daemon without per-port counters reports none)."""
        ports = json.loads(self.req("stats")[0][3:])["ports"]
        return {k: sum(p.get(k, 0) for p in ports) for k in ("rx_drops", "tx_drops", "rx_errors")}

    def stop(self) -> None:
        self.ctl.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.cpu.close()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def wrk(topo: Topo, lua: Path, args: argparse.Namespace, pid: int | None) -> dict:
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["ip", "netns", "exec", topo.c, "wrk", f"-t{args.threads}",
                          f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s", str(lua),
                          f"http://{IP_S}/"], capture_output=True, text=True, timeout=args.duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("JSON "):
            r = json.loads(line[5:])
            r["rps"] = r["requests"] / r["seconds"]
            # the switch's CPU time per request (the bridge's is in the senders' softirqs)
            r["cpu_us_per_req"] = (cpu_seconds(pid) - cpu0) / r["requests"] * 1e6 if pid else 0.0
            return r
    raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--daemon", action="append", default=[], metavar="NAME=PATH",
                    help=f"a p4cs-swxd to measure, @afxdp for AF_XDP ports (default: p4cs={DAEMON})")
    ap.add_argument("--no-bridge", action="store_true", help="skip the Linux-bridge case")
    ap.add_argument("--offloads", action="store_true", help="leave the veths' offloads on")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("latency.py: needs root (namespaces)", file=sys.stderr)
        return 2
    daemons = dict(d.split("=", 1) for d in args.daemon) or {"p4cs": str(DAEMON)}
    cases = ([] if args.no_bridge else ["bridge"]) + list(daemons)
    tmp = Path(tempfile.mkdtemp(prefix="p4cs-latency-"))
    lua = tmp / "done.lua"
    lua.write_text(WRK_LUA)
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, ip=IP_S))
    topo = Topo(args.offloads)
    nginx = None
    results: dict[str, list[dict]] = {c: [] for c in cases}
    try:
        topo.up()
        nginx = subprocess.Popen(["ip", "netns", "exec", topo.s, "nginx", "-c", str(tmp / "nginx.conf"),
                                  "-p", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        for rnd in range(args.repeat):
            for case in cases:
                d = None
                if case == "bridge":
                    topo.bridge(True)
                else:
                    d = Swxd(daemons[case], topo, tmp)
                time.sleep(0.3)
                try:
                    r = wrk(topo, lua, args, d.proc.pid if d else None)
                    if d is not None:
                        r.update(d.losses())
                finally:
                    if d is not None:
                        d.stop()
                    else:
                        topo.bridge(False)
                results[case].append(r)
                print(f"round {rnd + 1} {case}: {r['rps']:.0f} req/s, p50 {r['p50']} us, "
                      f"p90 {r['p90']} us, p99 {r['p99']} us, p99.9 {r['p999']} us, "
                      f"max {r['max']} us, errors {r['errors']}, "
                      f"daemon CPU {r['cpu_us_per_req']:.1f} us/request"
                      + (f", port drops rx {r['rx_drops']} tx {r['tx_drops']} errors {r['rx_errors']}"
                         if d is not None else ""), flush=True)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait()
        topo.down()
    summary = {c: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p90", "p99", "p999", "max", "cpu_us_per_req")}
               for c, rs in results.items()}
    for c, s in summary.items():
        print(f"median {c}: {s['rps']:.0f} req/s, p50 {s['p50']:.0f} us, p90 {s['p90']:.0f} us, "
              f"p99 {s['p99']:.0f} us, p99.9 {s['p999']:.0f} us, "
              f"daemon CPU {s['cpu_us_per_req']:.1f} us/request")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rounds": results, "median": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
