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

/* TCP options are not parsed but in a SYN: they ride as payload (offsets do not change, so
 * neither do they need rewriting; the CS processor negotiates no SACK and no timestamps on spliced
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

/* A SYN's options, one 32-bit word per header (data offset 6..15): the parser extracts them
 * for SYNs only, which the data plane answers with a SYN cookie (syn_cookie.p4); forwarded
 * SYNs leave with them as they came. */
header tcp_opt_word_h {
    bit<8> b0;
    bit<8> b1;
    bit<8> b2;
    bit<8> b3;
}

/* The options of the SYN-ACK the data plane sends: MSS, then NOP + window scale. */
header tcp_mss_opt_h {
    bit<8>  kind;
    bit<8>  len;
    bit<16> mss;
}

header tcp_ws_opt_h {
    bit<8> nop;
    bit<8> kind;
    bit<8> len;
    bit<8> shift;
}

/* The working state of the SYN-cookie answer (syn_cookie.p4): valid while a SYN is answered,
 * never emitted. A header, not metadata: the DPDK SWX instruction set addresses metadata with
 * 8-bit byte offsets, so the whole metadata struct (p4c-dpdk's temporaries included) must fit
 * in 256 bytes. */
header syn_cookie_state_h {
    bit<32> v0;         /* HalfSipHash state */
    bit<32> v1;
    bit<32> v2;
    bit<32> v3;
    bit<32> t;
    bit<32> k0;
    bit<32> k1;
    bit<32> k2;
    bit<32> k3;
    bit<32> h1;
    bit<32> m;
    bit<32> sum;
    bit<48> mac;
    bit<32> addr;
    bit<16> port;
    bit<16> mss;
    bit<16> window;
    bit<16> optlen;
    bit<16> next;
    bit<16> end;
    bit<16> client_mss;
    bit<16> tcp_len;
    bit<8>  slot;
    bit<8>  ttl;
    bit<8>  keyed;
    bit<8>  wscale;
    bit<8>  client_ws;
    bit<8>  has_mss;
    bit<8>  has_ws;
    bit<8>  mi;
    bit<8>  ws;
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
    tcp_opt_word_h tcp_opt0;
    tcp_opt_word_h tcp_opt1;
    tcp_opt_word_h tcp_opt2;
    tcp_opt_word_h tcp_opt3;
    tcp_opt_word_h tcp_opt4;
    tcp_opt_word_h tcp_opt5;
    tcp_opt_word_h tcp_opt6;
    tcp_opt_word_h tcp_opt7;
    tcp_opt_word_h tcp_opt8;
    tcp_opt_word_h tcp_opt9;
    tcp_mss_opt_h  synack_mss;
    tcp_ws_opt_h   synack_ws;
    udp_h        udp;
    syn_cookie_state_h syn_cookie;
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
    bool    flow_syn;       /* a SYN whose 5-tuple has an entry: to the controller */
    bool    syn_answered;   /* a SYN the data plane answered with a SYN cookie */
    /* L4 virtual services (l4_service.p4) */
    bit<16> l4_sport;       /* the TCP or UDP ports */
    bit<16> l4_dport;
    bit<16> l4_service;     /* the service's id; 0: not an L4 service */
    bit<16> l4_bucket;      /* its Maglev table slot: the 5-tuple hash, masked */
    ipv4_addr_t l4_addr;    /* the address and port written into the packet */
    bit<16> l4_port;
    bit<8>  l4_profile;     /* expiry profile of the connections the data plane learns */
    bool    l4_end;         /* a FIN or RST */
}

#endif
