/* p4cs — PNA program for the embedded DPDK SWX target (compiled with p4c-dpdk).
 * Checksums are updated in the main control: the PNA deparser only reads headers. */
#include <core.p4>
#include <pna.p4>

#define P4CS_TARGET_PNA 1
#include "../include/headers.p4"

const MirrorSlotId_t FLOW_END_SLOT = (MirrorSlotId_t)0;
const MirrorSessionId_t FLOW_END_SESSION = (MirrorSessionId_t)P4CS_FLOW_END_SESSION;
#include "../include/parser.p4"
#include "../include/pipeline.p4"
#include "../include/checksums.p4"

control PreControlImpl(in headers_t hdr, inout local_metadata_t meta,
                       in pna_pre_input_metadata_t istd,
                       inout pna_pre_output_metadata_t ostd) {
    apply { }
}

control MainControlImpl(inout headers_t hdr, inout local_metadata_t meta,
                        in pna_main_input_metadata_t istd,
                        inout pna_main_output_metadata_t ostd) {
    P4csPipeline() p4cs;
    InternetChecksum() ck_ip;
    InternetChecksum() ck;

    /* PNA's send_to_port() takes a directionless argument, which p4c only accepts when it is
     * bound by the control plane (table action data) or a constant. The egress port decided
     * by the pipeline (meta.out_port) therefore goes through egress_table: one entry per
     * existing port (out_port -> send(port)), written by the controller. A port without an
     * entry drops: a second range check. */
    @name(".send")
    action send(bit<32> port) {
        send_to_port((PortId_t)port);
    }
    @name(".egress_drop")
    action egress_drop() {
        drop_packet();
    }
    @name(".egress_table")
    table egress_table {
        key = { meta.out_port: exact @name("out_port"); }
        actions = { send; @defaultonly egress_drop; }
        const default_action = egress_drop;
        size = P4CS_MAX_PORTS;
    }

    apply {
        meta.in_port = (bit<32>)istd.input_port;
        meta.out_port = 0;
        p4cs.apply(hdr, meta);
        P4CS_UPDATE_CHECKSUMS(ck_ip, ck, hdr, meta)
        if (meta.drop) {
            drop_packet();
        } else {
            egress_table.apply();
            if (meta.flow_end) {
                /* FIN/RST of a spliced flow: forwarded, and a copy goes to the controller
                 * through mirror session P4CS_FLOW_END_SESSION. */
                mirror_packet(FLOW_END_SLOT, FLOW_END_SESSION);
            }
        }
    }
}

control MainDeparserImpl(packet_out pkt, in headers_t hdr, in local_metadata_t meta,
                         in pna_main_output_metadata_t ostd) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.udp);
    }
}

PNA_NIC(MainParserImpl(), PreControlImpl(), MainControlImpl(), MainDeparserImpl()) main;
