/* SPDX-License-Identifier: Apache-2.0
 *
 * Pipeline construction and the packet-boundary machinery.
 *
 * Build: spec --rte_swx_pipeline_codegen()--> C --gcc--> .so (cached in --workdir under the
 * hash of the spec and the DPDK version) --rte_swx_pipeline_build_from_lib()--> pipeline.
 *
 * Packet boundary: the SWX pipeline interleaves RTE_SWX_PIPELINE_THREADS_MAX "threads" (packet
 * contexts) to hide memory latency; any of them may be in the middle of a packet, holding a
 * learner mailbox or a pointer into a table entry, when rte_swx_pipeline_run() returns. Control
 * operations (learner add/delete, table commit, register writes) therefore run only after
 * pipeline_quiesce(): input ports are gated (they report "no packet") and the pipeline is stepped
 * one instruction at a time until every thread sits on its first instruction (rx). This is the
 * only place this file needs the private rte_swx_pipeline_internal.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_version.h>
#include <rte_swx_pipeline.h>
#include <rte_swx_ctl.h>
#include "rte_swx_pipeline_internal.h"

#include "swxd.h"

#define PIPELINE_NAME "p4cs"

/* ---------------------------------------------------------------------------------------- */
/* Build                                                                                    */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
	const uint8_t *d = data;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= d[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int file_hash(const char *path, uint64_t *hash)
{
	FILE *f = fopen(path, "rb");
	uint64_t h = 0xcbf29ce484222325ULL;
	char buf[65536];
	size_t n;

	if (!f)
		return -errno;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		h = fnv1a(h, buf, n);
	fclose(f);
	/* The generated C is tied to the exact DPDK version (internal structures). */
	h = fnv1a(h, rte_version(), strlen(rte_version()));
	h = fnv1a(h, g.headers_dir, strlen(g.headers_dir));
	*hash = h;
	return 0;
}

static int compile_lib(const char *c_path, const char *so_path, const char *log_path)
{
	char tmp[PATH_MAX + 16], cmd[4 * PATH_MAX + 512];
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", so_path, (int)getpid());
	snprintf(cmd, sizeof(cmd),
		 "gcc -O2 -shared -fPIC -DALLOW_EXPERIMENTAL_API -Wno-deprecated-declarations "
		 "-I'%s' $(pkg-config --cflags libdpdk) -o '%s' '%s' $(pkg-config --libs libdpdk) "
		 ">'%s' 2>&1",
		 g.headers_dir, tmp, c_path, log_path);
	LOG_INFO("compiling pipeline: %s", cmd);
	rc = system(cmd);
	if (rc != 0) {
		unlink(tmp);
		LOG_ERR("pipeline compilation failed (status %d), see %s", rc, log_path);
		return -EIO;
	}
	if (rename(tmp, so_path) < 0) {
		unlink(tmp);
		return -errno;
	}
	return 0;
}

int pipeline_build(void)
{
	char c_path[PATH_MAX], so_path[PATH_MAX], log_path[PATH_MAX], io_path[PATH_MAX];
	struct stat st;
	uint64_t hash = 0;
	FILE *io;
	int rc;

	rc = file_hash(g.spec_path, &hash);
	if (rc) {
		LOG_ERR("spec %s: %s", g.spec_path, strerror(-rc));
		return rc;
	}
	snprintf(c_path, sizeof(c_path), "%s/pipeline-%016llx.c", g.workdir, (unsigned long long)hash);
	snprintf(so_path, sizeof(so_path), "%s/pipeline-%016llx.so", g.workdir, (unsigned long long)hash);
	snprintf(log_path, sizeof(log_path), "%s/pipeline-%016llx.log", g.workdir, (unsigned long long)hash);
	snprintf(io_path, sizeof(io_path), "%s/iospec.txt", g.workdir);

	if (stat(so_path, &st) < 0) {
		FILE *spec, *code;
		uint32_t err_line = 0;
		const char *err_msg = "";

		spec = fopen(g.spec_path, "r");
		code = fopen(c_path, "w");
		if (!spec || !code) {
			LOG_ERR("cannot open %s / %s", g.spec_path, c_path);
			if (spec)
				fclose(spec);
			if (code)
				fclose(code);
			return -EIO;
		}
		rc = rte_swx_pipeline_codegen(spec, code, &err_line, &err_msg);
		fclose(spec);
		fclose(code);
		if (rc) {
			LOG_ERR("%s:%u: %s (%d)", g.spec_path, err_line, err_msg ? err_msg : "?", rc);
			return rc;
		}
		rc = compile_lib(c_path, so_path, log_path);
		if (rc)
			return rc;
	} else {
		LOG_INFO("using cached %s", so_path);
	}

	rc = ports_write_iospec(io_path);
	if (rc) {
		LOG_ERR("iospec %s: %s", io_path, strerror(-rc));
		return rc;
	}
	io = fopen(io_path, "r");
	if (!io)
		return -errno;
	rc = rte_swx_pipeline_build_from_lib(&g.p, PIPELINE_NAME, so_path, io, 0);
	fclose(io);
	if (rc) {
		LOG_ERR("pipeline build from %s with %s failed (%d)", so_path, io_path, rc);
		return rc;
	}
	g.ctl = rte_swx_ctl_pipeline_create(g.p);
	if (!g.ctl) {
		LOG_ERR("control handle creation failed");
		return -ENOMEM;
	}
	return rte_swx_ctl_pipeline_info_get(g.p, &g.info);
}

/* ---------------------------------------------------------------------------------------- */
/* Description of actions, tables and learners (for the control protocol)                   */

static int describe_actions(void)
{
	uint32_t i, j;

	g.actions = calloc(g.info.n_actions, sizeof(*g.actions));
	if (!g.actions)
		return -ENOMEM;
	for (i = 0; i < g.info.n_actions; i++) {
		struct rte_swx_ctl_action_info ai;
		struct action_desc *a = &g.actions[i];

		if (rte_swx_ctl_action_info_get(g.p, i, &ai))
			return -EINVAL;
		snprintf(a->name, sizeof(a->name), "%s", ai.name);
		a->n_args = ai.n_args;
		a->args = calloc(ai.n_args ? ai.n_args : 1, sizeof(*a->args));
		if (!a->args)
			return -ENOMEM;
		for (j = 0; j < ai.n_args; j++) {
			struct rte_swx_ctl_action_arg_info aa;

			if (rte_swx_ctl_action_arg_info_get(g.p, i, j, &aa))
				return -EINVAL;
			snprintf(a->args[j].name, sizeof(a->args[j].name), "%s", aa.name);
			a->args[j].n_bits = aa.n_bits;
			a->args[j].nbo = aa.is_network_byte_order;
			a->args[j].offset = a->data_size;
			a->data_size += aa.n_bits / 8;
		}
	}
	return 0;
}

static int describe_tables(void)
{
	uint32_t i, j;

	g.tables = calloc(g.info.n_tables ? g.info.n_tables : 1, sizeof(*g.tables));
	if (!g.tables)
		return -ENOMEM;
	for (i = 0; i < g.info.n_tables; i++) {
		struct rte_swx_ctl_table_info ti;
		struct table_desc *t = &g.tables[i];

		if (rte_swx_ctl_table_info_get(g.p, i, &ti))
			return -EINVAL;
		snprintf(t->name, sizeof(t->name), "%s", ti.name);
		t->size = ti.size;
		t->n_fields = ti.n_match_fields;
		t->n_actions = ti.n_actions;
		t->fields = calloc(ti.n_match_fields + 1, sizeof(*t->fields));
		t->action_ids = calloc(ti.n_actions + 1, sizeof(*t->action_ids));
		if (!t->fields || !t->action_ids)
			return -ENOMEM;
		for (j = 0; j < ti.n_match_fields; j++)
			if (rte_swx_ctl_table_match_field_info_get(g.p, i, j, &t->fields[j]))
				return -EINVAL;
		for (j = 0; j < ti.n_actions; j++) {
			struct rte_swx_ctl_table_action_info tai;

			if (rte_swx_ctl_table_action_info_get(g.p, i, j, &tai))
				return -EINVAL;
			t->action_ids[j] = tai.action_id;
		}
	}
	return 0;
}

static int describe_learners(void)
{
	struct rte_swx_table_state *ts;
	uint32_t i;
	int rc;

	g.learners = calloc(g.info.n_learners ? g.info.n_learners : 1, sizeof(*g.learners));
	if (!g.learners)
		return -ENOMEM;
	rc = rte_swx_pipeline_table_state_get(g.p, &ts);
	if (rc)
		return rc;
	for (i = 0; i < g.info.n_learners; i++) {
		struct learner_rt *l = &g.learners[i];

		l->id = i;
		/* Learner objects follow the regular tables and the selectors in the state. */
		l->table = ts[g.info.n_tables + g.info.n_selectors + i].obj;
		rc = learner_setup(l);
		if (rc)
			return rc;
	}
	return 0;
}

int pipeline_describe(void)
{
	int rc;

	rc = describe_actions();
	if (!rc)
		rc = describe_tables();
	if (!rc)
		rc = describe_learners();
	return rc;
}

const struct action_desc *action_find(const char *name, uint32_t *id)
{
	uint32_t i;

	for (i = 0; i < g.info.n_actions; i++)
		if (!strcmp(g.actions[i].name, name)) {
			if (id)
				*id = i;
			return &g.actions[i];
		}
	return NULL;
}

/* The index of action a's argument `name`, or -1. */
int action_arg_find(const struct action_desc *a, const char *name)
{
	uint32_t i;

	for (i = 0; i < a->n_args; i++)
		if (!strcmp(a->args[i].name, name))
			return (int)i;
	return -1;
}

int table_find(const char *name)
{
	uint32_t i;

	for (i = 0; i < g.info.n_tables; i++)
		if (!strcmp(g.tables[i].name, name))
			return (int)i;
	return -1;
}

int learner_find(const char *name)
{
	uint32_t i;

	for (i = 0; i < g.info.n_learners; i++)
		if (!strcmp(g.learners[i].name, name))
			return (int)i;
	return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Packet boundary (the input shims that count and gate received packets are in fastio.c)    */

int pipeline_threads_idle(void)
{
	struct rte_swx_pipeline *p = g.p;
	uint32_t i;

	for (i = 0; i < RTE_SWX_PIPELINE_THREADS_MAX; i++)
		if (p->threads[i].ip != p->instructions || p->threads[i].recirculate)
			return 0;
	return 1;
}

int pipeline_quiesce(void)
{
	uint32_t steps = 0;

	g.rx_gate_closed = 1;
	while (!pipeline_threads_idle()) {
		rte_swx_pipeline_run(g.p, 1);
		if (++steps > 100000000) {
			LOG_ERR("pipeline does not reach a packet boundary");
			return -EBUSY;
		}
	}
	rte_swx_pipeline_flush(g.p);
	return 0;
}

void pipeline_resume(void)
{
	g.rx_gate_closed = 0;
}

uint64_t pipeline_tx_packets(void)
{
	uint64_t n = 0;
	uint32_t i;

	/* Packets sent to the user's ports; the drop port the pipeline appends last is not counted. */
	for (i = 0; i < g.n_ports; i++) {
		struct rte_swx_port_out_stats st;

		memset(&st, 0, sizeof(st));
		if (!rte_swx_ctl_pipeline_port_out_stats_read(g.p, i, &st))
			n += st.n_pkts + st.n_pkts_drop;   /* a sink counts as drop */
	}
	return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Mirroring sessions                                                                       */

/* A session that was never set would copy to port 0 truncated to 0 bytes (the pipeline
 * allocates the sessions zeroed): point every session at the drop port until it is set. */
int mirror_init(void)
{
	uint32_t i, n = g.info.n_mirroring_sessions;
	int rc;

	g.mirror_port = calloc(n ? n : 1, sizeof(*g.mirror_port));
	g.mirror_trunc = calloc(n ? n : 1, sizeof(*g.mirror_trunc));
	if (!g.mirror_port || !g.mirror_trunc)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		rc = mirror_set(i, -1, 0);
		if (rc)
			return rc;
	}
	return 0;
}

/* port -1 = off (the drop port); truncate 0 = the whole frame. At a packet boundary only. */
int mirror_set(uint32_t session, int32_t port, uint32_t truncate)
{
	struct rte_swx_pipeline_mirroring_session_params mp = {
		.port_id = port < 0 ? g.drop_port : (uint32_t)port,
		.fast_clone = 0,
		.truncation_length = truncate,
	};
	int rc;

	if (session >= g.info.n_mirroring_sessions || (port >= 0 && (uint32_t)port >= g.n_ports))
		return -EINVAL;
	rc = rte_swx_ctl_pipeline_mirroring_session_set(g.p, session, &mp);
	if (rc)
		return rc;
	g.mirror_port[session] = port;
	g.mirror_trunc[session] = truncate;
	return 0;
}
