/* SPDX-License-Identifier: Apache-2.0
 *
 * p4cs-swxd: shared declarations of the data-plane daemon.
 *
 * One thread owns everything: the SWX pipeline, the control socket, the CPU port and the
 * learner sweeper. Control operations run only at a packet boundary (see pipeline_quiesce()),
 * so no lock exists anywhere in the daemon.
 */
#ifndef P4CS_SWXD_H
#define P4CS_SWXD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_swx_ctl.h>
#include <rte_swx_pipeline.h>

#define SWXD_MAX_PORTS 64
#define SWXD_NAME_SIZE RTE_SWX_CTL_NAME_SIZE
#define SWXD_MAX_TIMEOUTS 16

/* ---------------------------------------------------------------------------------------- */
/* Ports (ports.c)                                                                          */

enum port_kind {
	PORT_UNSET = 0,   /* unnamed number below the highest one: output sink, no input */
	PORT_AFPACKET,    /* AF_PACKET raw socket bound to an interface, SWX fd port in + out */
	PORT_AFXDP,       /* AF_XDP socket on queue 0 of an interface (afxdp.c); SWX fd port
	                   * objects whose rx / tx the daemon replaces */
	PORT_TAP,         /* TAP device (IFF_TAP | IFF_NO_PI), SWX fd port in + out */
	PORT_SOURCE,      /* pcap file source (input), benchmark */
	PORT_SINK,        /* sink (output), optionally to a pcap file */
	PORT_CPU,         /* the inherited --cpu-fd SOCK_SEQPACKET end, fd port in + out */
	PORT_COPY,        /* the inherited --copy-fd SOCK_SEQPACKET end, fd port OUT only:
	                   * mirror copies (no packet_in header) for the controller */
};

/* Per-port counters beyond the SWX port stats (rx/tx packets and bytes), in `stats`. */
struct port_counters {
	uint64_t rx_drops;        /* frames the kernel dropped before the port read them */
	uint64_t rx_errors;       /* frames the port discarded: truncated, malformed offload */
	uint64_t tx_drops;        /* frames the port could not transmit (buffer full, error) */
	uint64_t csum_completed;  /* partial L4 checksums completed in the port */
	uint64_t gso_frames;      /* super-frames received */
	uint64_t gso_segments;    /* segments cut out of them: in the port, or (gso_pass) for an
	                           * output that cannot take a super-frame */
};

struct port_cfg {
	enum port_kind kind;
	char arg[256];    /* interface name or pcap file ("" = none) */
	int loop;         /* source: replay the file forever */
	int fd;           /* fd-backed ports: the input side (and output, but for AF_PACKET), else -1 */
	int tx_fd;        /* the output side (AF_PACKET: a socket of its own, with a virtio-net
	                   * header in front of every frame when gso_pass, else without) */
	uint32_t mtu;     /* interface MTU (AF_PACKET, AF_XDP, TAP), else 0 */
	struct xsk_port *xsk;   /* AF_XDP */
	struct port_counters cnt;
};

/* ---------------------------------------------------------------------------------------- */
/* Pipeline metadata used by the control protocol                                           */

struct arg_desc {
	char name[SWXD_NAME_SIZE];
	uint32_t n_bits;
	uint32_t offset;          /* byte offset in the action data */
	int nbo;                  /* stored in network byte order */
};

struct action_desc {
	char name[SWXD_NAME_SIZE];
	uint32_t n_args;
	struct arg_desc *args;
	uint32_t data_size;       /* bytes */
};

struct field_desc {
	uint32_t offset;          /* byte offset in the struct (metadata or header) */
	uint32_t n_bits;
	int is_header;            /* network byte order when set */
};

/* Daemon-side record of the learner keys installed through the control socket. Open
 * addressing with linear probing and backward-shift deletion; grows by doubling. */
struct flow_registry {
	uint8_t *slots;
	size_t n_slots;           /* power of two, 0 before the first insert */
	size_t n_used;
	uint32_t key_size;
	uint32_t slot_size;
};

struct learner_rt {
	char name[SWXD_NAME_SIZE];
	uint32_t id;
	void *table;              /* rte_swx_table_learner object of the pipeline */
	void *mailbox;            /* our own lookup mailbox (the pipeline threads have theirs) */
	uint32_t key_offset;      /* byte offset of the first key byte in the key struct */
	uint32_t key_size;        /* bytes, contiguous */
	uint32_t struct_size;     /* bytes of the key buffer handed to the lookup */
	uint8_t *keybuf;
	uint32_t n_fields;
	struct field_desc *fields;
	uint32_t n_actions;
	uint32_t *action_ids;     /* global action ids */
	int *action_for_entries;
	uint32_t action_data_size;
	uint8_t *databuf;
	uint32_t size;
	uint32_t n_timeouts;
	uint32_t timeouts[SWXD_MAX_TIMEOUTS];
	struct flow_registry reg;
	size_t sweep_pos;         /* next registry slot to look at */
	/* `learner count`: the action argument count_arg of an entry indexes a counter cell
	 * (register arrays count_regs: packets, bytes) that the entry's expiry reports and clears. */
	char count_arg[SWXD_NAME_SIZE];
	char count_regs[2][SWXD_NAME_SIZE];
	uint64_t n_enospc;
};

struct table_desc {
	char name[SWXD_NAME_SIZE];
	uint32_t n_fields;
	struct rte_swx_ctl_table_match_field_info *fields;
	uint32_t n_actions;
	uint32_t *action_ids;
	uint32_t size;
};

/* ---------------------------------------------------------------------------------------- */
/* Daemon state                                                                             */

struct swxd {
	/* Command line. */
	const char *spec_path;
	const char *workdir;
	const char *headers_dir;
	const char *eal_args;
	int ctl_fd;
	int cpu_fd;
	int cpu_port;
	int copy_fd;              /* --copy-fd, -1 = none */
	int copy_port;            /* chosen by ports_open(), -1 = none */
	int log_level;
	uint64_t bench_packets;   /* 0 = off */
	uint32_t learner_timeouts[SWXD_MAX_TIMEOUTS];
	uint32_t n_learner_timeouts;
	int prefault;             /* --prefault: learner tables made resident at start */

	/* Ports: index = P4 port number. */
	struct port_cfg ports[SWXD_MAX_PORTS];
	uint32_t n_ports;         /* highest port number + 1 */
	uint32_t drop_port;       /* = n_ports: the sink the SWX `drop` instruction sends to */
	uint32_t n_ports_in;      /* after padding to a power of two */
	uint32_t frame_max;       /* largest frame a port reads (largest MTU + L2 headers) */
	int gso_pass;             /* AF_PACKET super-frames cross the pipeline whole (offload.c) */
	struct rte_mempool *pool;       /* mbufs of frame_max bytes */
	struct rte_mempool *super_pool; /* large mbufs for super-frames (gso_pass), else NULL */

	/* Pipeline. */
	struct rte_swx_pipeline *p;
	struct rte_swx_ctl_pipeline *ctl;
	struct rte_swx_ctl_pipeline_info info;
	struct action_desc *actions;
	struct table_desc *tables;
	struct learner_rt *learners;
	int32_t *mirror_port;     /* per mirroring session: output port, -1 = off (drop port) */
	uint32_t *mirror_trunc;   /* per mirroring session: truncation length, 0 = whole frame */

	/* Main loop. */
	int epfd;
	volatile int stop;
	uint64_t rx_count;        /* packets handed to the pipeline by the input ports */
	int rx_gate_closed;       /* input ports return "no packet" while set */
	uint64_t hz;              /* TSC frequency */
	uint64_t next_sweep_tsc;
	uint64_t sweep_period_tsc;   /* one full pass over every registry */
	uint64_t sweep_tick_tsc;     /* one slice */
};

extern struct swxd g;

#define LOG(level, ...) do { if (g.log_level >= (level)) { \
	fprintf(stderr, "p4cs-swxd: " __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define LOG_ERR(...)  LOG(1, __VA_ARGS__)
#define LOG_INFO(...) LOG(2, __VA_ARGS__)
#define LOG_DBG(...)  LOG(3, __VA_ARGS__)
#define LOG_NOTE(...) LOG(1, __VA_ARGS__)   /* start-up facts the operator must see */

/* ports.c */
int ports_parse(const char *spec);
int ports_open(void);
int ports_write_iospec(const char *path);
void ports_close(void);

/* pipeline.c */
int pipeline_build(void);
int pipeline_describe(void);
int pipeline_install_rx_shims(void);
int pipeline_quiesce(void);
void pipeline_resume(void);
int pipeline_threads_idle(void);
uint64_t pipeline_tx_packets(void);
const struct action_desc *action_find(const char *name, uint32_t *id);
int action_arg_find(const struct action_desc *a, const char *name);
int table_find(const char *name);
int learner_find(const char *name);
int mirror_init(void);
int mirror_set(uint32_t session, int32_t port, uint32_t truncate);

/* fastio.c (pipeline_install_rx_shims() too) */
void fastio_mark_ready(int fd);
uint32_t fastio_n_dry(void);
int fastio_all_dry(void);
int fastio_tx_unsent(void);
void fastio_stats(uint64_t *rx_syscalls, uint64_t *tx_syscalls);

/* afxdp.c */
struct xsk_port;
int afxdp_open(struct port_cfg *pc, char *why, size_t why_size);
void afxdp_close(struct port_cfg *pc);
int afxdp_zerocopy(const struct xsk_port *x);
uint64_t afxdp_kernel_drops(const struct xsk_port *x);
uint8_t *afxdp_rx_next(struct xsk_port *x, uint32_t *len);
void afxdp_rx_done(struct xsk_port *x);
int afxdp_tx_unsent(const struct xsk_port *x);
void afxdp_install_tx(struct xsk_port *x, struct rte_swx_port_out_stats *stats,
		      rte_swx_port_out_pkt_tx_t *pkt_tx,
		      rte_swx_port_out_pkt_fast_clone_tx_t *fast_clone_tx,
		      rte_swx_port_out_pkt_clone_tx_t *clone_tx, rte_swx_port_out_flush_t *flush);

/* offload.c */
struct virtio_net_hdr;
struct gso_state {
	const uint8_t *data;      /* the super-frame */
	uint32_t len;
	uint32_t l3, l4, hdr;     /* offsets of the IP header, L4 header, payload */
	uint32_t mss;
	uint32_t off;             /* next payload byte */
	uint32_t k;               /* segments made */
	int v6, udp;
};
int offload_csum_complete(uint8_t *frame, uint32_t len, const struct virtio_net_hdr *vh);
int offload_csum_partial(uint8_t *frame, uint32_t len);
int gso_start(struct gso_state *st, const uint8_t *data, uint32_t len,
	      const struct virtio_net_hdr *vh, uint32_t room);
uint32_t gso_next(struct gso_state *st, uint8_t *out);
int gso_done(const struct gso_state *st);
int offload_gso_hdr(uint8_t *f, uint32_t len, uint16_t gso_size, struct virtio_net_hdr *vh);

/* learner.c */
int learner_setup(struct learner_rt *l);
int learner_op(struct learner_rt *l, const char *op, char **tok, int n_tok, char *out, size_t out_size);
int learner_apply_timeouts(void);
int learner_prefault(uint64_t *bytes);
int learner_lookup_slot_key(struct learner_rt *l, const uint8_t *key, uint64_t now);
int learner_count_bind(struct learner_rt *l, char **tok, int n_tok, char *out, size_t out_size);
int learner_profiles_readable(void);
void learner_key_field(struct learner_rt *l, uint32_t i, const uint8_t *be);
int learner_find_entry(struct learner_rt *l, uint64_t *action_id, uint8_t **data, int *profile);
int learner_registered(struct learner_rt *l);
int learner_end_found(struct learner_rt *l);

/* sweeper.c */
void sweeper_init(void);
void sweeper_tick(int full);
void sweeper_report(struct learner_rt *l, const uint8_t *slot);
void sweeper_flush_ended(void);
uint64_t sweeper_next_timeout_ms(void);

/* registry (learner.c) */
uint8_t *reg_insert(struct flow_registry *r, const uint8_t *key, uint8_t timeout_id, uint8_t permanent);
uint8_t *reg_find(struct flow_registry *r, const uint8_t *key);
void reg_delete_slot(struct flow_registry *r, size_t pos);
static inline uint8_t *reg_slot(struct flow_registry *r, size_t i)
{
	return &r->slots[i * r->slot_size];
}
/* slot layout: [0] used, [1] timeout id, [2] permanent, [3] counted, [4..7] counter index
 * (host order, when counted), [8..] key bytes */
#define REG_SLOT_HDR 8
static inline uint32_t reg_slot_count_index(const uint8_t *s)
{
	uint32_t v;

	memcpy(&v, s + 4, sizeof(v));
	return v;
}

/* ctl.c */
/* spread.c: punts spread over the CS-processor workers */
struct sbuf;
#define SWXD_MAX_SPREAD 15       /* --spread-fd pairs (workers beyond the first) */
#define MAX_SPREAD_TOKENS 250    /* words of one `spread` line */
struct spread_state {
	uint32_t n;              /* workers; 0 or 1 = off (everything to socket 0) */
	uint32_t hdr;            /* packet_in header bytes before a CPU-port frame */
	uint32_t lo, hi;         /* the SNAT port pool */
	int use_mask;
	uint32_t mask;           /* client mask (persistence templates) */
	uint32_t n_vips, n_snat, n_local;
	uint32_t vip_ip[MAX_SPREAD_TOKENS], vip_port[MAX_SPREAD_TOKENS];
	uint32_t snat[MAX_SPREAD_TOKENS], local[MAX_SPREAD_TOKENS];
	uint32_t n_fds;
	int cpu_fd[SWXD_MAX_SPREAD], copy_fd[SWXD_MAX_SPREAD];
};
extern struct spread_state spread;
int spread_fds_parse(const char *arg);
uint32_t spread_worker(const uint8_t *frame, uint32_t len);
uint32_t spread_copy_worker(const uint8_t *frame, uint32_t len);
int spread_fd(int copy, uint32_t worker);
void cmd_spread(char *rest, struct sbuf *b);

/* reuse.c: a pure SYN that meets a closing flow entry ends it and runs again */
#define SWXD_MAX_REUSE_KEY 8
struct reuse_state {
	struct learner_rt *l;    /* NULL: off */
	uint32_t profile;        /* the closing (FIN/RST) timeout profile */
	uint32_t hdr, port_off, port_len, reason_off, reason;
	uint8_t src[SWXD_MAX_REUSE_KEY];
	/* the entry of the other direction: the key that the rewrite of action rev_action leads
	 * to, from its arguments (sip, dip, sport, dport; -1: none) */
	int rev_on;
	uint32_t rev_action;
	int rev_arg[4];
	uint64_t n_ended;        /* SYNs run again, their entries ended */
	uint64_t n_ended_rev;    /* ... and the entries of the other direction with them */
	uint64_t n_punted;       /* SYNs on entries in another profile: punted */
};
extern struct reuse_state reuse;
int learner_reuse_set(struct learner_rt *l, char **tok, int n_tok, char *out, size_t out_size);
int reuse_take(const uint8_t *frame, uint32_t len, uint32_t *port);
int fastio_inject_room(uint32_t port);
int fastio_injected(void);

int ctl_handle(void);     /* <0: peer closed or fatal */
void ctl_queue_unsolicited(const char *msg, size_t len);
size_t ctl_pending_bytes(void);
void ctl_flush_pending(void);

/* util.c */
int parse_u64(const char *s, uint64_t *v);
int parse_value(const char *s, uint32_t n_bits, uint8_t *be);
void value_format(const uint8_t *be, uint32_t n_bits, char *out, size_t out_size);
void field_store(uint8_t *dst, const uint8_t *be, uint32_t n_bits, int nbo);
void field_load(const uint8_t *src, uint32_t n_bits, int nbo, uint8_t *be);
int split_tokens(char *s, char **tok, int max);

struct sbuf {
	char *buf;
	size_t len;
	size_t cap;
	int oom;
};
void sb_init(struct sbuf *b);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_json_str(struct sbuf *b, const char *s);
void sb_free(struct sbuf *b);

#endif
