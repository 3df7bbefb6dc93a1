/* SPDX-License-Identifier: Apache-2.0
 *
 * Value parsing / formatting and a small growable string buffer.
 *
 * Values travel through the daemon as big-endian byte strings of n_bits/8 bytes ("be"),
 * whatever their width; field_store()/field_load() convert to the layout a field has in
 * the pipeline: network byte order for header fields and for action arguments that the
 * pipeline marked as such, host (little-endian) order for metadata fields.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "swxd.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int parse_u64(const char *s, uint64_t *v)
{
	uint8_t be[8];
	uint64_t x = 0;
	int i;

	if (parse_value(s, 64, be))
		return -EINVAL;
	for (i = 0; i < 8; i++)
		x = (x << 8) | be[i];
	*v = x;
	return 0;
}

/* Decimal (up to 64 bits) or 0x-hexadecimal (any width up to n_bits). */
int parse_value(const char *s, uint32_t n_bits, uint8_t *be)
{
	uint32_t n_bytes = n_bits / 8, i;

	if (!s || !*s || !n_bytes)
		return -EINVAL;
	memset(be, 0, n_bytes);

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		const char *h = s + 2;
		size_t len = strlen(h), nib;

		if (!len)
			return -EINVAL;
		while (len > 1 && *h == '0') {  /* leading zeros never count against the width */
			h++;
			len--;
		}
		if (len > (size_t)n_bits / 4 + ((n_bits % 4) ? 1 : 0))
			return -ERANGE;
		for (nib = 0; nib < len; nib++) {
			int d = hexval((unsigned char)h[len - 1 - nib]);
			uint32_t byte = n_bytes - 1 - nib / 2;

			if (d < 0)
				return -EINVAL;
			be[byte] |= (uint8_t)(d << (4 * (nib & 1)));
		}
		return 0;
	}

	{
		char *end;
		unsigned long long x;

		if (!isdigit((unsigned char)s[0]))
			return -EINVAL;
		errno = 0;
		x = strtoull(s, &end, 10);
		if (*end)
			return -EINVAL;
		if (errno == ERANGE)
			return -ERANGE;
		if (n_bits < 64 && (x >> n_bits))
			return -ERANGE;
		for (i = 0; i < n_bytes && i < 8; i++)
			be[n_bytes - 1 - i] = (uint8_t)(x >> (8 * i));
	}
	return 0;
}

/* Decimal up to 64 bits, 0x-hex above (MAC addresses stay decimal: they fit 64 bits). */
void value_format(const uint8_t *be, uint32_t n_bits, char *out, size_t out_size)
{
	uint32_t n_bytes = n_bits / 8, i;

	if (n_bytes <= 8) {
		uint64_t x = 0;

		for (i = 0; i < n_bytes; i++)
			x = (x << 8) | be[i];
		snprintf(out, out_size, "%llu", (unsigned long long)x);
		return;
	}
	if (out_size < 3 + 2 * (size_t)n_bytes) {
		snprintf(out, out_size, "?");
		return;
	}
	out[0] = '0';
	out[1] = 'x';
	for (i = 0; i < n_bytes; i++)
		sprintf(&out[2 + 2 * i], "%02x", be[i]);
}

void field_store(uint8_t *dst, const uint8_t *be, uint32_t n_bits, int nbo)
{
	uint32_t n = n_bits / 8, i;

	if (nbo || n_bits > 64) {
		memcpy(dst, be, n);
		return;
	}
	for (i = 0; i < n; i++)
		dst[i] = be[n - 1 - i];
}

void field_load(const uint8_t *src, uint32_t n_bits, int nbo, uint8_t *be)
{
	uint32_t n = n_bits / 8, i;

	if (nbo || n_bits > 64) {
		memcpy(be, src, n);
		return;
	}
	for (i = 0; i < n; i++)
		be[i] = src[n - 1 - i];
}

int split_tokens(char *s, char **tok, int max)
{
	int n = 0;
	char *save = NULL, *t;

	for (t = strtok_r(s, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
		if (n == max)
			return -1;
		tok[n++] = t;
	}
	return n;
}

/* ---------------------------------------------------------------------------------------- */

void sb_init(struct sbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->buf ? b->buf + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += n;
			return;
		}
		{
			size_t cap = b->cap ? b->cap * 2 : 4096;
			char *nb;

			while (cap - b->len <= (size_t)n)
				cap *= 2;
			nb = realloc(b->buf, cap);
			if (!nb) {
				b->oom = 1;
				return;
			}
			b->buf = nb;
			b->cap = cap;
		}
	}
}

void sb_json_str(struct sbuf *b, const char *s)
{
	sb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			sb_printf(b, "\\%c", c);
		else if (c < 0x20)
			sb_printf(b, "\\u%04x", c);
		else
			sb_printf(b, "%c", c);
	}
	sb_printf(b, "\"");
}

void sb_free(struct sbuf *b)
{
	free(b->buf);
	sb_init(b);
}
