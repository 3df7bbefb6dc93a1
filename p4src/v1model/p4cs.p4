/* p4cs — v1model program for BMv2 simple_switch_grpc (compiled with p4c-bm2-ss). */
#include <core.p4>
#include <v1model.p4>

#define P4CS_TARGET_V1MODEL 1
#include "../include/headers.p4"
#include "../include/parser.p4"
#include "../include/pipeline.p4"
#include "../include/checksums.p4"

control VerifyChecksumImpl(inout headers_t hdr, inout local_metadata_t meta) {
    apply { }
}

control IngressImpl(inout headers_t hdr, inout local_metadata_t meta,
                    inout standard_metadata_t standard_metadata) {
    P4csPipeline() p4cs;
    IncrementalChecksum() checksums;

    /* The same egress_table as the PNA program (there it is needed because send_to_port takes
     * only control-plane values), so both targets share one P4Info. */
    @name(".send")
    action send(bit<32> port) {
        standard_metadata.egress_spec = (bit<9>)port;
    }
    @name(".egress_drop")
    action egress_drop() {
        mark_to_drop(standard_metadata);
    }
    @name(".egress_table")
    table egress_table {
        key = { meta.out_port: exact @name("out_port"); }
        actions = { send; @defaultonly egress_drop; }
        const default_action = egress_drop;
        size = P4CS_MAX_PORTS;
    }

    apply {
        meta.in_port = (bit<32>)standard_metadata.ingress_port;
        meta.out_port = 0;
        p4cs.apply(hdr, meta);
        checksums.apply(hdr, meta);
        if (meta.drop) {
            mark_to_drop(standard_metadata);
        } else {
            egress_table.apply();
            if (meta.flow_end) {
                /* FIN/RST of a spliced flow: forwarded, and an ingress-to-egress clone goes
                 * to the controller (clone session P4CS_FLOW_END_SESSION -> CPU port). */
                clone(CloneType.I2E, P4CS_FLOW_END_SESSION);
            }
        }
    }
}

control EgressImpl(inout headers_t hdr, inout local_metadata_t meta,
                   inout standard_metadata_t standard_metadata) {
    apply {
        /* The clone of a FIN/RST: give it a packet_in header like any punted packet. */
        if (standard_metadata.instance_type == 1) {
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = (bit<16>)standard_metadata.ingress_port;
            hdr.packet_in.reason = REASON_FLOW_END;
            hdr.packet_in.pad0 = 0;
        }
    }
}

control ComputeChecksumImpl(inout headers_t hdr, inout local_metadata_t meta) {
    apply { }
}

control DeparserImpl(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.udp);
    }
}

V1Switch(ParserImpl(), VerifyChecksumImpl(), IngressImpl(), EgressImpl(),
         ComputeChecksumImpl(), DeparserImpl()) main;
