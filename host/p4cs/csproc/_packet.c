/* SPDX-License-Identifier: Apache-2.0
 *
 * The CS processor's Ethernet/IPv4/TCP parse and build (p4cs.csproc.packet.parse / build) in
 * C: every frame the controller takes is parsed once and every frame it sends is built once,
 * and the Python versions cost 3-4 µs a frame. The module p4cs.csproc.packet keeps the Python
 * versions (parse_py / build_py) as the reference and the fallback: the same checks in the
 * same order, the same BadFrame kinds, the same Segment fields, byte-identical frames
 * (tests/csproc/test_packet_c.py checks both on valid, mutated and random input). It also
 * finds the handshake ACKs a batch of packet-ins supersedes (packet.superseded_acks). What this
 * code does not take (a frame that is not bytes, a MAC that is not 6 bytes, a number out of
 * its field's range) goes to the Python version, which gives the same answer or error as
 * before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *Segment, *BadFrame, *parse_py, *build_py, *superseded_py;
static PyObject *n_dmac, *n_smac, *n_sip, *n_dip, *n_sport, *n_dport, *n_seq, *n_ack, *n_flags,
	*n_window, *n_mss, *n_wscale, *n_payload, *n_ttl;

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Sum of the big-endian 16-bit words of p[0..n) (a last odd byte padded with a zero). */
static uint64_t words(const uint8_t *p, size_t n)
{
	uint64_t s = 0;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += ((uint32_t)p[i] << 8) | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

/* The checksum field for a sum taken with a zero checksum (packet._fold). */
static inline uint32_t fold(uint64_t s)
{
	s %= 0xFFFF;
	return s ? (uint32_t)(0xFFFF - s) : 0;
}

static PyObject *bad(const char *kind)
{
	PyObject *e = PyObject_CallFunction(BadFrame, "s", kind);

	if (e != NULL) {
		PyErr_SetObject(BadFrame, e);
		Py_DECREF(e);
	}
	return NULL;
}

static int set(PyObject *o, PyObject *name, PyObject *v)
{
	int r;

	if (v == NULL)
		return -1;
	r = PyObject_SetAttr(o, name, v);
	Py_DECREF(v);
	return r;
}

static PyObject *parse(PyObject *self, PyObject *frame)
{
	const uint8_t *f, *ip, *tcp;
	Py_ssize_t n;
	uint32_t ihl, tot, frag, sip, dip, hl, tcp_len, flags, mss = 0, ws = 0;
	int has_mss = 0, has_ws = 0;
	PyObject *seg;

	(void)self;
	if (!PyBytes_CheckExact(frame))
		return PyObject_CallOneArg(parse_py, frame);
	f = (const uint8_t *)PyBytes_AS_STRING(frame);
	n = PyBytes_GET_SIZE(frame);
	if (n < 54)
		return bad("truncated");
	if (be16(f + 12) != 0x0800)
		return bad("not_ipv4");
	ip = f + 14;
	ihl = (ip[0] & 15u) * 4;
	if (ip[0] >> 4 != 4 || ihl < 20)
		return bad("bad_ip_header");
	tot = be16(ip + 2);
	if (tot < ihl + 20 || 14 + (Py_ssize_t)tot > n)
		return bad("truncated");
	if (ip[9] != 6)
		return bad("not_tcp");
	frag = be16(ip + 6);
	if (frag & 0x3FFF)
		return bad("fragment");
	if (words(ip, ihl) % 0xFFFF)
		return bad("bad_ip_checksum");
	sip = be32(ip + 12);
	dip = be32(ip + 16);
	tcp = ip + ihl;
	tcp_len = tot - ihl;
	hl = (uint32_t)(tcp[12] >> 4) * 4;
	if (hl < 20 || hl > tcp_len)
		return bad("bad_tcp_header");
	if ((words(tcp, tcp_len) + (sip >> 16) + (sip & 0xFFFF) + (dip >> 16) + (dip & 0xFFFF) + 6 +
	     tcp_len) % 0xFFFF)
		return bad("bad_tcp_checksum");
	flags = tcp[13];
	if ((flags & 0x02) && hl > 20) {         /* packet._parse_syn_opts */
		uint32_t i = 20, kind, ln;

		while (i < hl) {
			kind = tcp[i];
			if (kind == 0)
				break;
			if (kind == 1) {
				i++;
				continue;
			}
			if (i + 1 >= hl)
				break;
			ln = tcp[i + 1];
			if (ln < 2 || i + ln > hl)
				break;
			if (kind == 2 && ln == 4 && !has_mss) {
				mss = be16(tcp + i + 2);
				has_mss = 1;
			} else if (kind == 3 && ln == 3 && !has_ws) {
				ws = tcp[i + 2] < 14 ? tcp[i + 2] : 14;
				has_ws = 1;
			}
			i += ln;
		}
	}
	seg = PyObject_CallNoArgs(Segment);
	if (seg == NULL)
		return NULL;
	if (set(seg, n_dmac, PyBytes_FromStringAndSize((const char *)f, 6)) < 0 ||
	    set(seg, n_smac, PyBytes_FromStringAndSize((const char *)f + 6, 6)) < 0 ||
	    set(seg, n_sip, PyLong_FromUnsignedLong(sip)) < 0 ||
	    set(seg, n_dip, PyLong_FromUnsignedLong(dip)) < 0 ||
	    set(seg, n_sport, PyLong_FromUnsignedLong(be16(tcp))) < 0 ||
	    set(seg, n_dport, PyLong_FromUnsignedLong(be16(tcp + 2))) < 0 ||
	    set(seg, n_seq, PyLong_FromUnsignedLong(be32(tcp + 4))) < 0 ||
	    set(seg, n_ack, PyLong_FromUnsignedLong(be32(tcp + 8))) < 0 ||
	    set(seg, n_flags, PyLong_FromUnsignedLong(flags)) < 0 ||
	    set(seg, n_window, PyLong_FromUnsignedLong(be16(tcp + 14))) < 0 ||
	    set(seg, n_ttl, PyLong_FromUnsignedLong(ip[8])) < 0 ||
	    set(seg, n_payload, PyBytes_FromStringAndSize((const char *)tcp + hl,
							 (Py_ssize_t)(tcp_len - hl))) < 0 ||
	    set(seg, n_mss, has_mss ? PyLong_FromUnsignedLong(mss) : Py_NewRef(Py_None)) < 0 ||
	    set(seg, n_wscale, has_ws ? PyLong_FromUnsignedLong(ws) : Py_NewRef(Py_None)) < 0) {
		Py_DECREF(seg);
		return NULL;
	}
	return seg;
}

/* An int argument into *out: in [0, max], or with ``wrap`` any int taken modulo 2**32 (seq and
 * ack, as packet.build does: seq & MOD32). -1 if it is not one (the Python version then
 * decides). */
static int arg_uint(PyObject *o, int wrap, uint64_t max, int64_t *out)
{
	unsigned long long v;

	if (!PyLong_CheckExact(o))
		return -1;
	v = wrap ? PyLong_AsUnsignedLongLongMask(o) : PyLong_AsUnsignedLongLong(o);
	if (v == (unsigned long long)-1 && PyErr_Occurred()) {
		PyErr_Clear();
		return -1;
	}
	if (wrap)
		v &= 0xFFFFFFFFu;
	else if (v > max)
		return -1;
	*out = (int64_t)v;
	return 0;
}

static const char *const build_kw[] = {"smac", "dmac", "sip", "dip", "sport", "dport", "seq",
				       "ack", "flags", "window", "payload", "options", "ttl", NULL};

static PyObject *build(PyObject *self, PyObject *args, PyObject *kw)
{
	PyObject *smac, *dmac, *sip_o, *dip_o, *sport_o, *dport_o, *seq_o, *ack_o, *flags_o, *win_o;
	PyObject *payload = NULL, *options = NULL, *ttl_o = NULL, *out;
	int64_t sip, dip, sport, dport, flags, win, ttl = 64, seq, ack;
	uint32_t hl, tot, olen, plen, opad;
	uint8_t *p, *t;
	uint64_t s;

	(void)self;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOO|OOO", (char **)build_kw, &smac,
					 &dmac, &sip_o, &dip_o, &sport_o, &dport_o, &seq_o, &ack_o,
					 &flags_o, &win_o, &payload, &options, &ttl_o))
		return NULL;
	if (!PyBytes_CheckExact(smac) || PyBytes_GET_SIZE(smac) != 6 ||
	    !PyBytes_CheckExact(dmac) || PyBytes_GET_SIZE(dmac) != 6 ||
	    (payload != NULL && !PyBytes_CheckExact(payload)) ||
	    (options != NULL && !PyBytes_CheckExact(options)) ||
	    arg_uint(sip_o, 0, 0xFFFFFFFFu, &sip) < 0 || arg_uint(dip_o, 0, 0xFFFFFFFFu, &dip) < 0 ||
	    arg_uint(sport_o, 0, 0xFFFF, &sport) < 0 || arg_uint(dport_o, 0, 0xFFFF, &dport) < 0 ||
	    arg_uint(flags_o, 0, 0xFF, &flags) < 0 || arg_uint(win_o, 0, 0xFFFF, &win) < 0 ||
	    (ttl_o != NULL && arg_uint(ttl_o, 0, 0xFF, &ttl) < 0) ||
	    arg_uint(seq_o, 1, 0, &seq) < 0 || arg_uint(ack_o, 1, 0, &ack) < 0)
		return PyObject_Call(build_py, args, kw);
	olen = options ? (uint32_t)PyBytes_GET_SIZE(options) : 0;
	plen = payload ? (uint32_t)PyBytes_GET_SIZE(payload) : 0;
	opad = (4 - (olen & 3)) & 3;
	hl = 20 + olen + opad;
	tot = 20 + hl + plen;
	if (hl > 60 || tot > 0xFFFF)        /* struct.error in the Python version */
		return PyObject_Call(build_py, args, kw);
	out = PyBytes_FromStringAndSize(NULL, 14 + (Py_ssize_t)tot);
	if (out == NULL)
		return NULL;
	p = (uint8_t *)PyBytes_AS_STRING(out);
	memcpy(p, PyBytes_AS_STRING(dmac), 6);
	memcpy(p + 6, PyBytes_AS_STRING(smac), 6);
	p[12] = 0x08; p[13] = 0x00;
	p += 14;
	p[0] = 0x45; p[1] = 0;
	put16(p + 2, tot);
	put16(p + 4, 0);
	put16(p + 6, 0x4000);
	p[8] = (uint8_t)ttl; p[9] = 6;
	put32(p + 12, (uint32_t)sip);
	put32(p + 16, (uint32_t)dip);
	put16(p + 10, fold(0x4500 + tot + 0x4000 + ((uint64_t)ttl << 8) + 6 + (uint64_t)sip +
			   (uint64_t)dip));
	t = p + 20;
	put16(t, (uint32_t)sport);
	put16(t + 2, (uint32_t)dport);
	put32(t + 4, (uint32_t)seq);
	put32(t + 8, (uint32_t)ack);
	t[12] = (uint8_t)((hl / 4) << 4);
	t[13] = (uint8_t)flags;
	put16(t + 14, (uint32_t)win);
	put16(t + 16, 0);
	put16(t + 18, 0);
	if (olen)
		memcpy(t + 20, PyBytes_AS_STRING(options), olen);
	memset(t + 20 + olen, 0, opad);
	if (plen)
		memcpy(t + hl, PyBytes_AS_STRING(payload), plen);
	s = words(t, hl + plen) + ((uint64_t)sip >> 16) + ((uint64_t)sip & 0xFFFF) +
	    ((uint64_t)dip >> 16) + ((uint64_t)dip & 0xFFFF) + 6 + hl + plen;
	put16(t + 16, fold(s));
	return out;
}

static PyObject *setup_(PyObject *self, PyObject *args)
{
	PyObject *seg, *badf, *pp, *bp, *sp;

	(void)self;
	if (!PyArg_ParseTuple(args, "OOOOO", &seg, &badf, &pp, &bp, &sp))
		return NULL;
	Py_XSETREF(Segment, Py_NewRef(seg));
	Py_XSETREF(BadFrame, Py_NewRef(badf));
	Py_XSETREF(parse_py, Py_NewRef(pp));
	Py_XSETREF(build_py, Py_NewRef(bp));
	Py_XSETREF(superseded_py, Py_NewRef(sp));
	Py_RETURN_NONE;
}

/* What superseded_acks needs of a segment that parse() takes without error. */
struct brief {
	uint32_t sip, dip, seq, ack;
	uint16_t sport, dport;
	Py_ssize_t index;
};

/* 1 for a pure ACK, 2 for a segment with data, ACK set and SYN / RST clear, 0 for anything
 * else (a frame parse() refuses included: the same checks). */
static int brief_of(const uint8_t *f, Py_ssize_t n, struct brief *b)
{
	const uint8_t *ip, *tcp;
	uint32_t ihl, tot, hl, tcp_len, flags;

	if (n < 54 || be16(f + 12) != 0x0800)
		return 0;
	ip = f + 14;
	ihl = (ip[0] & 15u) * 4;
	if (ip[0] >> 4 != 4 || ihl < 20)
		return 0;
	tot = be16(ip + 2);
	if (tot < ihl + 20 || 14 + (Py_ssize_t)tot > n || ip[9] != 6 || (be16(ip + 6) & 0x3FFF))
		return 0;
	if (words(ip, ihl) % 0xFFFF)
		return 0;
	b->sip = be32(ip + 12);
	b->dip = be32(ip + 16);
	tcp = ip + ihl;
	tcp_len = tot - ihl;
	hl = (uint32_t)(tcp[12] >> 4) * 4;
	if (hl < 20 || hl > tcp_len)
		return 0;
	flags = tcp[13];
	if (!(flags == 0x10 && tcp_len == hl) &&
	    !((flags & 0x10) && !(flags & 0x06) && tcp_len > hl))
		return 0;
	if ((words(tcp, tcp_len) + (b->sip >> 16) + (b->sip & 0xFFFF) + (b->dip >> 16) +
	     (b->dip & 0xFFFF) + 6 + tcp_len) % 0xFFFF)
		return 0;
	b->sport = (uint16_t)be16(tcp);
	b->dport = (uint16_t)be16(tcp + 2);
	b->seq = be32(tcp + 4);
	b->ack = be32(tcp + 8);
	return tcp_len == hl ? 1 : 2;
}

static PyObject *superseded_acks(PyObject *self, PyObject *args)
{
	PyObject *pkts, *reason, *seq, *out = NULL;
	struct brief *acks = NULL, *datas = NULL, b;
	Py_ssize_t n, i, j, na = 0, nd = 0;
	long want;

	(void)self;
	if (!PyArg_ParseTuple(args, "OO", &pkts, &reason))
		return NULL;
	if (!PyList_CheckExact(pkts) || !PyLong_CheckExact(reason))
		return PyObject_CallFunctionObjArgs(superseded_py, pkts, reason, NULL);
	want = PyLong_AsLong(reason);
	if (want == -1 && PyErr_Occurred()) {
		PyErr_Clear();
		return PyObject_CallFunctionObjArgs(superseded_py, pkts, reason, NULL);
	}
	seq = pkts;
	n = PyList_GET_SIZE(seq);
	/* Anything but (bytes, port, int reason) tuples: the Python version decides. */
	for (i = 0; i < n; i++) {
		PyObject *t = PyList_GET_ITEM(seq, i);

		if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 3 ||
		    !PyBytes_CheckExact(PyTuple_GET_ITEM(t, 0)) ||
		    !PyLong_CheckExact(PyTuple_GET_ITEM(t, 2)))
			return PyObject_CallFunctionObjArgs(superseded_py, pkts, reason, NULL);
	}
	out = PyList_New(0);
	if (out == NULL || n < 2)
		return out;
	acks = PyMem_Malloc(sizeof(*acks) * (size_t)n);
	datas = PyMem_Malloc(sizeof(*datas) * (size_t)n);
	if (acks == NULL || datas == NULL) {
		PyErr_NoMemory();
		goto fail;
	}
	for (i = 0; i < n; i++) {
		PyObject *t = PyList_GET_ITEM(seq, i), *fr = PyTuple_GET_ITEM(t, 0);
		long r = PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
		int k;

		if (r == -1 && PyErr_Occurred()) {
			PyErr_Clear();
			continue;
		}
		if (r != want)
			continue;
		k = brief_of((const uint8_t *)PyBytes_AS_STRING(fr), PyBytes_GET_SIZE(fr), &b);
		b.index = i;
		if (k == 1)
			acks[na++] = b;
		else if (k == 2)
			datas[nd++] = b;
	}
	for (i = 0; i < na; i++) {
		const struct brief *a = &acks[i];

		for (j = 0; j < nd; j++) {
			const struct brief *d = &datas[j];
			PyObject *item;

			if (d->index < a->index || d->sip != a->sip || d->dip != a->dip ||
			    d->sport != a->sport || d->dport != a->dport || d->seq != a->seq ||
			    d->ack != a->ack)
				continue;
			item = Py_BuildValue("(n(kkkk))", a->index, (unsigned long)a->sip,
					     (unsigned long)a->sport, (unsigned long)a->dip,
					     (unsigned long)a->dport);
			if (item == NULL || PyList_Append(out, item) < 0) {
				Py_XDECREF(item);
				goto fail;
			}
			Py_DECREF(item);
			break;
		}
	}
	PyMem_Free(acks);
	PyMem_Free(datas);
	return out;
fail:
	PyMem_Free(acks);
	PyMem_Free(datas);
	Py_XDECREF(out);
	return NULL;
}

static PyMethodDef methods[] = {
	{"setup", setup_, METH_VARARGS,
	 "setup(Segment, BadFrame, parse_py, build_py): the classes and the Python fallbacks."},
	{"parse", parse, METH_O, "packet.parse in C (after setup)."},
	{"superseded_acks", superseded_acks, METH_VARARGS,
	 "packet.superseded_acks in C (after setup)."},
	{"build", (PyCFunction)(void (*)(void))build, METH_VARARGS | METH_KEYWORDS,
	 "packet.build in C (after setup)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_packet", NULL, -1, methods};

PyMODINIT_FUNC PyInit__packet(void)
{
#define NAME(v, s) if ((v = PyUnicode_InternFromString(s)) == NULL) return NULL
	NAME(n_dmac, "dmac"); NAME(n_smac, "smac"); NAME(n_sip, "sip"); NAME(n_dip, "dip");
	NAME(n_sport, "sport"); NAME(n_dport, "dport"); NAME(n_seq, "seq"); NAME(n_ack, "ack");
	NAME(n_flags, "flags"); NAME(n_window, "window"); NAME(n_mss, "mss");
	NAME(n_wscale, "wscale"); NAME(n_payload, "payload"); NAME(n_ttl, "ttl");
#undef NAME
	return PyModule_Create(&module);
}
