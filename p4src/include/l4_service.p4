/* p4cs — L4 virtual services, balanced entirely in the data plane.
 *
 * A virtual service without content rules (configuration `protocol: tcp` or `udp`) never
 * reaches the controller: the pipeline picks the server itself and translates the addresses
 * (transparent mode: the client's address reaches the server).
 *
 *  - l4_service: (VIP, protocol, port) -> the service's id and the expiry profile of its
 *    connections.
 *  - The server: a 16-bit hash of the 5-tuple, masked to the Maglev table size
 *    (P4CS_L4_MAGLEV_SIZE, a power of two), indexes l4_maglev: (service id, bucket) -> the
 *    server's address and port. The controller computes the table (Maglev, Eisenbud et al.,
 *    NSDI 2016: a change of the server set moves few buckets) and writes only the buckets
 *    that change.
 *  - l4_flows, the connections: on the DPDK target an add-on-miss table (SWX learner) that
 *    learns the server of a connection at its first packet, so that a later change of the
 *    Maglev table does not move an established connection (SilkRoad, SIGCOMM 2017:
 *    per-connection consistency); a hit re-arms the entry's expiry, a FIN or RST moves it to
 *    the short profile, and idle entries expire by themselves (TCP: the flow idle timeout,
 *    UDP: its own). On BMv2 (no add-on-miss) the table stays empty: every packet takes the
 *    Maglev pick, and a server-set change keeps only Maglev's minimal disruption.
 *  - Client -> VIP:port leaves with the server's address and port; server -> client, matched
 *    statelessly on the server's (address, protocol, port) in l4_reverse, leaves with
 *    VIP:port as its source. Both are then routed by ipv4_route (forwarding.p4), which
 *    writes the MACs and picks the port. Checksums are updated incrementally (RFC 1624); a
 *    UDP checksum of 0 (none) stays 0.
 *  - A service whose Maglev bucket has no server (none left) drops the packet.
 */
#ifndef P4CS_L4_SERVICE_P4
#define P4CS_L4_SERVICE_P4

#include "arch.p4"

/* Address a and port p of the packet become meta.l4_addr and meta.l4_port. */
#define P4CS_L4_NAT_HDR(l4, a, p) \
    P4CS_NAT_CSUM_OLD(hdr.l4.checksum, hdr.ipv4.a, hdr.l4.p); \
    hdr.ipv4.a = meta.l4_addr; \
    hdr.l4.p = meta.l4_port; \
    P4CS_NAT_CSUM_NEW(hdr.l4.checksum, hdr.ipv4.a, hdr.l4.p);
#define P4CS_L4_NAT(a, p)                                   \
    if (hdr.tcp.isValid()) {                                \
        P4CS_L4_NAT_HDR(tcp, a, p)                          \
    } else if (hdr.udp.checksum == 0) {                     \
        P4CS_L4_NAT_HDR(udp, a, p)                          \
        hdr.udp.checksum = 0;   /* none: it stays none */   \
    } else {                                                \
        P4CS_L4_NAT_HDR(udp, a, p)                          \
    }

struct l4_conn_args_t {
    ipv4_addr_t server_addr;
    bit<16>     server_port;
}

control L4Service(inout headers_t hdr, inout local_metadata_t meta) {

    P4CS_HASH_DECL(l4_hash)
    P4CS_NAT_CSUM_DECL

    @name(".l4_select")
    action l4_select(bit<16> service_id, bit<8> timeout_profile) {
        meta.l4_service = service_id;
        meta.l4_profile = timeout_profile;
    }

    @name(".l4_no_service")
    action l4_no_service() { }

    @name(".l4_service")
    table l4_service {
        key = {
            hdr.ipv4.dst_addr: exact @name("vip_addr");
            hdr.ipv4.protocol: exact @name("protocol");
            meta.l4_dport:     exact @name("vip_port");
        }
        actions = { l4_select; @defaultonly l4_no_service; }
        const default_action = l4_no_service;
        size = P4CS_L4_SERVICES;
    }

    @name(".l4_pick")
    action l4_pick(ipv4_addr_t server_addr, bit<16> server_port) {
        meta.l4_addr = server_addr;
        meta.l4_port = server_port;
    }

    @name(".l4_no_server")
    action l4_no_server() { }

    @name(".l4_maglev")
    table l4_maglev {
        key = {
            meta.l4_service: exact @name("service_id");
            meta.l4_bucket:  exact @name("bucket");
        }
        actions = { l4_pick; @defaultonly l4_no_server; }
        const default_action = l4_no_server;
        size = P4CS_L4_MAGLEV_ENTRIES;
    }

    /* The server of an established connection. */
    @name(".l4_conn")
    action l4_conn(ipv4_addr_t server_addr, bit<16> server_port) {
        meta.l4_addr = server_addr;
        meta.l4_port = server_port;
        if (meta.l4_end) {
            P4CS_END_EXPIRY;
        } else {
            P4CS_REARM_EXPIRY;
        }
    }

    /* A new connection: learn the Maglev pick (nothing when no server was picked). */
    @name(".l4_learn")
    action l4_learn() {
        if (meta.l4_addr != 0) {
            P4CS_LEARN("l4_conn", ((l4_conn_args_t){server_addr = meta.l4_addr,
                                                    server_port = meta.l4_port}),
                       meta.l4_profile);
        }
    }

    @name(".l4_flows")
    table l4_flows {
        key = {
            hdr.ipv4.src_addr: exact @name("src_addr");
            hdr.ipv4.dst_addr: exact @name("dst_addr");
            hdr.ipv4.protocol: exact @name("protocol");
            meta.l4_sport:     exact @name("src_port");
            meta.l4_dport:     exact @name("dst_port");
        }
        actions = { @tableonly l4_conn; @defaultonly l4_learn; }
        const default_action = l4_learn;
        size = P4CS_L4_FLOW_TABLE_SIZE;
        P4CS_LEARNING_TABLE
    }

    @name(".l4_unnat")
    action l4_unnat(ipv4_addr_t vip_addr, bit<16> vip_port) {
        meta.l4_addr = vip_addr;
        meta.l4_port = vip_port;
    }

    @name(".l4_no_reverse")
    action l4_no_reverse() { }

    @name(".l4_reverse")
    table l4_reverse {
        key = {
            hdr.ipv4.src_addr: exact @name("server_addr");
            hdr.ipv4.protocol: exact @name("protocol");
            meta.l4_sport:     exact @name("server_port");
        }
        actions = { l4_unnat; @defaultonly l4_no_reverse; }
        const default_action = l4_no_reverse;
        size = P4CS_L4_MAGLEV_ENTRIES;
    }

    apply {
        meta.l4_service = 0;
        meta.l4_addr = 0;
        meta.l4_end = false;
        if (hdr.tcp.isValid()) {
            meta.l4_sport = hdr.tcp.src_port;
            meta.l4_dport = hdr.tcp.dst_port;
            if ((hdr.tcp.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) != 0) {
                meta.l4_end = true;
            }
        } else {
            meta.l4_sport = hdr.udp.src_port;
            meta.l4_dport = hdr.udp.dst_port;
        }
        l4_service.apply();
        if (meta.l4_service != 0) {
            P4CS_HASH(l4_hash, meta.l4_bucket, hdr.ipv4.src_addr, hdr.ipv4.dst_addr,
                      hdr.ipv4.protocol, meta.l4_sport, meta.l4_dport);
            meta.l4_bucket = meta.l4_bucket & (P4CS_L4_MAGLEV_SIZE - 1);
            l4_maglev.apply();
            l4_flows.apply();
            if (meta.l4_addr == 0) {
                meta.drop = true;
            } else {
                P4CS_L4_NAT(dst_addr, dst_port)
            }
        } else {
            l4_reverse.apply();
            if (meta.l4_addr != 0) {
                P4CS_L4_NAT(src_addr, src_port)
            }
        }
    }
}
#undef P4CS_L4_NAT_HDR
#undef P4CS_L4_NAT

#endif
