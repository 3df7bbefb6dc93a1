"""The data plane's splice checksums: per-flow deltas from the controller, one incremental
update per checksum plus the seq/ack terms (RFC 1624), modelled here instruction by instruction
for both targets, must give the bytes of a full recomputation (``apply_splice``) for any flow,
including the ones'-complement corners (zero checksums, carries)."""

import random

import pytest

from p4cs.csproc.effects import FlowKey, FlowSpec
from p4cs.csproc.packet import ACK, PSH, apply_splice, build, splice_csum_deltas

M32 = 0xFFFFFFFF


def _swx(dst: int, src: int, sub: bool) -> int:
    """SWX ckadd / cksub of a 16- or 32-bit source into a checksum-form state (DPDK 22.11)."""
    r = ~dst & 0xFFFF
    if sub:
        r += 0xFFFF00000 - ((src >> 32) + (src & M32))
    else:
        r += (src >> 32) + (src & M32)
    for _ in range(3):
        r = (r & 0xFFFF) + (r >> 16)
    r = ~r & 0xFFFF
    return r or 0xFFFF


def _fields(frame: bytes) -> tuple[int, int, int, int]:
    return (int.from_bytes(frame[24:26], "big"), int.from_bytes(frame[50:52], "big"),
            int.from_bytes(frame[38:42], "big"), int.from_bytes(frame[42:46], "big"))


def _rewrite(frame: bytes, spec: FlowSpec, ip_ck: int, tcp_ck: int) -> bytes:
    seq = (int.from_bytes(frame[38:42], "big") + spec.seq_delta) & M32
    ack = (int.from_bytes(frame[42:46], "big") + spec.ack_delta) & M32
    b = bytearray(frame)
    b[0:12] = spec.dmac + spec.smac
    b[24:26] = ip_ck.to_bytes(2, "big")
    b[26:34] = spec.sip.to_bytes(4, "big") + spec.dip.to_bytes(4, "big")
    b[34:46] = (spec.sport.to_bytes(2, "big") + spec.dport.to_bytes(2, "big")
                + seq.to_bytes(4, "big") + ack.to_bytes(4, "big"))
    b[50:52] = tcp_ck.to_bytes(2, "big")
    return bytes(b)


def dpdk_splice(frame: bytes, spec: FlowSpec, ip_d: int, tcp_d: int) -> bytes:
    """The SWX instructions p4c-dpdk makes of the splice action."""
    ip_ck, tcp_ck, seq, ack = _fields(frame)
    st = _swx(_swx(0, ip_ck, True), ip_d, False)
    t = _swx(_swx(_swx(0, tcp_ck, True), seq, True), ack, True)
    t = _swx(_swx(_swx(t, (seq + spec.seq_delta) & M32, False), (ack + spec.ack_delta) & M32, False),
             tcp_d, False)
    return _rewrite(frame, spec, st, t)


def _halves(x: int) -> int:
    return (x >> 16) + (x & 0xFFFF)


def _fold2(s: int) -> int:
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


def bmv2_splice(frame: bytes, spec: FlowSpec, ip_d: int, tcp_d: int) -> bytes:
    """arch.p4's v1model arithmetic."""
    ip_ck, tcp_ck, seq, ack = _fields(frame)
    ip = ~(_fold2((ip_ck ^ 0xFFFF) + ip_d + 1) - 1) & 0xFFFF
    s = (tcp_ck ^ 0xFFFF) + _halves(seq ^ M32) + _halves(ack ^ M32)
    s += _halves((seq + spec.seq_delta) & M32) + _halves((ack + spec.ack_delta) & M32) + tcp_d + 1
    tcp = ~(_fold2(s) - 1) & 0xFFFF
    return _rewrite(frame, spec, ip, tcp)


def _spec(key: FlowKey, rnd: random.Random, **kw) -> FlowSpec:
    v = dict(port=2, dmac=rnd.randbytes(6), smac=rnd.randbytes(6), sip=rnd.getrandbits(32),
             dip=rnd.getrandbits(32), sport=rnd.getrandbits(16), dport=rnd.getrandbits(16),
             seq_delta=rnd.getrandbits(32), ack_delta=rnd.getrandbits(32))
    v.update(kw)
    return FlowSpec(key=key, idle_timeout_s=0, conn_id=1, direction="c2s", **v)


def _check(frame: bytes, spec: FlowSpec) -> bytes:
    deltas = splice_csum_deltas(spec.key, spec.sip, spec.dip, spec.sport, spec.dport)
    want = apply_splice(frame, spec)
    assert dpdk_splice(frame, spec, *deltas) == want
    assert bmv2_splice(frame, spec, *deltas) == want
    return want


def _frame(key: FlowKey, seq: int, ack: int, payload: bytes, rnd: random.Random) -> bytes:
    return build(rnd.randbytes(6), rnd.randbytes(6), key.src_ip, key.dst_ip, key.sport, key.dport,
                 seq, ack, ACK | PSH, rnd.getrandbits(16), payload, ttl=rnd.randrange(1, 256))


def test_random_flows_match_a_full_recomputation():
    rnd = random.Random(1624)
    for _ in range(3000):
        key = _random_key(rnd)
        frame = _frame(key, rnd.getrandbits(32), rnd.getrandbits(32), rnd.randbytes(rnd.randrange(0, 40)), rnd)
        _check(frame, _spec(key, rnd))


EXTREMES = [0, 1, 0xFFFF, 0x10000, 0xFFFF0000, 0xFFFEFFFF, M32 - 1, M32]


@pytest.mark.parametrize("seed", range(4))
def test_carries_at_the_extremes(seed):
    """Addresses, ports, seq/ack and deltas at the word boundaries (every carry and wrap)."""
    rnd = random.Random(seed)
    for _ in range(400):
        pick = lambda bits: rnd.choice(EXTREMES + [rnd.getrandbits(32)]) & ((1 << bits) - 1)  # noqa: E731
        key = FlowKey(pick(32), pick(32), 6, pick(16), pick(16))
        spec = _spec(key, rnd, sip=pick(32), dip=pick(32), sport=pick(16), dport=pick(16),
                     seq_delta=pick(32), ack_delta=pick(32))
        _check(_frame(key, pick(32), pick(32), rnd.randbytes(rnd.randrange(0, 3)), rnd), spec)


def _random_key(rnd: random.Random) -> FlowKey:
    return FlowKey(rnd.getrandbits(32), rnd.getrandbits(32), 6, rnd.getrandbits(16), rnd.getrandbits(16))


def _rebuilt(frame: bytes, key: FlowKey, payload: bytes) -> bytes:
    """``frame`` (from ``_frame``) with another payload, checksums computed afresh."""
    seq, ack = (int.from_bytes(frame[i:i + 4], "big") for i in (38, 42))
    return build(frame[6:12], frame[0:6], key.src_ip, key.dst_ip, key.sport, key.dport, seq, ack,
                 ACK | PSH, int.from_bytes(frame[48:50], "big"), payload, ttl=frame[22])


def test_zero_checksums():
    """An outgoing checksum of zero is written 0xFFFF (as the data plane writes it); an incoming
    one reads the same as 0x0000 or 0xFFFF."""
    rnd = random.Random(7)
    for _ in range(200):
        key = _random_key(rnd)
        spec = _spec(key, rnd)
        frame = _frame(key, 5, 6, b"zero\0\0", rnd)
        word = apply_splice(frame, spec)[50:52]       # the last word that cancels the rest
        assert _check(_rebuilt(frame, key, b"zero" + word), spec)[50:52] == b"\xff\xff"
        frame = _rebuilt(frame, key, b"zero" + frame[50:52])   # zero on input instead
        assert frame[50:52] == b"\x00\x00"
        want = _check(frame, spec)
        assert _check(frame[:50] + b"\xff\xff" + frame[52:], spec) == want
