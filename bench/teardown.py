#!/usr/bin/env python3
"""Connection teardown: RPCs and CPU per closed connection, with the flow entries ended in the
data plane (``expiry``) against deleting them from the controller (``delete``), same run.

Two ``p4cs.lab.stack.Lab`` on the embedded DPDK target, side by side (3 nginx servers each):

* ``expiry``: the Lab as it runs by default. The flow table's P4Info carries
  ``@p4cs_end_expiry``: a FIN or RST moves its entry to the 3 s expiry profile in the
  pipeline, the entry expires, its notification carries the final counts; the controller
  sends nothing.
* ``delete``: the same pipeline, but the controller is given the P4Info without that
  annotation (it pushes it: the server then binds no counter): the controller deletes the
  entries of closed connections after ``limits.teardown_delay_s``, reading and resetting their
  counters first, one batch (Read, Write, Write) for all connections due within 50 ms, as it
  does on BMv2.

* ``before`` (with ``--before TREE``): another checkout of p4cs (its controller, server, daemon
  and pipeline), e.g. the main branch before this change: there the controller deleted the
  entries of every closed connection with its own Read, Write and Write (``teardown_rpcs`` is
  not counted there: reported as None).

Two scenarios, alternated between the Labs every round:

* ``burst``: --conns keep-alive connections, each with one request answered (so spliced),
  closed by the client at once; measured from the close until every flow entry is gone: CPU
  of the controller, the P4Runtime server and the daemon (minus what they use idle, measured
  just before), and the controller's ``teardown_rpcs``, per connection.
* ``steady``: ``wrk -t2 -c50 -H "Connection: close"`` for --duration s (a new connection per
  request, teardowns spread in time), until the flow table is empty: RPCs and CPU per
  connection, set-up included.

    sudo .venv/bin/python bench/teardown.py [--rounds 3] [--conns 200] [--duration 8] [--json FILE]
                                            [--before /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finsy.proto import p4i  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from http_vs_haproxy import cpu_s, load, parse_wrk, tree  # noqa: E402
from p4cs import paths  # noqa: E402
from p4cs.lab.stack import Lab  # noqa: E402
from p4cs.lab.netns import cleanup_prefix  # noqa: E402

#: Runs in the client's namespace: open N connections, one request each, then close them all
#: when told (a line on stdin).
CLIENT = r"""
import socket, sys
vip, n = sys.argv[1], int(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n"
socks = []
for _ in range(n):
    s = socket.create_connection((vip, 80), timeout=30)
    s.sendall(req)
    socks.append(s)
for s in socks:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += s.recv(65536)
print("open", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
"""


def stripped_p4info(out: Path) -> Path:
    """The DPDK P4Info without @p4cs_end_expiry."""
    info = p4i.P4Info()
    text_format.Parse(paths.p4info("dpdk").read_text(), info)
    for t in info.tables:
        keep = [a for a in t.preamble.annotations if not a.startswith("@p4cs_end_expiry(")]
        del t.preamble.annotations[:]
        t.preamble.annotations.extend(keep)
    out.write_text(text_format.MessageToString(info))
    return out


class DeleteLab(Lab):
    """A Lab whose controller does not know that the flow table ends entries by itself."""

    p4info_path: Path | None = None

    def config(self) -> dict:
        cfg = super().config()
        cfg["switch"]["p4info"] = str(self.p4info_path)
        return cfg


class TreeLab(Lab):
    """A Lab whose processes run another checkout's p4cs (``tree``/host, its daemon build)."""

    tree: Path | None = None

    def _spawn(self, name: str, argv, host: str | None = None, **kw) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(self.tree / "host"),
                   P4CS_SWXD=str(self.tree / "dataplane" / "build" / "p4cs-swxd"))
        log = open(self.workdir / f"{name}.log", "wb")
        cmd = list(argv) if host is None else self.topo.cmd(host, list(argv))
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL, **kw)
        self._procs.append((name, p))
        return p


def cpu(lab: Lab) -> dict[str, float]:
    procs = dict(lab._procs)  # noqa: SLF001
    sw = tree(procs["switch"].pid)
    daemon = [p for p in sw if Path(f"/proc/{p}/comm").exists()
              and Path(f"/proc/{p}/comm").read_text().strip() == "p4cs-swxd"]
    return {"controller": sum(cpu_s(p) for p in tree(procs["controller"].pid)),
            "server": sum(cpu_s(p) for p in sw if p not in daemon),
            "daemon": sum(cpu_s(p) for p in daemon)}


def counters(lab: Lab) -> dict[str, int]:
    st = lab.status()
    return {"flows": st["flows"], "teardown_rpcs": st["counters"].get("teardown_rpcs"),
            "teardowns": st["csproc"]["teardowns"], "spliced": st["csproc"]["spliced"],
            "flows_expired": st["csproc"]["flows_expired"],
            "flows_removed": st["counters"]["flows_removed"],
            "idle_timeouts": st["counters"]["idle_timeouts"]}


def wait_flows(lab: Lab, flows: int, timeout: float) -> tuple[float, int]:
    """Seconds until at most `flows` entries are installed, and how many more are left then
    (a FIN copy the switch could not deliver leaves its entries to their idle timeout)."""
    t0 = time.monotonic()
    while True:
        left = lab.status()["flows"] - flows
        if left <= 0 or time.monotonic() - t0 >= timeout:
            return time.monotonic() - t0, max(0, left)
        time.sleep(0.05)


def burst(lab: Lab, n: int) -> dict[str, Any]:
    """Per connection the client closed; the entries a lost FIN copy leaves are counted
    (``entries_left``) and the next round starts above them."""
    base = lab.status()["flows"]
    p = lab.topo.popen(lab.clients[0].name, [sys.executable, "-c", CLIENT, lab.vip, str(n)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if p.stdout.readline().strip() != "open":
            raise RuntimeError("the burst client failed")
        wait_flows_at_least(lab, base + 2 * n, 60)
        time.sleep(1.0)
        c0, t0 = cpu(lab), time.monotonic()
        time.sleep(3.0)                     # idle: what the processes use anyway
        c1, t1 = cpu(lab), time.monotonic()
        k0 = counters(lab)
        p.stdin.write("go\n")
        p.stdin.flush()
        p.stdout.readline()
        wall, left = wait_flows(lab, base, 20)
        c2, t2 = cpu(lab), time.monotonic()
        k1 = counters(lab)
    finally:
        p.kill()
        p.wait()
    idle = {k: (c1[k] - c0[k]) / (t1 - t0) for k in c0}
    used = {k: max(0.0, c2[k] - c1[k] - idle[k] * (t2 - t1)) for k in c0}
    return {"connections": n, "teardowns": k1["teardowns"] - k0["teardowns"],
            "flows_expired": k1["flows_expired"] - k0["flows_expired"],
            "seconds_to_empty": round(wall, 2), "entries_left": left,
            "rpcs_per_conn": rpcs(k0, k1, n),
            "cpu_us_per_conn": {k: round(1e6 * v / n) for k, v in used.items()},
            "load": load()}


def wait_flows_at_least(lab: Lab, flows: int, timeout: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if lab.status()["flows"] >= flows:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only {lab.status()['flows']} of {flows} flow entries installed")


def rpcs(k0: dict, k1: dict, closed: int) -> float | None:
    if k0["teardown_rpcs"] is None:
        return None
    return (k1["teardown_rpcs"] - k0["teardown_rpcs"]) / max(1, closed)


def steady(lab: Lab, duration: int) -> dict[str, Any]:
    """Per spliced connection."""
    base = lab.status()["flows"]
    c0, k0, t0 = cpu(lab), counters(lab), time.monotonic()
    r = lab.client_exec(["wrk", "-t2", "-c50", "-H", "Connection: close", "-d", f"{duration}s",
                         "--timeout", "30s", f"http://{lab.vip}/"], timeout=duration + 120,
                        capture_output=True, text=True)
    _, left = wait_flows(lab, base, 20)
    c1, k1, t1 = cpu(lab), counters(lab), time.monotonic()
    res = parse_wrk(r.stdout)
    n = max(1, k1["spliced"] - k0["spliced"])
    return {"requests": res.get("requests"), "connections": n,
            "teardowns": k1["teardowns"] - k0["teardowns"],
            "flows_expired": k1["flows_expired"] - k0["flows_expired"],
            "seconds": round(t1 - t0, 1), "entries_left": left,
            "rpcs_per_conn": rpcs(k0, k1, n),
            "cpu_us_per_conn": {k: round(1e6 * (c1[k] - c0[k]) / n) for k in c0},
            "load": load()}


def summarize(runs: dict[str, dict[str, list[dict]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in ("burst", "steady"):
        per: dict[str, Any] = {}
        for mode, by in runs.items():
            rs = by[scenario]
            r = [x["rpcs_per_conn"] for x in rs]
            per[mode] = {
                "rpcs_per_conn": None if None in r else round(statistics.median(r), 4),
                "cpu_us_per_conn": {k: statistics.median(x["cpu_us_per_conn"][k] for x in rs)
                                    for k in rs[0]["cpu_us_per_conn"]},
            }
            c = per[mode]["cpu_us_per_conn"]
            c["controller+server"] = c["controller"] + c["server"]
        ce = per["expiry"]["cpu_us_per_conn"]
        for peer in [m for m in runs if m != "expiry"]:
            cp = per[peer]["cpu_us_per_conn"]
            per[f"ratio_expiry_to_{peer}"] = {k: round(ce[k] / cp[k], 2) if cp[k] else None for k in ce}
        out[scenario] = per
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default=f"td{os.getpid() % 1000}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--json")
    ap.add_argument("--before", type=Path, help="another p4cs checkout to measure as a third peer")
    args = ap.parse_args()
    labs: dict[str, Lab] = {}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"p4cs-{args.prefix}"
    work.mkdir(parents=True, exist_ok=True)
    modes = ("expiry", "delete") + (("before",) if args.before else ())
    runs: dict[str, dict[str, list]] = {m: {"burst": [], "steady": []} for m in modes}
    try:
        labs["expiry"] = Lab(args.prefix + "e")
        dl = DeleteLab(args.prefix + "d")
        dl.p4info_path = stripped_p4info(work / "p4info-no-end-expiry.txtpb")
        labs["delete"] = dl
        if args.before:
            bl = TreeLab(args.prefix + "b")
            bl.tree = args.before.resolve()
            labs["before"] = bl
        for lab in labs.values():
            lab.start()
        for i in range(args.rounds):
            for mode, lab in labs.items():
                b = burst(lab, args.conns)
                s = steady(lab, args.duration)
                runs[mode]["burst"].append(b)
                runs[mode]["steady"].append(s)
                print(f"round {i + 1} {mode}: burst {b}\n    steady {s}", flush=True)
    finally:
        for lab in labs.values():
            lab.stop()
            cleanup_prefix(lab.prefix)
    summary = summarize(runs)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
