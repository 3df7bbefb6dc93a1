#!/usr/bin/env python3
"""Fast-path packets/s of p4cs-swxd.

Two measurements:

``pipeline``: the SWX pipeline alone, pcap source -> sink ports, one data-plane core
(``--bench-packets`` mode of the daemon, docs/interfaces.md section 1). 60-byte TCP frames
across ``--flows`` 5-tuples, the real spec (p4src/build/dpdk/p4cs.spec) with

  * ``splice``   one learner entry (action ``_splice``) per flow: rewrite + checksums + counters;
  * ``forward``  one learner entry (action ``_flow_forward``) per flow: MAC rewrite + counters;
  * ``miss_cpu`` no flow entry, the VIP table punts every frame to the CPU port (a sink here);
  * ``syn_cookie`` SYNs (MSS + window-scale options, 62 bytes) to the VIP answered in the
    pipeline: option walk, two HalfSipHash-2-4, the SYN-ACK and its checksums;
  * ``syn_punt``  the same SYNs without keys written: punted to the CPU port (the way a SYN
    went before the data plane answered it);

and, as the peer, ``l2fwd``: a forward-only spec (parse Ethernet, tx to a fixed port), the
pipeline's per-packet floor on this machine. Optional case ``splice_lean``: the same splice on
the hand-written test spec tests/dataplane/data/flow.spec (~45 instead of ~85 SWX instructions
per spliced packet). ``--spec-before SPEC`` measures the p4cs cases on another build of the
program too (``splice@spec-before``). Cases are interleaved (round robin), ``--repeat``
rounds, medians reported, each as a ratio to l2fwd of the same run.

    sudo .venv/bin/python bench/fastpath.py pipeline [--flows 1000] [--packets 20000000] [--repeat 3]

``veth``: see ``bench/fastpath.py veth --help`` (kernel path through veth/AF_PACKET ports next to
Linux-bridge forwarding between the same namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAEMON = REPO / "dataplane" / "build" / "p4cs-swxd"
SPEC = REPO / "p4src" / "build" / "dpdk" / "p4cs.spec"
sys.path.insert(0, str(REPO / "host"))

# Port plan of the real spec: port 0 is the CPU port (packet-out parser), 1 the source, 2 the sink.
CPU, SRC, DST = 0, 1, 2
VIP = 0x0A000064          # 10.0.0.100
CLIENT_BASE = 0x0A000101  # 10.0.1.1 ...
SERVER = 0x0A000201       # 10.0.2.1

L2FWD_SPEC = """\
struct ethernet_h {
	bit<48> dst_addr
	bit<48> src_addr
	bit<16> ether_type
}
header ethernet instanceof ethernet_h
struct md_t {
	bit<32> port_in
	bit<32> port_out
}
metadata instanceof md_t
apply {
	rx m.port_in
	extract h.ethernet
	mov m.port_out 0x2
	emit h.ethernet
	tx m.port_out
}
"""


def _cpu_hz() -> float:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    except OSError:
        pass
    return 2.25e9


CPU_HZ = _cpu_hz()


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    except OSError:
        return "?"


# ---- frames / pcap ---------------------------------------------------------------------------
def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def flow(i: int) -> tuple[int, int, int, int, int]:
    """5-tuple of flow i: client 10.0.1.x -> VIP:80."""
    return CLIENT_BASE + (i >> 14), VIP, 6, 20000 + (i & 0x3FFF), 80


def tcp_frame(src: int, dst: int, sport: int, dport: int, length: int = 60, flags: int = 0x10,
              options: bytes = b"") -> bytes:
    payload = bytes(length - 54 - len(options))
    sip, dip = struct.pack("!I", src), struct.pack("!I", dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, (5 + len(options) // 4) << 4, flags,
                      65535, 0, 0) + options + payload
    pseudo = sip + dip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return bytes.fromhex("0200000000fe020000000101") + b"\x08\x00" + ip + tcp


def write_pcap(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for fr in frames:
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)) + fr)


# ---- daemon ----------------------------------------------------------------------------------
SPLICE = dict(dmac=0x020000000201, smac=0x0200000000FE, sip=VIP, dip=SERVER, sport=40000, dport=80,
              seq_delta=12345, ack_delta=4294967000)
FORWARD = "action _flow_forward port {port} dmac 0x020000000201 smac 0x0200000000fe flow_id {fid}"
# tests/dataplane/data/flow.spec: the same splice (rewrite, incremental checksums, a counter),
# hand-written: ~45 SWX instructions per spliced packet instead of ~85
LEAN_SPEC = REPO / "tests" / "dataplane" / "data" / "flow.spec"
LEAN_SPLICE = ("action splice dmac 0x020000000201 smac 0x0200000000fe new_src {vip} new_dst {server} "
               "new_sport 40000 new_dport 80 seq_delta 12345 ack_delta 4294967000 port {port} "
               "counter_idx {fid}")


def _proc_cpu(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run_bench(spec: Path, workdir: Path, pcap: Path, packets: int, setup: list[str],
              mem_mb: int = 2048, timeout: float = 300.0,
              daemon: Path = DAEMON, huge_dir: str | None = None) -> dict[str, Any]:
    """Starts the daemon in bench mode (ports: 0 sink, 1 pcap source, 2 sink), sends ``setup``
    control lines in one message, and returns its JSON result. The daemon reports the CPU time
    of its data-plane thread over the window (``cpu_seconds``); for daemons that do not, the
    process CPU time from the setup reply to exit (rusage) is used. ``huge_dir``: a mounted
    hugetlbfs to take the memory from (the learner's bucket array then on 2 MiB pages);
    default: no hugepages (4 KiB pages, a TLB miss per learner lookup)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
    cmd = [str(daemon), "--spec", str(spec), "--workdir", str(workdir), "--ctl-fd",
           str(b.fileno()), "--port", f"{CPU}=sink", "--port", f"{SRC}=source:{pcap}:loop",
           "--port", f"{DST}=sink", "--bench-packets", str(packets),
           "--learner-timeouts", "3600",
           "--eal", f"-l 0 {f'--huge-dir {huge_dir}' if huge_dir else '--no-huge'} --no-pci "
                     f"--no-shconf -m {mem_mb} --log-level=*:warning"]
    proc = subprocess.Popen(cmd, pass_fds=[b.fileno()], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    b.close()
    status = None
    try:
        a.settimeout(timeout)
        if setup:
            a.send("\n".join(setup).encode())
            reply = a.recv(16 << 20).decode().split("\n")
            bad = [r for r in reply if r != "ok"]
            if bad:
                raise RuntimeError(f"setup failed: {bad[:3]}")
        else:
            a.send(b"ping")
            a.recv(1024)
        t0 = time.monotonic()
        cpu0 = _proc_cpu(proc.pid)
        out = proc.stdout.read()
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        a.close()
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"daemon exited {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["wall_s"] = round(wall, 3)
    if "cpu_seconds" not in res:
        res["cpu_seconds"] = round(ru.ru_utime + ru.ru_stime - cpu0, 3)
        res["pps_per_cpu_second"] = res["packets"] / max(res["cpu_seconds"], 1e-9)
    return res


def splice_action(spec_text: str, key: tuple[int, int, int, int, int], port: int, fid: int) -> str:
    """The ``_splice`` action of a spec for flow ``key``, with the arguments that spec's action
    takes (an older program's spec, e.g. ``--spec-before``, may take other ones)."""
    from p4cs.csproc.effects import FlowKey  # noqa: PLC0415
    from p4cs.csproc.packet import splice_csum_deltas  # noqa: PLC0415

    body = spec_text.split("struct _splice_arg_t {", 1)[1].split("}", 1)[0]
    ip_d, tcp_d = splice_csum_deltas(FlowKey(*key), SPLICE["sip"], SPLICE["dip"], SPLICE["sport"],
                                     SPLICE["dport"])
    vals = dict(SPLICE, port=port, flow_id=fid, ip_csum_delta=ip_d, tcp_csum_delta=tcp_d)
    return "action _splice " + " ".join(f"{a} {vals[a]}" for a in (ln.split()[-1] for ln in body.splitlines()
                                                                    if ln.strip()))


def case_setup(case: str, n_flows: int, spec: Path) -> list[str]:
    if case == "splice_lean":
        return [f"learner add flow_table match {' '.join(str(v) for v in flow(i))} "
                f"{LEAN_SPLICE.format(vip=VIP, server=SERVER, port=DST, fid=i % 1024)} timeout 0"
                for i in range(n_flows)]
    lines = [f"table add egress_table match {p} action send port {p}" for p in (CPU, DST)]
    if case in ("splice", "forward"):
        text = spec.read_text()
        for i in range(n_flows):
            k = " ".join(str(v) for v in flow(i))
            act = (splice_action(text, flow(i), DST, i) if case == "splice"
                   else FORWARD.format(port=DST, fid=i))
            lines.append(f"learner add _flow_table_0 match {k} {act} timeout 0")
    elif case in ("miss_cpu", "syn_punt", "syn_cookie"):
        lines.append(f"table add _vip_table_0 match {VIP} 6 80 action _punt_vip")
    if case == "syn_cookie":
        # the SYN-ACK leaves on the SYN's port (SRC, pcap source): egress_table maps it to DST
        lines += [f"table add egress_table match {SRC} action send port {DST}",
                  f"table add _syn_table_0 match {VIP} 80 action _answer_syn synack_mss 1460 "
                  "synack_wscale 7 synack_window 65535",
                  "table default _syn_cookie_params_0 action _syn_cookie_keys key0 0x01234567 "
                  "key1 0x89abcdef key2 0x02468ace key3 0x13579bdf time_slot 5 synack_ttl 64"]
    return lines


#: MSS 1460, NOP, window scale 7
SYN_OPTIONS = bytes((2, 4, 5, 180, 1, 3, 3, 7))


def cmd_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    if not DAEMON.exists():
        subprocess.run(["make", "-s", "-C", str(REPO / "dataplane")], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="p4cs-fastpath-"))
    pcap = tmp / "flows.pcap"
    write_pcap(pcap, [tcp_frame(*flow(i)[:2], *flow(i)[3:]) for i in range(args.flows)])
    syn_pcap = tmp / "syns.pcap"
    write_pcap(syn_pcap, [tcp_frame(*flow(i)[:2], *flow(i)[3:], length=62, flags=0x02,
                                    options=SYN_OPTIONS) for i in range(args.flows)])
    l2 = tmp / "l2fwd.spec"
    l2.write_text(L2FWD_SPEC)
    cases = args.cases.split(",")
    # variant name -> (daemon, spec of the real program): the current pair, and the other daemon
    # (--daemon-before) or the other program (--spec-before, the p4cs cases only) next to it
    variants = {"p4cs-swxd": (DAEMON, Path(args.spec))}
    if args.daemon_before:
        variants["before"] = (Path(args.daemon_before), Path(args.spec))
    if args.spec_before:
        variants["spec-before"] = (DAEMON, Path(args.spec_before))
    plan = [(c, v) for c in cases for v in variants
            if v != "spec-before" or c not in ("l2fwd", "splice_lean")]
    keys = [c if v == "p4cs-swxd" else f"{c}@{v}" for c, v in plan]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    loads = [load()]
    for rnd in range(args.repeat):
        for (c, vname), k in zip(plan, keys):
            dpath, real = variants[vname]
            spec = l2 if c == "l2fwd" else LEAN_SPEC if c == "splice_lean" else real
            setup = [] if c == "l2fwd" else case_setup(c, args.flows, real)
            frames = syn_pcap if c.startswith("syn_") else pcap
            r = run_bench(spec, tmp / f"w-{vname}", frames, args.packets, setup, daemon=dpath,
                          huge_dir=args.huge_dir)
            r["load"] = load()
            runs[k].append(r)
            print(f"round {rnd} {k}: {r['pps'] / 1e6:.2f} Mpps wall, "
                  f"{r['pps_per_cpu_second'] / 1e6:.2f} Mpps per CPU-second (load {r['load']})",
                  file=sys.stderr)
    loads.append(load())
    med = {k: statistics.median(r["pps_per_cpu_second"] for r in runs[k]) for k in keys}
    wall = {k: statistics.median(r["pps"] for r in runs[k]) for k in keys}
    out: dict[str, Any] = {
        "what": "p4cs-swxd pipeline alone, pcap source -> sink, 1 data-plane core; "
                "Mpps per CPU-second of the data-plane thread (= Mpps per core)",
        "spec": str(args.spec), "flows": args.flows, "frame_len": 60, "syn_frame_len": 62,
        "packets_per_run": args.packets, "repeat": args.repeat, "huge_dir": args.huge_dir,
        "load_before_after": loads,
        "mpps_per_core_median": {k: round(med[k] / 1e6, 3) for k in keys},
        "mpps_wall_median": {k: round(wall[k] / 1e6, 3) for k in keys},
        "cycles_per_packet_median": {k: round(CPU_HZ / med[k]) for k in keys},
        "mpps_per_core_runs": {k: [round(r["pps_per_cpu_second"] / 1e6, 3) for r in runs[k]]
                               for k in keys},
    }
    if "l2fwd" in med:
        out["ratio_to_l2fwd"] = {k: round(med[k] / med["l2fwd"], 3) for k in keys}
    for c in cases:
        for v in ("before", "spec-before"):
            if f"{c}@{v}" in med:
                out.setdefault(f"speedup_vs_{v}", {})[c] = round(med[c] / med[f"{c}@{v}"], 3)
    return out


# ---- veth (kernel) path ----------------------------------------------------------------------
P4INFO = REPO / "p4src" / "build" / "dpdk" / "p4cs.p4info.txtpb"
OTHERHOST_MAC = "02:00:00:00:99:99"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *_children(k)]
    return out


def _find_daemon(pid: int) -> int | None:
    for c in _children(pid):
        try:
            if Path(f"/proc/{c}/comm").read_text().strip() == "p4cs-swxd":
                return c
        except OSError:
            pass
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class P4Switch:
    """`p4cs switch` on a content-switch topology, programmed over P4Runtime (finsy) with
    egress ports, /32 routes to both hosts and splice flow entries for the flood's TCP flows."""

    def __init__(self, topo, workdir: Path, daemon: str | None, flows: int,
                 s1_mac: str | None = None):
        self.topo, self.workdir, self.flows = topo, workdir, flows
        self.s1_mac = s1_mac or topo.hosts["s1"].mac
        self.addr = f"127.0.0.1:{_free_port()}"
        env = dict(os.environ)
        if daemon:
            env["P4CS_SWXD"] = daemon
        argv = topo.p4cs_switch_argv(grpc_addr=self.addr, p4cs=[sys.executable, "-m", "p4cs.cli"],
                                     extra=["--spec", str(SPEC), "--p4info", str(P4INFO),
                                            "--workdir", str(workdir)])
        self.log = open(workdir.parent / f"switch-{workdir.name}.log", "w")
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, cwd=str(REPO / "host"))
        line = self.proc.stdout.readline()
        if "P4Runtime on" not in line:
            self.stop()
            raise RuntimeError(f"switch did not start: {line!r}")
        self.daemon_pid = None
        import asyncio
        asyncio.run(self._program())
        for _ in range(50):
            self.daemon_pid = _find_daemon(self.proc.pid)
            if self.daemon_pid:
                break
            time.sleep(0.1)

    async def _program(self) -> None:
        import logging
        from finsy import P4TableAction, P4TableEntry, P4TableMatch, Switch, SwitchOptions
        logging.getLogger("finsy").setLevel(logging.CRITICAL)
        topo = self.topo
        c1, s1 = topo.hosts["c1"], topo.hosts["s1"]
        mac = lambda m: int(m.replace(":", ""), 16)  # noqa: E731
        ent = [P4TableEntry("egress_table", match=P4TableMatch(out_port=p),
                            action=P4TableAction("send", port=p))
               for p in [0, *topo.switch_ifaces]]
        for h, hmac in ((c1, c1.mac), (s1, self.s1_mac)):
            ent.append(P4TableEntry("ipv4_route", match=P4TableMatch(dst_addr=f"{h.ip}/32"),
                                    action=P4TableAction("route", port=h.switch_port, dmac=mac(hmac),
                                                         smac=mac(topo.switch_port_mac(h.switch_port)))))
        # p4cs.lab.traffic.flood(proto="tcp", flows=N): sport 10000+i -> dport 9
        for i in range(self.flows):
            ent.append(P4TableEntry(
                "flow_table",
                match=P4TableMatch(src_addr=c1.ip, dst_addr=s1.ip, protocol=6, src_port=10000 + i,
                                   dst_port=9),
                action=P4TableAction("splice", port=s1.switch_port, dmac=mac(self.s1_mac),
                                     smac=mac(topo.switch_port_mac(s1.switch_port)), sip=c1.ip,
                                     dip=s1.ip, sport=10000 + i, dport=9, seq_delta=0, ack_delta=0,
                                     flow_id=i)))
        opts = SwitchOptions(p4info=P4INFO, p4blob=SPEC, device_id=1)
        async with Switch("sw", self.addr, opts) as sw:
            await sw.insert(ent)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _flood(topo, proto: str, flows: int, duration: float, daemon_pid: int | None) -> dict[str, Any]:
    from p4cs.lab.traffic import endpoints, flood
    d0 = _proc_cpu(daemon_pid) if daemon_pid else 0.0
    t0 = time.monotonic()
    r = flood(*endpoints(topo, "c1", "s1"), duration=duration, warmup=1.0, proto=proto,
              flows=flows).as_dict()
    wall = time.monotonic() - t0
    out = {"rx_pps": r["rx_pps"], "tx_pps": r["tx_pps"], "loss": r["loss"],
           "sender_cpu_share": round(sum(x["cpu_s"] for x in r["senders"]) /
                                     sum(x["seconds"] for x in r["senders"]), 3),
           "load": load()}
    if daemon_pid:
        out["daemon_cpu_share"] = round((_proc_cpu(daemon_pid) - d0) / wall, 3)
    return out


def cmd_veth(args: argparse.Namespace) -> dict[str, Any]:
    from p4cs.lab.netns import cleanup_prefix, content_switch_topology, direct_topology
    daemons: dict[str, str | None] = {"p4cs": None}
    for d in args.daemon or []:
        name, _, path = d.partition("=")
        daemons[name] = path
    tmp = Path(tempfile.mkdtemp(prefix="p4cs-fastpath-veth-"))
    br = direct_topology(args.prefix + "b", n_clients=1, n_servers=1)
    p4 = content_switch_topology(args.prefix + "p", n_clients=1, n_servers=1)
    runs: dict[str, list[dict[str, Any]]] = {}
    loads = [load()]
    try:
        br.create()
        p4.create()
        if args.sink == "otherhost":
            # Frames reach s1 (its veth counts them) with a destination MAC that is not s1's:
            # its kernel drops them in ip_rcv as PACKET_OTHERHOST. What is measured is then
            # forwarding, not s1's UDP/ICMP (or TCP RST) processing, which runs in the
            # forwarder's softirq context in both cases (the sender's for the bridge, the
            # daemon's sendmmsg for p4cs). The bridge router gets a static neighbour entry with
            # that MAC (unknown unicast: the bridge floods it to s1's port).
            s1 = br.hosts["s1"]
            bname = br._bridge(s1.interface.network)[0]  # noqa: SLF001
            subprocess.run(["ip", "-n", br.switch_netns, "neigh", "replace", s1.ip, "lladdr",
                            OTHERHOST_MAC, "dev", bname, "nud", "permanent"], check=True)
        for rnd in range(args.repeat):
            for proto in ("udp", "tcp"):
                flows = args.flows if proto == "tcp" else 1
                r = _flood(br, proto, flows, args.duration, None)
                runs.setdefault(f"bridge_{proto}", []).append(r)
                print(f"round {rnd} bridge {proto}: {r}", file=sys.stderr)
            for name, path in daemons.items():
                sw = P4Switch(p4, tmp / f"w-{name}", path, args.flows,
                              OTHERHOST_MAC if args.sink == "otherhost" else None)
                try:
                    for proto, case in (("udp", "route"), ("tcp", "splice")):
                        flows = args.flows if proto == "tcp" else 1
                        r = _flood(p4, proto, flows, args.duration, sw.daemon_pid)
                        runs.setdefault(f"{name}_{case}", []).append(r)
                        print(f"round {rnd} {name} {case}: {r}", file=sys.stderr)
                finally:
                    sw.stop()
    finally:
        for t in (p4, br):
            try:
                t.destroy()
            except Exception:  # noqa: BLE001 - best effort, then by prefix
                pass
            cleanup_prefix(t.prefix)
    loads.append(load())
    med = {k: statistics.median(x["rx_pps"] for x in v) for k, v in runs.items()}
    out: dict[str, Any] = {
        "what": "60-byte frames c1 -> s1 through veths: p4cs-swxd (AF_PACKET ports) vs Linux bridge "
                "+ ip_forward between the same kind of namespaces",
        "duration_s": args.duration, "repeat": args.repeat, "tcp_flows": args.flows,
        "receiver": ("s1 drops in ip_rcv (frames to a foreign MAC)" if args.sink == "otherhost"
                     else "s1 kernel stack (port 9, no listener)"),
        "load_before_after": loads,
        "rx_pps_median": {k: round(v) for k, v in med.items()},
        "ratio": {},
        "cpu_share_median": {k: {c: statistics.median(x[c] for x in v)
                                 for c in ("sender_cpu_share", "daemon_cpu_share") if c in v[0]}
                             for k, v in runs.items()},
        "runs": runs,
    }
    for name in daemons:
        out["ratio"][f"{name}_route/bridge_udp"] = round(med[f"{name}_route"] / med["bridge_udp"], 3)
        out["ratio"][f"{name}_splice/bridge_tcp"] = round(med[f"{name}_splice"] / med["bridge_tcp"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipeline", help="pipeline alone: pcap source -> sink")
    p.add_argument("--flows", type=int, default=1000)
    p.add_argument("--packets", type=int, default=20_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--spec", default=str(SPEC))
    p.add_argument("--cases", default="l2fwd,splice,forward,miss_cpu")
    p.add_argument("--daemon-before", help="another p4cs-swxd binary, measured interleaved")
    p.add_argument("--spec-before", help="another build of the real program (its p4cs.spec), "
                                         "measured interleaved on the p4cs cases")
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--huge-dir", help="a mounted hugetlbfs with free 2 MiB pages for the "
                   "daemon's memory (default: none, --no-huge)")
    v = sub.add_parser("veth", help="through veths: p4cs switch vs Linux bridge")
    v.add_argument("--prefix", default=f"fp{os.getpid() % 10000}")
    v.add_argument("--duration", type=float, default=4.0)
    v.add_argument("--repeat", type=int, default=3)
    v.add_argument("--flows", type=int, default=64, help="TCP flows (splice entries)")
    v.add_argument("--sink", choices=["otherhost", "stack"], default="otherhost",
                   help="otherhost: frames reach s1 with a foreign MAC (dropped in ip_rcv); "
                        "stack: s1's UDP/TCP stack gets them (ICMP / RST replies)")
    v.add_argument("--daemon", action="append",
                   help="NAME=PATH: also measure this p4cs-swxd binary (P4CS_SWXD)")
    v.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    if args.cmd == "pipeline":
        res = cmd_pipeline(args)
    else:
        res = cmd_veth(args)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
