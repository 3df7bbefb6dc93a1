"""The frame parse and build in C (``p4cs.csproc._packet``) against the Python versions, the
reference (``packet.parse_py`` / ``build_py``): the same Segment fields or the same BadFrame
kind for valid, mutated and random frames; byte-identical frames for any arguments, and the
same error where the Python version raises one."""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4cs.csproc import packet as P

pytestmark = pytest.mark.skipif(P._packet is None, reason="p4cs.csproc._packet is not built "
                                "(setup.py build_ext; scripts/setup.sh builds it)")

FIELDS = ("dmac", "smac", "sip", "dip", "sport", "dport", "seq", "ack", "flags", "window",
          "mss", "wscale", "payload", "ttl")


def outcome(fn, frame):
    try:
        s = fn(frame)
    except P.BadFrame as e:
        return ("bad", e.args)
    except Exception as e:  # noqa: BLE001 - the same error type either way
        return ("error", type(e))
    return tuple(getattr(s, f) for f in FIELDS)


def same_parse(frame):
    c, py = outcome(P._packet.parse, frame), outcome(P.parse_py, frame)
    assert c == py, (frame.hex() if isinstance(frame, bytes) else frame, c, py)
    return c


def test_the_c_versions_are_in_use():
    assert P.parse is P._packet.parse and P.build is P._packet.build


OPTS = st.one_of(st.just(b""), st.builds(P.mss_option, st.integers(0, 65535)),
                 st.builds(lambda m, w: P.mss_option(m) + P.wscale_option(w),
                           st.integers(0, 65535), st.integers(0, 255)),
                 st.binary(max_size=40))
FLAGS = st.integers(0, 255)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=1600), seq=st.integers(-2**40, 2**40),
       ack=st.integers(0, 2**32 - 1), sport=st.integers(0, 65535), flags=FLAGS,
       opts=OPTS, ttl=st.integers(0, 255), window=st.integers(0, 65535),
       sip=st.integers(0, 2**32 - 1))
def test_build_and_parse_match_python(data, seq, ack, sport, flags, opts, ttl, window, sip):
    args = (b"\x02" * 6, b"\xaa\x01\x02\x03\x04\x05", sip, 0x0A000064, sport, 80, seq, ack,
            flags, window, data, opts, ttl)
    f = P._packet.build(*args)
    assert f == P.build_py(*args)
    got = same_parse(f)
    assert got[FIELDS.index("payload")] == data


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), opts=OPTS, flags=FLAGS, cuts=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    trunc=st.integers(0, 400))
def test_mutated_frames_parse_alike(data, opts, flags, cuts, trunc):
    f = bytearray(P.build_py(b"\x02" * 6, b"\xaa" * 6, 0xC0A8010A, 0x0A000064, 40000, 80, 7,
                             9, flags, 512, data, opts))
    for pos, val in cuts:
        if pos < len(f):
            f[pos] = val
    same_parse(bytes(f))
    same_parse(bytes(f[:trunc]))


def test_random_bytes_and_other_types_parse_alike():
    rnd = random.Random(7)
    for _ in range(3000):
        same_parse(rnd.randbytes(rnd.randrange(0, 120)))
    frame = P.build_py(b"\x02" * 6, b"\xaa" * 6, 1, 2, 3, 4, 5, 6, P.SYN, 7, b"x",
                       P.mss_option(1460) + P.wscale_option(20))
    assert same_parse(frame)[FIELDS.index("wscale")] == 14     # above 14 taken as 14
    for other in (bytearray(frame), memoryview(frame), "text", None, 5):
        same_parse(other)


@pytest.mark.parametrize("bad", [
    dict(smac=b"\x02" * 5), dict(dmac="02:00:00:00:00:01"), dict(sip=2**32), dict(sip=-1),
    dict(sport=65536), dict(dport=-1), dict(flags=256), dict(window=70000), dict(ttl=300),
    dict(seq=1.5), dict(payload="text"), dict(options=b"\x01" * 44),
    dict(payload=b"x" * 65500), dict(sip=True),
])
def test_build_arguments_it_does_not_take_behave_as_in_python(bad):
    kw = dict(smac=b"\x02" * 6, dmac=b"\xaa" * 6, sip=1, dip=2, sport=3, dport=4, seq=5, ack=6,
              flags=P.ACK, window=100, payload=b"abc", options=b"", ttl=64)
    kw.update(bad)

    def run(fn):
        try:
            return fn(**kw)
        except (struct.error, TypeError, ValueError, OverflowError) as e:
            return type(e)

    assert run(P._packet.build) == run(P.build_py)


def test_every_length_and_header_size_parses_alike():
    """Each value of the fields the checks read: IP total length, version and header length,
    TCP data offset, ethertype, protocol, fragment bits (the checksums fixed up or not)."""
    base = P.build_py(b"\x02" * 6, b"\xaa" * 6, 0xC0A8010A, 0x0A000064, 40000, 80, 7, 9,
                      P.SYN | P.ACK, 512, b"0123456789", P.mss_option(1400))
    n = len(base)
    for tot in range(0, n + 4):
        f = bytearray(base)
        f[16:18] = tot.to_bytes(2, "big")
        same_parse(bytes(f))
    for b14 in range(256):
        f = bytearray(base)
        f[14] = b14
        same_parse(bytes(f))
    for off in range(16):
        f = bytearray(base)
        f[46] = (off << 4) | (f[46] & 15)
        same_parse(bytes(f))
    for pos, vals in ((12, (0x08, 0x86, 0)), (23, range(256)), (20, range(256))):
        for v in vals:
            f = bytearray(base)
            f[pos] = v
            same_parse(bytes(f))


def _seg(sport, seq, ack, flags, data=b""):
    return P.build_py(b"\x02" * 6, b"\xaa" * 6, 0xC0A8010A, 0x0A000064, sport, 80, seq, ack,
                      flags, 512, data)


def same_superseded(pkts, reason=1):
    c, py = P._packet.superseded_acks(pkts, reason), P.superseded_acks_py(pkts, reason)
    assert c == py, (c, py)
    return c


def test_superseded_acks_are_the_pure_acks_a_later_request_repeats():
    A, PA, V = P.ACK, P.ACK | P.PSH, 1
    pkts = [(_seg(1, 10, 20, A), 1, V),            # superseded by 3
            (_seg(2, 10, 20, A), 1, V),            # 2's data has another ack
            (_seg(3, 10, 20, A), 1, 2),            # another punt reason
            (_seg(1, 10, 20, PA, b"GET"), 1, V),
            (_seg(2, 10, 21, PA, b"GET"), 1, V),
            (_seg(4, 10, 20, PA, b"GET"), 1, V),   # data before its ACK: that ACK stays
            (_seg(4, 10, 20, A), 1, V),
            (_seg(3, 10, 20, PA, b"x"), 1, V),
            (_seg(5, 10, 20, A), 1, V),            # SYN / RST with data supersede nothing
            (_seg(5, 10, 20, A | P.RST, b"x"), 1, V),
            (_seg(5, 10, 20, A | P.SYN, b"x"), 1, V),
            (_seg(6, 10, 20, A | P.PSH), 1, V),    # not a pure ACK (PSH)
            (_seg(6, 10, 20, PA | P.FIN, b"x"), 1, V),
            (_seg(7, 10, 20, A), 1, V),            # superseded by a request with FIN
            (_seg(7, 10, 20, A), 1, V),            # a duplicate as well
            (_seg(7, 10, 20, PA | P.FIN, b"x"), 1, V)]
    assert same_superseded(pkts) == [(0, (0xC0A8010A, 1, 0x0A000064, 80)),
                                     (13, (0xC0A8010A, 7, 0x0A000064, 80)),
                                     (14, (0xC0A8010A, 7, 0x0A000064, 80))]
    # a request whose checksum is bad supersedes nothing
    bad = bytearray(_seg(1, 10, 20, PA, b"GET"))
    bad[-1] ^= 1
    assert same_superseded([pkts[0], (bytes(bad), 1, V)]) == []
    assert same_superseded([]) == [] and same_superseded(pkts[:1]) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(0, 2),
                          st.sampled_from([P.ACK, P.ACK | P.PSH, P.ACK | P.FIN, P.RST, P.SYN,
                                           P.ACK | P.RST, 0]),
                          st.sampled_from([b"", b"x", b"GET /"]), st.integers(0, 2),
                          st.integers(-1, 80)), max_size=24))
def test_superseded_acks_match_python(items):
    pkts = []
    for sport, seq, ack, flags, data, reason, cut in items:
        f = _seg(sport, seq, ack, flags, data)
        if cut >= 0:                        # some frames mangled or cut short
            f = f[:cut] if cut < 54 else f[:cut] + b"\x00" + f[cut + 1:]
        pkts.append((f, 7, reason))
    same_superseded(pkts)


def test_superseded_acks_of_other_shapes_behave_as_in_python():
    f = _seg(1, 10, 20, P.ACK)
    g = _seg(1, 10, 20, P.ACK | P.PSH, b"x")
    for pkts in ([(f, 1, 1), (bytearray(g), 1, 1)], ((f, 1, 1), (g, 1, 1)),
                 [(f, 1, 1), (g, 1, 1, 0)], [(f, 1, 1), (g, 1, 2**70)]):
        try:
            want = P.superseded_acks_py(pkts, 1)
        except Exception as e:  # noqa: BLE001 - the same error type either way
            want = type(e)
        try:
            got = P._packet.superseded_acks(pkts, 1)
        except Exception as e:  # noqa: BLE001
            got = type(e)
        assert got == want
