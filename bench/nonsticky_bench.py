#!/usr/bin/env python3
"""Keep-alive requests/s through p4cs with NONSTICKY rules (every request classified and
routed on its own, docs/csproc.md section 17) vs the same rules STICKY vs HAProxy 2.6,
same run.

Two Labs (client c1, nginx on s1..s3 = groups ``ace``, ``wait``, ``www`` and ``all``, service
``web`` on 10.0.0.100:80 with a rule file): ``p4cs-nonsticky`` with

    one:  if (prefix(path, "/~lcs1/")) { routeTo(ace, NONSTICKY); }
    rest: routeTo(all, NONSTICKY);

and ``p4cs-sticky`` with the same rules STICKY. HAProxy 2.6 (HTTP mode, ``nbthread 1``,
``balance roundrobin`` over the three nginx: it balances every request of a keep-alive
connection, as NONSTICKY does) runs in the first Lab's switch namespace while its data plane
is stopped, as in ``bench/http_vs_haproxy.py``, whose machinery this reuses (medians over
rounds, CPU time per request of the switch side: data-plane daemon + P4Runtime server +
controller, or haproxy; and of the nginx servers).

Tests (wrk 4.1, keep-alive, few connections):
  keepalive_c4       wrk -t1 -c4 GET /         NONSTICKY: the wrr group alternates servers,
                                               so most requests re-bind their connection
  keepalive_same_c4  wrk -t1 -c4 GET /~lcs1/   every request to the same server: each one is
                                               classified, none re-binds
  get1m_ka           wrk -t1 -c4 GET /big/1M   1 MiB bodies on keep-alive connections: the
                                               bodies ride the fast path, the client's ACKs not

    sudo .venv/bin/python bench/nonsticky_bench.py [--rounds 2] [--duration 5] [--json FILE]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "host"))

import http_vs_haproxy as hx  # noqa: E402

RULES = """\
one:  if (prefix(path, "/~lcs1/")) {{ routeTo(ace, {s}); }}
rest: routeTo(all, {s});
"""


class NonStickyBench(hx.Bench):
    WHAT = ("p4cs keep-alive with NONSTICKY rules vs the same rules STICKY vs HAProxy 2.6, "
            "same namespaces/veths/nginx, interleaved")

    def lab_kwargs(self) -> dict[str, Any]:
        return {"big_files": {"1M": 1 << 20}}

    def make_labs(self) -> dict[str, hx.Lab]:
        """``p4cs-nonsticky`` (the Lab of the kernel phases) and ``p4cs-sticky``, on the first
        --target, --packet-io and --port-type."""
        args = self.args
        self.rules_dir = Path(tempfile.mkdtemp(prefix="nsbench"))
        labs = {}
        for name, word in (("p4cs-nonsticky", "NONSTICKY"), ("p4cs-sticky", "STICKY")):
            rules = self.rules_dir / f"{word}.rules"
            rules.write_text(RULES.format(s=word))
            svc = {"name": "web", "port": 80, "rules": str(rules)}
            labs[name] = hx.Lab(args.prefix + name[5], target=args.target[0], n_servers=3,
                                packet_io=args.packet_io[0], port_type=args.port_type[0],
                                mtu=args.mtu, services=[svc], **self.lab_kwargs())
        return labs

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.rules_dir, ignore_errors=True)


hx.TESTS["keepalive_c4"] = (["-t1", "-c4"], "/")
hx.TESTS["keepalive_same_c4"] = (["-t1", "-c4"], "/~lcs1/")
hx.TESTS["get1m_ka"] = (["-t1", "-c4"], "/big/1M")

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.startswith("--targets") for a in argv):
        argv += ["--targets", "p4cs,haproxy"]
    sys.exit(hx.main(argv, NonStickyBench, __doc__,
                     ("keepalive_c4", "keepalive_same_c4", "get1m_ka")))
