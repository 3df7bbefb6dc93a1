/* p4cs — SYN cookies in the data plane: a SYN to a virtual service is answered here with a
 * SYN-ACK whose ISN is a cookie (host/p4cs/csproc/cookies.py defines it; the CS processor
 * validates it on the ACK that completes the handshake). The controller never sees the SYN.
 *
 *   isn = H1 + (t:5 | mss_idx:3 | ws:4 | H2[19:0])
 *   H1 = HalfSipHash-2-4(key1; cip, vip, cport ++ vport, client_isn)                  16 bytes
 *   H2 = HalfSipHash-2-4(key2; cip, vip, cport ++ vport, client_isn, t, mss_idx, ws)  19 bytes
 *
 * The keys and the time slot t come from the controller (syn_cookie_params' default action,
 * rewritten at every slot change); syn_table holds, per virtual service (VIP, port), what the
 * SYN-ACK announces. A SYN to a service without a syn_table entry, or before the controller
 * wrote the keys, takes the old way: to the controller.
 *
 * The SYN's options are walked like an end host does (kind/length, NOP, EOL; the first MSS
 * and window-scale options count): an option layout the walk cannot follow ends it, and what
 * was found so far is used (no MSS: index 0, 536 bytes; no window scale: 15, none). The
 * SYN-ACK carries its own options (MSS, then NOP + window scale when the client offered one
 * and the service scales) and full IPv4 and TCP checksums. A SYN carrying data is answered
 * the same way: the IPv4 total length covers the SYN-ACK alone, so the receiver ignores the
 * bytes that trail it.
 *
 * Written for p4c-dpdk: every statement is one two-operand operation on header or metadata
 * fields (no expression needs a compiler temporary, which would be metadata: the SWX metadata
 * struct must stay below 256 bytes), and the working state lives in the hdr.syn_cookie
 * header.
 */
#ifndef P4CS_SYN_COOKIE_P4
#define P4CS_SYN_COOKIE_P4

#include "headers.p4"

#define SC_ST hdr.syn_cookie

/* x = rotl(x, n), through SC_ST.t */
#define SC_ROTL(X, N) SC_ST.t = X; SC_ST.t = SC_ST.t >> (32 - N); X = X << N; X = X | SC_ST.t;

/* One HalfSipHash round on SC_ST.v0..3. */
#define SC_SIPROUND \
    SC_ST.v0 = SC_ST.v0 + SC_ST.v1; SC_ROTL(SC_ST.v1, 5) SC_ST.v1 = SC_ST.v1 ^ SC_ST.v0; \
    SC_ROTL(SC_ST.v0, 16) \
    SC_ST.v2 = SC_ST.v2 + SC_ST.v3; SC_ROTL(SC_ST.v3, 8) SC_ST.v3 = SC_ST.v3 ^ SC_ST.v2; \
    SC_ST.v0 = SC_ST.v0 + SC_ST.v3; SC_ROTL(SC_ST.v3, 7) SC_ST.v3 = SC_ST.v3 ^ SC_ST.v0; \
    SC_ST.v2 = SC_ST.v2 + SC_ST.v1; SC_ROTL(SC_ST.v1, 13) SC_ST.v1 = SC_ST.v1 ^ SC_ST.v2; \
    SC_ROTL(SC_ST.v2, 16)

#define SC_INIT(K0, K1) \
    SC_ST.v0 = K0; SC_ST.v1 = K1; \
    SC_ST.v2 = 0x6c796765; SC_ST.v2 = SC_ST.v2 ^ K0; \
    SC_ST.v3 = 0x74656462; SC_ST.v3 = SC_ST.v3 ^ K1;
/* Absorb a message word: c = 2 rounds. */
#define SC_WORD(M) SC_ST.v3 = SC_ST.v3 ^ M; SC_SIPROUND SC_SIPROUND SC_ST.v0 = SC_ST.v0 ^ M;
/* Finalisation of the 32-bit tag (v1 ^ v3): d = 4 rounds. */
#define SC_FINAL SC_ST.v2 = SC_ST.v2 ^ 0xff; SC_SIPROUND SC_SIPROUND SC_SIPROUND SC_SIPROUND \
    SC_ST.v1 = SC_ST.v1 ^ SC_ST.v3;
/* The 16 bytes both hashes start with, as HalfSipHash's little-endian words. */
#define SC_TUPLE \
    SC_WORD(hdr.ipv4.src_addr) SC_WORD(hdr.ipv4.dst_addr) \
    SC_ST.m = (bit<32>)hdr.tcp.src_port; SC_ST.m = SC_ST.m << 16; \
    SC_ST.m = SC_ST.m | (bit<32>)hdr.tcp.dst_port; SC_WORD(SC_ST.m) \
    SC_WORD(hdr.tcp.seq_no)

/* One step of the option walk: the option that starts at byte P of the options, when the
 * walk has arrived there (next == P). KIND, LEN, V0, V1 are bytes P .. P+3. */
#define SC_OPTION_AT(P, KIND, LEN, V0, V1) \
    if (SC_ST.next == P) { \
        SC_ST.end = (bit<16>)LEN; \
        SC_ST.end = SC_ST.end + P; \
        if (SC_ST.optlen <= P) { \
            SC_ST.next = 255; \
        } else if (KIND == 0) { \
            SC_ST.next = 255; \
        } else if (KIND == 1) { \
            SC_ST.next = P + 1; \
        } else if (SC_ST.optlen < P + 2) { \
            SC_ST.next = 255; \
        } else if (LEN < 2) { \
            SC_ST.next = 255; \
        } else if (SC_ST.optlen < SC_ST.end) { \
            SC_ST.next = 255; \
        } else { \
            if (KIND == 2) { if (LEN == 4) { if (SC_ST.has_mss == 0) { \
                SC_ST.client_mss = (bit<16>)V0; SC_ST.client_mss = SC_ST.client_mss << 8; \
                SC_ST.client_mss = SC_ST.client_mss | (bit<16>)V1; SC_ST.has_mss = 1; } } } \
            if (KIND == 3) { if (LEN == 3) { if (SC_ST.has_ws == 0) { \
                SC_ST.client_ws = V0; SC_ST.has_ws = 1; } } } \
            SC_ST.next = SC_ST.end; \
        } \
    }

/* sum += the two 16-bit halves of a 32-bit field */
#define SC_SUM32(F) \
    SC_ST.t = F; SC_ST.t = SC_ST.t >> 16; SC_ST.sum = SC_ST.sum + SC_ST.t; \
    SC_ST.t = F; SC_ST.t = SC_ST.t & 0xffff; SC_ST.sum = SC_ST.sum + SC_ST.t;
#define SC_SUM16(F) SC_ST.t = (bit<32>)F; SC_ST.sum = SC_ST.sum + SC_ST.t;
#define SC_FOLD \
    SC_ST.t = SC_ST.sum; SC_ST.t = SC_ST.t >> 16; SC_ST.sum = SC_ST.sum & 0xffff; \
    SC_ST.sum = SC_ST.sum + SC_ST.t; \
    SC_ST.t = SC_ST.sum; SC_ST.t = SC_ST.t >> 16; SC_ST.sum = SC_ST.sum & 0xffff; \
    SC_ST.sum = SC_ST.sum + SC_ST.t; SC_ST.sum = SC_ST.sum ^ 0xffff;

control SynCookie(inout headers_t hdr, inout local_metadata_t meta) {

    /* The keys (H1: key0, key1; H2: key2, key3, as HalfSipHash's little-endian key words),
     * the time slot (0..31) and the TTL of the SYN-ACK, written by the controller. */
    @name(".syn_cookie_keys")
    action syn_cookie_keys(bit<32> key0, bit<32> key1, bit<32> key2, bit<32> key3,
                           bit<8> time_slot, bit<8> synack_ttl) {
        SC_ST.k0 = key0;
        SC_ST.k1 = key1;
        SC_ST.k2 = key2;
        SC_ST.k3 = key3;
        SC_ST.slot = time_slot;
        SC_ST.ttl = synack_ttl;
        SC_ST.keyed = 1;
    }

    @name(".syn_cookie_off")
    action syn_cookie_off() {
        SC_ST.keyed = 0;
    }

    @name(".syn_cookie_params")
    table syn_cookie_params {
        key = { }
        actions = { syn_cookie_keys; syn_cookie_off; }
        default_action = syn_cookie_off;
        size = 1;
    }

    /* What the SYN-ACK of a virtual service announces: its MSS, its window scale (15: none)
     * and its window. */
    @name(".answer_syn")
    action answer_syn(bit<16> synack_mss, bit<8> synack_wscale, bit<16> synack_window) {
        SC_ST.mss = synack_mss;
        SC_ST.wscale = synack_wscale;
        SC_ST.window = synack_window;
        meta.syn_answered = true;
    }

    @name(".syn_miss")
    action syn_miss() { }

    @name(".syn_table")
    table syn_table {
        /* Header fields: p4c-dpdk copies a key of several headers' fields into metadata of
         * its own (as for the flow table). */
        key = {
            hdr.ipv4.dst_addr: exact @name("vip_addr");
            hdr.tcp.dst_port:  exact @name("vip_port");
        }
        actions = { answer_syn; @defaultonly syn_miss; }
        const default_action = syn_miss;
        size = P4CS_VIP_TABLE_SIZE;
    }

    apply {
        meta.syn_answered = false;
        SC_ST.setValid();
        SC_ST.keyed = 0;
        syn_table.apply();
        if (meta.syn_answered) {
            syn_cookie_params.apply();
            if (SC_ST.keyed == 0) {
                meta.syn_answered = false;
            }
        }
        if (meta.syn_answered) {
            /* The client's MSS and window scale. */
            SC_ST.optlen = 0;
            if (hdr.tcp.data_offset > 5) {
                SC_ST.optlen = (bit<16>)hdr.tcp.data_offset;
                SC_ST.optlen = SC_ST.optlen << 2;
                SC_ST.optlen = SC_ST.optlen - 20;
            }
            SC_ST.next = 0;
            SC_ST.has_mss = 0;
            SC_ST.has_ws = 0;
            SC_ST.client_mss = 0;
            SC_ST.client_ws = 0;
            SC_OPTION_AT(0, hdr.tcp_opt0.b0, hdr.tcp_opt0.b1, hdr.tcp_opt0.b2, hdr.tcp_opt0.b3)
            SC_OPTION_AT(1, hdr.tcp_opt0.b1, hdr.tcp_opt0.b2, hdr.tcp_opt0.b3, hdr.tcp_opt1.b0)
            SC_OPTION_AT(2, hdr.tcp_opt0.b2, hdr.tcp_opt0.b3, hdr.tcp_opt1.b0, hdr.tcp_opt1.b1)
            SC_OPTION_AT(3, hdr.tcp_opt0.b3, hdr.tcp_opt1.b0, hdr.tcp_opt1.b1, hdr.tcp_opt1.b2)
            SC_OPTION_AT(4, hdr.tcp_opt1.b0, hdr.tcp_opt1.b1, hdr.tcp_opt1.b2, hdr.tcp_opt1.b3)
            SC_OPTION_AT(5, hdr.tcp_opt1.b1, hdr.tcp_opt1.b2, hdr.tcp_opt1.b3, hdr.tcp_opt2.b0)
            SC_OPTION_AT(6, hdr.tcp_opt1.b2, hdr.tcp_opt1.b3, hdr.tcp_opt2.b0, hdr.tcp_opt2.b1)
            SC_OPTION_AT(7, hdr.tcp_opt1.b3, hdr.tcp_opt2.b0, hdr.tcp_opt2.b1, hdr.tcp_opt2.b2)
            SC_OPTION_AT(8, hdr.tcp_opt2.b0, hdr.tcp_opt2.b1, hdr.tcp_opt2.b2, hdr.tcp_opt2.b3)
            SC_OPTION_AT(9, hdr.tcp_opt2.b1, hdr.tcp_opt2.b2, hdr.tcp_opt2.b3, hdr.tcp_opt3.b0)
            SC_OPTION_AT(10, hdr.tcp_opt2.b2, hdr.tcp_opt2.b3, hdr.tcp_opt3.b0, hdr.tcp_opt3.b1)
            SC_OPTION_AT(11, hdr.tcp_opt2.b3, hdr.tcp_opt3.b0, hdr.tcp_opt3.b1, hdr.tcp_opt3.b2)
            SC_OPTION_AT(12, hdr.tcp_opt3.b0, hdr.tcp_opt3.b1, hdr.tcp_opt3.b2, hdr.tcp_opt3.b3)
            SC_OPTION_AT(13, hdr.tcp_opt3.b1, hdr.tcp_opt3.b2, hdr.tcp_opt3.b3, hdr.tcp_opt4.b0)
            SC_OPTION_AT(14, hdr.tcp_opt3.b2, hdr.tcp_opt3.b3, hdr.tcp_opt4.b0, hdr.tcp_opt4.b1)
            SC_OPTION_AT(15, hdr.tcp_opt3.b3, hdr.tcp_opt4.b0, hdr.tcp_opt4.b1, hdr.tcp_opt4.b2)
            SC_OPTION_AT(16, hdr.tcp_opt4.b0, hdr.tcp_opt4.b1, hdr.tcp_opt4.b2, hdr.tcp_opt4.b3)
            SC_OPTION_AT(17, hdr.tcp_opt4.b1, hdr.tcp_opt4.b2, hdr.tcp_opt4.b3, hdr.tcp_opt5.b0)
            SC_OPTION_AT(18, hdr.tcp_opt4.b2, hdr.tcp_opt4.b3, hdr.tcp_opt5.b0, hdr.tcp_opt5.b1)
            SC_OPTION_AT(19, hdr.tcp_opt4.b3, hdr.tcp_opt5.b0, hdr.tcp_opt5.b1, hdr.tcp_opt5.b2)
            SC_OPTION_AT(20, hdr.tcp_opt5.b0, hdr.tcp_opt5.b1, hdr.tcp_opt5.b2, hdr.tcp_opt5.b3)
            SC_OPTION_AT(21, hdr.tcp_opt5.b1, hdr.tcp_opt5.b2, hdr.tcp_opt5.b3, hdr.tcp_opt6.b0)
            SC_OPTION_AT(22, hdr.tcp_opt5.b2, hdr.tcp_opt5.b3, hdr.tcp_opt6.b0, hdr.tcp_opt6.b1)
            SC_OPTION_AT(23, hdr.tcp_opt5.b3, hdr.tcp_opt6.b0, hdr.tcp_opt6.b1, hdr.tcp_opt6.b2)
            SC_OPTION_AT(24, hdr.tcp_opt6.b0, hdr.tcp_opt6.b1, hdr.tcp_opt6.b2, hdr.tcp_opt6.b3)
            SC_OPTION_AT(25, hdr.tcp_opt6.b1, hdr.tcp_opt6.b2, hdr.tcp_opt6.b3, hdr.tcp_opt7.b0)
            SC_OPTION_AT(26, hdr.tcp_opt6.b2, hdr.tcp_opt6.b3, hdr.tcp_opt7.b0, hdr.tcp_opt7.b1)
            SC_OPTION_AT(27, hdr.tcp_opt6.b3, hdr.tcp_opt7.b0, hdr.tcp_opt7.b1, hdr.tcp_opt7.b2)
            SC_OPTION_AT(28, hdr.tcp_opt7.b0, hdr.tcp_opt7.b1, hdr.tcp_opt7.b2, hdr.tcp_opt7.b3)
            SC_OPTION_AT(29, hdr.tcp_opt7.b1, hdr.tcp_opt7.b2, hdr.tcp_opt7.b3, hdr.tcp_opt8.b0)
            SC_OPTION_AT(30, hdr.tcp_opt7.b2, hdr.tcp_opt7.b3, hdr.tcp_opt8.b0, hdr.tcp_opt8.b1)
            SC_OPTION_AT(31, hdr.tcp_opt7.b3, hdr.tcp_opt8.b0, hdr.tcp_opt8.b1, hdr.tcp_opt8.b2)
            SC_OPTION_AT(32, hdr.tcp_opt8.b0, hdr.tcp_opt8.b1, hdr.tcp_opt8.b2, hdr.tcp_opt8.b3)
            SC_OPTION_AT(33, hdr.tcp_opt8.b1, hdr.tcp_opt8.b2, hdr.tcp_opt8.b3, hdr.tcp_opt9.b0)
            SC_OPTION_AT(34, hdr.tcp_opt8.b2, hdr.tcp_opt8.b3, hdr.tcp_opt9.b0, hdr.tcp_opt9.b1)
            SC_OPTION_AT(35, hdr.tcp_opt8.b3, hdr.tcp_opt9.b0, hdr.tcp_opt9.b1, hdr.tcp_opt9.b2)
            SC_OPTION_AT(36, hdr.tcp_opt9.b0, hdr.tcp_opt9.b1, hdr.tcp_opt9.b2, hdr.tcp_opt9.b3)
            SC_OPTION_AT(37, hdr.tcp_opt9.b1, hdr.tcp_opt9.b2, hdr.tcp_opt9.b3, 8w0)
            SC_OPTION_AT(38, hdr.tcp_opt9.b2, hdr.tcp_opt9.b3, 8w0, 8w0)
            SC_OPTION_AT(39, hdr.tcp_opt9.b3, 8w0, 8w0, 8w0)

            /* The cookie's fields: MSS index (cookies.MSS_TABLE: the largest entry not above
             * the client's MSS) and window scale (capped at 14; 15: no option). */
            SC_ST.mi = 0;
            if (SC_ST.has_mss == 1) {
                if (SC_ST.client_mss >= 8960) { SC_ST.mi = 7; }
                else if (SC_ST.client_mss >= 1460) { SC_ST.mi = 6; }
                else if (SC_ST.client_mss >= 1452) { SC_ST.mi = 5; }
                else if (SC_ST.client_mss >= 1440) { SC_ST.mi = 4; }
                else if (SC_ST.client_mss >= 1400) { SC_ST.mi = 3; }
                else if (SC_ST.client_mss >= 1300) { SC_ST.mi = 2; }
                else if (SC_ST.client_mss >= 1200) { SC_ST.mi = 1; }
            }
            SC_ST.ws = 15;      /* also when the service offers no scaling: scaling is off */
            if (SC_ST.has_ws == 1) {
                if (SC_ST.wscale != 15) {
                    SC_ST.ws = SC_ST.client_ws;
                    if (SC_ST.client_ws > 14) { SC_ST.ws = 14; }
                }
            }

            SC_INIT(SC_ST.k0, SC_ST.k1)
            SC_TUPLE
            SC_ST.m = 0x10000000;
            SC_WORD(SC_ST.m)
            SC_FINAL
            SC_ST.h1 = SC_ST.v1;
            SC_INIT(SC_ST.k2, SC_ST.k3)
            SC_TUPLE
            /* the last three bytes t, mss_idx, ws and the length 19, little-endian */
            SC_ST.m = (bit<32>)SC_ST.ws;
            SC_ST.m = SC_ST.m << 8;
            SC_ST.m = SC_ST.m | (bit<32>)SC_ST.mi;
            SC_ST.m = SC_ST.m << 8;
            SC_ST.m = SC_ST.m | (bit<32>)SC_ST.slot;
            SC_ST.m = SC_ST.m | 0x13000000;
            SC_WORD(SC_ST.m)
            SC_FINAL

            /* The SYN-ACK, back where the SYN came from: ack = client ISN + 1, seq = cookie. */
            hdr.tcp.ack_no = hdr.tcp.seq_no;
            hdr.tcp.ack_no = hdr.tcp.ack_no + 1;
            SC_ST.v1 = SC_ST.v1 & 0xfffff;
            SC_ST.t = (bit<32>)SC_ST.ws;
            SC_ST.t = SC_ST.t << 20;
            SC_ST.v1 = SC_ST.v1 | SC_ST.t;
            SC_ST.t = (bit<32>)SC_ST.mi;
            SC_ST.t = SC_ST.t << 24;
            SC_ST.v1 = SC_ST.v1 | SC_ST.t;
            SC_ST.t = (bit<32>)SC_ST.slot;
            SC_ST.t = SC_ST.t << 27;
            SC_ST.v1 = SC_ST.v1 | SC_ST.t;
            SC_ST.v1 = SC_ST.v1 + SC_ST.h1;
            hdr.tcp.seq_no = SC_ST.v1;
            SC_ST.mac = hdr.ethernet.src_addr;
            hdr.ethernet.src_addr = hdr.ethernet.dst_addr;
            hdr.ethernet.dst_addr = SC_ST.mac;
            SC_ST.addr = hdr.ipv4.src_addr;
            hdr.ipv4.src_addr = hdr.ipv4.dst_addr;
            hdr.ipv4.dst_addr = SC_ST.addr;
            SC_ST.port = hdr.tcp.src_port;
            hdr.tcp.src_port = hdr.tcp.dst_port;
            hdr.tcp.dst_port = SC_ST.port;
            hdr.tcp_opt0.setInvalid();
            hdr.tcp_opt1.setInvalid();
            hdr.tcp_opt2.setInvalid();
            hdr.tcp_opt3.setInvalid();
            hdr.tcp_opt4.setInvalid();
            hdr.tcp_opt5.setInvalid();
            hdr.tcp_opt6.setInvalid();
            hdr.tcp_opt7.setInvalid();
            hdr.tcp_opt8.setInvalid();
            hdr.tcp_opt9.setInvalid();
            hdr.synack_mss.setValid();
            hdr.synack_mss.kind = 2;
            hdr.synack_mss.len = 4;
            hdr.synack_mss.mss = SC_ST.mss;
            SC_ST.tcp_len = 24;
            if (SC_ST.has_ws == 1) {
                if (SC_ST.wscale != 15) {
                    hdr.synack_ws.setValid();
                    hdr.synack_ws.nop = 1;
                    hdr.synack_ws.kind = 3;
                    hdr.synack_ws.len = 3;
                    hdr.synack_ws.shift = SC_ST.wscale;
                    SC_ST.tcp_len = 28;
                }
            }
            /* data offset (tcp_len / 4) and the four reserved bits (0), in one write */
            hdr.tcp.data_offset = 6;
            hdr.tcp.res = 0;
            if (SC_ST.tcp_len == 28) {
                hdr.tcp.data_offset = 7;
            }
            hdr.tcp.flags = TCP_FLAG_SYN | TCP_FLAG_ACK;
            hdr.tcp.window = SC_ST.window;
            hdr.tcp.urgent_ptr = 0;
            hdr.ipv4.diffserv = 0;
            hdr.ipv4.total_len = SC_ST.tcp_len;
            hdr.ipv4.total_len = hdr.ipv4.total_len + 20;
            hdr.ipv4.identification = 0;
            hdr.ipv4.version_ihl = 0x45;
            hdr.ipv4.flags_frag_offset = 0x4000;    /* DF, offset 0 */
            hdr.ipv4.ttl = SC_ST.ttl;

            /* Checksums from scratch: ones'-complement sums of 16-bit words, folded twice. */
            SC_ST.sum = 0x4500 + 0x4000 + (bit<32>)IP_PROTO_TCP;
            SC_SUM16(hdr.ipv4.total_len)
            SC_ST.t = (bit<32>)SC_ST.ttl;
            SC_ST.t = SC_ST.t << 8;
            SC_ST.sum = SC_ST.sum + SC_ST.t;
            SC_SUM32(hdr.ipv4.src_addr)
            SC_SUM32(hdr.ipv4.dst_addr)
            SC_FOLD
            hdr.ipv4.hdr_checksum = SC_ST.sum[15:0];

            /* pseudo header, TCP header, the MSS option (0x0204, mss) and NOP + window scale
             * (0x0103, 0x03 shift) */
            SC_ST.sum = (bit<32>)IP_PROTO_TCP + (bit<32>)(TCP_FLAG_SYN | TCP_FLAG_ACK) + 0x0204;
            SC_SUM32(hdr.ipv4.src_addr)
            SC_SUM32(hdr.ipv4.dst_addr)
            SC_SUM16(SC_ST.tcp_len)
            SC_SUM16(hdr.tcp.src_port)
            SC_SUM16(hdr.tcp.dst_port)
            SC_SUM32(hdr.tcp.seq_no)
            SC_SUM32(hdr.tcp.ack_no)
            SC_SUM16(hdr.tcp.window)
            SC_SUM16(SC_ST.mss)
            /* data offset: tcp_len / 4 in the top nibble, i.e. tcp_len << 10 */
            SC_ST.t = (bit<32>)SC_ST.tcp_len;
            SC_ST.t = SC_ST.t << 10;
            SC_ST.sum = SC_ST.sum + SC_ST.t;
            if (hdr.synack_ws.isValid()) {
                SC_ST.sum = SC_ST.sum + (0x0103 + 0x0300);
                SC_SUM16(SC_ST.wscale)
            }
            SC_FOLD
            hdr.tcp.checksum = SC_ST.sum[15:0];
            meta.out_port = meta.in_port;
        }
        SC_ST.setInvalid();
    }
}

#endif
