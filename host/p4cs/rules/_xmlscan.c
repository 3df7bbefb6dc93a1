/* SPDX-License-Identifier: Apache-2.0
 *
 * XML tag-sequence scanner for p4cs.rules.extract.extract_xml: the values of the tag sequences
 * of the rules in one pass over a UTF-8 document, without a tree and without calling back into
 * Python per element.
 *
 * The scanner checks well-formedness (XML 1.0 + namespaces) of everything it reads, but it only
 * accepts the part of XML it can check exactly: UTF-8 (an XML declaration with version 1.0 and
 * encoding UTF-8 or none), ASCII names, the five predefined entities and character references,
 * comments, CDATA sections, processing instructions, and a DOCTYPE without an internal subset.
 * Everything else -- any malformation, another encoding, a non-ASCII name, an internal subset or
 * an entity it does not know, an undeclared or dubious namespace prefix, a document that ends
 * before its root element does, more than 255 levels of nesting -- makes scan() return None,
 * and the caller extracts with libxml2 (the reference).  A value is returned only when every
 * byte up to the end of the element that gives it is well-formed, which is exactly when the
 * reference gives that value too.  The scan stops when every sequence is resolved or the root
 * element ends.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 255          /* deeper is left to libxml2 (which refuses a 257th level) */
#define MAX_ATTRS 32
#define MAX_NS 64              /* namespace declarations in scope */
#define MAX_NAME 1024
#define MAX_DOC 10000000       /* libxml2's text length limit without XML_PARSE_HUGE */

/* byte classes of character data */
enum { C_PLAIN = 0, C_LT, C_AMP, C_RSQB, C_CR, C_BAD, C_UTF8 };
static unsigned char text_class[256];
/* name characters: 1 = may start a name, 2 = may continue one (ASCII only) */
static unsigned char name_class[256];

static void init_tables(void)
{
	int c;

	for (c = 0; c < 256; c++) {
		text_class[c] = c < 0x20 ? C_BAD : c >= 0x80 ? C_UTF8 : C_PLAIN;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
			name_class[c] = 3;
		else if ((c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':')
			name_class[c] = 2;
	}
	text_class['\t'] = text_class['\n'] = C_PLAIN;
	text_class['\r'] = C_CR;
	text_class['<'] = C_LT;
	text_class['&'] = C_AMP;
	text_class[']'] = C_RSQB;
}

/* ------------------------------------------------------------------------------------------ */
/* compiled tag sequences */

typedef struct {
	PyObject_HEAD
	Py_ssize_t npaths;
	PyObject **keys;       /* path text -> result key */
	Py_ssize_t nnames;     /* distinct step names */
	char **names;
	Py_ssize_t *name_len;
	Py_ssize_t nstates;    /* one per step of every path, a path's steps consecutive */
	int *st_path;
	int *st_first;         /* step 0 of its path */
	int *st_last;
	long *st_want;         /* 1-based index or 0 */
	int **by_name;         /* states of each name, -1 terminated */
	Py_ssize_t words;      /* 64-bit words of a state set */
} Sequences;

static void seq_free_arrays(Sequences *s)
{
	Py_ssize_t i;

	if (s->keys)
		for (i = 0; i < s->npaths; i++)
			Py_XDECREF(s->keys[i]);
	if (s->names)
		for (i = 0; i < s->nnames; i++)
			PyMem_Free(s->names[i]);
	if (s->by_name)
		for (i = 0; i < s->nnames; i++)
			PyMem_Free(s->by_name[i]);
	PyMem_Free(s->keys);
	PyMem_Free(s->names);
	PyMem_Free(s->name_len);
	PyMem_Free(s->st_path);
	PyMem_Free(s->st_first);
	PyMem_Free(s->st_last);
	PyMem_Free(s->st_want);
	PyMem_Free(s->by_name);
	s->keys = NULL;
	s->names = NULL;
	s->name_len = NULL;
	s->st_path = s->st_first = s->st_last = NULL;
	s->st_want = NULL;
	s->by_name = NULL;
	s->npaths = s->nnames = s->nstates = 0;
}

static void seq_dealloc(Sequences *s)
{
	seq_free_arrays(s);
	Py_TYPE(s)->tp_free((PyObject *)s);
}

/* a[0:n] == b[0:n], for the short names of tags (cheaper than a call to memcmp) */
static inline int same(const void *a, const void *b, Py_ssize_t n)
{
	const unsigned char *x = a, *y = b;
	uint64_t u, v;

	for (; n >= 8; n -= 8, x += 8, y += 8) {
		memcpy(&u, x, 8);
		memcpy(&v, y, 8);
		if (u != v)
			return 0;
	}
	for (; n > 0; n--)
		if (*x++ != *y++)
			return 0;
	return 1;
}

static inline Py_ssize_t name_index(Sequences *s, const char *n, Py_ssize_t len)
{
	Py_ssize_t i;

	for (i = 0; i < s->nnames; i++)
		if (s->name_len[i] == len && s->names[i][0] == n[0] && same(s->names[i], n, len))
			return i;
	return -1;
}

/* Sequences([(key, ((name, index or None), ...)), ...]) */
static int seq_init(Sequences *s, PyObject *args, PyObject *kw)
{
	PyObject *specs, *fast = NULL;
	Py_ssize_t i, j, k, nst = 0;
	int *fill = NULL, *st_name = NULL;

	if (kw && PyDict_Size(kw)) {
		PyErr_SetString(PyExc_TypeError, "Sequences() takes no keyword arguments");
		return -1;
	}
	if (!PyArg_ParseTuple(args, "O", &specs))
		return -1;
	seq_free_arrays(s);
	fast = PySequence_Fast(specs, "Sequences() wants a sequence of (key, steps)");
	if (!fast)
		return -1;
	s->npaths = PySequence_Fast_GET_SIZE(fast);
	for (i = 0; i < s->npaths; i++) {
		PyObject *spec = PySequence_Fast_GET_ITEM(fast, i);
		if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0))
		    || !PyTuple_Check(PyTuple_GET_ITEM(spec, 1)) || PyTuple_GET_SIZE(PyTuple_GET_ITEM(spec, 1)) == 0) {
			PyErr_SetString(PyExc_TypeError, "each sequence is (key: str, steps: non-empty tuple)");
			goto fail;
		}
		nst += PyTuple_GET_SIZE(PyTuple_GET_ITEM(spec, 1));
	}
	s->nstates = nst;
	s->words = (nst + 63) / 64;
	s->keys = PyMem_Calloc(s->npaths + 1, sizeof(PyObject *));
	s->names = PyMem_Calloc(nst + 1, sizeof(char *));
	s->name_len = PyMem_Calloc(nst + 1, sizeof(Py_ssize_t));
	s->st_path = PyMem_Calloc(nst + 1, sizeof(int));
	s->st_first = PyMem_Calloc(nst + 1, sizeof(int));
	s->st_last = PyMem_Calloc(nst + 1, sizeof(int));
	s->st_want = PyMem_Calloc(nst + 1, sizeof(long));
	fill = PyMem_Calloc(nst + 1, sizeof(int));
	st_name = PyMem_Calloc(nst + 1, sizeof(int));
	if (!s->keys || !s->names || !s->name_len || !s->st_path || !s->st_first || !s->st_last
	    || !s->st_want || !fill || !st_name) {
		PyErr_NoMemory();
		goto fail;
	}
	s->nnames = 0;
	for (i = 0, k = 0; i < s->npaths; i++) {
		PyObject *spec = PySequence_Fast_GET_ITEM(fast, i);
		PyObject *steps = PyTuple_GET_ITEM(spec, 1);
		s->keys[i] = Py_NewRef(PyTuple_GET_ITEM(spec, 0));
		for (j = 0; j < PyTuple_GET_SIZE(steps); j++, k++) {
			PyObject *step = PyTuple_GET_ITEM(steps, j), *want;
			const char *n;
			Py_ssize_t len, idx;
			if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) != 2
			    || !PyUnicode_Check(PyTuple_GET_ITEM(step, 0))) {
				PyErr_SetString(PyExc_TypeError, "each step is (name: str, index: int | None)");
				goto fail;
			}
			n = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(step, 0), &len);
			if (!n)
				goto fail;
			want = PyTuple_GET_ITEM(step, 1);
			s->st_want[k] = 0;
			if (want != Py_None) {
				int over;
				long w = PyLong_AsLongAndOverflow(want, &over);
				if (w == -1 && PyErr_Occurred())
					goto fail;
				/* an index no element reaches (counts stop at LONG_MAX) never matches */
				s->st_want[k] = (over || w < 1) ? -1 : w;
			}
			idx = name_index(s, n, len);
			if (idx < 0) {
				idx = s->nnames++;
				s->names[idx] = PyMem_Malloc(len + 1);
				if (!s->names[idx]) {
					PyErr_NoMemory();
					goto fail;
				}
				memcpy(s->names[idx], n, len + 1);
				s->name_len[idx] = len;
			}
			st_name[k] = (int)idx;
			s->st_path[k] = (int)i;
			s->st_first[k] = j == 0;
			s->st_last[k] = j == PyTuple_GET_SIZE(steps) - 1;
		}
	}
	s->by_name = PyMem_Calloc(s->nnames + 1, sizeof(int *));
	if (!s->by_name) {
		PyErr_NoMemory();
		goto fail;
	}
	for (k = 0; k < nst; k++)
		fill[st_name[k]]++;
	for (i = 0; i < s->nnames; i++) {
		s->by_name[i] = PyMem_Malloc((fill[i] + 1) * sizeof(int));
		if (!s->by_name[i]) {
			PyErr_NoMemory();
			goto fail;
		}
		fill[i] = 0;
	}
	for (k = 0; k < nst; k++)
		s->by_name[st_name[k]][fill[st_name[k]]++] = (int)k;
	for (i = 0; i < s->nnames; i++)
		s->by_name[i][fill[i]] = -1;
	PyMem_Free(st_name);
	PyMem_Free(fill);
	Py_DECREF(fast);
	return 0;
fail:
	PyMem_Free(st_name);
	PyMem_Free(fill);
	Py_XDECREF(fast);
	seq_free_arrays(s);
	return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* the scan */

typedef struct {
	const unsigned char *name;  /* qualified name, for the end tag */
	Py_ssize_t name_len;
	int ns_mark;                /* namespace declarations in scope before this element */
} Frame;

typedef struct {
	const unsigned char *name;
	Py_ssize_t len, prefix;     /* prefix length, 0 when unprefixed */
} Attr;

typedef struct {
	Sequences *seq;
	const unsigned char *p, *end;
	Frame frames[MAX_DEPTH + 1];
	int depth;
	long *counts;               /* (MAX_DEPTH + 1) x nnames: children per name */
	uint64_t *live;             /* (MAX_DEPTH + 1) x words: partial matches of each level */
	struct { const unsigned char *p; Py_ssize_t len; } ns[MAX_NS];
	int nns;
	char *pending;              /* per path: not resolved yet */
	int *cap_depth;             /* per path: depth of the element being captured, 0 = none */
	Py_ssize_t *cap_start;
	int ncap, remaining;
	unsigned char *buf;         /* text of the captured elements */
	Py_ssize_t blen, bcap;
	PyObject *results;
} Scan;

#define FALLBACK 1
#define FINISHED 2
#define NOMEM (-1)

static int buf_put(Scan *sc, const unsigned char *s, Py_ssize_t n)
{
	if (sc->blen + n > sc->bcap) {
		Py_ssize_t cap = sc->bcap ? sc->bcap : 256;
		unsigned char *b;
		while (cap < sc->blen + n)
			cap *= 2;
		b = PyMem_Realloc(sc->buf, cap);
		if (!b)
			return NOMEM;
		sc->buf = b;
		sc->bcap = cap;
	}
	memcpy(sc->buf + sc->blen, s, n);
	sc->blen += n;
	return 0;
}

static int put_char(Scan *sc, uint32_t c)
{
	unsigned char u[4];
	Py_ssize_t n;

	if (c < 0x80) {
		u[0] = (unsigned char)c;
		n = 1;
	} else if (c < 0x800) {
		u[0] = 0xC0 | (c >> 6);
		u[1] = 0x80 | (c & 0x3F);
		n = 2;
	} else if (c < 0x10000) {
		u[0] = 0xE0 | (c >> 12);
		u[1] = 0x80 | ((c >> 6) & 0x3F);
		u[2] = 0x80 | (c & 0x3F);
		n = 3;
	} else {
		u[0] = 0xF0 | (c >> 18);
		u[1] = 0x80 | ((c >> 12) & 0x3F);
		u[2] = 0x80 | ((c >> 6) & 0x3F);
		u[3] = 0x80 | (c & 0x3F);
		n = 4;
	}
	return buf_put(sc, u, n);
}

static int is_xml_char(uint32_t c)
{
	return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF)
	       || (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

/* Length of the well-formed UTF-8 sequence of an XML character at p (p[0] >= 0x80), else 0. */
static Py_ssize_t utf8_char(const unsigned char *p, const unsigned char *end)
{
	uint32_t c;
	Py_ssize_t n, i;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		n = 2;
		c = p[0] & 0x1F;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		n = 3;
		c = p[0] & 0x0F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		n = 4;
		c = p[0] & 0x07;
	} else {
		return 0;
	}
	if (end - p < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || !is_xml_char(c))
		return 0;
	return n;
}

static inline int is_space(unsigned char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

static inline const unsigned char *skip_space(const unsigned char *p, const unsigned char *end)
{
	while (p < end && is_space(*p))
		p++;
	return p;
}

/* An ASCII name at p; its length (0: none, or too long) and where its first colon is (-1). */
#ifdef __SSE2__
/* Of the 16 bytes at p: which are ASCII name characters, and which are colons. */
static inline unsigned name_chars16(const unsigned char *p, unsigned *colons)
{
	__m128i x = _mm_loadu_si128((const __m128i *)p);
#define IN(lo, hi) _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8((lo) - 1)), \
                                 _mm_cmplt_epi8(x, _mm_set1_epi8((hi) + 1)))
	__m128i m = _mm_or_si128(_mm_or_si128(IN('a', 'z'), IN('A', 'Z')), IN('0', ':'));
#undef IN
	m = _mm_or_si128(m, _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('_')),
	                                 _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('-')),
	                                              _mm_cmpeq_epi8(x, _mm_set1_epi8('.')))));
	*colons = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(':')));
	return (unsigned)_mm_movemask_epi8(m);
}

/* Of the 16 bytes at p: which may end a run of plain character data (markup, references,
 * ']', control characters including tab and line ends, and non-ASCII bytes). */
static inline unsigned text_stops16(const unsigned char *p)
{
	__m128i x = _mm_loadu_si128((const __m128i *)p);
	__m128i m = _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
	                         _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('<')),
	                                      _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('&')),
	                                                   _mm_cmpeq_epi8(x, _mm_set1_epi8(']')))));
	return (unsigned)_mm_movemask_epi8(m);
}
#endif

/* The end of the run of plain character data at p. */
static inline const unsigned char *plain_text(const unsigned char *p, const unsigned char *end)
{
#ifdef __SSE2__
	while (end - p >= 16) {
		unsigned m = text_stops16(p);
		if (!m) {
			p += 16;
			continue;
		}
		p += __builtin_ctz(m);
		if (*p != '\n' && *p != '\t')
			return p;
		p++;
	}
#endif
	while (p < end && text_class[*p] == C_PLAIN)
		p++;
	return p;
}

/* An ASCII name at p; its length (0: none, or too long) and where its first colon is (-1). */
static Py_ssize_t scan_name(const unsigned char *p, const unsigned char *end, Py_ssize_t *colon)
{
	const unsigned char *q = p;

	*colon = -1;
	if (q >= end || !(name_class[*q] & 1))
		return 0;
	q++;
#ifdef __SSE2__
	while (end - q >= 16) {
		unsigned colons, stop = ~name_chars16(q, &colons) & 0xFFFF;
		unsigned len = stop ? (unsigned)__builtin_ctz(stop) : 16;
		colons &= stop ? (1u << len) - 1 : 0xFFFF;
		if (colons) {
			if (*colon >= 0 || (colons & (colons - 1)))
				return 0;  /* two colons: not a QName */
			*colon = q - p + __builtin_ctz(colons);
		}
		q += len;
		if (stop)
			goto done;
		if (q - p > MAX_NAME)
			return 0;
	}
#endif
	for (; q < end && name_class[*q]; q++)
		if (*q == ':') {
			if (*colon >= 0)
				return 0;  /* two colons: not a QName */
			*colon = q - p;
		}
#ifdef __SSE2__
done:
#endif
	if (q - p > MAX_NAME)
		return 0;
	return q - p;
}

/* A QName: the prefix, if any, and the local part are NCNames. */
static Py_ssize_t scan_qname(const unsigned char *p, const unsigned char *end, Py_ssize_t *prefix)
{
	Py_ssize_t colon, n = scan_name(p, end, &colon);

	*prefix = 0;
	if (colon >= 0) {
		if (colon + 1 >= n || !(name_class[p[colon + 1]] & 1))
			return 0;
		*prefix = colon;
	}
	return n;
}

/* A reference after '&' at *pp: appends its character when `out`; FALLBACK if not one of the
 * five predefined entities or a character reference to an XML character. */
static int reference(Scan *sc, const unsigned char **pp, int out)
{
	const unsigned char *p = *pp + 1, *end = sc->end;
	uint32_t c = 0;

	if (p < end && *p == '#') {
		int digits = 0;
		p++;
		if (p < end && *p == 'x') {
			for (p++; p < end && *p != ';'; p++, digits++) {
				int d = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
				        : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10 : -1;
				if (d < 0)
					return FALLBACK;
				c = c * 16 + d;
				if (c > 0x10FFFF)
					return FALLBACK;
			}
		} else {
			for (; p < end && *p != ';'; p++, digits++) {
				if (*p < '0' || *p > '9')
					return FALLBACK;
				c = c * 10 + (*p - '0');
				if (c > 0x10FFFF)
					return FALLBACK;
			}
		}
		if (p >= end || !digits || !is_xml_char(c))
			return FALLBACK;
	} else {
		const unsigned char *q = p;
		while (q < end && q - p < 5 && *q != ';')
			q++;
		if (q >= end || *q != ';')
			return FALLBACK;
		if (q - p == 3 && memcmp(p, "amp", 3) == 0)
			c = '&';
		else if (q - p == 2 && memcmp(p, "lt", 2) == 0)
			c = '<';
		else if (q - p == 2 && memcmp(p, "gt", 2) == 0)
			c = '>';
		else if (q - p == 4 && memcmp(p, "quot", 4) == 0)
			c = '"';
		else if (q - p == 4 && memcmp(p, "apos", 4) == 0)
			c = '\'';
		else
			return FALLBACK;
		p = q;
	}
	*pp = p + 1;
	return out ? put_char(sc, c) : 0;
}

/* Character data up to the next '<' (or the end); appended to the buffer while capturing. */
static int char_data(Scan *sc)
{
	const unsigned char *p = sc->p, *end = sc->end, *run = p;
	int r;

	if (p < end && *p == '<')
		return 0;  /* no text between two tags */
	for (;;) {
		p = plain_text(p, end);
		if (sc->ncap && p > run && (r = buf_put(sc, run, p - run)))
			return r;
		if (p >= end)
			break;
		if (*p == '<') {
			sc->p = p;
			return 0;
		}
		switch (text_class[*p]) {
		case C_AMP:
			if ((r = reference(sc, &p, sc->ncap)))
				return r;
			break;
		case C_RSQB:
			if (end - p >= 3 && p[1] == ']' && p[2] == '>')
				return FALLBACK;  /* "]]>" is not allowed in text */
			if (sc->ncap && (r = buf_put(sc, p, 1)))
				return r;
			p++;
			break;
		case C_CR:
			if (sc->ncap && (r = buf_put(sc, (const unsigned char *)"\n", 1)))
				return r;
			p++;
			if (p < end && *p == '\n')
				p++;
			break;
		case C_UTF8: {
			Py_ssize_t n = utf8_char(p, end);
			if (!n)
				return FALLBACK;
			if (sc->ncap && (r = buf_put(sc, p, n)))
				return r;
			p += n;
			break;
		}
		default:
			return FALLBACK;
		}
		run = p;
	}
	sc->p = p;
	return 0;
}

/* Checked characters from p up to the terminator `term` (e.g. "-->"); the position after it.
 * Appends the text (line ends normalised) when `out`. NULL when a character is not allowed,
 * the terminator is missing, or `no_dashes` and "--" appears before it. */
static const unsigned char *until(Scan *sc, const unsigned char *p, const char *term, int out,
                                  int no_dashes, int *err)
{
	const unsigned char *end = sc->end, *run = p;
	size_t tl = strlen(term);

	*err = 0;
	for (;;) {
		unsigned char c;
		while (p < end && *p >= 0x20 && *p < 0x80 && *p != (unsigned char)term[0] && *p != '-')
			p++;
		if (out && p > run && (*err = buf_put(sc, run, p - run)))
			return NULL;
		run = p;
		if (p >= end)
			return NULL;
		c = *p;
		if ((size_t)(end - p) >= tl && memcmp(p, term, tl) == 0)
			return p + tl;
		if (c == '-') {
			if (no_dashes && end - p >= 2 && p[1] == '-')
				return NULL;
			p++;
		} else if (c == '\r') {
			if (out && (*err = buf_put(sc, (const unsigned char *)"\n", 1)))
				return NULL;
			p++;
			if (p < end && *p == '\n')
				p++;
			run = p;
		} else if (c >= 0x80) {
			Py_ssize_t n = utf8_char(p, end);
			if (!n)
				return NULL;
			p += n;
		} else if (c < 0x20 && c != '\t' && c != '\n') {
			return NULL;
		} else {
			p++;
		}
	}
}

/* "<!--" at sc->p */
static int comment(Scan *sc)
{
	int err;
	const unsigned char *q = until(sc, sc->p + 4, "-->", 0, 1, &err);

	if (!q)
		return err ? err : FALLBACK;
	sc->p = q;
	return 0;
}

/* "<?" at sc->p: a processing instruction (its target neither xml-like nor prefixed) */
static int pi(Scan *sc)
{
	const unsigned char *p = sc->p + 2;
	Py_ssize_t colon, n = scan_name(p, sc->end, &colon);
	int err;

	if (!n || colon >= 0)
		return FALLBACK;
	if (n >= 3 && (p[0] | 0x20) == 'x' && (p[1] | 0x20) == 'm' && (p[2] | 0x20) == 'l')
		return FALLBACK;
	p += n;
	if (p + 1 < sc->end && p[0] == '?' && p[1] == '>') {
		sc->p = p + 2;
		return 0;
	}
	if (p >= sc->end || !is_space(*p))
		return FALLBACK;
	p = until(sc, p, "?>", 0, 0, &err);
	if (!p)
		return err ? err : FALLBACK;
	sc->p = p;
	return 0;
}

/* "<![CDATA[" at sc->p */
static int cdata(Scan *sc)
{
	int err;
	const unsigned char *q = until(sc, sc->p + 9, "]]>", sc->ncap, 0, &err);

	if (!q)
		return err ? err : FALLBACK;
	sc->p = q;
	return 0;
}

/* A quoted literal at *pp (attribute value when `attr`, else a system literal): checked. */
static int literal(Scan *sc, const unsigned char **pp, int attr)
{
	const unsigned char *p = *pp, *end = sc->end;
	unsigned char q;
	int r;

	if (p >= end || (*p != '"' && *p != '\''))
		return FALLBACK;
	q = *p++;
	while (p < end && *p != q) {
		if (*p >= 0x80) {
			Py_ssize_t n = utf8_char(p, end);
			if (!n)
				return FALLBACK;
			p += n;
		} else if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') {
			return FALLBACK;
		} else if (attr && *p == '<') {
			return FALLBACK;
		} else if (attr && *p == '&') {
			if ((r = reference(sc, &p, 0)))
				return r;
		} else {
			p++;
		}
	}
	if (p >= end)
		return FALLBACK;
	*pp = p + 1;
	return 0;
}

static int ns_declared(Scan *sc, const unsigned char *prefix, Py_ssize_t len)
{
	int i;

	if (len == 3 && memcmp(prefix, "xml", 3) == 0)
		return 1;
	for (i = sc->nns - 1; i >= 0; i--)
		if (sc->ns[i].len == len && same(sc->ns[i].p, prefix, len))
			return 1;
	return 0;
}

static int value_is(const unsigned char *v, Py_ssize_t n, const char *s)
{
	return (size_t)n == strlen(s) && memcmp(v, s, n) == 0;
}

/* A namespace declaration's value (between the quotes): one that libxml2 would refuse or
 * warn about as a reserved binding, or one with references, is left to libxml2. */
static int ns_value_ok(const unsigned char *v, Py_ssize_t n, int prefixed)
{
	if (prefixed && n == 0)
		return 0;
	if (memchr(v, '&', n))
		return 0;
	return !value_is(v, n, "http://www.w3.org/XML/1998/namespace")
	       && !value_is(v, n, "http://www.w3.org/2000/xmlns/");
}

static int end_element(Scan *sc);

/* Matching when an element named `local` starts at the new depth sc->depth. */
static inline int match_start(Scan *sc, const unsigned char *local, Py_ssize_t len)
{
	Sequences *s = sc->seq;
	Py_ssize_t r = name_index(s, (const char *)local, len);
	uint64_t *up = sc->live + (size_t)(sc->depth - 1) * s->words;
	uint64_t *mine = sc->live + (size_t)sc->depth * s->words;
	long *counts = sc->counts + (size_t)(sc->depth - 1) * s->nnames;
	long idx, *mycounts = sc->counts + (size_t)sc->depth * s->nnames;
	const int *st;
	Py_ssize_t i;

	for (i = 0; i < s->words; i++)
		mine[i] = 0;
	for (i = 0; i < s->nnames; i++)
		mycounts[i] = 0;
	if (r < 0)
		return 0;
	if (counts[r] < LONG_MAX)
		counts[r]++;
	idx = counts[r];
	for (st = s->by_name[r]; *st >= 0; st++) {
		int k = *st, pid = s->st_path[k];
		if (!sc->pending[pid] || (s->st_want[k] && s->st_want[k] != idx))
			continue;
		if (!s->st_first[k] && !(up[(k - 1) / 64] >> ((k - 1) % 64) & 1))
			continue;
		if (!s->st_last[k]) {
			mine[k / 64] |= (uint64_t)1 << (k % 64);
		} else if (!sc->cap_depth[pid]) {
			sc->cap_depth[pid] = sc->depth;
			sc->cap_start[pid] = sc->blen;
			sc->ncap++;
		}
	}
	return 0;
}

/* '<' + name-start character at sc->p */
static int start_tag(Scan *sc)
{
	const unsigned char *p = sc->p + 1, *end = sc->end, *name = p;
	Py_ssize_t prefix, n = scan_qname(p, end, &prefix), i, j;
	Attr attrs[MAX_ATTRS];
	int nattrs = 0, ns_mark = sc->nns, r;

	if (!n || (prefix == 5 && memcmp(name, "xmlns", 5) == 0))
		return FALLBACK;
	p += n;
	if (p < end && *p == '>')
		goto open;  /* no attributes */
	for (;;) {
		const unsigned char *q = skip_space(p, end), *an, *val;
		Py_ssize_t ap, al;
		if (q >= end)
			return FALLBACK;
		if (*q == '>' || *q == '/')
			break;
		if (q == p || nattrs == MAX_ATTRS)
			return FALLBACK;
		an = q;
		al = scan_qname(q, end, &ap);
		if (!al)
			return FALLBACK;
		q = skip_space(q + al, end);
		if (q >= end || *q != '=')
			return FALLBACK;
		q = skip_space(q + 1, end);
		val = q;
		if ((r = literal(sc, &q, 1)))
			return r;
		if ((al == 5 && memcmp(an, "xmlns", 5) == 0) || (ap == 5 && memcmp(an, "xmlns", 5) == 0)) {
			if (!ns_value_ok(val + 1, q - val - 2, ap == 5))
				return FALLBACK;
			if (ap == 5) {
				const unsigned char *decl = an + 6;
				Py_ssize_t dl = al - 6;
				if (value_is(decl, dl, "xml") || value_is(decl, dl, "xmlns") || sc->nns == MAX_NS)
					return FALLBACK;
				sc->ns[sc->nns].p = decl;
				sc->ns[sc->nns].len = dl;
				sc->nns++;
			}
		}
		attrs[nattrs].name = an;
		attrs[nattrs].len = al;
		attrs[nattrs].prefix = ap;
		nattrs++;
		p = q;
	}
	p = skip_space(p, end);
	if (*p == '/') {
		if (p + 1 >= end || p[1] != '>')
			return FALLBACK;
	}
	for (i = 0; i < nattrs; i++) {
		Attr *a = &attrs[i];
		if (a->prefix && !(a->prefix == 5 && memcmp(a->name, "xmlns", 5) == 0)
		    && !ns_declared(sc, a->name, a->prefix))
			return FALLBACK;
		for (j = 0; j < i; j++) {
			Attr *b = &attrs[j];
			if (a->len == b->len && same(a->name, b->name, a->len))
				return FALLBACK;  /* the same attribute twice */
			if (a->prefix && b->prefix && a->len - a->prefix == b->len - b->prefix
			    && same(a->name + a->prefix, b->name + b->prefix, a->len - a->prefix))
				return FALLBACK;  /* possibly the same namespaced attribute twice */
		}
	}
open:
	if (prefix && !ns_declared(sc, name, prefix))
		return FALLBACK;
	if (sc->depth == MAX_DEPTH)
		return FALLBACK;
	sc->depth++;
	sc->frames[sc->depth].name = name;
	sc->frames[sc->depth].name_len = n;
	sc->frames[sc->depth].ns_mark = ns_mark;
	if ((r = match_start(sc, prefix ? name + prefix + 1 : name, prefix ? n - prefix - 1 : n)))
		return r;
	if (*p == '/') {
		sc->p = p + 2;
		return end_element(sc);
	}
	sc->p = p + 1;
	return 0;
}

/* The element at sc->depth ends: finish its captures, pop it. */
static int end_element(Scan *sc)
{
	Sequences *s = sc->seq;
	int d = sc->depth;
	Py_ssize_t pid;

	if (sc->ncap) {
		for (pid = 0; pid < s->npaths; pid++) {
			PyObject *raw, *text;
			if (sc->cap_depth[pid] != d)
				continue;
			sc->cap_depth[pid] = 0;
			sc->ncap--;
			sc->pending[pid] = 0;
			sc->remaining--;
			raw = PyUnicode_DecodeUTF8((const char *)sc->buf + sc->cap_start[pid],
			                           sc->blen - sc->cap_start[pid], NULL);
			if (!raw)
				return NOMEM;
			text = PyObject_CallMethod(raw, "strip", NULL);
			Py_DECREF(raw);
			if (!text || PyDict_SetItem(sc->results, s->keys[pid], text) < 0) {
				Py_XDECREF(text);
				return NOMEM;
			}
			Py_DECREF(text);
		}
		if (!sc->ncap)
			sc->blen = 0;
	}
	sc->nns = sc->frames[d].ns_mark;
	sc->depth--;
	if (!sc->remaining || !sc->depth)
		return FINISHED;
	return 0;
}

/* "</" at sc->p */
static int end_tag(Scan *sc)
{
	Frame *f = &sc->frames[sc->depth];
	const unsigned char *p = sc->p + 2, *end = sc->end;

	if (end - p < f->name_len || !same(p, f->name, f->name_len))
		return FALLBACK;
	p = skip_space(p + f->name_len, end);
	if (p >= end || *p != '>')
		return FALLBACK;
	sc->p = p + 1;
	return end_element(sc);
}

/* Markup at sc->p ('<') inside the root element. */
static int content_markup(Scan *sc)
{
	const unsigned char *p = sc->p, *end = sc->end;

	if (end - p < 2)
		return FALLBACK;
	switch (p[1]) {
	case '/':
		return end_tag(sc);
	case '?':
		return pi(sc);
	case '!':
		if (end - p >= 4 && p[2] == '-' && p[3] == '-')
			return comment(sc);
		if (end - p >= 9 && memcmp(p + 2, "[CDATA[", 7) == 0)
			return cdata(sc);
		return FALLBACK;
	default:
		return start_tag(sc);
	}
}

/* "<!DOCTYPE" at sc->p: name and external id, no internal subset. */
static int doctype(Scan *sc)
{
	const unsigned char *p = sc->p + 9, *end = sc->end, *q;
	Py_ssize_t colon, n;
	int r;

	q = skip_space(p, end);
	if (q == p || !(n = scan_name(q, end, &colon)))
		return FALLBACK;
	p = q + n;
	q = skip_space(p, end);
	if (q > p && end - q >= 6 && (memcmp(q, "SYSTEM", 6) == 0 || memcmp(q, "PUBLIC", 6) == 0)) {
		int public = q[0] == 'P';
		p = q + 6;
		q = skip_space(p, end);
		if (q == p)
			return FALLBACK;
		if (public) {
			static const char pubid[] = " \r\n-()+,./:=?;!*#@$_%";
			unsigned char quote;
			if (q >= end || (*q != '"' && *q != '\''))
				return FALLBACK;
			quote = *q++;
			while (q < end && *q != quote) {
				if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')
				      || (*q && strchr(pubid, *q))))
					return FALLBACK;
				q++;
			}
			if (q >= end)
				return FALLBACK;
			p = q + 1;
			q = skip_space(p, end);
			if (q == p)
				return FALLBACK;
		}
		if ((r = literal(sc, &q, 0)))
			return r;
		q = skip_space(q, end);
	}
	if (q >= end || *q != '>')
		return FALLBACK;
	sc->p = q + 1;
	return 0;
}

/* The XML declaration at the start: version 1.0, encoding UTF-8 or none. */
static int xml_decl(Scan *sc)
{
	const unsigned char *p = sc->p + 5, *end = sc->end, *q;
	static const char *const pseudo[] = {"version", "encoding", "standalone"};
	int i;

	for (i = 0; i < 3; i++) {
		size_t l = strlen(pseudo[i]);
		const unsigned char *v;
		Py_ssize_t vl;
		q = skip_space(p, end);
		if (q == p || (size_t)(end - q) < l || memcmp(q, pseudo[i], l) != 0) {
			if (i == 0)
				return FALLBACK;
			continue;
		}
		q = skip_space(q + l, end);
		if (q >= end || *q != '=')
			return FALLBACK;
		q = skip_space(q + 1, end);
		if (q >= end || (*q != '"' && *q != '\''))
			return FALLBACK;
		v = q + 1;
		q = memchr(v, *q, end - v);
		if (!q)
			return FALLBACK;
		vl = q - v;
		if (i == 0 && !value_is(v, vl, "1.0"))
			return FALLBACK;
		if (i == 1 && !(vl == 5 && (v[0] | 0x20) == 'u' && (v[1] | 0x20) == 't' && (v[2] | 0x20) == 'f'
		                && v[3] == '-' && v[4] == '8'))
			return FALLBACK;
		if (i == 2 && !value_is(v, vl, "yes") && !value_is(v, vl, "no"))
			return FALLBACK;
		p = q + 1;
	}
	p = skip_space(p, end);
	if (end - p < 2 || p[0] != '?' || p[1] != '>')
		return FALLBACK;
	sc->p = p + 2;
	return 0;
}

static int run(Scan *sc)
{
	const unsigned char *end = sc->end;
	int r, doctype_seen = 0;

	if (end - sc->p >= 3 && memcmp(sc->p, "\xEF\xBB\xBF", 3) == 0)
		sc->p += 3;
	if (end - sc->p >= 6 && memcmp(sc->p, "<?xml", 5) == 0 && is_space(sc->p[5]) && (r = xml_decl(sc)))
		return r;
	/* prolog: comments, PIs, one DOCTYPE, then the root element */
	for (;;) {
		const unsigned char *p = skip_space(sc->p, end);
		sc->p = p;
		if (end - p < 2 || p[0] != '<')
			return FALLBACK;
		if (p[1] == '?')
			r = pi(sc);
		else if (end - p >= 4 && p[1] == '!' && p[2] == '-' && p[3] == '-')
			r = comment(sc);
		else if (end - p >= 9 && memcmp(p, "<!DOCTYPE", 9) == 0 && !doctype_seen) {
			doctype_seen = 1;
			r = doctype(sc);
		} else if (p[1] == '!' || p[1] == '/')
			return FALLBACK;
		else
			break;
		if (r)
			return r;
	}
	if ((r = start_tag(sc)))
		return r;
	while (sc->p < end) {
		if ((r = char_data(sc)))
			return r;
		if (sc->p >= end)
			break;
		if ((r = content_markup(sc)))
			return r;
	}
	return FALLBACK;  /* the root element did not end */
}

static PyObject *seq_scan(Sequences *s, PyObject *arg)
{
	Py_buffer view;
	Scan *sc;
	PyObject *out = NULL;
	int r;

	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	if (view.len > MAX_DOC || s->npaths == 0) {
		PyBuffer_Release(&view);
		if (s->npaths == 0)
			return PyDict_New();
		Py_RETURN_NONE;
	}
	sc = PyMem_Malloc(sizeof(Scan));  /* levels and declarations are written before read */
	if (!sc) {
		PyBuffer_Release(&view);
		return PyErr_NoMemory();
	}
	sc->depth = sc->nns = sc->ncap = 0;
	sc->buf = NULL;
	sc->blen = sc->bcap = 0;
	sc->seq = s;
	sc->p = view.buf;
	sc->end = sc->p + view.len;
	sc->remaining = (int)s->npaths;
	/* a level's counts and partial matches are cleared when an element opens it */
	sc->counts = PyMem_Malloc((size_t)(MAX_DEPTH + 1) * (s->nnames + 1) * sizeof(long));
	sc->live = PyMem_Malloc((size_t)(MAX_DEPTH + 1) * (s->words + 1) * sizeof(uint64_t));
	sc->pending = PyMem_Malloc(s->npaths);
	sc->cap_depth = PyMem_Calloc(s->npaths, sizeof(int));
	sc->cap_start = PyMem_Calloc(s->npaths, sizeof(Py_ssize_t));
	sc->results = PyDict_New();
	if (!sc->counts || !sc->live || !sc->pending || !sc->cap_depth || !sc->cap_start || !sc->results) {
		r = NOMEM;
		if (!PyErr_Occurred())
			PyErr_NoMemory();
	} else {
		memset(sc->pending, 1, s->npaths);
		memset(sc->counts, 0, s->nnames * sizeof(long));  /* the document level */
		memset(sc->live, 0, s->words * sizeof(uint64_t));
		r = run(sc);
	}
	if (r == FINISHED) {
		out = Py_NewRef(sc->results);
	} else if (r == FALLBACK) {
		out = Py_NewRef(Py_None);
	}
	Py_XDECREF(sc->results);
	PyMem_Free(sc->counts);
	PyMem_Free(sc->live);
	PyMem_Free(sc->pending);
	PyMem_Free(sc->cap_depth);
	PyMem_Free(sc->cap_start);
	PyMem_Free(sc->buf);
	PyMem_Free(sc);
	PyBuffer_Release(&view);
	return out;
}

static PyMethodDef seq_methods[] = {
	{"scan", (PyCFunction)seq_scan, METH_O,
	 "scan(doc: bytes) -> dict[str, str] | None: the values of the sequences in a UTF-8 "
	 "document, or None when the document needs the reference parser (see the module)."},
	{NULL, NULL, 0, NULL},
};

static PyTypeObject SequencesType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "p4cs.rules._xmlscan.Sequences",
	.tp_basicsize = sizeof(Sequences),
	.tp_dealloc = (destructor)seq_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Sequences([(key, ((name, index or None), ...)), ...]): compiled XML tag sequences.",
	.tp_methods = seq_methods,
	.tp_init = (initproc)seq_init,
	.tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_xmlscan",
	"XML tag-sequence scanner (UTF-8, checked; None means: use the reference parser).", -1, NULL,
};

PyMODINIT_FUNC PyInit__xmlscan(void)
{
	PyObject *m;

	init_tables();
	if (PyType_Ready(&SequencesType) < 0)
		return NULL;
	m = PyModule_Create(&module);
	if (!m)
		return NULL;
	Py_INCREF(&SequencesType);
	if (PyModule_AddObject(m, "Sequences", (PyObject *)&SequencesType) < 0) {
		Py_DECREF(&SequencesType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
