"""P4Runtime gRPC server for the embedded DPDK SWX target.

One asyncio process serves P4Runtime (grpc.aio, finsy's generated protos) and drives one
`p4cs-swxd` data-plane daemon over its control socket and CPU port. This module is the gRPC
service; the work is done by:

* `arbitration`: roles, election ids, primaries of the StreamChannel connections;
* `pipeline`: Set/GetForwardingPipelineConfig, the daemon's lifecycle, the shadow store;
* `planner` (with `wire`, `keys`): WriteRequests as daemon control lines, applied;
* `reads`: Read requests answered from the shadow store and the daemon's registers;
* `packetio`: PacketOut / PacketIn, FIN/RST copies, clone sessions' ports, idle timeouts;
* `pktchan`: the direct packet channel, which hands the CPU and copy ports to the primary
  controller (its path is advertised in the Capabilities answer's initial metadata);
* `chanwrite`: Writes on that socket, for a controller on this host: the same handler
  (`apply_write`) as the gRPC Write, another transport.

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
import logging
from typing import Any

import grpc
from finsy.proto import p4i, p4r, rpc_code, rpc_status
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from .arbitration import Arbiter, StreamConn
from .daemon import DaemonDead
from .errors import SC, STATUS_CODES, P4RTError, unknown_device
from .packetio import PacketIO
from .pipeline import Pipeline, PipelineHost, TargetConfig
from .pktchan import METADATA_KEY, PacketChannel
from .planner import Writer, WriteResults
from .reads import plan_reads, read_responses

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

P4RUNTIME_API_VERSION = "1.5.0"


def _raw_or_message(m: Any) -> bytes:
    return m if isinstance(m, (bytes, bytearray)) else m.SerializeToString()


def _write_failure(errors: WriteResults) -> rpc_status.Status:
    """The google.rpc.Status of a Write with failed updates: one p4.v1.Error per update."""
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
    return status


class P4RuntimeServer:
    """P4Runtime service for one device backed by one `p4cs-swxd`."""

    def __init__(self, target: TargetConfig, device_id: int = 1):
        self.target = target
        self.device_id = device_id
        self.arbiter = Arbiter(device_id)
        self.packet_io = PacketIO(target, self.arbiter, lambda: self.pipelines.pipe)
        self.pipelines = PipelineHost(target, self.packet_io)
        self.writer = Writer(target)
        self.channel: PacketChannel | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def pipe(self) -> Pipeline | None:
        """The running pipeline, if any."""
        return self.pipelines.pipe

    async def load_pipeline(
        self, p4info: p4i.P4Info, device_config: bytes, cookie: int | None, *, spec_path: str | None = None
    ) -> None:
        """Replace the running pipeline (restarts the daemon). Raises P4RTError."""
        await self.pipelines.load(p4info, device_config, cookie, spec_path=spec_path)

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

    def serve_packet_channel(self, path: str) -> None:
        """Offer the direct packet channel on the Unix socket `path` (see `pktchan`).
        OSError: the path is unusable or another process serves it."""
        channel = PacketChannel(path, self.arbiter, lambda: self.pipelines.pipe,
                                self._write_bytes)
        channel.start()
        self.channel = channel

    async def stop(self) -> None:
        if self.channel is not None:
            self.channel.stop()
            self.channel = None
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None
        await self.pipelines.stop()

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

    # -- common checks --------------------------------------------------------------------

    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise unknown_device(device_id, self.device_id)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, e: Exception) -> None:
        if isinstance(e, P4RTError):
            await context.abort(e.code, e.message)
        if isinstance(e, DaemonDead):
            await context.abort(SC.UNAVAILABLE, f"data plane unavailable: {e}")
        LOG.exception("internal error")
        await context.abort(SC.INTERNAL, f"internal error: {type(e).__name__}: {e}")

    # -- RPCs -----------------------------------------------------------------------------

    async def Capabilities(self, request, context):
        if self.channel is not None:
            await context.send_initial_metadata(((METADATA_KEY, self.channel.path),))
        return p4r.CapabilitiesResponse(p4runtime_api_version=P4RUNTIME_API_VERSION)

    async def SetForwardingPipelineConfig(self, request, context):
        try:
            self._check_device(request.device_id)
            self.arbiter.check_primary(request.role, request.election_id, request.HasField("election_id"))
            await self.pipelines.set_config(request)
            return p4r.SetForwardingPipelineConfigResponse()
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def GetForwardingPipelineConfig(self, request, context):
        try:
            self._check_device(request.device_id)
            return self.pipelines.get_config(request)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def Write(self, raw, context):
        status = await self.apply_write(raw)
        if status is None:
            return p4r.WriteResponse()
        if status.details:
            await context.abort(
                SC.UNKNOWN,
                status.message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        await context.abort(STATUS_CODES[status.code], status.message)

    async def apply_write(self, raw: bytes) -> rpc_status.Status | None:
        """One serialized WriteRequest, checked and applied, for either transport (gRPC, the
        channel socket's `chanwrite`): None when every update succeeded, else the
        google.rpc.Status of the failure (UNKNOWN with one p4.v1.Error per update when
        updates failed)."""
        try:
            try:
                request = p4r.WriteRequest.FromString(raw)
            except DecodeError as e:
                raise P4RTError(SC.INVALID_ARGUMENT, f"malformed WriteRequest: {e}") from None
            self._check_device(request.device_id)
            self.arbiter.check_primary(request.role, request.election_id, request.HasField("election_id"))
            pipe = self.pipelines.current()
            if request.atomicity != p4r.WriteRequest.CONTINUE_ON_ERROR:
                raise P4RTError(
                    SC.UNIMPLEMENTED, "only CONTINUE_ON_ERROR atomicity is supported by this target"
                )
            errors = await self.writer.write(pipe, request, raw)
        except P4RTError as e:
            return rpc_status.Status(code=e.code.value[0], message=e.message)
        except DaemonDead as e:
            return rpc_status.Status(code=SC.UNAVAILABLE.value[0],
                                     message=f"data plane unavailable: {e}")
        except Exception as e:  # noqa: BLE001
            LOG.exception("internal error")
            return rpc_status.Status(code=SC.INTERNAL.value[0],
                                     message=f"internal error: {type(e).__name__}: {e}")
        if errors is None:
            return None
        return _write_failure(errors)

    async def _write_bytes(self, raw: bytes) -> bytes:
        status = await self.apply_write(raw)
        return b"" if status is None else status.SerializeToString()

    async def Read(self, request, context):
        try:
            self._check_device(request.device_id)
            pipe = self.pipelines.current()
            plans = plan_reads(pipe, request.entities)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)
            return
        try:
            async for response in read_responses(plans):
                yield response
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

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
            self.arbiter.disconnect(conn)
            self._arbitration_changed()

    def _arbitration_changed(self) -> None:
        if self.channel is not None:
            self.channel.check()

    async def _stream_reader(self, conn: StreamConn, request_iterator) -> None:
        try:
            async for req in request_iterator:
                kind = req.WhichOneof("update")
                if kind == "packet":
                    self.packet_io.packet_out(conn, req.packet)
                elif kind == "arbitration":
                    err = self.arbiter.arbitrate(conn, req.arbitration)
                    self._arbitration_changed()
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
