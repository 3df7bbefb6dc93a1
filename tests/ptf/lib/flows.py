"""Spliced-connection helpers shared by several test modules."""

from .base import P4csTest
from .packets import M32, tcp_frame
from .topo import (
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, IP_TCP, SERVER_IP, SERVER_MAC, SERVER_PORT, SERVER_PORT_NO, SNAT_IP,
    SW_MAC, VIP, VIP_PORT,
)


def flow_key(src, dst, sport, dport):
    return {"src_addr": src, "dst_addr": dst, "protocol": IP_TCP, "src_port": sport, "dst_port": dport}


class SpliceBase(P4csTest):
    """Installs both legs of one spliced connection:
    client:cport -> VIP:80   becomes  SNAT:sport -> server:8080  (port 2)
    server:8080 -> SNAT:sport becomes  VIP:80 -> client:cport    (port 1)"""

    def splice_pair(self, cport, snat_port, c2s_seq, c2s_ack, flow_id=100, **kw):
        c2s = self.insert("flow_table", flow_key(CLIENT_IP, VIP, cport, VIP_PORT), "splice", {
            "port": SERVER_PORT, "dmac": SERVER_MAC, "smac": SW_MAC[2], "sip": SNAT_IP, "dip": SERVER_IP,
            "sport": snat_port, "dport": SERVER_PORT_NO, "seq_delta": c2s_seq & M32, "ack_delta": c2s_ack & M32,
            "flow_id": flow_id}, **kw)
        # the reverse direction undoes the deltas: its seq is the other side's ack, and back
        s2c = self.insert("flow_table", flow_key(SERVER_IP, SNAT_IP, SERVER_PORT_NO, snat_port), "splice", {
            "port": CLIENT_PORT, "dmac": CLIENT_MAC, "smac": SW_MAC[1], "sip": VIP, "dip": CLIENT_IP,
            "sport": VIP_PORT, "dport": cport, "seq_delta": (-c2s_ack) & M32, "ack_delta": (-c2s_seq) & M32,
            "flow_id": flow_id + 1}, **kw)
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
