/* p4cs — the target-independent pipeline: packet-out, flow table, SYN cookies, L4 services,
 * forwarding, punting.
 * The main control (main.p4) applies it and turns meta.out_port / meta.drop / meta.flow_end
 * into the architecture's forwarding and mirroring calls. */
#ifndef P4CS_PIPELINE_P4
#define P4CS_PIPELINE_P4

#include "headers.p4"
#include "packet_io.p4"
#include "flow_table.p4"
#include "forwarding.p4"
#include "syn_cookie.p4"
#include "l4_service.p4"

control P4csPipeline(inout headers_t hdr, inout local_metadata_t meta) {
    PacketOut() pkt_out;
    PacketIn() pkt_in;
    FlowTable() flows;
    Forwarding() forwarding;
    SynCookie() syn_cookie;
    L4Service() l4;

    apply {
        meta.drop = false;
        meta.punt_reason = 0;
        meta.flow_hit = false;
        meta.flow_end = false;
        meta.syn_answered = false;
        meta.flow_syn = false;
        if (hdr.packet_out.isValid()) {
            pkt_out.apply(hdr, meta);
        } else {
            if (hdr.ipv4.isValid()) {
                /* A pure SYN never takes the fast path: it opens a new connection. To a
                 * virtual service the data plane answers it with a SYN cookie (syn_cookie.p4),
                 * unless its 5-tuple still has a flow entry (flow_syn: a previous connection's,
                 * which the client's ACK would meet): then the controller gets it. A valid TCP
                 * header implies no IP exception (the parser does not parse L4 then). */
                if (hdr.tcp.isValid()) {
                    flows.apply(hdr, meta);
                    /* nested, not &&: p4c-dpdk turns each operand of && into a boolean
                     * temporary, which a spliced packet would pay for */
                    if (!meta.flow_hit) {
                        if (!meta.flow_syn) {
                            if ((hdr.tcp.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST |
                                                  TCP_FLAG_FIN)) == TCP_FLAG_SYN) {
                                syn_cookie.apply(hdr, meta);
                            }
                        }
                    }
                }
            }
            if (!meta.flow_hit && !meta.syn_answered) {
                /* L4 virtual services translate the addresses; the forwarding stage then
                 * routes the packet like any other. */
                if (hdr.tcp.isValid() || hdr.udp.isValid()) {
                    l4.apply(hdr, meta);
                }
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
