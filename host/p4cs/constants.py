"""The one place where the numbers shared by the P4 program and the host side are defined.

`p4cs generate` renders them into ``params.p4`` (next to the data-plane parameters, see
:mod:`p4cs.params`) as ``const bit<N>`` declarations; the DPDK target's P4Runtime server and the
CS processor import them from here. Plain integers, no dependencies: the CS processor imports
this module.
"""

from __future__ import annotations

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
ARP_OPER_REQUEST = 1
ARP_OPER_REPLY = 2

TCP_FLAG_FIN = 0x01
TCP_FLAG_SYN = 0x02
TCP_FLAG_RST = 0x04
TCP_FLAG_ACK = 0x10

# Packet-in reason codes (packet_in.reason).
REASON_VIP_MISS = 1       # flow-table miss on client -> virtual service
REASON_BACKEND_MISS = 2   # flow-table miss on real server -> client traffic
REASON_LOCAL = 3          # addressed to a switch-owned IPv4 address
REASON_FLOW_END = 4       # copy of a FIN or RST of a spliced flow
REASON_IP_EXCEPTION = 5   # IPv4 options or fragment towards a virtual service
REASON_ARP = 6            # an ARP reply (neighbour resolution by the controller)

#: What the P4 program declares: (name, width in bits, rendered in hex), in this order.
P4_CONSTANTS: tuple[tuple[str, int, bool], ...] = (
    ("ETHERTYPE_IPV4", 16, True),
    ("ETHERTYPE_ARP", 16, True),
    ("IP_PROTO_TCP", 8, False),
    ("IP_PROTO_UDP", 8, False),
    ("ARP_OPER_REQUEST", 16, False),
    ("ARP_OPER_REPLY", 16, False),
    ("TCP_FLAG_FIN", 8, True),
    ("TCP_FLAG_SYN", 8, True),
    ("TCP_FLAG_RST", 8, True),
    ("TCP_FLAG_ACK", 8, True),
    ("REASON_VIP_MISS", 8, False),
    ("REASON_BACKEND_MISS", 8, False),
    ("REASON_LOCAL", 8, False),
    ("REASON_FLOW_END", 8, False),
    ("REASON_IP_EXCEPTION", 8, False),
    ("REASON_ARP", 8, False),
)


def to_p4() -> list[str]:
    """The ``const bit<N> NAME = VALUE;`` lines of :data:`P4_CONSTANTS`."""
    out = []
    for name, bits, hex_ in P4_CONSTANTS:
        value = globals()[name]
        out.append(f"const bit<{bits}> {name} = {f'0x{value:0{bits // 4}x}' if hex_ else value};")
    return out
