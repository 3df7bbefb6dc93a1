/* p4cs — every difference between the two architectures, in one place.
 *
 * The main file of a target defines P4CS_TARGET_PNA (DPDK SWX, p4c-dpdk) or P4CS_TARGET_V1MODEL
 * (BMv2, p4c-bm2-ss) and includes main.p4; every other file is written once for both, against
 * the macros and small controls below:
 *
 *   P4CS_PARSER_STD, P4CS_MAIN_STD,   the architecture's standard-metadata parameters of the
 *   P4CS_DEPARSER_STD                 parser, the main (ingress) control and the deparser (the
 *                                     latter follows `in headers_t hdr`, comma included)
 *   P4CS_PARSER_IN_PORT, P4CS_IN_PORT the ingress port, as bit<32>, in the parser / main control
 *   P4CS_SEND(port), P4CS_DROP()      forward to a port / drop (main control only)
 *   P4CS_COPY_FLOW_END()              a copy of the packet to the controller through the
 *                                     P4CS_FLOW_END_SESSION mirror / clone session
 *   P4CS_COPY_PRESERVED               annotation of a metadata field the copy keeps (headers.p4)
 *   P4CS_COUNTER(size)                an indexed packet-and-byte counter ...
 *   P4CS_COUNT(c, index, bytes)       ... and counting into it (`bytes`: the frame without FCS;
 *                                     BMv2 measures the frame itself)
 *   P4CS_EXPIRING_TABLE               table properties: entries expire when idle
 *   P4CS_REARM_EXPIRY                 in an action of such a table: a hit restarts the timer
 *   P4CS_END_EXPIRY                   ... or, on a FIN or RST, moves the entry to the short
 *                                     expiry profile P4CS_END_PROFILE (TIME_WAIT-like): the
 *                                     data plane removes the entries of closed connections
 *   P4CS_END_EXPIRY_TABLE(c, arg)     annotation of such a table when it does: its P4Info says
 *                                     so to the controller, and its entries' expiry reports
 *                                     counter c at the index of action parameter arg
 *                                     (docs/interfaces.md)
 *   P4CS_SPLICE_CSUM_DECL             in a control: the state of ...
 *   P4CS_SPLICE_CSUM_OLD(ip_d)        ... the splice action's checksum updates (RFC 1624): OLD
 *   P4CS_SPLICE_CSUM_NEW(tcp_d)       before seq/ack change (IPv4: + ip_d; TCP: - old seq/ack),
 *                                     NEW after (TCP: + new seq/ack + tcp_d); ip_d / tcp_d are
 *                                     the flow's constant deltas (action data), so a packet that
 *                                     arrived with a bad checksum leaves with a bad checksum.
 *                                     A checksum whose value is zero is written 0xFFFF (the
 *                                     other ones'-complement zero, as SWX ckadd/cksub do).
 *   P4CS_NAT_CSUM_DECL                in a control: the state of ...
 *   P4CS_NAT_CSUM_OLD(csum, a, p)     ... an address translation's checksum updates (RFC
 *   P4CS_NAT_CSUM_NEW(csum, a, p)     1624): OLD before the IPv4 address field a and the port
 *                                     field p change, NEW after; csum is the TCP or UDP
 *                                     checksum (the pseudo-header holds a; the caller leaves a
 *                                     UDP checksum of 0, "none", alone)
 *   P4CS_HASH_DECL(h), P4CS_HASH(h, dst, fields...)
 *                                     a 16-bit hash of the fields (PNA: the target's
 *                                     hash, jhash on SWX; v1model: CRC-32, low 16 bits)
 *   P4CS_LEARNING_TABLE               table properties of a connection table the data plane
 *   P4CS_LEARN(action, args, profile) fills itself: PNA add-on-miss (LEARN in the default
 *                                     action adds the entry, with expiry profile `profile`);
 *                                     on v1model a plain table that stays empty, LEARN does
 *                                     nothing (BMv2 has no add-on-miss)
 *
 * This is the only file of the program with #ifdefs.
 */
#ifndef P4CS_ARCH_P4
#define P4CS_ARCH_P4

#include <core.p4>

#if defined(P4CS_TARGET_PNA)
#include <pna.p4>
#elif defined(P4CS_TARGET_V1MODEL)
#include <v1model.p4>
#else
#error "define P4CS_TARGET_PNA or P4CS_TARGET_V1MODEL before including arch.p4"
#endif

#if defined(P4CS_TARGET_PNA)
/* The mirror copy is the emitted packet; the daemon tells the server its input port. */
#define P4CS_COPY_PRESERVED
#else
/* BMv2 resets a clone's metadata, standard_metadata.ingress_port included: the fields of this
 * list are copied into the clone. */
#define P4CS_FLOW_END_FIELDS 1
#define P4CS_COPY_PRESERVED  @field_list(P4CS_FLOW_END_FIELDS)
#endif

#include "headers.p4"

#if defined(P4CS_TARGET_PNA)

#define P4CS_PARSER_STD      in pna_main_parser_input_metadata_t istd
#define P4CS_PARSER_IN_PORT  ((bit<32>)istd.input_port)
#define P4CS_MAIN_STD        in pna_main_input_metadata_t istd, inout pna_main_output_metadata_t ostd
#define P4CS_IN_PORT         ((bit<32>)istd.input_port)
#define P4CS_DEPARSER_STD    , in local_metadata_t meta, in pna_main_output_metadata_t ostd

/* send_to_port() takes a directionless argument, which p4c only accepts when it is bound by the
 * control plane (table action data) or a constant: the port always comes from egress_table. */
#define P4CS_SEND(port)      send_to_port((PortId_t)(port))
#define P4CS_DROP()          drop_packet()
/* The mirrored copy leaves without a packet_in header: the P4Runtime server adds one with
 * REASON_FLOW_END. */
#define P4CS_COPY_FLOW_END() mirror_packet((MirrorSlotId_t)0, (MirrorSessionId_t)P4CS_FLOW_END_SESSION)

/* The DPDK learner table has no direct counters: flows count into an indexed counter. */
#define P4CS_COUNTER(size)              Counter<bit<64>, bit<32>>(size, PNA_CounterType_t.PACKETS_AND_BYTES)
#define P4CS_COUNT(c, index, bytes)     c.count(index, bytes)
/* An add-on-miss table is an SWX learner: O(1) inserts and deletes, per-entry expiry. */
#define P4CS_EXPIRING_TABLE             add_on_miss = true; idle_timeout_with_auto_delete = true;
#define P4CS_REARM_EXPIRY               restart_expire_timer()
/* Learner timeout profile 0: the shortest of the flow timeout profiles (flow_timeouts_s of
 * host/p4cs/params.py, 3 s; the daemon's --learner-timeouts sets them). */
#define P4CS_END_PROFILE                0
#define P4CS_END_EXPIRY                 set_entry_expire_time((ExpireTimeProfileId_t)P4CS_END_PROFILE)
#define P4CS_END_EXPIRY_TABLE(c, arg)   @p4cs_end_expiry(c, arg)

/* The InternetChecksum extern, which p4c-dpdk turns into SWX cksub / ckadd; one instance per
 * checksum (one instance reused for both left the IPv4 checksum at 0 on DPDK 22.11). One
 * operand per call: p4c-dpdk applies a single header field directly, a list only through
 * staged copies (two `mov`s per field). */
#define P4CS_SPLICE_CSUM_DECL  InternetChecksum() ck_ip; InternetChecksum() ck_tcp;
#define P4CS_SPLICE_CSUM_OLD(ip_d) \
    ck_ip.clear(); ck_ip.subtract(hdr.ipv4.hdr_checksum); ck_ip.add(ip_d); \
    hdr.ipv4.hdr_checksum = ck_ip.get(); \
    ck_tcp.clear(); ck_tcp.subtract(hdr.tcp.checksum); \
    ck_tcp.subtract(hdr.tcp.seq_no); ck_tcp.subtract(hdr.tcp.ack_no)
#define P4CS_SPLICE_CSUM_NEW(tcp_d) \
    ck_tcp.add(hdr.tcp.seq_no); ck_tcp.add(hdr.tcp.ack_no); ck_tcp.add(tcp_d); \
    hdr.tcp.checksum = ck_tcp.get()

#define P4CS_NAT_CSUM_DECL  InternetChecksum() nat_ip; InternetChecksum() nat_l4;
#define P4CS_NAT_CSUM_OLD(csum, a, p) \
    nat_ip.clear(); nat_ip.subtract(hdr.ipv4.hdr_checksum); nat_ip.subtract(a); \
    nat_l4.clear(); nat_l4.subtract(csum); nat_l4.subtract(a); nat_l4.subtract(p)
#define P4CS_NAT_CSUM_NEW(csum, a, p) \
    nat_ip.add(a); hdr.ipv4.hdr_checksum = nat_ip.get(); \
    nat_l4.add(a); nat_l4.add(p); csum = nat_l4.get()

#define P4CS_HASH_DECL(h)               Hash<bit<16>>(PNA_HashAlgorithm_t.TARGET_DEFAULT) h;
#define P4CS_HASH(h, dst, ...)          dst = h.get_hash({__VA_ARGS__})
#define P4CS_LEARNING_TABLE             add_on_miss = true; idle_timeout_with_auto_delete = true;
#define P4CS_LEARN(action, args, profile) \
    add_entry(action, args, (ExpireTimeProfileId_t)(profile))

#else  /* P4CS_TARGET_V1MODEL */

#define P4CS_PARSER_STD      inout standard_metadata_t standard_metadata
#define P4CS_PARSER_IN_PORT  ((bit<32>)standard_metadata.ingress_port)
#define P4CS_MAIN_STD        inout standard_metadata_t standard_metadata
#define P4CS_IN_PORT         ((bit<32>)standard_metadata.ingress_port)
/* v1model's deparser takes nothing after the headers. */
#define P4CS_DEPARSER_STD

#define P4CS_SEND(port)      standard_metadata.egress_spec = (bit<9>)(port)
#define P4CS_DROP()          mark_to_drop(standard_metadata)
/* An ingress-to-egress clone that keeps meta.in_port; the egress control gives it a packet_in
 * header. */
#define P4CS_COPY_FLOW_END() clone_preserving_field_list(CloneType.I2E, P4CS_FLOW_END_SESSION, P4CS_FLOW_END_FIELDS)

#define P4CS_COUNTER(size)              counter(size, CounterType.packets_and_bytes)
#define P4CS_COUNT(c, index, bytes)     c.count(index)
/* A plain exact table with P4Runtime idle timeouts (BMv2 re-arms on every hit by itself; the
 * controller deletes the entries of closed connections). */
#define P4CS_EXPIRING_TABLE             support_timeout = true;
#define P4CS_REARM_EXPIRY
#define P4CS_END_EXPIRY
#define P4CS_END_EXPIRY_TABLE(c, arg)

/* BMv2's checksum controls only take update_checksum() calls, which recompute from scratch; so
 * the ones'-complement arithmetic of RFC 1624 is written out: sum = ~C + delta (+ the words
 * of ~old and new seq/ack for TCP), then C = ~(fold(sum + 1) - 1), which is ~sum mod 0xFFFF
 * in 1..0xFFFF (a zero checksum reads 0xFFFF, as on SWX). */
#define P4CS_CSUM_HALVES(x)    (bit<32>)(x)[31:16] + (bit<32>)(x)[15:0]
#define P4CS_CSUM_NHALVES(x)   (bit<32>)(~(x)[31:16]) + (bit<32>)(~(x)[15:0])
#define P4CS_CSUM_FOLD(s)      s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)
#define P4CS_SPLICE_CSUM_DECL  bit<32> ck_ip; bit<32> ck_tcp;
#define P4CS_SPLICE_CSUM_OLD(ip_d) \
    ck_ip = (bit<32>)(~hdr.ipv4.hdr_checksum) + (bit<32>)(ip_d) + 1; P4CS_CSUM_FOLD(ck_ip); \
    hdr.ipv4.hdr_checksum = ~(ck_ip[15:0] - 1); \
    ck_tcp = (bit<32>)(~hdr.tcp.checksum) + P4CS_CSUM_NHALVES(hdr.tcp.seq_no) + \
             P4CS_CSUM_NHALVES(hdr.tcp.ack_no)
#define P4CS_SPLICE_CSUM_NEW(tcp_d) \
    ck_tcp = ck_tcp + P4CS_CSUM_HALVES(hdr.tcp.seq_no) + P4CS_CSUM_HALVES(hdr.tcp.ack_no) + \
             (bit<32>)(tcp_d) + 1; \
    P4CS_CSUM_FOLD(ck_tcp); \
    hdr.tcp.checksum = ~(ck_tcp[15:0] - 1)
#define P4CS_NAT_CSUM_DECL  bit<32> nat_ip; bit<32> nat_l4;
#define P4CS_NAT_CSUM_OLD(csum, a, p) \
    nat_ip = (bit<32>)(~hdr.ipv4.hdr_checksum) + P4CS_CSUM_NHALVES(a); \
    nat_l4 = (bit<32>)(~(csum)) + P4CS_CSUM_NHALVES(a) + (bit<32>)(~(p))
#define P4CS_NAT_CSUM_NEW(csum, a, p) \
    nat_ip = nat_ip + P4CS_CSUM_HALVES(a) + 1; P4CS_CSUM_FOLD(nat_ip); \
    hdr.ipv4.hdr_checksum = ~(nat_ip[15:0] - 1); \
    nat_l4 = nat_l4 + P4CS_CSUM_HALVES(a) + (bit<32>)(p) + 1; P4CS_CSUM_FOLD(nat_l4); \
    csum = ~(nat_l4[15:0] - 1)

#define P4CS_HASH_DECL(h)
#define P4CS_HASH(h, dst, ...) \
    hash(dst, HashAlgorithm.crc32, (bit<16>)0, {__VA_ARGS__}, (bit<32>)65536)
#define P4CS_LEARNING_TABLE
#define P4CS_LEARN(action, args, profile)

#endif

#endif
