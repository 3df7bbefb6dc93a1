/* p4cs — checksums after a splice rewrite, updated incrementally (RFC 1624) from the old
 * values the splice action saved: a packet that arrived with a bad checksum leaves with a bad
 * checksum, so corruption is never laundered into a valid packet.
 *
 * IPv4 header checksum: addresses changed.
 * TCP checksum: pseudo-header addresses, ports, sequence and acknowledgement numbers changed.
 */
#ifndef P4CS_CHECKSUMS_P4
#define P4CS_CHECKSUMS_P4

#include "headers.p4"

#ifdef P4CS_TARGET_PNA

 /* PNA: the InternetChecksum extern; p4c-dpdk turns it into SWX cksub / ckadd. Called from the
 * main control (the PNA deparser takes the headers read-only). */
#define P4CS_UPDATE_CHECKSUMS(ck_ip, ck, hdr, meta)                                       \
    if (meta.rewritten) {                                                                \
        ck_ip.clear();                                                                   \
        ck_ip.subtract({hdr.ipv4.hdr_checksum});                                         \
        ck_ip.subtract({meta.old_src_addr, meta.old_dst_addr});                          \
        ck_ip.add({hdr.ipv4.src_addr, hdr.ipv4.dst_addr});                               \
        hdr.ipv4.hdr_checksum = ck_ip.get();                                             \
        ck.clear();                                                                      \
        ck.subtract({hdr.tcp.checksum});                                                 \
        ck.subtract({meta.old_src_addr, meta.old_dst_addr,                               \
                     meta.old_src_port, meta.old_dst_port,                               \
                     meta.old_seq_no, meta.old_ack_no});                                 \
        ck.add({hdr.ipv4.src_addr, hdr.ipv4.dst_addr,                                    \
                hdr.tcp.src_port, hdr.tcp.dst_port,                                      \
                hdr.tcp.seq_no, hdr.tcp.ack_no});                                        \
        hdr.tcp.checksum = ck.get();                                                     \
    }

#else

/* v1model: BMv2's checksum controls only take update_checksum() calls, which recompute from
 * scratch; so the ones'-complement arithmetic is written out here and applied at the end of
 * ingress. sum = ~C + sum(~old words) + sum(new words), folded twice, complemented. */
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
