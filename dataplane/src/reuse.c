/* SPDX-License-Identifier: Apache-2.0
 *
 * A new connection on the 4-tuple of a closed one (`learner reuse`, docs/interfaces.md
 * section 1).
 *
 * A client may reuse its port as soon as the server has closed first (the client keeps no
 * TIME_WAIT). Its SYN then meets the closed connection's flow entry, which the FIN or RST
 * moved to the short expiry profile, and the pipeline punts it: a SYN never takes a spliced
 * flow. Without this, the CS processor deletes both entries through P4Runtime, reads their
 * counters and only then answers the SYN.
 *
 * With `learner reuse <learner> ...` the daemon ends such an entry itself when the SYN reaches
 * the CPU port: the entry leaves the learner and the registry, its `expired` line (with its
 * final counts) goes out after the pipeline pass (sweeper_flush_ended), as if it had expired,
 * and the SYN runs through the pipeline
 * again from its ingress port. It misses now, and the data plane answers it with its SYN
 * cookie: the CS processor never sees it. A SYN that meets an entry in another profile (a live
 * connection) is punted as before.
 *
 * With `reverse <action> <sip> <dip> <sport> <dport>` the entry of the other direction ends
 * with it when it is in the closing profile too: the key the rewrite of the found entry leads
 * to (its action's arguments named so: the answers come from dip:dport to sip:sport). In
 * transparent mode a new connection to the same server has that key as well, and its INSERT
 * would meet the old entry.
 *
 * The SYN is recognised in the punted frame: the packet_in header (hdr bytes) says the
 * ingress port (port_len bytes at port_off, big endian) and the reason (one byte at
 * reason_off); then Ethernet, IPv4 without fragmentation, TCP with SYN alone of SYN, ACK,
 * FIN and RST. The learner's key fields are taken from the frame, each named by the `reuse`
 * line: sip, dip, proto, sport, dport.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_mbuf.h>

#include "swxd.h"

enum { K_SIP, K_DIP, K_PROTO, K_SPORT, K_DPORT };
static const char *const key_names[] = { "sip", "dip", "proto", "sport", "dport" };

struct reuse_state reuse;

/* `learner reuse <learner> off` or `learner reuse <learner> <profile> <hdr> <port_off>
 * <port_len> <reason_off> <reason> <key source>... [reverse <action> <sip> <dip> <sport>
 * <dport>]` (tok: the words after the learner). */
int learner_reuse_set(struct learner_rt *l, char **tok, int n_tok, char *out, size_t out_size)
{
	static const uint32_t rev_bits[4] = { 32, 32, 16, 16 };
	uint64_t v[6];
	uint8_t src[SWXD_MAX_REUSE_KEY];
	int i, j, rev_arg[4] = { -1, -1, -1, -1 }, n_key = 6 + (int)l->n_fields;
	uint32_t rev_action = 0;

	if (n_tok == 1 && !strcmp(tok[0], "off")) {
		if (reuse.l == l)
			reuse.l = NULL;
		snprintf(out, out_size, "ok");
		return 0;
	}
	if (n_tok != n_key && !(n_tok == n_key + 6 && !strcmp(tok[n_key], "reverse"))) {
		snprintf(out, out_size, "err EINVAL usage: learner reuse <learner> off | learner reuse "
			 "<learner> <profile> <hdr> <port_off> <port_len> <reason_off> <reason> "
			 "<%u key sources: sip dip proto sport dport> [reverse <action> <sip> <dip> "
			 "<sport> <dport>]", l->n_fields);
		return -EINVAL;
	}
	if (l->n_fields > SWXD_MAX_REUSE_KEY) {
		snprintf(out, out_size, "err EINVAL the learner's key has too many fields");
		return -EINVAL;
	}
	for (i = 0; i < 6; i++)
		if (parse_u64(tok[i], &v[i])) {
			snprintf(out, out_size, "err EINVAL bad number '%s'", tok[i]);
			return -EINVAL;
		}
	if (v[0] >= l->n_timeouts || v[1] > 64 || v[3] < 1 || v[3] > 4 || v[2] + v[3] > v[1] ||
	    v[4] >= v[1] || v[5] > 255) {
		snprintf(out, out_size, "err EINVAL profile, header, port or reason out of range");
		return -EINVAL;
	}
	for (i = 0; i < (int)l->n_fields; i++) {
		const struct field_desc *f = &l->fields[i];

		for (j = 0; j < 5 && strcmp(tok[6 + i], key_names[j]); j++)
			;
		if (j == 5) {
			snprintf(out, out_size, "err EINVAL unknown key source '%s'", tok[6 + i]);
			return -EINVAL;
		}
		if (f->n_bits != (j <= K_DIP ? 32u : j == K_PROTO ? 8u : 16u)) {
			snprintf(out, out_size, "err EINVAL key field %d is %u bits, %s is not", i,
				 f->n_bits, key_names[j]);
			return -EINVAL;
		}
		src[i] = (uint8_t)j;
	}
	if (n_tok > n_key) {
		const struct action_desc *a = action_find(tok[n_key + 1], &rev_action);

		if (!a) {
			snprintf(out, out_size, "err EINVAL no action '%s'", tok[n_key + 1]);
			return -EINVAL;
		}
		for (i = 0; i < 4; i++) {
			rev_arg[i] = action_arg_find(a, tok[n_key + 2 + i]);
			if (rev_arg[i] < 0 || a->args[rev_arg[i]].n_bits != rev_bits[i]) {
				snprintf(out, out_size, "err EINVAL action %s has no %u-bit argument '%s'",
					 a->name, rev_bits[i], tok[n_key + 2 + i]);
				return -EINVAL;
			}
		}
	}
	if (!learner_profiles_readable()) {
		snprintf(out, out_size, "err ENOTSUP the learner's entry profiles cannot be read here");
		return -ENOTSUP;
	}
	reuse.l = l;
	reuse.profile = (uint32_t)v[0];
	reuse.hdr = (uint32_t)v[1];
	reuse.port_off = (uint32_t)v[2];
	reuse.port_len = (uint32_t)v[3];
	reuse.reason_off = (uint32_t)v[4];
	reuse.reason = (uint32_t)v[5];
	memcpy(reuse.src, src, l->n_fields);
	reuse.rev_on = n_tok > n_key;
	reuse.rev_action = rev_action;
	memcpy(reuse.rev_arg, rev_arg, sizeof(rev_arg));
	snprintf(out, out_size, "ok");
	return 0;
}

/* The key of the other direction's entry into the learner's key buffer: the rewrite of the found
 * entry (action reuse.rev_action, action data `data`), swapped. */
static void reverse_key(struct learner_rt *l, uint64_t action_id, const uint8_t *data, uint8_t proto)
{
	const struct action_desc *a = &g.actions[action_id];
	uint8_t v[4][4], be[4];
	uint32_t i;

	for (i = 0; i < 4; i++) {
		const struct arg_desc *ad = &a->args[reuse.rev_arg[i]];

		field_load(&data[ad->offset], ad->n_bits, ad->nbo, v[i]);
	}
	for (i = 0; i < l->n_fields; i++) {
		switch (reuse.src[i]) {     /* answers: from dip:dport to sip:sport */
		case K_SIP:
			learner_key_field(l, i, v[1]);
			break;
		case K_DIP:
			learner_key_field(l, i, v[0]);
			break;
		case K_PROTO:
			be[0] = proto;
			learner_key_field(l, i, be);
			break;
		case K_SPORT:
			learner_key_field(l, i, v[3]);
			break;
		default:
			learner_key_field(l, i, v[2]);
			break;
		}
	}
}

/* Whether the CPU-port frame f (len bytes, packet_in header first) is a pure SYN whose entry
 * reuse.l had in the closing profile: then that entry is ended (learner_end_in_profile), *port
 * is its ingress port and the caller runs the frame (without the header) through the pipeline
 * again. */
int reuse_take(const uint8_t *f, uint32_t len, uint32_t *port)
{
	struct learner_rt *l = reuse.l;
	const uint8_t *e = f + reuse.hdr, *tcp;
	uint32_t ihl, i, p = 0;
	uint64_t action_id;
	uint8_t be[4], fwd[256], *data;
	int profile, found = 1;

	if (len < reuse.hdr + 54 || f[reuse.reason_off] != reuse.reason)
		return 0;
	if (e[12] != 0x08 || e[13] != 0x00 || (e[14] >> 4) != 4 || e[23] != 6 ||
	    ((e[20] << 8 | e[21]) & 0x3FFF))
		return 0;
	ihl = (uint32_t)(e[14] & 0x0F) * 4;
	if (ihl < 20 || len < reuse.hdr + 14 + ihl + 20)
		return 0;
	tcp = e + 14 + ihl;
	if ((tcp[13] & 0x17) != 0x02)         /* SYN, and none of ACK, RST, FIN */
		return 0;
	for (i = 0; i < reuse.port_len; i++)
		p = p << 8 | f[reuse.port_off + i];
	if (p >= g.n_ports || (int)p == g.cpu_port || (int)p == g.copy_port ||
	    !fastio_inject_room(p))
		return 0;
	for (i = 0; i < l->n_fields; i++) {
		switch (reuse.src[i]) {
		case K_SIP:
			memcpy(be, e + 26, 4);
			break;
		case K_DIP:
			memcpy(be, e + 30, 4);
			break;
		case K_PROTO:
			be[0] = e[23];
			break;
		case K_SPORT:
			memcpy(be, tcp, 2);
			break;
		default:
			memcpy(be, tcp + 2, 2);
			break;
		}
		learner_key_field(l, i, be);
	}
	if (!learner_find_entry(l, &action_id, &data, &profile))
		return 0;
	if (profile != (int)reuse.profile || !learner_registered(l) ||
	    (reuse.rev_on && action_id == reuse.rev_action && l->key_size > sizeof(fwd))) {
		reuse.n_punted++;
		return 0;
	}
	if (reuse.rev_on && action_id == reuse.rev_action) {
		/* the other direction's entry: absent, or closing too (then it ends first) */
		memcpy(fwd, &l->keybuf[l->key_offset], l->key_size);
		reverse_key(l, action_id, data, e[23]);
		if (learner_find_entry(l, &action_id, &data, &profile)) {
			if (profile != (int)reuse.profile) {
				reuse.n_punted++;
				return 0;
			}
			reuse.n_ended_rev += (uint64_t)learner_end_found(l);
		}
		/* the mailbox back on this entry (gone only if it was its own other direction) */
		memcpy(&l->keybuf[l->key_offset], fwd, l->key_size);
		found = learner_find_entry(l, &action_id, &data, &profile);
	}
	if (found)
		learner_end_found(l);
	reuse.n_ended++;
	*port = p;
	return 1;
}
