"""Spawn and own one `p4cs-swxd` process: control socket, CPU port, lifetime.

The daemon gets two inherited `SOCK_SEQPACKET` socketpair ends: the control socket (text
request lines, one reply line per request line, unsolicited `expired ...` messages) and the
CPU port (one frame per message), plus the copy port: an output-only socketpair on which the
pipeline's mirror sessions deliver copies (FIN/RST of spliced flows) without a packet_in header.
All are driven from the asyncio loop with `add_reader`; the
control socket is pipelined (replies come back in request order, matched FIFO). The CPU and
copy ports can be handed to another process (`hand_out`, the direct packet channel) and taken
back. The daemon also gets `channels - 1` spare pairs of CPU and copy sockets (`--spread-fd`):
a controller with N CS-processor workers gets N pairs, and the daemon spreads the punts and
copies over them (`spread`, dataplane/src/spread.c) for as long as it holds them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Callable

from p4cs import paths

LOG = logging.getLogger("p4cs.switch.dpdk.daemon")

# Largest control message we send (the daemon reads messages of at least this size).
MAX_MSG = 64 * 1024
_RECV = 1 << 20
#: Packet channels (CPU + copy socket pairs) a daemon offers by default: one per core, so
#: that a controller may run one CS-processor worker per core (`p4cs controller --workers`).
DEFAULT_CHANNELS = max(1, min(16, os.cpu_count() or 1))

#: Socket buffers of the socketpairs. A Unix socket's sender holds what its peer has not read
#: yet: the daemon's default send buffer holds ~280 small frames, fewer than a burst of
#: FIN/RST copies or punts when many connections start or end at once.
SOCKBUF = 4 << 20
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)     # Linux; beyond net.core.wmem_max


def _big_send_buffer(s: socket.socket) -> None:
    """SOCKBUF of send buffer: forced (CAP_NET_ADMIN), else as far as wmem_max allows."""
    try:
        s.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, SOCKBUF)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKBUF)


def _port_pair() -> tuple[socket.socket, socket.socket]:
    """A CPU or copy port's socketpair: our end non-blocking, the daemon's with a big send
    buffer (punts and copies wait there)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKBUF)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKBUF)
    _big_send_buffer(theirs)
    return ours, theirs


def _discard(s: socket.socket) -> None:
    """Drop what waits on the non-blocking socket ``s``."""
    while True:
        try:
            if not s.recv(1 << 16):
                return
        except OSError:     # nothing waiting (BlockingIOError), or the socket failed
            return


def _spread_off_done(task: asyncio.Future) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, DaemonDead):
        return      # the daemon is gone: nothing is spread any more
    if exc is not None:
        LOG.warning("the daemon did not stop spreading its punts: %s", exc)
    elif task.result() != ["ok"]:
        LOG.warning("the daemon did not stop spreading its punts: %s", task.result())


class DaemonError(Exception):
    """The daemon could not be started, or answered something unexpected."""


class DaemonDead(DaemonError):
    """The daemon is gone (exited, crashed or closed its control socket)."""


def split_messages(lines: list[str], limit: int = MAX_MSG) -> list[list[str]]:
    """Group request lines into messages of at most `limit` bytes each."""
    out: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for ln in lines:
        n = len(ln) + 1
        if cur and size + n > limit:
            out.append(cur)
            cur, size = [], 0
        cur.append(ln)
        size += n
    if cur:
        out.append(cur)
    return out


class SwxDaemon:
    """One running `p4cs-swxd`."""

    def __init__(
        self,
        spec: str | Path,
        ports: dict[int, str],
        cpu_port: int,
        *,
        binary: str | None = None,
        workdir: str | Path | None = None,
        netns: str | None = None,
        learner_timeouts: list[int] | None = None,
        eal: str | None = None,
        log_level: int | None = None,
        extra_args: list[str] | None = None,
        start_timeout: float = 300.0,
        channels: int = DEFAULT_CHANNELS,
        prefault: bool = False,
    ):
        self.spec = str(spec)
        self.ports = dict(ports)
        self.cpu_port = cpu_port
        self.binary = binary or paths.daemon_binary()
        self.netns = netns
        self.learner_timeouts = learner_timeouts
        self.eal = eal
        self.log_level = log_level
        self.extra_args = list(extra_args or [])
        self.prefault = prefault
        self.start_timeout = start_timeout
        if not 1 <= channels <= 16:
            raise ValueError("channels must be 1..16")
        self.channels = channels
        #: the controller's ends of the spare channel pairs (--spread-fd), workers 1..
        self._spread: list[tuple[socket.socket, socket.socket]] = []
        self._unspread: asyncio.Future | None = None    # take_back's `spread off`
        self._own_workdir = workdir is None
        self.workdir = str(workdir) if workdir else ""
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict = {}
        self.dead: str | None = "not started"
        self._ctl: socket.socket | None = None
        self._cpu: socket.socket | None = None
        self._copy: socket.socket | None = None
        self._pending: collections.deque[tuple[asyncio.Future, int]] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._tasks: list[asyncio.Task] = []
        self.on_expired: Callable[[bytes], None] | None = None
        self.on_packet: Callable[[bytes], None] | None = None
        self.on_copy: Callable[[bytes], None] | None = None
        self.on_death: Callable[[str], None] | None = None
        self._handed_out: Callable[[], None] | None = None  # see hand_out
        self.cpu_rx = 0
        self.cpu_tx = 0
        self.cpu_tx_drop = 0
        self.copy_rx = 0

    # -- lifetime -------------------------------------------------------------------------

    def argv(self, ctl_fd: int, cpu_fd: int, copy_fd: int | None = None,
             spread: list[tuple[int, int]] = ()) -> list[str]:
        argv = [
            self.binary,
            "--spec", self.spec,
            "--workdir", self.workdir,
            "--ctl-fd", str(ctl_fd),
            "--cpu-fd", str(cpu_fd),
            "--cpu-port", str(self.cpu_port),
        ]  # fmt: skip
        if copy_fd is not None:
            argv += ["--copy-fd", str(copy_fd)]
        for cpu, copy in spread:
            argv += ["--spread-fd", f"{cpu}:{copy}"]
        for p, spec in sorted(self.ports.items()):
            argv += ["--port", f"{p}={spec}"]
        if self.learner_timeouts:
            argv += ["--learner-timeouts", ",".join(str(t) for t in self.learner_timeouts)]
        if self.prefault:
            argv.append("--prefault")
        if self.eal:
            argv += ["--eal", self.eal]
        if self.log_level is not None:
            argv += ["--log-level", str(self.log_level)]
        headers = paths.dpdk_headers()
        if headers is not None:
            argv += ["--dpdk-headers", str(headers)]
        argv += self.extra_args
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        return argv

    async def start(self) -> dict:
        """Start the daemon, wait until it answers, and return its `info`."""
        loop = asyncio.get_running_loop()
        if not self.workdir:
            base = Path("/run/p4cs")
            try:
                base.mkdir(parents=True, exist_ok=True)
                self.workdir = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)
            except OSError:
                self.workdir = tempfile.mkdtemp(prefix="p4cs-swxd-")
        else:
            Path(self.workdir).mkdir(parents=True, exist_ok=True)
        if not (os.path.isfile(self.binary) or shutil.which(self.binary)):
            raise DaemonError(
                f"data-plane daemon {self.binary!r} not found (build it with `make -C dataplane`, "
                "or point P4CS_SWXD at it)"
            )
        ctl_a, ctl_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl_a.setblocking(False)
        ctl_a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKBUF)
        ctl_a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKBUF)
        (cpu_a, cpu_b), (copy_a, copy_b) = _port_pair(), _port_pair()
        spare = [(_port_pair(), _port_pair()) for _ in range(self.channels - 1)]
        spare_b = [(cb.fileno(), pb.fileno()) for (_ca, cb), (_pa, pb) in spare]
        argv = self.argv(ctl_b.fileno(), cpu_b.fileno(), copy_b.fileno(), spare_b)
        LOG.info("starting data-plane daemon: %s", " ".join(argv))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                pass_fds=(ctl_b.fileno(), cpu_b.fileno(), copy_b.fileno(),
                          *(fd for pair in spare_b for fd in pair)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            for s in (ctl_a, ctl_b, cpu_a, cpu_b, copy_a, copy_b):
                s.close()
            for pair in spare:
                for s in (*pair[0], *pair[1]):
                    s.close()
            raise DaemonError(f"cannot start {self.binary}: {e}") from e
        ctl_b.close()
        cpu_b.close()
        copy_b.close()
        for (ca, cb), (pa, pb) in spare:
            cb.close()
            pb.close()
        self._spread = [(ca, pa) for (ca, _cb), (pa, _pb) in spare]
        self._ctl, self._cpu, self._copy = ctl_a, cpu_a, copy_a
        self.dead = None
        loop.add_reader(ctl_a.fileno(), self._on_ctl_readable)
        loop.add_reader(cpu_a.fileno(), self._on_cpu_readable)
        loop.add_reader(copy_a.fileno(), self._on_copy_readable)
        self._tasks.append(asyncio.create_task(self._relay_output()))
        self._tasks.append(asyncio.create_task(self._watch_exit()))
        try:
            reply = await asyncio.wait_for(self.request(["ping", "info"]), self.start_timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise DaemonError(
                f"data-plane daemon did not answer within {self.start_timeout:.0f} s"
                + self._tail_text()
            ) from None
        except DaemonDead as e:
            await self.stop()
            raise DaemonError(f"data-plane daemon failed to start: {e}" + self._tail_text()) from None
        if not reply[1].startswith("ok "):
            await self.stop()
            raise DaemonError(f"daemon `info` failed: {reply[1]}")
        try:
            self.info = json.loads(reply[1][3:])
        except ValueError as e:
            await self.stop()
            raise DaemonError(f"daemon `info` is not JSON: {e}") from e
        LOG.info("data-plane daemon pid %d ready", self.proc.pid)
        return self.info

    def _tail_text(self) -> str:
        if not self._stderr_tail:
            return ""
        return "\n  daemon output (last lines):\n    " + "\n    ".join(self._stderr_tail)

    async def _relay_output(self) -> None:
        assert self.proc and self.proc.stdout
        dlog = logging.getLogger("p4cs.swxd")
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            self._stderr_tail.append(text)
            dlog.info("%s", text)

    async def _watch_exit(self) -> None:
        assert self.proc
        rc = await self.proc.wait()
        if self.dead is None:
            self._mark_dead(f"data-plane daemon exited with status {rc}")

    def _mark_dead(self, why: str, *, expected: bool = False) -> None:
        if self.dead is not None:
            return
        self.dead = why
        if not expected:
            LOG.error("%s", why)
        loop = asyncio.get_running_loop()
        for s in (self._ctl, self._cpu, self._copy):
            if s is not None:
                try:
                    loop.remove_reader(s.fileno())
                except (ValueError, OSError):
                    pass
        end, self._handed_out = self._handed_out, None
        if end is not None:
            end()
        while self._pending:
            fut, _n = self._pending.popleft()
            if not fut.done():
                fut.set_exception(DaemonDead(why))
        if self.on_death and not expected:
            self.on_death(why)

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the control socket (the daemon exits), then TERM, then KILL."""
        was_alive = self.dead is None
        self._mark_dead("data-plane daemon stopped", expected=True)
        for s in (self._ctl, self._cpu, self._copy, *(x for p in self._spread for x in p)):
            if s is not None:
                s.close()
        self._ctl = self._cpu = self._copy = None
        self._spread = []
        proc = self.proc
        if proc is not None and proc.returncode is None:
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    try:
                        proc.send_signal(sig)
                    except ProcessLookupError:
                        break
                try:
                    await asyncio.wait_for(proc.wait(), timeout)
                    break
                except asyncio.TimeoutError:
                    continue
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        if self._own_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if was_alive:
            LOG.info("data-plane daemon stopped")

    # -- control socket -------------------------------------------------------------------

    async def request(self, lines: list[str]) -> list[str]:
        """Send request lines (split into messages as needed); return one reply line each."""
        if self.dead is not None:
            raise DaemonDead(self.dead)
        msgs = split_messages(lines)
        futs = []
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            for m in msgs:
                data = "\n".join(m).encode()
                fut = loop.create_future()
                self._pending.append((fut, len(m)))
                futs.append(fut)
                await self._send(data)
        out: list[str] = []
        for f in futs:
            out.extend(await f)
        return out

    async def _send(self, data: bytes) -> None:
        sock = self._ctl
        if sock is None or self.dead is not None:
            raise DaemonDead(self.dead or "not started")
        while True:
            try:
                sock.send(data)
                return
            except BlockingIOError:
                fut = asyncio.get_running_loop().create_future()
                loop = asyncio.get_running_loop()
                loop.add_writer(sock.fileno(), lambda: fut.done() or fut.set_result(None))
                try:
                    await fut
                finally:
                    loop.remove_writer(sock.fileno())
            except OSError as e:
                self._mark_dead(f"control socket send failed: {e}")
                raise DaemonDead(self.dead or str(e)) from e

    def _on_ctl_readable(self) -> None:
        sock = self._ctl
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_RECV)
            except BlockingIOError:
                return
            except OSError as e:
                self._mark_dead(f"control socket failed: {e}")
                return
            if not data:
                self._mark_dead("data-plane daemon closed its control socket")
                return
            if data.startswith(b"expired"):
                # The copies the daemon sent before this report go first: a FIN/RST copy must
                # reach the controller before the expiry its hit caused. While the copy port is
                # handed out its reader does that (controller.packetchan.flush_copies): a drain
                # here took its copies and sent them on the P4Runtime stream.
                if self._handed_out is None:
                    self._drain(self._copy, "copy", self.on_copy, limit=None)
                if self.on_expired:
                    try:
                        self.on_expired(data)
                    except Exception:  # noqa: BLE001 - never let a callback kill the reader
                        LOG.exception("expired-notification handler failed")
                continue
            text = data.decode(errors="replace")
            if not self._pending:
                LOG.warning("unsolicited control message from the daemon: %.200s", text)
                continue
            fut, n = self._pending.popleft()
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            if len(lines) != n:
                exc = DaemonError(f"daemon answered {len(lines)} lines to {n} requests")
                if not fut.done():
                    fut.set_exception(exc)
                continue
            if not fut.done():
                fut.set_result(lines)

    async def stats(self) -> dict:
        """The daemon's `stats` (docs/interfaces.md §1): ``ports`` (per port: port, type, name,
        rx/tx packets and bytes, rx_drops, rx_errors, tx_drops, csum_completed, gso_frames,
        gso_segments), ``drop_pkts``, ``learners`` (hit, miss, learn, entries, ...) and
        ``tables`` (hit, miss)."""
        reply = (await self.request(["stats"]))[0]
        if not reply.startswith("ok "):
            raise DaemonError(f"daemon `stats` failed: {reply}")
        try:
            st = json.loads(reply[3:])
        except ValueError as e:
            raise DaemonError(f"daemon `stats` is not the expected JSON: {e}") from e
        if not isinstance(st, dict):
            raise DaemonError("daemon `stats` is not the expected JSON: not an object")
        return st

    async def port_stats(self) -> dict[int, dict]:
        """The per-port counters of :meth:`stats`, by port number."""
        st = await self.stats()
        try:
            return {p["port"]: p for p in st["ports"]}
        except (KeyError, TypeError) as e:
            raise DaemonError(f"daemon `stats` is not the expected JSON: {e}") from e

    # -- CPU port -------------------------------------------------------------------------

    def _on_cpu_readable(self) -> None:
        self._drain(self._cpu, "CPU", self.on_packet)

    def _on_copy_readable(self) -> None:
        self._drain(self._copy, "copy", self.on_copy)

    def _drain(self, sock: socket.socket | None, what: str, cb: Callable[[bytes], None] | None,
               limit: int | None = 256) -> None:
        """Up to `limit` messages of `sock` (bounded by default, so that one busy port does not
        starve the loop; None: all that are queued)."""
        if sock is None:
            return
        n = 0
        while limit is None or n < limit:
            n += 1
            try:
                frame = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                LOG.error("%s port receive failed: %s", what, e)
                return
            if not frame:
                return
            if sock is self._cpu:
                self.cpu_rx += 1
            else:
                self.copy_rx += 1
            if cb is not None:
                try:
                    cb(frame)
                except Exception:  # noqa: BLE001
                    LOG.exception("%s handler failed", "packet-in" if what == "CPU" else "copy")

    def hand_out(self, on_end: Callable[[], None],
                 workers: int = 1) -> list[tuple[socket.socket, socket.socket]]:
        """Stop reading the CPU and copy ports: another process reads them now (the direct
        packet channel). Returns the (CPU, copy) socket pairs of ``workers`` workers (the
        ports' own first, then spare pairs emptied of what an earlier holder left), to be
        passed on; `on_end` is called if the daemon stops or dies before `take_back`. Sending
        on the CPU port goes on. With more than one worker the caller sends the daemon its
        `spread` line."""
        if self.dead is not None or self._cpu is None or self._copy is None:
            raise DaemonDead(self.dead or "not started")
        if not 1 <= workers <= 1 + len(self._spread):
            raise ValueError(f"{workers} workers: this data plane has "
                             f"{1 + len(self._spread)} packet channels (--packet-channels)")
        extra = self._spread[:workers - 1]
        for pair in extra:
            for s in pair:
                _discard(s)
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._cpu.fileno())
        loop.remove_reader(self._copy.fileno())
        self._handed_out = on_end
        return [(self._cpu, self._copy)] + extra

    def take_back(self) -> None:
        """Read the CPU and copy ports again (after `hand_out`); the punts are no longer
        spread."""
        self._handed_out = None
        if self.dead is not None or self._cpu is None or self._copy is None:
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(self._cpu.fileno(), self._on_cpu_readable)
        loop.add_reader(self._copy.fileno(), self._on_copy_readable)
        if self._spread:
            task = self._unspread = asyncio.ensure_future(self.request(["spread off"]))
            task.add_done_callback(_spread_off_done)

    async def unspread_sent(self) -> None:
        """Wait for the `spread off` of the last `take_back` (a `spread` line sent now must
        come after it)."""
        task = self._unspread
        if task is not None and not task.done():
            await asyncio.wait([task])

    def send_packet(self, frame: bytes) -> bool:
        """Send one frame into the pipeline's CPU port; False when the socket is full."""
        sock = self._cpu
        if sock is None or self.dead is not None:
            raise DaemonDead(self.dead or "not started")
        try:
            sock.send(frame)
        except BlockingIOError:
            self.cpu_tx_drop += 1
            return False
        self.cpu_tx += 1
        return True
