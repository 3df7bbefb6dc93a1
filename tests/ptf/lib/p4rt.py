"""A small synchronous P4Runtime client for the PTF conformance suite.

Only what a conformance test needs, with no cleverness between the test and the wire: every
call is one gRPC request, errors come back as the P4Runtime canonical codes the target sent.

* `P4Info`: name -> id lookups (tables, match fields, actions, params, counters, controller
  packet metadata), loaded from the P4Info file the target runs.
* `Client`: one gRPC channel + one StreamChannel (read by a thread into queues), master
  arbitration with a given election id, Write/Read of table entries by names, counters, clone
  sessions, packet-out, packet-in / idle-timeout notifications with timeouts, pipeline push.

Protobufs and stubs are finsy's generated ones (`finsy.proto`), the same the target uses.
"""

from __future__ import annotations

import hashlib
import ipaddress
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import grpc
from finsy.proto import p4i, p4r, rpc_status
from finsy.proto.p4.v1 import p4runtime_pb2_grpc
from google.protobuf import text_format

SC = grpc.StatusCode
_CODE_BY_INT = {sc.value[0]: sc for sc in grpc.StatusCode}


def status_code(canonical: int) -> grpc.StatusCode:
    return _CODE_BY_INT.get(canonical, SC.UNKNOWN)


# ------------------------------------------------------------------------------------------
# Value encoding
# ------------------------------------------------------------------------------------------


def to_int(value: Any) -> int:
    """int, bytes, "a.b.c.d" or "aa:bb:cc:dd:ee:ff" -> int."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    if isinstance(value, str):
        if value.count(":") == 5:
            return int(value.replace(":", ""), 16)
        if value.count(".") == 3:
            return int(ipaddress.IPv4Address(value))
        return int(value, 0)
    raise TypeError(f"cannot encode {value!r}")


def canonical(value: Any, bitwidth: int | None = None) -> bytes:
    """P4Runtime canonical byte string (no leading zero bytes, at least one byte)."""
    x = to_int(value)
    if x < 0:
        raise ValueError(f"negative value {x}")
    if bitwidth is not None and x >> bitwidth:
        raise ValueError(f"value {x:#x} does not fit in {bitwidth} bits")
    return x.to_bytes(max(1, (x.bit_length() + 7) // 8), "big")


# ------------------------------------------------------------------------------------------
# P4Info
# ------------------------------------------------------------------------------------------


def load_p4info(path: str | Path) -> p4i.P4Info:
    data = Path(path).read_bytes()
    info = p4i.P4Info()
    if str(path).endswith((".bin", ".pb")):
        info.ParseFromString(data)
    else:
        text_format.Parse(data.decode(), info)
    return info


def _names(preamble) -> list[str]:
    out = [preamble.name, preamble.alias]
    out.append(preamble.name.rsplit(".", 1)[-1])
    return [n for n in out if n]


class P4Info:
    """Lookups by name (full name, alias or last dotted component) over a P4Info message."""

    def __init__(self, info: p4i.P4Info):
        self.info = info
        self.tables: dict[str, Any] = {}
        self.actions: dict[str, Any] = {}
        self.counters: dict[str, Any] = {}
        self.cpm: dict[str, Any] = {}
        self.table_by_id: dict[int, Any] = {}
        self.action_by_id: dict[int, Any] = {}
        for t in info.tables:
            self.table_by_id[t.preamble.id] = t
            for n in _names(t.preamble):
                self.tables.setdefault(n, t)
        for a in info.actions:
            self.action_by_id[a.preamble.id] = a
            for n in _names(a.preamble):
                self.actions.setdefault(n, a)
        for c in list(info.counters) + list(info.direct_counters):
            for n in _names(c.preamble):
                self.counters.setdefault(n, c)
        for m in info.controller_packet_metadata:
            for n in _names(m.preamble):
                self.cpm.setdefault(n, m)

    @classmethod
    def load(cls, path: str | Path) -> "P4Info":
        return cls(load_p4info(path))

    def table(self, name: str):
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r} in the P4Info (have {sorted(self.tables)})") from None

    def action(self, name: str):
        try:
            return self.actions[name]
        except KeyError:
            raise KeyError(f"no action {name!r} in the P4Info") from None

    def counter(self, name: str):
        try:
            return self.counters[name]
        except KeyError:
            raise KeyError(f"no counter {name!r} in the P4Info (have {sorted(self.counters)})") from None

    @staticmethod
    def match_field(table, name: str):
        for mf in table.match_fields:
            if mf.name == name or mf.name.rsplit(".", 1)[-1] == name:
                return mf
        raise KeyError(f"table {table.preamble.name!r} has no match field {name!r}")

    @staticmethod
    def param(action, name: str):
        for p in action.params:
            if p.name == name:
                return p
        raise KeyError(f"action {action.preamble.name!r} has no parameter {name!r}")

    def packet_metadata(self, header: str) -> dict[str, Any]:
        m = self.cpm.get(header)
        if m is None:
            raise KeyError(f"no controller_packet_metadata {header!r} in the P4Info")
        return {md.name: md for md in m.metadata}

    # -- entry building --------------------------------------------------------------------

    def table_entry(
        self,
        table: str,
        match: dict[str, Any] | None = None,
        action: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        idle_timeout_ns: int = 0,
        is_default: bool = False,
    ) -> p4r.TableEntry:
        """match values: exact -> value; lpm -> (value, prefix_len); ternary -> (value, mask);
        optional -> value. Values are ints, bytes, dotted IPv4 or colon MAC strings."""
        t = self.table(table)
        te = p4r.TableEntry(table_id=t.preamble.id, priority=priority)
        if is_default:
            te.is_default_action = True
        if idle_timeout_ns:
            te.idle_timeout_ns = idle_timeout_ns
        for name, value in (match or {}).items():
            mf = self.match_field(t, name)
            fm = te.match.add(field_id=mf.id)
            MT = p4i.MatchField
            if mf.match_type == MT.EXACT:
                fm.exact.value = canonical(value, mf.bitwidth)
            elif mf.match_type == MT.LPM:
                v, plen = value
                full = (1 << mf.bitwidth) - 1
                mask = full ^ ((1 << (mf.bitwidth - plen)) - 1)
                fm.lpm.value = canonical(to_int(v) & mask, mf.bitwidth)
                fm.lpm.prefix_len = plen
            elif mf.match_type == MT.TERNARY:
                v, m = value
                fm.ternary.value = canonical(to_int(v) & to_int(m), mf.bitwidth)
                fm.ternary.mask = canonical(m, mf.bitwidth)
            elif mf.match_type == MT.OPTIONAL:
                fm.optional.value = canonical(value, mf.bitwidth)
            else:
                raise ValueError(f"unsupported match type of {name!r}")
        if action is not None:
            a = self.action(action)
            te.action.action.action_id = a.preamble.id
            given = dict(params or {})
            for p in a.params:
                if p.name not in given:
                    raise KeyError(f"action {action!r}: parameter {p.name!r} missing")
                te.action.action.params.add(param_id=p.id, value=canonical(given.pop(p.name), p.bitwidth))
            if given:
                raise KeyError(f"action {action!r} has no parameter(s) {sorted(given)}")
        return te

    def describe_entry(self, te: p4r.TableEntry) -> dict[str, Any]:
        """A TableEntry as plain names and ints (for assertions and messages)."""
        t = self.table_by_id.get(te.table_id)
        out: dict[str, Any] = {"table": t.preamble.name if t else te.table_id, "match": {}}
        fields = {mf.id: mf.name for mf in t.match_fields} if t else {}
        for fm in te.match:
            kind = fm.WhichOneof("field_match_type")
            v = getattr(fm, kind)
            name = fields.get(fm.field_id, fm.field_id)
            if kind == "lpm":
                out["match"][name] = (to_int(v.value), v.prefix_len)
            elif kind == "ternary":
                out["match"][name] = (to_int(v.value), to_int(v.mask))
            else:
                out["match"][name] = to_int(v.value)
        if te.HasField("action") and te.action.WhichOneof("type") == "action":
            a = self.action_by_id.get(te.action.action.action_id)
            pnames = {p.id: p.name for p in a.params} if a else {}
            out["action"] = a.preamble.name if a else te.action.action.action_id
            out["params"] = {pnames.get(p.param_id, p.param_id): to_int(p.value) for p in te.action.action.params}
        if te.idle_timeout_ns:
            out["idle_timeout_ns"] = te.idle_timeout_ns
        return out


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


class P4RuntimeError(Exception):
    """A failed RPC. `code` is the gRPC status of the call; for Write, `errors` holds one
    (grpc.StatusCode, message) per update (OK for the updates that succeeded)."""

    def __init__(self, code: grpc.StatusCode, message: str, errors: list[tuple[grpc.StatusCode, str]] | None = None):
        self.code = code
        self.message = message
        self.errors = errors or []
        detail = ""
        if self.errors:
            detail = "; ".join(f"#{i}: {c.name} {m}" for i, (c, m) in enumerate(self.errors) if c != SC.OK)
        super().__init__(f"{code.name}: {message}" + (f" [{detail}]" if detail else ""))

    @property
    def codes(self) -> list[grpc.StatusCode]:
        return [c for c, _ in self.errors]

    @property
    def first_code(self) -> grpc.StatusCode:
        """The code of the first failed update (the call's code when there are no details)."""
        for c, _ in self.errors:
            if c != SC.OK:
                return c
        return self.code


def _rpc_error(e: grpc.RpcError, n_updates: int = 0) -> P4RuntimeError:
    code = e.code() if hasattr(e, "code") else SC.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    errors: list[tuple[grpc.StatusCode, str]] = []
    md = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    for k, v in md or ():
        if k == "grpc-status-details-bin":
            st = rpc_status.Status.FromString(v)
            for anyd in st.details:
                pe = p4r.Error()
                if anyd.Unpack(pe):
                    errors.append((status_code(pe.canonical_code), pe.message))
    if not errors and n_updates:
        # No per-update details: the whole request failed with one code.
        errors = [(code, details or "")] * n_updates
    return P4RuntimeError(code, details or "", errors)


# ------------------------------------------------------------------------------------------
# Stream messages
# ------------------------------------------------------------------------------------------


@dataclass
class PacketIn:
    payload: bytes
    metadata: dict[str, int] = field(default_factory=dict)
    received: float = 0.0

    def __repr__(self) -> str:
        return f"PacketIn(metadata={self.metadata}, {len(self.payload)} bytes: {self.payload[:64].hex()}...)"


_CLOSE = object()


class Client:
    """One P4Runtime client: a channel and a stream, synchronous calls.

    `arbitrate(election_id)` sends a MasterArbitrationUpdate and returns the status the target
    answered for this client (grpc.StatusCode.OK = primary). Packet-ins, idle-timeout
    notifications, arbitration updates and stream errors are queued by a reader thread.
    """

    def __init__(self, addr: str, device_id: int, p4info: P4Info, *, role: str = "", connect_timeout: float = 60.0):
        self.addr = addr
        self.device_id = device_id
        self.p4info = p4info
        self.role = role
        self.election_id: int | None = None
        self.channel = grpc.insecure_channel(
            addr,
            options=[
                ("grpc.max_receive_message_length", 256 << 20),
                ("grpc.max_send_message_length", 256 << 20),
                ("grpc.enable_http_proxy", 0),
                # A failed batch carries one p4.v1.Error per update in the trailing metadata
                # (grpc-status-details-bin): ~35 bytes each, far above gRPC's 16 KiB default.
                ("grpc.max_metadata_size", 16 << 20),
                ("grpc.absolute_max_metadata_size", 16 << 20),
            ],
        )
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise ConnectionError(f"no P4Runtime server answered on {addr} within {connect_timeout:.0f} s") from None
        self.stub = p4runtime_pb2_grpc.P4RuntimeStub(self.channel)
        self._requests: queue.Queue = queue.Queue()
        self.packet_ins: queue.Queue[PacketIn] = queue.Queue()
        self.arbitrations: queue.Queue = queue.Queue()
        self.idle_notifications: queue.Queue = queue.Queue()
        self.stream_errors: queue.Queue = queue.Queue()
        self.stream_closed: BaseException | None = None
        self._stream = self.stub.StreamChannel(self._request_iter())
        self._reader = threading.Thread(target=self._read_stream, name=f"p4rt-stream-{addr}", daemon=True)
        self._reader.start()
        self._pin_fields = self._md_by_id("packet_in")
        self._pout_fields = self._md_by_name("packet_out")

    # -- stream -----------------------------------------------------------------------------

    def _md_by_id(self, header: str) -> dict[int, str]:
        try:
            return {md.id: name for name, md in self.p4info.packet_metadata(header).items()}
        except KeyError:
            return {}

    def _md_by_name(self, header: str) -> dict[str, Any]:
        try:
            return self.p4info.packet_metadata(header)
        except KeyError:
            return {}

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is _CLOSE:
                return
            yield item

    def _read_stream(self) -> None:
        try:
            for msg in self._stream:
                kind = msg.WhichOneof("update")
                if kind == "packet":
                    md = {self._pin_fields.get(m.metadata_id, str(m.metadata_id)): to_int(m.value) for m in msg.packet.metadata}
                    self.packet_ins.put(PacketIn(bytes(msg.packet.payload), md, time.monotonic()))
                elif kind == "arbitration":
                    self.arbitrations.put(msg.arbitration)
                elif kind == "idle_timeout_notification":
                    self.idle_notifications.put(msg.idle_timeout_notification)
                elif kind == "error":
                    self.stream_errors.put(msg.error)
        except grpc.RpcError as e:
            self.stream_closed = e
        except Exception as e:  # noqa: BLE001
            self.stream_closed = e
        else:
            self.stream_closed = EOFError("stream ended")

    @property
    def alive(self) -> bool:
        return self.stream_closed is None

    def send_arbitration(self, election_id: int) -> None:
        """Send a MasterArbitrationUpdate with `election_id`; the target's answer, if it sends
        one, is read with `arbitration_answer`."""
        self.election_id = election_id
        arb = p4r.MasterArbitrationUpdate(device_id=self.device_id)
        arb.election_id.high = election_id >> 64
        arb.election_id.low = election_id & ((1 << 64) - 1)
        if self.role:
            arb.role.name = self.role
        # Notices of earlier primary changes may be queued: the answer to this request is the
        # first arbitration message that arrives after it.
        while not self.arbitrations.empty():
            self.arbitrations.get_nowait()
        self._requests.put(p4r.StreamMessageRequest(arbitration=arb))

    def arbitration_answer(self, timeout: float) -> grpc.StatusCode | None:
        """The status the target gave this client in answer to the last update sent (OK =
        primary), or None if no answer came within `timeout` s. A notice that names a primary
        election id below the one sent is older than the update (it was on its way when the
        update was sent) and is skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                a = self.arbitrations.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.stream_closed is not None:
                    raise ConnectionError(f"stream closed during arbitration: {self.stream_closed}") from None
                continue
            named = (a.election_id.high << 64) | a.election_id.low
            if a.HasField("election_id") and self.election_id is not None and named < self.election_id:
                continue
            return status_code(a.status.code)

    def arbitrate(self, election_id: int, timeout: float = 10.0) -> grpc.StatusCode:
        """Send a MasterArbitrationUpdate; return the status the target gave this client."""
        self.send_arbitration(election_id)
        st = self.arbitration_answer(timeout)
        if st is None:
            raise TimeoutError(f"no arbitration answer within {timeout} s (stream: {self.stream_closed})")
        return st

    def packet_out(self, payload: bytes, egress_port: int, **extra: int) -> None:
        po = p4r.PacketOut(payload=bytes(payload))
        values = {"egress_port": egress_port}
        values.update(extra)
        for name, md in self._pout_fields.items():
            po.metadata.add(metadata_id=md.id, value=canonical(values.get(name, 0), md.bitwidth))
        self._requests.put(p4r.StreamMessageRequest(packet=po))

    def get_packet_in(self, timeout: float = 2.0) -> PacketIn | None:
        try:
            return self.packet_ins.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_idle_notification(self, timeout: float) -> p4r.IdleTimeoutNotification | None:
        try:
            return self.idle_notifications.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_stream_error(self, timeout: float) -> p4r.StreamError | None:
        try:
            return self.stream_errors.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> dict[str, int]:
        n = {}
        for name in ("packet_ins", "idle_notifications", "stream_errors", "arbitrations"):
            q = getattr(self, name)
            k = 0
            while True:
                try:
                    q.get_nowait()
                    k += 1
                except queue.Empty:
                    break
            n[name] = k
        return n

    def close(self) -> None:
        self._requests.put(_CLOSE)
        try:
            self._stream.cancel()
        except Exception:  # noqa: BLE001
            pass
        self.channel.close()
        self._reader.join(timeout=2)

    # -- pipeline ---------------------------------------------------------------------------

    def _eid(self, msg) -> None:
        if self.election_id is not None:
            msg.election_id.high = self.election_id >> 64
            msg.election_id.low = self.election_id & ((1 << 64) - 1)
        if self.role:
            msg.role = self.role

    def get_pipeline_cookie(self) -> int | None:
        """The cookie of the running pipeline; None if it has none; raises if no pipeline."""
        req = p4r.GetForwardingPipelineConfigRequest(
            device_id=self.device_id, response_type=p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY
        )
        try:
            resp = self.stub.GetForwardingPipelineConfig(req, timeout=30)
        except grpc.RpcError as e:
            raise _rpc_error(e) from None
        return resp.config.cookie.cookie if resp.config.HasField("cookie") else None

    def set_pipeline(self, device_config: bytes, cookie: int | None = None, timeout: float = 600.0) -> None:
        cfg = p4r.ForwardingPipelineConfig(p4_device_config=device_config)
        cfg.p4info.CopyFrom(self.p4info.info)
        if cookie is not None:
            cfg.cookie.cookie = cookie
        req = p4r.SetForwardingPipelineConfigRequest(
            device_id=self.device_id, action=p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT, config=cfg
        )
        self._eid(req)
        try:
            self.stub.SetForwardingPipelineConfig(req, timeout=timeout)
        except grpc.RpcError as e:
            raise _rpc_error(e) from None

    @staticmethod
    def pipeline_cookie(p4info: P4Info, device_config: bytes) -> int:
        h = hashlib.sha256()
        h.update(p4info.info.SerializeToString(deterministic=True))
        h.update(device_config)
        return int.from_bytes(h.digest()[:8], "big")

    # -- Write ------------------------------------------------------------------------------

    def write(self, updates: Iterable[p4r.Update], timeout: float = 60.0) -> None:
        """Send one WriteRequest. Raises P4RuntimeError (with per-update errors) on failure."""
        req = p4r.WriteRequest(device_id=self.device_id, updates=list(updates))
        self._eid(req)
        try:
            self.stub.Write(req, timeout=timeout)
        except grpc.RpcError as e:
            raise _rpc_error(e, len(req.updates)) from None

    def write_codes(self, updates: list[p4r.Update], timeout: float = 60.0) -> list[grpc.StatusCode]:
        """Like write(), but returns one code per update instead of raising on update errors."""
        try:
            self.write(updates, timeout)
        except P4RuntimeError as e:
            if len(e.errors) != len(updates):
                raise
            return e.codes
        return [SC.OK] * len(updates)

    @staticmethod
    def update(kind: str, entity: p4r.Entity) -> p4r.Update:
        t = {"insert": p4r.Update.INSERT, "modify": p4r.Update.MODIFY, "delete": p4r.Update.DELETE}[kind]
        return p4r.Update(type=t, entity=entity)

    @staticmethod
    def table_update(kind: str, te: p4r.TableEntry) -> p4r.Update:
        return Client.update(kind, p4r.Entity(table_entry=te))

    def insert(self, te: p4r.TableEntry) -> None:
        self.write([self.table_update("insert", te)])

    def modify(self, te: p4r.TableEntry) -> None:
        self.write([self.table_update("modify", te)])

    @staticmethod
    def key_only(te: p4r.TableEntry) -> p4r.TableEntry:
        """`te` as a DELETE names it: by its key only."""
        d = p4r.TableEntry()
        d.CopyFrom(te)
        d.ClearField("action")
        d.idle_timeout_ns = 0
        return d

    def delete(self, te: p4r.TableEntry) -> None:
        self.write([self.table_update("delete", self.key_only(te))])

    # -- Read -------------------------------------------------------------------------------

    def read(self, entities: list[p4r.Entity], timeout: float = 60.0) -> list[p4r.Entity]:
        req = p4r.ReadRequest(device_id=self.device_id, entities=entities)
        if self.role:
            req.role = self.role
        out: list[p4r.Entity] = []
        try:
            for resp in self.stub.Read(req, timeout=timeout):
                out.extend(resp.entities)
        except grpc.RpcError as e:
            raise _rpc_error(e) from None
        return out

    def read_table(self, table: str | None = None, match: dict[str, Any] | None = None) -> list[p4r.TableEntry]:
        if table is None:
            te = p4r.TableEntry()
        else:
            te = self.p4info.table_entry(table, match)
        return [e.table_entry for e in self.read([p4r.Entity(table_entry=te)])]

    def read_counter(self, name: str, index: int) -> tuple[int, int]:
        c = self.p4info.counter(name)
        ce = p4r.CounterEntry(counter_id=c.preamble.id)
        ce.index.index = index
        ents = self.read([p4r.Entity(counter_entry=ce)])
        if len(ents) != 1:
            raise AssertionError(f"counter {name}[{index}]: expected one entry, got {len(ents)}")
        d = ents[0].counter_entry.data
        return d.packet_count, d.byte_count

    # -- packet replication ---------------------------------------------------------------------

    @staticmethod
    def clone_session(session_id: int, egress_ports: list[int], instance: int = 1) -> p4r.Entity:
        cs = p4r.CloneSessionEntry(session_id=session_id)
        for p in egress_ports:
            cs.replicas.add(egress_port=p, instance=instance)
        return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(clone_session_entry=cs))
