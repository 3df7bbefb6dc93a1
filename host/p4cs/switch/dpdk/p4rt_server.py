"""P4Runtime gRPC server for the embedded DPDK SWX target.

One asyncio process serves P4Runtime (grpc.aio, finsy's generated protos) and drives one
`p4cs-swxd` data-plane daemon over its control socket and CPU port.

Design points, for readers who know other P4Runtime servers:

* The server keeps a shadow of every table entry it wrote, keyed by (table id, canonical key).
  Entries are stored as their serialized `TableEntry` bytes, so a wildcard Read of a million
  entries is a byte-string concatenation, not a million protobuf builds: the Read RPC
  serializes its responses itself (see `_raw_or_message`).
* A WriteRequest becomes one daemon message (split at 64 KiB); every update gets its own
  reply line, so CONTINUE_ON_ERROR batches report per-update `p4.v1.Error`s (gRPC UNKNOWN with
  the details in `grpc-status-details-bin`, as the specification asks).
* Tables the daemon reports as learners (the PNA add-on-miss flow table) are written with
  `learner add/mod/del`: O(1) per entry whatever the table occupancy. Idle timeouts pick the
  nearest learner timeout profile; the target removes an expired entry itself and then the
  server sends an IdleTimeoutNotification (this differs from the specification, where the entry
  stays until the controller deletes it; see docs/targets.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import grpc
from finsy.proto import p4i, p4r, rpc_code, rpc_status
from google.protobuf import any_pb2, text_format
from google.protobuf.message import DecodeError

from .daemon import DaemonDead, DaemonError, SwxDaemon
from .defines import REASON_FLOW_END
from .schema import Schema, SchemaError, TableInfo, canonical_bytes
from .wire import FlowFastPath, Slow, decode_update, update_slices

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

P4RUNTIME_API_VERSION = "1.5.0"
NO_PIPELINE = "No forwarding pipeline config set for this device"

# Read responses are cut at about this many bytes (clients default to a 4 MiB receive limit).
READ_CHUNK_BYTES = 512 * 1024
# Register/counter cells fetched per daemon `reg read` line.
REG_CHUNK = 1024
# PacketIn messages queued per stream before we drop (a slow controller must not grow memory).
STREAM_QUEUE_MAX = 8192

SC = grpc.StatusCode
_INSERT, _MODIFY, _DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE
_ERRNO_CODE = {
    "EEXIST": SC.ALREADY_EXISTS,
    "ENOENT": SC.NOT_FOUND,
    "ENOSPC": SC.RESOURCE_EXHAUSTED,
    "ENOMEM": SC.RESOURCE_EXHAUSTED,
    "E2BIG": SC.RESOURCE_EXHAUSTED,
    "EINVAL": SC.INVALID_ARGUMENT,
    "ERANGE": SC.OUT_OF_RANGE,
    "EPERM": SC.PERMISSION_DENIED,
    "ENOTSUP": SC.UNIMPLEMENTED,
    "EOPNOTSUPP": SC.UNIMPLEMENTED,
    "EBUSY": SC.UNAVAILABLE,
    "EAGAIN": SC.UNAVAILABLE,
}


class P4RTError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _u128(v: p4r.Uint128) -> int:
    return (v.high << 64) | v.low


def _to_u128(x: int) -> p4r.Uint128:
    return p4r.Uint128(high=x >> 64, low=x & 0xFFFFFFFFFFFFFFFF)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (tag byte already includes the wire type)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


# ReadResponse.entities = 1 (tag 0x0a); Entity.table_entry = 2 (0x12), counter_entry = 7
# (0x3a), register_entry = 11 (0x5a).
_T_ENTITIES, _T_TABLE, _T_COUNTER, _T_REGISTER = 0x0A, 0x12, 0x3A, 0x5A


def _raw_or_message(m: Any) -> bytes:
    return m if isinstance(m, (bytes, bytearray)) else m.SerializeToString()


def _code_of(errno_name: str) -> grpc.StatusCode:
    return _ERRNO_CODE.get(errno_name, SC.UNKNOWN)


def _daemon_error(reply: str) -> tuple[grpc.StatusCode, str]:
    # "err EEXIST key already present"
    parts = reply.split(" ", 2)
    errno_name = parts[1] if len(parts) > 1 else "EIO"
    text = parts[2] if len(parts) > 2 else reply
    return _code_of(errno_name), f"{text} ({errno_name})"


def _int_of(value: bytes, bitwidth: int, what: str) -> int:
    if not value:
        raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: empty byte string")
    x = int.from_bytes(value, "big")
    if x >> bitwidth:
        raise P4RTError(
            SC.INVALID_ARGUMENT,
            f"{what}: value 0x{value.hex()} does not fit in {bitwidth} bits",
        )
    return x


def cookie_of(p4info: p4i.P4Info, device_config: bytes) -> int:
    """The pipeline cookie finsy computes for (p4info, p4blob): a controller using finsy with
    the same files sees a matching cookie and does not push the pipeline again."""
    h = hashlib.sha256()
    h.update(p4info.SerializeToString(deterministic=True))
    h.update(device_config)
    return int.from_bytes(h.digest()[:8], "big")


# --------------------------------------------------------------------------------------
# Pipeline state
# --------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    p4info: p4i.P4Info
    device_config: bytes
    cookie: int | None
    schema: Schema
    daemon: SwxDaemon
    shadow: dict[int, dict[tuple, bytes]] = field(default_factory=dict)
    defaults: dict[int, bytes] = field(default_factory=dict)
    fast: FlowFastPath | None = None
    # clone session id -> serialized CloneSessionEntry (the daemon's mirroring sessions)
    clone_sessions: dict[int, bytes] = field(default_factory=dict)


@dataclass
class TargetConfig:
    """How to start the data-plane daemon for a pipeline."""

    ports: dict[int, str]  # P4 port -> daemon port spec ("afpacket:veth0", "tap:tap0", ...)
    cpu_port: int
    binary: str | None = None
    netns: str | None = None
    workdir: str | None = None
    learner_timeouts: list[int] | None = None
    eal: str | None = None
    log_level: int | None = None
    start_timeout: float = 300.0

    def make_daemon(self, spec_path: str) -> SwxDaemon:
        return SwxDaemon(
            spec_path,
            self.ports,
            self.cpu_port,
            binary=self.binary,
            workdir=self.workdir,
            netns=self.netns,
            learner_timeouts=self.learner_timeouts,
            eal=self.eal,
            log_level=self.log_level,
            start_timeout=self.start_timeout,
        )


# --------------------------------------------------------------------------------------
# Arbitration
# --------------------------------------------------------------------------------------


class StreamConn:
    __slots__ = ("queue", "role", "election_id", "peer", "arbitrated", "dropped")

    def __init__(self, peer: str):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.role: str = ""
        self.election_id: int | None = None
        self.peer = peer
        self.arbitrated = False
        self.dropped = 0

    def put(self, msg: Any) -> None:
        if self.queue.qsize() >= STREAM_QUEUE_MAX:
            self.dropped += 1
            return
        self.queue.put_nowait(msg)


@dataclass
class RoleState:
    highest: int | None = None  # highest election id ever seen for this role
    conns: dict[StreamConn, int | None] = field(default_factory=dict)
    primary: StreamConn | None = None


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class P4RuntimeServer:
    """P4Runtime service for one device backed by one `p4cs-swxd`."""

    def __init__(self, target: TargetConfig, device_id: int = 1):
        self.target = target
        self.device_id = device_id
        self.pipe: Pipeline | None = None
        self.saved: tuple[p4i.P4Info, bytes, int | None] | None = None
        self.roles: dict[str, RoleState] = {}
        self._write_lock = asyncio.Lock()
        self._pipe_lock = asyncio.Lock()
        self._server: grpc.aio.Server | None = None
        self._state_dir: str | None = None
        self.dead_reason: str | None = None
        self.counters = {"packet_in": 0, "packet_in_dropped": 0, "packet_out": 0}

    # -- lifetime -------------------------------------------------------------------------

    async def start(self, address: str) -> int:
        """Listen on `address` ("host:port"; port 0 picks one); return the port."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 256 << 20),
                ("grpc.max_send_message_length", 256 << 20),
                ("grpc.so_reuseport", 0),  # a second server must not share the port
            ]
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self._server = server
        LOG.info("P4Runtime server listening on %s (device id %d)", address, self.device_id)
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None
        if self.pipe is not None:
            await self.pipe.daemon.stop()
            self.pipe = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def _handlers(self) -> grpc.GenericRpcHandler:
        h = {
            "Write": grpc.unary_unary_rpc_method_handler(
                self.Write,
                request_deserializer=None,  # raw bytes: see wire.py
                response_serializer=_raw_or_message,
            ),
            "Read": grpc.unary_stream_rpc_method_handler(
                self.Read,
                request_deserializer=p4r.ReadRequest.FromString,
                response_serializer=_raw_or_message,
            ),
            "SetForwardingPipelineConfig": grpc.unary_unary_rpc_method_handler(
                self.SetForwardingPipelineConfig,
                request_deserializer=p4r.SetForwardingPipelineConfigRequest.FromString,
                response_serializer=_raw_or_message,
            ),
            "GetForwardingPipelineConfig": grpc.unary_unary_rpc_method_handler(
                self.GetForwardingPipelineConfig,
                request_deserializer=p4r.GetForwardingPipelineConfigRequest.FromString,
                response_serializer=_raw_or_message,
            ),
            "StreamChannel": grpc.stream_stream_rpc_method_handler(
                self.StreamChannel,
                request_deserializer=p4r.StreamMessageRequest.FromString,
                response_serializer=_raw_or_message,
            ),
            "Capabilities": grpc.unary_unary_rpc_method_handler(
                self.Capabilities,
                request_deserializer=p4r.CapabilitiesRequest.FromString,
                response_serializer=_raw_or_message,
            ),
        }
        return grpc.method_handlers_generic_handler("p4.v1.P4Runtime", h)

    # -- pipeline loading -----------------------------------------------------------------

    def _spec_file(self, device_config: bytes) -> str:
        if self._state_dir is None:
            base = self.target.workdir or None
            import tempfile

            self._state_dir = tempfile.mkdtemp(prefix="p4cs-p4rt-", dir=base)
        digest = hashlib.sha256(device_config).hexdigest()[:16]
        path = os.path.join(self._state_dir, f"pipeline-{digest}.spec")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(device_config)
        return path

    async def load_pipeline(
        self, p4info: p4i.P4Info, device_config: bytes, cookie: int | None, *, spec_path: str | None = None
    ) -> None:
        """Replace the running pipeline (restarts the daemon). Raises P4RTError."""
        async with self._pipe_lock:
            old = self.pipe
            if old is not None:
                LOG.info("replacing the forwarding pipeline: stopping the data-plane daemon")
                old.daemon.on_death = None
                await old.daemon.stop()
                self.pipe = None
            try:
                self.pipe = await self._start_pipeline(p4info, device_config, cookie, spec_path)
            except P4RTError:
                if old is not None:
                    LOG.warning("new pipeline failed; restarting the previous one")
                    try:
                        self.pipe = await self._start_pipeline(
                            old.p4info, old.device_config, old.cookie, None
                        )
                    except P4RTError as e2:
                        LOG.error("previous pipeline failed to restart too: %s", e2.message)
                raise

    async def _start_pipeline(
        self, p4info: p4i.P4Info, device_config: bytes, cookie: int | None, spec_path: str | None
    ) -> Pipeline:
        path = spec_path or self._spec_file(device_config)
        daemon = self.target.make_daemon(path)
        try:
            info = await daemon.start()
        except DaemonError as e:
            raise P4RTError(SC.INVALID_ARGUMENT, f"data-plane daemon rejected the pipeline: {e}")
        try:
            schema = Schema(p4info, info)
        except SchemaError as e:
            await daemon.stop()
            raise P4RTError(SC.INVALID_ARGUMENT, str(e)) from None
        pipe = Pipeline(p4info, device_config, cookie, schema, daemon)
        for t in schema.tables:
            pipe.shadow[t] = {}
        pipe.fast = FlowFastPath(schema.tables)
        daemon.on_expired = self._on_expired
        daemon.on_packet = self._on_packet
        daemon.on_copy = self._on_copy
        daemon.on_death = self._on_death
        self.dead_reason = None
        LOG.info(
            "pipeline loaded: %d tables (%d learners), %d counters, %d registers",
            len(schema.tables),
            sum(1 for t in schema.tables.values() if t.learner),
            len(schema.counters),
            len(schema.registers),
        )
        return pipe

    def _on_death(self, why: str) -> None:
        self.dead_reason = why
        LOG.error("data-plane daemon died: %s; P4Runtime calls will fail with UNAVAILABLE", why)

    # -- common checks --------------------------------------------------------------------

    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RTError(
                SC.NOT_FOUND, f"unknown device id {device_id} (this server is device {self.device_id})"
            )

    def _pipeline(self) -> Pipeline:
        pipe = self.pipe
        if pipe is None:
            raise P4RTError(SC.FAILED_PRECONDITION, NO_PIPELINE)
        if pipe.daemon.dead is not None:
            raise P4RTError(SC.UNAVAILABLE, f"data plane unavailable: {pipe.daemon.dead}")
        return pipe

    def _check_primary(self, role: str, election: p4r.Uint128 | None, has_eid: bool) -> None:
        st = self.roles.get(role)
        if st is None or st.primary is None:
            raise P4RTError(
                SC.PERMISSION_DENIED, f"not primary: role {role or '<default>'!r} has no primary client"
            )
        if not has_eid or _u128(election) != st.primary.election_id:
            got = _u128(election) if has_eid else "unset"
            raise P4RTError(
                SC.PERMISSION_DENIED,
                f"not primary: election id {got} is not the primary's for role {role or '<default>'!r}",
            )

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, e: Exception) -> None:
        if isinstance(e, P4RTError):
            await context.abort(e.code, e.message)
        if isinstance(e, DaemonDead):
            await context.abort(SC.UNAVAILABLE, f"data plane unavailable: {e}")
        LOG.exception("internal error")
        await context.abort(SC.INTERNAL, f"internal error: {type(e).__name__}: {e}")

    # -- Capabilities ---------------------------------------------------------------------

    async def Capabilities(self, request, context):
        return p4r.CapabilitiesResponse(p4runtime_api_version=P4RUNTIME_API_VERSION)

    # -- pipeline config ------------------------------------------------------------------

    async def SetForwardingPipelineConfig(self, request, context):
        try:
            return await self._set_pipeline(request)
        except (P4RTError, DaemonError) as e:
            await self._abort(context, e)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def _set_pipeline(self, request: p4r.SetForwardingPipelineConfigRequest):
        self._check_device(request.device_id)
        self._check_primary(request.role, request.election_id, request.HasField("election_id"))
        A = p4r.SetForwardingPipelineConfigRequest
        action = request.action
        if action == A.UNSPECIFIED:
            raise P4RTError(SC.INVALID_ARGUMENT, "SetForwardingPipelineConfig: action is UNSPECIFIED")
        if action == A.COMMIT:
            if self.saved is None:
                raise P4RTError(SC.FAILED_PRECONDITION, "COMMIT: no saved pipeline config (VERIFY_AND_SAVE first)")
            p4info, dev, cookie = self.saved
            await self.load_pipeline(p4info, dev, cookie)
            self.saved = None
            return p4r.SetForwardingPipelineConfigResponse()
        if not request.HasField("config"):
            raise P4RTError(SC.INVALID_ARGUMENT, "SetForwardingPipelineConfig: config is missing")
        cfg = request.config
        if not cfg.HasField("p4info") or not cfg.p4info.tables and not cfg.p4info.actions:
            raise P4RTError(SC.INVALID_ARGUMENT, "SetForwardingPipelineConfig: config.p4info is empty")
        dev = cfg.p4_device_config
        if not dev:
            # Convenience for tools that always send a device config file of their own: no
            # device config means "keep the running SWX spec, only change the P4Info".
            if self.pipe is None:
                raise P4RTError(
                    SC.INVALID_ARGUMENT,
                    "p4_device_config is empty and no pipeline is running: send the SWX .spec text",
                )
            dev = self.pipe.device_config
        else:
            try:
                dev.decode("utf-8")
            except UnicodeDecodeError:
                raise P4RTError(
                    SC.INVALID_ARGUMENT,
                    "p4_device_config must be the text of a DPDK SWX pipeline .spec (p4c-dpdk output)",
                ) from None
        cookie = cfg.cookie.cookie if cfg.HasField("cookie") else None
        p4info = p4i.P4Info()
        p4info.CopyFrom(cfg.p4info)
        if action == A.VERIFY:
            return p4r.SetForwardingPipelineConfigResponse()
        if action == A.VERIFY_AND_SAVE:
            self.saved = (p4info, dev, cookie)
            return p4r.SetForwardingPipelineConfigResponse()
        # VERIFY_AND_COMMIT, RECONCILE_AND_COMMIT (treated as a full replace: all state is lost)
        await self.load_pipeline(p4info, dev, cookie)
        return p4r.SetForwardingPipelineConfigResponse()

    async def GetForwardingPipelineConfig(self, request, context):
        try:
            self._check_device(request.device_id)
            pipe = self.pipe
            if pipe is None:
                raise P4RTError(SC.FAILED_PRECONDITION, NO_PIPELINE)
            R = p4r.GetForwardingPipelineConfigRequest
            cfg = p4r.ForwardingPipelineConfig()
            rt = request.response_type
            if rt in (R.ALL, R.P4INFO_AND_COOKIE):
                cfg.p4info.CopyFrom(pipe.p4info)
            if rt in (R.ALL, R.DEVICE_CONFIG_AND_COOKIE):
                cfg.p4_device_config = pipe.device_config
            if pipe.cookie is not None:
                cfg.cookie.cookie = pipe.cookie
            return p4r.GetForwardingPipelineConfigResponse(config=cfg)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    # -- Write ----------------------------------------------------------------------------

    async def Write(self, raw, context):
        try:
            try:
                request = p4r.WriteRequest.FromString(raw)
            except DecodeError as e:
                raise P4RTError(SC.INVALID_ARGUMENT, f"malformed WriteRequest: {e}") from None
            self._check_device(request.device_id)
            self._check_primary(request.role, request.election_id, request.HasField("election_id"))
            pipe = self._pipeline()
            if request.atomicity != p4r.WriteRequest.CONTINUE_ON_ERROR:
                raise P4RTError(
                    SC.UNIMPLEMENTED, "only CONTINUE_ON_ERROR atomicity is supported by this target"
                )
            errors = await self._write(pipe, request, raw)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)
            return None
        if errors is None:
            return p4r.WriteResponse()
        status = rpc_status.Status(code=rpc_code.UNKNOWN, message="Write failure")
        n_failed = 0
        for err in errors:
            pe = p4r.Error()
            if err is None:
                pe.canonical_code = rpc_code.OK
            else:
                n_failed += 1
                pe.canonical_code = err[0].value[0]
                pe.message = err[1]
            a = any_pb2.Any()
            a.Pack(pe)
            status.details.append(a)
        status.message = f"{n_failed} of {len(errors)} updates failed"
        await context.abort(
            SC.UNKNOWN,
            status.message,
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )

    async def _write(self, pipe: Pipeline, request: p4r.WriteRequest, raw: bytes | None) -> list | None:
        """Apply updates; None when all succeeded, else one (code, message) or None each.

        Planning runs under the write lock. A batch that touches only learner tables (whose
        existence checks the daemon makes) releases it as soon as its message is queued, so
        the next batch is planned while the daemon applies this one; a batch that touches a
        regular table (existence decided here, from the shadow) keeps it until applied.
        """
        lock = self._write_lock
        await lock.acquire()
        held = True
        try:
            updates = request.updates
            n = len(updates)
            results: list[tuple[grpc.StatusCode, str] | None] = [None] * n
            failed = False
            lines: list[str] = []
            # ops: (update index, shadow dict, key, stored bytes or None, first line, n lines)
            ops: list[tuple] = []
            # regular-table keys touched earlier in this batch -> exists afterwards
            overlay: dict[tuple, bool] = {}
            tables = pipe.schema.tables
            slices = None
            if raw is not None:
                try:
                    slices = update_slices(raw)
                except (Slow, IndexError):
                    slices = None
                if slices is not None and len(slices) != n:
                    slices = None
            ordered = [False]
            flow_fast = pipe.fast
            for i in range(n):
                try:
                    if slices is not None:
                        s_, e_ = slices[i]
                        try:
                            utype, t, key, keytext, acttext, idle, ts, te_end = flow_fast.plan(
                                raw, s_, e_
                            )
                        except (Slow, IndexError):
                            pass
                        else:
                            if (
                                t.learner
                                and idle > 0
                                and acttext is not None
                                and t.idle_notify
                                and t.timeouts
                                and (utype == _INSERT or utype == _MODIFY)
                            ):
                                # the flow install itself, inlined: one `learner add` line
                                ops.append(
                                    (i, pipe.shadow[t.id], key, raw[ts:te_end], len(lines), 1)
                                )
                                lines.append(
                                    (t.add_prefix if utype == _INSERT else t.mod_prefix)
                                    + keytext
                                    + acttext
                                    + " timeout %d" % t.timeout_profile(idle)
                                )
                                continue
                            self._plan_entry(
                                pipe, t, utype, key, keytext, None, None, idle,
                                raw[ts:te_end], i, lines, ops, overlay, ordered, acttext,
                            )  # fmt: skip
                            continue
                        try:
                            fast = decode_update(raw, s_, e_)
                        except (Slow, IndexError):
                            fast = None
                        if fast is not None:
                            utype, tid, matches, aid, params, prio, idle, is_default, ts, te_end = fast
                            t = tables.get(tid)
                            if t is not None and t.all_exact and not is_default:
                                if prio:
                                    raise P4RTError(
                                        SC.INVALID_ARGUMENT,
                                        f"table {t.name!r} has only exact fields: priority must be 0",
                                    )
                                key, keytext = self._key_exact(t, matches)
                                self._plan_entry(
                                    pipe, t, utype, key, keytext, aid, params, idle,
                                    raw[ts:te_end], i, lines, ops, overlay, ordered,
                                )  # fmt: skip
                                continue
                    self._plan_slow(pipe, updates[i], i, lines, ops, overlay, ordered)
                except P4RTError as e:
                    results[i] = (e.code, e.message)
                    failed = True
            if not lines:
                return results if failed else None
            if ordered[0]:
                replies = await pipe.daemon.request(lines)
            else:
                task = asyncio.ensure_future(pipe.daemon.request(lines))
                await asyncio.sleep(0)  # the task has queued its message(s) by now
                lock.release()
                held = False
                replies = await task
        finally:
            if held:
                lock.release()
        for i, shadow, key, value, first, nl in ops:
            r = replies[first]
            if r[:2] != "ok":
                results[i] = _daemon_error(r)
                failed = True
                continue
            for extra in replies[first + 1 : first + nl]:
                if extra[:2] != "ok":
                    results[i] = _daemon_error(extra)
                    failed = True
                    break
            if shadow is None:
                if key is not None and value is not None:  # default entry of table `key`
                    pipe.defaults[key] = value
                continue
            if value is None:
                shadow.pop(key, None)
            else:
                shadow[key] = value
        return results if failed else None

    def _plan_entry(
        self, pipe: Pipeline, t: TableInfo, utype: int, key: tuple, keytext: str,
        action_id: int | None, params: list, idle: int, te_bytes: bytes,
        i: int, lines: list, ops: list, overlay: dict, ordered: list, acttext: str | None = None,
    ) -> None:  # fmt: skip
        """Daemon line(s) of one INSERT/MODIFY/DELETE of a (non-default) table entry.

        The action is given either as (action_id, params) or already rendered (`acttext`,
        from the flow fast path; None there means the entry has no action).
        """
        shadow = pipe.shadow[t.id]
        if not t.learner:
            ordered[0] = True
        if utype == _DELETE:
            if not t.learner:
                cur = overlay.get((t.id, key))
                if not (key in shadow if cur is None else cur):
                    raise P4RTError(SC.NOT_FOUND, f"entry not found in {t.name!r}")
                overlay[(t.id, key)] = False
            ops.append((i, shadow, key, None, len(lines), 1))
            lines.append(t.del_prefix + keytext)
            return
        if utype != _INSERT and utype != _MODIFY:
            raise P4RTError(SC.INVALID_ARGUMENT, "update type is UNSPECIFIED")
        if acttext is None:
            if action_id is None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: entry has no action")
            acttext = self._action_text(t, action_id, params)
        if t.learner:
            if idle:
                if not t.idle_notify:
                    raise P4RTError(
                        SC.INVALID_ARGUMENT,
                        f"table {t.name!r} does not support idle timeouts "
                        "(idle_timeout_behavior is not NOTIFY_CONTROL)",
                    )
                if idle < 0:
                    raise P4RTError(SC.INVALID_ARGUMENT, "idle_timeout_ns is negative")
                if not t.timeouts:
                    raise P4RTError(SC.UNIMPLEMENTED, f"learner {t.dname!r} has no timeout profiles")
                prefix = t.add_prefix if utype == _INSERT else t.mod_prefix
                ops.append((i, shadow, key, te_bytes, len(lines), 1))
                lines.append(f"{prefix}{keytext}{acttext} timeout {t.timeout_profile(idle)}")
            else:
                prefix = t.add_prefix if utype == _INSERT else t.mod_prefix
                ops.append((i, shadow, key, te_bytes, len(lines), 2))
                lines.append(prefix + keytext + acttext)
                lines.append(t.keep_prefix + keytext)
            return
        # regular table: the server decides existence (the daemon's add is an upsert)
        cur = overlay.get((t.id, key))
        exists = (key in shadow) if cur is None else cur
        if utype == _INSERT and exists:
            raise P4RTError(SC.ALREADY_EXISTS, f"entry already exists in {t.name!r}")
        if utype == _MODIFY and not exists:
            raise P4RTError(SC.NOT_FOUND, f"entry not found in {t.name!r}")
        if idle:
            raise P4RTError(
                SC.INVALID_ARGUMENT,
                f"table {t.name!r} is not a learner table: idle timeouts unsupported",
            )
        overlay[(t.id, key)] = True
        ops.append((i, shadow, key, te_bytes, len(lines), 1))
        lines.append(t.add_prefix + keytext + acttext)

    def _plan_slow(
        self, pipe: Pipeline, upd: p4r.Update, i: int, lines: list, ops: list, overlay: dict,
        ordered: list,
    ) -> None:  # fmt: skip
        schema = pipe.schema
        ent = upd.entity
        kind = ent.WhichOneof("entity")
        utype = upd.type
        if utype not in (_INSERT, _MODIFY, _DELETE):
            raise P4RTError(SC.INVALID_ARGUMENT, "update type is UNSPECIFIED")
        if kind == "table_entry":
            te = ent.table_entry
            t = schema.tables.get(te.table_id)
            if t is None:
                raise P4RTError(SC.NOT_FOUND, f"unknown table id {te.table_id:#x}")
            if te.is_default_action:
                lines_, op = self._plan_default(pipe, t, te, utype)
                ordered[0] = True
                ops.append((i, None, t.id, op, len(lines), len(lines_)))
                lines.extend(lines_)
                return
            key, keytext = self._key(t, te)
            if te.HasField("action"):
                aid, params = self._te_action(t, te)
            else:
                aid, params = None, []
            self._plan_entry(
                pipe, t, utype, key, keytext, aid, params, te.idle_timeout_ns,
                te.SerializeToString(), i, lines, ops, overlay, ordered,
            )  # fmt: skip
        elif kind == "register_entry":
            if utype != _MODIFY:
                raise P4RTError(SC.INVALID_ARGUMENT, "register entries only support MODIFY")
            ln = self._register_write_lines(schema, ent.register_entry)
            ops.append((i, None, None, None, len(lines), len(ln)))
            lines.extend(ln)
        elif kind == "counter_entry":
            if utype != _MODIFY:
                raise P4RTError(SC.INVALID_ARGUMENT, "counter entries only support MODIFY")
            ln = self._counter_write_lines(schema, ent.counter_entry)
            ops.append((i, None, None, None, len(lines), len(ln)))
            lines.extend(ln)
        elif kind == "packet_replication_engine_entry":
            self._plan_pre(pipe, ent.packet_replication_engine_entry, utype, i, lines, ops, overlay)
            ordered[0] = True
        elif kind is None:
            raise P4RTError(SC.INVALID_ARGUMENT, "update has no entity")
        else:
            raise P4RTError(SC.UNIMPLEMENTED, f"{kind} is not supported by this target")

    # -- packet replication engine: clone sessions = the daemon's mirroring sessions -------

    def _plan_pre(
        self, pipe: Pipeline, pre: p4r.PacketReplicationEngineEntry, utype: int, i: int,
        lines: list, ops: list, overlay: dict,
    ) -> None:  # fmt: skip
        """One clone-session update -> one daemon `mirror` line.

        The P4 program mirrors FIN/RST of spliced flows through a session; the daemon
        copies the emitted frame to the session's port. A replica on the CPU port maps to
        the daemon's copy port (copies come back without a packet_in header and are turned
        into PacketIns by `_on_copy`), a replica on a data port to that port.
        """
        which = pre.WhichOneof("type")
        if which == "multicast_group_entry":
            raise P4RTError(
                SC.UNIMPLEMENTED,
                "multicast groups are not supported by this target (the SWX pipeline has no "
                "multicast engine); only clone sessions are",
            )
        if which != "clone_session_entry":
            raise P4RTError(SC.INVALID_ARGUMENT, "packet replication engine entry is empty")
        cs = pre.clone_session_entry
        sid = cs.session_id
        n_sessions = int(pipe.daemon.info.get("mirroring_sessions", 0))
        if sid == 0 or sid >= n_sessions:
            raise P4RTError(
                SC.INVALID_ARGUMENT,
                f"clone session id {sid} out of range: this target has sessions 1..{n_sessions - 1}",
            )
        shadow = pipe.clone_sessions
        cur = overlay.get(("clone", sid))
        exists = (sid in shadow) if cur is None else cur
        if utype == _DELETE:
            if not exists:
                raise P4RTError(SC.NOT_FOUND, f"clone session {sid} not found")
            overlay[("clone", sid)] = False
            ops.append((i, shadow, sid, None, len(lines), 1))
            lines.append(f"mirror {sid} off")
            return
        if utype == _INSERT and exists:
            raise P4RTError(SC.ALREADY_EXISTS, f"clone session {sid} already exists")
        if utype == _MODIFY and not exists:
            raise P4RTError(SC.NOT_FOUND, f"clone session {sid} not found")
        if cs.class_of_service:
            raise P4RTError(SC.UNIMPLEMENTED, "clone session class_of_service is not supported")
        if cs.packet_length_bytes < 0 or cs.packet_length_bytes > 65535:
            raise P4RTError(SC.INVALID_ARGUMENT, "clone session packet_length_bytes must be 0..65535")
        if len(cs.replicas) > 1:
            raise P4RTError(
                SC.UNIMPLEMENTED,
                f"clone session {sid} has {len(cs.replicas)} replicas: this target copies to one "
                "port per session (SWX mirroring)",
            )
        if not cs.replicas:
            line = f"mirror {sid} off"
        else:
            rep = cs.replicas[0]
            if len(rep.backup_replicas):
                raise P4RTError(SC.UNIMPLEMENTED, "backup replicas are not supported by this target")
            if rep.port:
                port = int.from_bytes(rep.port, "big")
                if len(rep.port) > 4:
                    raise P4RTError(SC.INVALID_ARGUMENT, f"replica port 0x{rep.port.hex()} is too wide")
            else:
                port = rep.egress_port
            if port == self.target.cpu_port:
                copy_port = pipe.daemon.info.get("copy_port", -1)
                if copy_port is None or copy_port < 0:
                    raise P4RTError(SC.UNIMPLEMENTED, "the data-plane daemon has no copy port")
                dport = copy_port
            elif port in self.target.ports:
                dport = port
            else:
                raise P4RTError(
                    SC.INVALID_ARGUMENT,
                    f"clone session {sid}: replica port {port} is neither the CPU port "
                    f"({self.target.cpu_port}) nor a data-plane port (ports: {sorted(self.target.ports)})",
                )
            line = f"mirror {sid} {dport}"
            if cs.packet_length_bytes:
                line += f" truncate {cs.packet_length_bytes}"
        overlay[("clone", sid)] = True
        ops.append((i, shadow, sid, cs.SerializeToString(), len(lines), 1))
        lines.append(line)

    # -- entry codecs ---------------------------------------------------------------------

    @staticmethod
    def _key_exact(t: TableInfo, matches: list[tuple[int, bytes]]) -> tuple[tuple, str]:
        """(shadow key, daemon key text) of an all-exact key given as (field id, value)."""
        fields = t.fields
        if len(matches) == len(fields):  # fast path: fields given in P4Info order
            out = []
            for (fid, v), f in zip(matches, fields):
                x = int.from_bytes(v, "big")
                if fid != f.id or not v or x >> f.bitwidth:
                    break
                out.append(x)
            else:
                return tuple(out), " ".join(map(hex, out))
        vals: list = [None] * len(t.fields)
        fbid = t.fields_by_id
        for fid, v in matches:
            f = fbid.get(fid)
            if f is None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: unknown match field id {fid}")
            x = int.from_bytes(v, "big")
            if not v or x >> f.bitwidth:
                _int_of(v, f.bitwidth, f"table {t.name!r} field {f.name!r}")
            if vals[f.index] is not None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: field {f.name!r} given twice")
            vals[f.index] = x
        if None in vals:
            missing = [f.name for f in t.fields if vals[f.index] is None]
            raise P4RTError(
                SC.INVALID_ARGUMENT, f"table {t.name!r}: missing exact match field(s) {missing}"
            )
        return tuple(vals), " ".join(["0x%x" % x for x in vals])

    @staticmethod
    def _key(t: TableInfo, te: p4r.TableEntry) -> tuple[tuple, str]:
        """(shadow key, daemon key text) of a table entry's match (protobuf path)."""
        if t.all_exact:
            pairs = []
            for fm in te.match:
                if not fm.HasField("exact"):
                    f = t.fields_by_id.get(fm.field_id)
                    name = f.name if f else fm.field_id
                    raise P4RTError(
                        SC.INVALID_ARGUMENT, f"table {t.name!r} field {name!r}: expected an exact match"
                    )
                pairs.append((fm.field_id, fm.exact.value))
            if te.priority:
                raise P4RTError(
                    SC.INVALID_ARGUMENT, f"table {t.name!r} has only exact fields: priority must be 0"
                )
            return P4RuntimeServer._key_exact(t, pairs)
        return P4RuntimeServer._key_general(t, te)

    @staticmethod
    def _key_general(t: TableInfo, te: p4r.TableEntry) -> tuple[tuple, str]:
        vals: list = [None] * len(t.fields)
        for fm in te.match:
            f = t.fields_by_id.get(fm.field_id)
            if f is None:
                raise P4RTError(
                    SC.INVALID_ARGUMENT, f"table {t.name!r}: unknown match field id {fm.field_id}"
                )
            what = f"table {t.name!r} field {f.name!r}"
            if vals[f.index] is not None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: given twice")
            which = fm.WhichOneof("field_match_type")
            full = (1 << f.bitwidth) - 1
            if f.kind == "exact" and which == "exact":
                vals[f.index] = (_int_of(fm.exact.value, f.bitwidth, what), full)
            elif f.kind == "lpm" and which == "lpm":
                plen = fm.lpm.prefix_len
                if plen <= 0 or plen > f.bitwidth:
                    raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: prefix length {plen} out of range")
                mask = full ^ ((1 << (f.bitwidth - plen)) - 1)
                v = _int_of(fm.lpm.value, f.bitwidth, what)
                if v & ~mask:
                    raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: bits set beyond the prefix length")
                vals[f.index] = (v, mask)
            elif f.kind == "ternary" and which == "ternary":
                v = _int_of(fm.ternary.value, f.bitwidth, what)
                m = _int_of(fm.ternary.mask, f.bitwidth, what)
                if m == 0:
                    raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: all-zero mask (omit the field instead)")
                if v & ~m:
                    raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: value has bits outside the mask")
                vals[f.index] = (v, m)
            elif f.kind == "optional" and which == "optional":
                vals[f.index] = (_int_of(fm.optional.value, f.bitwidth, what), full)
            elif f.kind == "range":
                raise P4RTError(SC.UNIMPLEMENTED, f"{what}: range matches are not supported by SWX")
            else:
                raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: {which} match given, field is {f.kind}")
        parts = []
        for f in t.fields:
            v = vals[f.index]
            if v is None:
                if f.kind == "exact":
                    raise P4RTError(
                        SC.INVALID_ARGUMENT, f"table {t.name!r}: missing exact match field {f.name!r}"
                    )
                v = vals[f.index] = (0, 0)
            parts.append("0x%x" % v[0] if f.kind == "exact" else "0x%x/0x%x" % v)
        prio = te.priority
        if t.needs_priority:
            if prio <= 0:
                raise P4RTError(
                    SC.INVALID_ARGUMENT, f"table {t.name!r} needs a priority > 0 (ternary/optional key)"
                )
            # P4Runtime: larger is preferred; SWX: smaller is preferred.
            parts.append("priority %d" % (0x7FFFFFFF - prio))
        elif prio:
            raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: priority must be 0")
        return tuple(vals) + ((prio,) if t.needs_priority else ()), " ".join(parts)

    @staticmethod
    def _te_action(t: TableInfo, te: p4r.TableEntry) -> tuple[int, list[tuple[int, bytes]]]:
        ta = te.action
        if ta.WhichOneof("type") != "action":
            raise P4RTError(
                SC.UNIMPLEMENTED,
                f"table {t.name!r}: only direct actions are supported (no action profiles)",
            )
        a = ta.action
        return a.action_id, [(p.param_id, p.value) for p in a.params]

    @staticmethod
    def _action_text(
        t: TableInfo, action_id: int, params: list[tuple[int, bytes]], default: bool = False
    ) -> str:
        allowed = t.default_actions if default else t.actions
        ai = allowed.get(action_id)
        if ai is None:
            scope = "default" if default else "entry"
            raise P4RTError(
                SC.INVALID_ARGUMENT,
                f"table {t.name!r}: action id {action_id:#x} is not a valid {scope} action",
            )
        np = len(ai.params)
        if not np:
            if params:
                raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r} takes no parameters")
            return " action " + ai.dname
        if len(params) == np:  # fast path: parameters given in P4Info order
            out = []
            for (pid, v), p in zip(params, ai.params):
                x = int.from_bytes(v, "big")
                if pid != p.id or not v or x >> p.bitwidth:
                    break
                out.append(hex(x))
            else:
                return ai.line_fmt % tuple(out)
        vals: list = [None] * np
        pbid = ai.params_by_id
        for pid, v in params:
            pi = pbid.get(pid)
            if pi is None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r}: unknown parameter id {pid}")
            x = int.from_bytes(v, "big")
            if not v or x >> pi.bitwidth:
                _int_of(v, pi.bitwidth, f"action {ai.name!r} parameter {pi.name!r}")
            if vals[pi.index] is not None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r}: parameter {pi.name!r} given twice")
            vals[pi.index] = x
        if None in vals:
            missing = [p.name for p in ai.params if vals[p.index] is None]
            raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r}: missing parameter(s) {missing}")
        return " action " + ai.dname + "".join(
            [" %s 0x%x" % (p.dname, x) for p, x in zip(ai.params, vals)]
        )

    def _plan_default(self, pipe: Pipeline, t: TableInfo, te: p4r.TableEntry, utype: int):
        if utype != p4r.Update.MODIFY:
            raise P4RTError(SC.INVALID_ARGUMENT, "the default entry can only be MODIFYed")
        if te.match or te.priority:
            raise P4RTError(SC.INVALID_ARGUMENT, "the default entry has no match fields or priority")
        if t.const_default_action_id:
            raise P4RTError(SC.PERMISSION_DENIED, f"table {t.name!r} has a const default action")
        if not te.HasField("action"):
            raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: default entry has no action")
        aid, params = self._te_action(t, te)
        acttext = self._action_text(t, aid, params, default=True)
        return [f"table default {t.dname}" + acttext], te.SerializeToString()

    # -- registers / counters -------------------------------------------------------------

    @staticmethod
    def _register_write_lines(schema: Schema, re_: p4r.RegisterEntry) -> list[str]:
        r = schema.registers.get(re_.register_id)
        if r is None:
            raise P4RTError(SC.NOT_FOUND, f"unknown register id {re_.register_id:#x}")
        if not re_.HasField("index"):
            raise P4RTError(SC.INVALID_ARGUMENT, f"register {r.name!r}: write needs an index")
        idx = re_.index.index
        if idx < 0 or idx >= r.size:
            raise P4RTError(SC.OUT_OF_RANGE, f"register {r.name!r}: index {idx} out of range")
        d = re_.data
        if d.WhichOneof("data") != "bitstring":
            raise P4RTError(SC.INVALID_ARGUMENT, f"register {r.name!r}: data must be a bitstring")
        v = _int_of(d.bitstring, r.bitwidth, f"register {r.name!r}")
        return [f"reg write {r.dname} {idx} 0x{v:x}"]

    @staticmethod
    def _counter_write_lines(schema: Schema, ce: p4r.CounterEntry) -> list[str]:
        c = schema.counters.get(ce.counter_id)
        if c is None:
            raise P4RTError(SC.NOT_FOUND, f"unknown counter id {ce.counter_id:#x}")
        if not ce.HasField("index"):
            raise P4RTError(SC.INVALID_ARGUMENT, f"counter {c.name!r}: write needs an index")
        idx = ce.index.index
        if idx < 0 or idx >= c.size:
            raise P4RTError(SC.OUT_OF_RANGE, f"counter {c.name!r}: index {idx} out of range")
        out = []
        if c.packets_reg:
            out.append(f"reg write {c.packets_reg} {idx} {ce.data.packet_count}")
        if c.bytes_reg:
            out.append(f"reg write {c.bytes_reg} {idx} {ce.data.byte_count}")
        return out

    async def _reg_read(self, pipe: Pipeline, reg: str, start: int, count: int) -> list[int]:
        out: list[int] = []
        lines = []
        i = start
        end = start + count
        while i < end:
            n = min(REG_CHUNK, end - i)
            lines.append(f"reg read {reg} {i} {n}")
            i += n
        for r in await pipe.daemon.request(lines):
            if r[:2] != "ok":
                code, msg = _daemon_error(r)
                raise P4RTError(code, f"reading {reg}: {msg}")
            out.extend(int(x, 0) for x in r[3:].split())
        if len(out) != count:
            raise P4RTError(SC.INTERNAL, f"reading {reg}: expected {count} values, got {len(out)}")
        return out

    # -- Read -----------------------------------------------------------------------------

    async def Read(self, request, context):
        try:
            self._check_device(request.device_id)
            pipe = self._pipeline()
            plans = [self._read_plan(pipe, ent) for ent in request.entities]
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)
            return
        buf: list[bytes] = []
        size = 0
        try:
            for plan in plans:
                async for chunk in plan:
                    for ent_bytes in chunk:
                        b = _ld(_T_ENTITIES, ent_bytes)
                        buf.append(b)
                        size += len(b)
                    if size >= READ_CHUNK_BYTES:
                        yield b"".join(buf)
                        buf, size = [], 0
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)
            return
        if buf or not plans:
            yield b"".join(buf)

    def _read_plan(self, pipe: Pipeline, ent: p4r.Entity) -> AsyncIterator[list[bytes]]:
        kind = ent.WhichOneof("entity")
        schema = pipe.schema
        if kind == "table_entry":
            te = ent.table_entry
            if te.table_id == 0:
                if te.match or te.is_default_action:
                    raise P4RTError(SC.INVALID_ARGUMENT, "wildcard table read cannot have match fields")
                return self._read_tables(pipe, list(schema.tables.values()), None)
            t = schema.tables.get(te.table_id)
            if t is None:
                raise P4RTError(SC.NOT_FOUND, f"unknown table id {te.table_id:#x}")
            if te.is_default_action:
                return self._read_default(pipe, t)
            if te.match:
                key, _text = self._key(t, te)
                return self._read_tables(pipe, [t], key)
            return self._read_tables(pipe, [t], None)
        if kind == "counter_entry":
            ce = ent.counter_entry
            if ce.counter_id == 0:
                cs = list(schema.counters.values())
            else:
                c = schema.counters.get(ce.counter_id)
                if c is None:
                    raise P4RTError(SC.NOT_FOUND, f"unknown counter id {ce.counter_id:#x}")
                cs = [c]
            index = ce.index.index if ce.HasField("index") else None
            if index is not None and (index < 0 or (cs and index >= cs[0].size)):
                raise P4RTError(SC.OUT_OF_RANGE, f"counter index {index} out of range")
            return self._read_counters(pipe, cs, index)
        if kind == "register_entry":
            re_ = ent.register_entry
            if re_.register_id == 0:
                rs = list(schema.registers.values())
            else:
                r = schema.registers.get(re_.register_id)
                if r is None:
                    raise P4RTError(SC.NOT_FOUND, f"unknown register id {re_.register_id:#x}")
                rs = [r]
            index = re_.index.index if re_.HasField("index") else None
            if index is not None and (index < 0 or (rs and index >= rs[0].size)):
                raise P4RTError(SC.OUT_OF_RANGE, f"register index {index} out of range")
            return self._read_registers(pipe, rs, index)
        if kind == "packet_replication_engine_entry":
            pre = ent.packet_replication_engine_entry
            which = pre.WhichOneof("type")
            if which == "clone_session_entry":
                return self._read_clone_sessions(pipe, pre.clone_session_entry.session_id)
            if which == "multicast_group_entry":
                # No multicast groups can exist here (writes are UNIMPLEMENTED): an empty answer
                # lets wildcard clean-ups (finsy's Switch.delete_all) succeed.
                return self._read_nothing()
            raise P4RTError(SC.INVALID_ARGUMENT, "packet replication engine entry is empty")
        if kind is None:
            raise P4RTError(SC.INVALID_ARGUMENT, "read entity is empty")
        raise P4RTError(SC.UNIMPLEMENTED, f"reading {kind} is not supported by this target")

    @staticmethod
    async def _read_nothing():
        return
        yield  # an async generator without items

    @staticmethod
    async def _read_clone_sessions(pipe: Pipeline, session_id: int):
        """All clone sessions (session_id 0) or one; an absent one reads as nothing."""
        shadow = pipe.clone_sessions
        ids = sorted(shadow) if session_id == 0 else [session_id]
        out = []
        for sid in ids:
            b = shadow.get(sid)
            if b is not None:
                # Entity{packet_replication_engine_entry(9): {clone_session_entry(2): b}}
                out.append(_ld(0x4A, _ld(0x12, b)))
        if out:
            yield out

    async def _read_tables(self, pipe: Pipeline, tables: list[TableInfo], key: tuple | None):
        for t in tables:
            shadow = pipe.shadow.get(t.id, {})
            if key is not None:
                b = shadow.get(key)
                if b is not None:
                    yield [_ld(_T_TABLE, b)]
                continue
            values = list(shadow.values())  # snapshot: writes may run while we stream
            step = 2048
            for i in range(0, len(values), step):
                yield [_ld(_T_TABLE, b) for b in values[i : i + step]]
                await asyncio.sleep(0)

    async def _read_default(self, pipe: Pipeline, t: TableInfo):
        b = pipe.defaults.get(t.id)
        if b is None:
            te = p4r.TableEntry(table_id=t.id, is_default_action=True)
            aid = t.const_default_action_id
            if not aid and t.default_dname:
                for ai in t.default_actions.values():
                    if ai.dname == t.default_dname:
                        aid = ai.id
                        break
            if aid:
                te.action.action.action_id = aid
            b = te.SerializeToString()
        yield [_ld(_T_TABLE, b)]

    async def _read_counters(self, pipe: Pipeline, counters, index: int | None):
        for c in counters:
            if index is not None:
                start, count = index, 1
            else:
                start, count = 0, c.size
            pos = start
            end = start + count
            while pos < end:
                n = min(REG_CHUNK * 8, end - pos)
                pk = await self._reg_read(pipe, c.packets_reg, pos, n) if c.packets_reg else None
                by = await self._reg_read(pipe, c.bytes_reg, pos, n) if c.bytes_reg else None
                out = []
                for j in range(n):
                    ce = p4r.CounterEntry(counter_id=c.id)
                    ce.index.index = pos + j
                    if pk is not None:
                        ce.data.packet_count = pk[j]
                    if by is not None:
                        ce.data.byte_count = by[j]
                    out.append(_ld(_T_COUNTER, ce.SerializeToString()))
                yield out
                pos += n

    async def _read_registers(self, pipe: Pipeline, regs, index: int | None):
        for r in regs:
            start, count = (index, 1) if index is not None else (0, r.size)
            pos, end = start, start + count
            while pos < end:
                n = min(REG_CHUNK * 8, end - pos)
                vals = await self._reg_read(pipe, r.dname, pos, n)
                out = []
                for j, v in enumerate(vals):
                    re_ = p4r.RegisterEntry(register_id=r.id)
                    re_.index.index = pos + j
                    re_.data.bitstring = canonical_bytes(v)
                    out.append(_ld(_T_REGISTER, re_.SerializeToString()))
                yield out
                pos += n

    # -- StreamChannel --------------------------------------------------------------------

    async def StreamChannel(self, request_iterator, context):
        conn = StreamConn(context.peer())
        reader = asyncio.create_task(self._stream_reader(conn, request_iterator))
        try:
            while True:
                item = await conn.queue.get()
                if item is None:
                    return
                if isinstance(item, P4RTError):
                    await context.abort(item.code, item.message)
                    return
                yield item
        finally:
            reader.cancel()
            self._disconnect(conn)

    async def _stream_reader(self, conn: StreamConn, request_iterator) -> None:
        try:
            async for req in request_iterator:
                kind = req.WhichOneof("update")
                if kind == "packet":
                    self._packet_out(conn, req.packet)
                elif kind == "arbitration":
                    err = self._arbitrate(conn, req.arbitration)
                    if err is not None:
                        conn.queue.put_nowait(err)
                        return
                elif not conn.arbitrated:
                    conn.queue.put_nowait(
                        P4RTError(
                            SC.FAILED_PRECONDITION,
                            "the first stream message must be a MasterArbitrationUpdate",
                        )
                    )
                    return
                elif kind == "digest_ack":
                    pass
                else:
                    conn.put(
                        p4r.StreamMessageResponse(
                            error=p4r.StreamError(
                                canonical_code=rpc_code.UNIMPLEMENTED,
                                message=f"stream message {kind!r} is not supported",
                            )
                        )
                    )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            LOG.debug("stream from %s ended: %s", conn.peer, e)
        conn.queue.put_nowait(None)

    def _arbitrate(self, conn: StreamConn, arb: p4r.MasterArbitrationUpdate) -> P4RTError | None:
        if arb.device_id != self.device_id:
            return P4RTError(
                SC.NOT_FOUND, f"unknown device id {arb.device_id} (this server is device {self.device_id})"
            )
        role = arb.role.name if arb.HasField("role") else ""
        if arb.HasField("role") and arb.role.HasField("config"):
            return P4RTError(SC.UNIMPLEMENTED, "role configurations are not supported")
        if conn.arbitrated and role != conn.role:
            return P4RTError(SC.FAILED_PRECONDITION, "a stream cannot change its role")
        eid = _u128(arb.election_id) if arb.HasField("election_id") else None
        st = self.roles.setdefault(role, RoleState())
        if eid is not None:
            for other, oeid in st.conns.items():
                if other is not conn and oeid == eid:
                    return P4RTError(
                        SC.INVALID_ARGUMENT,
                        f"election id {eid} is already used by another client of role {role or '<default>'!r}",
                    )
        conn.role = role
        conn.election_id = eid
        conn.arbitrated = True
        st.conns[conn] = eid
        old = st.primary
        if eid is not None and (st.highest is None or eid >= st.highest):
            st.highest = eid
            st.primary = conn
        elif st.primary is conn:
            st.primary = None  # the primary lowered its election id: it is a backup now
        if st.primary is not old:
            LOG.info(
                "role %r: primary is now %s (election id %s)",
                role or "<default>",
                st.primary.peer if st.primary else "none",
                st.highest,
            )
            for c in st.conns:
                c.put(self._arb_update(st, c, role))
        else:
            conn.put(self._arb_update(st, conn, role))
        return None

    def _arb_update(self, st: RoleState, conn: StreamConn, role: str) -> p4r.StreamMessageResponse:
        u = p4r.MasterArbitrationUpdate(device_id=self.device_id)
        if role:
            u.role.name = role
        if st.highest is not None:
            u.election_id.CopyFrom(_to_u128(st.highest))
        if st.primary is conn:
            u.status.code = rpc_code.OK
            u.status.message = "primary"
        elif st.primary is not None:
            u.status.code = rpc_code.ALREADY_EXISTS
            u.status.message = "backup: another client is primary"
        else:
            u.status.code = rpc_code.NOT_FOUND
            u.status.message = "backup: no primary for this role"
        return p4r.StreamMessageResponse(arbitration=u)

    def _disconnect(self, conn: StreamConn) -> None:
        st = self.roles.get(conn.role)
        if st is None or conn not in st.conns:
            return
        del st.conns[conn]
        if st.primary is conn:
            st.primary = None
            LOG.info("role %r: primary disconnected", conn.role or "<default>")
            for c in st.conns:
                c.put(self._arb_update(st, c, conn.role))

    def _primaries(self) -> Iterable[StreamConn]:
        for st in self.roles.values():
            if st.primary is not None:
                yield st.primary

    # -- packet I/O -----------------------------------------------------------------------

    def _stream_error(self, conn: StreamConn, code: int, msg: str, po: p4r.PacketOut) -> None:
        err = p4r.StreamError(canonical_code=code, message=msg)
        err.packet_out.packet_out.CopyFrom(po)
        conn.put(p4r.StreamMessageResponse(error=err))

    def _packet_out(self, conn: StreamConn, po: p4r.PacketOut) -> None:
        st = self.roles.get(conn.role)
        if not conn.arbitrated or st is None or st.primary is not conn:
            self._stream_error(conn, rpc_code.PERMISSION_DENIED, "packet-out from a non-primary client", po)
            return
        pipe = self.pipe
        if pipe is None or pipe.daemon.dead is not None:
            why = NO_PIPELINE if pipe is None else f"data plane unavailable: {pipe.daemon.dead}"
            self._stream_error(conn, rpc_code.UNAVAILABLE, why, po)
            return
        hdr = pipe.schema.packet_out
        if hdr is None:
            frame = po.payload
        else:
            vals: dict[int, int] = {}
            for md in po.metadata:
                f = hdr.by_id.get(md.metadata_id)
                if f is None:
                    self._stream_error(
                        conn, rpc_code.INVALID_ARGUMENT, f"unknown packet_out metadata id {md.metadata_id}", po
                    )
                    return
                x = int.from_bytes(md.value, "big")
                if not md.value or x >> f[1]:
                    self._stream_error(
                        conn,
                        rpc_code.INVALID_ARGUMENT,
                        f"packet_out metadata {md.metadata_id}: value 0x{md.value.hex()} "
                        f"does not fit in {f[1]} bits",
                        po,
                    )
                    return
                vals[md.metadata_id] = x
            port_id = self._egress_port_id(pipe)
            if port_id is not None:
                port = vals.get(port_id, 0)
                if port not in self.target.ports:
                    self._stream_error(
                        conn,
                        rpc_code.INVALID_ARGUMENT,
                        f"packet_out egress_port {port} is not a data-plane port "
                        f"(ports: {sorted(self.target.ports)})",
                        po,
                    )
                    return
            frame = hdr.encode(vals) + po.payload
        if pipe.daemon.send_packet(frame):
            self.counters["packet_out"] += 1
        else:
            self._stream_error(conn, rpc_code.RESOURCE_EXHAUSTED, "CPU port is congested", po)

    @staticmethod
    def _egress_port_id(pipe: Pipeline) -> int | None:
        hdr = pipe.schema.packet_out
        return hdr.field_id("egress_port") if hdr is not None else None

    def _on_copy(self, frame: bytes) -> None:
        """A frame from the daemon's copy port: a mirror copy (FIN/RST of a spliced flow) as the
        pipeline emitted it, without a packet_in header. It becomes a PacketIn with reason
        REASON_FLOW_END and ingress_port 0 (the copy does not say where the original came in),
        built by prepending the packet_in header the punt path decodes."""
        pipe = self.pipe
        if pipe is None:
            return
        hdr = pipe.schema.packet_in
        if hdr is None:
            self._on_packet(frame)
            return
        vals = {}
        rid, pid = hdr.field_id("reason"), hdr.field_id("ingress_port")
        if rid is not None:
            vals[rid] = REASON_FLOW_END
        if pid is not None:
            vals[pid] = 0
        self.counters["packet_in_copy"] = self.counters.get("packet_in_copy", 0) + 1
        self._on_packet(hdr.encode(vals) + frame)

    def _on_packet(self, frame: bytes) -> None:
        pipe = self.pipe
        if pipe is None:
            return
        prims = list(self._primaries())
        if not prims:
            self.counters["packet_in_dropped"] += 1
            return
        hdr = pipe.schema.packet_in
        if hdr is None:
            pin = _ld(0x0A, frame)
        else:
            if len(frame) < hdr.nbytes:
                self.counters["packet_in_dropped"] += 1
                return
            # StreamMessageResponse{packet: PacketIn{payload, metadata: [{metadata_id, value}]}}
            # encoded directly: this runs for every punted packet.
            parts = [_ld(0x0A, frame[hdr.nbytes :])]
            for mid, v in hdr.decode(frame):
                parts.append(_ld(0x12, b"\x08" + _varint(mid) + _ld(0x12, canonical_bytes(v))))
            pin = b"".join(parts)
        data = _ld(0x12, pin)
        self.counters["packet_in"] += 1
        for c in prims:
            c.put(data)

    # -- idle timeouts --------------------------------------------------------------------

    def _on_expired(self, lines: list[str]) -> None:
        pipe = self.pipe
        if pipe is None:
            return
        by_table: dict[int, list[bytes]] = {}
        for ln in lines:
            parts = ln.split()
            if len(parts) < 2 or parts[0] != "expired":
                continue
            t = pipe.schema.tables_by_dname.get(parts[1])
            if t is None:
                continue
            try:
                key = tuple(int(x, 0) for x in parts[2:])
            except ValueError:
                LOG.warning("bad expiry notification from the daemon: %.200s", ln)
                continue
            b = pipe.shadow[t.id].pop(key, None)
            if b is not None and t.idle_notify:
                by_table.setdefault(t.id, []).append(b)
        if not by_table:
            return
        prims = list(self._primaries())
        if not prims:
            return
        now = time.time_ns()
        for entries in by_table.values():
            for i in range(0, len(entries), 1000):
                n = p4r.IdleTimeoutNotification(
                    table_entry=[p4r.TableEntry.FromString(b) for b in entries[i : i + 1000]],
                    timestamp=now,
                )
                data = p4r.StreamMessageResponse(idle_timeout_notification=n).SerializeToString()
                for c in prims:
                    c.put(data)


# --------------------------------------------------------------------------------------
# Loading P4Info files
# --------------------------------------------------------------------------------------


def load_p4info(path: str | Path) -> p4i.P4Info:
    data = Path(path).read_bytes()
    p4info = p4i.P4Info()
    if str(path).endswith((".bin", ".pb")):
        p4info.ParseFromString(data)
    else:
        text_format.Parse(data.decode(), p4info)
    return p4info
