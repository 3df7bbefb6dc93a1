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

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "host"))

sys.path.insert(0, str(REPO / "tests" / "e2e"))

import http_vs_haproxy as hx  # noqa: E402
import l4clients  # noqa: E402

class L4Bench(hx.Bench):
    WHAT = "p4cs L4 service (data plane, Maglev) vs HAProxy 2.6 mode tcp vs direct, interleaved"
    HAPROXY_MODE = "tcp"

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
        def remove(before: list[str]) -> tuple[str, str, dict]:
            on = {name: before.count(name) for name in set(before)}
            gone = max(on, key=on.get)
            ip = lab.servers[[lab.server_name(i) for i in range(len(lab.servers))].index(gone)].ip
            return gone, ip, lab.control({"op": "server.del", "group": "web4", "address": f"{ip}:80"})

        before, after, (gone, ip, edit) = l4clients.held_across(lab, self.args.hold, remove)
        lab.control({"op": "server.add", "group": "web4", "address": f"{ip}:80"})
        kept = [i for i, s in enumerate(before) if s != gone]
        return {"connections": len(before), "on_removed_server": before.count(gone),
                "removed": f"{ip}:80", "edit": edit, "broken": after["broken"],
                "broken_fraction": round(after["broken"] / len(before), 4),
                "broken_of_other_servers": sum(after["servers"][i] != before[i] for i in kept)}

def main(argv: list[str] | None = None) -> int:
    return hx.main(argv, bench_cls=L4Bench, doc=__doc__, default_tests=("newconn", "keepalive"))


if __name__ == "__main__":
    sys.exit(main())
