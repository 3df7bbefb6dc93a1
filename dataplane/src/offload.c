/* SPDX-License-Identifier: Apache-2.0
 *
 * Kernel offloads seen by AF_PACKET ports: frames whose L4 checksum the kernel left to "the
 * hardware" (CHECKSUM_PARTIAL) and GSO super-frames (TSO/GSO on the sending side of a veth,
 * GRO on a NIC). The socket runs with PACKET_VNET_HDR, so every frame comes with a
 * virtio-net header that says which of the two it is; this file turns both into the frames a
 * wire would have carried:
 *   - partial checksum: the checksum field holds the pseudo-header sum; summing from
 *     csum_start to the end of the frame and storing the complement completes it;
 *   - super-frame (TCPv4, TCPv6, UDP_L4): cut into segments of gso_size payload bytes, each
 *     with a copy of the headers, its own IPv4 length / id / header checksum (IPv6 payload
 *     length), TCP sequence number and flags (FIN / PSH on the last segment only, CWR on the
 *     first) or UDP length, and a full L4 checksum.
 * With --gso pass (P4CS_SWXD_GSO=pass, the default) a super-frame crosses the pipeline whole
 * instead and leaves with a virtio-net header again (offload_gso_hdr()): the kernel, or the
 * peer's stack on a veth, cuts it; only outputs that cannot take the header (AF_XDP, TAP, the
 * CPU and copy ports, pcap sinks) get it cut here, after the pipeline (fastio.c).
 * AF_XDP ports get no such header: offload_csum_partial() recognises a partial checksum by its
 * value (the folded pseudo-header sum, which is what the kernel leaves in the field) and
 * completes it. A complete checksum that happens to have that value is recomputed to itself.
 */
#include <string.h>
#include <arpa/inet.h>
#include <linux/virtio_net.h>

#include "swxd.h"

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5   /* linux/virtio_net.h of kernels >= 4.18 */
#endif

static uint32_t sum16(uint32_t sum, const uint8_t *p, uint32_t n)
{
	while (n > 1) {
		sum += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		n -= 2;
		if (sum & 0x80000000u)
			sum = (sum & 0xffff) + (sum >> 16);
	}
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

int offload_csum_complete(uint8_t *frame, uint32_t len, const struct virtio_net_hdr *vh)
{
	uint32_t start = vh->csum_start, field = start + vh->csum_offset;
	uint16_t ck;

	if (start >= len || field + 2 > len)
		return -1;
	ck = (uint16_t)~fold(sum16(0, frame + start, len - start));
	if (!ck && vh->csum_offset == 6)
		ck = 0xffff;   /* UDP: 0 would mean "no checksum" */
	put16(frame + field, ck);
	return 0;
}

/* Offset of the IP header after Ethernet and up to two VLAN tags, its version in *ver. */
static int l3_offset(const uint8_t *f, uint32_t len, int *ver)
{
	uint32_t off = 12;
	uint16_t type;

	for (;;) {
		if (off + 2 > len)
			return -1;
		type = get16(f + off);
		off += 2;
		if (type != 0x8100 && type != 0x88a8)
			break;
		off += 2;
	}
	if (type == 0x0800)
		*ver = 4;
	else if (type == 0x86dd)
		*ver = 6;
	else
		return -1;
	return (int)off;
}

int gso_start(struct gso_state *st, const uint8_t *data, uint32_t len,
	      const struct virtio_net_hdr *vh, uint32_t room)
{
	uint8_t type = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	int l3, ver;

	memset(st, 0, sizeof(*st));
	if (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6 &&
	    type != VIRTIO_NET_HDR_GSO_UDP_L4)
		return -1;
	l3 = l3_offset(data, len, &ver);
	if (l3 < 0 || !vh->gso_size || !(vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return -1;
	if ((ver == 4) != (type == VIRTIO_NET_HDR_GSO_TCPV4) && type != VIRTIO_NET_HDR_GSO_UDP_L4)
		return -1;
	st->l3 = (uint32_t)l3;
	st->l4 = vh->csum_start;
	st->udp = type == VIRTIO_NET_HDR_GSO_UDP_L4;
	st->v6 = ver == 6;
	if (st->l4 < st->l3 + (st->v6 ? 40 : 20) || st->l4 + (st->udp ? 8 : 20) > len)
		return -1;
	st->hdr = st->l4 + (st->udp ? 8 : (uint32_t)(data[st->l4 + 12] >> 4) * 4);
	if (st->hdr >= len || st->hdr + vh->gso_size > room)
		return -1;
	st->data = data;
	st->len = len;
	st->mss = vh->gso_size;
	st->off = st->hdr;
	return 0;
}

uint32_t gso_next(struct gso_state *st, uint8_t *out)
{
	uint32_t n = st->len - st->off, seg, l4len;
	uint8_t *ip = out + st->l3, *l4 = out + st->l4;
	uint32_t sum;
	int last;

	if (n > st->mss)
		n = st->mss;
	last = st->off + n >= st->len;
	memcpy(out, st->data, st->hdr);
	memcpy(out + st->hdr, st->data + st->off, n);
	seg = st->hdr + n;
	l4len = seg - st->l4;

	if (st->v6) {
		put16(ip + 4, (uint16_t)(seg - st->l3 - 40));
		sum = sum16(0, ip + 8, 32);
	} else {
		put16(ip + 2, (uint16_t)(seg - st->l3));
		put16(ip + 4, (uint16_t)(get16(ip + 4) + st->k));
		put16(ip + 10, 0);
		put16(ip + 10, (uint16_t)~fold(sum16(0, ip, (uint32_t)(ip[0] & 0xf) * 4)));
		sum = sum16(0, ip + 12, 8);
	}
	sum += (st->udp ? 17 : 6) + l4len;
	if (st->udp) {
		put16(l4 + 4, (uint16_t)l4len);
		put16(l4 + 6, 0);
	} else {
		uint32_t seq = ((uint32_t)get16(l4 + 4) << 16 | get16(l4 + 6)) +
			       (st->off - st->hdr);

		put16(l4 + 4, (uint16_t)(seq >> 16));
		put16(l4 + 6, (uint16_t)seq);
		if (!last)
			l4[13] &= (uint8_t)~0x09;   /* FIN, PSH */
		if (st->k)
			l4[13] &= (uint8_t)~0x80;   /* CWR */
		put16(l4 + 16, 0);
	}
	sum = (uint16_t)~fold(sum16(sum, l4, l4len));
	if (st->udp && !sum)
		sum = 0xffff;
	put16(l4 + (st->udp ? 6 : 16), (uint16_t)sum);

	st->off += n;
	st->k++;
	return seg;
}

int gso_done(const struct gso_state *st)
{
	return st->off >= st->len;
}

int offload_csum_partial(uint8_t *f, uint32_t len)
{
	struct virtio_net_hdr vh;
	uint32_t l4, l4len, sum, field;
	uint8_t proto;
	int l3, ver;

	l3 = l3_offset(f, len, &ver);
	if (l3 < 0)
		return 0;
	if (ver == 4) {
		uint32_t ihl = (uint32_t)(f[l3] & 0xf) * 4, tot;

		if ((uint32_t)l3 + 20 > len || ihl < 20 || (get16(f + l3 + 6) & 0x3fff))
			return 0;   /* short, or a fragment */
		tot = get16(f + l3 + 2);
		if (tot < ihl || l3 + tot > len)
			return 0;
		proto = f[l3 + 9];
		l4 = (uint32_t)l3 + ihl;
		l4len = tot - ihl;
		sum = sum16(0, f + l3 + 12, 8);
	} else {
		if ((uint32_t)l3 + 40 > len)
			return 0;
		proto = f[l3 + 6];   /* no extension headers */
		l4 = (uint32_t)l3 + 40;
		l4len = get16(f + l3 + 4);
		if (l4 + l4len > len)
			return 0;
		sum = sum16(0, f + l3 + 8, 32);
	}
	if (proto == 6 && l4len >= 20)
		field = 16;
	else if (proto == 17 && l4len >= 8)
		field = 6;
	else
		return 0;
	if (get16(f + l4 + field) != fold(sum + proto + l4len))
		return 0;
	memset(&vh, 0, sizeof(vh));
	vh.csum_start = (uint16_t)l4;
	vh.csum_offset = (uint16_t)field;
	return offload_csum_complete(f, l4 + l4len, &vh) == 0;
}

/* The virtio-net header that hands a super-frame (the Ethernet frame f, len bytes, gso_size
 * payload bytes per segment) to the kernel: NEEDS_CSUM from the L4 header on, the GSO kind of
 * the frame (TCPv4, TCPv6 with ECN when CWR is set, UDP_L4) and its header length. The L4
 * checksum field gets the pseudo-header sum of the addresses and L4 length the frame carries
 * now, as a CHECKSUM_PARTIAL frame of the kernel has it: the pipeline's incremental updates
 * (addresses, ports, sequence numbers) are right for a complete checksum, not for that sum.
 * Returns -1 if the frame is not a TCP / UDP super-frame whose IP length is the frame's. */
int offload_gso_hdr(uint8_t *f, uint32_t len, uint16_t gso_size, struct virtio_net_hdr *vh)
{
	uint32_t l4, l4len, sum, field, hdr;
	uint8_t proto, type;
	int l3, ver;

	l3 = l3_offset(f, len, &ver);
	if (l3 < 0 || !gso_size)
		return -1;
	if (ver == 4) {
		uint32_t ihl = (uint32_t)(f[l3] & 0xf) * 4;

		if ((uint32_t)l3 + 20 > len || ihl < 20 || (get16(f + l3 + 6) & 0x3fff) ||
		    (uint32_t)l3 + get16(f + l3 + 2) != len || get16(f + l3 + 2) < ihl)
			return -1;
		proto = f[l3 + 9];
		l4 = (uint32_t)l3 + ihl;
		sum = sum16(0, f + l3 + 12, 8);
	} else {
		if ((uint32_t)l3 + 40 > len || (uint32_t)l3 + 40 + get16(f + l3 + 4) != len)
			return -1;
		proto = f[l3 + 6];   /* no extension headers */
		l4 = (uint32_t)l3 + 40;
		sum = sum16(0, f + l3 + 8, 32);
	}
	l4len = len - l4;
	if (proto == 6 && l4len >= 20) {
		field = 16;
		hdr = l4 + (uint32_t)(f[l4 + 12] >> 4) * 4;
		type = ver == 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
		if (f[l4 + 13] & 0x80)
			type |= VIRTIO_NET_HDR_GSO_ECN;   /* CWR: SKB_GSO_TCP_ECN */
	} else if (proto == 17 && l4len >= 8) {
		field = 6;
		hdr = l4 + 8;
		type = VIRTIO_NET_HDR_GSO_UDP_L4;
	} else {
		return -1;
	}
	if (hdr < l4 + (proto == 6 ? 20 : 8) || hdr >= len)
		return -1;
	put16(f + l4 + field, fold(sum + proto + l4len));
	memset(vh, 0, sizeof(*vh));
	vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	vh->gso_type = type;
	vh->hdr_len = (uint16_t)hdr;
	vh->gso_size = gso_size;
	vh->csum_start = (uint16_t)l4;
	vh->csum_offset = (uint16_t)field;
	return 0;
}
