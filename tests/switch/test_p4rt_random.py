"""The P4Runtime server and the data-plane daemon against a model of the table: random
batches of INSERT, MODIFY and DELETE over a small key space (so that keys collide, also
inside one batch), on the learner flow table and on a regular table, each update's outcome
and the table read back (whole, and entry by entry) compared with what P4Runtime's
CONTINUE_ON_ERROR semantics give: the updates applied in order, each failing on its own."""

from __future__ import annotations

import random

import grpc
import pytest
from finsy.proto import p4r, rpc_code

from .conftest import T_FLOW, T_L2, flow_entry, l2_entry, upd, write_error_details

pytestmark = [pytest.mark.dpdk]


def _key(te: p4r.TableEntry) -> tuple:
    return (te.table_id,) + tuple(bytes(m.exact.value) for m in te.match)


def _entry(rnd: random.Random, table: int) -> p4r.TableEntry:
    if table == T_FLOW:
        return flow_entry(0x0A000001 + rnd.randrange(3), 0x0A000100 + rnd.randrange(12),
                          port=rnd.randrange(1, 4), flow_id=rnd.randrange(1, 200))
    return l2_entry(0x020000000000 + rnd.randrange(10), rnd.randrange(1, 4))


def _apply(model: dict, kind: str, te: p4r.TableEntry) -> int:
    """The update on the model; its canonical code."""
    k = _key(te)
    if kind == "INSERT":
        if k in model:
            return rpc_code.ALREADY_EXISTS
        model[k] = te
    elif kind == "MODIFY":
        if k not in model:
            return rpc_code.NOT_FOUND
        model[k] = te
    else:
        if k not in model:
            return rpc_code.NOT_FOUND
        del model[k]
    return rpc_code.OK


def _read(c, table: int) -> dict:
    ents = c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=table))])
    return {_key(e.table_entry): e.table_entry for e in ents}


@pytest.mark.parametrize("seed", range(3))
def test_random_writes_match_the_model(switch, client_factory, seed):
    rnd = random.Random(seed)
    c = client_factory(switch.addr)
    c.arbitrate(1)
    model: dict = {}
    for _ in range(60):
        batch = []
        for _ in range(rnd.randint(1, 12)):
            table = rnd.choice((T_FLOW, T_FLOW, T_L2))
            kind = rnd.choice(("INSERT", "INSERT", "MODIFY", "DELETE"))
            batch.append((kind, _entry(rnd, table)))
        want = [_apply(model, kind, te) for kind, te in batch]
        try:
            c.write([upd(kind, te) for kind, te in batch])
            got = [rpc_code.OK] * len(batch)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNKNOWN, e
            got = [err.canonical_code for err in write_error_details(e)]
        assert got == want, [(k, _key(te), g, w) for (k, te), g, w in zip(batch, got, want)
                             if g != w]
        if rnd.random() < 0.3:
            for table in (T_FLOW, T_L2):
                have = _read(c, table)
                expect = {k: v for k, v in model.items() if k[0] == table}
                assert set(have) == set(expect)
                for k, te in have.items():
                    assert te.action == expect[k].action, k
        if model and rnd.random() < 0.3:      # one entry read by its key
            k = rnd.choice(list(model))
            probe = p4r.TableEntry()
            probe.CopyFrom(model[k])
            probe.ClearField("action")
            (r,) = c.read([p4r.Entity(table_entry=probe)])
            assert r.table_entry.action == model[k].action
    if model:                             # and everything goes
        c.write([upd("DELETE", te) for te in model.values()])
    assert _read(c, T_FLOW) == {} and _read(c, T_L2) == {}
