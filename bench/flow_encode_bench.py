#!/usr/bin/env python3
"""CPU time to encode one connection's flow install (its two `splice` updates) in the controller.

Three encoders of the same bytes, measured in-process, interleaved, --rounds times each:
``protobuf`` (p4.v1.Update objects built field by field, then SerializeToString), ``python`` (protobuf wire format
written by hand: ``FlowEncoder.insert_raw_py``) and ``c`` (the extension ``_p4wire``, what
``FlowEncoder.insert_raw`` uses when the package was built with it). Prints the median CPU µs
per connection of each and the ratios.

    .venv/bin/python bench/flow_encode_bench.py [--n 20000] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from finsy import P4Schema
from finsy.proto import p4r

from p4cs import paths
from p4cs.controller.p4rt import FlowEncoder, FlowKey, Splice, enc
from p4cs.csproc.packet import splice_csum_deltas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="connections per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    fe = FlowEncoder(P4Schema(paths.p4info("dpdk")))
    if fe._c_args is None:                                  # noqa: SLF001
        print("p4cs.controller._p4wire is not built: reinstall the package with a C compiler",
              file=sys.stderr)
        return 2
    # one connection: client -> server and server -> client, as the CS processor installs them
    legs = [(FlowKey(0x0A000001, 0x0A0000FE, 6, 40000, 80),
             Splice(1, 0x020000000003, 0x020000000002, 0x0A000001, 0x0A000103, 40000, 80,
                    123456, 2**32 - 5, 777)),
            (FlowKey(0x0A000103, 0x0A000001, 6, 80, 40000),
             Splice(0, 0x020000000001, 0x020000000002, 0x0A0000FE, 0x0A000001, 80, 40000,
                    2**32 - 123456, 5, 778))]

    sp = fe.splice

    def build(k: FlowKey, s: Splice) -> p4r.Update:
        vals = (s.port, s.dmac, s.smac, s.sip, s.dip, s.sport, s.dport,
                s.seq_delta & 0xFFFFFFFF, s.ack_delta & 0xFFFFFFFF,
                *splice_csum_deltas(k, s.sip, s.dip, s.sport, s.dport), s.flow_id)
        match = [p4r.FieldMatch(field_id=fid, exact=p4r.FieldMatch.Exact(value=enc(v, bw)))
                 for (fid, bw), v in zip(sp.fields, k)]
        action = p4r.Action(action_id=sp.action_id,
                            params=[p4r.Action.Param(param_id=pid, value=enc(v, bw))
                                    for (pid, bw), v in zip(sp.params, vals)])
        te = p4r.TableEntry(table_id=sp.table_id, match=match,
                            action=p4r.TableAction(action=action), idle_timeout_ns=3_000_000_000)
        return p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=te))

    def protobuf() -> None:
        for k, s in legs:
            build(k, s).SerializeToString()

    def python() -> None:
        for k, s in legs:
            fe.insert_raw_py(k, s, 3.0, p4r.Update.INSERT)

    def c() -> None:
        for k, s in legs:
            fe.insert_raw(k, s, 3.0, p4r.Update.INSERT)

    for k, s in legs:
        want = build(k, s).SerializeToString()
        assert fe.insert_raw_py(k, s, 3.0, p4r.Update.INSERT) == want
        assert fe.insert_raw(k, s, 3.0, p4r.Update.INSERT) == want
    fns = {"protobuf": protobuf, "python": python, "c": c}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, f in fns.items():
            t = time.process_time()
            for _ in range(args.n):
                f()
            runs[name].append((time.process_time() - t) / args.n * 1e6)
    med = {name: round(statistics.median(v), 2) for name, v in runs.items()}
    res = {"load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "cpu_us_per_connection": med,
           "rounds": {name: [round(x, 2) for x in v] for name, v in runs.items()},
           "python_over_c": round(med["python"] / med["c"], 1),
           "protobuf_over_c": round(med["protobuf"] / med["c"], 1)}
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
