/* p4cs — the main (ingress) control and the deparser, one body for both targets.
 *
 * The main file of a target defines P4CS_TARGET_PNA or P4CS_TARGET_V1MODEL, includes this file
 * and instantiates its architecture's package with P4csParser, P4csMain and P4csDeparser
 * (arch.p4 holds what differs). P4csMain applies the target-independent pipeline and turns
 * meta.out_port / meta.drop / meta.flow_end into the architecture's forwarding, drop and
 * copy-to-controller calls.
 */
#ifndef P4CS_MAIN_P4
#define P4CS_MAIN_P4

#include "arch.p4"
#include "parser.p4"
#include "pipeline.p4"

control P4csMain(inout headers_t hdr, inout local_metadata_t meta, P4CS_MAIN_STD) {
    P4csPipeline() p4cs;

    /* The egress port decided by the pipeline (meta.out_port) goes through egress_table: one
     * entry per existing port (out_port -> send(port)), written by the controller. A port
     * without an entry drops: a second range check. PNA needs the table (send_to_port() takes
     * only control-plane values or constants); v1model has the same one, so both targets share
     * one P4Info. */
    @name(".send")
    action send(bit<32> port) {
        P4CS_SEND(port);
    }
    @name(".egress_drop")
    action egress_drop() {
        P4CS_DROP();
    }
    @name(".egress_table")
    table egress_table {
        key = { meta.out_port: exact @name("out_port"); }
        actions = { send; @defaultonly egress_drop; }
        const default_action = egress_drop;
        size = P4CS_MAX_PORTS;
    }

    apply {
        meta.in_port = P4CS_IN_PORT;
        meta.out_port = 0;
        p4cs.apply(hdr, meta);
        if (meta.drop) {
            P4CS_DROP();
        } else {
            egress_table.apply();
            if (meta.flow_end) {
                /* FIN/RST of a spliced flow: forwarded, and a copy goes to the controller
                 * through session P4CS_FLOW_END_SESSION. */
                P4CS_COPY_FLOW_END();
            }
        }
    }
}

control P4csDeparser(packet_out pkt, in headers_t hdr P4CS_DEPARSER_STD) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.tcp_opt0);
        pkt.emit(hdr.tcp_opt1);
        pkt.emit(hdr.tcp_opt2);
        pkt.emit(hdr.tcp_opt3);
        pkt.emit(hdr.tcp_opt4);
        pkt.emit(hdr.tcp_opt5);
        pkt.emit(hdr.tcp_opt6);
        pkt.emit(hdr.tcp_opt7);
        pkt.emit(hdr.tcp_opt8);
        pkt.emit(hdr.tcp_opt9);
        pkt.emit(hdr.synack_mss);
        pkt.emit(hdr.synack_ws);
        pkt.emit(hdr.udp);
    }
}

#endif
