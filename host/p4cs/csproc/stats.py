"""Counters of the CS processor, exported by the controller as metrics.

Monotonic counters end in nothing special; gauges are listed in ``GAUGES``.
"""

from __future__ import annotations

COUNTERS = (
    "packets",              # frames given to handle()
    "acks_superseded",      # handshake ACKs not handled: the request in the same batch opened it
    "bad_frames",           # truncated / bad checksum / not IPv4-TCP / fragments
    "not_for_us",           # valid TCP that matches no service and no connection
    "syn_received",
    "syncookies_sent",
    "syncookies_invalid",   # ACKs without state whose cookie did not validate
    "accepted",             # handshakes completed (valid cookie, state created)
    "decided",              # requests classified
    "spliced",              # server handshakes completed, flows emitted
    "rejected",             # 403 (rule reject)
    "redirected",           # 302
    "no_server",            # 503: no group / no usable server / server unreachable
    "server_refused",       # server RST to our SYN
    "server_timeouts",      # server SYN or relay retransmissions exhausted
    "redispatched",         # retried on another server of the group
    "limit_header",         # 431
    "limit_body",           # 413
    "limit_timeout",        # 408 (slowloris)
    "limit_half_bound",     # RST: too many half-bound connections
    "limit_half_bound_client",  # RST: too many half-bound connections from one address
    "evicted_idle",         # RST to an idle half-bound connection of the biggest holder
    "limit_ooo",            # out-of-order segments dropped (queue full)
    "limit_memory",         # segments dropped: max_buffered_bytes reached
    "bad_requests",         # 400
    "bad_hellos",           # TLS services: no ClientHello (not TLS, malformed): RST
    "client_resets",        # RST from the client before splicing
    "client_early_close",   # FIN from the client before a complete request
    "sw_spliced",           # packets of spliced connections rewritten in software
    "teardowns",            # connections whose flows were scheduled for removal
    "reincarnations",       # new connections on the 4-tuple of a closed one (TIME_WAIT)
    "flows_expired",        # idle expiry notifications
    "flows_lost",           # spliced connections whose entries vanished (switch restart): reset
    "half_closed_idle",     # spliced connections ended idle after one side's FIN (the other's unseen)
    "install_failures",
    "duplicate_segments",
    "out_of_order",
    "wscale_mismatch",      # server SYN-ACK scale != the scale promised to the client
    "sessions_not_learned",  # TLS sessions, cookies not learned: max_sessions templates in use
    "cookies_inserted",     # cookie-insert: Set-Cookie lines inserted into first responses
    "bad_responses",        # cookie-insert, NONSTICKY: a response that is not HTTP (RST)
    "limit_response_header",  # cookie services: first response header over 16 KiB (unchanged)
    "pooled_opened",        # server pools: connections opened (handshake done) in advance
    "pooled_used",          # server pools: client connections spliced onto one of them
    "pooled_closed",        # server pools: idle ones closed (max_age, server FIN/RST, down)
    "pooled_failed",        # server pools: SYNs refused or unanswered (connection dropped)
    "nonsticky_requests",   # NONSTICKY connections: later requests classified on their own
    "rebinds",              # NONSTICKY connections: requests moved to another server
    "nonsticky_sticky",     # NONSTICKY connections that went on STICKY (upgrade, until close)
)

GAUGES = ("half_bound", "spliced_active", "buffered_bytes", "pooled_idle")


class Stats:
    __slots__ = COUNTERS + GAUGES + ("bad_kinds",)

    def __init__(self):
        for name in COUNTERS + GAUGES:
            setattr(self, name, 0)
        self.bad_kinds: dict[str, int] = {}

    def as_dict(self) -> dict[str, int]:
        d = {name: getattr(self, name) for name in COUNTERS + GAUGES}
        for k, v in self.bad_kinds.items():
            d[f"bad_frames_{k}"] = v
        return d
