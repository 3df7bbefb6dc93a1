"""URL-prefix and Host routing: the controller's built-in decider, also used by the CS
processor tests.  Any object with ``decide(raw, client, vip) -> Decision-like`` and the
attributes ``needs_body`` (the rules read the request body) and ``rejects`` (some request
may be rejected: then a connection carries one request, docs/csproc.md section 9) can be
given to the engine; the rules engine adapter is ``RuleSetDecider`` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decision:
    """Duck-compatible with ``p4cs.rules.Decision``."""

    rule: str | None = None
    action: str | None = None      # routeTo | forward | loadBalance | reject | redirect | None
    target: str | None = None      # group, server name or URL
    sticky: bool = True
    algorithm: str | None = None
    logs: tuple = ()


class Decider(Protocol):
    needs_body: bool
    rejects: bool

    def decide(self, raw: bytes, client: tuple[str, int], vip: tuple[str, int]): ...


ACTIONS = ("routeTo", "forward", "loadBalance", "reject", "redirect")


@dataclass(frozen=True, slots=True)
class Route:
    """``host``: None (any), ``"www.example.com"`` (exact) or ``"*.example.com"`` (any
    subdomain, not the apex).  ``prefix`` is matched against the raw request path
    (origin-form, or the path of an absolute-form target), case-sensitively."""

    name: str
    target: str | None
    prefix: str = "/"
    host: str | None = None
    action: str = "routeTo"

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"route {self.name}: unknown action {self.action!r}")
        if self.action != "reject" and not self.target:
            raise ValueError(f"route {self.name}: action {self.action} needs a target")
        if not self.prefix.startswith("/") and self.prefix != "*":
            raise ValueError(f"route {self.name}: prefix must start with '/'")


def parse_target(raw: bytes) -> tuple[bytes, bytes | None]:
    """(path, host) of the first request in ``raw``; host lower-case without port."""
    eol = raw.find(b"\r\n")
    line = raw[:eol] if eol >= 0 else raw
    parts = line.split(b" ")
    path = parts[1] if len(parts) >= 3 else b"/"
    host = None
    if path[:7].lower() == b"http://" or path[:8].lower() == b"https://":
        rest = path.split(b"://", 1)[1]
        slash = rest.find(b"/")
        host, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    if host is None:
        hend = raw.find(b"\r\n\r\n")
        block = raw[eol:hend if hend >= 0 else len(raw)]
        i = block.lower().find(b"\r\nhost:")
        if i >= 0:
            j = block.find(b"\r\n", i + 7)
            host = block[i + 7:j if j >= 0 else len(block)].strip()
    if host is not None:
        host = host.lower()
        if host.startswith(b"["):
            host = host[:host.find(b"]") + 1]
        else:
            host = host.split(b":", 1)[0]
    return path, host


class PrefixRouter:
    """Host + longest-prefix routing.  Tiers: exact host, then wildcard hosts (longest
    suffix first), then host-less routes; within a tier the longest matching prefix wins,
    ties go to the route listed first.  No match -> ``Decision()`` (the engine then uses
    the service's default group, or answers 503)."""

    needs_body = False

    def __init__(self, routes: list[Route]):
        self.rejects = any(r.action == "reject" for r in routes)
        self._targets = frozenset(r.target for r in routes
                                  if r.action in ("routeTo", "loadBalance", "forward"))
        self._exact: dict[bytes, list[tuple[bytes, Route]]] = {}
        self._wild: list[tuple[bytes, list[tuple[bytes, Route]]]] = []
        self._any: list[tuple[bytes, Route]] = []
        wild: dict[bytes, list[tuple[bytes, Route]]] = {}
        for r in routes:
            entry = (b"" if r.prefix == "*" else r.prefix.encode(), r)
            if r.host is None:
                self._any.append(entry)
            elif r.host.startswith("*."):
                wild.setdefault(r.host[1:].lower().encode(), []).append(entry)
            else:
                self._exact.setdefault(r.host.lower().encode(), []).append(entry)
        key = lambda e: -len(e[0])  # noqa: E731 - stable sort keeps listing order on ties
        for lst in self._exact.values():
            lst.sort(key=key)
        for sfx in sorted(wild, key=len, reverse=True):
            self._wild.append((sfx, sorted(wild[sfx], key=key)))
        self._any.sort(key=key)

    def group_names(self) -> frozenset[str]:
        """The groups (and, for ``forward``, servers) the routes send connections to."""
        return self._targets

    @staticmethod
    def _match(routes: list[tuple[bytes, Route]], path: bytes) -> Route | None:
        for prefix, r in routes:
            if path.startswith(prefix):
                return r
        return None

    def route(self, raw: bytes) -> Route | None:
        path, host = parse_target(raw)
        r = None
        if host is not None:
            lst = self._exact.get(host)
            if lst:
                r = self._match(lst, path)
            if r is None:
                for sfx, lst in self._wild:
                    if host.endswith(sfx) and len(host) > len(sfx):
                        r = self._match(lst, path)
                        if r is not None:
                            break
        if r is None:
            r = self._match(self._any, path)
        return r

    def decide(self, raw: bytes, client=None, vip=None) -> Decision:
        r = self.route(raw)
        if r is None:
            return Decision()
        return Decision(rule=r.name, action=r.action, target=r.target)


class RuleSetDecider:
    """Adapter from the rules engine (docs/interfaces.md §3) to the engine's decider.
    ``source`` is a ``RuleSet`` or a ``RuleStore``; the store's ``current`` rule set is
    read at every use, so a hot reload takes effect for the next connection."""

    def __init__(self, source):
        from p4cs.rules import classify  # imported here: csproc does not need the rules
        self._classify = classify
        self._source = source

    def _rs(self):
        cur = getattr(self._source, "current", None)
        return self._source if cur is None else cur

    @property
    def needs_body(self) -> bool:
        return bool(self._rs().needs_body)

    @property
    def rejects(self) -> bool:
        """Some request may be rejected: a connection must not carry a second one."""
        return any(c.action.kind == "reject" for c in self._rs().clauses)

    def decide(self, raw: bytes, client: tuple[str, int], vip: tuple[str, int]):
        return self._classify(self._rs(), raw, client, vip)
