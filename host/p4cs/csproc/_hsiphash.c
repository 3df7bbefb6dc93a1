/* SPDX-License-Identifier: Apache-2.0
 *
 * HalfSipHash-2-4 with a 32-bit output (J.-P. Aumasson, the reference implementation's
 * `halfsiphash` with outlen 4), for the SYN cookies of p4cs.csproc.cookies.  The module
 * p4cs.csproc.hsiphash holds the same function in Python and uses this one when it is built;
 * the tests check both against the reference vectors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ROTL(x, b) (uint32_t)(((x) << (b)) | ((x) >> (32 - (b))))
#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1; v1 = ROTL(v1, 5); v1 ^= v0; v0 = ROTL(v0, 16);           \
		v2 += v3; v3 = ROTL(v3, 8); v3 ^= v2;                              \
		v0 += v3; v3 = ROTL(v3, 7); v3 ^= v0;                              \
		v2 += v1; v1 = ROTL(v1, 13); v1 ^= v2; v2 = ROTL(v2, 16);          \
	} while (0)

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t hsip32(const uint8_t *k, const uint8_t *in, size_t n)
{
	uint32_t k0 = le32(k), k1 = le32(k + 4);
	uint32_t v0 = k0, v1 = k1, v2 = 0x6c796765 ^ k0, v3 = 0x74656462 ^ k1;
	const uint8_t *end = in + n - (n % 4);
	uint32_t b = (uint32_t)n << 24, m;
	int i;

	for (; in != end; in += 4) {
		m = le32(in);
		v3 ^= m;
		for (i = 0; i < 2; i++)
			SIPROUND;
		v0 ^= m;
	}
	switch (n & 3) {
	case 3: b |= (uint32_t)in[2] << 16; /* fall through */
	case 2: b |= (uint32_t)in[1] << 8;  /* fall through */
	case 1: b |= (uint32_t)in[0]; break;
	case 0: break;
	}
	v3 ^= b;
	for (i = 0; i < 2; i++)
		SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	for (i = 0; i < 4; i++)
		SIPROUND;
	return v1 ^ v3;
}

static PyObject *halfsiphash(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_buffer key, data;
	uint32_t h;

	(void)self;
	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "halfsiphash(key, data) takes 2 arguments");
		return NULL;
	}
	if (PyObject_GetBuffer(args[0], &key, PyBUF_SIMPLE) < 0)
		return NULL;
	if (key.len != 8) {
		PyBuffer_Release(&key);
		PyErr_SetString(PyExc_ValueError, "halfsiphash key must be 8 bytes");
		return NULL;
	}
	if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
		PyBuffer_Release(&key);
		return NULL;
	}
	h = hsip32(key.buf, data.buf, (size_t)data.len);
	PyBuffer_Release(&data);
	PyBuffer_Release(&key);
	return PyLong_FromUnsignedLong(h);
}

static PyMethodDef methods[] = {
	{"halfsiphash", (PyCFunction)(void (*)(void))halfsiphash, METH_FASTCALL,
	 "halfsiphash(key: 8 bytes, data: bytes) -> int: HalfSipHash-2-4, 32-bit output."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hsiphash", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hsiphash(void)
{
	return PyModule_Create(&module);
}
