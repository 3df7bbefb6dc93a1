/* SPDX-License-Identifier: Apache-2.0
 *
 * Port fast paths: what sits between the SWX pipeline and its input/output port objects.
 *
 * 1. Input shims (every input port): count the packets the pipeline took (the main loop blocks
 *    when a pass took none), gate the inputs while pipeline_quiesce() drains the pipeline
 *    threads, and skip ports known to be empty:
 *      - the idle rings that pad the inputs to a power of two are never polled at all;
 *      - an fd-backed port whose last read found nothing is "dry" and is not read again until
 *        epoll reports its fd readable (fastio_mark_ready()). Without this every rx attempt on
 *        an empty fd port costs a burst of mbuf allocations + read() + frees, and the pipeline
 *        polls its inputs round robin: with one busy port out of four, three wasted syscalls
 *        per forwarded packet.
 * 2. Socket ports (AF_PACKET, the CPU / copy SOCK_SEQPACKET ends): receive with recvmmsg()
 *    and transmit with sendmmsg(), one system call per burst of up to BURST frames instead of
 *    one read()/write() per frame. TAP fds (character devices) keep DPDK's read()/write().
 * 3. AF_PACKET ports receive through a TPACKET_V2 ring (PACKET_RX_RING) instead: no system
 *    call at all on receive (env P4CS_SWXD_NO_RING=1 falls back to recvmmsg).
 * 4. The copy port (mirror copies for the controller): every message is the input port of the
 *    copied packet (4 bytes, network byte order) followed by the frame as the pipeline emitted
 *    it. The input shims record the input port in the mbuf (`port`) for this.
 * 5. AF_XDP ports (afxdp.c): frames are copied from the socket's receive ring into mbufs, and
 *    the output port's functions are replaced by ones that copy into its transmit ring.
 * 6. AF_PACKET frames carry a virtio-net header (PACKET_VNET_HDR): partial checksums are
 *    completed before the pipeline sees them (offload.c). Super-frames (GSO) either cross the
 *    pipeline whole (gso_pass: one pass per super-frame, in an mbuf of the super-frame pool
 *    when the default one is too small; its gso_size in tso_segsz with RTE_MBUF_F_TX_TCP_SEG
 *    or _UDP_SEG, its checksum left partial) and leave an AF_PACKET port with a virtio-net
 *    header for the kernel to cut, or are cut into segments in the receiving port (gso cut,
 *    and whenever a super-frame does not fit an mbuf or the super-frame pool is empty).
 *    Outputs that cannot take the header (AF_XDP, TAP, CPU, copy, pcap sink) get a
 *    super-frame cut into wire-sized segments after the pipeline (tx_cut).
 *    A super-frame larger than a ring frame reaches the ring truncated, marked TP_STATUS_COPY,
 *    with its full copy on the socket's queue (PACKET_COPY_THRESH), read from there.
 *
 * The fd reader/writer objects are DPDK 22.11's (lib/port/rte_swx_port_fd.c); their private
 * layouts are mirrored below so that the port statistics the control protocol reports stay
 * exact. The daemon is built against exactly that version (see the internal header use in
 * pipeline.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <linux/if_packet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <linux/virtio_net.h>

#include <rte_mbuf.h>
#include <rte_swx_port.h>
#include "rte_swx_pipeline_internal.h"

#include "swxd.h"

#define BURST 32

/* lib/port/rte_swx_port_fd.c (22.11) */
struct fd_reader {
	struct {
		int fd;
		uint32_t mtu;
		uint32_t burst_size;
		struct rte_mempool *mempool;
	} params;
	struct rte_swx_port_in_stats stats;
	struct rte_mbuf **pkts;
	uint32_t n_pkts;
	uint32_t pos;
};

struct fd_writer {
	struct {
		int fd;
		uint32_t mtu;
		uint32_t burst_size;
		struct rte_mempool *mempool;
	} params;
	struct rte_swx_port_out_stats stats;
	struct rte_mbuf **pkts;
	uint32_t n_pkts;
};

enum shim_kind { SHIM_IDLE, SHIM_SOURCE, SHIM_FD, SHIM_SOCK, SHIM_RING, SHIM_XSK };

/* AF_PACKET receive ring (TPACKET_V2): the kernel copies frames into shared memory in the
 * sender's context; the data plane takes them without a system call. Frames of 2 KiB (more
 * for a jumbo MTU), 8 MiB per port. */
#define RING_FRAME_MIN 2048
#define RING_BYTES (8u << 20)
#define RING_FRAME_HDR 128             /* tpacket2_hdr + sockaddr_ll + virtio-net header */
#define SUPER_FRAME_MAX (256u << 10)   /* bounce buffer for super-frames off the ring */

#define VNET_LEN sizeof(struct virtio_net_hdr)
#define INJECT_MAX 64

struct rx_shim {
	enum shim_kind kind;
	rte_swx_port_in_pkt_rx_t pkt_rx;    /* the port's own rx (SHIM_SOURCE, SHIM_FD) */
	struct fd_reader *reader;
	int dry;                            /* fd port: last read found nothing */
	/* SHIM_SOCK */
	int fd;
	uint32_t mtu;
	uint32_t n, pos;                    /* received frames in m[0..n), next one to hand out */
	uint32_t n_empty;                   /* m[0..n_empty) handed out, to refill */
	struct rte_mbuf *m[BURST];
	struct mmsghdr msgs[BURST];
	struct iovec iov[BURST][2];         /* [0]: virtio-net header (AF_PACKET), [1]: frame */
	/* SHIM_RING */
	uint8_t *ring;
	uint32_t ring_frames, ring_pos, ring_frame_size;
	/* AF_PACKET (ring or recvmmsg): virtio-net headers, offloads */
	struct port_cfg *pc;
	struct virtio_net_hdr vh[BURST];
	struct gso_state gso;
	int in_gso;                         /* segments of gso.data still to hand out */
	int gso_holds_slot;                 /* ... which sits in ring slot ring_pos */
	uint8_t *bounce;                    /* a super-frame read off the socket's queue */
	/* frames to run through the pipeline again from this port (reuse.c), before any read */
	struct rte_mbuf *inj[INJECT_MAX];
	uint32_t inj_head, inj_n;
};

static struct rx_shim shims[SWXD_MAX_PORTS];
#define COPY_PORT_HDR 4          /* the copy port's frames: ingress port (big endian), frame */
static struct fd_writer *writers[SWXD_MAX_PORTS];   /* socket output of port i, else NULL */
static uint32_t n_shims;
static uint32_t n_dry;                  /* fd ports currently dry */
static uint32_t n_pollable;             /* fd ports (the ones that can be dry) */
static uint32_t n_injected;             /* frames in the shims' inject queues */
static struct fd_writer *cpu_writer;    /* the CPU port's socket output */
static uint32_t n_sources;              /* pcap sources: never dry */
static uint64_t n_rx_syscalls, n_tx_syscalls;

static int is_socket(int fd)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static inline void set_dry(struct rx_shim *s)
{
	if (!s->dry) {
		s->dry = 1;
		n_dry++;
	}
}

enum discard { D_TRUNCATED, D_GSO_NO_RING, D_GSO_KIND, D_GSO_COPY, D_CSUM, D_N };

static const char *const discard_why[D_N] = {
	[D_TRUNCATED] = "larger than the receive buffer",
	[D_GSO_NO_RING] = "super-frame with the receive ring off (P4CS_SWXD_NO_RING)",
	[D_GSO_KIND] = "super-frame of a kind the port does not segment",
	[D_GSO_COPY] = "super-frame copy missing from the socket queue",
	[D_CSUM] = "partial checksum outside the frame",
};

/* A frame the port discards: counted, and said once per port and reason. */
static void rx_discard(struct rx_shim *s, enum discard why)
{
	static uint8_t said[SWXD_MAX_PORTS][D_N];
	uint32_t port = (uint32_t)(s->pc - g.ports);

	s->pc->cnt.rx_errors++;
	if (!said[port][why]) {
		said[port][why] = 1;
		LOG_ERR("port %u (%s): frame discarded: %s (counted in rx_errors)", port, s->pc->arg,
			discard_why[why]);
	}
}

/* The checks and completion every frame of an AF_PACKET port gets, but segmentation. Returns
 * 0 if the frame (len bytes at f) goes to the pipeline. */
static int rx_offload(struct rx_shim *s, uint8_t *f, uint32_t len, const struct virtio_net_hdr *vh,
		      int truncated)
{
	if (truncated) {
		rx_discard(s, D_TRUNCATED);
		return -1;
	}
	if (vh->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		rx_discard(s, D_GSO_NO_RING);
		return -1;
	}
	if (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (offload_csum_complete(f, len, vh)) {
			rx_discard(s, D_CSUM);
			return -1;
		}
		s->pc->cnt.csum_completed++;
	}
	return 0;
}

static int sock_rx(struct rx_shim *s, struct rte_swx_pkt *pkt)
{
	struct rte_mbuf *m;

	if (s->pos == s->n) {
		uint32_t i;
		int r;

		if (s->n_empty) {
			if (rte_pktmbuf_alloc_bulk(s->reader->params.mempool, s->m, s->n_empty))
				return 0;
			for (i = 0; i < s->n_empty; i++)
				s->iov[i][1].iov_base = rte_pktmbuf_mtod(s->m[i], void *);
			s->n_empty = 0;
			s->n = s->pos = 0;
		}
		r = recvmmsg(s->fd, s->msgs, BURST, MSG_DONTWAIT, NULL);
		n_rx_syscalls++;
		if (r <= 0) {
			set_dry(s);
			return 0;
		}
		for (i = 0; i < (uint32_t)r; i++) {
			uint32_t len = s->msgs[i].msg_len;

			if (s->pc) {
				len = len > VNET_LEN ? len - (uint32_t)VNET_LEN : 0;
				if (rx_offload(s, rte_pktmbuf_mtod(s->m[i], uint8_t *), len, &s->vh[i],
					       s->msgs[i].msg_hdr.msg_flags & MSG_TRUNC))
					len = 0;   /* discarded (counted): skipped below */
			}
			s->m[i]->data_len = (uint16_t)len;
			s->m[i]->pkt_len = len;
			if (len) {
				s->reader->stats.n_pkts++;
				s->reader->stats.n_bytes += len;
			}
		}
		s->n = s->n_empty = (uint32_t)r;
		s->pos = 0;
	}
	do {
		if (s->pos == s->n)
			return 0;
		m = s->m[s->pos++];
		if (!m->pkt_len)
			rte_pktmbuf_free(m);   /* discarded above */
	} while (!m->pkt_len);
	pkt->handle = m;
	pkt->pkt = m->buf_addr;
	pkt->offset = m->data_off;
	pkt->length = m->pkt_len;
	return 1;
}

static void rx_deliver(struct rx_shim *s, struct rte_mbuf *m, uint32_t len, struct rte_swx_pkt *pkt)
{
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
	s->reader->stats.n_pkts++;
	s->reader->stats.n_bytes += len;
	pkt->handle = m;
	pkt->pkt = m->buf_addr;
	pkt->offset = m->data_off;
	pkt->length = len;
}

static void ring_release(struct rx_shim *s, struct tpacket2_hdr *h)
{
	__atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
	if (++s->ring_pos == s->ring_frames)
		s->ring_pos = 0;
}

static inline struct tpacket2_hdr *ring_slot(struct rx_shim *s)
{
	return (void *)(s->ring + (size_t)s->ring_pos * s->ring_frame_size);
}

/* The next segment of the super-frame in s->gso. */
static int gso_rx(struct rx_shim *s, struct rte_swx_pkt *pkt)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(s->reader->params.mempool);

	if (!m)
		return 0;
	rx_deliver(s, m, gso_next(&s->gso, rte_pktmbuf_mtod(m, uint8_t *)), pkt);
	s->pc->cnt.gso_segments++;
	if (gso_done(&s->gso)) {
		s->in_gso = 0;
		if (s->gso_holds_slot)
			ring_release(s, ring_slot(s));
	}
	return 1;
}

/* The full copy of a super-frame the ring holds truncated (TP_STATUS_COPY): read straight into
 * an mbuf of the super-frame pool (gso pass) when it fits one, else into the bounce buffer.
 * *big is that mbuf, or NULL with the frame in s->bounce. */
static int copy_recv(struct rx_shim *s, struct virtio_net_hdr *vh, uint32_t *len,
		     struct rte_mbuf **big)
{
	struct rte_mbuf *m = g.super_pool ? rte_pktmbuf_alloc(g.super_pool) : NULL;
	uint32_t room = m ? rte_pktmbuf_tailroom(m) : 0;
	struct iovec iov[3] = {
		{ .iov_base = vh, .iov_len = VNET_LEN },
		{ .iov_base = m ? rte_pktmbuf_mtod(m, void *) : NULL, .iov_len = room },
		{ .iov_base = s->bounce + room, .iov_len = SUPER_FRAME_MAX - room },
	};
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };
	ssize_t n;

	n = recvmsg(s->fd, &mh, MSG_DONTWAIT);
	n_rx_syscalls++;
	if (n < (ssize_t)VNET_LEN || (mh.msg_flags & MSG_TRUNC)) {
		rte_pktmbuf_free(m);
		return -1;
	}
	*len = (uint32_t)n - (uint32_t)VNET_LEN;
	if (m && *len > room) {
		/* larger than an mbuf: the whole frame into the bounce buffer */
		memcpy(s->bounce, rte_pktmbuf_mtod(m, void *), room);
		rte_pktmbuf_free(m);
		m = NULL;
	}
	*big = m;
	return 0;
}

/* An mbuf for a super-frame of len bytes (gso_pass): the default pool's if it fits. */
static struct rte_mbuf *super_mbuf(uint32_t len)
{
	if (len <= g.frame_max)
		return rte_pktmbuf_alloc(g.pool);
	if (RTE_PKTMBUF_HEADROOM + len > rte_pktmbuf_data_room_size(g.super_pool))
		return NULL;
	return rte_pktmbuf_alloc(g.super_pool);
}

static int ring_rx(struct rx_shim *s, struct rte_swx_pkt *pkt)
{
	struct tpacket2_hdr *h;
	struct virtio_net_hdr vcopy;
	const struct virtio_net_hdr *vh;
	struct rte_mbuf *m, *big = NULL;
	uint8_t *f;
	uint32_t len, status;

	if (s->in_gso)
		return gso_rx(s, pkt);
	h = ring_slot(s);
	status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
	if (!(status & TP_STATUS_USER)) {
		set_dry(s);
		return 0;
	}
	f = (uint8_t *)h + h->tp_mac;
	vh = (const void *)(f - VNET_LEN);
	len = h->tp_snaplen;
	if (status & TP_STATUS_COPY) {
		ring_release(s, h);
		if (copy_recv(s, &vcopy, &len, &big)) {
			rx_discard(s, D_GSO_COPY);
			return 0;
		}
		f = big ? rte_pktmbuf_mtod(big, uint8_t *) : s->bounce;
		vh = &vcopy;
		h = NULL;
	} else if (h->tp_len > len) {
		ring_release(s, h);
		rx_discard(s, D_TRUNCATED);
		return 0;
	}
	if (vh->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		if (gso_start(&s->gso, f, len, vh, g.frame_max)) {
			if (h)
				ring_release(s, h);
			rte_pktmbuf_free(big);
			rx_discard(s, D_GSO_KIND);
			return 0;
		}
		s->pc->cnt.gso_frames++;
		m = big ? big : g.super_pool ? super_mbuf(len) : NULL;
		if (m) {
			if (m != big)
				memcpy(rte_pktmbuf_mtod(m, void *), f, len);
			if (h)
				ring_release(s, h);
			m->tso_segsz = vh->gso_size;
			m->ol_flags |= s->gso.udp ? RTE_MBUF_F_TX_UDP_SEG : RTE_MBUF_F_TX_TCP_SEG;
			rx_deliver(s, m, len, pkt);
			return 1;
		}
		s->in_gso = 1;
		s->gso_holds_slot = h != NULL;
		return gso_rx(s, pkt);
	}
	if (len > s->mtu) {
		if (h)
			ring_release(s, h);
		rte_pktmbuf_free(big);
		rx_discard(s, D_TRUNCATED);
		return 0;
	}
	m = rte_pktmbuf_alloc(s->reader->params.mempool);
	if (!m) {
		/* A frame read off the socket queue cannot wait in the ring: lost, counted. */
		if (!h)
			s->pc->cnt.rx_drops++;
		rte_pktmbuf_free(big);
		return 0;
	}
	memcpy(rte_pktmbuf_mtod(m, void *), f, len);
	rte_pktmbuf_free(big);
	if (h)
		ring_release(s, h);
	if (rx_offload(s, rte_pktmbuf_mtod(m, uint8_t *), len, vh, 0)) {
		rte_pktmbuf_free(m);
		return 0;
	}
	rx_deliver(s, m, len, pkt);
	return 1;
}

static int xsk_rx(struct rx_shim *s, struct rte_swx_pkt *pkt)
{
	struct rte_mbuf *m;
	uint8_t *f;
	uint32_t len;

	f = afxdp_rx_next(s->pc->xsk, &len);
	if (!f) {
		set_dry(s);
		return 0;
	}
	if (len > s->mtu) {
		afxdp_rx_done(s->pc->xsk);
		rx_discard(s, D_TRUNCATED);
		return 0;
	}
	m = rte_pktmbuf_alloc(s->reader->params.mempool);
	if (!m)
		return 0;
	memcpy(rte_pktmbuf_mtod(m, void *), f, len);
	afxdp_rx_done(s->pc->xsk);
	if (offload_csum_partial(rte_pktmbuf_mtod(m, uint8_t *), len))
		s->pc->cnt.csum_completed++;
	rx_deliver(s, m, len, pkt);
	return 1;
}

static int ring_setup(struct rx_shim *s, int fd)
{
	uint32_t frame = RING_FRAME_MIN, block;
	struct tpacket_req req;
	int v = TPACKET_V2, one = 1;
	void *map;

	s->bounce = malloc(SUPER_FRAME_MAX);
	if (!s->bounce)
		return -ENOMEM;
	while (frame < RING_FRAME_HDR + s->pc->mtu + 22)   /* + Ethernet header, two VLAN tags */
		frame <<= 1;
	block = frame > (1u << 16) ? frame : 1u << 16;
	req.tp_block_size = block;
	req.tp_block_nr = RING_BYTES / block;
	req.tp_frame_size = frame;
	req.tp_frame_nr = req.tp_block_nr * (block / frame);
	if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
		return -errno;
	map = mmap(NULL, (size_t)req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
		   MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	s->ring = map;
	s->ring_frames = req.tp_frame_nr;
	s->ring_frame_size = frame;
	s->ring_pos = 0;
	/* Frames queued on the socket before the ring existed would be taken for the copies of
	 * truncated super-frames (TP_STATUS_COPY): drop them. */
	while (recv(fd, s->bounce, SUPER_FRAME_MAX, MSG_DONTWAIT) >= 0)
		;
	return 0;
}

static int shim_pkt_rx(void *obj, struct rte_swx_pkt *pkt)
{
	struct rx_shim *s = obj;
	int n;

	if (g.rx_gate_closed)
		return 0;
	if (s->inj_n) {
		struct rte_mbuf *m = s->inj[s->inj_head];

		s->inj_head = (s->inj_head + 1) % INJECT_MAX;
		s->inj_n--;
		n_injected--;
		pkt->handle = m;
		pkt->pkt = m->buf_addr;
		pkt->offset = m->data_off;
		pkt->length = m->pkt_len;
		m->port = (uint16_t)(s - shims);
		g.rx_count++;
		return 1;
	}
	if (s->dry)
		return 0;
	switch (s->kind) {
	case SHIM_RING:
		n = ring_rx(s, pkt);
		break;
	case SHIM_XSK:
		n = xsk_rx(s, pkt);
		break;
	case SHIM_SOCK:
		n = sock_rx(s, pkt);
		break;
	case SHIM_FD:
		n = s->pkt_rx(s->reader, pkt);
		if (!n)
			set_dry(s);
		break;
	case SHIM_SOURCE:
		n = s->pkt_rx(s->reader, pkt);
		break;
	default:
		return 0;
	}
	if (n)
		((struct rte_mbuf *)pkt->handle)->port = (uint16_t)(s - shims);
	g.rx_count += (uint64_t)n;
	return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Socket output: sendmmsg per burst                                                        */

static uint32_t writer_port(const struct fd_writer *w)
{
	uint32_t i;

	for (i = 0; i < g.n_ports && writers[i] != w; i++)
		;
	return i;
}

static void tx_dropped(struct fd_writer *w, uint32_t n)
{
	uint32_t i = writer_port(w);

	if (i < g.n_ports)
		g.ports[i].cnt.tx_drops += n;
}

/* A super-frame (tso_segsz set: gso_pass) as the pipeline left it. */
static inline int is_super(const struct rte_mbuf *m)
{
	return m->tso_segsz != 0;
}

/* sendmmsg of n messages; the number sent. Like DPDK's fd writer, a full socket buffer drops
 * the rest of the burst, except that one message rejected alone (EMSGSIZE...) does not. */
static uint32_t send_burst(int fd, struct mmsghdr *msgs, uint32_t n)
{
	uint32_t sent = 0;

	while (sent < n) {
		int r = sendmmsg(fd, &msgs[sent], n - sent, MSG_DONTWAIT);

		n_tx_syscalls++;
		if (r <= 0) {
			if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
				sent++;
				continue;
			}
			break;
		}
		sent += (uint32_t)r;
	}
	return sent;
}

/* The CPU port's (or, with `copy`, the copy port's) burst spread over the workers' sockets
 * (spread.c): each frame to its worker's socket, socket 0 = fd. The number sent. */
static uint32_t spread_send(int fd, struct mmsghdr *msgs, uint32_t n, int copy)
{
	struct mmsghdr sub[BURST];
	uint8_t to[BURST];
	uint32_t off = copy ? COPY_PORT_HDR : spread.hdr, i, j, sent = 0;

	for (i = 0; i < n; i++) {
		const struct iovec *v = msgs[i].msg_hdr.msg_iov;
		const uint8_t *f = (const uint8_t *)v->iov_base + off;
		uint32_t len = v->iov_len > off ? (uint32_t)(v->iov_len - off) : 0;

		to[i] = (uint8_t)(copy ? spread_copy_worker(f, len) : spread_worker(f, len));
	}
	for (j = 0; j < spread.n; j++) {
		uint32_t m = 0;
		int wfd = j ? spread_fd(copy, j) : fd;

		for (i = 0; i < n; i++)
			if (to[i] == j)
				sub[m++] = msgs[i];
		if (m)
			sent += send_burst(wfd < 0 ? fd : wfd, sub, m);
	}
	return sent;
}

static void sock_flush(struct fd_writer *w)
{
	struct mmsghdr msgs[BURST];
	struct iovec iov[BURST][2];
	struct virtio_net_hdr vh[BURST];
	uint32_t n = w->n_pkts, i, k = 0, sent = 0, bad = 0;
	int vnet;

	if (!n)
		return;
	vnet = g.gso_pass && g.ports[writer_port(w)].kind == PORT_AFPACKET;
	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = w->pkts[i];
		uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);

		memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
		iov[k][1].iov_base = f;
		iov[k][1].iov_len = rte_pktmbuf_data_len(m);
		if (vnet) {
			/* ordinary frames: a zero header; a super-frame whose IP length is not the
			 * frame's any more cannot be described: dropped */
			memset(&vh[k], 0, sizeof(vh[k]));
			if (is_super(m) &&
			    offload_gso_hdr(f, rte_pktmbuf_data_len(m), m->tso_segsz, &vh[k])) {
				bad++;
				continue;
			}
			iov[k][0].iov_base = &vh[k];
			iov[k][0].iov_len = VNET_LEN;
		}
		msgs[k].msg_hdr.msg_iov = &iov[k][vnet ? 0 : 1];
		msgs[k].msg_hdr.msg_iovlen = vnet ? 2 : 1;
		k++;
	}
	if (bad)
		tx_dropped(w, bad);
	n = k;
	if (spread.n > 1 && !vnet && g.cpu_port >= 0) {
		uint32_t port = writer_port(w);

		if (port == (uint32_t)g.cpu_port || (g.copy_port >= 0 && port == (uint32_t)g.copy_port)) {
			sent = spread_send(w->params.fd, msgs, n, port != (uint32_t)g.cpu_port);
			goto done;
		}
	}
	sent = send_burst(w->params.fd, msgs, n);
done:
	if (sent < n)
		tx_dropped(w, n - sent);
	rte_pktmbuf_free_bulk(w->pkts, w->n_pkts);
	w->n_pkts = 0;
}

static void sock_writer_flush(void *obj)
{
	sock_flush(obj);
}

/* Whether port's inject queue takes one more frame. */
int fastio_inject_room(uint32_t port)
{
	return port < n_shims && shims[port].kind != SHIM_IDLE && shims[port].inj_n < INJECT_MAX;
}

/* A frame for the CPU port that reuse.c takes: it runs through the pipeline again from its
 * ingress port, without the packet_in header. */
static int reuse_inject(struct rte_mbuf *m)
{
	struct rx_shim *s;
	uint32_t port;

	if (m->nb_segs != 1 ||
	    !reuse_take(rte_pktmbuf_mtod(m, uint8_t *), rte_pktmbuf_data_len(m), &port))
		return 0;
	rte_pktmbuf_adj(m, (uint16_t)reuse.hdr);
	s = &shims[port];
	s->inj[(s->inj_head + s->inj_n) % INJECT_MAX] = m;
	s->inj_n++;
	n_injected++;
	return 1;
}

/* writer_pkt_tx() of rte_swx_port_fd.c with sock_flush() */
static void sock_writer_pkt_tx(void *obj, struct rte_swx_pkt *pkt)
{
	struct fd_writer *w = obj;
	struct rte_mbuf *m = pkt->handle;

	m->data_len = (uint16_t)(pkt->length + m->data_len - m->pkt_len);
	m->pkt_len = pkt->length;
	m->data_off = (uint16_t)pkt->offset;
	if (w == cpu_writer && reuse.l && reuse_inject(m))
		return;
	w->stats.n_pkts++;
	w->stats.n_bytes += pkt->length;
	w->pkts[w->n_pkts++] = m;
	if (w->n_pkts == w->params.burst_size)
		sock_flush(w);
}

/* writer_pkt_fast_clone_tx() of rte_swx_port_fd.c with sock_flush() (DPDK's flushes with
 * write(), which a socket with PACKET_VNET_HDR would take for a header) */
static void sock_writer_fast_clone_tx(void *obj, struct rte_swx_pkt *pkt)
{
	rte_pktmbuf_refcnt_update(pkt->handle, 1);
	sock_writer_pkt_tx(obj, pkt);
	((struct fd_writer *)obj)->stats.n_pkts_clone++;
}

/* writer_pkt_clone_tx() of rte_swx_port_fd.c with sock_flush() */
static void sock_writer_clone_tx(void *obj, struct rte_swx_pkt *pkt, uint32_t truncation_length)
{
	struct fd_writer *w = obj;
	struct rte_mbuf *m = pkt->handle, *c;

	m->data_len = (uint16_t)(pkt->length + m->data_len - m->pkt_len);
	m->pkt_len = pkt->length;
	m->data_off = (uint16_t)pkt->offset;
	c = rte_pktmbuf_copy(m, m->pool, 0, truncation_length ? truncation_length : UINT32_MAX);
	if (!c) {
		w->stats.n_pkts_clone_err++;
		return;
	}
	if (c->pkt_len < m->pkt_len) {
		/* a truncated copy of a super-frame leaves as an ordinary (truncated) frame */
		c->tso_segsz = 0;
		c->ol_flags &= ~(RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_UDP_SEG);
	}
	w->stats.n_pkts++;
	w->stats.n_bytes += c->pkt_len;
	w->stats.n_pkts_clone++;
	w->pkts[w->n_pkts++] = c;
	if (w->n_pkts == w->params.burst_size)
		sock_flush(w);
}

/* ---------------------------------------------------------------------------------------- */
/* Outputs that cannot take a super-frame (gso_pass): cut into segments after the pipeline  */

struct tx_cut {
	void *obj;                                   /* the port's own object and functions */
	rte_swx_port_out_pkt_tx_t pkt_tx;
	rte_swx_port_out_pkt_fast_clone_tx_t fast_clone_tx;
	rte_swx_port_out_pkt_clone_tx_t clone_tx;
	rte_swx_port_out_flush_t flush;
};

static struct tx_cut cuts[SWXD_MAX_PORTS];

/* The super-frame in pkt, cut into wire-sized segments with full checksums, each handed to the
 * port's pkt_tx (trunc 0: whole) or to its clone_tx (truncated copies). Bytes the pipeline put
 * in front of the frame (a packet_in header) go in front of every segment. The super-frame
 * itself stays the caller's. */
static void cut_tx(struct tx_cut *c, struct rte_swx_pkt *pkt, uint32_t trunc)
{
	struct rte_mbuf *m = pkt->handle;
	uint8_t *p = &pkt->pkt[pkt->offset];
	uint32_t pre = pkt->length - m->pkt_len, n;
	struct virtio_net_hdr vh;
	struct gso_state st;

	if (pkt->length < m->pkt_len ||
	    offload_gso_hdr(p + pre, m->pkt_len, m->tso_segsz, &vh) ||
	    gso_start(&st, p + pre, m->pkt_len, &vh, g.frame_max - pre)) {
		g.ports[m->port].cnt.rx_errors++;   /* checked on receive: cannot happen */
		return;
	}
	while (!gso_done(&st)) {
		struct rte_mbuf *sg = rte_pktmbuf_alloc(g.pool);
		struct rte_swx_pkt sp;
		uint8_t *d;

		if (!sg)
			return;
		d = rte_pktmbuf_mtod(sg, uint8_t *);
		memcpy(d, p, pre);
		n = pre + gso_next(&st, d + pre);
		sg->data_len = (uint16_t)n;
		sg->pkt_len = n;
		sg->port = m->port;
		sp.handle = sg;
		sp.pkt = sg->buf_addr;
		sp.offset = sg->data_off;
		sp.length = n;
		g.ports[m->port].cnt.gso_segments++;
		if (!trunc) {
			c->pkt_tx(c->obj, &sp);
		} else {
			c->clone_tx(c->obj, &sp, trunc);
			rte_pktmbuf_free(sg);
		}
	}
}

static void cut_pkt_tx(void *obj, struct rte_swx_pkt *pkt)
{
	struct tx_cut *c = obj;

	if (!is_super(pkt->handle)) {
		c->pkt_tx(c->obj, pkt);
		return;
	}
	cut_tx(c, pkt, 0);
	rte_pktmbuf_free(pkt->handle);
}

static void cut_clone_tx(void *obj, struct rte_swx_pkt *pkt, uint32_t truncation_length)
{
	struct tx_cut *c = obj;

	if (!is_super(pkt->handle))
		c->clone_tx(c->obj, pkt, truncation_length);
	else
		cut_tx(c, pkt, truncation_length);
}

static void cut_fast_clone_tx(void *obj, struct rte_swx_pkt *pkt)
{
	struct tx_cut *c = obj;

	if (!is_super(pkt->handle))
		c->fast_clone_tx(c->obj, pkt);
	else
		cut_tx(c, pkt, 0);
}

static void cut_flush(void *obj)
{
	struct tx_cut *c = obj;

	c->flush(c->obj);
}

/* ---------------------------------------------------------------------------------------- */
/* Copy port: input port + frame per message                                                */

/* A copy of the packet, truncated to `truncation_length` bytes (0 = whole frame), behind its
 * input port; the packet itself stays with the pipeline. */
static void copy_writer_clone_tx(void *obj, struct rte_swx_pkt *pkt, uint32_t truncation_length)
{
	struct fd_writer *w = obj;
	const struct rte_mbuf *m = pkt->handle;
	uint32_t len = pkt->length;
	uint32_t port = rte_cpu_to_be_32(m->port);
	struct rte_mbuf *c;
	uint8_t *d;

	if (truncation_length && truncation_length < len)
		len = truncation_length;
	c = rte_pktmbuf_alloc(m->pool);      /* the fd writer has no pool of its own */
	if (!c || COPY_PORT_HDR + len > rte_pktmbuf_tailroom(c)) {
		rte_pktmbuf_free(c);
		w->stats.n_pkts_clone_err++;
		return;
	}
	d = rte_pktmbuf_mtod(c, uint8_t *);
	memcpy(d, &port, COPY_PORT_HDR);
	memcpy(d + COPY_PORT_HDR, &pkt->pkt[pkt->offset], len);
	c->data_len = (uint16_t)(COPY_PORT_HDR + len);
	c->pkt_len = COPY_PORT_HDR + len;
	w->stats.n_pkts++;
	w->stats.n_bytes += len;
	w->stats.n_pkts_clone++;
	w->pkts[w->n_pkts++] = c;
	if (w->n_pkts == w->params.burst_size)
		sock_flush(w);
}

static void copy_writer_fast_clone_tx(void *obj, struct rte_swx_pkt *pkt)
{
	copy_writer_clone_tx(obj, pkt, 0);
}

/* A packet sent to the copy port itself (not mirrored) leaves the same way. */
static void copy_writer_pkt_tx(void *obj, struct rte_swx_pkt *pkt)
{
	copy_writer_clone_tx(obj, pkt, 0);
	rte_pktmbuf_free(pkt->handle);
}

/* ---------------------------------------------------------------------------------------- */

int pipeline_install_rx_shims(void)
{
	struct rte_swx_pipeline *p = g.p;
	uint32_t i, j;

	n_shims = p->n_ports_in < SWXD_MAX_PORTS ? p->n_ports_in : SWXD_MAX_PORTS;
	for (i = 0; i < n_shims; i++) {
		struct rx_shim *s = &shims[i];
		const struct port_cfg *pc = i < g.n_ports ? &g.ports[i] : NULL;

		s->pkt_rx = p->in[i].pkt_rx;
		s->reader = p->in[i].obj;
		s->fd = -1;
		s->pc = pc && (pc->kind == PORT_AFPACKET || pc->kind == PORT_AFXDP) ? &g.ports[i] : NULL;
		if (!pc || (pc->kind != PORT_AFPACKET && pc->kind != PORT_AFXDP && pc->kind != PORT_TAP &&
			    pc->kind != PORT_CPU && pc->kind != PORT_SOURCE))
			s->kind = SHIM_IDLE;            /* an idle ring: no input side */
		else if (pc->kind == PORT_AFXDP) {
			s->kind = SHIM_XSK;
			s->fd = pc->fd;
			s->mtu = s->reader->params.mtu;
		} else if (pc->kind == PORT_SOURCE)
			s->kind = SHIM_SOURCE;
		else if (is_socket(pc->fd) && s->reader->params.burst_size <= BURST)
			s->kind = SHIM_SOCK;
		else
			s->kind = SHIM_FD;
		if (s->kind == SHIM_SOCK && pc->kind == PORT_AFPACKET && !getenv("P4CS_SWXD_NO_RING")) {
			int rc;

			s->fd = pc->fd;
			s->mtu = s->reader->params.mtu;
			rc = ring_setup(s, pc->fd);
			if (!rc)
				s->kind = SHIM_RING;
			else
				LOG_ERR("port %u: no AF_PACKET receive ring (%s), using recvmmsg", i,
					strerror(-rc));
			LOG_NOTE("port %u = afpacket:%s, mtu %u: partial checksums completed %s", i, pc->arg,
				 pc->mtu, s->kind != SHIM_RING ?
				 "in the port, super-frames discarded (no receive ring)" : g.super_pool ?
				 "in the port, TSO/GSO super-frames forwarded whole (gso pass)" :
				 "and TSO/GSO super-frames segmented in the port (gso cut)");
		}
		if (s->kind == SHIM_SOCK) {
			s->fd = pc->fd;
			s->mtu = s->reader->params.mtu;
			if (rte_pktmbuf_alloc_bulk(s->reader->params.mempool, s->m, BURST)) {
				/* read() would hand AF_PACKET's virtio-net headers to the pipeline */
				if (s->pc) {
					LOG_ERR("port %u: no mbufs for the receive burst", i);
					return -ENOMEM;
				}
				LOG_ERR("port %u: no mbufs for the receive burst, using read()", i);
				s->kind = SHIM_FD;
			} else {
				for (j = 0; j < BURST; j++) {
					s->iov[j][0].iov_base = &s->vh[j];
					s->iov[j][0].iov_len = VNET_LEN;
					s->iov[j][1].iov_base = rte_pktmbuf_mtod(s->m[j], void *);
					s->iov[j][1].iov_len = s->mtu;
					memset(&s->msgs[j], 0, sizeof(s->msgs[j]));
					s->msgs[j].msg_hdr.msg_iov = &s->iov[j][s->pc ? 0 : 1];
					s->msgs[j].msg_hdr.msg_iovlen = s->pc ? 2 : 1;
				}
			}
		}
		if (s->kind >= SHIM_FD)
			n_pollable++;
		else if (s->kind == SHIM_SOURCE)
			n_sources++;
		p->in[i].pkt_rx = shim_pkt_rx;
		p->in[i].obj = s;
	}
	for (i = 0; i < g.n_ports && i < p->n_ports_out; i++) {
		const struct port_cfg *pc = &g.ports[i];
		struct fd_writer *w = p->out[i].obj;

		if (pc->kind == PORT_AFXDP) {
			afxdp_install_tx(pc->xsk, &w->stats, &p->out[i].pkt_tx,
					 &p->out[i].pkt_fast_clone_tx, &p->out[i].pkt_clone_tx,
					 &p->out[i].flush);
			p->out[i].obj = pc->xsk;
			continue;
		}
		if (pc->tx_fd < 0 || !is_socket(pc->tx_fd) || w->params.fd != pc->tx_fd)
			continue;
		writers[i] = w;
		if ((int)i == g.cpu_port)
			cpu_writer = w;
		p->out[i].flush = sock_writer_flush;
		if (pc->kind == PORT_COPY) {
			p->out[i].pkt_tx = copy_writer_pkt_tx;
			p->out[i].pkt_fast_clone_tx = copy_writer_fast_clone_tx;
			p->out[i].pkt_clone_tx = copy_writer_clone_tx;
		} else {
			p->out[i].pkt_tx = sock_writer_pkt_tx;
			p->out[i].pkt_fast_clone_tx = sock_writer_fast_clone_tx;
			p->out[i].pkt_clone_tx = sock_writer_clone_tx;
		}
	}
	for (i = 0; g.super_pool && i < g.n_ports && i < p->n_ports_out; i++) {
		const struct port_cfg *pc = &g.ports[i];

		if (pc->kind == PORT_UNSET || pc->kind == PORT_AFPACKET)
			continue;
		cuts[i] = (struct tx_cut){ .obj = p->out[i].obj, .pkt_tx = p->out[i].pkt_tx,
					   .fast_clone_tx = p->out[i].pkt_fast_clone_tx,
					   .clone_tx = p->out[i].pkt_clone_tx,
					   .flush = p->out[i].flush };
		p->out[i].obj = &cuts[i];
		p->out[i].pkt_tx = cut_pkt_tx;
		p->out[i].pkt_fast_clone_tx = cut_fast_clone_tx;
		p->out[i].pkt_clone_tx = cut_clone_tx;
		p->out[i].flush = cut_flush;
	}
	return 0;
}

/* Readiness from epoll: the port of this fd may be read again. */
void fastio_mark_ready(int fd)
{
	uint32_t i;

	if (!n_dry)
		return;
	for (i = 0; i < n_shims; i++) {
		struct rx_shim *s = &shims[i];

		if (s->dry && (s->kind >= SHIM_SOCK ? s->fd : s->reader->params.fd) == fd) {
			s->dry = 0;
			n_dry--;
		}
	}
}

uint32_t fastio_n_dry(void)
{
	return n_dry;
}

/* Some AF_XDP port holds frames the kernel has not taken yet (the loop must come back soon
 * to kick it again). */
int fastio_tx_unsent(void)
{
	uint32_t i;

	for (i = 0; i < g.n_ports; i++)
		if (g.ports[i].kind == PORT_AFXDP && afxdp_tx_unsent(g.ports[i].xsk))
			return 1;
	return 0;
}

/* Every input port waits for epoll: no rx attempt can find a packet. */
int fastio_all_dry(void)
{
	return n_pollable && n_dry == n_pollable && !n_sources && !n_injected;
}

/* Frames wait to run through the pipeline again (reuse.c). */
int fastio_injected(void)
{
	return n_injected != 0;
}

void fastio_stats(uint64_t *rx_syscalls, uint64_t *tx_syscalls)
{
	*rx_syscalls = n_rx_syscalls;
	*tx_syscalls = n_tx_syscalls;
}
