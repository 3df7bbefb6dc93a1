"""The Write hot-path decoder agrees with protobuf on every update it accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from finsy.proto import p4r

from p4cs.switch.dpdk.wire import Slow, decode_update, update_slices

ids = st.integers(min_value=0, max_value=2**32 - 1)
values = st.binary(min_size=0, max_size=300)


@st.composite
def updates(draw):
    te = p4r.TableEntry(table_id=draw(ids))
    for _ in range(draw(st.integers(0, 6))):
        fm = te.match.add(field_id=draw(ids))
        kind = draw(st.sampled_from(["exact", "exact", "exact", "lpm", "ternary"]))
        if kind == "exact":
            fm.exact.value = draw(values)
        elif kind == "lpm":
            fm.lpm.value = draw(values)
            fm.lpm.prefix_len = draw(st.integers(0, 128))
        else:
            fm.ternary.value = draw(values)
            fm.ternary.mask = draw(values)
    if draw(st.booleans()):
        a = te.action.action
        a.action_id = draw(ids)
        for _ in range(draw(st.integers(0, 5))):
            a.params.add(param_id=draw(ids), value=draw(values))
    elif draw(st.booleans()):
        te.action.action_profile_member_id = draw(ids)
    te.priority = draw(st.integers(-(2**31), 2**31 - 1))
    te.idle_timeout_ns = draw(st.integers(-(2**63), 2**63 - 1))
    te.is_default_action = draw(st.booleans())
    if draw(st.booleans()):
        te.metadata = draw(values)
    if draw(st.booleans()):
        te.counter_data.packet_count = draw(st.integers(0, 2**63 - 1))
    u = p4r.Update(type=draw(st.sampled_from([0, 1, 2, 3])))
    if draw(st.integers(0, 9)):
        u.entity.table_entry.CopyFrom(te)
    else:
        u.entity.counter_entry.counter_id = draw(ids)
    return u


@settings(max_examples=400, deadline=None)
@given(st.lists(updates(), min_size=1, max_size=5))
def test_decoder_matches_protobuf(ups):
    req = p4r.WriteRequest(device_id=1, updates=ups)
    req.election_id.low = 3
    raw = req.SerializeToString()
    slices = update_slices(raw)
    assert len(slices) == len(ups)
    for (s, e), u in zip(slices, ups):
        try:
            utype, tid, matches, aid, params, prio, idle, is_default, ts, te_end = decode_update(raw, s, e)
        except Slow:
            te = u.entity.table_entry
            assert (
                u.entity.WhichOneof("entity") != "table_entry"
                or any(fm.WhichOneof("field_match_type") != "exact" for fm in te.match)
                or te.action.WhichOneof("type") not in (None, "action")
                or te.priority < 0
                or te.idle_timeout_ns < 0
                or te.HasField("counter_data")
            )
            continue
        te = u.entity.table_entry
        assert u.entity.WhichOneof("entity") == "table_entry"
        assert utype == u.type and tid == te.table_id
        assert matches == [(fm.field_id, fm.exact.value) for fm in te.match]
        if te.HasField("action"):
            assert aid == te.action.action.action_id
            assert params == [(p.param_id, p.value) for p in te.action.action.params]
        else:
            assert aid is None and params == []
        assert (prio, idle, is_default) == (te.priority, te.idle_timeout_ns, te.is_default_action)
        assert p4r.TableEntry.FromString(raw[ts:te_end]) == te


# --------------------------------------------------------------------------------------
# FlowFastPath agrees with the generic path on the test pipeline's tables
# --------------------------------------------------------------------------------------

from p4cs.switch.dpdk.errors import P4RTError  # noqa: E402
from p4cs.switch.dpdk.keys import action_text, entry_action, entry_key  # noqa: E402
from p4cs.switch.dpdk.pipeline import load_p4info  # noqa: E402
from p4cs.switch.dpdk.schema import Schema  # noqa: E402
from p4cs.switch.dpdk.wire import FlowFastPath, _wirefast  # noqa: E402

from .conftest import MINI_DAEMON_INFO, MINI_P4INFO  # noqa: E402

_SCHEMA = Schema(load_p4info(MINI_P4INFO), MINI_DAEMON_INFO)
_FAST = FlowFastPath(_SCHEMA.tables)


@st.composite
def flow_updates(draw):
    """Mostly well-formed flow-table installs, some with one thing wrong."""
    tid = draw(st.sampled_from([33554434] * 6 + [33554433, 33554435]))
    te = p4r.TableEntry(table_id=tid)
    value = st.one_of(st.binary(min_size=1, max_size=4), st.binary(max_size=8))
    fids = draw(st.one_of(st.permutations([1, 2]), st.lists(st.sampled_from([1, 2, 3]), max_size=3)))
    for fid in fids:
        te.match.add(field_id=fid).exact.value = draw(value)
    if draw(st.integers(0, 5)):
        a = te.action.action
        a.action_id = draw(st.sampled_from([16777219] * 5 + [16777217, 16777218, 16777220]))
        pids = draw(st.one_of(st.permutations([1, 2]), st.lists(st.sampled_from([1, 2, 3]), max_size=3)))
        for pid in pids:
            a.params.add(param_id=pid, value=draw(value))
    te.idle_timeout_ns = draw(st.sampled_from([0, 0, 10**9, 3600 * 10**9, 2**62]))
    if not draw(st.integers(0, 9)):
        te.priority = draw(st.integers(1, 10))
    u = p4r.Update(type=draw(st.sampled_from([1, 2, 3, 1, 1])))
    u.entity.table_entry.CopyFrom(te)
    return u


_ACCEPTED: list = []


def test_fast_path_is_exercised():
    _check_fast_path()
    assert len(_ACCEPTED) > 20  # the property below saw the fast path, not just fallbacks


@settings(max_examples=600, deadline=None, derandomize=True)  # the same examples every run:
@given(flow_updates())                                          # the count above is stable
def _check_fast_path(u):
    raw = p4r.WriteRequest(updates=[u]).SerializeToString()
    (s, e), = update_slices(raw)
    try:
        utype, t, key, keytext, acttext, idle, ts, te_end = _FAST.plan(raw, s, e)
    except (Slow, IndexError):
        return
    _ACCEPTED.append(1)
    te = u.entity.table_entry
    assert t.id == te.table_id and utype == u.type and idle == te.idle_timeout_ns
    assert raw[ts:te_end] == te.SerializeToString()
    gkey, gtext = entry_key(t, te)  # must not raise: the fast path accepted it
    assert (key, keytext) == (gkey, gtext)
    if te.HasField("action"):
        aid, params = entry_action(t, te)
        assert acttext == action_text(t, aid, params)
    else:
        assert acttext is None


def _plan(f, raw, s, e):
    try:
        return f(raw, s, e)
    except (Slow, IndexError):
        return None


@settings(max_examples=800, deadline=None, derandomize=True)
@given(flow_updates(), st.data())
def test_c_plan_is_the_python_plan(u, data):
    """FlowFastPath.plan_c (_wirefast.c) returns what plan_py returns on the same update, and
    on a mutated one never accepts what plan_py rejects or reads differently."""
    if _wirefast is None:
        pytest.skip("the _wirefast extension is not built (setup.py build_ext)")
    raw = p4r.WriteRequest(updates=[u]).SerializeToString()
    (s, e), = update_slices(raw)
    py = _plan(_FAST.plan_py, raw, s, e)
    c = _plan(_FAST.plan_c, raw, s, e)
    assert c == py
    if e > s and data.draw(st.booleans()):
        b = bytearray(raw)
        k = data.draw(st.integers(s, e - 1))
        b[k] = data.draw(st.integers(0, 255))
        raw = bytes(b)
        c = _plan(_FAST.plan_c, raw, s, e)
        if c is not None:
            assert c == _plan(_FAST.plan_py, raw, s, e)


def _sample(v1: int, v2: int, idle: int) -> p4r.Update:
    u = p4r.Update(type=1)
    te = u.entity.table_entry
    te.table_id = 33554434
    te.match.add(field_id=1).exact.value = bytes([v1])
    te.match.add(field_id=2).exact.value = bytes([v2])
    a = te.action.action
    a.action_id = 16777219
    a.params.add(param_id=1, value=bytes([v2]))
    a.params.add(param_id=2, value=bytes([v1]))
    te.idle_timeout_ns = idle
    return u


_SAMPLES = [_sample(v1, v2, idle) for v1, v2 in ((1, 2), (7, 9), (200, 3)) for idle in (0, 10**9)]


def test_c_plan_is_exercised():
    if _wirefast is None:
        pytest.skip("the _wirefast extension is not built (setup.py build_ext)")
    n = 0
    for u in _SAMPLES:
        raw = p4r.WriteRequest(updates=[u]).SerializeToString()
        (s, e), = update_slices(raw)
        n += _plan(_FAST.plan_c, raw, s, e) is not None
    assert n >= 3


def test_fast_path_rejects_what_the_generic_path_rejects():
    t = _SCHEMA.tables[33554434]
    for bad in (b"", b"\x01\x00\x00\x00\x00"):
        te = p4r.TableEntry(table_id=t.id)
        te.match.add(field_id=1).exact.value = bad
        te.match.add(field_id=2).exact.value = b"\x01"
        u = p4r.Update(type=1)
        u.entity.table_entry.CopyFrom(te)
        raw = p4r.WriteRequest(updates=[u]).SerializeToString()
        (s, e), = update_slices(raw)
        try:
            _FAST.plan(raw, s, e)
            raise AssertionError("fast path accepted a bad value")
        except Slow:
            pass
        try:
            entry_key(t, te)
            raise AssertionError("generic path accepted a bad value")
        except P4RTError:
            pass


# ---------------------------------------------------------------------------------------------
# idle-timeout notifications built in wire format parse as the protobuf objects did


def test_idle_notification_wire_format_equals_the_protobuf_objects():
    import random
    import time

    from p4cs.pbwire import varint
    from p4cs.switch.dpdk.expiry import entry_field
    from p4cs.switch.dpdk.packetio import idle_notification

    rnd = random.Random(7)
    for n in (1, 2, 17, 300):
        entries = []
        for _ in range(n):
            te = p4r.TableEntry(table_id=rnd.randrange(1, 1 << 32), idle_timeout_ns=3_000_000_000)
            for fid in range(1, rnd.randrange(2, 6)):
                te.match.add(field_id=fid).exact.value = rnd.randbytes(rnd.randrange(1, 5))
            te.action.action.action_id = rnd.randrange(1, 1 << 32)
            for pid in range(1, rnd.randrange(1, 13)):
                te.action.action.params.add(param_id=pid, value=rnd.randbytes(rnd.randrange(1, 7)))
            if rnd.random() < 0.1:      # an entry written with counter data: the counts win
                te.counter_data.packet_count = 5
            counts = rnd.choice([None, (0, 0), (rnd.randrange(1 << 40), rnd.randrange(1 << 50))])
            entries.append((te.SerializeToString(), counts))
        now = time.time_ns()
        want = p4r.IdleTimeoutNotification(timestamp=now)
        for b, counts in entries:
            t = want.table_entry.add()
            t.MergeFromString(b)
            if counts is not None:
                t.counter_data.packet_count, t.counter_data.byte_count = counts
        got = p4r.StreamMessageResponse.FromString(
            idle_notification([entry_field(b, c) for b, c in entries], b"\x10" + varint(now)))
        assert got == p4r.StreamMessageResponse(idle_timeout_notification=want)
        assert [t.HasField("counter_data") for t in got.idle_timeout_notification.table_entry] \
            == [c is not None or t.HasField("counter_data")
                for (b, c), t in zip(entries, want.table_entry)]


# ---------------------------------------------------------------------------------------------
# the daemon's `expired` messages: _wirefast.expired is expiry.expired_entries


def _expiry_case(rnd) -> tuple[bytes, dict]:
    """A message of the daemon's shape (some lines mangled) and the tables it names: two that
    notify, one that does not; each shadow holds some of the keys named and others."""
    tables, shadows = {}, {}
    for tid, name, notify in ((7, "flow_table", True), (9, "arp_learn", True),
                              (11, "quiet", False)):
        shadows[tid] = {}
        tables[name] = (tid, shadows[tid], notify)
    lines = []
    for _ in range(rnd.randrange(0, 40)):
        name = rnd.choice(["flow_table", "arp_learn", "quiet", "unknown"])
        tid = tables.get(name, (None,))[0]
        key = tuple(rnd.choice([rnd.randrange(1 << 32), rnd.randrange(1 << 16),
                                rnd.randrange(1 << 128)]) for _ in range(rnd.randrange(0, 6)))
        toks = ["expired", name] + [hex(v) if v >> 64 else str(v) for v in key]
        if rnd.random() < 0.6:
            toks += ["count", str(rnd.randrange(1 << 20)), str(rnd.randrange(1 << 40)),
                     str(rnd.randrange(1 << 50))]
        if tid is not None and rnd.random() < 0.8:
            te = p4r.TableEntry(table_id=tid, idle_timeout_ns=3_000_000_000)
            te.match.add(field_id=1).exact.value = rnd.randbytes(rnd.randrange(1, 200))
            shadows[tid][key] = te.SerializeToString()
        if rnd.random() < 0.15:                              # mangled
            k = rnd.randrange(len(toks))
            toks[k] = rnd.choice(["?", "-1", "010", "0x", "1_0", "x", "", "count",
                                  "18446744073709551616", "+3", "0b101", "expiredx"])
        sep = " " * rnd.randrange(1, 3)
        lines.append((" " if rnd.random() < 0.05 else "") + sep.join(toks))
    if rnd.random() < 0.3:
        lines.append("")
    return "\n".join(lines).encode(), tables


def _clone_tables(tables: dict) -> dict:
    """The same tables with copies of their shadows (each implementation changes its own)."""
    return {name: (tid, dict(shadow), notify) for name, (tid, shadow, notify) in tables.items()}


def test_c_expired_is_the_python_expired():
    """_wirefast.expired gives the reference's fields and bad lines and leaves the shadows as
    the reference does, on daemon-shaped messages, mangled ones and random bytes."""
    import random

    from p4cs.switch.dpdk.expiry import expired_entries

    if _wirefast is None:
        pytest.skip("the _wirefast extension is not built (setup.py build_ext)")
    rnd = random.Random(11)
    taken = 0
    for i in range(3000):
        data, tables = _expiry_case(rnd)
        if i % 10 == 0 and data:                   # a byte changed anywhere
            b = bytearray(data)
            b[rnd.randrange(len(b))] = rnd.randrange(256)
            data = bytes(b)
        t_py, t_c = _clone_tables(tables), _clone_tables(tables)
        want = expired_entries(data, t_py)
        got = _wirefast.expired(data, t_c)
        if got is None:             # a byte the C leaves to Python: nothing changed
            assert t_c == tables
            continue
        taken += 1
        assert got == want, data
        assert t_c == t_py
    assert taken > 2500


def test_expired_fields_parse_as_the_notification():
    """The fields of one message, with the counts of each line, make the notification."""
    import time

    from p4cs.pbwire import varint
    from p4cs.switch.dpdk.expiry import expired_entries
    from p4cs.switch.dpdk.packetio import idle_notification

    te = p4r.TableEntry(table_id=7, idle_timeout_ns=3_000_000_000)
    te.match.add(field_id=1).exact.value = b"\x0a\x00\x00\x01"
    b = te.SerializeToString()
    data = b"expired flow_table 167772161 80 count 4 9 1234\nexpired flow_table 5\n" \
           b"expired flow_table 1 ?\nexpiredx\nhello"
    impls = [expired_entries] + ([] if _wirefast is None else [_wirefast.expired])
    for impl in impls:
        shadow = {(167772161, 80): b, (5,): b, (6,): b}
        fields, bad = impl(data, {"flow_table": (7, shadow, True)})
        assert bad == ["expired flow_table 1 ?", "expiredx"]
        assert shadow == {(6,): b}
        now = time.time_ns()
        msg = p4r.StreamMessageResponse.FromString(idle_notification(fields[7],
                                                                     b"\x10" + varint(now)))
        n = msg.idle_timeout_notification
        assert n.timestamp == now and len(n.table_entry) == 2
        assert (n.table_entry[0].counter_data.packet_count,
                n.table_entry[0].counter_data.byte_count) == (9, 1234)
        assert not n.table_entry[1].HasField("counter_data")
        assert n.table_entry[1].match == te.match
