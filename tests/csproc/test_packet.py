"""Frame parsing/building, checksums and the splice model against scapy."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from p4cs.csproc import packet as P
from p4cs.csproc.effects import FlowKey, FlowSpec

from cs_harness import valid


def scapy_frame(data=b"", flags="PA", seq=1, ack=2, options=(), ttl=64):
    p = (Ether(src="aa:00:00:00:00:01", dst="02:00:00:00:00:01")
         / IP(src="192.168.1.10", dst="10.0.0.100", ttl=ttl)
         / TCP(sport=40000, dport=80, seq=seq, ack=ack, flags=flags, window=1234,
               options=list(options)))
    return bytes(p / Raw(data)) if data else bytes(p)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), seq=st.integers(0, 2**32 - 1),
       ack=st.integers(0, 2**32 - 1), sport=st.integers(1, 65535))
def test_build_matches_scapy(data, seq, ack, sport):
    f = P.build(b"\x02" * 6, b"\xaa" * 6, P.ip_int("10.0.0.100"), P.ip_int("192.168.1.10"),
                sport, 80, seq, ack, P.ACK | P.PSH, 5000, data, P.mss_option(1400))
    p = valid(f)
    assert p[TCP].seq == seq and p[TCP].ack == ack and p[TCP].sport == sport
    assert bytes(p[TCP].payload) == data
    assert dict(p[TCP].options) == {"MSS": 1400}
    s = P.parse(f)
    assert (s.seq, s.ack, s.payload, s.flags, s.mss) == (seq, ack, data, P.ACK | P.PSH, None)


def test_parse_reads_scapy_frames_and_options():
    f = scapy_frame(flags="S", options=[("NOP", None), ("MSS", 1300), ("SAckOK", b""),
                                        ("WScale", 7)])
    s = P.parse(f)
    assert s.flags == P.SYN and s.mss == 1300
    assert P.ip_str(s.sip) == "192.168.1.10" and s.dport == 80 and s.window == 1234
    # Ethernet padding after the IP datagram is ignored
    s = P.parse(scapy_frame(b"x") + b"\x00" * 10)
    assert s.payload == b"x"


@pytest.mark.parametrize("mutate,kind", [
    (lambda f: f[:40], "truncated"),
    (lambda f: f[:-1], "truncated"),
    (lambda f: f[:12] + b"\x86\xdd" + f[14:], "not_ipv4"),
    (lambda f: f[:23] + b"\x11" + f[24:], "not_tcp"),
    (lambda f: f[:20] + b"\x20\x00" + f[22:], "fragment"),
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "bad_tcp_checksum"),
    (lambda f: f[:22] + bytes([f[22] ^ 1]) + f[23:], "bad_ip_checksum"),
    (lambda f: f[:46] + b"\x30" + f[47:], "bad_tcp_header"),
])
def test_parse_rejects(mutate, kind):
    f = scapy_frame(b"hello")
    P.parse(f)
    with pytest.raises(P.BadFrame) as e:
        P.parse(mutate(f))
    assert e.value.args[0] == kind


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), seq=st.integers(0, 2**32 - 1),
       ack=st.integers(0, 2**32 - 1), sd=st.integers(0, 2**32 - 1),
       ad=st.integers(0, 2**32 - 1))
def test_apply_splice_matches_scapy(data, seq, ack, sd, ad):
    f = scapy_frame(data, seq=seq, ack=ack, ttl=33)
    spec = FlowSpec(FlowKey(1, 2, 6, 3, 4), 7, b"\xbb" * 6, b"\x02" * 6,
                    P.ip_int("10.0.1.254"), P.ip_int("10.0.1.1"), 20001, 8080, sd, ad,
                    300.0, 1, "c2s")
    out = P.apply_splice(f, spec)
    p = valid(out)
    assert p.src == "02:02:02:02:02:02" and p.dst == "bb:bb:bb:bb:bb:bb"
    assert (p[IP].src, p[IP].dst, p[IP].ttl) == ("10.0.1.254", "10.0.1.1", 33)
    assert (p[TCP].sport, p[TCP].dport) == (20001, 8080)
    assert p[TCP].seq == (seq + sd) % 2**32 and p[TCP].ack == (ack + ad) % 2**32
    assert bytes(p[TCP].payload) == data and p[TCP].window == 1234


def test_seq_compare_wraps():
    assert P.seq_lt(2**32 - 1, 0) and P.seq_lt(2**32 - 10, 5)
    assert not P.seq_lt(5, 2**32 - 10) and P.seq_le(7, 7) and not P.seq_lt(7, 7)


def test_checksum_zero_result_is_encoded_as_zero():
    # Choose the payload word so that the one's-complement sum is 0xFFFF: checksum 0.
    base = P.build(b"\x02" * 6, b"\xaa" * 6, 1, 2, 3, 4, 5, 6, P.ACK, 7, b"\x00\x00")
    ck = struct.unpack("!H", base[50:52])[0]
    fixed = P.build(b"\x02" * 6, b"\xaa" * 6, 1, 2, 3, 4, 5, 6, P.ACK, 7,
                    ck.to_bytes(2, "big"))
    assert fixed[50:52] == b"\x00\x00"
    P.parse(fixed)
    valid(fixed)
