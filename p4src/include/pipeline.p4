/* p4cs — the target-independent pipeline: packet-out, flow table, forwarding, punting.
 * The main control (main.p4) applies it and turns meta.out_port / meta.drop / meta.flow_end
 * into the architecture's forwarding and mirroring calls. */
#ifndef P4CS_PIPELINE_P4
#define P4CS_PIPELINE_P4

#include "headers.p4"
#include "packet_io.p4"
#include "flow_table.p4"
#include "forwarding.p4"

control P4csPipeline(inout headers_t hdr, inout local_metadata_t meta) {
    PacketOut() pkt_out;
    PacketIn() pkt_in;
    FlowTable() flows;
    Forwarding() forwarding;

    apply {
        meta.drop = false;
        meta.punt_reason = 0;
        meta.flow_hit = false;
        meta.flow_end = false;
        if (hdr.packet_out.isValid()) {
            pkt_out.apply(hdr, meta);
        } else {
            if (hdr.ipv4.isValid()) {
                /* A pure SYN never takes the fast path: it opens a new connection, which
                 * the controller binds (and it must not be spliced onto a previous
                 * connection's entries that reuse the same 5-tuple). A valid TCP header
                 * implies no IP exception (the parser does not parse L4 then). */
                if (hdr.tcp.isValid() &&
                    (hdr.tcp.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN) {
                    flows.apply(hdr, meta);
                }
            }
            if (!meta.flow_hit) {
                forwarding.apply(hdr, meta);
                if (meta.punt_reason != 0) {
                    pkt_in.apply(hdr, meta);
                }
            }
        }
        if (meta.out_port >= P4CS_MAX_PORTS && meta.out_port != P4CS_CPU_PORT) {
            meta.drop = true;
        }
    }
}

#endif
