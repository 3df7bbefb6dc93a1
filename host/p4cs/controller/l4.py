"""L4 virtual services: the controller's part of balancing them in the data plane.

A service with ``protocol: tcp`` or ``udp`` (:data:`p4cs.capabilities.L4_PROTOCOLS`) has no
content rules: the pipeline (p4src/include/l4_service.p4) picks its server from a hash of the
5-tuple and translates the addresses, and the controller sees none of its packets. What the
controller writes, as part of the base tables (reconciled like them, so a server-set change
writes only the Maglev buckets that change owner):

* ``l4_service``: (VIP, protocol, port) -> the service's id (its rank among the L4 services
  of the configuration, from 1) and the expiry profile of the connections the DPDK target
  learns: the learner timeout profile nearest to ``limits.flow_idle_timeout_s`` (TCP) or
  ``limits.udp_idle_timeout_s`` (UDP; ``p4cs set --udp``);
* ``l4_maglev``: (service id, bucket) -> the server's address and port, the Maglev lookup
  table (:func:`p4cs.csproc.schedulers.maglev.build_table`, ``dataplane.l4_maglev_size``
  buckets) of the group's servers with a weight above 0 (the group is the L4 service's
  alone, and the CS processor does not know it: no health checks, no probes);
* ``l4_reverse``: (server address, protocol, server port) -> the VIP and port its answers
  leave from, for every server of the group (a drained one still has connections), and for
  the servers that left it (:class:`Retired`, LVS's destination trash) until the service's
  idle timeout has passed: their learned connections go on until then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finsy import P4TableAction, P4TableEntry, P4TableMatch

from p4cs.constants import IP_PROTO_TCP, IP_PROTO_UDP
from p4cs.controller.config import Config
from p4cs.csproc.packet import ip_str
from p4cs.csproc.schedulers import Server
from p4cs.csproc.schedulers.maglev import build_table

PROTOCOL = {"tcp": IP_PROTO_TCP, "udp": IP_PROTO_UDP}
#: Tables whose entries the data plane writes itself (learned connections).
LEARNED_TABLES = ("l4_flows",)


def timeout_profile(timeouts: Sequence[int], seconds: float) -> int:
    """The id of the expiry profile nearest to ``seconds`` (the first of equals)."""
    return min(range(len(timeouts)), key=lambda i: abs(timeouts[i] - seconds))


def idle_timeout(cfg: Config, protocol: str) -> int:
    """How long a connection of an L4 service of ``protocol`` lives without traffic."""
    return cfg.limits.flow_idle_timeout_s if protocol == "tcp" else cfg.limits.udp_idle_timeout_s


def _reverse_entry(addr: str, proto: int, port: int, vip: str, vport: int) -> P4TableEntry:
    return P4TableEntry("l4_reverse", match=P4TableMatch(server_addr=addr, protocol=proto, server_port=port),
                        action=P4TableAction("l4_unnat", vip_addr=vip, vip_port=vport))


@dataclass(frozen=True)
class _Answer:
    vip: str
    vport: int
    until: float


class Retired:
    """The reverse entries of servers that left an L4 service, kept while the connections
    the data plane learned for them may live (the service's idle timeout)."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str, int, int], _Answer] = {}

    @staticmethod
    def _answers(cfg: Config) -> dict[tuple[str, int, int], tuple[str, int, int]]:
        out = {}
        for svc in cfg.services:
            if svc.l4:
                for s in cfg.groups[svc.default_group].servers:
                    out[(s.address, PROTOCOL[svc.protocol], s.port)] = (
                        svc.vip, svc.port, idle_timeout(cfg, svc.protocol))
        return out

    def change(self, old: Config, new: Config, now: float) -> None:
        """``old`` becomes ``new``: the servers that left an L4 service are kept; those of
        ``new``'s services are not (any more), nor those another group uses now."""
        now_used = self._answers(new)
        for key, (vip, vport, idle) in self._answers(old).items():
            if key not in now_used:
                self.kept[key] = _Answer(vip, vport, now + idle)
        others = {(s.address, s.port) for g in new.groups.values() for s in g.servers}
        for key in list(self.kept):
            if key in now_used or (key[0], key[2]) in others:
                del self.kept[key]

    def expire(self, now: float) -> bool:
        """Forget what is past its time; True when something was."""
        gone = [k for k, a in self.kept.items() if a.until <= now]
        for k in gone:
            del self.kept[k]
        return bool(gone)

    def entries(self) -> list[P4TableEntry]:
        return [_reverse_entry(addr, proto, port, a.vip, a.vport)
                for (addr, proto, port), a in self.kept.items()]


def _services(cfg: Config):
    """(service id, service, its group's servers, the Maglev table) of each L4 service."""
    size = cfg.dataplane.l4_maglev_size
    for sid, svc in enumerate((s for s in cfg.services if s.l4), start=1):
        servers = [Server(f"{s.address}:{s.port}", s.address, s.port, s.weight)
                   for s in cfg.groups[svc.default_group].servers]
        yield sid, svc, servers, build_table(servers, size)


def entries(cfg: Config) -> list[P4TableEntry]:
    """The l4_service, l4_maglev and l4_reverse entries of ``cfg``'s L4 services."""
    out: list[P4TableEntry] = []
    add = out.append
    timeouts = cfg.dataplane.flow_timeouts_s
    for sid, svc, servers, table in _services(cfg):
        proto = PROTOCOL[svc.protocol]
        idle = idle_timeout(cfg, svc.protocol)
        add(P4TableEntry("l4_service", match=P4TableMatch(vip_addr=svc.vip, protocol=proto, vip_port=svc.port),
                         action=P4TableAction("l4_select", service_id=sid,
                                              timeout_profile=timeout_profile(timeouts, idle))))
        for bucket, s in enumerate(table):
            if s is not None:
                add(P4TableEntry("l4_maglev", match=P4TableMatch(service_id=sid, bucket=bucket),
                                 action=P4TableAction("l4_pick", server_addr=ip_str(s.ip),
                                                      server_port=s.port)))
        for s in servers:
            add(_reverse_entry(ip_str(s.ip), proto, s.port, svc.vip, svc.port))
    return out


def status(cfg: Config, retired: Retired, now: float) -> list[dict]:
    """What the switch runs for each L4 service: its id, group, Maglev table (size, buckets
    per server), servers (weight, state: ``active``, or ``drained`` at weight 0: no new
    connection, its learned ones go on), idle timeout, and the servers that left it whose
    return path is kept (``retired``, seconds left)."""
    out = []
    for sid, svc, servers, table in _services(cfg):
        buckets: dict[str, int] = {}
        for s in table:
            if s is not None:
                buckets[s.name] = buckets.get(s.name, 0) + 1
        proto = PROTOCOL[svc.protocol]
        out.append({
            "name": svc.name, "vip": svc.vip, "port": svc.port, "protocol": svc.protocol,
            "service_id": sid, "group": svc.default_group, "maglev_size": len(table),
            "idle_timeout_s": idle_timeout(cfg, svc.protocol),
            "servers": [{"server": s.name, "weight": s.weight, "buckets": buckets.get(s.name, 0),
                         "state": "active" if s.weight > 0 else "drained"} for s in servers],
            "retired": [{"server": f"{addr}:{port}", "left_s": round(a.until - now, 1)}
                        for (addr, p, port), a in sorted(retired.kept.items())
                        if p == proto and (a.vip, a.vport) == (svc.vip, svc.port)
                        and a.until > now],
        })
    return out
