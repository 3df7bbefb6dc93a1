/* p4cs — everything that is not a spliced flow:
 *  - ARP: the switch answers ARP requests for its own addresses (gateways, VIPs, SNAT
 *    addresses) in the data plane (arp_table); ARP replies go to the controller, which
 *    resolves the MACs of servers and other neighbours with requests it sends itself.
 *  - Virtual services: vip_table marks client -> VIP:port traffic, backend_table marks real
 *    server -> client traffic (transparent mode), local_table switch-owned addresses (SNAT
 *    address, VIP address on other ports, gateways). A flow-table miss on any of them is
 *    punted to the controller with a reason ("Case B").
 *  - Everything else is routed by ipv4_route (longest prefix match -> port and MACs).
 *    TTL is not decremented: p4cs forwards like a bridge between its ports.
 */
#ifndef P4CS_FORWARDING_P4
#define P4CS_FORWARDING_P4

#include "headers.p4"

control Forwarding(inout headers_t hdr, inout local_metadata_t meta) {

    @name(".arp_reply")
    action arp_reply(mac_addr_t mac) {
        bit<32> requested = hdr.arp.tpa;
        hdr.arp.oper = ARP_OPER_REPLY;
        hdr.arp.tha = hdr.arp.sha;
        hdr.arp.tpa = hdr.arp.spa;
        hdr.arp.sha = mac;
        hdr.arp.spa = requested;
        hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
        hdr.ethernet.src_addr = mac;
        meta.out_port = meta.in_port;
    }

    /* Every table has its own actions (p4c-dpdk copies an action shared by several tables
     * under new names, which would make the P4Info ambiguous for the embedded target). */
    @name(".arp_drop")
    action arp_drop() {
        meta.drop = true;
    }

    @name(".arp_table")
    table arp_table {
        key = { hdr.arp.tpa: exact @name("target_addr"); }
        actions = { arp_reply; @defaultonly arp_drop; }
        const default_action = arp_drop;
        size = P4CS_ARP_TABLE_SIZE;
    }

    /* A flow-table miss on client -> VIP:port traffic goes to the controller. */
    @name(".punt_vip")
    action punt_vip() {
        meta.punt_reason = REASON_VIP_MISS;
    }

    @name(".vip_miss")
    action vip_miss() { }

    @name(".vip_table")
    table vip_table {
        key = {
            hdr.ipv4.dst_addr: exact @name("vip_addr");
            hdr.ipv4.protocol: exact @name("protocol");
            hdr.tcp.dst_port:  exact @name("vip_port");
        }
        actions = { punt_vip; @defaultonly vip_miss; }
        const default_action = vip_miss;
        size = P4CS_VIP_TABLE_SIZE;
    }

    /* A flow-table miss on real server -> client traffic (transparent mode). */
    @name(".punt_backend")
    action punt_backend() {
        meta.punt_reason = REASON_BACKEND_MISS;
    }

    @name(".backend_miss")
    action backend_miss() { }

    @name(".backend_table")
    table backend_table {
        key = {
            hdr.ipv4.src_addr: exact @name("server_addr");
            hdr.ipv4.protocol: exact @name("protocol");
            hdr.tcp.src_port:  exact @name("server_port");
        }
        actions = { punt_backend; @defaultonly backend_miss; }
        const default_action = backend_miss;
        size = P4CS_VIP_TABLE_SIZE;
    }

    /* Anything addressed to a switch-owned address. */
    @name(".punt_local")
    action punt_local() {
        meta.punt_reason = REASON_LOCAL;
    }

    @name(".local_miss")
    action local_miss() { }

    @name(".local_table")
    table local_table {
        key = { hdr.ipv4.dst_addr: exact @name("addr"); }
        actions = { punt_local; @defaultonly local_miss; }
        const default_action = local_miss;
        size = P4CS_VIP_TABLE_SIZE;
    }

    @name(".route")
    action route(bit<32> port, mac_addr_t dmac, mac_addr_t smac) {
        hdr.ethernet.dst_addr = dmac;
        hdr.ethernet.src_addr = smac;
        meta.out_port = port;
    }

    @name(".route_drop")
    action route_drop() {
        meta.drop = true;
    }

    @name(".ipv4_route")
    table ipv4_route {
        key = { hdr.ipv4.dst_addr: lpm @name("dst_addr"); }
        actions = { route; route_drop; }
        const default_action = route_drop;
        size = P4CS_ROUTE_TABLE_SIZE;
    }

    apply {
        if (hdr.arp.isValid()) {
            if (hdr.arp.oper == ARP_OPER_REQUEST) {
                arp_table.apply();
            } else if (hdr.arp.oper == ARP_OPER_REPLY) {
                meta.punt_reason = REASON_ARP;
            } else {
                meta.drop = true;
            }
        } else if (hdr.ipv4.isValid()) {
            if (hdr.tcp.isValid() && !meta.ip_exception) {
                vip_table.apply();
                if (meta.punt_reason == 0) {
                    backend_table.apply();
                }
            }
            if (meta.punt_reason == 0) {
                local_table.apply();
                if (meta.punt_reason != 0 && meta.ip_exception) {
                    meta.punt_reason = REASON_IP_EXCEPTION;
                }
            }
            if (meta.punt_reason == 0) {
                ipv4_route.apply();
            }
        } else {
            meta.drop = true;   /* unknown EtherType */
        }
    }
}

#endif
