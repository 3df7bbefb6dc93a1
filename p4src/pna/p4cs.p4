/* p4cs — PNA program for the embedded DPDK SWX target (compiled with p4c-dpdk). */
#include <core.p4>
#include <pna.p4>

#define P4CS_TARGET_PNA 1
#include "../include/headers.p4"
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
    apply {
        meta.in_port = (bit<32>)istd.input_port;
        meta.out_port = 0;
        p4cs.apply(hdr, meta);
        if (meta.drop) {
            drop_packet();
        } else {
            send_to_port((PortId_t)meta.out_port);
            if (meta.flow_end) {
                /* FIN/RST of a spliced flow: forwarded, and a copy goes to the controller
                 * through mirror session P4CS_FLOW_END_SESSION. */
                mirror_packet((MirrorSlotId_t)0, (MirrorSessionId_t)P4CS_FLOW_END_SESSION);
            }
        }
    }
}

control MainDeparserImpl(packet_out pkt, inout headers_t hdr, in local_metadata_t meta,
                         in pna_main_output_metadata_t ostd) {
    InternetChecksum() ck;
    apply {
        P4CS_UPDATE_CHECKSUMS(ck, hdr, meta)
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.udp);
    }
}

PNA_NIC(MainParserImpl(), PreControlImpl(), MainControlImpl(), MainDeparserImpl()) main;
