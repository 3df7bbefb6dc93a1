"""The forwarding pipeline: P4Info + SWX spec, the `p4cs-swxd` daemon that runs it, and
the state the server keeps for it (shadow of the written entries, default entries, clone
sessions). Set/GetForwardingPipelineConfig and the daemon's lifecycle."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from finsy.proto import p4i, p4r
from google.protobuf import text_format

from .daemon import DEFAULT_CHANNELS, DaemonError, SwxDaemon
from .errors import SC, P4RTError
from .expiry import count_lines, reuse_lines
from .schema import Schema, SchemaError
from .wire import FlowFastPath

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

NO_PIPELINE = "No forwarding pipeline config set for this device"


def cookie_of(p4info: p4i.P4Info, device_config: bytes) -> int:
    """The pipeline cookie finsy computes for (p4info, p4blob): a controller using finsy with
    the same files sees a matching cookie and does not push the pipeline again."""
    h = hashlib.sha256()
    h.update(p4info.SerializeToString(deterministic=True))
    h.update(device_config)
    return int.from_bytes(h.digest()[:8], "big")


def load_p4info(path: str | Path) -> p4i.P4Info:
    """A P4Info file: binary (.bin, .pb) or text format."""
    data = Path(path).read_bytes()
    p4info = p4i.P4Info()
    if str(path).endswith((".bin", ".pb")):
        p4info.ParseFromString(data)
    else:
        text_format.Parse(data.decode(), p4info)
    return p4info


@dataclass
class Pipeline:
    p4info: p4i.P4Info
    device_config: bytes
    cookie: int | None
    schema: Schema
    daemon: SwxDaemon
    # table id -> {canonical key: serialized TableEntry}
    shadow: dict[int, dict[tuple, bytes]] = field(default_factory=dict)
    # table id -> serialized default TableEntry (those the controller set)
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
    channels: int = DEFAULT_CHANNELS
    #: the flow tables' memory resident from the start (p4cs switch --prefault)
    prefault: bool = False

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
            channels=self.channels,
            prefault=self.prefault,
        )


class DaemonListener(Protocol):
    """What a running daemon reports besides control replies."""

    def on_packet(self, frame: bytes) -> None: ...  # a frame from the CPU port
    def on_copy(self, frame: bytes) -> None: ...  # a frame from the copy port
    def on_expired(self, data: bytes) -> None: ...  # an `expired` message: entries that aged out


class PipelineHost:
    """The device's running pipeline (at most one) and the config saved for a later COMMIT."""

    def __init__(self, target: TargetConfig, listener: DaemonListener):
        self.target = target
        self.listener = listener
        self.pipe: Pipeline | None = None
        self.saved: tuple[p4i.P4Info, bytes, int | None] | None = None
        self.dead_reason: str | None = None
        self._lock = asyncio.Lock()
        self._state_dir: str | None = None

    def current(self) -> Pipeline:
        """The running pipeline; FAILED_PRECONDITION without one, UNAVAILABLE when its daemon died."""
        pipe = self.pipe
        if pipe is None:
            raise P4RTError(SC.FAILED_PRECONDITION, NO_PIPELINE)
        if pipe.daemon.dead is not None:
            raise P4RTError(SC.UNAVAILABLE, f"data plane unavailable: {pipe.daemon.dead}")
        return pipe

    async def stop(self) -> None:
        if self.pipe is not None:
            await self.pipe.daemon.stop()
            self.pipe = None

    # -- loading --------------------------------------------------------------------------

    def _spec_file(self, device_config: bytes) -> str:
        if self._state_dir is None:
            self._state_dir = tempfile.mkdtemp(prefix="p4cs-p4rt-", dir=self.target.workdir or None)
        digest = hashlib.sha256(device_config).hexdigest()[:16]
        path = os.path.join(self._state_dir, f"pipeline-{digest}.spec")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(device_config)
        return path

    async def load(
        self, p4info: p4i.P4Info, device_config: bytes, cookie: int | None, *, spec_path: str | None = None
    ) -> None:
        """Replace the running pipeline (restarts the daemon). Raises P4RTError."""
        async with self._lock:
            old = self.pipe
            if old is not None:
                LOG.info("replacing the forwarding pipeline: stopping the data-plane daemon")
                old.daemon.on_death = None
                await old.daemon.stop()
                self.pipe = None
            try:
                self.pipe = await self._start(p4info, device_config, cookie, spec_path)
            except P4RTError:
                if old is not None:
                    LOG.warning("new pipeline failed; restarting the previous one")
                    try:
                        self.pipe = await self._start(old.p4info, old.device_config, old.cookie, None)
                    except P4RTError as e2:
                        LOG.error("previous pipeline failed to restart too: %s", e2.message)
                raise

    async def _start(
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
            counting = count_lines(p4info, schema)
            reusing = reuse_lines(p4info, schema)
        except SchemaError as e:
            await daemon.stop()
            raise P4RTError(SC.INVALID_ARGUMENT, str(e)) from None
        bad = [r for r in await daemon.request(counting) if r != "ok"] if counting else []
        if bad:
            await daemon.stop()
            raise P4RTError(SC.INVALID_ARGUMENT, f"data-plane daemon rejected the pipeline: {bad[0]}")
        for line, reply in zip(reusing, await daemon.request(reusing) if reusing else []):
            if reply != "ok":   # SYNs on closing entries go to the controller, as on BMv2
                LOG.warning("data-plane daemon: %s: %s", line, reply)
        pipe = Pipeline(p4info, device_config, cookie, schema, daemon)
        for t in schema.tables:
            pipe.shadow[t] = {}
        pipe.fast = FlowFastPath(schema.tables)
        daemon.on_expired = self.listener.on_expired
        daemon.on_packet = self.listener.on_packet
        daemon.on_copy = self.listener.on_copy
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

    # -- the RPCs (device id and primary already checked) -----------------------------------

    async def set_config(self, request: p4r.SetForwardingPipelineConfigRequest) -> None:
        A = p4r.SetForwardingPipelineConfigRequest
        action = request.action
        if action == A.UNSPECIFIED:
            raise P4RTError(SC.INVALID_ARGUMENT, "SetForwardingPipelineConfig: action is UNSPECIFIED")
        if action == A.COMMIT:
            if self.saved is None:
                raise P4RTError(
                    SC.FAILED_PRECONDITION, "COMMIT: no saved pipeline config (VERIFY_AND_SAVE first)"
                )
            p4info, dev, cookie = self.saved
            await self.load(p4info, dev, cookie)
            self.saved = None
            return
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
            return
        if action == A.VERIFY_AND_SAVE:
            self.saved = (p4info, dev, cookie)
            return
        # VERIFY_AND_COMMIT, RECONCILE_AND_COMMIT (treated as a full replace: all state is lost)
        await self.load(p4info, dev, cookie)

    def get_config(
        self, request: p4r.GetForwardingPipelineConfigRequest
    ) -> p4r.GetForwardingPipelineConfigResponse:
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
