/* SPDX-License-Identifier: Apache-2.0
 *
 * Learner sweeper: turns data-plane expiry into `expired` notifications.
 *
 * The learner table ages entries out silently (an entry is dead once its time stamp is in the
 * past). For every key installed through the control socket the daemon keeps a registry slot;
 * the sweeper walks the registries in slices, looks every key up, and
 *   - reports a miss as `expired <learner> <v>...` (unsolicited, on the control socket) and
 *     forgets the slot; when the learner has a bound counter (`learner count`) and the entry
 *     counted into it, the line ends with `count <index> <packets> <bytes>`, the final counts
 *     of its cell (nothing counts into it any more: the entry is gone, and the cell is zeroed
 *     when an entry with that index is added again, learner.c);
 *   - re-arms hits of permanent (`learner keep`) entries, with their own (longest) profile.
 * A whole pass over every registry takes at most sweep_period (min timeout / 2, clamped),
 * done in slices at every wake-up of the main loop and at least every 100 ms.
 *
 * Note on resolution: the learner stores expiry times as (tsc >> 32), i.e. in units of 2^32
 * TSC cycles (1.9 s at 2.25 GHz), and a timeout is at least one unit. An entry therefore lives
 * between (timeout - 1 unit) and timeout seconds; keep the shortest profile >= 3 s.
 */
#include <string.h>

#include <rte_cycles.h>
#include <rte_swx_table_learner.h>

#include "swxd.h"

#define TICK_MS 100
#define MSG_MAX (32 * 1024)
#define PENDING_MAX (4u << 20)  /* stop sweeping while this much is unsent */

void sweeper_init(void)
{
	uint32_t i, j, min_s = 0;
	uint64_t period_ms;

	g.hz = rte_get_tsc_hz();
	for (i = 0; i < g.info.n_learners; i++)
		for (j = 0; j < g.learners[i].n_timeouts; j++)
			if (!min_s || g.learners[i].timeouts[j] < min_s)
				min_s = g.learners[i].timeouts[j];
	period_ms = min_s ? (uint64_t)min_s * 1000 / 2 : 1000;
	if (period_ms < 500)
		period_ms = 500;
	if (period_ms > 30000)
		period_ms = 30000;
	g.sweep_period_tsc = period_ms * g.hz / 1000;
	g.sweep_tick_tsc = TICK_MS * g.hz / 1000;
	g.next_sweep_tsc = rte_get_tsc_cycles() + g.sweep_tick_tsc;
	LOG_INFO("sweeper: full pass every %llu ms", (unsigned long long)period_ms);
}

/* The `expired` line of registry slot s. */
static void report_expired(struct learner_rt *l, const uint8_t *s, struct sbuf *b)
{
	const uint8_t *key = s + REG_SLOT_HDR;
	uint32_t i;

	sb_printf(b, "expired %s", l->name);
	for (i = 0; i < l->n_fields; i++) {
		const struct field_desc *f = &l->fields[i];
		uint8_t be[64];
		char v[140];

		if (f->n_bits > 8 * sizeof(be))
			continue;
		field_load(&key[f->offset - l->key_offset], f->n_bits, f->is_header, be);
		value_format(be, f->n_bits, v, sizeof(v));
		sb_printf(b, " %s", v);
	}
	if (s[3] && l->count_arg[0]) {
		uint32_t idx = reg_slot_count_index(s);
		uint64_t n[2] = {0, 0};

		for (i = 0; i < 2; i++)
			if (l->count_regs[i][0])
				rte_swx_ctl_pipeline_regarray_read(g.p, l->count_regs[i], idx, &n[i]);
		sb_printf(b, " count %u %llu %llu", idx, (unsigned long long)n[0],
			  (unsigned long long)n[1]);
	}
	sb_printf(b, "\n");
}

/* `expired` lines of entries the daemon ended itself (reuse.c), sent after the pipeline pass
 * that ended them (sweeper_flush_ended): one message for all of a burst. Not later: until it
 * reaches the switch, its entry shadow holds the key, and the INSERT of the new connection on
 * that 4-tuple would meet it (ALREADY_EXISTS). */
static struct sbuf ended;     /* zeroed: an empty sbuf (sb_init) */

void sweeper_flush_ended(void)
{
	if (ended.len) {
		ctl_queue_unsolicited(ended.buf, ended.len);
		ended.len = 0;
	}
}

void sweeper_report(struct learner_rt *l, const uint8_t *s)
{
	report_expired(l, s, &ended);
}

static void sweep_learner(struct learner_rt *l, size_t n, uint64_t now, struct sbuf *b)
{
	struct flow_registry *r = &l->reg;
	size_t done;

	if (!r->n_slots)
		return;
	if (n > r->n_slots)
		n = r->n_slots;
	for (done = 0; done < n; ) {
		size_t pos = l->sweep_pos;
		uint8_t *s = reg_slot(r, pos);

		if (s[0]) {
			if (learner_lookup_slot_key(l, s + REG_SLOT_HDR, now)) {
				/* with its own profile: a FIN or RST may have moved it to another */
				if (s[2])
					rte_swx_table_learner_rearm_new(l->table, l->mailbox, now, s[1]);
			} else {
				report_expired(l, s, b);
				reg_delete_slot(r, pos);
				/* Backward shift may have moved a later key into pos: look again. */
				if (reg_slot(r, pos)[0] && r->n_used)
					continue;
			}
		}
		l->sweep_pos = (pos + 1) & (r->n_slots - 1);
		done++;
		if (b->len >= MSG_MAX) {
			ctl_queue_unsolicited(b->buf, b->len);
			b->len = 0;
		}
	}
}

/* Runs one slice (or, with full, one whole pass). The caller has quiesced the pipeline. */
void sweeper_tick(int full)
{
	uint64_t now = rte_get_tsc_cycles();
	struct sbuf b;
	uint32_t i;

	g.next_sweep_tsc = now + g.sweep_tick_tsc;
	if (!full && ctl_pending_bytes() > PENDING_MAX)
		return;   /* the controller is not reading: keep the keys, report later */
	sb_init(&b);
	for (i = 0; i < g.info.n_learners; i++) {
		struct learner_rt *l = &g.learners[i];
		size_t n;

		if (full)
			n = l->reg.n_slots;
		else   /* slots per tick so that a whole pass takes sweep_period */
			n = (size_t)((l->reg.n_slots * g.sweep_tick_tsc + g.sweep_period_tsc - 1) /
				     g.sweep_period_tsc);
		sweep_learner(l, n, now, &b);
	}
	if (b.len)
		ctl_queue_unsolicited(b.buf, b.len);
	sb_free(&b);
}

uint64_t sweeper_next_timeout_ms(void)
{
	uint64_t now = rte_get_tsc_cycles();

	if (g.next_sweep_tsc <= now)
		return 0;
	return (g.next_sweep_tsc - now) * 1000 / g.hz + 1;
}
