/* p4cs — packet I/O with the controller.
 *
 * packet-out: frames from the controller arrive on the CPU port behind a packet_out header
 * naming the egress port. The port is range-checked (P4CS_MAX_PORTS, never the CPU port);
 * an out-of-range port drops the frame. The frame itself is sent as the controller built it.
 *
 * packet-in: a frame punted to the controller gets a packet_in header with the ingress port and
 * a reason code (REASON_*, host/p4cs/constants.py). PacketInHeader fills it, for punted frames
 * here and for BMv2's clones of FIN/RST segments in the v1model egress control.
 */
#ifndef P4CS_PACKET_IO_P4
#define P4CS_PACKET_IO_P4

#include "headers.p4"

control PacketOut(inout headers_t hdr, inout local_metadata_t meta) {
    apply {
        bit<32> port = (bit<32>)hdr.packet_out.egress_port;
        if (port < P4CS_MAX_PORTS && port != P4CS_CPU_PORT) {
            meta.out_port = port;
        } else {
            meta.drop = true;
        }
        hdr.packet_out.setInvalid();
    }
}

control PacketInHeader(inout headers_t hdr, in bit<32> ingress_port, in bit<8> reason) {
    apply {
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = (bit<16>)ingress_port;
        hdr.packet_in.reason = reason;
        hdr.packet_in.pad0 = 0;
    }
}

control PacketIn(inout headers_t hdr, inout local_metadata_t meta) {
    PacketInHeader() packet_in_header;

    apply {
        packet_in_header.apply(hdr, meta.in_port, meta.punt_reason);
        meta.out_port = P4CS_CPU_PORT;
    }
}

#endif
