"""What the controller writes for a configuration, encoded against the real P4Info."""

from collections import Counter
from pathlib import Path

import pytest
from finsy import P4Schema
from finsy.proto import p4r

from p4cs import paths
from p4cs.controller.app import ControllerApp, FlowIds
from p4cs.controller.config import load_config
from p4cs.controller.p4rt import FlowEncoder, FlowKey, Splice, decode_match_key, enc
from p4cs.csproc.packet import splice_csum_deltas

REPO = Path(__file__).resolve().parents[2]
P4INFO = paths.p4info("dpdk")


@pytest.fixture(scope="module")
def schema():
    return P4Schema(P4INFO)


def test_base_entries_encode_against_p4info(schema):
    app = ControllerApp(load_config(REPO / "examples" / "lcs.yaml"), P4INFO)
    entries = app.base_entries()
    tables = Counter(e.table_id for e in entries)
    # 4 ports + the CPU port; gateways 10.0.1.254, 10.0.2.254 + the VIP own ARP and local entries
    # the VIP's SYNs answered by the data plane: one syn_table entry per virtual service
    assert tables == {"egress_table": 5, "arp_table": 3, "local_table": 3, "vip_table": 1,
                      "backend_table": 3, "ipv4_route": 4, "syn_table": 1}
    for e in entries:
        e.encode(schema)                       # names, widths and values all valid
    cpu = [e for e in entries if e.table_id == "egress_table" and e.match["out_port"] == 0]
    assert cpu, "punted packets leave through egress_table on the CPU port"
    assert app.clone_session().replicas == [0]


def test_flow_encoder_round_trip(schema):
    fe = FlowEncoder(schema)
    key = FlowKey(0x0A000101, 0x0A000064, 6, 40000, 80)
    up = fe.insert(key, Splice(2, 0x020000000201, 0x0200000002FE, 0x0A000101, 0x0A000201,
                               40000, 80, -5, 123, 7), idle_timeout_s=300)
    assert up.type == p4r.Update.INSERT
    te = up.entity.table_entry
    assert decode_match_key(te) == (0x0A000101, 0x0A000064, 6, 40000, 80)
    params = {p.param_id: int.from_bytes(p.value, "big") for p in te.action.action.params}
    assert params[8] == (-5) & 0xFFFFFFFF         # seq_delta mod 2^32
    # the checksum deltas of the rewrite (10.0.0.100:80 -> 10.0.2.1:80), computed from key and action
    assert (params[10], params[11]) == splice_csum_deltas(key, 0x0A000101, 0x0A000201, 40000, 80)
    assert params[10] == (0x0201 - 0x0064) and params[11] == params[10]
    assert te.idle_timeout_ns == 300 * 10**9
    assert fe.delete(key).type == p4r.Update.DELETE
    po = fe.packet_out(b"\x00" * 60, 3)
    assert po.packet.payload == b"\x00" * 60
    assert {m.metadata_id: int.from_bytes(m.value, "big") for m in po.packet.metadata}[1] == 3


def test_canonical_bytes():
    assert enc(0, 32) == b"\x00"
    assert enc(0x0102, 16) == b"\x01\x02"
    assert enc(1, 9) == b"\x01"
    with pytest.raises(ValueError):
        enc(256, 8)


def test_flow_ids_reuse():
    ids = FlowIds(4)
    a, b, c = ids.get(), ids.get(), ids.get()
    assert (a, b, c) == (1, 2, 3)
    with pytest.raises(RuntimeError):
        ids.get()
    ids.put(b)
    assert ids.get() == b


def test_window_scale_reaches_the_engine():
    from p4cs.controller.config import parse_config
    text = (REPO / "examples" / "lcs.yaml").read_text()
    assert ControllerApp(parse_config(text, "x.yaml"), P4INFO).engine.cfg.window_scale == "auto"
    for setting, want in (("null", None), ("10", 10)):
        other = text.replace("limits: {", f"limits: {{window_scale: {setting}, ", 1)
        assert other != text
        assert ControllerApp(parse_config(other, "x.yaml"), P4INFO).engine.cfg.window_scale == want


def test_flow_ids_available():
    ids = FlowIds(3)
    assert ids.available() == 2          # ids 1 and 2 (0 is never handed out)
    a = ids.get()
    assert ids.available() == 1
    ids.put(a)
    assert ids.available() == 2


def _reference_update(fe, key, s, idle_timeout_s, utype):
    """The flow update built as protobuf objects, field by field (what the raw encoder must
    serialize)."""
    vals = (s.port, s.dmac, s.smac, s.sip, s.dip, s.sport, s.dport, s.seq_delta & 0xFFFFFFFF,
            s.ack_delta & 0xFFFFFFFF, *splice_csum_deltas(key, s.sip, s.dip, s.sport, s.dport),
            s.flow_id)
    match = [p4r.FieldMatch(field_id=fid, exact=p4r.FieldMatch.Exact(value=enc(v, bw)))
             for (fid, bw), v in zip(fe.splice.fields, key)]
    if utype == p4r.Update.DELETE:
        te = p4r.TableEntry(table_id=fe.splice.table_id, match=match)
    else:
        action = p4r.Action(action_id=fe.splice.action_id,
                            params=[p4r.Action.Param(param_id=pid, value=enc(v, bw))
                                    for (pid, bw), v in zip(fe.splice.params, vals)])
        te = p4r.TableEntry(table_id=fe.splice.table_id, match=match,
                            action=p4r.TableAction(action=action),
                            idle_timeout_ns=int(idle_timeout_s * 1e9))
    return p4r.Update(type=utype, entity=p4r.Entity(table_entry=te))


@pytest.mark.parametrize("impl", ["python", "c"])
def test_raw_flow_updates_serialize_the_protobuf(schema, impl):
    """insert_raw / delete_raw are byte for byte the serialization of the same update built
    as protobuf objects, for random keys and actions (values of every width, 0 included), in
    Python and in C (``_p4wire``)."""
    import random
    fe = FlowEncoder(schema)
    if impl == "c":
        if fe._c_args is None:      # noqa: SLF001
            pytest.skip("p4cs.controller._p4wire is not built (no C compiler at install)")
    else:
        fe._c_args = None           # noqa: SLF001
    rnd = random.Random(7)
    for i in range(500):
        key = FlowKey(rnd.choice((0, rnd.getrandbits(32))), rnd.getrandbits(32), 6,
                      rnd.choice((0, 1, 80, rnd.getrandbits(16))), rnd.getrandbits(16))
        s = Splice(rnd.choice((0, 1, 2, 511)), rnd.getrandbits(48), rnd.getrandbits(48),
                   rnd.getrandbits(32), rnd.getrandbits(32), rnd.getrandbits(16), rnd.getrandbits(16),
                   rnd.randrange(-2**31, 2**32), rnd.randrange(-2**31, 2**32), rnd.getrandbits(20))
        idle = rnd.choice((0, 3, 300, 86400, 0.25))
        utype = rnd.choice((p4r.Update.INSERT, p4r.Update.MODIFY))
        raw = fe.insert_raw(key, s, idle, utype)
        ref = _reference_update(fe, key, s, idle, utype)
        assert raw == ref.SerializeToString(), i
        assert fe.delete_raw(key) == _reference_update(fe, key, s, 0, p4r.Update.DELETE).SerializeToString()


def test_a_removal_waits_for_the_install_of_its_key(schema, monkeypatch):
    """A RemoveFlows for a key whose install is queued or in flight (a NONSTICKY connection
    that removes its server->client entry right after asking for it) is carried out once the
    install's Write is over, and then deletes the entry that install made: it neither
    overtakes the Write nor finds no owner and leaves the entry behind."""
    import asyncio

    from p4cs.controller import app as app_mod
    from p4cs.controller.config import parse_config
    from p4cs.csproc import effects as fx

    app = ControllerApp(parse_config((REPO / "examples" / "lcs.yaml").read_text(), "x.yaml"),
                        P4INFO)
    app.enc = FlowEncoder(schema)
    key = fx.FlowKey(0x0A000201, 0x0A000101, 6, 80, 40000)
    flow = fx.FlowSpec(key, 1, b"\x02" * 6, b"\x04" * 6, 0x0A000064, 0x0A000101, 80, 40000,
                       5, 7, 300, conn_id=9, direction="s2c")
    writes: list[str] = []
    release = asyncio.Event()

    async def held_write(sw, updates):
        writes.append("install")
        await release.wait()

    monkeypatch.setattr(app_mod, "write_raw", held_write)

    async def run():
        loop = asyncio.create_task(app._install_loop(_TaskSwitch()))
        await app._execute([fx.InstallFlows([flow])])
        await app._execute([fx.RemoveFlows([key], 0)])    # while the install is queued
        for _ in range(10):
            await asyncio.sleep(0)
        assert writes == ["install"] and app.teardown._removals == []
        release.set()
        for _ in range(10):
            await asyncio.sleep(0)
        loop.cancel()
        return app.teardown._removals

    removals = asyncio.run(run())
    fid = app.flow_of[tuple(key)]
    assert removals == [(tuple(key), (fid, 9))]     # the entry the install made
    assert not app._installing and not app._after_install
    assert app.counters["install_writes"] == 1 and app.counters["flows_installed"] == 1


class _TaskSwitch:
    """What the install loop needs of a finsy Switch: tasks tied to it."""

    @staticmethod
    def create_task(coro):
        import asyncio
        return asyncio.create_task(coro)


def _splice_flow(sport: int, conn: int):
    """The server->client flow of connection ``conn`` from client port ``sport``."""
    from p4cs.csproc import effects as fx

    key = fx.FlowKey(0x0A000201, 0x0A000101, 6, 80, sport)
    return fx.FlowSpec(key, 1, b"\x02" * 6, b"\x04" * 6, 0x0A000064, 0x0A000101, 80,
                       sport, 5, 7, 300, conn_id=conn, direction="s2c")


def _capture_sends(app, monkeypatch) -> list[bytes]:
    """The frames the app sends as packet-outs, in order."""
    sent: list[bytes] = []

    async def send(sw, out):
        sent.extend(frame for _port, frame in out)

    monkeypatch.setattr(app, "_send_packets", send)
    return sent


async def _settle(turns: int = 30) -> None:
    import asyncio

    for _ in range(turns):
        await asyncio.sleep(0)


def test_install_writes_in_flight(schema, monkeypatch):
    """Flow installs ready while a Write is in flight go out at once in a second Write (up to
    INSTALL_WRITES_IN_FLIGHT); a batch with a key of a Write in flight (the later MODIFY of an
    entry being inserted) waits until that Write is over, and is then planned as a MODIFY;
    every connection's packets go out once its own Write is over."""
    import asyncio

    from p4cs.controller import app as app_mod
    from p4cs.controller.config import parse_config
    from p4cs.csproc import effects as fx

    app = ControllerApp(parse_config((REPO / "examples" / "lcs.yaml").read_text(), "x.yaml"),
                        P4INFO)
    app.enc = FlowEncoder(schema)
    monkeypatch.setattr(app_mod, "INSTALL_WRITES_IN_FLIGHT", 2)

    flow, settle = _splice_flow, _settle
    writes: list[tuple[int, list[int]]] = []        # (write number, update types)
    gates: list[asyncio.Event] = []

    async def held_write(sw, updates):
        gate = asyncio.Event()
        gates.append(gate)
        writes.append((len(writes), [p4r.Update.FromString(u).type for u in updates]))
        await gate.wait()

    monkeypatch.setattr(app_mod, "write_raw", held_write)
    sent = _capture_sends(app, monkeypatch)

    async def run():
        loop = asyncio.create_task(app._install_loop(_TaskSwitch()))
        a, b = flow(40000, 1), flow(40001, 2)
        await app._execute([fx.InstallFlows([a], [fx.PacketOut(1, b"a")])])
        await settle()
        await app._execute([fx.InstallFlows([b], [fx.PacketOut(1, b"b")])])
        await settle()
        assert [w for w, _ in writes] == [0, 1]      # b's Write went while a's is in flight
        await app._execute([fx.InstallFlows([a], [fx.PacketOut(1, b"a2")])])  # a again
        await settle()
        assert len(writes) == 2 and sent == []       # waits for a's Write
        gates[1].set()
        await settle()
        assert sent == [b"b"] and len(writes) == 2   # b done; a2 still waits for a
        gates[0].set()
        await settle()
        assert sent == [b"b", b"a"] and len(writes) == 3
        assert writes[2][1] == [p4r.Update.MODIFY]   # planned after a's INSERT was written
        gates[2].set()
        await settle()
        loop.cancel()

    asyncio.run(run())
    assert sent == [b"b", b"a", b"a2"]
    assert [t for _, t in writes] == [[p4r.Update.INSERT], [p4r.Update.INSERT],
                                      [p4r.Update.MODIFY]]
    assert app.counters["install_writes"] == 3 and app.counters["flows_installed"] == 3
    assert not app._installing


@pytest.mark.parametrize("inflight", [None, 2])
def test_connections_ready_while_writes_are_full_go_in_one_write(schema, monkeypatch, inflight):
    """With INSTALL_WRITES_IN_FLIGHT Writes in flight (the default, one, and two), every
    connection that becomes ready until one is over goes in the next Write together (not one
    Write per wake-up)."""
    import asyncio

    from p4cs.controller import app as app_mod
    from p4cs.controller.config import parse_config
    from p4cs.csproc import effects as fx

    if inflight is not None:
        monkeypatch.setattr(app_mod, "INSTALL_WRITES_IN_FLIGHT", inflight)
    n = app_mod.INSTALL_WRITES_IN_FLIGHT
    app = ControllerApp(parse_config((REPO / "examples" / "lcs.yaml").read_text(), "x.yaml"),
                        P4INFO)
    app.enc = FlowEncoder(schema)
    writes: list[int] = []          # updates per Write
    gates: list[asyncio.Event] = []

    async def held_write(sw, updates):
        gate = asyncio.Event()
        gates.append(gate)
        writes.append(len(updates))
        await gate.wait()

    monkeypatch.setattr(app_mod, "write_raw", held_write)
    sent = _capture_sends(app, monkeypatch)

    def install(port):
        return app._execute([fx.InstallFlows([_splice_flow(port, port)],
                                             [fx.PacketOut(1, b"%d" % port)])])

    async def run():
        loop = asyncio.create_task(app._install_loop(_TaskSwitch()))
        for port in range(40000, 40000 + n):        # every place taken
            await install(port)
            await _settle()
        for port in range(40100, 40103):            # ready one by one meanwhile
            await install(port)
            await _settle()
        assert writes == [1] * n
        gates[0].set()
        await _settle()
        assert writes == [1] * n + [3]
        for g in gates[1:]:
            g.set()
        await _settle()
        assert sorted(sent) == sorted(b"%d" % p for p in [*range(40000, 40000 + n),
                                                          *range(40100, 40103)])
        loop.cancel()

    asyncio.run(run())


def test_reverse_key_of_a_splice_entry(schema):
    """The key of the other direction of a splice entry (what an answer to the rewritten
    segment carries), from the entry as the switch returns it; None for another action."""
    fe = FlowEncoder(schema)
    key = FlowKey(0x0A000101, 0x0A000064, 6, 40000, 80)        # client -> VIP
    s = Splice(2, 0x020000000001, 0x020000000002, 0x0A000101, 0x0A000202, 40000, 8080,
               5, 7, 33)                                       # -> server 10.0.2.2:8080
    te = p4r.Update.FromString(fe.insert_raw(key, s, 300)).entity.table_entry
    assert fe.reverse_key(te) == FlowKey(0x0A000202, 0x0A000101, 6, 8080, 40000)
    te.action.action.action_id += 1
    assert fe.reverse_key(te) is None
    te = p4r.TableEntry.FromString(fe.match_entry_raw(key))     # a Read's probe: no action
    assert fe.reverse_key(te) is None


def test_c_flow_encoder_refuses_what_does_not_fit(schema):
    """The C encoder raises ValueError as the Python one does for a value wider than its
    field, a negative one, or a non-int; the encoder stays usable."""
    fe = FlowEncoder(schema)
    if fe._c_args is None:          # noqa: SLF001
        pytest.skip("p4cs.controller._p4wire is not built (no C compiler at install)")
    key = FlowKey(1, 2, 6, 3, 4)
    good = Splice(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    for bad_key, bad in ((key, Splice(1, 1 << 48, 3, 4, 5, 6, 7, 8, 9, 10)),
                         (FlowKey(1, 2, 6, 1 << 16, 4), good),
                         (FlowKey(-1, 2, 6, 3, 4), good),
                         (key, Splice(1, 2, 3, 4, 5, 6, 7, 8, 9, "x"))):
        with pytest.raises((ValueError, TypeError)):
            fe.insert_raw(bad_key, bad, 0, p4r.Update.INSERT)
    assert fe.insert_raw(key, good, 3, p4r.Update.INSERT) == \
        fe.insert_raw_py(key, good, 3, p4r.Update.INSERT)


def test_engine_processes_collect_young_objects_less_often():
    import gc

    from p4cs.controller.workers import GC_GEN0_THRESHOLD, tune_gc
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        assert GC_GEN0_THRESHOLD > before[0]
    finally:
        gc.set_threshold(*before)


def test_removal_deletes_ride_on_the_next_install_write(schema, monkeypatch):
    """A removal's Deletes (Teardown.run -> write_deletes) go first in the next flow-install
    WriteRequest when installs are due (no RPC of their own: teardown_rpcs does not move),
    alone otherwise; the removal's packets go out once that Write is over."""
    import asyncio

    from p4cs.controller import app as app_mod
    from p4cs.controller.config import parse_config
    from p4cs.csproc import effects as fx

    app = ControllerApp(parse_config((REPO / "examples" / "lcs.yaml").read_text(), "x.yaml"),
                        P4INFO)
    app.enc = FlowEncoder(schema)

    flow, settle = _splice_flow, _settle
    writes: list[list[int]] = []
    gate = asyncio.Event()

    async def held_write(sw, updates):
        writes.append([p4r.Update.FromString(u).type for u in updates])
        await gate.wait()

    monkeypatch.setattr(app_mod, "write_raw", held_write)
    sent = _capture_sends(app, monkeypatch)

    async def run():
        sw = _TaskSwitch()
        loop = asyncio.create_task(app._install_loop(sw))
        td = asyncio.create_task(app.teardown.run(sw))
        a, b, old = flow(40000, 1), flow(40001, 2), flow(40002, 3)
        await app._execute([fx.InstallFlows([a], [fx.PacketOut(1, b"a")])])
        await app._execute([fx.InstallFlows([old])])
        await settle()
        gate.set()                       # a's and old's installs: one Write
        await settle()
        gate.clear()
        assert writes == [[p4r.Update.INSERT, p4r.Update.INSERT]] and sent == [b"a"]
        # a removal (then a SYN-ACK) and an install ready in the same turn: one Write
        app.teardown.remove([old.key], then=[fx.PacketOut(1, b"synack")])
        await app._execute([fx.InstallFlows([b], [fx.PacketOut(1, b"b")])])
        await settle()
        assert writes[1:] == [[p4r.Update.DELETE, p4r.Update.INSERT]]
        assert sent == [b"a"]            # both wait for that Write
        gate.set()
        await settle()
        assert sorted(sent) == [b"a", b"b", b"synack"]
        assert app.counters["teardown_rpcs"] == 0 and app.counters["flows_removed"] == 1
        # a removal with no install due: alone, one teardown RPC
        app.teardown.remove([a.key])
        await settle()
        assert writes[2:] == [[p4r.Update.DELETE]]
        assert app.counters["teardown_rpcs"] == 1 and app.counters["flows_removed"] == 2
        loop.cancel()
        td.cancel()
        await settle()

    asyncio.run(run())
    assert app.counters["install_writes"] == 2


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


_FID_PARAMS: dict = {}


def _fid_params() -> dict:
    """{action id: param id of its flow id} of the real P4Info's flow table."""
    if not _FID_PARAMS:
        _FID_PARAMS.update(FlowEncoder(P4Schema(P4INFO))._flow_id_param)
    return _FID_PARAMS


@st.composite
def _table_entries(draw):
    """Flow-table entries as an expiry notification carries them (the splice entry's key and
    action, counts behind), and others: other match kinds, repeated field ids, long values,
    action-less entries, unknown actions and params."""
    te = p4r.TableEntry(table_id=draw(st.integers(0, 2**32 - 1)))
    value = st.binary(min_size=0, max_size=10)
    for fid in draw(st.lists(st.integers(1, 6), max_size=6)):
        m = te.match.add(field_id=fid)
        kind = draw(st.sampled_from(["exact"] * 6 + ["ternary", "lpm", "empty"]))
        if kind == "exact":
            m.exact.value = draw(value)
        elif kind == "ternary":
            m.ternary.value, m.ternary.mask = draw(value), draw(value)
        elif kind == "lpm":
            m.lpm.value, m.lpm.prefix_len = draw(value), draw(st.integers(0, 32))
    kind = draw(st.sampled_from(["action"] * 5 + ["none", "member"]))
    if kind == "action":
        a = te.action.action
        fid_params = _fid_params()
        a.action_id = draw(st.sampled_from(sorted(fid_params) * 4 + [1, 0]))
        pids = st.sampled_from(sorted(set(fid_params.values())) * 3 + list(range(1, 14)))
        for pid in draw(st.lists(pids, max_size=13)):
            a.params.add(param_id=pid, value=draw(value))
    elif kind == "member":
        te.action.action_profile_member_id = draw(st.integers(0, 100))
    if draw(st.booleans()):
        te.idle_timeout_ns = draw(st.integers(0, 2**62))
    if draw(st.booleans()):
        te.counter_data.packet_count = draw(st.integers(0, 2**40))
        te.counter_data.byte_count = draw(st.integers(0, 2**50))
    return te


@settings(max_examples=600, deadline=None, derandomize=True)
@given(_table_entries())
def test_key_and_flow_id_from_bytes_is_what_the_object_says(schema, te):
    """FlowEncoder.key_flow_id (C from the entry's bytes where _p4wire is built) returns what
    decode_match_key and flow_id read from the protobuf object, or declines (None) and the
    object is read."""
    from p4cs.controller import p4rt

    fe = FlowEncoder(schema)
    want = (decode_match_key(te), fe.flow_id(te))
    assert fe.key_flow_id(te) == want
    if p4rt._p4wire is not None:
        got = p4rt._p4wire.key_flow_id(te.SerializeToString(), fe._flow_id_param)
        assert got is None or got == want


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.tuples(*[st.integers(0, 2**32 - 1)] * 2, st.just(6), *[st.integers(0, 65535)] * 2),
       st.integers(0, 511), st.binary(min_size=6, max_size=6),
       st.binary(min_size=6, max_size=6), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.integers(0, 65535), st.integers(0, 65535), st.integers(-2**33, 2**33),
       st.integers(-2**33, 2**33), st.sampled_from([0.0, 1e-9, 0.5, 3.0, 300.0, 86400.5]),
       st.integers(0, 2**24 - 1), st.sampled_from([1, 2, 3]))
def test_splice_update_of_a_flowspec_is_insert_raw(schema, key, port, dmac, smac, sip, dip,
                                                   sport, dport, sd, ad, idle, fid, utype):
    """FlowEncoder.splice_update (one C call from the FlowSpec where _p4wire is built) gives
    the bytes insert_raw_py gives for the same flow."""
    from p4cs.csproc.effects import FlowSpec

    fe = FlowEncoder(schema)
    f = FlowSpec(FlowKey(*key), port, dmac, smac, sip, dip, sport, dport, sd, ad, idle, 7,
                 "c2s")
    want = fe.insert_raw_py(f.key, Splice(port, int.from_bytes(dmac, "big"),
                                          int.from_bytes(smac, "big"), sip, dip, sport, dport,
                                          sd, ad, fid), idle, utype)
    assert fe.splice_update(f, fid, utype) == want


def _note_as_objects(fe, note):
    return [(decode_match_key(te), fe.flow_id(te),
             (te.counter_data.packet_count, te.counter_data.byte_count)
             if te.HasField("counter_data") else None) for te in note.table_entry]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_table_entries(), max_size=5), st.integers(0, 2**62))
def test_expired_entries_from_bytes_are_what_the_objects_say(schema, tes, ts):
    """FlowEncoder.expired_entries (one C call on the notification's bytes where _p4wire is
    built) returns, entry by entry, the key, flow id and counter data the protobuf objects
    hold; the C version declines (None) a notification with an entry it does not take, and
    the objects are read."""
    from p4cs.controller import p4rt

    fe = FlowEncoder(schema)
    note = p4r.IdleTimeoutNotification(table_entry=tes, timestamp=ts)
    want = _note_as_objects(fe, note)
    assert fe.expired_entries(note) == want
    if p4rt._p4wire is not None:
        got = p4rt._p4wire.expired_entries(note.SerializeToString(), fe._flow_id_param)
        assert got is None or got == want
        assert p4rt._p4wire.expired_entries(note.SerializeToString()[:-1],
                                            fe._flow_id_param) in (None, [])


def test_expired_entries_of_real_entries_in_c(schema):
    from p4cs.controller import p4rt

    if p4rt._p4wire is None:
        pytest.skip("the _p4wire extension is not built (setup.py build_ext)")
    fe = FlowEncoder(schema)
    key = FlowKey(0x0A000101, 0x0A000064, 6, 40001, 80)
    note = p4r.IdleTimeoutNotification(timestamp=123)
    for fid in (0, 1, 70000, 2**24 - 1):
        te = fe.insert(key, Splice(2, 0x020000000001, 0x020000000002, 0x0A000101, 0x0A000002,
                                   40001, 8080, 1, 2, fid), 3.0).entity.table_entry
        if fid:
            te.counter_data.packet_count, te.counter_data.byte_count = fid, 3 * fid
        note.table_entry.append(te)
    assert p4rt._p4wire.expired_entries(note.SerializeToString(), fe._flow_id_param) == [
        (tuple(key), 0, None), (tuple(key), 1, (1, 3)), (tuple(key), 70000, (70000, 210000)),
        (tuple(key), 2**24 - 1, (2**24 - 1, 3 * (2**24 - 1)))]


def test_key_and_flow_id_of_real_entries_in_c(schema):
    from p4cs.controller import p4rt

    if p4rt._p4wire is None:
        pytest.skip("the _p4wire extension is not built (setup.py build_ext)")
    fe = FlowEncoder(schema)
    key = FlowKey(0x0A000101, 0x0A000064, 6, 40001, 80)
    for fid in (0, 1, 70000, 2**24 - 1):
        te = fe.insert(key, Splice(2, 0x020000000001, 0x020000000002, 0x0A000101, 0x0A000002,
                                   40001, 8080, 1, 2, fid), 3.0).entity.table_entry
        te.counter_data.packet_count = 5
        assert p4rt._p4wire.key_flow_id(te.SerializeToString(), fe._flow_id_param) == \
            (tuple(key), fid)


def test_traffic_sample_reads_no_ending_entry_and_never_goes_back(monkeypatch):
    """The 5-second traffic sample reads the counters of the flows that are not left to
    expire after a FIN/RST (their final counts come with the expiry): such a flow counts with
    what an earlier sample read of it, a flow id reused by a new flow does not inherit that,
    and no total goes back."""
    import asyncio

    from p4cs.controller.config import parse_config
    from p4cs.controller.traffic import FlowMeta

    app = ControllerApp(parse_config((REPO / "examples" / "lcs.yaml").read_text(), "x.yaml"),
                        P4INFO)
    counts = {1: (10, 1000), 2: (20, 2000)}
    asked: list[list[int]] = []

    async def live(fids):
        asked.append(list(fids))
        return {f: counts[f] for f in fids if f in counts}

    async def no_stats(sw):
        return None

    monkeypatch.setattr(app, "_live_counters", live)
    monkeypatch.setattr(app.switch_stats, "sample", no_stats)

    def add(fid, key):
        app.flow_of[key] = fid
        app.book.add(fid, FlowMeta("www", "s1", "s2c", "10.0.0.1:4000", fid))

    def out_bytes(sample):
        return sample["servers"]["s1"]["out_bytes"]

    add(1, ("k1",))
    add(2, ("k2",))
    first = asyncio.run(app.sample_traffic())
    assert asked[-1] == [1, 2] and out_bytes(first) == 3000
    app.teardown.ending.update({1, 3})          # 1 was read before; 3 never was
    counts[1] = (11, 1100)
    add(3, ("k3",))
    second = asyncio.run(app.sample_traffic())
    assert asked[-1] == [2]
    assert out_bytes(second) == 3000            # 1 with the counts read before, 3 not yet
    # flow 1 ends (its expiry carried the final counts) and id 1 goes to a new flow that is
    # also ending before any sample read it: it does not inherit the old flow's counts
    app.book.done(1, 11, 1100)
    del app.flow_of[("k1",)]
    add(1, ("k4",))
    third = asyncio.run(app.sample_traffic())
    assert asked[-1] == [2] and out_bytes(third) == 1100 + 2000


@pytest.mark.parametrize("target", ["dpdk", "bmv2"])
def test_channel_headers_match_the_generic_controller_header(target):
    """The packet channel's unrolled packet_in decode and packet_out encode give what the
    P4Info's ControllerHeader gives, for every value of the fields."""
    import random

    from p4cs.controller.packetchan import Headers

    h = Headers(P4Schema(paths.p4info(target)))
    rnd = random.Random(5)
    for _ in range(500):
        vals = {mid: rnd.getrandbits(bw) for mid, _n, bw in h.pin.fields}
        frame = h.pin.encode(vals) + rnd.randbytes(rnd.randrange(0, 80))
        got = h.decode(frame)
        assert got == (frame[h.pin.nbytes:], vals[h.port_id], vals[h.reason_id])
        port = rnd.getrandbits(h.pout.by_id[h.egress_id][1])
        payload = rnd.randbytes(rnd.randrange(0, 80))
        assert h.encode(port, payload) == h.pout.encode({h.egress_id: port}) + payload
    assert h.decode(b"\x00" * (h.pin.nbytes - 1)) is None


def test_write_head_is_finsys_and_follows_the_election_id():
    """write_raw's WriteRequest head (device id, role, election id) is the one finsy's client
    completes, kept while those stay the same and made again when the election id or the role
    changes."""
    from finsy.p4arbitrator import Arbitrator

    from p4cs.controller.p4rt import _write_head

    def finsy_head(device_id, arb):
        head = p4r.WriteRequest(device_id=device_id)
        arb.complete_request(head)
        return head.SerializeToString()

    for role, config in (("", None), ("p4cs", p4r.WriteResponse())):
        arb = Arbitrator(10, role, config)
        assert _write_head(1, arb.complete_request) == finsy_head(1, arb)
        assert _write_head(1, arb.complete_request) == finsy_head(1, arb)
        arb.election_id = 11
        assert _write_head(1, arb.complete_request) == finsy_head(1, arb)
        assert p4r.WriteRequest.FromString(_write_head(2, arb.complete_request)).device_id == 2
        assert p4r.WriteRequest.FromString(_write_head(2, arb.complete_request)).election_id.low == 11
    assert _write_head(3, None) == p4r.WriteRequest(device_id=3).SerializeToString()
