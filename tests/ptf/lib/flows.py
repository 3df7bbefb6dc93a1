"""Spliced-connection helpers shared by several test modules."""

from .base import P4csTest
from .packets import M32, tcp_frame
from .topo import (
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, IP_TCP, SERVER_IP, SERVER_MAC, SERVER_PORT, SERVER_PORT_NO, SNAT_IP,
    SW_MAC, VIP, VIP_PORT,
)


def flow_key(src, dst, sport, dport):
    return {"src_addr": src, "dst_addr": dst, "protocol": IP_TCP, "src_port": sport, "dst_port": dport}


def _words(*fields):
    """16-bit words of dotted IPv4 addresses and 16-bit ports."""
    out = []
    for f in fields:
        if isinstance(f, str):
            a = [int(x) for x in f.split(".")]
            out += [a[0] << 8 | a[1], a[2] << 8 | a[3]]
        else:
            out.append(f)
    return out


def _ones_sum(words):
    s = 0
    for w in words:
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def splice_params(key, params):
    """`params` of a splice entry for `key` (a flow_key) plus the checksum deltas the controller
    computes (RFC 1624): ones'-complement sums of new minus old addresses (ip_csum_delta) and
    addresses and ports (tcp_csum_delta), word by word."""
    old_addr = _words(key["src_addr"], key["dst_addr"])
    new_addr = _words(params["sip"], params["dip"])
    ip = _ones_sum([w ^ 0xFFFF for w in old_addr] + new_addr)
    tcp = _ones_sum([ip, key["src_port"] ^ 0xFFFF, key["dst_port"] ^ 0xFFFF, params["sport"], params["dport"]])
    return {**params, "ip_csum_delta": ip, "tcp_csum_delta": tcp}


class SpliceBase(P4csTest):
    """Installs both legs of one spliced connection:
    client:cport -> VIP:80   becomes  SNAT:sport -> server:8080  (port 2)
    server:8080 -> SNAT:sport becomes  VIP:80 -> client:cport    (port 1)"""

    def splice_pair(self, cport, snat_port, c2s_seq, c2s_ack, flow_id=100, **kw):
        key = flow_key(CLIENT_IP, VIP, cport, VIP_PORT)
        c2s = self.insert("flow_table", key, "splice", splice_params(key, {
            "port": SERVER_PORT, "dmac": SERVER_MAC, "smac": SW_MAC[2], "sip": SNAT_IP, "dip": SERVER_IP,
            "sport": snat_port, "dport": SERVER_PORT_NO, "seq_delta": c2s_seq & M32, "ack_delta": c2s_ack & M32,
            "flow_id": flow_id}), **kw)
        # the reverse direction undoes the deltas: its seq is the other side's ack, and back
        key = flow_key(SERVER_IP, SNAT_IP, SERVER_PORT_NO, snat_port)
        s2c = self.insert("flow_table", key, "splice", splice_params(key, {
            "port": CLIENT_PORT, "dmac": CLIENT_MAC, "smac": SW_MAC[1], "sip": VIP, "dip": CLIENT_IP,
            "sport": VIP_PORT, "dport": cport, "seq_delta": (-c2s_ack) & M32, "ack_delta": (-c2s_seq) & M32,
            "flow_id": flow_id + 1}), **kw)
        return c2s, s2c

    def c2s(self, cport, snat_port, seq, ack, d_seq, d_ack, **kw):
        sent = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, cport, VIP_PORT, seq=seq, ack=ack, **kw)
        want = tcp_frame(SW_MAC[2], SERVER_MAC, SNAT_IP, SERVER_IP, snat_port, SERVER_PORT_NO,
                         seq=(seq + d_seq) & M32, ack=(ack + d_ack) & M32, **kw)
        self.send(CLIENT_PORT, sent)
        return self.expect_frame(SERVER_PORT, want)

    def s2c(self, cport, snat_port, seq, ack, d_seq, d_ack, **kw):
        sent = tcp_frame(SERVER_MAC, SW_MAC[2], SERVER_IP, SNAT_IP, SERVER_PORT_NO, snat_port, seq=seq, ack=ack, **kw)
        want = tcp_frame(SW_MAC[1], CLIENT_MAC, VIP, CLIENT_IP, VIP_PORT, cport,
                         seq=(seq - d_ack) & M32, ack=(ack - d_seq) & M32, **kw)
        self.send(SERVER_PORT, sent)
        return self.expect_frame(CLIENT_PORT, want)
