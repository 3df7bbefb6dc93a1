"""The Write hot-path decoder agrees with protobuf on every update it accepts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from finsy.proto import p4r

from p4cs.target.dpdk.wire import Slow, decode_update, update_slices

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
