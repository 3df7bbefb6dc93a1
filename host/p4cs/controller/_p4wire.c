/* A p4.v1.Update of an exact-match table entry with an action, in protobuf wire format.
 *
 * The controller writes two such updates per new connection (the two directions of a
 * spliced flow); p4rt.FlowEncoder.insert_raw builds them in Python, this builds the same
 * bytes in C (tests/unit/test_controller_entries.py checks both against the protobuf
 * objects). Every value is P4Runtime's canonical bytestring: big-endian, shortest form, at
 * least one byte; a value that does not fit its bitwidth raises ValueError.
 *
 * update(utype, te_head, fm_heads, key_bws, key, action_head, p_heads, p_bws, vals, idle_ns)
 *   te_head      TableEntry.table_id, encoded (b"\x08" varint(table id))
 *   fm_heads     per key field: FieldMatch.field_id, encoded (b"\x08" varint(field id))
 *   key          per key field: the value (int)
 *   action_head  Action.action_id, encoded
 *   p_heads      per parameter: Param.param_id and the tag of Param.value, encoded
 *                (b"\x10" varint(param id) b"\x1a")
 *   vals         per parameter: the value (int)
 *   idle_ns      TableEntry.idle_timeout_ns (0: not set)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAXBUF 4096

typedef struct {
	uint8_t b[MAXBUF];
	size_t n;
} buf_t;

static int put(buf_t *o, const void *p, size_t n)
{
	if (o->n + n > MAXBUF) {
		PyErr_SetString(PyExc_ValueError, "table entry too large");
		return -1;
	}
	memcpy(o->b + o->n, p, n);
	o->n += n;
	return 0;
}

static int varint(buf_t *o, uint64_t v)
{
	uint8_t t[10];
	size_t k = 0;
	while (v >= 0x80) {
		t[k++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[k++] = (uint8_t)v;
	return put(o, t, k);
}

/* tag, length, bytes */
static int ld(buf_t *o, uint8_t tag, const uint8_t *p, size_t n)
{
	if (put(o, &tag, 1) || varint(o, n))
		return -1;
	return put(o, p, n);
}

/* The canonical bytestring of `obj` (an int of at most `bw` bits, bw <= 64) into t. */
static int canon(PyObject *obj, long bw, uint8_t t[8], size_t *n)
{
	if (bw < 1 || bw > 64) {
		PyErr_Format(PyExc_ValueError, "bitwidth %ld not supported", bw);
		return -1;
	}
	if (!PyLong_Check(obj)) {
		PyErr_SetString(PyExc_TypeError, "an int expected");
		return -1;
	}
	if (_PyLong_Sign(obj) < 0 || _PyLong_NumBits(obj) > (size_t)bw) {
		if (!PyErr_Occurred())
			PyErr_Format(PyExc_ValueError, "value %S does not fit in %ld bits", obj, bw);
		return -1;
	}
	uint64_t v = PyLong_AsUnsignedLongLong(obj);
	if (v == (uint64_t)-1 && PyErr_Occurred())
		return -1;
	size_t k = 1;
	while (k < 8 && (v >> (8 * k)))
		k++;
	for (size_t i = 0; i < k; i++)
		t[i] = (uint8_t)(v >> (8 * (k - 1 - i)));
	*n = k;
	return 0;
}

static int bytes_of(PyObject *o, const uint8_t **p, Py_ssize_t *n)
{
	if (!PyBytes_Check(o)) {
		PyErr_SetString(PyExc_TypeError, "bytes expected");
		return -1;
	}
	*p = (const uint8_t *)PyBytes_AS_STRING(o);
	*n = PyBytes_GET_SIZE(o);
	return 0;
}

/* Item i of a key field or action parameter list: its encoded head (into hp, hn) and the
 * canonical bytes of its value at its bitwidth (into v, vn). */
static int field(PyObject *heads, PyObject *bws, PyObject *values, Py_ssize_t i,
		 const uint8_t **hp, Py_ssize_t *hn, uint8_t v[8], size_t *vn)
{
	long bw = PyLong_AsLong(PyTuple_GET_ITEM(bws, i));
	if (bw == -1 && PyErr_Occurred())
		return -1;
	if (canon(PyTuple_GET_ITEM(values, i), bw, v, vn))
		return -1;
	return bytes_of(PyTuple_GET_ITEM(heads, i), hp, hn);
}

static PyObject *encode_update(unsigned long utype, PyObject *te_head, PyObject *fm_heads,
				PyObject *key_bws, PyObject *key, PyObject *action_head,
				PyObject *p_heads, PyObject *p_bws, PyObject *vals,
				unsigned long long idle_ns)
{
	Py_ssize_t nk = PyTuple_GET_SIZE(fm_heads), np = PyTuple_GET_SIZE(p_heads);
	if (PyTuple_GET_SIZE(key_bws) != nk || PyTuple_GET_SIZE(key) != nk ||
	    PyTuple_GET_SIZE(p_bws) != np || PyTuple_GET_SIZE(vals) != np) {
		PyErr_SetString(PyExc_ValueError, "heads, bitwidths and values differ in number");
		return NULL;
	}
	static buf_t te, act, tmp, out;
	const uint8_t *hp;
	Py_ssize_t hn;
	uint8_t v[8], fmx[12];
	size_t vn;

	te.n = act.n = out.n = 0;
	if (bytes_of(te_head, &hp, &hn) || put(&te, hp, hn))
		return NULL;
	for (Py_ssize_t i = 0; i < nk; i++) {
		if (field(fm_heads, key_bws, key, i, &hp, &hn, v, &vn))
			return NULL;
		/* FieldMatch { field_id; exact = 2 { value = 1 } } */
		tmp.n = 0;
		fmx[0] = 0x0A;
		fmx[1] = (uint8_t)vn;
		memcpy(fmx + 2, v, vn);
		if (put(&tmp, hp, hn) || ld(&tmp, 0x12, fmx, vn + 2) ||
		    ld(&te, 0x12, tmp.b, tmp.n))                  /* TableEntry.match = 2 */
			return NULL;
	}
	if (bytes_of(action_head, &hp, &hn) || put(&act, hp, hn))
		return NULL;
	for (Py_ssize_t i = 0; i < np; i++) {
		if (field(p_heads, p_bws, vals, i, &hp, &hn, v, &vn))
			return NULL;
		/* Action.params = 4 { param_id = 2, value = 3 } (the head ends with value's tag) */
		tmp.n = 0;
		if (put(&tmp, hp, hn) || varint(&tmp, vn) || put(&tmp, v, vn) ||
		    ld(&act, 0x22, tmp.b, tmp.n))
			return NULL;
	}
	/* TableEntry.action = 3 { TableAction.action = 1 } */
	tmp.n = 0;
	if (ld(&tmp, 0x0A, act.b, act.n) || ld(&te, 0x1A, tmp.b, tmp.n))
		return NULL;
	if (idle_ns) {
		uint8_t tag = 0x48;                               /* TableEntry.idle_timeout_ns = 9 */
		if (put(&te, &tag, 1) || varint(&te, idle_ns))
			return NULL;
	}
	/* Update { type = 1; entity = 2 { Entity.table_entry = 2 } } */
	uint8_t tag = 0x08;
	tmp.n = 0;
	if (put(&out, &tag, 1) || varint(&out, utype) || ld(&tmp, 0x12, te.b, te.n) ||
	    ld(&out, 0x12, tmp.b, tmp.n))
		return NULL;
	return PyBytes_FromStringAndSize((const char *)out.b, (Py_ssize_t)out.n);
}

static PyObject *update(PyObject *self, PyObject *args)
{
	unsigned long utype;
	unsigned long long idle_ns;
	PyObject *te_head, *fm_heads, *key_bws, *key, *action_head, *p_heads, *p_bws, *vals;
	(void)self;
	if (!PyArg_ParseTuple(args, "kSO!O!O!SO!O!O!K", &utype, &te_head, &PyTuple_Type, &fm_heads,
			      &PyTuple_Type, &key_bws, &PyTuple_Type, &key, &action_head,
			      &PyTuple_Type, &p_heads, &PyTuple_Type, &p_bws, &PyTuple_Type, &vals,
			      &idle_ns))
		return NULL;
	return encode_update(utype, te_head, fm_heads, key_bws, key, action_head, p_heads, p_bws,
			     vals, idle_ns);
}

/* ---------------------------------------------------------------------------------------
 * splice_update(utype, te_head, fm_heads, key_bws, action_head, p_heads, p_bws, spec, fid):
 * update() of the `splice` entry of a FlowSpec (p4cs.csproc.effects) with flow id `fid`,
 * the parameters in P4Info order as p4rt._splice_values makes them (port, dmac, smac, sip,
 * dip, sport, dport, seq_delta, ack_delta mod 2**32, the two checksum deltas of
 * packet.splice_csum_deltas, flow_id) and idle_timeout_ns = int(idle_timeout_s * 1e9):
 * FlowEncoder.insert_raw(spec.key, Splice(...), spec.idle_timeout_s, utype) in one call.
 * Anything it does not take (a key that is not 5 ints of 64 bits, a MAC that is not bytes)
 * raises, as the Python version would or with TypeError / ValueError.
 */
static PyObject *n_key, *n_port, *n_dmac, *n_smac, *n_sip, *n_dip, *n_sport, *n_dport,
	*n_seq_delta, *n_ack_delta, *n_idle;

static int attr_i64(PyObject *o, PyObject *name, long long *v)
{
	PyObject *a = PyObject_GetAttr(o, name);
	if (!a)
		return -1;
	*v = PyLong_AsLongLong(a);
	Py_DECREF(a);
	return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

static long long mod_ffff(long long x)
{
	long long r = x % 0xFFFF;
	return r < 0 ? r + 0xFFFF : r;
}

static PyObject *splice_update(PyObject *self, PyObject *args)
{
	unsigned long utype;
	PyObject *te_head, *fm_heads, *key_bws, *action_head, *p_heads, *p_bws, *spec, *fid;
	PyObject *key = NULL, *vals = NULL, *out = NULL, *dmac = NULL, *smac = NULL, *idle = NULL;
	long long k[5], sip, dip, sport, dport, seq, ack;
	double idle_s;
	(void)self;
	if (!PyArg_ParseTuple(args, "kSO!O!SO!O!OO", &utype, &te_head, &PyTuple_Type, &fm_heads,
			      &PyTuple_Type, &key_bws, &action_head, &PyTuple_Type, &p_heads,
			      &PyTuple_Type, &p_bws, &spec, &fid))
		return NULL;
	key = PyObject_GetAttr(spec, n_key);
	if (!key)
		return NULL;
	if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 5) {
		PyErr_SetString(PyExc_TypeError, "a 5-tuple flow key expected");
		goto done;
	}
	for (int i = 0; i < 5; i++) {
		k[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(key, i));
		if (k[i] == -1 && PyErr_Occurred())
			goto done;
	}
	if (attr_i64(spec, n_sip, &sip) || attr_i64(spec, n_dip, &dip) ||
	    attr_i64(spec, n_sport, &sport) || attr_i64(spec, n_dport, &dport) ||
	    attr_i64(spec, n_seq_delta, &seq) || attr_i64(spec, n_ack_delta, &ack))
		goto done;
	dmac = PyObject_GetAttr(spec, n_dmac);
	smac = PyObject_GetAttr(spec, n_smac);
	idle = PyObject_GetAttr(spec, n_idle);
	if (!dmac || !smac || !idle)
		goto done;
	if (!PyBytes_Check(dmac) || !PyBytes_Check(smac)) {
		PyErr_SetString(PyExc_TypeError, "MAC addresses as bytes expected");
		goto done;
	}
	idle_s = PyFloat_AsDouble(idle);
	if (idle_s == -1.0 && PyErr_Occurred())
		goto done;
	{
		PyObject *port = PyObject_GetAttr(spec, n_port), *dm, *sm;
		long long addr = mod_ffff(sip + dip - k[0] - k[1]);
		long long tcp = mod_ffff(addr + sport + dport - k[3] - k[4]);
		if (!port)
			goto done;
		dm = _PyLong_FromByteArray((const unsigned char *)PyBytes_AS_STRING(dmac),
					   (size_t)PyBytes_GET_SIZE(dmac), 0, 0);
		sm = _PyLong_FromByteArray((const unsigned char *)PyBytes_AS_STRING(smac),
					   (size_t)PyBytes_GET_SIZE(smac), 0, 0);
		if (dm && sm)
			vals = Py_BuildValue("(NNNLLLLLLLLO)", port, dm, sm, sip, dip, sport, dport,
					     seq & 0xFFFFFFFFLL, ack & 0xFFFFFFFFLL, addr, tcp, fid);
		else {
			Py_DECREF(port);
			Py_XDECREF(dm);
			Py_XDECREF(sm);
		}
		if (!vals)
			goto done;
	}
	if (idle_s * 1e9 >= 18446744073709551616.0 || idle_s * 1e9 <= -1.0) {
		PyErr_SetString(PyExc_ValueError, "idle timeout out of range");
		goto done;
	}
	out = encode_update(utype, te_head, fm_heads, key_bws, key, action_head, p_heads, p_bws,
			    vals, (unsigned long long)(idle_s * 1e9));
done:
	Py_XDECREF(key);
	Py_XDECREF(vals);
	Py_XDECREF(dmac);
	Py_XDECREF(smac);
	Py_XDECREF(idle);
	return out;
}

/* ---------------------------------------------------------------------------------------
 * key_flow_id(entry, fid_params): the key and the flow id of a serialized p4.v1.TableEntry
 * (an expired flow entry of an idle-timeout notification), as decode_match_key and
 * FlowEncoder.flow_id read them from the protobuf object:
 *   (key values in field-id order, flow id or None)   or None where the entry is not the
 *   simple shape (a match that is not exact, a repeated field id, a value over 8 bytes,
 *   an unknown field inside a match or the action): the caller reads the object then.
 * fid_params: {action id: the param id of its flow id}.
 */
#define MAXFIELDS 16

/* varint at *p (< end): 0 ok, -1 malformed */
static int rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7F) << shift;
		if (b < 0x80) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* skip a field of wire type wt: 0 ok, -1 malformed or a group */
static int skip(const uint8_t **p, const uint8_t *end, unsigned wt)
{
	uint64_t v;
	switch (wt) {
	case 0:
		return rd_varint(p, end, &v);
	case 1:
		if (end - *p < 8)
			return -1;
		*p += 8;
		return 0;
	case 2:
		if (rd_varint(p, end, &v) || v > (uint64_t)(end - *p))
			return -1;
		*p += v;
		return 0;
	case 5:
		if (end - *p < 4)
			return -1;
		*p += 4;
		return 0;
	}
	return -1;
}

/* length-delimited field at *p: its bounds in [*s, *e) */
static int rd_ld(const uint8_t **p, const uint8_t *end, const uint8_t **s, const uint8_t **e)
{
	uint64_t n;
	if (rd_varint(p, end, &n) || n > (uint64_t)(end - *p))
		return -1;
	*s = *p;
	*e = *p + n;
	*p += n;
	return 0;
}

static int be64(const uint8_t *s, const uint8_t *e, uint64_t *v)
{
	if (e - s > 8)
		return -1;
	uint64_t r = 0;
	for (; s < e; s++)
		r = (r << 8) | *s;
	*v = r;
	return 0;
}

/* FieldMatch{1: field_id, 2: Exact{1: value}}: 1 ok, 0 not simple */
static int field_match(const uint8_t *p, const uint8_t *end, uint64_t *fid, uint64_t *val)
{
	int have_id = 0;
	*val = 0;
	while (p < end) {
		uint64_t tag;
		if (rd_varint(&p, end, &tag))
			return 0;
		if (tag == 0x08) {
			if (rd_varint(&p, end, fid))
				return 0;
			have_id = 1;
		} else if (tag == 0x12) {
			const uint8_t *s, *e;
			if (rd_ld(&p, end, &s, &e))
				return 0;
			while (s < e) { /* Exact */
				uint64_t t2;
				if (rd_varint(&s, e, &t2))
					return 0;
				if (t2 == 0x0A) {
					const uint8_t *vs, *ve;
					if (rd_ld(&s, e, &vs, &ve) || be64(vs, ve, val))
						return 0;
				} else if (skip(&s, e, t2 & 7)) {
					return 0;
				}
			}
		} else {
			return 0; /* ternary, lpm, range, optional, other: not the simple shape */
		}
	}
	return have_id; /* no exact value: 0, as the object reads it */
}

/* The (key, flow id) of the serialized TableEntry [p, end) as key_flow_id answers it; with
 * ``counts`` nonzero, (key, flow id, (packets, bytes) or None) with the entry's
 * counter_data (7: CounterData{1: byte_count, 2: packet_count}). Py_None where the entry is
 * not the simple shape, NULL with an exception set. */
static PyObject *entry_key_fid(const uint8_t *p, const uint8_t *end, PyObject *fid_params,
			       int counts)
{
	uint64_t fids[MAXFIELDS], vals[MAXFIELDS];
	uint64_t packets = 0, bytes = 0;
	int have_counts = 0;
	int nf = 0;
	uint64_t action_id = 0;
	const uint8_t *params[64][2];
	int np = 0, have_action = 0;
	PyObject *result = NULL;
	while (p < end) {
		uint64_t tag;
		if (rd_varint(&p, end, &tag))
			goto slow;
		if (tag == 0x12) { /* match */
			const uint8_t *s, *e;
			if (rd_ld(&p, end, &s, &e) || nf == MAXFIELDS)
				goto slow;
			if (!field_match(s, e, &fids[nf], &vals[nf]))
				goto slow;
			for (int k = 0; k < nf; k++)
				if (fids[k] == fids[nf])
					goto slow;
			nf++;
		} else if (tag == 0x1A) { /* action: TableAction{1: Action{1: id, 4: params}} */
			const uint8_t *s, *e;
			if (rd_ld(&p, end, &s, &e))
				goto slow;
			while (s < e) {
				uint64_t t2;
				if (rd_varint(&s, e, &t2))
					goto slow;
				if (t2 != 0x0A)
					goto slow; /* action profile member / group / set */
				const uint8_t *as, *ae;
				if (rd_ld(&s, e, &as, &ae))
					goto slow;
				have_action = 1;
				while (as < ae) {
					uint64_t t3;
					if (rd_varint(&as, ae, &t3))
						goto slow;
					if (t3 == 0x08) {
						if (rd_varint(&as, ae, &action_id))
							goto slow;
					} else if (t3 == 0x22) {
						if (np == 64 || rd_ld(&as, ae, &params[np][0], &params[np][1]))
							goto slow;
						np++;
					} else {
						goto slow;
					}
				}
			}
		} else if (tag == 0x3A && counts) { /* counter_data */
			const uint8_t *s, *e;
			if (rd_ld(&p, end, &s, &e))
				goto slow;
			have_counts = 1;
			while (s < e) {
				uint64_t t2;
				if (rd_varint(&s, e, &t2))
					goto slow;
				if (t2 == 0x08) {
					if (rd_varint(&s, e, &bytes))
						goto slow;
				} else if (t2 == 0x10) {
					if (rd_varint(&s, e, &packets))
						goto slow;
				} else if (skip(&s, e, t2 & 7)) {
					goto slow;
				}
			}
		} else if (skip(&p, end, tag & 7)) {
			goto slow;
		}
	}
	/* the key in field-id order (insertion sort: a handful of fields) */
	for (int a = 1; a < nf; a++)
		for (int b = a; b > 0 && fids[b - 1] > fids[b]; b--) {
			uint64_t t = fids[b];
			fids[b] = fids[b - 1];
			fids[b - 1] = t;
			t = vals[b];
			vals[b] = vals[b - 1];
			vals[b - 1] = t;
		}
	PyObject *flow_id = Py_None;
	Py_INCREF(flow_id);
	if (have_action) {
		PyObject *aid = PyLong_FromUnsignedLongLong(action_id);
		if (!aid)
			goto error_fid;
		PyObject *want = PyDict_GetItemWithError(fid_params, aid); /* borrowed */
		Py_DECREF(aid);
		if (!want && PyErr_Occurred())
			goto error_fid;
		if (want) {
			uint64_t pid_want = PyLong_AsUnsignedLongLong(want);
			if (PyErr_Occurred())
				goto error_fid;
			for (int k = 0; k < np; k++) { /* the first param with that id, as flow_id */
				const uint8_t *s = params[k][0], *e = params[k][1];
				uint64_t pid = 0, v = 0;
				const uint8_t *vs = NULL, *ve = NULL;
				while (s < e) {
					uint64_t t;
					if (rd_varint(&s, e, &t))
						goto slow_fid;
					if (t == 0x10) {
						if (rd_varint(&s, e, &pid))
							goto slow_fid;
					} else if (t == 0x1A) {
						if (rd_ld(&s, e, &vs, &ve))
							goto slow_fid;
					} else if (skip(&s, e, t & 7)) {
						goto slow_fid;
					}
				}
				if (pid == pid_want) {
					if (vs && be64(vs, ve, &v))
						goto slow_fid;
					Py_DECREF(flow_id);
					flow_id = PyLong_FromUnsignedLongLong(vs ? v : 0);
					if (!flow_id)
						goto error;
					break;
				}
			}
		}
	}
	PyObject *key = PyTuple_New(nf);
	if (!key) {
		Py_DECREF(flow_id);
		goto error;
	}
	for (int k = 0; k < nf; k++) {
		PyObject *v = PyLong_FromUnsignedLongLong(vals[k]);
		if (!v) {
			Py_DECREF(key);
			Py_DECREF(flow_id);
			goto error;
		}
		PyTuple_SET_ITEM(key, k, v);
	}
	if (counts) {
		PyObject *c = have_counts ? Py_BuildValue("(LL)", (long long)packets, (long long)bytes)
					  : Py_NewRef(Py_None);
		if (!c) {
			Py_DECREF(key);
			Py_DECREF(flow_id);
			goto error;
		}
		result = PyTuple_Pack(3, key, flow_id, c);
		Py_DECREF(c);
	} else {
		result = PyTuple_Pack(2, key, flow_id);
	}
	Py_DECREF(key);
	Py_DECREF(flow_id);
	goto out;
slow_fid:
	Py_DECREF(flow_id);
slow:
	result = Py_None;
	Py_INCREF(result);
	goto out;
error_fid:
	Py_DECREF(flow_id);
error:
	result = NULL;
out:
	return result;
}

static PyObject *key_flow_id(PyObject *self, PyObject *args)
{
	Py_buffer view;
	PyObject *fid_params, *result;
	(void)self;
	if (!PyArg_ParseTuple(args, "y*O!", &view, &PyDict_Type, &fid_params))
		return NULL;
	result = entry_key_fid(view.buf, (const uint8_t *)view.buf + view.len, fid_params, 0);
	PyBuffer_Release(&view);
	return result;
}

/* expired_entries(notification, fid_params): every table_entry (1) of a serialized
 * p4.v1.IdleTimeoutNotification as [(key, flow id or None, (packets, bytes) or None)], or
 * None when one of them is not the simple shape (the caller reads the object then). */
static PyObject *expired_entries(PyObject *self, PyObject *args)
{
	Py_buffer view;
	PyObject *fid_params, *out;
	(void)self;
	if (!PyArg_ParseTuple(args, "y*O!", &view, &PyDict_Type, &fid_params))
		return NULL;
	const uint8_t *p = view.buf, *end = p + view.len;
	out = PyList_New(0);
	if (!out)
		goto done;
	while (p < end) {
		uint64_t tag;
		if (rd_varint(&p, end, &tag))
			goto slow;
		if (tag == 0x0A) {
			const uint8_t *s, *e;
			PyObject *one;
			if (rd_ld(&p, end, &s, &e))
				goto slow;
			one = entry_key_fid(s, e, fid_params, 1);
			if (!one) {
				Py_CLEAR(out);
				goto done;
			}
			if (one == Py_None) {
				Py_DECREF(one);
				goto slow;
			}
			if (PyList_Append(out, one) < 0) {
				Py_DECREF(one);
				Py_CLEAR(out);
				goto done;
			}
			Py_DECREF(one);
		} else if (skip(&p, end, tag & 7)) {
			goto slow;
		}
	}
	goto done;
slow:
	Py_DECREF(out);
	out = Py_NewRef(Py_None);
done:
	PyBuffer_Release(&view);
	return out;
}

static PyMethodDef methods[] = {
	{"key_flow_id", key_flow_id, METH_VARARGS,
	 "key_flow_id(table_entry_bytes, fid_params) -> (key, flow id or None) or None: the "
	 "exact key and the flow id of a serialized p4.v1.TableEntry"},
	{"expired_entries", expired_entries, METH_VARARGS,
	 "expired_entries(idle_timeout_notification_bytes, fid_params) -> [(key, flow id or "
	 "None, (packets, bytes) or None)] or None: every entry of a serialized "
	 "p4.v1.IdleTimeoutNotification"},
	{"splice_update", splice_update, METH_VARARGS,
	 "splice_update(utype, te_head, fm_heads, key_bws, action_head, p_heads, p_bws, spec, "
	 "fid) -> bytes: the serialized p4.v1.Update of a FlowSpec's splice entry"},
	{"update", update, METH_VARARGS,
	 "update(utype, te_head, fm_heads, key_bws, key, action_head, p_heads, p_bws, vals, "
	 "idle_ns) -> bytes: a serialized p4.v1.Update of an exact-match table entry"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_p4wire",
	"Flow-table updates in protobuf wire format (the C twin of p4rt.FlowEncoder.insert_raw).",
	-1, methods,
};

PyMODINIT_FUNC PyInit__p4wire(void)
{
#define NAME(v, s) if ((v = PyUnicode_InternFromString(s)) == NULL) return NULL
	NAME(n_key, "key"); NAME(n_port, "port"); NAME(n_dmac, "dmac"); NAME(n_smac, "smac");
	NAME(n_sip, "sip"); NAME(n_dip, "dip"); NAME(n_sport, "sport"); NAME(n_dport, "dport");
	NAME(n_seq_delta, "seq_delta"); NAME(n_ack_delta, "ack_delta");
	NAME(n_idle, "idle_timeout_s");
#undef NAME
	return PyModule_Create(&module);
}
