/* Many frames per system call on the controller's packet channel: recvmmsg / sendmmsg.
 *
 * recv_many(fd, max_frames, bufsize) -> list[bytes]
 *     The frames waiting on the (non-blocking) socket fd, up to max_frames, each cut at
 *     bufsize bytes, read with as few recvmmsg calls as the kernel allows (one per batch).
 *     An empty list: nothing waiting. A b"" element: the peer closed (EOF), nothing after it.
 *     Other errors raise OSError.
 * send_many(fd, frames) -> int
 *     Sends the frames (bytes each, one datagram / seqpacket message each) with sendmmsg,
 *     MSG_DONTWAIT; the number sent (fewer than len(frames) when the socket is full: the
 *     caller waits and sends the rest). Other errors raise OSError.
 *
 * packetchan.PacketPath uses them where the package was built with this extension and falls
 * back to recv / send of the socket object otherwise (the same frames, one call each).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MAX_BATCH 1024

static char *rbuf;
static size_t rbuf_size;

static PyObject *recv_many(PyObject *self, PyObject *args)
{
	int fd;
	Py_ssize_t max, bufsize;
	(void)self;
	if (!PyArg_ParseTuple(args, "inn", &fd, &max, &bufsize))
		return NULL;
	if (max < 1 || max > MAX_BATCH || bufsize < 1 || bufsize > (1 << 20)) {
		PyErr_SetString(PyExc_ValueError, "max_frames must be 1..1024, bufsize 1..1 MiB");
		return NULL;
	}
	size_t need = (size_t)max * (size_t)bufsize;
	if (rbuf_size < need) {
		char *b = realloc(rbuf, need);
		if (b == NULL)
			return PyErr_NoMemory();
		rbuf = b;
		rbuf_size = need;
	}
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	PyObject *out = PyList_New(0);
	if (out == NULL)
		return NULL;
	Py_ssize_t got = 0;
	while (got < max) {
		int want = (int)(max - got);
		memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)want);
		for (int i = 0; i < want; i++) {
			iov[i].iov_base = rbuf + (size_t)i * (size_t)bufsize;
			iov[i].iov_len = (size_t)bufsize;
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int r;
		Py_BEGIN_ALLOW_THREADS
		r = recvmmsg(fd, msgs, (unsigned)want, MSG_DONTWAIT, NULL);
		Py_END_ALLOW_THREADS
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			if (got > 0)
				break;          /* the error comes again at the next call */
			Py_DECREF(out);
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		if (r == 0)
			break;
		for (int i = 0; i < r; i++) {
			PyObject *b = PyBytes_FromStringAndSize(iov[i].iov_base,
								(Py_ssize_t)msgs[i].msg_len);
			if (b == NULL || PyList_Append(out, b) < 0) {
				Py_XDECREF(b);
				Py_DECREF(out);
				return NULL;
			}
			Py_DECREF(b);
			if (msgs[i].msg_len == 0)
				return out;     /* EOF: nothing follows */
		}
		got += r;
		if (r < want)
			break;              /* the queue is empty */
	}
	return out;
}

static PyObject *send_many(PyObject *self, PyObject *args)
{
	int fd;
	PyObject *seq;
	(void)self;
	if (!PyArg_ParseTuple(args, "iO", &fd, &seq))
		return NULL;
	PyObject *fast = PySequence_Fast(seq, "frames must be a sequence of bytes");
	if (fast == NULL)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
	Py_ssize_t sent = 0;
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	while (sent < n) {
		int k = (int)((n - sent) < MAX_BATCH ? (n - sent) : MAX_BATCH);
		memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)k);
		for (int i = 0; i < k; i++) {
			PyObject *b = PySequence_Fast_GET_ITEM(fast, sent + i);
			if (!PyBytes_Check(b)) {
				Py_DECREF(fast);
				PyErr_SetString(PyExc_TypeError, "frames must be bytes");
				return NULL;
			}
			iov[i].iov_base = PyBytes_AS_STRING(b);
			iov[i].iov_len = (size_t)PyBytes_GET_SIZE(b);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int r = sendmmsg(fd, msgs, (unsigned)k, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			if (sent > 0)
				break;          /* the error comes again at the next call */
			Py_DECREF(fast);
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		sent += r;
		if (r < k)
			break;
	}
	Py_DECREF(fast);
	return PyLong_FromSsize_t(sent);
}

static PyMethodDef methods[] = {
	{"recv_many", recv_many, METH_VARARGS,
	 "recv_many(fd, max_frames, bufsize) -> list[bytes]: frames waiting on fd (recvmmsg)"},
	{"send_many", send_many, METH_VARARGS,
	 "send_many(fd, frames) -> int: frames sent with sendmmsg before the socket was full"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_mmsg",
	"Many frames per system call on the controller's packet channel.", -1, methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mmsg(void)
{
	return PyModule_Create(&module);
}
