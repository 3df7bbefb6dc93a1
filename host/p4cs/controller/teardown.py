"""Flow teardown: how the entries of finished connections leave the flow table, and how what
they carried reaches the fast-path totals.

* Where the flow table removes the entries of closed connections itself (its P4Info table has
  ``@p4cs_end_expiry``: the DPDK target), an entry a FIN or RST hit (``RemoveFlows.ended``)
  is left alone: the hit moved it to the short expiry profile, it expires a few seconds after
  its last packet, and its idle-timeout notification carries the final counts of its counter
  cell (``counter_data``). Its flow id goes back to the pool then; the target zeroes the cell
  when an entry with that id is inserted again. No RPC for such a connection.
* Every other entry (all of them on BMv2, an entry no FIN/RST hit, removals the CS processor
  wants at once) is deleted. Deletions due at about the same time (within ``BATCH_S``) make
  one batch, whatever the number of connections: its Deletes go first in the controller's
  next flow-install Write (``ControllerApp.write_deletes``), in a Write of their own only
  when no install is due. Their counts
  are harvested after it, with every other flow id removed or superseded within
  ``SUPERSEDED_S``: one Read of their counter cells, one Write resetting the cells (not on a
  target that zeroes a cell at INSERT), then the ids are free again.
* An expiry notification without counts (BMv2, or a target that does not report them)
  harvests like a deletion batch: one Read and one Write per notification.

``counters["teardown_rpcs"]`` counts the Reads and Writes sent for all this (a Delete that
went with installs is no RPC of its own).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from finsy import P4CounterData, P4CounterEntry, Switch, SwitchOptions
from finsy.p4client import P4ClientError
from finsy.grpcutil import GRPCStatusCode
from finsy.proto import p4r

from p4cs.controller.p4rt import decode_match_key
from p4cs.csproc import effects as fx

if TYPE_CHECKING:
    from p4cs.controller.app import ControllerApp

LOG = logging.getLogger("p4cs.controller")

#: Deletions due within this many seconds of each other go in one batch.
BATCH_S = 0.05
#: The flow ids of removed and superseded entries (a closed connection's, whose key a new
#: connection took) are harvested together, this long after the first of them: one counter
#: Read (and, where the target does not zero a cell at INSERT, one counter reset) for all,
#: after their Deletes; there was one Read per removal batch and per flow-install Write, at
#: up to hundreds a second when clients reuse ports, each a gRPC call of 0.2–0.3 ms of the
#: controller's CPU and 0.3–0.47 ms of the P4Runtime server's (bench/grpc_call.py).
#: Meanwhile the traffic samples read their cells with the live flows'.
SUPERSEDED_S = 0.5
#: Longest wait of an expiry for the packet-ins that came before it (some may have been
#: dropped by a full queue).
ORDER_WAIT_S = 2.0
#: The annotation of a flow table whose closed entries expire in the data plane.
END_EXPIRY = "p4cs_end_expiry"


def removes_ended_entries(sw: Switch, table: str) -> bool:
    """Whether the switch's flow table removes the entries a FIN or RST hit by itself."""
    return any(a.name == END_EXPIRY for a in sw.p4info.tables[table].annotations)


class Teardown:
    """The removal side of the flow table, for a ControllerApp."""

    def __init__(self, app: "ControllerApp"):
        self.app = app
        self.end_expiry = False         # set for each session (removes_ended_entries)
        self.ending: set[int] = set()   # flow ids of entries left to expire after a FIN/RST
        self._removals: list[tuple[tuple, tuple | None]] = []   # (key, its owner when asked)
        self._then: list[tuple[int, bytes]] = []     # packets to send after the deletions
        self._again: list = []                       # packet-ins to take after the deletions
        self._superseded: list[int] = []             # flow ids to harvest
        self._superseded_due: asyncio.TimerHandle | None = None   # when they are
        self._superseded_ready = False
        self._event = asyncio.Event()
        self._due: dict[float, list] = {}   # event-loop time (a multiple of BATCH_S) -> keys

    # ------------------------------------------------------------------ scheduling
    def flows_ended(self, e: fx.RemoveFlows) -> None:
        """Execute a RemoveFlows effect of the CS processor."""
        keys = list(e.keys)
        if self.end_expiry and e.ended:
            ended = set(map(tuple, e.ended))
            for k in ended:
                fid = self.app.flow_of.get(k)
                if fid is not None:
                    self.ending.add(fid)
            keys = [k for k in keys if tuple(k) not in ended]
        if not keys and not e.then:
            return
        if e.after <= 0:
            self.remove(keys, e.then)
            return
        loop = asyncio.get_running_loop()
        at = math.ceil((loop.time() + e.after) / BATCH_S) * BATCH_S
        due = self._due.get(at)
        if due is None:
            due = self._due[at] = []
            loop.call_at(at, self._flush, at)
        due.extend(self._owned(keys))

    def _flush(self, at: float) -> None:
        self._removals.extend(self._due.pop(at, []))
        self._event.set()

    def _owned(self, keys: Iterable) -> list[tuple[tuple, tuple | None]]:
        """(key, its owner now: flow id and connection): a removal deletes the entry it was
        meant for, never the entry of a later connection on the same 4-tuple."""
        return [(tuple(k), self._owner(tuple(k))) for k in keys]

    def _owner(self, key: tuple) -> tuple | None:
        fid = self.app.flow_of.get(key)
        return None if fid is None else (fid, self.app.flow_conn.get(fid))

    def remove(self, keys: list, then: Iterable[fx.PacketOut] = (), again: Iterable = ()) -> None:
        """Delete the entries of these keys with the next batch; send ``then`` after it, and
        hand the packet-ins ``again`` to the CS processor."""
        self._removals.extend(self._owned(keys))
        self._then.extend((p.port, p.frame) for p in then)
        self._again.extend(again)
        self._event.set()

    def superseded(self, fids: list[int]) -> None:
        """These flow ids belonged to closed connections whose keys a new connection took, or
        to entries just deleted: harvest them with the others due within ``SUPERSEDED_S`` (an
        expiry notification of their entries, if one comes, is stale)."""
        self._superseded.extend(fids)
        if self._superseded_due is None and not self._superseded_ready:
            self._superseded_due = asyncio.get_running_loop().call_later(
                SUPERSEDED_S, self._harvest_superseded)

    def _harvest_superseded(self) -> None:
        self._superseded_due = None
        self._superseded_ready = True
        self._event.set()

    # ------------------------------------------------------------------ deletions
    async def run(self, sw: Switch) -> None:
        """Delete what is queued, one batch per wake-up."""
        app = self.app
        while True:
            await self._event.wait()
            self._event.clear()
            keys, self._removals = self._removals, []
            then, self._then = self._then, []
            again, self._again = self._again, []
            gone = []
            if self._superseded_ready:
                self._superseded_ready = False
                gone, self._superseded = self._superseded, []
            updates, fids, held, dkeys = [], [], [], set()
            for k, asked in keys:
                if self._owner(k) != asked:
                    continue        # another connection's entry now (or removed meanwhile)
                fid = app.flow_of.get(k)
                if fid is not None:
                    fids.append(fid)
                    held.append(k)
                updates.append(app.enc.delete_raw(fx.FlowKey(*k)))
                dkeys.add(k)
            if gone:
                await self.harvest(sw, gone)
            if fids:
                # Their counts are read with the next batch of superseded flow ids, after the
                # Delete (the cells stay until the ids are freed): the removal, and the packets
                # that wait for it (the SYN-ACK of a reused port), wait for no Read.
                for k, fid in zip(held, fids):
                    if app.flow_of.get(k) == fid:
                        del app.flow_of[k]
                self.superseded(fids)
            if updates:
                # With the next flow-install Write (no RPC of its own), or alone.
                try:
                    errors, merged = await app.write_deletes(sw, dkeys, updates)
                except (P4ClientError, ConnectionError) as exc:
                    app.counters["teardown_rpcs"] += 1
                    LOG.warning("flow removal failed: %s", exc)
                else:
                    if not merged:
                        app.counters["teardown_rpcs"] += 1
                    # NOT_FOUND: aged out meanwhile
                    bad = [e for e in errors.values()
                           if e.canonical_code != GRPCStatusCode.NOT_FOUND]
                    if bad:
                        LOG.warning("flow removal failed for %d of %d entries: %s", len(bad),
                                    len(updates), bad[0].message)
                    app.counters["flows_removed"] += len(updates) - len(bad)
            if then:
                await app._send_packets(sw, then)
            if again:
                await app._handle_packets(again, retaken=True)

    async def harvest(self, sw: Switch, fids: list[int]) -> None:
        """Add what these flows (no longer in ``flow_of``; the traffic samples read them as
        long as they are in ``book``) carried in the fast path to the totals, zero their
        counters (one Read and one Write for all of them; no Write where the data plane ends
        entries itself, ``end_expiry``: there an INSERT with a flow id zeroes its cell) and
        free their ids."""
        app = self.app
        app.counters["teardown_rpcs"] += 1
        counts = await app._flow_counters(sw, fids)
        for fid in fids:
            if fid in counts:
                self._account(fid, *counts[fid])
        if not fids:
            return
        if not self.end_expiry:
            app.counters["teardown_rpcs"] += 1
            try:
                await sw.modify([P4CounterEntry("flow_counter", index=f, data=P4CounterData())
                                 for f in fids])
            except P4ClientError as exc:
                LOG.warning("cannot reset flow counters: %s", exc)
        for fid in fids:
            self.release(fid)

    def _account(self, fid: int, pkts: int, nbytes: int) -> None:
        app = self.app
        app.counters["fastpath_packets"] += pkts
        app.counters["fastpath_bytes"] += nbytes
        app.book.done(fid, pkts, nbytes)

    def release(self, fid: int) -> None:
        """Free flow id ``fid`` (its entry is gone, or was never written). It leaves
        ``ending`` too: an id still there when a new flow takes it would make that flow's
        expiry look like the end of a connection the engine had closed, and the engine would
        never hear of it."""
        self.ending.discard(fid)
        self.app.flow_ids.put(fid)

    # ------------------------------------------------------------------ expiry
    async def expired(self, sw: Switch, mark: int, note: p4r.IdleTimeoutNotification) -> None:
        """Flow entries the data plane aged out (one notification), once the controller has
        taken ``mark`` packet-ins (RawTimeoutSwitch) and every FIN/RST copy waiting on the
        direct packet channel. Those left to expire after a FIN/RST count
        as removed, the others as idle timeouts; counts that came with the notification go to
        the totals at once, the others are read (one batch). BMv2 keeps an expired entry until
        it is deleted: those of another controller are deleted here (its own ones when the CS
        processor says so)."""
        app = self.app
        deadline = time.monotonic() + ORDER_WAIT_S
        while app.counters["packet_in"] < mark and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        await app.packets.flush_copies()    # the same for copies on the direct channel
        done, unread, adopted = [], [], []
        flow_of, ending, counters = app.flow_of, self.ending, app.counters
        for vals, nfid, counts in app.enc.expired_entries(note):
            if len(vals) != KEY_FIELDS:
                continue                    # not the flow table's shape
            cur = flow_of.get(vals)         # its keys: plain tuples, as vals
            if nfid is not None and cur is not None and nfid != cur:
                # The entry of a closed connection whose key a new connection has taken
                # (Teardown.superseded harvested its flow id): not the new one's expiry.
                continue
            fid = flow_of.pop(vals, None)
            if fid is not None:
                if fid not in ending:
                    # the entry of the key's connection: the engine ends it (an entry left to
                    # expire after a FIN/RST belongs to a connection the engine closed already,
                    # its tombstone on a timer of its own: Engine.flow_expired would do nothing)
                    done.append(fx.FlowKey(*vals))
            else:
                # No connection of this controller holds the key now (a previous controller's
                # entry, or one whose removal or takeover came first): the engine must not
                # hear of it, or it would end a new connection on the same 4-tuple that has
                # not installed its flows yet.
                fid = nfid
                if fid is not None and app.flow_ids.is_adopted(fid):
                    adopted.append(fx.FlowKey(*vals))
                else:
                    fid = None
            if fid is None:
                counters["idle_timeouts"] += 1
                continue
            counters["flows_removed" if fid in ending else "idle_timeouts"] += 1
            if counts is not None:
                self._account(fid, *counts)
                self.release(fid)
            else:
                unread.append(fid)
        if adopted:
            self.remove(adopted)
        if unread:
            await self.harvest(sw, unread)
        now = time.monotonic()
        for key in done:
            await app.to_engine(key, "flow_expired", key, now)


#: Fields of the flow table's key (fx.FlowKey).
KEY_FIELDS = len(fx.FlowKey._fields)


def key_of(entry: p4r.TableEntry) -> fx.FlowKey | None:
    return flow_key(decode_match_key(entry))


def flow_key(vals: tuple[int, ...]) -> fx.FlowKey | None:
    """The flow key of an entry's key values (None: not the flow table's shape)."""
    try:
        return fx.FlowKey(*vals)
    except (TypeError, ValueError):
        return None


class RawTimeoutSwitch(Switch):
    """finsy's Switch, but ``read_idle_timeouts`` yields ``(mark, notification)`` with the
    IdleTimeoutNotification protobuf itself: finsy decodes every entry of a notification into
    Python objects first, which costs more than all the rest of a connection's teardown (about
    60-230 µs per entry, docs/benchmarks.md), and the controller needs only the key, the flow id
    and the counts.

    ``mark`` is the number of packet-ins the controller will have taken (``handled()``) once it
    has taken every one that came before the notification: finsy queues the two kinds apart, and
    a FIN copy must reach the CS processor before the expiry its hit caused (Teardown.expired
    waits for it)."""

    def __init__(self, name: str, address: str, options: SwitchOptions, handled: Callable[[], int]):
        super().__init__(name, address, options)
        self._handled = handled

    def _stream_timeout_message(self, msg: p4r.StreamMessageResponse) -> None:
        queue = self._timeout_queue
        note = msg.idle_timeout_notification
        if queue is not None and not queue.full():
            mark = self._handled() + sum(q.qsize() for _, q in self._packet_queues)
            queue.put_nowait((mark, note))
        else:
            LOG.warning("idle-timeout notification of %d entries dropped: queue full",
                        len(note.table_entry))
