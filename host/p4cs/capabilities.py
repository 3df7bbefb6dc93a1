"""What the content switch can do: the one list that the rule parser, the configuration
validator, ``p4cs rules check``, the CS processor and the documentation (docs/rules.md,
docs/usage.md) read.  A rule set or a configuration naming anything else is rejected when
it is loaded.  Dependency-free on purpose: everything may import it."""

from __future__ import annotations

#: Schedulers (ipvsadm ``-s``) of a server group: name -> what it does.
SCHEDULERS: dict[str, str] = {
    "rr": "round robin: servers in turn",
    "wrr": "weighted round robin (smooth, as nginx): shares proportional to weights",
    "lc": "least connections: fewest active connections",
    "wlc": "weighted least connections: fewest active connections per unit of weight",
    "sed": "shortest expected delay: fewest (active + 1) per unit of weight",
    "nq": "never queue: an idle server if there is one, else as sed",
    "sh": "source hashing: a client address always maps to the same server",
    "dh": "destination hashing: a virtual address always maps to the same server",
    "maglev": "Maglev hashing of the client address: a server change moves few clients",
}

#: The rule language's ``loadBalance(group, algorithm)`` names -> scheduler.
ALGORITHMS: dict[str, str] = {
    "roundRobin": "rr",
    "weightedRoundRobin": "wrr",
    "leastConnections": "lc",
    "weightedLeastConnections": "wlc",
    "shortestExpectedDelay": "sed",
    "neverQueue": "nq",
    "sourceHash": "sh",
    "destinationHash": "dh",
    "maglev": "maglev",
}

#: Algorithm names of the language the switch does not implement -> why.
UNSUPPORTED_ALGORITHMS: dict[str, str] = {
    "random": "not implemented; roundRobin spreads as evenly",
    "fastestResponse": "needs response times, which the switch does not see once a "
                       "connection is spliced",
    "adaptive": "needs load reports from the servers, which the switch does not receive",
    "fixed": "not implemented; forward(server) sends to one server",
}

#: Actions of the rule language.
ACTIONS: tuple[str, ...] = ("routeTo", "forward", "loadBalance", "reject", "redirect", "log")

#: Stickiness words of ``routeTo`` / ``forward`` -> sticky.  STICKY binds the connection to
#: its server; NONSTICKY for one request: every later request of the keep-alive connection is
#: classified on its own (docs/csproc.md section 17).
STICKINESS: dict[str, bool] = {"STICKY": True, "NONSTICKY": False, "NOSTICKY": False,
                               "NON_STICKY": False, "NON-STICKY": False}

#: Service protocols -> the field protocols (``p4cs.rules.model.field_protocol``) whose
#: fields their requests have.  Fields of no protocol (client.ip, vip, bitmatch, ...)
#: exist for every service.  A ``tls`` service decides on the ClientHello (SNI, ALPN,
#: session id) and does not terminate TLS.
PROTOCOL_FIELDS: dict[str, tuple[str, ...]] = {
    "http": ("http",),
    "tls": ("tls",),
    "smtp": ("smtp",),
    "pop3": ("pop3",),
    "imap": ("imap",),
}

#: Service protocols without content rules, balanced entirely in the data plane (L4
#: virtual services: p4src/include/l4_service.p4): a Maglev table of the group's servers
#: picks the server from the 5-tuple, transparent mode (destination translation) only.
L4_PROTOCOLS: dict[str, str] = {
    "tcp": "TCP connections, balanced in the data plane (no content rules)",
    "udp": "UDP flows, balanced in the data plane, with their own idle timeout",
}

#: Service persistence (ipvsadm -p): by client address (under a netmask); for a tls
#: service, by the TLS session a ClientHello resumes; for an http service, by a cookie the
#: servers set (learned from their responses) or one the switch inserts (the server's id).
PERSISTENCE: tuple[str, ...] = ("client-ip", "tls-session", "cookie-learn", "cookie-insert")

#: Health checks of a server group.
HEALTH_CHECKS: dict[str, str] = {
    "tcp": "a TCP handshake with the server succeeds",
    "http": "an HTTP GET of 'path' answers the expected status",
}


def algorithm(name: str) -> str:
    """The rule language's spelling of algorithm ``name`` (case-insensitive); ValueError
    saying why when the switch does not implement it."""
    low = name.lower()
    for known in ALGORITHMS:
        if known.lower() == low:
            return known
    for known, why in UNSUPPORTED_ALGORITHMS.items():
        if known.lower() == low:
            raise ValueError(f"load-balancing algorithm {known!r} is not supported: {why}")
    raise ValueError(f"unknown load-balancing algorithm {name!r}")
