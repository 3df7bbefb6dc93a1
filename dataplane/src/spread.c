/* SPDX-License-Identifier: Apache-2.0
 *
 * Punts spread over the CS-processor workers (`p4cs controller --workers N`,
 * docs/interfaces.md section 1, "spread").
 *
 * The switch starts the daemon with spare channel socket pairs (--spread-fd CPU:COPY, one per
 * worker beyond the first); while a controller with N workers holds the direct packet
 * channel, its switch sends `spread N ...` and every frame the CPU port or the copy port
 * emits goes to the socket of worker spread_worker(frame), the others to socket 0 (the
 * --cpu-fd / --copy-fd ends, the controller's own). The function is the controller's
 * (host/p4cs/controller/spread.py, Spreader.key_worker) and is checked against it
 * (tests/dataplane/test_spread.py):
 *
 *   - a segment to a virtual service (VIP:port) goes to hash(client address, port) % N;
 *   - one to a SNAT address goes to dport % N if dport is in the SNAT pool, else to 0;
 *   - one to another switch address (health probes) goes to 0;
 *   - any other TCP segment (a transparent server's answer) to hash(dst address, port) % N;
 *   - everything that is not TCP over IPv4, or too short to tell, goes to 0.
 *
 * With a client mask the hash takes the client's address under the mask and port 0. Copies
 * (FIN/RST of spliced flows) come as the splice rewrote them: spread_copy_worker() reads them
 * from the other end (Spreader.copy_worker).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "swxd.h"

struct spread_state spread;

int spread_fds_parse(const char *arg)
{
	char *end;
	long cpu, copy;

	if (spread.n_fds == SWXD_MAX_SPREAD)
		return -ENOSPC;
	errno = 0;
	cpu = strtol(arg, &end, 10);
	if (errno || end == arg || *end != ':' || cpu < 0 || cpu > 1 << 30)
		return -EINVAL;
	arg = end + 1;
	copy = strtol(arg, &end, 10);
	if (errno || end == arg || *end || copy < 0 || copy > 1 << 30)
		return -EINVAL;
	spread.cpu_fd[spread.n_fds] = (int)cpu;
	spread.copy_fd[spread.n_fds] = (int)copy;
	spread.n_fds++;
	return 0;
}

static int parse_ip(const char *t, uint32_t *ip)
{
	struct in_addr a;

	if (inet_pton(AF_INET, t, &a) != 1)
		return -1;
	*ip = ntohl(a.s_addr);
	return 0;
}

static inline uint32_t client_hash(uint32_t ip, uint32_t port)
{
	uint32_t h = ip * 0x9E3779B1u ^ port * 0x85EBCA6Bu;

	return h ^ (h >> 15);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int has_addr(const uint32_t *set, uint32_t n, uint32_t ip)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (set[i] == ip)
			return 1;
	return 0;
}

static uint32_t client_of(uint32_t ip, uint32_t port)
{
	return spread.use_mask ? client_hash(ip & spread.mask, 0) : client_hash(ip, port);
}

/* The TCP/IPv4 4-tuple of an Ethernet frame; 0 if it is not one or too short to tell. */
static int frame_tuple(const uint8_t *f, uint32_t len, uint32_t *sip, uint32_t *dip,
		       uint32_t *sport, uint32_t *dport)
{
	uint32_t ihl;

	if (len < 38 || f[12] != 0x08 || f[13] != 0x00 || f[23] != 6)
		return 0;
	ihl = (uint32_t)(f[14] & 0x0F) * 4;
	if (ihl < 20 || len < 14 + ihl + 4)
		return 0;
	*sip = rd32(f + 26);
	*dip = rd32(f + 30);
	*sport = (uint32_t)f[14 + ihl] << 8 | f[15 + ihl];
	*dport = (uint32_t)f[16 + ihl] << 8 | f[17 + ihl];
	return 1;
}

static int is_vip(uint32_t ip, uint32_t port)
{
	uint32_t i;

	for (i = 0; i < spread.n_vips; i++)
		if (spread.vip_ip[i] == ip && spread.vip_port[i] == port)
			return 1;
	return 0;
}

uint32_t spread_worker(const uint8_t *f, uint32_t len)
{
	uint32_t sip, dip, sport, dport, n = spread.n;

	if (n <= 1 || !frame_tuple(f, len, &sip, &dip, &sport, &dport))
		return 0;
	if (is_vip(dip, dport))
		return client_of(sip, sport) % n;                   /* client leg */
	if (has_addr(spread.snat, spread.n_snat, dip))
		return dport >= spread.lo && dport <= spread.hi ? dport % n : 0;
	if (has_addr(spread.local, spread.n_local, dip))
		return 0;
	return client_of(dip, dport) % n;                           /* transparent server leg */
}

/* A FIN/RST copy is the segment as the splice rewrote it (the pipeline mirrors the emitted
 * packet): the server's answer comes from the virtual service to the client, the client's
 * segment goes to the server from the client (transparent) or from a SNAT address and port. */
uint32_t spread_copy_worker(const uint8_t *f, uint32_t len)
{
	uint32_t sip, dip, sport, dport, n = spread.n;

	if (n <= 1 || !frame_tuple(f, len, &sip, &dip, &sport, &dport))
		return 0;
	if (is_vip(sip, sport))
		return client_of(dip, dport) % n;                   /* to the client */
	if (has_addr(spread.snat, spread.n_snat, sip))
		return sport >= spread.lo && sport <= spread.hi ? sport % n : 0;
	if (has_addr(spread.local, spread.n_local, sip))
		return 0;
	return client_of(sip, sport) % n;                           /* from the client */
}

/* `spread off` | `spread N HDR LO HI MASK|- [v=IP:PORT | s=IP | l=IP]...` (IPs dotted quads):
 * N workers, HDR bytes of packet_in header before the frame on the CPU port. */
void cmd_spread(char *rest, struct sbuf *b)
{
	char *tok[MAX_SPREAD_TOKENS];
	struct spread_state s;
	int n_tok = split_tokens(rest, tok, MAX_SPREAD_TOKENS), i;
	uint64_t v[5];

	if (n_tok == 1 && !strcmp(tok[0], "off")) {
		spread.n = 0;
		sb_printf(b, "ok\n");
		return;
	}
	if (n_tok < 5) {
		sb_printf(b, "err EINVAL usage: spread off | spread N HDR LO HI MASK|- "
			  "[v=IP:PORT|s=IP|l=IP]... (at most %d words)\n", MAX_SPREAD_TOKENS);
		return;
	}
	memcpy(&s, &spread, sizeof(s));
	for (i = 0; i < 4; i++)
		if (parse_u64(tok[i], &v[i]))
			goto bad;
	s.use_mask = strcmp(tok[4], "-") != 0;
	if (s.use_mask && (parse_ip(tok[4], &s.mask)))
		goto bad;
	if (v[0] < 2 || v[0] > (uint64_t)spread.n_fds + 1) {
		sb_printf(b, "err ERANGE %llu workers: this daemon has %u packet channels\n",
			  (unsigned long long)v[0], spread.n_fds + 1);
		return;
	}
	if (v[1] > 64 || v[2] > 65535 || v[3] > 65535 || v[2] > v[3])
		goto bad;
	s.n = (uint32_t)v[0];
	s.hdr = (uint32_t)v[1];
	s.lo = (uint32_t)v[2];
	s.hi = (uint32_t)v[3];
	s.n_vips = s.n_snat = s.n_local = 0;
	for (i = 5; i < n_tok; i++) {
		char *t = tok[i], *colon;
		uint32_t ip;
		uint64_t port;

		if (strlen(t) < 3 || t[1] != '=')
			goto bad;
		colon = strchr(t + 2, ':');
		if (t[0] == 'v') {
			if (!colon)
				goto bad;
			*colon = 0;
			if (parse_ip(t + 2, &ip) || parse_u64(colon + 1, &port) || port > 65535)
				goto bad;
			s.vip_ip[s.n_vips] = ip;
			s.vip_port[s.n_vips++] = (uint32_t)port;
		} else if (t[0] == 's' || t[0] == 'l') {
			if (colon || parse_ip(t + 2, &ip))
				goto bad;
			if (t[0] == 's')
				s.snat[s.n_snat++] = ip;
			else
				s.local[s.n_local++] = ip;
		} else {
			goto bad;
		}
	}
	memcpy(&spread, &s, sizeof(s));
	LOG_NOTE("punts spread over %u workers (%u virtual services, %u SNAT addresses)",
		 spread.n, spread.n_vips, spread.n_snat);
	sb_printf(b, "ok\n");
	return;
bad:
	sb_printf(b, "err EINVAL malformed spread line\n");
}

int spread_fd(int copy, uint32_t worker)
{
	if (worker == 0 || worker > spread.n_fds)
		return -1;
	return copy ? spread.copy_fd[worker - 1] : spread.cpu_fd[worker - 1];
}
