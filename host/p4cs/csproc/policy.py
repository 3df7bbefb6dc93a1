"""Server choice: what a classified request gets (a server, or a local answer), which
server replaces one that failed, the ``active`` count of bound connections, client-IP,
TLS-session and cookie persistence (templates, as ipvsadm -p; the server ids of inserted
cookies), and the source address and port a server sees (the client's, or one from the SNAT
pool).  The engine calls it; it emits no effects.  See docs/csproc.md sections 8, 14, 15."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable

from p4cs.capabilities import ALGORITHMS, PERSISTENCE

from .httpcookie import server_id, valid_name
from .packet import ip_int, ip_str
from .schedulers import Server, ServerGroup

#: Persistence kinds whose templates are keyed by a session (a str), learned from the
#: servers' answers and bounded by ``max_sessions``.
SESSION_KINDS = ("tls-session", "cookie-learn")
#: Persistence kinds of http services that name a cookie.
COOKIE_KINDS = ("cookie-learn", "cookie-insert")


@dataclass(frozen=True)
class Persistence:
    """Persistence of a service. ``kind`` ``client-ip`` (ipvsadm -p ``timeout`` -M
    ``netmask``): the clients of one network (address & ``netmask``) go to the server the
    first of them got. ``tls-session``: a ClientHello resuming a TLS session goes to the
    server that holds it (the template keys are ``tls.Offer.keys``; docs/csproc.md section
    14), at most ``max_sessions`` of them per service. ``cookie-learn``: a request carrying
    cookie ``name`` with a value a server set goes to that server (section 15), at most
    ``max_sessions`` values per service. A template lives ``timeout`` seconds after its
    last connection began, and as long as connections use it (then ``timeout`` after the
    last ended). ``cookie-insert``: the switch sets cookie ``name`` to the server's id
    (``httpcookie.server_id``, keyed with ``key``) in a connection's first response; no
    templates."""

    timeout: float = 300.0
    netmask: str | int = "255.255.255.255"
    kind: str = "client-ip"
    max_sessions: int = 100_000
    name: str | None = None         # the cookie of the cookie kinds
    key: str | None = None          # cookie-insert: the key of the server ids

    def server_id(self, server: Server) -> str:
        """The value cookie-insert sets for ``server``."""
        return server_id(server.name, self.key)

    def __post_init__(self):
        if self.timeout <= 0:
            raise ValueError("persistence timeout must be positive")
        if self.kind not in PERSISTENCE:
            raise ValueError("persistence kind must be one of " + ", ".join(PERSISTENCE))
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be positive")
        if (self.kind in COOKIE_KINDS) != (self.name is not None):
            raise ValueError("a cookie name belongs to the cookie kinds, which need one")
        if self.key is not None and self.kind != "cookie-insert":
            raise ValueError("a key belongs to cookie-insert persistence")
        if self.name is not None and not valid_name(self.name):
            raise ValueError(f"cookie name {self.name!r} is not a token")
        object.__setattr__(self, "netmask", ip_int(self.netmask))


class Template:
    """A persistence template: client network (an int) or session (a str key: TLS
    session, cookie value) -> server (``ipvsadm -L -c`` lists them)."""

    __slots__ = ("service", "net", "server", "expires")

    def __init__(self, service: str, net: int | str, server: Server, expires: float):
        self.service, self.net, self.server = service, net, server
        self.expires = expires


class Choice:
    """The policy's answer for one connection, and the binding it then tracks.

    ``status`` is a local answer (403 reject, 302 redirect to ``location``, 503 no usable
    server, for reason ``why``) or None: connect to ``server``.  ``tried`` holds the
    servers that failed, ``server`` the one bound; ``counted`` says whether the
    connection is in ``server.active``."""

    __slots__ = ("status", "why", "location", "server", "group", "scheduler", "sticky",
                 "unknown_group", "tried", "counted", "src", "dst", "template")

    def __init__(self, status: int | None = None, why: str = "",
                 location: str | None = None):
        self.status = status
        self.why = why
        self.location = location
        self.server = None
        self.group = None
        self.scheduler = None       # overriding the group's (a loadBalance rule's)
        self.sticky = True
        self.unknown_group = None   # the group a rule named, when it does not exist
        self.tried = ()
        self.counted = False
        self.src = self.dst = 0     # client and virtual addresses (the hashing keys)
        self.template = None        # the persistence template key, when the service has one


class Policy:
    def __init__(self, services: Iterable, groups: dict[str, ServerGroup] |
                 Iterable[ServerGroup], cfg):
        self.cfg = cfg          # redispatch, snat_ports, snat_share
        if isinstance(groups, dict):
            self.groups = dict(groups)
        else:
            self.groups = {g.name: g for g in groups}
        self._snat: dict[int, deque] = {}
        self.templates: dict[tuple[str, int | str], Template] = {}
        # (template key, id of a server) -> the counted connections bound to that server
        # through that key: a template that moves to a server and back counts those of its
        # connections that stayed there all along (template_conns: the entry of its server)
        self._held: dict[tuple, int] = {}
        self._sessions: dict[str, int] = {}     # session templates per service
        self._persist: dict[str, Persistence] = {}
        self.clock = 0.0        # the ``now`` of the engine's latest call
        self._prune_at = 0.0
        self.replace(services, self.groups)

    def replace(self, services: Iterable, groups: dict[str, ServerGroup]) -> None:
        """Serve ``services`` with ``groups`` from now on (also a live edit): the SNAT
        pools of addresses still in use keep their state (ports held by running
        connections stay taken); templates of a service whose persistence changed go."""
        services = list(services)
        for s in services:
            if s.default_group is not None and s.default_group not in groups:
                raise ValueError(f"service {s.name}: unknown default group "
                                 f"{s.default_group!r}")
        self.groups = groups
        self.servers_by_name: dict[str, tuple[Server, ServerGroup]] = {}
        for g in groups.values():
            for s in g.servers:
                self.servers_by_name.setdefault(s.name, (s, g))
        persist = {s.name: s.persistence for s in services
                   if getattr(s, "persistence", None) is not None}
        # cookie-insert: server id -> server, and server name -> id, per service
        self._ids = {name: {p.server_id(s): s for s, _ in self.servers_by_name.values()}
                     for name, p in persist.items() if p.kind == "cookie-insert"}
        self._id_of = {name: {s.name: i for i, s in ids.items()}
                       for name, ids in self._ids.items()}
        for k in [k for k in self.templates if persist.get(k[0]) != self._persist.get(k[0])]:
            self._drop(k)
        self._persist = persist
        lo, hi = self.cfg.snat_ports
        worker, workers = self.cfg.snat_share
        old, self._snat = self._snat, {}
        for s in services:
            if s.mode == "snat" and s.snat_ip not in self._snat:
                self._snat[s.snat_ip] = (old[s.snat_ip] if s.snat_ip in old else deque(
                    range(lo + (worker - lo) % workers, hi + 1, workers)))

    # ------------------------------------------------------------------ choice
    def choose(self, svc, d, src: int = 0, dst: int = 0,
               sessions: tuple | list = ()) -> tuple[Choice, Server | None]:
        """The choice for decision ``d`` (a ``routing.Decision``-like) of service ``svc``
        for client address ``src`` on virtual address ``dst``, and the server to connect
        to (None with a local answer); ``bind`` it once the connection to it is under
        way. ``sessions``: the template keys of the TLS sessions the client offers to
        resume (``tls.Offer.keys``), for tls-session persistence; the key of the value of
        the service's cookie (``httpcookie.session_key``) for cookie-learn; the value itself
        (a server id) for cookie-insert."""
        action = getattr(d, "action", None)
        target = getattr(d, "target", None)
        if action == "reject":
            return Choice(403, "rejected by rule"), None
        if action == "redirect":
            return Choice(302, "redirected", target), None
        ch = Choice()
        ch.src, ch.dst = src, dst
        algorithm = getattr(d, "algorithm", None)
        if algorithm is not None:
            ch.scheduler = ALGORITHMS.get(algorithm)
            if ch.scheduler is None:
                ch.status, ch.why = 503, f"unsupported algorithm {algorithm!r}"
                return ch, None
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
            pers = self._persist.get(svc.name)
            if pers is not None and pers.kind == "client-ip":
                ch.template = (svc.name, src & pers.netmask)
                server = self._persistent(ch)
            elif pers is not None and pers.kind == "cookie-insert":
                ids = self._ids[svc.name]
                for sid in sessions:
                    s = ids.get(sid)
                    if s is not None and s.up and s.weight > 0 and s in group.servers:
                        server = s
                        break
            elif pers is not None:
                for key in sessions:
                    ch.template = (svc.name, key)
                    server = self._persistent(ch)
                    if server is not None:
                        break
                else:
                    ch.template = None      # learned from the server's answer, if at all
            if server is None:
                server = group.pick(ch.scheduler, frozenset(), src, dst, self.clock)
        if server is None:
            ch.status, ch.why = 503, "no usable server"
        return ch, server

    def server_id(self, svc, server: Server) -> str:
        """The id cookie-insert sets for ``server`` in the responses of service ``svc``."""
        sid = self._id_of.get(svc.name, {}).get(server.name)    # {}: a live edit since
        return svc.persistence.server_id(server) if sid is None else sid

    def _persistent(self, ch: Choice) -> Server | None:
        """The server of the choice's live template, if it can take the connection (a
        drained server keeps its clients, as LVS does by default)."""
        t = self.templates.get(ch.template)
        if t is None:
            return None
        if self.template_conns(t) == 0 and t.expires <= self.clock:
            self._drop(ch.template)
            return None
        s = t.server
        if s.up and s not in ch.tried and s in ch.group.servers and (
                s.weight > 0 or self._persist[ch.template[0]].kind != "cookie-learn"):
            return s
        return None

    def redispatch(self, ch: Choice) -> Server | None:
        """Another server of the group for a connection whose server failed, or None."""
        if ch.group is not None and len(ch.tried) <= self.cfg.redispatch:
            return ch.group.pick(ch.scheduler, frozenset(ch.tried), ch.src, ch.dst,
                                 self.clock)
        return None

    def bind(self, ch: Choice, server: Server) -> None:
        """The connection goes to ``server``: count it there (and in its template)."""
        ch.server = server
        server.bind()
        ch.counted = True
        if ch.template is not None:
            self._hold(ch)

    def _hold(self, ch: Choice) -> None:
        """Count the bound connection ``ch`` in its template, which points to its server
        from now on (it moves there if it pointed to another one, whose server failed)."""
        pers = self._persist.get(ch.template[0])
        if pers is None:        # its service has no persistence any more (a live edit)
            ch.template = None
            return
        server = ch.server
        held = (ch.template, id(server))
        self._held[held] = self._held.get(held, 0) + 1
        t = self.templates.get(ch.template)
        expires = self.clock + pers.timeout
        if t is None or t.server is not server:
            t = self._put(ch.template, server, expires)
        t.expires = expires

    def _put(self, key: tuple, server: Server, expires: float) -> Template:
        if key not in self.templates and isinstance(key[1], str):
            self._sessions[key[0]] = self._sessions.get(key[0], 0) + 1
        t = self.templates[key] = Template(key[0], key[1], server, expires)
        return t

    def template_conns(self, t: Template) -> int:
        """The counted connections template ``t`` holds on its server."""
        return self._held.get(((t.service, t.net), id(t.server)), 0)

    def _drop(self, key: tuple) -> None:
        if self.templates.pop(key, None) is not None and isinstance(key[1], str):
            self._sessions[key[0]] -= 1

    def _room(self, service: str, most: int) -> bool:
        """Room for another session template of ``service``: under ``most``, or after
        forgetting the oldest idle one among the first templates (creation order)."""
        if self._sessions.get(service, 0) < most:
            return True
        for n, (k, t) in enumerate(self.templates.items()):
            if n >= 64:
                return False
            if k[0] == service and isinstance(k[1], str) and self.template_conns(t) == 0:
                self._drop(k)
                return True
        return False

    def learn(self, svc, ch: Choice, key: str) -> bool:
        """The server of the bound connection ``ch`` of service ``svc`` holds session
        ``key`` (its ServerHello, or the Set-Cookie of its response, said so): the
        connection now counts in that session's template (instead of the one it came by,
        if another). False: not learned, the service has ``max_sessions`` templates in use."""
        pers = self._persist.get(svc.name)
        if not ch.counted or pers is None or pers.kind not in SESSION_KINDS:
            return False    # the service's persistence changed meanwhile (a live edit)
        full = (svc.name, key)
        if ch.template == full:
            t = self.templates.get(full)
            if t is not None and t.server is ch.server:
                return True
        if full not in self.templates and not self._room(svc.name, pers.max_sessions):
            return False
        self._unhold(ch)
        ch.template = full
        self._hold(ch)
        return True

    def failed(self, ch: Choice, server: Server) -> None:
        """``server`` could not take the connection (no route, refused, no answer):
        ``redispatch`` skips it."""
        ch.tried += (server,)

    def release(self, ch: Choice) -> None:
        """The connection no longer counts in its server's ``active``."""
        if ch.counted:
            ch.server.unbind()
            ch.counted = False
            self._unhold(ch)

    def _unhold(self, ch: Choice) -> None:
        """The connection ``ch`` no longer counts in its template: its timeout starts
        when none does."""
        if ch.template is None:
            return
        held = (ch.template, id(ch.server))
        n = self._held.get(held, 0) - 1
        if n > 0:
            self._held[held] = n
        else:
            self._held.pop(held, None)
            n = 0
        t = self.templates.get(ch.template)
        if n == 0 and t is not None and t.server is ch.server:
            pers = self._persist.get(ch.template[0])
            if pers is not None:
                t.expires = max(t.expires, self.clock + pers.timeout)

    # ------------------------------------------------------------------ templates
    def expire(self, now: float) -> None:
        """Forget the templates that expired by ``now`` (the engine's timers call this;
        the scan runs at most once a second)."""
        self.clock = now
        if now < self._prune_at:
            return
        self._prune_at = now + 1.0
        dead = [k for k, t in self.templates.items()
                if t.expires <= now and self.template_conns(t) == 0]
        for k in dead:
            self._drop(k)

    def template_list(self, now: float) -> list[dict]:
        """The live templates, as ``ipvsadm -L -c`` shows them."""
        self._prune_at = now
        self.expire(now)
        return [{"service": t.service,
                 "client": t.net if isinstance(t.net, str) else ip_str(t.net),
                 "netmask": ("-" if isinstance(t.net, str)
                             else ip_str(self._persist[t.service].netmask)),
                 "server": f"{ip_str(t.server.ip)}:{t.server.port}",
                 "server_name": t.server.name, "connections": self.template_conns(t),
                 "expires_in": round(max(0.0, t.expires - now), 1)}
                for t in self.templates.values()]

    def export_templates(self, now: float) -> list[list]:
        """The live templates as ``[service, client network, server name, seconds left]``
        rows: what another controller needs to take them over (a template in use has its
        whole timeout left: it starts counting when its last connection ends)."""
        out = []
        for t in self.templates.values():
            left = (self._persist[t.service].timeout if self.template_conns(t)
                    else t.expires - now)
            if left > 0:
                out.append([t.service, t.net, t.server.name, round(left, 1)])
        return out

    def import_templates(self, rows, now: float) -> int:
        """Take over templates exported by :meth:`export_templates` (by a previous primary);
        rows naming a service without persistence (or with another kind) or an unknown
        server are skipped, and a template this policy already has wins. Returns how many
        were taken."""
        n = 0
        for service, net, server_name, left in rows:
            hit = self.servers_by_name.get(server_name)
            key = (service, net)
            pers = self._persist.get(service)
            if pers is None or hit is None or key in self.templates \
                    or isinstance(net, str) != (pers.kind in SESSION_KINDS) \
                    or isinstance(net, str) and (
                        net.startswith("cookie:") != (pers.kind == "cookie-learn")
                        or not self._room(service, pers.max_sessions)):
                continue
            self._put(key, hit[0], now + float(left))
            n += 1
        return n

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

    def order_sources(self, ip: int, ports: list[int]) -> None:
        """Hand out the SNAT ports of ``ip`` in the order of ``ports`` (those it leaves out
        are taken until ``release_port``): a restarted worker takes last the ports its
        predecessor used last, and none that a running connection holds."""
        if ip in self._snat:
            self._snat[ip] = deque(ports)

    def release_port(self, ip: int, port: int) -> None:
        """Return SNAT port ``port`` of ``ip`` to its pool."""
        pool = self._snat.get(ip)
        if pool is not None:
            pool.append(port)

    def release_source(self, svc, port: int) -> None:
        """Return a port obtained from ``source`` to its pool."""
        pool = self._snat.get(svc.snat_ip) if svc.mode == "snat" else None
        if pool is not None:        # None: the address left the configuration
            pool.append(port)
