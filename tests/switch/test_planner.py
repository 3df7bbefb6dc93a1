"""Write planning on its own: the daemon lines of a WriteRequest, the checks made within a
batch, and what the daemon's replies change in the shadow (no daemon, no gRPC)."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r

from p4cs.switch.dpdk.pipeline import Pipeline, TargetConfig, load_p4info
from p4cs.switch.dpdk.planner import WritePlan
from p4cs.switch.dpdk.schema import Schema
from p4cs.switch.dpdk.wire import FlowFastPath

from .conftest import (
    A_NOACTION,
    MINI_DAEMON_INFO,
    MINI_P4INFO,
    R_SCRATCH,
    T_FLOW,
    T_L2,
    be,
    flow_entry,
    l2_entry,
    upd,
)

SC = grpc.StatusCode
TARGET = TargetConfig(ports={1: "tap:a", 2: "tap:b"}, cpu_port=510)
COPY_PORT = 3


class FakeDaemon:
    info = {"mirroring_sessions": 4, "copy_port": COPY_PORT}


def pipeline() -> Pipeline:
    """The mini pipeline as the server holds it once loaded, without a daemon behind it."""
    p4info = load_p4info(MINI_P4INFO)
    schema = Schema(p4info, MINI_DAEMON_INFO)
    pipe = Pipeline(p4info, b"", None, schema, FakeDaemon())
    pipe.shadow = {t: {} for t in schema.tables}
    pipe.fast = FlowFastPath(schema.tables)
    return pipe


def plan(pipe: Pipeline, updates: list[p4r.Update], *, raw: bool = True) -> WritePlan:
    request = p4r.WriteRequest(device_id=1, updates=updates)
    wp = WritePlan(pipe, TARGET)
    wp.add_updates(request, request.SerializeToString() if raw else None)
    return wp


def ops(wp: WritePlan) -> list[tuple]:
    return [(i, key, value, first, n) for i, _store, key, value, first, n in wp.ops]


def default_entry(action_id: int) -> p4r.TableEntry:
    te = p4r.TableEntry(table_id=T_L2, is_default_action=True)
    te.action.action.action_id = action_id
    return te


def register_write(index: int, value: int) -> p4r.Update:
    u = p4r.Update(type=p4r.Update.MODIFY)
    re_ = u.entity.register_entry
    re_.register_id = R_SCRATCH
    re_.index.index = index
    re_.data.bitstring = be(value)
    return u


def clone_session(sid: int, port: int | None, kind: str = "INSERT", truncate: int = 0) -> p4r.Update:
    u = p4r.Update(type=getattr(p4r.Update, kind))
    cs = u.entity.packet_replication_engine_entry.clone_session_entry
    cs.session_id = sid
    cs.packet_length_bytes = truncate
    if port is not None:
        cs.replicas.add(egress_port=port)
    return u


def test_fast_and_protobuf_paths_plan_the_same():
    """The wire decoders (raw bytes) and the protobuf path give the same lines and results."""
    reordered = flow_entry(5, 6, idle_ns=10**9)  # fields out of P4Info order: decode_update
    reordered.match[0].field_id, reordered.match[1].field_id = 2, 1
    batch = [
        upd("INSERT", flow_entry(1, 2, port=1, flow_id=7, idle_ns=10 * 10**9)),
        upd("MODIFY", flow_entry(1, 2, port=2, flow_id=7, idle_ns=60 * 10**9)),
        upd("INSERT", flow_entry(3, 4)),  # permanent: add + keep
        upd("INSERT", reordered),
        upd("DELETE", flow_entry(3, 4)),
        upd("INSERT", l2_entry(0x020000000001, 1)),
        upd("INSERT", l2_entry(0x020000000001, 2)),  # exists (earlier in this batch)
        upd("INSERT", flow_entry(1 << 32, 2)),  # too wide
        upd("MODIFY", default_entry(A_NOACTION)),
        register_write(3, 0xAB),
        clone_session(1, TARGET.cpu_port, truncate=128),
    ]
    fast, slow = plan(pipeline(), batch), plan(pipeline(), batch, raw=False)
    assert fast.lines == slow.lines
    assert fast.results == slow.results
    assert ops(fast) == ops(slow)
    assert fast.ordered and slow.ordered
    assert fast.lines == [
        "learner add flow_table match 0x1 0x2 action flow_fwd_0 port 0x1 flow_id 0x7 timeout 1",
        "learner mod flow_table match 0x1 0x2 action flow_fwd_0 port 0x2 flow_id 0x7 timeout 2",
        "learner add flow_table match 0x3 0x4 action flow_fwd_0 port 0x1 flow_id 0x0",
        "learner keep flow_table match 0x3 0x4",
        "learner add flow_table match 0x6 0x5 action flow_fwd_0 port 0x1 flow_id 0x0 timeout 0",
        "learner del flow_table match 0x3 0x4",
        "table add l2_fwd match 0x20000000001 action fwd port 0x1",
        "table default l2_fwd action NoAction",
        "reg write scratch_0 3 0xab",
        f"mirror 1 {COPY_PORT} truncate 128",
    ]
    codes = [r and r[0] for r in fast.results]
    assert codes == [None] * 6 + [SC.ALREADY_EXISTS, SC.INVALID_ARGUMENT] + [None] * 3
    assert [n for *_, n in fast.ops] == [1, 1, 2, 1, 1, 1, 1, 1, 1]


def test_learner_only_batches_are_not_ordered():
    wp = plan(pipeline(), [upd("INSERT", flow_entry(1, 2, idle_ns=10**9)), upd("DELETE", flow_entry(3, 4))])
    assert not wp.ordered and wp.errors() is None
    # a regular-table update orders the batch even when it fails
    wp = plan(pipeline(), [upd("DELETE", l2_entry(1, 1))])
    assert wp.ordered and wp.lines == []
    assert wp.errors() == [(SC.NOT_FOUND, "entry not found in 'MainControlImpl.l2_fwd'")]


def test_regular_table_existence_within_a_batch_and_after_commit():
    pipe = pipeline()
    e = l2_entry(0x1234, 1)
    wp = plan(pipe, [upd(kind, e) for kind in ("INSERT", "DELETE", "MODIFY", "INSERT", "MODIFY")])
    assert [r and r[0] for r in wp.results] == [None, None, SC.NOT_FOUND, None, None]
    assert wp.commit(["ok"] * len(wp.lines)) == wp.results and wp.failed
    assert list(pipe.shadow[T_L2].values()) == [e.SerializeToString()]
    # the next request sees the committed entry
    wp = plan(pipe, [upd("INSERT", e), upd("DELETE", e)])
    assert [r and r[0] for r in wp.results] == [SC.ALREADY_EXISTS, None]
    assert wp.commit(["ok"]) is not None and pipe.shadow[T_L2] == {}


def test_commit_applies_only_what_the_daemon_accepted():
    pipe = pipeline()
    kept, refused = flow_entry(1, 1, idle_ns=10**9), flow_entry(2, 2, idle_ns=10**9)
    partial = flow_entry(3, 3)  # permanent: add + keep
    wp = plan(pipe, [upd("INSERT", kept), upd("INSERT", refused), upd("INSERT", partial),
                     upd("MODIFY", default_entry(A_NOACTION))])  # fmt: skip
    assert len(wp.lines) == 5
    replies = ["ok", "err EEXIST key already present", "ok", "err ENOSPC bucket full", "ok"]
    assert wp.commit(replies) == [
        None,
        (SC.ALREADY_EXISTS, "key already present (EEXIST)"),
        (SC.RESOURCE_EXHAUSTED, "bucket full (ENOSPC)"),
        None,
    ]
    # the add of `partial` took effect although its keep failed: the shadow follows the daemon
    assert pipe.shadow[T_FLOW] == {(1, 1): kept.SerializeToString(), (3, 3): partial.SerializeToString()}
    assert pipe.defaults == {T_L2: default_entry(A_NOACTION).SerializeToString()}
    wp = plan(pipe, [upd("DELETE", kept)])
    assert wp.commit(["ok"]) is None and list(pipe.shadow[T_FLOW]) == [(3, 3)]


def test_clone_sessions():
    pipe = pipeline()
    wp = plan(pipe, [clone_session(1, 2), clone_session(1, 1), clone_session(2, 7), clone_session(0, 1),
                     clone_session(4, 1), clone_session(3, None), clone_session(2, 1, "MODIFY")])  # fmt: skip
    assert wp.lines == ["mirror 1 2", "mirror 3 off"]
    assert [r and r[0] for r in wp.results] == [
        None, SC.ALREADY_EXISTS, SC.INVALID_ARGUMENT, SC.INVALID_ARGUMENT, SC.INVALID_ARGUMENT, None,
        SC.NOT_FOUND,
    ]  # fmt: skip
    assert wp.results[2][1] == (
        "clone session 2: replica port 7 is neither the CPU port (510) nor a data-plane port (ports: [1, 2])"
    )
    assert wp.results[4][1] == "clone session id 4 out of range: this target has sessions 1..3"
    wp.commit(["ok", "ok"])
    assert sorted(pipe.clone_sessions) == [1, 3]
    wp = plan(pipe, [clone_session(1, None, "DELETE"), clone_session(1, None, "DELETE")])
    assert wp.lines == ["mirror 1 off"] and wp.results[1] == (SC.NOT_FOUND, "clone session 1 not found")
    wp.commit(["ok"])
    assert sorted(pipe.clone_sessions) == [3]


@pytest.mark.parametrize(
    "update, code, message",
    [
        (upd("MODIFY", flow_entry(1, 2, idle_ns=-1)), SC.INVALID_ARGUMENT, "idle_timeout_ns is negative"),
        (p4r.Update(type=p4r.Update.INSERT), SC.INVALID_ARGUMENT, "update has no entity"),
        (
            upd("INSERT", default_entry(A_NOACTION)),
            SC.INVALID_ARGUMENT,
            "the default entry can only be MODIFYed",
        ),
        (register_write(16, 1), SC.OUT_OF_RANGE, "register 'MainControlImpl.scratch': index 16 out of range"),
    ],
)
def test_refused_updates(update, code, message):
    wp = plan(pipeline(), [update])
    assert wp.lines == [] and wp.errors() == [(code, message)]
