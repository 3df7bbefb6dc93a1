#!/usr/bin/env python3
"""An L4 service balanced in the data plane vs HAProxy 2.6 in TCP mode vs direct-to-one-server:
same namespaces, same veths, same nginx servers, same run (the harness of
bench/http_vs_haproxy.py: interleaved rounds, medians, ratios against HAProxy).

* ``p4cs``: the Lab with one service ``web4`` on VIP 10.0.0.100:80, ``protocol: tcp``, default
  group ``web4`` = the three nginx, scheduler maglev (docs/usage.md §2.2): the pipeline picks
  the server, the controller sees no packet of it.
* ``haproxy``: HAProxy 2.6 in the switch namespace, ``mode tcp``, ``nbthread 1``, ``balance
  roundrobin`` over the three nginx, on the same VIP:80 (it terminates both TCP legs).
* ``direct``: the client talks to s1 through the switch namespace's kernel router.

Tests (wrk 4.1 in the client namespace): ``newconn`` (-t2 -c50, Connection: close: new
connections/s), ``keepalive`` (-t2 -c50: requests/s), with the CPU seconds of the switch side
(p4cs: daemon, P4Runtime server, controller) per connection / request.

After the rounds, ``removal``: per p4cs Lab, ``--hold`` keep-alive connections are opened
(one request each), the server holding the most is removed (``server.del``, what the
controller writes: the Maglev buckets that change owner), and one more request is made on
every connection: the fraction that broke (no answer, an error, another server). On DPDK the
connections are learned in the data plane (expected 0); on BMv2 (no learning) the removed
server's connections break, and about the share of the others' buckets Maglev moves.

    sudo .venv/bin/python bench/l4_vs_haproxy.py [--rounds 3] [--duration 8] [--hold 300]
                                                 [--target dpdk|bmv2|dpdk,bmv2] [--json FILE]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "host"))

import http_vs_haproxy as hx  # noqa: E402

L4CLIENTS = REPO / "tests" / "e2e" / "l4clients.py"

HAPROXY_TCP_CFG = """\
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
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
"""


class L4Bench(hx.Bench):
    WHAT = "p4cs L4 service (data plane, Maglev) vs HAProxy 2.6 mode tcp vs direct, interleaved"
    HAPROXY_CFG = HAPROXY_TCP_CFG

    @classmethod
    def add_arguments(cls, ap) -> None:
        ap.add_argument("--hold", type=int, default=300,
                        help="connections held across the server removal (0: no removal test)")

    def lab_kwargs(self) -> dict[str, Any]:
        from p4cs.lab.netns import content_switch_topology

        ips = [h.ip for h in content_switch_topology("l4addr").servers()]
        return {"groups": {"web4": {"scheduler": "maglev",
                                    "servers": [{"address": ip, "port": 80} for ip in ips]}},
                "services": [{"name": "web4", "port": 80, "protocol": "tcp", "default_group": "web4"}]}

    def extra_results(self) -> dict[str, Any]:
        if self.args.hold <= 0:
            return {}
        self.p4cs_phase()
        return {"removal": {name: self.removal(lab) for name, lab in self.labs.items()}}

    def removal(self, lab) -> dict[str, Any]:
        client = lab.topo.popen(lab.clients[0].name,
                                [sys.executable, str(L4CLIENTS), "persist", "--vip", lab.vip,
                                 "--port", "80", "--n", str(self.args.hold)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            before = json.loads(client.stdout.readline())["servers"]
            on = {name: before.count(name) for name in set(before)}
            gone = max(on, key=on.get)
            names = [lab.server_name(i) for i in range(len(lab.servers))]
            ip = lab.servers[names.index(gone)].ip
            resp = lab.control({"op": "server.del", "group": "web4", "address": f"{ip}:80"})
            out, _ = client.communicate("go\n", timeout=300)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        after = json.loads(out.strip().splitlines()[-1])
        lab.control({"op": "server.add", "group": "web4", "address": f"{ip}:80"})
        kept = [i for i, s in enumerate(before) if s != gone]
        return {"connections": len(before), "on_removed_server": on[gone], "removed": f"{ip}:80",
                "edit": resp, "broken": after["broken"],
                "broken_fraction": round(after["broken"] / len(before), 4),
                "broken_of_other_servers": sum(after["servers"][i] != before[i] for i in kept)}


def main(argv: list[str] | None = None) -> int:
    return hx.main(argv, bench_cls=L4Bench, doc=__doc__, default_tests=("newconn", "keepalive"))


if __name__ == "__main__":
    sys.exit(main())
