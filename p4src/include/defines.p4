/* p4cs — constants shared by every target. Sizes and ports come from params.p4, which
 * `p4cs generate` renders from one configuration (host/p4cs/params.py). */
#ifndef P4CS_DEFINES_P4
#define P4CS_DEFINES_P4

#include "params.p4"

typedef bit<48> mac_addr_t;
typedef bit<32> ipv4_addr_t;

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<16> ETHERTYPE_ARP  = 0x0806;
const bit<8>  IP_PROTO_TCP   = 6;
const bit<8>  IP_PROTO_UDP   = 17;
const bit<16> ARP_OPER_REQUEST = 1;
const bit<16> ARP_OPER_REPLY   = 2;

const bit<8> TCP_FLAG_FIN = 0x01;
const bit<8> TCP_FLAG_SYN = 0x02;
const bit<8> TCP_FLAG_RST = 0x04;
const bit<8> TCP_FLAG_ACK = 0x10;

/* Packet-in reason codes (packet_in.reason). */
const bit<8> REASON_VIP_MISS      = 1;  /* flow-table miss on client -> virtual service */
const bit<8> REASON_BACKEND_MISS  = 2;  /* flow-table miss on real server -> client traffic */
const bit<8> REASON_LOCAL         = 3;  /* addressed to a switch-owned IPv4 address */
const bit<8> REASON_FLOW_END      = 4;  /* copy of a FIN or RST of a spliced flow */
const bit<8> REASON_IP_EXCEPTION  = 5;  /* IPv4 options or fragment towards a virtual service */

#endif
