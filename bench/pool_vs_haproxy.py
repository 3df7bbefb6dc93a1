#!/usr/bin/env python3
"""New connections/s through p4cs with and without pooled server connections
(``server_pool``, docs/csproc.md section 16) vs HAProxy 2.6, same run.

Two Labs in SNAT mode (client c1, nginx on s1..s3, service ``web`` on 10.0.0.100:80 over
the three servers, wrr): ``p4cs-pool`` with ``server_pool: {idle: N, max_age_s: 30}``,
``p4cs-nopool`` without. HAProxy 2.6 (HTTP mode, ``nbthread 1``, its default
``http-reuse safe``) runs in the first Lab's switch namespace while its data plane is
stopped, as in ``bench/http_vs_haproxy.py``, whose machinery this reuses (medians over
rounds, CPU time per connection of the switch side and of the nginx servers). Every
connection carries one request (``wrk -H "Connection: close"``), so every client
connection is a new server connection for p4cs without a pool; with one, the switch's
handshake with the server is done before the client's request arrives.

    sudo .venv/bin/python bench/pool_vs_haproxy.py [--rounds 3] [--duration 8] [--idle 8]
                                                   [--tests newconn,newconn_c4] [--json FILE]

``newconn_c4`` is ``wrk -t1 -c4 -H "Connection: close"``: with few connections at a time
the rate is bound by each connection's latency, which the pool shortens by one server round
trip (short on veths: the figures are a lower bound of what a real network's round trip
gives).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "host"))

import http_vs_haproxy as hx  # noqa: E402


class PoolBench(hx.Bench):
    WHAT = ("p4cs SNAT mode with server_pool vs without vs HAProxy 2.6, same namespaces/veths/"
            "nginx, interleaved")

    @classmethod
    def add_arguments(cls, ap) -> None:
        ap.add_argument("--idle", type=int, default=8, help="server_pool idle per server")

    def lab_kwargs(self) -> dict[str, Any]:
        return {"big_files": {"1M": 1 << 20}}

    def make_labs(self) -> dict[str, hx.Lab]:
        """``p4cs-pool`` (the Lab of the kernel phases) and ``p4cs-nopool``, SNAT mode, on the
        first --target, --packet-io and --port-type."""
        args = self.args
        labs = {}
        for name in ("p4cs-pool", "p4cs-nopool"):
            svc: dict[str, Any] = {"name": "web", "port": 80, "default_group": "all"}
            if name == "p4cs-pool":
                svc["server_pool"] = {"idle": args.idle, "max_age_s": 30}
            labs[name] = hx.Lab(args.prefix + name[5], target=args.target[0], n_servers=3,
                                mode="snat", packet_io=args.packet_io[0],
                                port_type=args.port_type[0], mtu=args.mtu, services=[svc],
                                **self.lab_kwargs())
        return labs


#: few connections at a time: the rate is bound by each connection's latency
hx.TESTS["newconn_c4"] = (["-t1", "-c4", "-H", "Connection: close"], "/")

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.startswith("--targets") for a in argv):
        argv += ["--targets", "p4cs,haproxy"]     # no direct path: SNAT-mode servers have no route
    sys.exit(hx.main(argv, PoolBench, __doc__, ("newconn", "newconn_c4")))
