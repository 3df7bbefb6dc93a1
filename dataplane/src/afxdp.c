/* SPDX-License-Identifier: Apache-2.0
 *
 * AF_XDP ports: an XDP socket on queue 0 of an interface, fed by a six-instruction XDP program
 * (redirect every frame to the socket, bpf_redirect_map on an XSKMAP) attached in native mode
 * through a BPF link, so that it goes away with the daemon. Straight kernel UAPI: no libbpf.
 *
 * UMEM: FRAMES chunks of CHUNK bytes of ordinary memory (no hugepages), the first half for
 * receive (always posted on the fill ring), the second half for transmit (a free stack,
 * refilled from the completion ring). Zero-copy (XDP_ZEROCOPY) where the driver offers it,
 * else copy mode (veths). Frames are copied between UMEM and the pipeline's mbufs.
 *
 * The socket's fd is what epoll waits on (readable when the receive ring is not empty).
 * Setup refuses what it cannot serve and says why (the caller falls back to AF_PACKET): a
 * kernel or driver without native XDP, more than one receive queue (only queue 0 is bound),
 * an MTU above what XDP takes in one buffer.
 */
#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>

#include <rte_mbuf.h>
#include <rte_swx_port.h>

#include "swxd.h"

#define CHUNK 4096u
#define FRAMES 4096u                    /* 16 MiB per port */
#define RX_FRAMES (FRAMES / 2)
#define RING 2048u                      /* every ring; power of two */
#define XDP_MTU_MAX 3498u               /* one page less XDP headroom and skb_shared_info */

struct ring {
	uint32_t *producer, *consumer, *flags;
	void *desc;
	uint32_t mask;
	uint32_t cached_prod, cached_cons;
	void *map;
	size_t map_len;
};

struct xsk_port {
	int fd, map_fd, prog_fd, link_fd;
	uint8_t *umem;
	struct ring fill, comp, rx, tx;
	uint64_t tx_free[FRAMES - RX_FRAMES];
	uint32_t n_tx_free;
	uint32_t tx_pending;            /* descriptors produced since the last kick */
	uint32_t tx_outstanding;        /* sent, completion not reaped yet */
	int zerocopy;
	struct rte_swx_port_out_stats *out_stats;   /* the SWX output port's counters */
	struct port_counters *cnt;
};

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int map_ring(int fd, struct ring *r, const struct xdp_ring_offset *off, uint64_t pgoff,
		    size_t desc_size)
{
	r->map_len = off->desc + RING * desc_size;
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
		      (off_t)pgoff);
	if (r->map == MAP_FAILED) {
		r->map = NULL;
		return -errno;
	}
	r->producer = (void *)((uint8_t *)r->map + off->producer);
	r->consumer = (void *)((uint8_t *)r->map + off->consumer);
	r->flags = (void *)((uint8_t *)r->map + off->flags);
	r->desc = (uint8_t *)r->map + off->desc;
	r->mask = RING - 1;
	return 0;
}

/* The XDP program: return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS). */
static int load_prog(int map_fd, char *log, size_t log_size)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
		  .off = offsetof(struct xdp_md, rx_queue_index) },
		{ .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1,
		  .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd },
		{ 0 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_XDP;
	a.insns = (uintptr_t)insns;
	a.insn_cnt = sizeof(insns) / sizeof(insns[0]);
	a.license = (uintptr_t)"Dual BSD/GPL";
	a.log_buf = (uintptr_t)log;
	a.log_size = (uint32_t)log_size;
	a.log_level = 1;
	strcpy(a.prog_name, "p4cs_xsk");
	return (int)sys_bpf(BPF_PROG_LOAD, &a);
}

static int n_rx_queues(const char *ifname)
{
	char path[320];
	int n = 0;

	for (;;) {
		snprintf(path, sizeof(path), "/sys/class/net/%s/queues/rx-%d", ifname, n);
		if (access(path, F_OK))
			return n;
		n++;
	}
}

static void xsk_free(struct xsk_port *x)
{
	struct ring *rings[] = { &x->fill, &x->comp, &x->rx, &x->tx };
	size_t i;

	if (x->link_fd >= 0)
		close(x->link_fd);
	if (x->prog_fd >= 0)
		close(x->prog_fd);
	if (x->map_fd >= 0)
		close(x->map_fd);
	for (i = 0; i < sizeof(rings) / sizeof(rings[0]); i++)
		if (rings[i]->map)
			munmap(rings[i]->map, rings[i]->map_len);
	if (x->fd >= 0)
		close(x->fd);
	if (x->umem)
		munmap(x->umem, (size_t)FRAMES * CHUNK);
	free(x);
}

#define FAIL(...) do { snprintf(why, why_size, __VA_ARGS__); goto fail; } while (0)

int afxdp_open(struct port_cfg *pc, char *why, size_t why_size)
{
	struct xsk_port *x = calloc(1, sizeof(*x));
	struct xdp_umem_reg reg;
	struct xdp_mmap_offsets off;
	struct sockaddr_xdp sxdp;
	socklen_t optlen = sizeof(off);
	union bpf_attr a;
	unsigned int ifindex = if_nametoindex(pc->arg);
	uint32_t ring = RING, i, key = 0;
	int nq, rc;
	char log[1024] = "";

	if (!x) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	x->fd = x->map_fd = x->prog_fd = x->link_fd = -1;
	if (!ifindex)
		FAIL("interface %s: %s", pc->arg, strerror(errno));
	if (pc->mtu > XDP_MTU_MAX)
		FAIL("MTU %u above the %u bytes XDP takes in one buffer", pc->mtu, XDP_MTU_MAX);
	nq = n_rx_queues(pc->arg);
	if (nq > 1)
		FAIL("%d receive queues, the AF_XDP port binds queue 0 only (ethtool -L %s combined 1)",
		     nq, pc->arg);

	x->umem = mmap(NULL, (size_t)FRAMES * CHUNK, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (x->umem == MAP_FAILED) {
		x->umem = NULL;
		FAIL("UMEM: %s", strerror(errno));
	}
	x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (x->fd < 0)
		FAIL("AF_XDP socket: %s", strerror(errno));
	memset(&reg, 0, sizeof(reg));
	reg.addr = (uintptr_t)x->umem;
	reg.len = (uint64_t)FRAMES * CHUNK;
	reg.chunk_size = CHUNK;
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &ring, sizeof(ring)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &ring, sizeof(ring)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_RX_RING, &ring, sizeof(ring)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &ring, sizeof(ring)))
		FAIL("AF_XDP rings: %s", strerror(errno));
	if (getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen))
		FAIL("XDP_MMAP_OFFSETS: %s", strerror(errno));
	if ((rc = map_ring(x->fd, &x->fill, &off.fr, XDP_UMEM_PGOFF_FILL_RING, sizeof(uint64_t))) ||
	    (rc = map_ring(x->fd, &x->comp, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, sizeof(uint64_t))) ||
	    (rc = map_ring(x->fd, &x->rx, &off.rx, XDP_PGOFF_RX_RING, sizeof(struct xdp_desc))) ||
	    (rc = map_ring(x->fd, &x->tx, &off.tx, XDP_PGOFF_TX_RING, sizeof(struct xdp_desc))))
		FAIL("AF_XDP ring mmap: %s", strerror(-rc));

	/* Every receive chunk on the fill ring; the transmit chunks on the free stack. */
	for (i = 0; i < RX_FRAMES && i < RING; i++)
		((uint64_t *)x->fill.desc)[i] = (uint64_t)i * CHUNK;
	__atomic_store_n(x->fill.producer, i, __ATOMIC_RELEASE);
	x->fill.cached_prod = i;
	for (i = RX_FRAMES; i < FRAMES; i++)
		x->tx_free[x->n_tx_free++] = (uint64_t)i * CHUNK;
	x->tx.cached_prod = *x->tx.producer;
	x->rx.cached_cons = *x->rx.consumer;
	x->comp.cached_cons = *x->comp.consumer;

	memset(&sxdp, 0, sizeof(sxdp));
	sxdp.sxdp_family = AF_XDP;
	sxdp.sxdp_ifindex = ifindex;
	sxdp.sxdp_queue_id = 0;
	sxdp.sxdp_flags = XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP;
	x->zerocopy = 1;
	if (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp))) {
		sxdp.sxdp_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
		x->zerocopy = 0;
		if (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp)))
			FAIL("AF_XDP bind to %s queue 0: %s", pc->arg, strerror(errno));
	}

	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_XSKMAP;
	a.key_size = 4;
	a.value_size = 4;
	a.max_entries = 1;
	strcpy(a.map_name, "p4cs_xsks");
	x->map_fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
	if (x->map_fd < 0)
		FAIL("XSKMAP: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.map_fd = (uint32_t)x->map_fd;
	a.key = (uintptr_t)&key;
	a.value = (uintptr_t)&x->fd;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a))
		FAIL("XSKMAP update: %s", strerror(errno));
	x->prog_fd = load_prog(x->map_fd, log, sizeof(log));
	if (x->prog_fd < 0)
		FAIL("XDP program refused: %s%s%.200s", strerror(errno), log[0] ? ": " : "", log);
	memset(&a, 0, sizeof(a));
	a.link_create.prog_fd = (uint32_t)x->prog_fd;
	a.link_create.target_ifindex = ifindex;
	a.link_create.attach_type = BPF_XDP;
	a.link_create.flags = XDP_FLAGS_DRV_MODE;
	x->link_fd = (int)sys_bpf(BPF_LINK_CREATE, &a);
	if (x->link_fd < 0)
		FAIL("native XDP on %s refused: %s", pc->arg, strerror(errno));

	pc->xsk = x;
	pc->fd = x->fd;
	pc->tx_fd = x->fd;
	x->cnt = &pc->cnt;
	return 0;
fail:
	xsk_free(x);
	return -1;
}

void afxdp_close(struct port_cfg *pc)
{
	if (pc->xsk)
		xsk_free(pc->xsk);
	pc->xsk = NULL;
	pc->fd = pc->tx_fd = -1;
}

int afxdp_zerocopy(const struct xsk_port *x)
{
	return x->zerocopy;
}

/* Frames the kernel could not deliver to the socket (receive ring full, no fill chunk...). */
uint64_t afxdp_kernel_drops(const struct xsk_port *x)
{
	struct xdp_statistics st;
	socklen_t len = sizeof(st);

	memset(&st, 0, sizeof(st));
	if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &st, &len))
		return 0;
	return st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs;
}

/* ---------------------------------------------------------------------------------------- */
/* Receive                                                                                  */

uint8_t *afxdp_rx_next(struct xsk_port *x, uint32_t *len)
{
	struct xdp_desc *d;

	if (x->rx.cached_cons == x->rx.cached_prod) {
		x->rx.cached_prod = __atomic_load_n(x->rx.producer, __ATOMIC_ACQUIRE);
		if (x->rx.cached_cons == x->rx.cached_prod)
			return NULL;
	}
	d = &((struct xdp_desc *)x->rx.desc)[x->rx.cached_cons & x->rx.mask];
	*len = d->len;
	return x->umem + d->addr;
}

/* The frame afxdp_rx_next() returned goes back to the fill ring. */
void afxdp_rx_done(struct xsk_port *x)
{
	struct xdp_desc *d = &((struct xdp_desc *)x->rx.desc)[x->rx.cached_cons & x->rx.mask];

	/* The fill ring has room for every receive chunk: no check needed. */
	((uint64_t *)x->fill.desc)[x->fill.cached_prod++ & x->fill.mask] =
		d->addr - d->addr % CHUNK;
	x->rx.cached_cons++;
	__atomic_store_n(x->rx.consumer, x->rx.cached_cons, __ATOMIC_RELEASE);
	__atomic_store_n(x->fill.producer, x->fill.cached_prod, __ATOMIC_RELEASE);
	if (x->zerocopy && (__atomic_load_n(x->fill.flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP))
		recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Transmit: the SWX output port functions, obj = struct xsk_port                           */

static void reap_completions(struct xsk_port *x)
{
	uint32_t prod = __atomic_load_n(x->comp.producer, __ATOMIC_ACQUIRE);

	while (x->comp.cached_cons != prod) {
		x->tx_free[x->n_tx_free++] =
			((uint64_t *)x->comp.desc)[x->comp.cached_cons++ & x->comp.mask];
		x->tx_outstanding--;
	}
	__atomic_store_n(x->comp.consumer, x->comp.cached_cons, __ATOMIC_RELEASE);
}

/* Frames on the transmit ring the kernel has not taken yet. */
int afxdp_tx_unsent(const struct xsk_port *x)
{
	return x->tx.cached_prod != __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE);
}

static void xsk_flush(void *obj)
{
	struct xsk_port *x = obj;
	int tries;

	if (x->tx_pending) {
		__atomic_store_n(x->tx.producer, x->tx.cached_prod, __ATOMIC_RELEASE);
		x->tx_pending = 0;
	}
	/* Copy mode sends in the system call (at most 32 frames per call); zero-copy drivers ask
	 * for it with the flag. */
	for (tries = 0; tries < 4 && afxdp_tx_unsent(x); tries++) {
		if (x->zerocopy && !(__atomic_load_n(x->tx.flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP))
			break;
		if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN &&
		    errno != EBUSY && errno != ENOBUFS)
			break;
	}
	reap_completions(x);
}

/* Copies len bytes into a transmit chunk; 0 on success, -1 (counted as a drop) when full. */
static int xsk_send(struct xsk_port *x, const uint8_t *data, uint32_t len)
{
	struct xdp_desc *d;
	uint64_t addr;

	if (!x->n_tx_free)
		reap_completions(x);
	if (!x->n_tx_free || len > CHUNK ||
	    x->tx.cached_prod - __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE) >= RING) {
		x->out_stats->n_pkts_drop++;
		x->cnt->tx_drops++;
		return -1;
	}
	addr = x->tx_free[--x->n_tx_free];
	memcpy(x->umem + addr, data, len);
	d = &((struct xdp_desc *)x->tx.desc)[x->tx.cached_prod++ & x->tx.mask];
	d->addr = addr;
	d->len = len;
	d->options = 0;
	x->tx_outstanding++;
	if (++x->tx_pending == 32)
		xsk_flush(x);
	return 0;
}

static void xsk_pkt_tx(void *obj, struct rte_swx_pkt *pkt)
{
	struct xsk_port *x = obj;

	if (!xsk_send(x, pkt->pkt + pkt->offset, pkt->length)) {
		x->out_stats->n_pkts++;
		x->out_stats->n_bytes += pkt->length;
	}
	rte_pktmbuf_free(pkt->handle);
}

static void xsk_pkt_fast_clone_tx(void *obj, struct rte_swx_pkt *pkt)
{
	struct xsk_port *x = obj;

	if (!xsk_send(x, pkt->pkt + pkt->offset, pkt->length)) {
		x->out_stats->n_pkts++;
		x->out_stats->n_bytes += pkt->length;
		x->out_stats->n_pkts_clone++;
	}
}

static void xsk_pkt_clone_tx(void *obj, struct rte_swx_pkt *pkt, uint32_t truncation_length)
{
	struct xsk_port *x = obj;
	uint32_t len = truncation_length && truncation_length < pkt->length ? truncation_length
									     : pkt->length;

	if (!xsk_send(x, pkt->pkt + pkt->offset, len)) {
		x->out_stats->n_pkts++;
		x->out_stats->n_bytes += len;
		x->out_stats->n_pkts_clone++;
	}
}

void afxdp_install_tx(struct xsk_port *x, struct rte_swx_port_out_stats *stats,
		      rte_swx_port_out_pkt_tx_t *pkt_tx,
		      rte_swx_port_out_pkt_fast_clone_tx_t *fast_clone_tx,
		      rte_swx_port_out_pkt_clone_tx_t *clone_tx, rte_swx_port_out_flush_t *flush)
{
	x->out_stats = stats;
	*pkt_tx = xsk_pkt_tx;
	*fast_clone_tx = xsk_pkt_fast_clone_tx;
	*clone_tx = xsk_pkt_clone_tx;
	*flush = xsk_flush;
}
