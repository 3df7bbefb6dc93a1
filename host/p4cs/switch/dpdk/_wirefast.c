/* The flow-install fast path of the P4Runtime server's Write (wire.FlowFastPath.plan) in C.
 *
 * Every new connection writes two `Update{INSERT, TableEntry{exact matches, direct action,
 * idle timeout}}`; the server turns each into one daemon line. wire.FlowFastPath.plan reads
 * such an update straight from the request's bytes in Python (~12-15 us each); this reads it
 * the same way, with the same tables (the dictionaries FlowFastPath builds from the schema),
 * and returns the same tuple, or None where the Python raises Slow (or IndexError): the
 * caller then takes the generic path. tests/switch/test_wirefast.py checks the two against
 * each other on the real pipeline's updates and on mutated ones.
 *
 * plan(tables_by_hdr, idle_cache, buf, s, e)
 *   tables_by_hdr  {b"\x08" varint(table id): (TableInfo, field headers, nfields, actions)}
 *                  field headers: {8-byte FieldMatch head: (index, value length, top)}
 *                  actions: {b"\x08" varint(action id): (ActionInfo, param heads, nparams)}
 *                  param heads: {6-byte Param head: (index, value length, top)}
 *                  top: the bitwidth when a value of that length could exceed it, else 0
 *   idle_cache     {encoded idle_timeout_ns varint: value}, filled up to 1024 entries
 *   buf[s:e]       one serialized p4.v1.Update
 * -> (update type, TableInfo, key tuple, key text, action text or None, idle_timeout_ns,
 *     TableEntry start, TableEntry end) or None
 *
 * The expiry notifications of the daemon (expiry.expired_entries, the reference) in C too:
 *
 * expired(data, tables)
 *   data     one `expired` message of the daemon: lines `expired LEARNER V... [count I P B]`
 *   tables   {learner name: (table id, shadow dict, notify)}
 * -> ({table id: [TableEntry field of the notification]}, [bad line]) or None where the
 *    message has a byte the Python reads differently (not printable ASCII or newline) or a
 *    line of 512 tokens or more: the caller then takes the Python path
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define IDLE_CACHE_MAX 1024
#define EXPIRED_TOKENS 512 /* a line with more (a key of ~500 fields) takes the Python path */

static PyObject *s_line_fmt; /* "line_fmt" */
static PyObject *s_space;    /* " " */

/* int.from_bytes(p[:n], "big") */
static PyObject *from_be(const uint8_t *p, Py_ssize_t n)
{
	if (n <= 8) {
		unsigned long long v = 0;
		for (Py_ssize_t k = 0; k < n; k++)
			v = (v << 8) | p[k];
		return PyLong_FromUnsignedLongLong(v);
	}
	return _PyLong_FromByteArray(p, (size_t)n, 0, 0);
}

/* x >> top != 0 (top > 0), x >= 0 */
static int too_wide(PyObject *x, long top)
{
	if (!top)
		return 0;
	size_t bits = _PyLong_NumBits(x);
	return bits == (size_t)-1 || bits > (size_t)top;
}

/* The (index, vlen, top) tuple found in dict d under the n bytes at p; NULL: not there
 * (no exception set) or an error (exception set). */
static PyObject *lookup(PyObject *d, const uint8_t *p, Py_ssize_t n)
{
	PyObject *k = PyBytes_FromStringAndSize((const char *)p, n);
	if (!k)
		return NULL;
	PyObject *v = PyDict_GetItemWithError(d, k); /* borrowed */
	Py_DECREF(k);
	return v;
}

/* The tuple of `size` items in dict d under the n bytes at p: 1 (in *out, borrowed), 0 not
 * there (or not such a tuple), -1 error. */
static int entry(PyObject *d, const uint8_t *p, Py_ssize_t n, Py_ssize_t size, PyObject **out)
{
	PyObject *v = lookup(d, p, n);
	if (!v)
		return PyErr_Occurred() ? -1 : 0;
	if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != size)
		return 0;
	*out = v;
	return 1;
}

/* A field's or a parameter's (index, value length, top) under the n bytes at p: 1, 0, -1 as
 * entry(). */
static int field(PyObject *d, const uint8_t *p, Py_ssize_t n, Py_ssize_t *idx, Py_ssize_t *vlen,
		 long *top)
{
	PyObject *t;
	int r = entry(d, p, n, 3, &t);
	if (r <= 0)
		return r;
	*idx = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 0));
	*vlen = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
	*top = PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
	return PyErr_Occurred() ? -1 : 1;
}

/* The value whose header is the n bytes at buf + *i (its (index, length, top) in dict d), as
 * an int in *x (new reference) and its index in *idx, below count; *i moves past it. It must
 * end by limit. 1, 0, -1 as entry(). */
static int value_at(PyObject *d, const uint8_t *buf, Py_ssize_t *i, Py_ssize_t n, Py_ssize_t limit,
		    Py_ssize_t count, Py_ssize_t *idx, PyObject **x)
{
	Py_ssize_t vlen;
	long top;
	if (*i + n > limit)
		return 0;
	int r = field(d, buf + *i, n, idx, &vlen, &top);
	if (r <= 0)
		return r;
	*i += n;
	if (*idx < 0 || *idx >= count || vlen < 0 || *i + vlen > limit)
		return 0;
	PyObject *v = from_be(buf + *i, vlen);
	if (!v)
		return -1;
	if (too_wide(v, top)) {
		Py_DECREF(v);
		return 0;
	}
	*i += vlen;
	*x = v;
	return 1;
}

/* 1: ok, 0: slow, -1: error -> goto */
#define CHECK(r)                   \
	do {                       \
		int r_ = (r);      \
		if (r_ < 0)        \
			goto error; \
		if (r_ == 0)       \
			goto slow; \
	} while (0)

#define SLOW()            \
	do {              \
		goto slow; \
	} while (0)

static PyObject *plan(PyObject *self, PyObject *args)
{
	PyObject *tables, *idle_cache;
	Py_buffer view;
	Py_ssize_t s, e;
	if (!PyArg_ParseTuple(args, "O!O!y*nn", &PyDict_Type, &tables, &PyDict_Type, &idle_cache,
			      &view, &s, &e))
		return NULL;
	const uint8_t *buf = view.buf;
	PyObject *vals = NULL, *pvals = NULL, *key = NULL, *keytext = NULL, *acttext = NULL;
	PyObject *fmt = NULL, *ent, *act;
	PyObject *result = NULL;
	if (s < 0 || e > view.len || e - s < 6)
		SLOW();
	if (buf[s] != 0x08 || buf[s + 2] != 0x12)
		SLOW();
	long utype = buf[s + 1];
	Py_ssize_t i, l1, l2;
	uint8_t b = buf[s + 3];
	if (b < 0x80) {
		i = s + 4;
		l1 = b;
	} else {
		uint8_t b2 = buf[s + 4];
		if (b2 >= 0x80)
			SLOW();
		i = s + 5;
		l1 = (b & 0x7F) | (b2 << 7);
	}
	if (i + 3 > e || l1 != e - i || buf[i] != 0x12)
		SLOW();
	b = buf[i + 1];
	if (b < 0x80) {
		i += 2;
		l2 = b;
	} else {
		uint8_t b2 = buf[i + 2];
		if (b2 >= 0x80)
			SLOW();
		i += 3;
		l2 = (b & 0x7F) | (b2 << 7);
	}
	if (l2 != e - i)
		SLOW();
	Py_ssize_t te_s = i;
	if (i + 5 > e)
		SLOW();
	CHECK(entry(tables, buf + i, 5, 4, &ent));
	PyObject *t = PyTuple_GET_ITEM(ent, 0);
	PyObject *mf = PyTuple_GET_ITEM(ent, 1);
	Py_ssize_t nf = PyLong_AsSsize_t(PyTuple_GET_ITEM(ent, 2));
	PyObject *actions = PyTuple_GET_ITEM(ent, 3);
	if (nf < 0 || !PyDict_Check(mf) || !PyDict_Check(actions)) {
		if (PyErr_Occurred())
			goto error;
		SLOW();
	}
	i += 5;
	vals = PyList_New(nf); /* items NULL until set */
	if (!vals)
		goto error;
	for (Py_ssize_t n = 0; n < nf; n++) {
		Py_ssize_t idx;
		PyObject *x;
		CHECK(value_at(mf, buf, &i, 8, e, nf, &idx, &x));
		PyObject *old = PyList_GET_ITEM(vals, idx);
		PyList_SET_ITEM(vals, idx, x);
		Py_XDECREF(old);
	}
	for (Py_ssize_t n = 0; n < nf; n++)
		if (PyList_GET_ITEM(vals, n) == NULL)
			SLOW();
	if (i < e && buf[i] == 0x1A) {
		/* TableAction{0a L Action{08 aid(4) params...}} */
		if (i + 9 > e)
			SLOW();
		Py_ssize_t la = buf[i + 1];
		if (la >= 0x80 || buf[i + 2] != 0x0A || buf[i + 3] != la - 2)
			SLOW();
		Py_ssize_t a_end = i + 2 + la;
		if (a_end > e)
			SLOW();
		CHECK(entry(actions, buf + i + 4, 5, 3, &act));
		PyObject *ai = PyTuple_GET_ITEM(act, 0);
		PyObject *ph = PyTuple_GET_ITEM(act, 1);
		Py_ssize_t np_ = PyLong_AsSsize_t(PyTuple_GET_ITEM(act, 2));
		if (np_ < 0 || !PyDict_Check(ph)) {
			if (PyErr_Occurred())
				goto error;
			SLOW();
		}
		i += 9;
		fmt = PyObject_GetAttr(ai, s_line_fmt);
		if (!fmt)
			goto error;
		if (np_) {
			pvals = PyTuple_New(np_);
			if (!pvals)
				goto error;
			while (i < a_end) {
				Py_ssize_t pidx;
				PyObject *x;
				CHECK(value_at(ph, buf, &i, 6, a_end, np_, &pidx, &x));
				if (PyTuple_GET_ITEM(pvals, pidx) != NULL) {
					Py_DECREF(x);
					SLOW();
				}
				PyObject *h = PyNumber_ToBase(x, 16);
				Py_DECREF(x);
				if (!h)
					goto error;
				PyTuple_SET_ITEM(pvals, pidx, h);
			}
			for (Py_ssize_t n = 0; n < np_; n++)
				if (PyTuple_GET_ITEM(pvals, n) == NULL)
					SLOW();
			acttext = PyUnicode_Format(fmt, pvals);
			if (!acttext)
				goto error;
		} else {
			acttext = fmt;
			Py_INCREF(acttext);
		}
		if (i != a_end)
			SLOW();
	}
	unsigned long long idle = 0;
	if (i < e) {
		if (buf[i] != 0x48)
			SLOW();
		PyObject *raw = PyBytes_FromStringAndSize((const char *)buf + i + 1, e - i - 1);
		if (!raw)
			goto error;
		PyObject *cached = PyDict_GetItemWithError(idle_cache, raw); /* borrowed */
		if (cached) {
			idle = PyLong_AsUnsignedLongLong(cached);
			Py_DECREF(raw);
			if (PyErr_Occurred())
				goto error;
		} else {
			if (PyErr_Occurred()) {
				Py_DECREF(raw);
				goto error;
			}
			Py_ssize_t j = i + 1;
			int shift = 0, done = 0;
			while (j < e) {
				uint8_t c = buf[j++];
				if (shift > 63) {
					Py_DECREF(raw);
					SLOW();
				}
				idle |= (unsigned long long)(c & 0x7F) << shift;
				if (c < 0x80) {
					done = 1;
					break;
				}
				shift += 7;
			}
			if (!done || j != e || idle >> 63) {
				Py_DECREF(raw);
				SLOW();
			}
			if (PyDict_GET_SIZE(idle_cache) < IDLE_CACHE_MAX) {
				PyObject *v = PyLong_FromUnsignedLongLong(idle);
				if (!v || PyDict_SetItem(idle_cache, raw, v)) {
					Py_XDECREF(v);
					Py_DECREF(raw);
					goto error;
				}
				Py_DECREF(v);
			}
			Py_DECREF(raw);
		}
	}
	key = PyList_AsTuple(vals);
	if (!key)
		goto error;
	/* " ".join(map(hex, key)) */
	PyObject *hexes = PyList_New(nf);
	if (!hexes)
		goto error;
	for (Py_ssize_t n = 0; n < nf; n++) {
		PyObject *h = PyNumber_ToBase(PyTuple_GET_ITEM(key, n), 16);
		if (!h) {
			Py_DECREF(hexes);
			goto error;
		}
		PyList_SET_ITEM(hexes, n, h);
	}
	keytext = PyUnicode_Join(s_space, hexes);
	Py_DECREF(hexes);
	if (!keytext)
		goto error;
	result = Py_BuildValue("(lOOOOKnn)", utype, t, key, keytext, acttext ? acttext : Py_None,
			       idle, te_s, e);
	goto out;
slow:
	if (!PyErr_Occurred()) {
		result = Py_None;
		Py_INCREF(result);
	}
	goto out;
error:
	result = NULL;
out:
	Py_XDECREF(vals);
	Py_XDECREF(pvals);
	Py_XDECREF(key);
	Py_XDECREF(keytext);
	Py_XDECREF(acttext);
	Py_XDECREF(fmt);
	PyBuffer_Release(&view);
	return result;
}

/* Appends the protobuf varint of v to p; returns the end. */
static uint8_t *put_varint(uint8_t *p, unsigned long long v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* int(tok, base) for the token p[:n] (base 0: as int(x, 0)); NULL with an exception set when
 * the Python would raise. */
static PyObject *token_int(const char *p, Py_ssize_t n, int base)
{
	/* decimal without a leading zero (int(x, 0) refuses "010"), up to 18 digits: at once */
	if (n > 0 && n <= 18 && (n == 1 || p[0] != '0' || base == 10)) {
		unsigned long long v = 0;
		Py_ssize_t k;

		for (k = 0; k < n && p[k] >= '0' && p[k] <= '9'; k++)
			v = v * 10 + (unsigned long long)(p[k] - '0');
		if (k == n)
			return PyLong_FromUnsignedLongLong(v);
	}
	char buf[160];
	if (n >= (Py_ssize_t)sizeof(buf)) {
		PyObject *u = PyUnicode_FromStringAndSize(p, n);
		if (!u)
			return NULL;
		PyObject *r = PyLong_FromUnicodeObject(u, base);
		Py_DECREF(u);
		return r;
	}
	memcpy(buf, p, (size_t)n);
	buf[n] = 0;
	char *end;
	PyObject *r = PyLong_FromString(buf, &end, base);
	if (r && *end) { /* cannot happen for a token without NUL, kept for safety */
		Py_DECREF(r);
		PyErr_SetString(PyExc_ValueError, "invalid literal");
		return NULL;
	}
	return r;
}

/* One line p[:n]: its table-entry field appended to out[tid] when its table notifies and the
 * shadow held it. Returns 0, 1 (not such a line: bad when it starts with "expired") or -1. */
static int expired_line(const char *p, Py_ssize_t n, PyObject *tables, PyObject *out)
{
	const char *tok[EXPIRED_TOKENS];
	Py_ssize_t len[EXPIRED_TOKENS];
	Py_ssize_t nt = 0, i = 0;
	PyObject *key = NULL, *name = NULL;
	int rc = -1;

	while (i < n) {
		while (i < n && p[i] == ' ')
			i++;
		if (i >= n)
			break;
		tok[nt] = p + i;
		while (i < n && p[i] != ' ')
			i++;
		len[nt] = p + i - tok[nt];
		nt++;
	}
	if (nt < 2 || len[0] != 7 || memcmp(tok[0], "expired", 7))
		return 1;
	unsigned long long pk = 0, by = 0;
	int has_counts = 0;
	if (nt >= 6 && len[nt - 4] == 5 && !memcmp(tok[nt - 4], "count", 5)) {
		for (int k = 0; k < 2; k++) {
			PyObject *a = token_int(tok[nt - 2 + k], len[nt - 2 + k], 10);
			if (!a)
				goto bad;
			unsigned long long v = PyLong_AsUnsignedLongLong(a); /* < 0 or >= 2**64: bad */
			Py_DECREF(a);
			if (v == (unsigned long long)-1 && PyErr_Occurred()) {
				if (!PyErr_ExceptionMatches(PyExc_OverflowError))
					goto out;
				PyErr_Clear();
				return 1;
			}
			if (k)
				by = v;
			else
				pk = v;
		}
		has_counts = 1;
		nt -= 4;
	}
	key = PyTuple_New(nt - 2);
	if (!key)
		goto out;
	for (Py_ssize_t k = 2; k < nt; k++) {
		PyObject *v = token_int(tok[k], len[k], 0);
		if (!v)
			goto bad;
		PyTuple_SET_ITEM(key, k - 2, v);
	}
	name = PyUnicode_DecodeASCII(tok[1], len[1], NULL);
	if (!name)
		goto out;
	PyObject *t = PyDict_GetItemWithError(tables, name); /* borrowed */
	if (!t) {
		rc = PyErr_Occurred() ? -1 : 0;
		goto out;
	}
	if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3 || !PyDict_Check(PyTuple_GET_ITEM(t, 1))) {
		PyErr_SetString(PyExc_TypeError, "tables: (table id, shadow dict, notify) each");
		goto out;
	}
	PyObject *shadow = PyTuple_GET_ITEM(t, 1);
	PyObject *b = PyDict_GetItemWithError(shadow, key); /* borrowed */
	if (!b) {
		rc = PyErr_Occurred() ? -1 : 0;
		goto out;
	}
	Py_INCREF(b);
	if (PyDict_DelItem(shadow, key) < 0) {
		Py_DECREF(b);
		goto out;
	}
	int notify = PyObject_IsTrue(PyTuple_GET_ITEM(t, 2));
	if (notify <= 0 || !PyBytes_Check(b)) {
		Py_DECREF(b);
		if (notify > 0) {
			PyErr_SetString(PyExc_TypeError, "a shadow entry is not bytes");
			goto out;
		}
		rc = notify < 0 ? -1 : 0;
		goto out;
	}
	/* 0a L {TableEntry [3a L CounterData{08 bytes 10 packets}]} */
	uint8_t cd[24], *q = cd;
	if (has_counts) {
		*q++ = 0x08;
		q = put_varint(q, by);
		*q++ = 0x10;
		q = put_varint(q, pk);
	}
	Py_ssize_t cdn = q - cd, bn = PyBytes_GET_SIZE(b);
	Py_ssize_t inner = bn + (has_counts ? 1 + 1 + cdn : 0);
	PyObject *field = PyBytes_FromStringAndSize(NULL, 1 + 10 + inner);
	if (!field) {
		Py_DECREF(b);
		goto out;
	}
	uint8_t *f0 = (uint8_t *)PyBytes_AS_STRING(field), *f = f0;
	*f++ = 0x0a;
	f = put_varint(f, (unsigned long long)inner);
	memcpy(f, PyBytes_AS_STRING(b), (size_t)bn);
	f += bn;
	Py_DECREF(b);
	if (has_counts) {
		*f++ = 0x3a;
		*f++ = (uint8_t)cdn; /* < 128 */
		memcpy(f, cd, (size_t)cdn);
		f += cdn;
	}
	if (_PyBytes_Resize(&field, f - f0) < 0)
		goto out;
	PyObject *tid = PyTuple_GET_ITEM(t, 0);
	PyObject *lst = PyDict_GetItemWithError(out, tid); /* borrowed */
	if (!lst) {
		if (PyErr_Occurred()) {
			Py_DECREF(field);
			goto out;
		}
		lst = PyList_New(0);
		if (!lst || PyDict_SetItem(out, tid, lst) < 0) {
			Py_XDECREF(lst);
			Py_DECREF(field);
			goto out;
		}
		Py_DECREF(lst); /* the dict holds it */
	}
	rc = PyList_Append(lst, field);
	Py_DECREF(field);
	goto out;
bad:
	if (!PyErr_ExceptionMatches(PyExc_ValueError))
		goto out;
	PyErr_Clear();
	rc = 1;
out:
	Py_XDECREF(key);
	Py_XDECREF(name);
	return rc;
}

static PyObject *expired(PyObject *self, PyObject *args)
{
	Py_buffer view;
	PyObject *tables, *out = NULL, *bad = NULL, *result = NULL;

	if (!PyArg_ParseTuple(args, "y*O!", &view, &PyDict_Type, &tables))
		return NULL;
	const char *p = view.buf;
	Py_ssize_t n = view.len, i;
	Py_ssize_t spaces = 0;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		spaces = ch == '\n' ? 0 : spaces + (ch == ' ');
		if ((ch < 0x20 && ch != '\n') || ch > 0x7e || spaces >= EXPIRED_TOKENS) {
			result = Py_None;
			Py_INCREF(result);
			goto done;
		}
	}
	out = PyDict_New();
	bad = PyList_New(0);
	if (!out || !bad)
		goto done;
	for (i = 0; i < n;) {
		const char *nl = memchr(p + i, '\n', (size_t)(n - i));
		Py_ssize_t e = nl ? nl - p : n;
		if (e > i) {
			int r = expired_line(p + i, e - i, tables, out);
			if (r < 0)
				goto done;
			if (r == 1 && e - i >= 7 && !memcmp(p + i, "expired", 7)) {
				PyObject *ln = PyUnicode_DecodeASCII(p + i, e - i, NULL);
				if (!ln || PyList_Append(bad, ln) < 0) {
					Py_XDECREF(ln);
					goto done;
				}
				Py_DECREF(ln);
			}
		}
		i = e + 1;
	}
	result = PyTuple_Pack(2, out, bad);
done:
	Py_XDECREF(out);
	Py_XDECREF(bad);
	PyBuffer_Release(&view);
	return result;
}

static PyMethodDef methods[] = {
	{"plan", plan, METH_VARARGS, "One flow-install Update of a Write, or None (see wire.py)."},
	{"expired", expired, METH_VARARGS,
	 "The daemon's expiry lines: notification fields per table, bad lines (see expiry.py)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wirefast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wirefast(void)
{
	s_line_fmt = PyUnicode_InternFromString("line_fmt");
	s_space = PyUnicode_InternFromString(" ");
	if (!s_line_fmt || !s_space)
		return NULL;
	return PyModule_Create(&module);
}
