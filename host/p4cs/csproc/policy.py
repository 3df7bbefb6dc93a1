"""Server choice: what a classified request gets (a server, or a local answer), which
server replaces one that failed, the ``active`` count of bound connections, and the
source address and port a server sees (the client's, or one from the SNAT pool).
The engine calls it; it emits no effects.  See docs/csproc.md section 8."""

from __future__ import annotations

from collections import deque
from typing import Iterable

from .schedulers import Server, ServerGroup


class Choice:
    """The policy's answer for one connection, and the binding it then tracks.

    ``status`` is a local answer (403 reject, 302 redirect to ``location``, 503 no usable
    server, for reason ``why``) or None: connect to ``server``.  ``tried`` holds the
    servers that failed, ``server`` the one bound; ``counted`` says whether the
    connection is in ``server.active``."""

    __slots__ = ("status", "why", "location", "server", "group", "algorithm", "sticky",
                 "unknown_group", "tried", "counted")

    def __init__(self, status: int | None = None, why: str = "",
                 location: str | None = None):
        self.status = status
        self.why = why
        self.location = location
        self.server = None
        self.group = None
        self.algorithm = None
        self.sticky = True
        self.unknown_group = None   # the group a rule named, when it does not exist
        self.tried = ()
        self.counted = False


class Policy:
    def __init__(self, services: Iterable, groups: dict[str, ServerGroup] |
                 Iterable[ServerGroup], cfg):
        self.cfg = cfg          # redispatch, snat_ports
        if isinstance(groups, dict):
            self.groups = dict(groups)
        else:
            self.groups = {g.name: g for g in groups}
        self.servers_by_name: dict[str, tuple[Server, ServerGroup]] = {}
        for g in self.groups.values():
            for s in g.servers:
                self.servers_by_name.setdefault(s.name, (s, g))
        self._snat: dict[int, deque] = {}
        lo, hi = cfg.snat_ports
        for s in services:
            if s.default_group is not None and s.default_group not in self.groups:
                raise ValueError(f"service {s.name}: unknown default group "
                                 f"{s.default_group!r}")
            if s.mode == "snat" and s.snat_ip not in self._snat:
                self._snat[s.snat_ip] = deque(range(lo, hi + 1))

    # ------------------------------------------------------------------ choice
    def choose(self, svc, d) -> tuple[Choice, Server | None]:
        """The choice for decision ``d`` (a ``routing.Decision``-like) of service ``svc``,
        and the server to connect to (None with a local answer); ``bind`` it once the
        connection to it is under way."""
        action = getattr(d, "action", None)
        target = getattr(d, "target", None)
        if action == "reject":
            return Choice(403, "rejected by rule"), None
        if action == "redirect":
            return Choice(302, "redirected", target), None
        ch = Choice()
        ch.algorithm = getattr(d, "algorithm", None)
        ch.sticky = getattr(d, "sticky", True) is not False
        server = None
        group = None
        if action == "forward":
            hit = self.servers_by_name.get(target)
            if hit is not None:
                server = hit[0] if hit[0].usable else None
            else:
                group = self.groups.get(target)
        elif action in ("routeTo", "loadBalance"):
            group = self.groups.get(target)
            if group is None:
                ch.unknown_group = target
        elif svc.default_group is not None:
            group = self.groups[svc.default_group]
        ch.group = group
        if group is not None:
            server = group.pick(ch.algorithm)
        if server is None:
            ch.status, ch.why = 503, "no usable server"
        return ch, server

    def redispatch(self, ch: Choice) -> Server | None:
        """Another server of the group for a connection whose server failed, or None."""
        if ch.group is not None and len(ch.tried) <= self.cfg.redispatch:
            return ch.group.pick(ch.algorithm, frozenset(ch.tried))
        return None

    def bind(self, ch: Choice, server: Server) -> None:
        """The connection goes to ``server``: count it there."""
        ch.server = server
        server.active += 1
        server.total += 1
        ch.counted = True

    def failed(self, ch: Choice, server: Server) -> None:
        """``server`` could not take the connection (no route, refused, no answer):
        ``redispatch`` skips it."""
        ch.tried += (server,)

    def release(self, ch: Choice) -> None:
        """The connection no longer counts in its server's ``active``."""
        if ch.counted:
            ch.server.active -= 1
            ch.counted = False

    # ------------------------------------------------------------------ source address
    def source(self, svc, cip: int, cport: int) -> tuple[int, int] | None:
        """(address, port) the server sees for client ``cip:cport``; None when the SNAT
        pool of ``svc`` is exhausted."""
        if svc.mode != "snat":
            return cip, cport
        pool = self._snat[svc.snat_ip]
        if not pool:
            return None
        return svc.snat_ip, pool.popleft()

    def release_source(self, svc, port: int) -> None:
        """Return a port obtained from ``source`` to its pool."""
        if svc.mode == "snat":
            self._snat[svc.snat_ip].append(port)
