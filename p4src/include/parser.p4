/* p4cs — the parser, one body for both architectures (arch.p4 supplies the standard metadata).
 *
 * Bad input is handled deliberately:
 *  - unknown EtherTypes: only Ethernet is parsed; the frame is dropped by the forwarding stage
 *    (p4cs forwards IPv4 and answers ARP; nothing else is bridged).
 *  - IPv4 with options (ihl != 5) or fragments: L4 is not parsed; the parser marks
 *    ip_exception: towards a virtual service such packets go to the controller
 *    (REASON_IP_EXCEPTION), otherwise they are routed like any IPv4 packet.
 *  - TCP options: carried as payload, except in a SYN (SYN without ACK, RST or FIN), whose
 *    options are extracted as 32-bit words for the SYN-cookie answer (syn_cookie.p4).
 *  - truncated headers: on BMv2 the parser rejects the packet (PacketTooShort -> drop). The DPDK
 *    SWX `extract` does not bounds-check, see docs/architecture.md "Malformed packets".
 */
#ifndef P4CS_PARSER_P4
#define P4CS_PARSER_P4

#include "arch.p4"

parser P4csParser(packet_in pkt,
                  out headers_t hdr,
                  inout local_metadata_t meta,
                  P4CS_PARSER_STD)
{
    state start {
        transition select(P4CS_PARSER_IN_PORT) {
            P4CS_CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition parse_ethernet;
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_ARP:  parse_arp;
            default: accept;
        }
    }

    state parse_arp {
        pkt.extract(hdr.arp);
        transition accept;
    }

    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        meta.ip_exception = false;
        /* L4 only without options (IHL 5) and fragmentation (MF clear, offset 0); any other
         * IPv4 packet is an IP exception. */
        transition select(hdr.ipv4.version_ihl, hdr.ipv4.flags_frag_offset) {
            (8w5 &&& 8w0xF, 16w0 &&& 16w0x3FFF): parse_l4;
            default: ip_exception;
        }
    }

    state ip_exception {
        meta.ip_exception = true;
        transition accept;
    }

    state parse_l4 {
        transition select(hdr.ipv4.protocol) {
            IP_PROTO_TCP: parse_tcp;
            IP_PROTO_UDP: parse_udp;
            default: accept;
        }
    }

    state parse_tcp {
        pkt.extract(hdr.tcp);
        transition select(hdr.tcp.flags) {
            TCP_FLAG_SYN &&& (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN): parse_syn_options;
            default: accept;
        }
    }

    /* The data offset says how many option words follow (0..10); below 5 is malformed. One
     * select, then straight-line extracts (p4c-dpdk gives every select its own temporaries). */
    state parse_syn_options {
        transition select(hdr.tcp.data_offset) {
            6: parse_opts_1;
            7: parse_opts_2;
            8: parse_opts_3;
            9: parse_opts_4;
            10: parse_opts_5;
            11: parse_opts_6;
            12: parse_opts_7;
            13: parse_opts_8;
            14: parse_opts_9;
            15: parse_opts_10;
            default: accept;
        }
    }

    state parse_opts_1 {
        pkt.extract(hdr.tcp_opt0);
        transition accept;
    }

    state parse_opts_2 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        transition accept;
    }

    state parse_opts_3 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        transition accept;
    }

    state parse_opts_4 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        transition accept;
    }

    state parse_opts_5 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        pkt.extract(hdr.tcp_opt4);
        transition accept;
    }

    state parse_opts_6 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        pkt.extract(hdr.tcp_opt4);
        pkt.extract(hdr.tcp_opt5);
        transition accept;
    }

    state parse_opts_7 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        pkt.extract(hdr.tcp_opt4);
        pkt.extract(hdr.tcp_opt5);
        pkt.extract(hdr.tcp_opt6);
        transition accept;
    }

    state parse_opts_8 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        pkt.extract(hdr.tcp_opt4);
        pkt.extract(hdr.tcp_opt5);
        pkt.extract(hdr.tcp_opt6);
        pkt.extract(hdr.tcp_opt7);
        transition accept;
    }

    state parse_opts_9 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        pkt.extract(hdr.tcp_opt4);
        pkt.extract(hdr.tcp_opt5);
        pkt.extract(hdr.tcp_opt6);
        pkt.extract(hdr.tcp_opt7);
        pkt.extract(hdr.tcp_opt8);
        transition accept;
    }

    state parse_opts_10 {
        pkt.extract(hdr.tcp_opt0);
        pkt.extract(hdr.tcp_opt1);
        pkt.extract(hdr.tcp_opt2);
        pkt.extract(hdr.tcp_opt3);
        pkt.extract(hdr.tcp_opt4);
        pkt.extract(hdr.tcp_opt5);
        pkt.extract(hdr.tcp_opt6);
        pkt.extract(hdr.tcp_opt7);
        pkt.extract(hdr.tcp_opt8);
        pkt.extract(hdr.tcp_opt9);
        transition accept;
    }

    state parse_udp {
        pkt.extract(hdr.udp);
        transition accept;
    }
}

#endif
