/* p4cs — packet headers and metadata, shared by the PNA (DPDK) and v1model (BMv2) programs.
 * Sizes, ports and constants (EtherTypes, TCP flags, packet-in reason codes) come from
 * params.p4, which `p4cs generate` renders from host/p4cs/params.py and host/p4cs/constants.py:
 * the host side reads the same numbers from there. */
#ifndef P4CS_HEADERS_P4
#define P4CS_HEADERS_P4

#include "params.p4"

typedef bit<48> mac_addr_t;
typedef bit<32> ipv4_addr_t;

/* Controller headers: the P4Runtime server turns these into PacketIn / PacketOut metadata. */
@controller_header("packet_in")
header packet_in_h {
    bit<16> ingress_port;
    bit<8>  reason;
    bit<8>  pad0;
}

@controller_header("packet_out")
header packet_out_h {
    bit<16> egress_port;
    bit<16> pad0;
}

header ethernet_h {
    mac_addr_t dst_addr;
    mac_addr_t src_addr;
    bit<16>    ether_type;
}

header arp_h {
    bit<16>     htype;
    bit<16>     ptype;
    bit<8>      hlen;
    bit<8>      plen;
    bit<16>     oper;
    mac_addr_t  sha;
    ipv4_addr_t spa;
    mac_addr_t  tha;
    ipv4_addr_t tpa;
}

/* Version and IHL, flags and fragment offset as whole fields: the parser tests them with one
 * mask each (a 4- or 13-bit field costs p4c-dpdk five SWX instructions per read). */
header ipv4_h {
    bit<8>      version_ihl;        /* version (high 4 bits), IHL in 32-bit words (low 4) */
    bit<8>      diffserv;
    bit<16>     total_len;
    bit<16>     identification;
    bit<16>     flags_frag_offset;  /* flags: reserved, DF, MF (high 3 bits); offset (low 13) */
    bit<8>      ttl;
    bit<8>      protocol;
    bit<16>     hdr_checksum;
    ipv4_addr_t src_addr;
    ipv4_addr_t dst_addr;
}

/* TCP options are not parsed: they ride as payload (offsets do not change, so neither do
 * they need rewriting; the CS processor negotiates no SACK and no timestamps on spliced
 * connections, so nothing in the options refers to sequence numbers). */
header tcp_h {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4>  data_offset;
    bit<4>  res;
    bit<8>  flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

header udp_h {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

struct headers_t {
    packet_out_h packet_out;
    packet_in_h  packet_in;
    ethernet_h   ethernet;
    arp_h        arp;
    ipv4_h       ipv4;
    tcp_h        tcp;
    udp_h        udp;
}

struct local_metadata_t {
    /* ingress port, target independent width; the copy to the controller keeps it */
    P4CS_COPY_PRESERVED bit<32> in_port;
    bit<32> out_port;       /* egress port decided by the pipeline */
    bit<8>  punt_reason;    /* != 0: send to the controller with this reason */
    bool    drop;
    bool    l4_valid;       /* TCP or UDP header parsed (no IPv4 options, not a fragment) */
    bool    ip_exception;   /* IPv4 options or fragment */
    bool    flow_hit;
    bool    flow_end;       /* FIN or RST on a spliced flow: copy to the controller */
}

#endif
