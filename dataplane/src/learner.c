/* SPDX-License-Identifier: Apache-2.0
 *
 * Direct learner-table operations.
 *
 * DPDK 22.11 has no control API to add or read learner entries, and the regular-table control
 * path (rte_swx_ctl_pipeline_table_entry_add) keeps entries in linked lists and is O(n) per
 * entry. The daemon instead drives the pipeline's own learner table object
 * (rte_swx_table_learner_*) with a private lookup mailbox: O(1) per operation. This is safe
 * because the daemon's single thread calls it only at a packet boundary (pipeline_quiesce()).
 *
 * Key layout: the learner looks its key up in the metadata (or one header) at key_offset, over
 * key_size contiguous bytes. We fill a key buffer laid out like that struct: metadata fields in
 * host byte order (little-endian), header fields in network byte order.
 *
 * Action data layout: the arguments packed in declaration order, n_bits/8 bytes each, in
 * network byte order when the pipeline marked the argument so (it does when the action moves
 * the argument into a header as a block) and in host order otherwise -- exactly what
 * rte_swx_ctl builds for regular tables and what the action code reads.
 *
 * rte_swx_table_learner_add() after a lookup hit updates the entry in place (data + timeout),
 * which is what MODIFY uses. Time is the TSC, as in the pipeline.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_swx_table_learner.h>

#include "swxd.h"

/* ---------------------------------------------------------------------------------------- */
/* Registry of installed keys                                                               */

static inline uint32_t reg_hash(const struct flow_registry *r, const uint8_t *key)
{
	return rte_hash_crc(key, r->key_size, 0x9e3779b9);
}

static int reg_grow(struct flow_registry *r)
{
	size_t n = r->n_slots ? r->n_slots * 2 : 1024, i, mask = n - 1;
	uint8_t *slots = calloc(n, r->slot_size);

	if (!slots)
		return -ENOMEM;
	for (i = 0; i < r->n_slots; i++) {
		uint8_t *s = reg_slot(r, i);
		size_t pos;

		if (!s[0])
			continue;
		pos = reg_hash(r, s + REG_SLOT_HDR) & mask;
		while (slots[pos * r->slot_size])
			pos = (pos + 1) & mask;
		memcpy(&slots[pos * r->slot_size], s, r->slot_size);
	}
	free(r->slots);
	r->slots = slots;
	r->n_slots = n;
	return 0;
}

uint8_t *reg_find(struct flow_registry *r, const uint8_t *key)
{
	size_t mask, pos;

	if (!r->n_slots)
		return NULL;
	mask = r->n_slots - 1;
	for (pos = reg_hash(r, key) & mask; ; pos = (pos + 1) & mask) {
		uint8_t *s = reg_slot(r, pos);

		if (!s[0])
			return NULL;
		if (!memcmp(s + REG_SLOT_HDR, key, r->key_size))
			return s;
	}
}

/* The slot of `key`, inserted if absent (counted = 0); NULL when the registry cannot grow. */
uint8_t *reg_insert(struct flow_registry *r, const uint8_t *key, uint8_t timeout_id, uint8_t permanent)
{
	uint8_t *s = reg_find(r, key);
	size_t mask, pos;

	if (!s) {
		if ((r->n_used + 1) * 2 > r->n_slots && reg_grow(r))
			return NULL;
		mask = r->n_slots - 1;
		for (pos = reg_hash(r, key) & mask; reg_slot(r, pos)[0]; pos = (pos + 1) & mask)
			;
		s = reg_slot(r, pos);
		s[0] = 1;
		memcpy(s + REG_SLOT_HDR, key, r->key_size);
		r->n_used++;
	}
	s[1] = timeout_id;
	s[2] = permanent;
	return s;
}

/* Backward-shift deletion keeps probe sequences intact without tombstones. */
void reg_delete_slot(struct flow_registry *r, size_t i)
{
	size_t mask = r->n_slots - 1, j = i;

	for (;;) {
		uint8_t *sj;
		size_t k;

		j = (j + 1) & mask;
		sj = reg_slot(r, j);
		if (!sj[0])
			break;
		k = reg_hash(r, sj + REG_SLOT_HDR) & mask;
		/* Leave sj where it is if its home k lies cyclically in (i, j]. */
		if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		memcpy(reg_slot(r, i), sj, r->slot_size);
		i = j;
	}
	memset(reg_slot(r, i), 0, r->slot_size);
	r->n_used--;
}

static void reg_delete(struct flow_registry *r, const uint8_t *key)
{
	uint8_t *s = reg_find(r, key);

	if (s)
		reg_delete_slot(r, (size_t)(s - r->slots) / r->slot_size);
}

/* ---------------------------------------------------------------------------------------- */
/* Setup                                                                                    */

int learner_setup(struct learner_rt *l)
{
	struct rte_swx_ctl_learner_info li;
	uint32_t i, first = UINT32_MAX, end = 0, sum = 0;

	if (rte_swx_ctl_learner_info_get(g.p, l->id, &li))
		return -EINVAL;
	snprintf(l->name, sizeof(l->name), "%s", li.name);
	l->size = li.size;
	l->n_fields = li.n_match_fields;
	l->fields = calloc(li.n_match_fields + 1, sizeof(*l->fields));
	if (!l->fields)
		return -ENOMEM;
	for (i = 0; i < li.n_match_fields; i++) {
		struct rte_swx_ctl_table_match_field_info mf;

		if (rte_swx_ctl_learner_match_field_info_get(g.p, l->id, i, &mf))
			return -EINVAL;
		if (mf.n_bits % 8 || mf.offset % 8) {
			LOG_ERR("learner %s: key field %u is not byte aligned", l->name, i);
			return -EINVAL;
		}
		l->fields[i].offset = mf.offset / 8;
		l->fields[i].n_bits = mf.n_bits;
		l->fields[i].is_header = mf.is_header;
		if (mf.offset / 8 < first)
			first = mf.offset / 8;
		if ((mf.offset + mf.n_bits) / 8 > end)
			end = (mf.offset + mf.n_bits) / 8;
		sum += mf.n_bits / 8;
	}
	if (!li.n_match_fields || sum != end - first) {
		LOG_ERR("learner %s: key fields must be contiguous", l->name);
		return -EINVAL;
	}
	l->key_offset = first;
	l->key_size = end - first;
	l->struct_size = end;
	l->keybuf = calloc(1, end);
	l->mailbox = calloc(1, rte_swx_table_learner_mailbox_size_get());

	l->n_actions = li.n_actions;
	l->action_ids = calloc(li.n_actions + 1, sizeof(*l->action_ids));
	l->action_for_entries = calloc(li.n_actions + 1, sizeof(int));
	if (!l->keybuf || !l->mailbox || !l->action_ids || !l->action_for_entries)
		return -ENOMEM;
	for (i = 0; i < li.n_actions; i++) {
		struct rte_swx_ctl_table_action_info ai;

		if (rte_swx_ctl_learner_action_info_get(g.p, l->id, i, &ai))
			return -EINVAL;
		l->action_ids[i] = ai.action_id;
		l->action_for_entries[i] = ai.action_is_for_table_entries;
		if (g.actions[ai.action_id].data_size > l->action_data_size)
			l->action_data_size = g.actions[ai.action_id].data_size;
	}
	l->databuf = calloc(1, l->action_data_size + 8);
	if (!l->databuf)
		return -ENOMEM;

	l->n_timeouts = li.n_key_timeouts < SWXD_MAX_TIMEOUTS ? li.n_key_timeouts : SWXD_MAX_TIMEOUTS;
	for (i = 0; i < l->n_timeouts; i++)
		rte_swx_ctl_pipeline_learner_timeout_get(g.p, l->id, i, &l->timeouts[i]);

	l->reg.key_size = l->key_size;
	l->reg.slot_size = (REG_SLOT_HDR + l->key_size + 3) & ~3u;
	return 0;
}

/* --prefault: every learner table's memory is made resident now (MADV_POPULATE_WRITE).
 * Without it the kernel allocates and zeroes a page the first time a key hashes into it:
 * the EAL memory is a memfd with --no-huge, and a lookup that misses reads a bucket like a
 * hit does, so a fresh switch under load spends part of its CPU in page faults until most
 * of the table has been touched (docs/benchmarks.md, "Prefaulted flow tables"). The cost
 * moves to the start: the table's whole size in resident memory and the time to zero it.
 * Returns 0, or -errno when the kernel refuses (the caller logs and goes on). */
int learner_prefault(uint64_t *bytes)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint32_t i;

	*bytes = 0;
	for (i = 0; i < g.info.n_learners; i++) {
		struct learner_rt *l = &g.learners[i];
		size_t size = 0;
		uintptr_t start, end;

		if (!l->table || rte_malloc_validate(l->table, &size) || !size)
			continue;
		start = (uintptr_t)l->table & ~(uintptr_t)(pg - 1);
		end = ((uintptr_t)l->table + size + pg - 1) & ~(uintptr_t)(pg - 1);
		if (madvise((void *)start, end - start, MADV_POPULATE_WRITE) < 0)
			return -errno;
		*bytes += end - start;
	}
	return 0;
}

/* --learner-timeouts S1,S2,...: overrides the first profiles of every learner. */
int learner_apply_timeouts(void)
{
	uint32_t i, j;

	for (i = 0; i < g.info.n_learners; i++) {
		struct learner_rt *l = &g.learners[i];

		for (j = 0; j < g.n_learner_timeouts && j < l->n_timeouts; j++) {
			int rc = rte_swx_ctl_pipeline_learner_timeout_set(g.p, i, j,
									   g.learner_timeouts[j]);
			if (rc) {
				LOG_ERR("learner %s: timeout %u = %u s rejected (%d)", l->name, j,
					g.learner_timeouts[j], rc);
				return rc;
			}
			l->timeouts[j] = g.learner_timeouts[j];
		}
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Operations                                                                               */

/* Looks up the key currently in l->keybuf. */
static int lookup(struct learner_rt *l, uint64_t now, uint64_t *action_id, uint8_t **data)
{
	uint8_t *kb = l->keybuf;
	size_t entry_id;
	int hit = 0;

	/* Two-stage lookup: the first call hashes and prefetches, the second one compares. */
	while (!rte_swx_table_learner_lookup(l->table, l->mailbox, now, &kb, action_id, data,
					     &entry_id, &hit))
		;
	return hit;
}

/* The timeout profile of the entry the last lookup() hit. DPDK 22.11 has no call for it: it is
 * read from the learner's own structures (lib/table/rte_swx_table_learner.c: struct mailbox,
 * struct table_bucket), mirrored here. Every add checks the mirror against the profile it just
 * set (learner_op); after one mismatch the profile reads as unknown (-1) for good. */
struct mailbox_2211 {
	void *bucket;
	uint32_t input_sig;
	uint8_t *input_key;
	uint32_t hit;
	size_t bucket_key_pos;
	int state;
};
#define BUCKET_KEYS_2211 4
struct bucket_2211 {
	uint32_t time[BUCKET_KEYS_2211];
	uint32_t sig[BUCKET_KEYS_2211];
	uint8_t key_timeout_id[BUCKET_KEYS_2211];
};
static int profile_mirror_ok = 1;

static int hit_profile(const struct learner_rt *l)
{
	const struct mailbox_2211 *m = l->mailbox;

	if (!profile_mirror_ok || !m->hit || !m->bucket || m->bucket_key_pos >= BUCKET_KEYS_2211)
		return -1;
	return ((const struct bucket_2211 *)m->bucket)->key_timeout_id[m->bucket_key_pos];
}

static void check_profile_mirror(struct learner_rt *l, uint64_t now, uint32_t timeout_id)
{
	uint64_t action_id;
	uint8_t *data;

	if (profile_mirror_ok && (!lookup(l, now, &action_id, &data) ||
				  hit_profile(l) != (int)timeout_id)) {
		profile_mirror_ok = 0;
		LOG_ERR("learner %s: the entries' timeout profiles cannot be read (another DPDK "
			"version?): SYNs on closing entries are punted", l->name);
	}
}

int learner_profiles_readable(void)
{
	return profile_mirror_ok;
}

/* The key of l->keybuf: field i of the learner's key from its big-endian value. */
void learner_key_field(struct learner_rt *l, uint32_t i, const uint8_t *be)
{
	const struct field_desc *f = &l->fields[i];

	field_store(&l->keybuf[f->offset], be, f->n_bits, f->is_header);
}

/* Looks the key of l->keybuf up: 1 on a hit, with the entry's action, action data and timeout
 * profile (-1: unknown). */
int learner_find_entry(struct learner_rt *l, uint64_t *action_id, uint8_t **data, int *profile)
{
	if (!lookup(l, rte_get_tsc_cycles(), action_id, data))
		return 0;
	*profile = hit_profile(l);
	return 1;
}

/* Whether the registry holds the key of l->keybuf (an entry added through the control socket). */
int learner_registered(struct learner_rt *l)
{
	return reg_find(&l->reg, &l->keybuf[l->key_offset]) != NULL;
}

/* Ends the entry learner_find_entry() just found, if the registry holds it: it leaves the
 * learner and the registry, and its `expired` line (with its final counts) goes out with the
 * next ones (sweeper_report). 0 if the registry does not know it (it stays). */
int learner_end_found(struct learner_rt *l)
{
	uint8_t *slot = reg_find(&l->reg, &l->keybuf[l->key_offset]);

	if (!slot)
		return 0;
	rte_swx_table_learner_delete(l->table, l->mailbox);
	sweeper_report(l, slot);
	reg_delete_slot(&l->reg, (size_t)(slot - l->reg.slots) / l->reg.slot_size);
	return 1;
}

/* Looks up a registry key (key_size bytes as stored in the table). */
int learner_lookup_slot_key(struct learner_rt *l, const uint8_t *key, uint64_t now)
{
	uint64_t action_id;
	uint8_t *data;

	memcpy(&l->keybuf[l->key_offset], key, l->key_size);
	return lookup(l, now, &action_id, &data);
}

static int parse_key(struct learner_rt *l, char **tok, int n_tok, char *out, size_t out_size)
{
	uint8_t be[64];
	uint32_t i;

	if (n_tok < 1 + (int)l->n_fields || strcmp(tok[0], "match")) {
		snprintf(out, out_size, "err EINVAL expected: match <%u values>", l->n_fields);
		return -EINVAL;
	}
	for (i = 0; i < l->n_fields; i++) {
		const struct field_desc *f = &l->fields[i];
		int rc;

		if (f->n_bits > 8 * sizeof(be)) {
			snprintf(out, out_size, "err EINVAL key field %u too wide", i);
			return -EINVAL;
		}
		rc = parse_value(tok[1 + i], f->n_bits, be);
		if (rc) {
			snprintf(out, out_size, "err %s bad value '%s' for %u-bit key field %u",
				 rc == -ERANGE ? "ERANGE" : "EINVAL", tok[1 + i], f->n_bits, i);
			return -EINVAL;
		}
		field_store(&l->keybuf[f->offset], be, f->n_bits, f->is_header);
	}
	return 1 + (int)l->n_fields;
}

/* "action NAME [ARG VALUE]... [timeout ID]" -> l->databuf, *action_id, *timeout_id */
static int parse_action(struct learner_rt *l, char **tok, int n_tok, uint64_t *action_id,
			uint32_t *timeout_id, char *out, size_t out_size)
{
	const struct action_desc *a;
	uint32_t id, i, j, n_args_seen = 0;
	uint8_t be[64];
	int k, arg;

	if (n_tok < 2 || strcmp(tok[0], "action")) {
		snprintf(out, out_size, "err EINVAL expected: action <name> [<arg> <value>]...");
		return -EINVAL;
	}
	a = action_find(tok[1], &id);
	for (j = 0; a && j < l->n_actions; j++)
		if (l->action_ids[j] == id)
			break;
	if (!a || j == l->n_actions) {
		snprintf(out, out_size, "err EINVAL action '%s' is not an action of %s", tok[1], l->name);
		return -EINVAL;
	}
	if (!l->action_for_entries[j]) {
		snprintf(out, out_size, "err EINVAL action '%s' is default-only", tok[1]);
		return -EINVAL;
	}
	memset(l->databuf, 0, l->action_data_size);
	*timeout_id = 0;
	for (k = 2; k < n_tok; k += 2) {
		if (k + 1 >= n_tok) {
			snprintf(out, out_size, "err EINVAL '%s' has no value", tok[k]);
			return -EINVAL;
		}
		if (!strcmp(tok[k], "timeout")) {
			uint64_t t;

			if (parse_u64(tok[k + 1], &t) || t >= l->n_timeouts) {
				snprintf(out, out_size, "err EINVAL timeout id '%s' (learner has %u)",
					 tok[k + 1], l->n_timeouts);
				return -EINVAL;
			}
			*timeout_id = (uint32_t)t;
			continue;
		}
		arg = action_arg_find(a, tok[k]);
		if (arg < 0) {
			snprintf(out, out_size, "err EINVAL action %s has no argument '%s'", a->name, tok[k]);
			return -EINVAL;
		}
		i = (uint32_t)arg;
		if (a->args[i].n_bits > 8 * sizeof(be) ||
		    parse_value(tok[k + 1], a->args[i].n_bits, be)) {
			snprintf(out, out_size, "err EINVAL bad value '%s' for %u-bit argument %s",
				 tok[k + 1], a->args[i].n_bits, a->args[i].name);
			return -EINVAL;
		}
		field_store(&l->databuf[a->args[i].offset], be, a->args[i].n_bits, a->args[i].nbo);
		n_args_seen++;
	}
	if (n_args_seen != a->n_args) {
		snprintf(out, out_size, "err EINVAL action %s takes %u arguments, got %u", a->name,
			 a->n_args, n_args_seen);
		return -EINVAL;
	}
	*action_id = id;
	return 0;
}

static void format_hit(struct learner_rt *l, uint64_t action_id, const uint8_t *data, char *out,
		       size_t out_size)
{
	const struct action_desc *a;
	size_t len;
	uint32_t i;

	if (action_id >= g.info.n_actions) {
		snprintf(out, out_size, "ok hit ?");
		return;
	}
	a = &g.actions[action_id];
	len = snprintf(out, out_size, "ok hit %s", a->name);
	for (i = 0; i < a->n_args && len < out_size; i++) {
		uint8_t be[64];
		char v[140];

		if (a->args[i].n_bits > 8 * sizeof(be))
			continue;
		field_load(&data[a->args[i].offset], a->args[i].n_bits, a->args[i].nbo, be);
		value_format(be, a->args[i].n_bits, v, sizeof(v));
		len += snprintf(out + len, out_size - len, " %s=%s", a->args[i].name, v);
	}
}

/* Whether entries of `action_id` count into the bound counter, and at which index (the value
 * of their count_arg, just parsed into l->databuf). */
static uint8_t count_index(struct learner_rt *l, uint64_t action_id, uint32_t *idx)
{
	const struct action_desc *a = &g.actions[action_id];
	uint8_t be[4];
	uint32_t i, j;
	int arg;

	*idx = 0;
	if (!l->count_arg[0])
		return 0;
	arg = action_arg_find(a, l->count_arg);
	if (arg < 0 || a->args[arg].n_bits > 32)
		return 0;
	i = (uint32_t)arg;
	field_load(&l->databuf[a->args[i].offset], a->args[i].n_bits, a->args[i].nbo, be);
	for (j = 0; j < a->args[i].n_bits / 8; j++)
		*idx = (*idx << 8) | be[j];
	return 1;
}

/* "<arg> <packets regarray> <bytes regarray>" (tok[0..2]; `-` for a unit the counter does not
 * have): bind the counter an entry's expiry reports. Entries added or modified from now on are
 * counted, and adding one zeroes its cell: the index of a flow that ended starts from zero
 * when it is used again. */
int learner_count_bind(struct learner_rt *l, char **tok, int n_tok, char *out, size_t out_size)
{
	uint64_t v;
	int i;

	if (n_tok != 3) {
		snprintf(out, out_size, "err EINVAL usage: learner count <learner> <arg> "
			 "<packets regarray> <bytes regarray>");
		return -EINVAL;
	}
	for (i = 1; i < 3; i++)
		if (strcmp(tok[i], "-") && (strlen(tok[i]) >= SWXD_NAME_SIZE ||
		    rte_swx_ctl_pipeline_regarray_read(g.p, tok[i], 0, &v))) {
			snprintf(out, out_size, "err EINVAL no regarray '%s'", tok[i]);
			return -EINVAL;
		}
	if (strlen(tok[0]) >= SWXD_NAME_SIZE) {
		snprintf(out, out_size, "err EINVAL argument name too long");
		return -EINVAL;
	}
	snprintf(l->count_arg, sizeof(l->count_arg), "%s", tok[0]);
	for (i = 0; i < 2; i++)
		snprintf(l->count_regs[i], sizeof(l->count_regs[i]), "%s",
			 strcmp(tok[1 + i], "-") ? tok[1 + i] : "");
	snprintf(out, out_size, "ok");
	return 0;
}

/* tok[0] is the first token after the learner name. Writes the reply line to out. */
int learner_op(struct learner_rt *l, const char *op, char **tok, int n_tok, char *out,
	       size_t out_size)
{
	uint64_t now = rte_get_tsc_cycles(), action_id = 0, cur_action;
	uint32_t timeout_id = 0, idx;
	uint8_t *cur_data, *slot;
	int n, hit;

	n = parse_key(l, tok, n_tok, out, out_size);
	if (n < 0)
		return n;
	tok += n;
	n_tok -= n;

	if (!strcmp(op, "add") || !strcmp(op, "mod")) {
		int is_add = op[0] == 'a';

		if (parse_action(l, tok, n_tok, &action_id, &timeout_id, out, out_size))
			return -EINVAL;
		hit = lookup(l, now, &cur_action, &cur_data);
		if (is_add && hit) {
			snprintf(out, out_size, "err EEXIST key already present");
			return -EEXIST;
		}
		if (!is_add && !hit) {
			snprintf(out, out_size, "err ENOENT key not present");
			return -ENOENT;
		}
		/* After a hit the add() rewrites the entry's data and timeout in place. */
		if (rte_swx_table_learner_add(l->table, l->mailbox, now, action_id, l->databuf,
					      timeout_id)) {
			l->n_enospc++;
			snprintf(out, out_size, "err ENOSPC learner bucket full");
			return -ENOSPC;
		}
		slot = reg_insert(&l->reg, &l->keybuf[l->key_offset], (uint8_t)timeout_id, 0);
		if (!slot) {
			rte_swx_table_learner_delete(l->table, l->mailbox);
			snprintf(out, out_size, "err ENOMEM registry");
			return -ENOMEM;
		}
		check_profile_mirror(l, now, timeout_id);
		slot[3] = count_index(l, action_id, &idx);
		memcpy(slot + 4, &idx, sizeof(idx));
		if (is_add && slot[3])
			for (n = 0; n < 2; n++)
				if (l->count_regs[n][0])
					rte_swx_ctl_pipeline_regarray_write(g.p, l->count_regs[n], idx, 0);
		snprintf(out, out_size, "ok");
		return 0;
	}

	if (n_tok) {
		snprintf(out, out_size, "err EINVAL unexpected '%s'", tok[0]);
		return -EINVAL;
	}
	hit = lookup(l, now, &cur_action, &cur_data);

	if (!strcmp(op, "get")) {
		if (hit)
			format_hit(l, cur_action, cur_data, out, out_size);
		else
			snprintf(out, out_size, "ok miss");
		return 0;
	}
	if (!hit) {
		snprintf(out, out_size, "err ENOENT key not present");
		return -ENOENT;
	}
	if (!strcmp(op, "del")) {
		rte_swx_table_learner_delete(l->table, l->mailbox);
		reg_delete(&l->reg, &l->keybuf[l->key_offset]);
		snprintf(out, out_size, "ok");
		return 0;
	}
	if (!strcmp(op, "keep")) {
		/* Permanent entries move to the longest timeout profile; the sweeper re-arms them
		 * well before that runs out. */
		uint32_t t, longest = 0;

		for (t = 1; t < l->n_timeouts; t++)
			if (l->timeouts[t] > l->timeouts[longest])
				longest = t;
		rte_swx_table_learner_rearm_new(l->table, l->mailbox, now, longest);
		if (!reg_insert(&l->reg, &l->keybuf[l->key_offset], (uint8_t)longest, 1)) {
			snprintf(out, out_size, "err ENOMEM registry");
			return -ENOMEM;
		}
		snprintf(out, out_size, "ok");
		return 0;
	}
	snprintf(out, out_size, "err EINVAL unknown learner operation '%s'", op);
	return -EINVAL;
}
