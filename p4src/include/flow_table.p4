/* p4cs — the flow table: the fast path of the content switch ("Case A").
 *
 * An exact match on the TCP/IP 5-tuple. A hit on `splice` rewrites MACs, IPv4 addresses and
 * ports, adds the sequence and acknowledgement deltas (mod 2^32) and forwards: this is TCP
 * splicing after delayed binding. Checksums are fixed incrementally (RFC 1624, arch.p4
 * P4CS_SPLICE_CSUM_*): the address and port part of the change is a constant of the flow, which
 * the controller computes into the action data (ip_csum_delta: addresses, for the IPv4 header;
 * tcp_csum_delta: addresses and ports, for the TCP pseudo-header and header), so a hit costs
 * one update per checksum plus the seq/ack terms. Every action counts packets and bytes in
 * flow_counter[flow_id] (an indexed counter: the DPDK learner table has no direct counters; the
 * controller allocates flow ids).
 *
 * On the DPDK target the table is a PNA add-on-miss table (an SWX learner): O(1) inserts and
 * deletes and per-entry expiry; hits re-arm the expiry timer, and a hit by a FIN or RST moves
 * the entry to the short expiry profile instead (TIME_WAIT-like): the entries of a closed
 * connection leave the data plane by themselves, and the expiry notification carries the final
 * counts of flow_counter[flow_id] (P4CS_END_EXPIRY_TABLE). On BMv2 it is a plain exact table
 * with P4Runtime idle timeouts, and the controller deletes the entries of closed connections
 * (arch.p4: P4CS_EXPIRING_TABLE, P4CS_REARM_EXPIRY, P4CS_END_EXPIRY, P4CS_END_EXPIRY_TABLE).
 */
#ifndef P4CS_FLOW_TABLE_P4
#define P4CS_FLOW_TABLE_P4

#include "arch.p4"

/* Bytes counted: the Ethernet frame without FCS (14 + IPv4 total length). */
#define P4CS_FLOW_COUNT(idx) P4CS_COUNT(flow_counter, idx, (bit<32>)hdr.ipv4.total_len + 14)
/* A hit re-arms the entry's expiry: a FIN or RST with the short profile. */
#define P4CS_FLOW_EXPIRY                                                 \
    if ((hdr.tcp.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) != 0) {           \
        P4CS_END_EXPIRY;                                                 \
    } else {                                                             \
        P4CS_REARM_EXPIRY;                                               \
    }

control FlowTable(inout headers_t hdr, inout local_metadata_t meta) {

    @name(".flow_counter")
    P4CS_COUNTER(P4CS_FLOW_TABLE_SIZE) flow_counter;

    P4CS_SPLICE_CSUM_DECL

    @name(".splice")
    action splice(bit<32> port,
                  mac_addr_t dmac, mac_addr_t smac,
                  ipv4_addr_t sip, ipv4_addr_t dip,
                  bit<16> sport, bit<16> dport,
                  bit<32> seq_delta, bit<32> ack_delta,
                  bit<16> ip_csum_delta, bit<16> tcp_csum_delta,
                  bit<32> flow_id) {
        if ((hdr.tcp.flags & TCP_FLAG_SYN) == TCP_FLAG_SYN) {
            /* A SYN never takes a spliced flow. A pure SYN: a new connection on the 4-tuple
             * of a closed one whose entries are still here (a client reuses a port the server
             * closed first): not spliced onto the old connection, not answered with a SYN
             * cookie either; the controller binds it once the old entries are gone. A SYN-ACK:
             * the server's answer to the CS processor's SYN of a new connection on such a
             * 4-tuple, whose client-side entry was gone (the cookie handshake passed) while
             * the server-side one was not; spliced, it reached the client with the old
             * connection's rewrite and the connection hung until that entry expired. Both
             * take the miss path (the controller). (It counts into the old flow: BMv2 cannot
             * make an extern call conditional in an action.) */
            meta.flow_syn = true;
        } else {
            meta.flow_hit = true;
            P4CS_SPLICE_CSUM_OLD(ip_csum_delta);
            hdr.ethernet.dst_addr = dmac;
            hdr.ethernet.src_addr = smac;
            hdr.ipv4.src_addr = sip;
            hdr.ipv4.dst_addr = dip;
            hdr.tcp.src_port = sport;
            hdr.tcp.dst_port = dport;
            hdr.tcp.seq_no = hdr.tcp.seq_no + seq_delta;
            hdr.tcp.ack_no = hdr.tcp.ack_no + ack_delta;
            P4CS_SPLICE_CSUM_NEW(tcp_csum_delta);
            meta.out_port = port;
        }
        P4CS_FLOW_COUNT(flow_id);
        P4CS_FLOW_EXPIRY
    }

    /* Forward a flow unchanged but for the MACs (direct-routing style: the server owns the
     * VIP). The controller does not install it; L4 virtual services translate addresses in
     * l4_service.p4. */
    @name(".flow_forward")
    action flow_forward(bit<32> port, mac_addr_t dmac, mac_addr_t smac, bit<32> flow_id) {
        meta.flow_hit = true;
        hdr.ethernet.dst_addr = dmac;
        hdr.ethernet.src_addr = smac;
        meta.out_port = port;
        P4CS_FLOW_COUNT(flow_id);
        P4CS_FLOW_EXPIRY
    }

    @name(".flow_miss")
    action flow_miss() {
        meta.flow_hit = false;
    }

    @name(".flow_table") P4CS_END_EXPIRY_TABLE("flow_counter", "flow_id")
    table flow_table {
        /* Header fields: p4c-dpdk copies a key made of several headers' fields into metadata
         * of its own (contiguous, as the learner needs), so a copy made here would be a
         * second one. */
        key = {
            hdr.ipv4.src_addr: exact @name("src_addr");
            hdr.ipv4.dst_addr: exact @name("dst_addr");
            hdr.ipv4.protocol: exact @name("protocol");
            hdr.tcp.src_port:  exact @name("src_port");
            hdr.tcp.dst_port:  exact @name("dst_port");
        }
        actions = {
            @tableonly splice;
            @tableonly flow_forward;
            @defaultonly flow_miss;
        }
        const default_action = flow_miss;
        size = P4CS_FLOW_TABLE_SIZE;
        P4CS_EXPIRING_TABLE
    }

    apply {
        flow_table.apply();
        if (meta.flow_hit && (hdr.tcp.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) != 0) {
            meta.flow_end = true;
        }
    }
}
#undef P4CS_FLOW_COUNT
#undef P4CS_FLOW_EXPIRY

#endif
