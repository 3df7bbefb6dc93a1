"""Reconciliation: what a controller that becomes primary writes, from its intent and what it
reads from the switch (pure functions on the P4Runtime protobufs, encoded against the real
P4Info); the flow ids it reserves for entries it does not know; its metrics' types."""

from pathlib import Path

import pytest
from finsy import P4CloneSessionEntry, P4Schema, P4TableAction, P4TableEntry, P4TableMatch
from finsy.proto import p4r
from prometheus_client.parser import text_string_to_metric_families

from p4cs.controller.app import ControllerApp, FlowIds
from p4cs.controller.config import load_config, parse_config
from p4cs.controller.p4rt import FlowEncoder, FlowKey, Splice, decode_match_key
from p4cs.controller.reconcile import FlowScan, diff_clone_session, diff_tables

from metrics_util import scrape

REPO = Path(__file__).resolve().parents[2]
P4INFO = REPO / "p4src" / "build" / "dpdk" / "p4cs.p4info.txtpb"
EXAMPLE = REPO / "examples" / "lcs.yaml"
INSERT, MODIFY, DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE


@pytest.fixture(scope="module")
def schema():
    return P4Schema(P4INFO)


def encode(schema, entries):
    return [e.encode(schema).table_entry for e in entries]


def route(schema, ip, port, dmac=0x020000000201):
    return P4TableEntry("ipv4_route", match=P4TableMatch(dst_addr=f"{ip}/32"),
                        action=P4TableAction("route", port=port, dmac=dmac, smac=0x0200000002FE)
                        ).encode(schema).table_entry


def kinds(updates):
    return sorted((u.type, u.entity.table_entry.table_id, u.entity.table_entry.SerializeToString())
                  for u in updates)


def test_in_sync_writes_nothing(schema):
    intent = encode(schema, ControllerApp(load_config(EXAMPLE), P4INFO).base_entries())
    assert diff_tables(intent, intent) == []
    # Field and parameter order, and non-canonical (zero-padded) values, do not matter.
    padded = []
    for te in intent:
        te = p4r.TableEntry.FromString(te.SerializeToString())
        te.match.reverse()
        for p in te.action.action.params:
            p.value = b"\x00" * 2 + p.value
        padded.append(te)
    assert diff_tables(intent, padded) == []


def test_missing_differing_and_unintended_entries(schema):
    a, b, c = route(schema, "10.0.2.1", 2), route(schema, "10.0.2.2", 3), route(schema, "10.0.2.3", 4)
    b_moved = route(schema, "10.0.2.2", 4)
    stray = route(schema, "10.0.9.9", 1)
    ups = diff_tables([a, b, c], [b_moved, stray, c])
    assert [u.type for u in ups] == [DELETE, MODIFY, INSERT]     # deletes first
    d, m, i = (u.entity.table_entry for u in ups)
    assert decode_match_key(d) == decode_match_key(stray) and not d.HasField("action")
    assert m == b
    assert i == a


def test_a_changed_configuration_writes_only_its_difference(schema):
    text = EXAMPLE.read_text()
    old = encode(schema, ControllerApp(parse_config(text, "a.yaml"), P4INFO).base_entries())
    new_text = text.replace('{name: www,    ip: 10.0.2.3, mac: "02:00:00:00:04:01", port: 4}',
                            '{name: www,    ip: 10.0.2.3, mac: "02:00:00:00:04:99", port: 4}')
    assert new_text != text
    new = encode(schema, ControllerApp(parse_config(new_text, "b.yaml"), P4INFO).base_entries())
    ups = diff_tables(new, old)
    assert [u.type for u in ups] == [MODIFY]
    assert ups[0].entity.table_entry.table_id == schema.tables["ipv4_route"].id


def test_clone_session(schema):
    want = P4CloneSessionEntry(1, replicas=[0]).encode(schema) \
        .packet_replication_engine_entry.clone_session_entry
    assert [u.type for u in diff_clone_session(want, None)] == [INSERT]
    assert diff_clone_session(want, want) == []
    other = p4r.CloneSessionEntry(session_id=1, replicas=[p4r.Replica(port=b"\x05")])
    (up,) = diff_clone_session(want, other)
    assert up.type == MODIFY
    assert up.entity.packet_replication_engine_entry.clone_session_entry == want
    old_style = p4r.CloneSessionEntry(session_id=1, replicas=[p4r.Replica(egress_port=0)])
    assert diff_clone_session(want, old_style) == []   # egress_port (P4Runtime < 1.4) or port


def flow(fe, sport, fid):
    key = FlowKey(0x0A000101, 0x0A000064, 6, sport, 80)
    up = fe.insert(key, Splice(2, 1, 2, 0x0A000101, 0x0A000201, sport, 80, 0, 0, fid), 300)
    return tuple(key), up.entity.table_entry


def test_flow_scan_fresh_controller_adopts_everything(schema):
    fe = FlowEncoder(schema)
    entries = [flow(fe, 40000 + i, 10 + i)[1] for i in range(5)]
    scan = FlowScan({}, decode_match_key, fe.flow_id)
    for te in entries:
        scan.add(te)
    assert scan.kept == {} and scan.adopted == [10, 11, 12, 13, 14] and scan.gone() == {}


def test_flow_scan_known_flows_continue(schema):
    fe = FlowEncoder(schema)
    (k1, e1), (k2, e2), (k3, e3), (k4, _e4) = (flow(fe, 40001, 1), flow(fe, 40002, 2),
                                               flow(fe, 40003, 3), flow(fe, 40004, 4))
    known = {k1: 1, k2: 7, k4: 4}      # k2 was rewritten with another id; k4 is gone
    scan = FlowScan(known, decode_match_key, fe.flow_id)
    for te in (e1, e2, e3):
        scan.add(te)
    assert scan.kept == {k1: 1}
    assert scan.adopted == [2, 3]
    assert scan.gone() == {k2: 7, k4: 4}


def test_flow_id_of_every_flow_action(schema):
    fe = FlowEncoder(schema)
    for name, args in (("flow_forward", dict(port=1, dmac=2, smac=3)),
                       ("splice", dict(port=1, dmac=2, smac=3, sip=4, dip=5, sport=6, dport=7,
                                       seq_delta=8, ack_delta=9, ip_csum_delta=10,
                                       tcp_csum_delta=11))):
        te = P4TableEntry("flow_table", match=P4TableMatch(src_addr=1, dst_addr=2, protocol=6,
                                                          src_port=3, dst_port=4),
                          action=P4TableAction(name, flow_id=99, **args)).encode(schema).table_entry
        assert fe.flow_id(te) == 99


def test_flow_ids_adopted_are_reserved_until_released():
    ids = FlowIds(8)
    ids.reset(owned=[2], adopted=[1, 4, 5, 5, 0, 99])      # duplicates and out-of-range ignored
    assert ids.adopted == 3 and ids.available() == 3        # 7 usable ids: 2, 1, 4, 5 taken
    assert [ids.get(), ids.get(), ids.get()] == [3, 6, 7]
    with pytest.raises(RuntimeError):
        ids.get()
    assert ids.is_adopted(4) and not ids.is_adopted(2) and not ids.is_adopted(3)
    ids.put(4)
    assert ids.adopted == 2 and not ids.is_adopted(4)
    assert ids.get() == 4
    ids.put(4)
    ids.put(4)                       # freeing twice hands the id out once
    assert ids.get() == 4
    with pytest.raises(RuntimeError):
        ids.get()


def test_flow_ids_released_ahead_of_the_scan_are_handed_out_once():
    ids = FlowIds(6)
    ids.reset(owned=[], adopted=[3])
    assert ids.get() == 1
    ids.put(3)                       # above the next fresh id: found by the scan, not queued
    assert [ids.get() for _ in range(4)] == [2, 3, 4, 5]
    assert ids.available() == 0


def test_dataplane_section_sizes_flow_ids():
    text = EXAMPLE.read_text() + "dataplane: {flow_table_size: 1000}\n"
    app = ControllerApp(parse_config(text, "x.yaml"), P4INFO)
    assert app.flow_ids.size == 1000 and app.params.flow_table_size == 1000
    assert ControllerApp(load_config(EXAMPLE), P4INFO).flow_ids.size == 2 * 1024 * 1024


def test_metrics_types():
    from p4cs.csproc.stats import COUNTERS, GAUGES
    app = ControllerApp(load_config(EXAMPLE), P4INFO)
    text = scrape(app)
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name in GAUGES:
        assert types[f"p4cs_csproc_{name}"] == "gauge", name
    for name in COUNTERS:
        assert types[f"p4cs_csproc_{name}"] == "counter", name
    for name in app.counters:
        assert types[f"p4cs_controller_{name}"] == "counter", name
    for name in ("p4cs_flows", "p4cs_adopted_flows", "p4cs_server_active_connections"):
        assert types[name] == "gauge", name
    assert types["p4cs_server_connections"] == "counter"
