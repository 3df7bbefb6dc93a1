/* p4cs — PNA program for the embedded DPDK SWX target (compiled with p4c-dpdk). */
#define P4CS_TARGET_PNA 1
#include "../include/main.p4"

control PreControlImpl(in headers_t hdr, inout local_metadata_t meta,
                       in pna_pre_input_metadata_t istd,
                       inout pna_pre_output_metadata_t ostd) {
    apply { }
}

PNA_NIC(P4csParser(), PreControlImpl(), P4csMain(), P4csDeparser()) main;
