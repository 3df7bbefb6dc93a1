/* SPDX-License-Identifier: Apache-2.0
 *
 * Control protocol (docs/interfaces.md section 1): one SOCK_SEQPACKET message = one or more
 * text lines; the reply is one message with exactly one line per request line. Lines starting
 * with "expired" are unsolicited notifications from the sweeper, never replies.
 *
 * Every message is handled at a packet boundary (pipeline_quiesce()). Regular-table lines are
 * staged through rte_swx_ctl and committed once at the end of the message; if the commit
 * fails, it is aborted and every table line of the message answers err.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <linux/if_packet.h>

#include <rte_swx_ctl.h>

#include "swxd.h"

#define RX_BUF_SIZE (4u << 20)
#define LINE_OUT 8192
#define MAX_TOKENS 256
#define REG_READ_MAX 4096
#define UNSOLICITED_CHUNK (32 * 1024)

static char *rx_buf;
static struct sbuf pending;     /* unsolicited lines not yet sent */
static size_t pending_off;

static const char *errno_name(int e)
{
	static char buf[16];

	switch (e < 0 ? -e : e) {
	case EINVAL: return "EINVAL";
	case EEXIST: return "EEXIST";
	case ENOENT: return "ENOENT";
	case ENOSPC: return "ENOSPC";
	case ENOMEM: return "ENOMEM";
	case EBUSY: return "EBUSY";
	case EIO: return "EIO";
	case ERANGE: return "ERANGE";
	case EMSGSIZE: return "EMSGSIZE";
	case ENOTSUP: return "ENOTSUP";
	case EPERM: return "EPERM";
	}
	snprintf(buf, sizeof(buf), "E%d", e < 0 ? -e : e);
	return buf;
}

/* Splits off the next space-separated word; *s then points at the rest. */
static char *next_word(char **s)
{
	char *p = *s, *w;

	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (!*p) {
		*s = p;
		return NULL;
	}
	w = p;
	while (*p && *p != ' ' && *p != '\t' && *p != '\r')
		p++;
	if (*p)
		*p++ = 0;
	*s = p;
	return w;
}

static void table_entry_free(struct rte_swx_table_entry *e)
{
	if (!e)
		return;
	free(e->key);
	free(e->key_mask);
	free(e->action_data);
	free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* info / stats                                                                             */

static const char *port_kind_name(enum port_kind k)
{
	switch (k) {
	case PORT_AFPACKET: return "afpacket";
	case PORT_AFXDP: return "afxdp";
	case PORT_TAP: return "tap";
	case PORT_SOURCE: return "source";
	case PORT_SINK: return "sink";
	case PORT_CPU: return "cpu";
	case PORT_COPY: return "copy";
	default: return "sink";
	}
}

static void json_action(struct sbuf *b, uint32_t id)
{
	const struct action_desc *a = &g.actions[id];
	uint32_t i;

	sb_printf(b, "{\"name\":");
	sb_json_str(b, a->name);
	sb_printf(b, ",\"id\":%u,\"args\":[", id);
	for (i = 0; i < a->n_args; i++) {
		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, a->args[i].name);
		sb_printf(b, ",\"bits\":%u}", a->args[i].n_bits);
	}
	sb_printf(b, "]}");
}

static const char *match_name(enum rte_swx_table_match_type t)
{
	switch (t) {
	case RTE_SWX_TABLE_MATCH_EXACT: return "exact";
	case RTE_SWX_TABLE_MATCH_LPM: return "lpm";
	default: return "wildcard";
	}
}

static void cmd_info(struct sbuf *b)
{
	uint32_t i, j;

	sb_printf(b, "ok {\"pipeline\":\"p4cs\",\"cpu_port\":%d,\"copy_port\":%d,\"drop_port\":%u,"
		  "\"mirroring_slots\":%u,\"mirroring_sessions\":%u,\"ports\":[", g.cpu_port,
		  g.copy_port, g.drop_port, g.info.n_mirroring_slots, g.info.n_mirroring_sessions);
	for (i = 0; i < g.n_ports; i++) {
		sb_printf(b, "%s{\"port\":%u,\"type\":\"%s\",\"name\":", i ? "," : "", i,
			  port_kind_name(g.ports[i].kind));
		sb_json_str(b, g.ports[i].arg);
		sb_printf(b, "}");
	}
	sb_printf(b, "],\"n_ports_in\":%u,\"tables\":[", g.n_ports_in);
	for (i = 0; i < g.info.n_tables; i++) {
		const struct table_desc *t = &g.tables[i];

		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, t->name);
		sb_printf(b, ",\"size\":%u,\"key\":[", t->size);
		for (j = 0; j < t->n_fields; j++)
			sb_printf(b, "%s{\"bits\":%u,\"match\":\"%s\",\"header\":%s}", j ? "," : "",
				  t->fields[j].n_bits, match_name(t->fields[j].match_type),
				  t->fields[j].is_header ? "true" : "false");
		sb_printf(b, "],\"actions\":[");
		for (j = 0; j < t->n_actions; j++) {
			sb_printf(b, "%s", j ? "," : "");
			json_action(b, t->action_ids[j]);
		}
		sb_printf(b, "]}");
	}
	sb_printf(b, "],\"learners\":[");
	for (i = 0; i < g.info.n_learners; i++) {
		const struct learner_rt *l = &g.learners[i];

		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, l->name);
		sb_printf(b, ",\"size\":%u,\"key\":[", l->size);
		for (j = 0; j < l->n_fields; j++)
			sb_printf(b, "%s{\"bits\":%u,\"match\":\"exact\",\"header\":%s}", j ? "," : "",
				  l->fields[j].n_bits, l->fields[j].is_header ? "true" : "false");
		sb_printf(b, "],\"actions\":[");
		for (j = 0; j < l->n_actions; j++) {
			sb_printf(b, "%s", j ? "," : "");
			json_action(b, l->action_ids[j]);
			/* mark default-only actions */
			if (!l->action_for_entries[j]) {
				b->len--;
				sb_printf(b, ",\"default_only\":true}");
			}
		}
		sb_printf(b, "],\"timeouts\":[");
		for (j = 0; j < l->n_timeouts; j++)
			sb_printf(b, "%s%u", j ? "," : "", l->timeouts[j]);
		sb_printf(b, "]}");
	}
	sb_printf(b, "],\"regarrays\":[");
	for (i = 0; i < g.info.n_regarrays; i++) {
		struct rte_swx_ctl_regarray_info ri;

		if (rte_swx_ctl_regarray_info_get(g.p, i, &ri))
			continue;
		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, ri.name);
		sb_printf(b, ",\"size\":%u}", ri.size);
	}
	sb_printf(b, "],\"metarrays\":[");
	for (i = 0; i < g.info.n_metarrays; i++) {
		struct rte_swx_ctl_metarray_info mi;

		if (rte_swx_ctl_metarray_info_get(g.p, i, &mi))
			continue;
		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, mi.name);
		sb_printf(b, ",\"size\":%u}", mi.size);
	}
	sb_printf(b, "]}\n");
}

/* What the kernel dropped on the receive side of an AF_PACKET port (PACKET_STATISTICS resets
 * on read: added up) or an AF_XDP port (cumulative). */
static void port_kernel_drops(struct port_cfg *pc)
{
	struct tpacket_stats st;
	socklen_t len = sizeof(st);

	if (pc->kind == PORT_AFPACKET && pc->fd >= 0 &&
	    getsockopt(pc->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
		pc->cnt.rx_drops += st.tp_drops;
	else if (pc->kind == PORT_AFXDP)
		pc->cnt.rx_drops = afxdp_kernel_drops(pc->xsk);
}

static void cmd_stats(struct sbuf *b)
{
	uint64_t *per_action = calloc(g.info.n_actions + 1, sizeof(uint64_t));
	uint32_t i;

	sb_printf(b, "ok {\"rx\":%llu,\"ports\":[", (unsigned long long)g.rx_count);
	for (i = 0; i < g.n_ports; i++) {
		struct rte_swx_port_in_stats in;
		struct rte_swx_port_out_stats out;
		const struct port_counters *c;

		memset(&in, 0, sizeof(in));
		memset(&out, 0, sizeof(out));
		if (i < g.info.n_ports_in)
			rte_swx_ctl_pipeline_port_in_stats_read(g.p, i, &in);
		rte_swx_ctl_pipeline_port_out_stats_read(g.p, i, &out);
		port_kernel_drops(&g.ports[i]);
		c = &g.ports[i].cnt;
		sb_printf(b, "%s{\"port\":%u,\"type\":\"%s\",\"name\":", i ? "," : "", i,
			  port_kind_name(g.ports[i].kind));
		sb_json_str(b, g.ports[i].arg);
		sb_printf(b, ",\"rx_pkts\":%llu,\"rx_bytes\":%llu,\"tx_pkts\":%llu,\"tx_bytes\":%llu,"
			  "\"rx_drops\":%llu,\"rx_errors\":%llu,\"tx_drops\":%llu,\"csum_completed\":%llu,"
			  "\"gso_frames\":%llu,\"gso_segments\":%llu}",
			  (unsigned long long)in.n_pkts, (unsigned long long)in.n_bytes,
			  /* sinks account what they discard as "drop" */
			  (unsigned long long)(out.n_pkts + out.n_pkts_drop),
			  (unsigned long long)(out.n_bytes + out.n_bytes_drop),
			  (unsigned long long)c->rx_drops, (unsigned long long)c->rx_errors,
			  (unsigned long long)c->tx_drops, (unsigned long long)c->csum_completed,
			  (unsigned long long)c->gso_frames, (unsigned long long)c->gso_segments);
	}
	{
		struct rte_swx_port_out_stats out;

		memset(&out, 0, sizeof(out));
		rte_swx_ctl_pipeline_port_out_stats_read(g.p, g.info.n_ports_out - 1, &out);
		sb_printf(b, "],\"drop_pkts\":%llu,\"learners\":[",
			  (unsigned long long)(out.n_pkts + out.n_pkts_drop));
	}
	for (i = 0; i < g.info.n_learners; i++) {
		struct rte_swx_learner_stats ls;
		struct learner_rt *l = &g.learners[i];

		memset(&ls, 0, sizeof(ls));
		ls.n_pkts_action = per_action;
		if (per_action)
			rte_swx_ctl_pipeline_learner_stats_read(g.p, l->name, &ls);
		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, l->name);
		sb_printf(b, ",\"hit\":%llu,\"miss\":%llu,\"learn\":%llu,\"learn_err\":%llu,"
			  "\"rearm\":%llu,\"forget\":%llu,\"entries\":%zu,\"enospc\":%llu}",
			  (unsigned long long)ls.n_pkts_hit, (unsigned long long)ls.n_pkts_miss,
			  (unsigned long long)ls.n_pkts_learn_ok, (unsigned long long)ls.n_pkts_learn_err,
			  (unsigned long long)ls.n_pkts_rearm, (unsigned long long)ls.n_pkts_forget,
			  l->reg.n_used, (unsigned long long)l->n_enospc);
	}
	sb_printf(b, "],\"reuse\":{\"learner\":");
	sb_json_str(b, reuse.l ? reuse.l->name : "");
	sb_printf(b, ",\"ended\":%llu,\"ended_reverse\":%llu,\"punted\":%llu}",
		  (unsigned long long)reuse.n_ended, (unsigned long long)reuse.n_ended_rev,
		  (unsigned long long)reuse.n_punted);
	sb_printf(b, ",\"tables\":[");
	for (i = 0; i < g.info.n_tables; i++) {
		struct rte_swx_table_stats ts;

		memset(&ts, 0, sizeof(ts));
		ts.n_pkts_action = per_action;
		if (per_action)
			rte_swx_ctl_pipeline_table_stats_read(g.p, g.tables[i].name, &ts);
		sb_printf(b, "%s{\"name\":", i ? "," : "");
		sb_json_str(b, g.tables[i].name);
		sb_printf(b, ",\"hit\":%llu,\"miss\":%llu}", (unsigned long long)ts.n_pkts_hit,
			  (unsigned long long)ts.n_pkts_miss);
	}
	sb_printf(b, "]}\n");
	free(per_action);
}

/* ---------------------------------------------------------------------------------------- */
/* Commands                                                                                 */

/* Returns 1 if the line staged a regular-table change (subject to the commit). */
static int cmd_table(char *rest, char *out)
{
	char *op = next_word(&rest), *name = next_word(&rest);
	struct rte_swx_table_entry *e;
	int blank = 0, rc;

	if (!op || !name) {
		snprintf(out, LINE_OUT, "err EINVAL usage: table add|del|default <table> ...");
		return 0;
	}
	if (table_find(name) < 0) {
		if (learner_find(name) >= 0 && !strcmp(op, "default")) {
			e = rte_swx_ctl_pipeline_learner_default_entry_read(g.ctl, name, rest, &blank);
			if (!e) {
				snprintf(out, LINE_OUT, "err EINVAL bad default entry for learner %s", name);
				return 0;
			}
			rc = rte_swx_ctl_pipeline_learner_default_entry_add(g.ctl, name, e);
			table_entry_free(e);
			goto done;
		}
		snprintf(out, LINE_OUT, "err EINVAL no regular table '%s'%s", name,
			 learner_find(name) >= 0 ? " (it is a learner: use learner ...)" : "");
		return 0;
	}
	if (strcmp(op, "add") && strcmp(op, "del") && strcmp(op, "default")) {
		snprintf(out, LINE_OUT, "err EINVAL unknown table operation '%s'", op);
		return 0;
	}
	while (*rest == ' ')
		rest++;
	if (!strcmp(op, "default") ? strncmp(rest, "action", 6) : strncmp(rest, "match", 5)) {
		snprintf(out, LINE_OUT, "err EINVAL expected '%s'",
			 !strcmp(op, "default") ? "action ..." : "match ...");
		return 0;
	}
	e = rte_swx_ctl_pipeline_table_entry_read(g.ctl, name, rest, &blank);
	if (!e) {
		snprintf(out, LINE_OUT, "err EINVAL cannot parse entry for table %s", name);
		return 0;
	}
	if (!strcmp(op, "add"))
		rc = rte_swx_ctl_pipeline_table_entry_add(g.ctl, name, e);
	else if (!strcmp(op, "del"))
		rc = rte_swx_ctl_pipeline_table_entry_delete(g.ctl, name, e);
	else
		rc = rte_swx_ctl_pipeline_table_default_entry_add(g.ctl, name, e);
	table_entry_free(e);
done:
	if (rc) {
		snprintf(out, LINE_OUT, "err %s table %s %s rejected", errno_name(rc), name, op);
		return 0;
	}
	snprintf(out, LINE_OUT, "ok");
	return 1;
}

static void cmd_learner(char *rest, char *out)
{
	char *tok[MAX_TOKENS], *op = next_word(&rest), *name = next_word(&rest);
	int n, id;

	if (!op || !name) {
		snprintf(out, LINE_OUT, "err EINVAL usage: learner add|mod|del|get|keep <learner> match ... | "
			 "learner count <learner> <arg> <packets regarray> <bytes regarray> | "
			 "learner reuse <learner> off|<profile> <hdr> <port_off> <port_len> "
			 "<reason_off> <reason> <key sources>");
		return;
	}
	if (strcmp(op, "add") && strcmp(op, "mod") && strcmp(op, "del") && strcmp(op, "get") &&
	    strcmp(op, "keep") && strcmp(op, "count") && strcmp(op, "reuse")) {
		snprintf(out, LINE_OUT, "err EINVAL unknown learner operation '%s'", op);
		return;
	}
	id = learner_find(name);
	if (id < 0) {
		snprintf(out, LINE_OUT, "err EINVAL no learner '%s'", name);
		return;
	}
	n = split_tokens(rest, tok, MAX_TOKENS);
	if (n < 0) {
		snprintf(out, LINE_OUT, "err EINVAL too many tokens");
		return;
	}
	if (!strcmp(op, "count"))
		learner_count_bind(&g.learners[id], tok, n, out, LINE_OUT);
	else if (!strcmp(op, "reuse"))
		learner_reuse_set(&g.learners[id], tok, n, out, LINE_OUT);
	else
		learner_op(&g.learners[id], op, tok, n, out, LINE_OUT);
}

static void cmd_reg(char *rest, struct sbuf *b)
{
	char *op = next_word(&rest), *name = next_word(&rest), *idx_s = next_word(&rest);
	char *arg = next_word(&rest);
	uint64_t idx, v, count = 1, i;
	int rc;

	if (!op || !name || !idx_s || parse_u64(idx_s, &idx) || idx > UINT32_MAX) {
		sb_printf(b, "err EINVAL usage: reg read <regarray> <index> [<count>] | "
			  "reg write <regarray> <index> <value>\n");
		return;
	}
	if (next_word(&rest)) {
		sb_printf(b, "err EINVAL trailing tokens\n");
		return;
	}
	if (!strcmp(op, "write")) {
		if (!arg || parse_u64(arg, &v)) {
			sb_printf(b, "err EINVAL bad value\n");
			return;
		}
		rc = rte_swx_ctl_pipeline_regarray_write(g.p, name, (uint32_t)idx, v);
		if (rc)
			sb_printf(b, "err %s regarray %s index %llu\n", errno_name(rc), name,
				  (unsigned long long)idx);
		else
			sb_printf(b, "ok\n");
		return;
	}
	if (strcmp(op, "read")) {
		sb_printf(b, "err EINVAL unknown reg operation '%s'\n", op);
		return;
	}
	if (arg && (parse_u64(arg, &count) || !count || count > REG_READ_MAX)) {
		sb_printf(b, "err EINVAL count must be 1..%u\n", REG_READ_MAX);
		return;
	}
	/* Validate the whole range first so that the reply stays one line. */
	if (rte_swx_ctl_pipeline_regarray_read(g.p, name, (uint32_t)idx, &v) ||
	    idx + count - 1 > UINT32_MAX ||
	    rte_swx_ctl_pipeline_regarray_read(g.p, name, (uint32_t)(idx + count - 1), &v)) {
		sb_printf(b, "err EINVAL regarray %s index range\n", name);
		return;
	}
	sb_printf(b, "ok");
	for (i = 0; i < count; i++) {
		rte_swx_ctl_pipeline_regarray_read(g.p, name, (uint32_t)(idx + i), &v);
		sb_printf(b, " %llu", (unsigned long long)v);
	}
	sb_printf(b, "\n");
}

/* mirror <session> <port> [truncate <bytes>] | mirror <session> off | mirror <session> */
static void cmd_mirror(char *rest, struct sbuf *b)
{
	char *sess_s = next_word(&rest), *port_s = next_word(&rest), *kw = next_word(&rest);
	char *len_s = next_word(&rest);
	uint64_t sess, port = 0, len = 0;
	int rc;

	if (!sess_s || parse_u64(sess_s, &sess) || next_word(&rest) || (kw && !len_s) ||
	    (kw && strcmp(kw, "truncate"))) {
		sb_printf(b, "err EINVAL usage: mirror <session> <port> [truncate <bytes>] | "
			  "mirror <session> off | mirror <session>\n");
		return;
	}
	if (sess >= g.info.n_mirroring_sessions) {
		sb_printf(b, "err EINVAL mirroring session must be 0..%u\n",
			  g.info.n_mirroring_sessions - 1);
		return;
	}
	if (!port_s) {
		if (g.mirror_port[sess] < 0)
			sb_printf(b, "ok off\n");
		else if (g.mirror_trunc[sess])
			sb_printf(b, "ok %d truncate %u\n", g.mirror_port[sess], g.mirror_trunc[sess]);
		else
			sb_printf(b, "ok %d\n", g.mirror_port[sess]);
		return;
	}
	if (!strcmp(port_s, "off")) {
		if (kw) {
			sb_printf(b, "err EINVAL trailing tokens after off\n");
			return;
		}
		rc = mirror_set((uint32_t)sess, -1, 0);
	} else {
		if (parse_u64(port_s, &port) || port >= g.n_ports) {
			sb_printf(b, "err EINVAL mirror port must be 0..%u\n", g.n_ports - 1);
			return;
		}
		if (len_s && (parse_u64(len_s, &len) || len > 65535)) {
			sb_printf(b, "err EINVAL truncate must be 0..65535 bytes (0 = whole frame)\n");
			return;
		}
		rc = mirror_set((uint32_t)sess, (int32_t)port, (uint32_t)len);
	}
	if (rc)
		sb_printf(b, "err %s mirroring session %llu rejected\n", errno_name(rc),
			  (unsigned long long)sess);
	else
		sb_printf(b, "ok\n");
}

/* Handles one line; appends exactly one reply line to b. Returns 1 if it staged a table op. */
static int handle_line(char *line, struct sbuf *b)
{
	static char out[LINE_OUT];
	char *rest = line, *cmd = next_word(&rest);
	int staged = 0;

	out[0] = 0;
	if (!cmd) {
		sb_printf(b, "err EINVAL empty line\n");
		return 0;
	}
	if (!strcmp(cmd, "ping") && !next_word(&rest)) {
		sb_printf(b, "ok pong\n");
	} else if (!strcmp(cmd, "info")) {
		cmd_info(b);
	} else if (!strcmp(cmd, "stats")) {
		cmd_stats(b);
	} else if (!strcmp(cmd, "sweep")) {
		sweeper_tick(1);
		sb_printf(b, "ok\n");
	} else if (!strcmp(cmd, "table")) {
		staged = cmd_table(rest, out);
		sb_printf(b, "%s\n", out);
	} else if (!strcmp(cmd, "learner")) {
		cmd_learner(rest, out);
		sb_printf(b, "%s\n", out);
	} else if (!strcmp(cmd, "reg")) {
		cmd_reg(rest, b);
	} else if (!strcmp(cmd, "mirror")) {
		cmd_mirror(rest, b);
	} else if (!strcmp(cmd, "spread")) {
		cmd_spread(rest, b);
	} else {
		sb_printf(b, "err EINVAL unknown command '%.64s'\n", cmd);
	}
	return staged;
}

static void send_reply(const char *buf, size_t len)
{
	while (send(g.ctl_fd, buf, len, MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EMSGSIZE) {
			static const char msg[] = "err EMSGSIZE reply too large\n";

			send(g.ctl_fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
		} else {
			LOG_ERR("control reply: %s", strerror(errno));
		}
		return;
	}
}

/* Returns 1 if a message was handled, 0 if none was waiting, -1 when the peer closed. */
int ctl_handle(void)
{
	struct iovec iov;
	struct msghdr mh;
	struct sbuf reply;
	ssize_t n;
	char *line, *next;
	size_t *table_lines = NULL, n_table = 0, cap_table = 0, n_lines = 0;
	size_t *line_off = NULL, cap_lines = 0;
	int rc;

	if (!rx_buf && !(rx_buf = malloc(RX_BUF_SIZE + 1)))
		return -1;
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = rx_buf;
	iov.iov_len = RX_BUF_SIZE;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	n = recvmsg(g.ctl_fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
	if (n == 0) {
		/* EOF, or a zero-length message (legal on SOCK_SEQPACKET): tell them apart. */
		static const char msg[] = "err EINVAL empty message";
		struct pollfd pfd = { .fd = g.ctl_fd, .events = POLLIN | POLLRDHUP };

		if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP)))
			return -1;

		send_reply(msg, sizeof(msg) - 1);
		return 1;
	}
	if (mh.msg_flags & MSG_TRUNC) {
		static const char msg[] = "err EMSGSIZE request too large\n";

		send_reply(msg, sizeof(msg) - 1);
		return 1;
	}
	rx_buf[n] = 0;
	if (n && rx_buf[n - 1] == '\n')
		rx_buf[--n] = 0;

	if (pipeline_quiesce()) {
		pipeline_resume();
		return 1;
	}

	sb_init(&reply);
	for (line = rx_buf; line; line = next) {
		char *end = rx_buf + n;
		int has_nul;

		next = memchr(line, '\n', (size_t)(end - line));
		if (next)
			*next++ = 0;
		has_nul = strlen(line) != (size_t)((next ? next - 1 : end) - line);
		if (n_lines == cap_lines) {
			cap_lines = cap_lines ? 2 * cap_lines : 256;
			line_off = realloc(line_off, cap_lines * sizeof(*line_off));
		}
		if (line_off)
			line_off[n_lines] = reply.len;
		n_lines++;
		if (has_nul) {
			sb_printf(&reply, "err EINVAL NUL byte in line\n");
			continue;
		}
		if (handle_line(line, &reply)) {
			if (n_table == cap_table) {
				cap_table = cap_table ? 2 * cap_table : 64;
				table_lines = realloc(table_lines, cap_table * sizeof(*table_lines));
			}
			if (table_lines)
				table_lines[n_table++] = n_lines - 1;
		}
	}

	if (n_table) {
		rc = rte_swx_ctl_pipeline_commit(g.ctl, 1);
		if (rc && line_off && table_lines) {
			/* Rebuild the reply: every staged table line now answers err. */
			struct sbuf fixed;
			size_t i, t = 0;

			sb_init(&fixed);
			for (i = 0; i < n_lines; i++) {
				size_t end = i + 1 < n_lines ? line_off[i + 1] : reply.len;

				if (t < n_table && table_lines[t] == i) {
					sb_printf(&fixed, "err %s commit failed, table changes aborted\n",
						  errno_name(rc));
					t++;
				} else {
					sb_printf(&fixed, "%.*s", (int)(end - line_off[i]),
						  reply.buf + line_off[i]);
				}
			}
			sb_free(&reply);
			reply = fixed;
		}
	}
	pipeline_resume();

	if (reply.oom || !reply.len) {
		static const char msg[] = "err ENOMEM\n";

		send_reply(msg, sizeof(msg) - 1);
	} else {
		send_reply(reply.buf, reply.len - 1);   /* no trailing newline */
	}
	sb_free(&reply);
	free(line_off);
	free(table_lines);
	ctl_flush_pending();
	return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Unsolicited messages                                                                     */

void ctl_queue_unsolicited(const char *msg, size_t len)
{
	if (g.stop)
		return;
	sb_printf(&pending, "%.*s", (int)len, msg);
	ctl_flush_pending();
}

size_t ctl_pending_bytes(void)
{
	return pending.len - pending_off;
}

/* Sends the queued lines in messages of at most UNSOLICITED_CHUNK bytes cut at line ends,
 * without blocking: a controller that is busy sending us requests must not deadlock us. */
void ctl_flush_pending(void)
{
	while (pending_off < pending.len) {
		size_t len = pending.len - pending_off;
		const char *p = pending.buf + pending_off;

		if (len > UNSOLICITED_CHUNK) {
			len = UNSOLICITED_CHUNK;
			while (len > 1 && p[len - 1] != '\n')
				len--;
		}
		/* Lines end with '\n'; the message carries them without the last one. */
		if (send(g.ctl_fd, p, len - (p[len - 1] == '\n'), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			/* The controller is gone: stop; the main loop exits on the next control poll. */
			LOG_ERR("control notification: %s", strerror(errno));
			g.stop = 1;
			pending_off = pending.len;
			break;
		}
		pending_off += len;
	}
	pending.len = 0;
	pending_off = 0;
}
