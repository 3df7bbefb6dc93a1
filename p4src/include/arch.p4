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
 *   IncrementalChecksum               control: the IPv4 and TCP checksums after a splice
 *                                     rewrite, updated incrementally (RFC 1624) from the old
 *                                     values the splice action saved, so a packet that arrived
 *                                     with a bad checksum leaves with a bad checksum
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
 * checksum (one instance reused for both left the IPv4 checksum at 0 on DPDK 22.11). Applied in
 * the main control: the PNA deparser takes the headers read-only. */
control IncrementalChecksum(inout headers_t hdr, inout local_metadata_t meta) {
    InternetChecksum() ck_ip;
    InternetChecksum() ck;

    apply {
        if (meta.rewritten) {
            ck_ip.clear();
            ck_ip.subtract({hdr.ipv4.hdr_checksum});
            ck_ip.subtract({meta.old_src_addr, meta.old_dst_addr});
            ck_ip.add({hdr.ipv4.src_addr, hdr.ipv4.dst_addr});
            hdr.ipv4.hdr_checksum = ck_ip.get();
            ck.clear();
            ck.subtract({hdr.tcp.checksum});
            ck.subtract({meta.old_src_addr, meta.old_dst_addr,
                         meta.old_src_port, meta.old_dst_port,
                         meta.old_seq_no, meta.old_ack_no});
            ck.add({hdr.ipv4.src_addr, hdr.ipv4.dst_addr,
                    hdr.tcp.src_port, hdr.tcp.dst_port,
                    hdr.tcp.seq_no, hdr.tcp.ack_no});
            hdr.tcp.checksum = ck.get();
        }
    }
}

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
 * the ones'-complement arithmetic of RFC 1624 is written out and applied at the end of ingress:
 * sum = ~C + sum(~old words) + sum(new words), folded twice, complemented. */
control IncrementalChecksum(inout headers_t hdr, inout local_metadata_t meta) {
    bit<32> s;

    @hidden action add_word(in bit<16> w) { s = s + (bit<32>)w; }
    @hidden action fold() { s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16); }

    apply {
        if (meta.rewritten) {
            s = (bit<32>)(~hdr.ipv4.hdr_checksum);
            add_word(~meta.old_src_addr[31:16]); add_word(~meta.old_src_addr[15:0]);
            add_word(~meta.old_dst_addr[31:16]); add_word(~meta.old_dst_addr[15:0]);
            add_word(hdr.ipv4.src_addr[31:16]);  add_word(hdr.ipv4.src_addr[15:0]);
            add_word(hdr.ipv4.dst_addr[31:16]);  add_word(hdr.ipv4.dst_addr[15:0]);
            fold();
            hdr.ipv4.hdr_checksum = ~(s[15:0]);

            s = (bit<32>)(~hdr.tcp.checksum);
            add_word(~meta.old_src_addr[31:16]); add_word(~meta.old_src_addr[15:0]);
            add_word(~meta.old_dst_addr[31:16]); add_word(~meta.old_dst_addr[15:0]);
            add_word(~meta.old_src_port);        add_word(~meta.old_dst_port);
            add_word(~meta.old_seq_no[31:16]);   add_word(~meta.old_seq_no[15:0]);
            add_word(~meta.old_ack_no[31:16]);   add_word(~meta.old_ack_no[15:0]);
            add_word(hdr.ipv4.src_addr[31:16]);  add_word(hdr.ipv4.src_addr[15:0]);
            add_word(hdr.ipv4.dst_addr[31:16]);  add_word(hdr.ipv4.dst_addr[15:0]);
            add_word(hdr.tcp.src_port);          add_word(hdr.tcp.dst_port);
            add_word(hdr.tcp.seq_no[31:16]);     add_word(hdr.tcp.seq_no[15:0]);
            add_word(hdr.tcp.ack_no[31:16]);     add_word(hdr.tcp.ack_no[15:0]);
            fold();
            hdr.tcp.checksum = ~(s[15:0]);
        }
    }
}

#endif

#endif
