/* p4cs — v1model program for BMv2 simple_switch_grpc (compiled with p4c-bm2-ss). */
#define P4CS_TARGET_V1MODEL 1
#include "../include/main.p4"

control VerifyChecksumImpl(inout headers_t hdr, inout local_metadata_t meta) {
    apply { }
}

control EgressImpl(inout headers_t hdr, inout local_metadata_t meta,
                   inout standard_metadata_t standard_metadata) {
    PacketInHeader() packet_in_header;

    apply {
        /* The ingress-to-egress clone of a FIN/RST: a packet_in header like any punted packet,
         * with the ingress port the clone kept in meta.in_port. */
        if (standard_metadata.instance_type == 1) {
            packet_in_header.apply(hdr, meta.in_port, REASON_FLOW_END);
        }
    }
}

control ComputeChecksumImpl(inout headers_t hdr, inout local_metadata_t meta) {
    apply { }
}

V1Switch(P4csParser(), VerifyChecksumImpl(), P4csMain(), EgressImpl(),
         ComputeChecksumImpl(), P4csDeparser()) main;
