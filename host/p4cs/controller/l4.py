"""L4 virtual services: the controller's part of balancing them in the data plane.

A service with ``protocol: tcp`` or ``udp`` (:data:`p4cs.capabilities.L4_PROTOCOLS`) has no
content rules: the pipeline (p4src/include/l4_service.p4) picks its server from a hash of the
5-tuple and translates the addresses, and the controller sees none of its packets. What the
controller writes, as part of the base tables (reconciled like them, so a server-set change
writes only the Maglev buckets that change owner):

* ``l4_service``: (VIP, protocol, port) -> the service's id (its rank among the L4 services
  of the configuration, from 1) and the expiry profile of the connections the DPDK target
  learns: the learner timeout profile nearest to ``limits.flow_idle_timeout_s`` (TCP) or
  ``limits.udp_idle_timeout_s`` (UDP; ``p4cs ipvsadm set --udp``);
* ``l4_maglev``: (service id, bucket) -> the server's address and port, the Maglev lookup
  table (:func:`p4cs.csproc.schedulers.maglev.build_table`, ``dataplane.l4_maglev_size``
  buckets) of the group's servers that are up with a weight above 0;
* ``l4_reverse``: (server address, protocol, server port) -> the VIP and port its answers
  leave from, for every server of the group (a drained one still has connections).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from finsy import P4TableAction, P4TableEntry, P4TableMatch

from p4cs.constants import IP_PROTO_TCP, IP_PROTO_UDP
from p4cs.controller.config import Config
from p4cs.csproc.packet import ip_str
from p4cs.csproc.schedulers import ServerGroup
from p4cs.csproc.schedulers.maglev import build_table

PROTOCOL = {"tcp": IP_PROTO_TCP, "udp": IP_PROTO_UDP}
#: Tables whose entries the data plane writes itself (learned connections).
LEARNED_TABLES = ("l4_flows",)


def timeout_profile(timeouts: Sequence[int], seconds: float) -> int:
    """The id of the expiry profile nearest to ``seconds`` (the first of equals)."""
    return min(range(len(timeouts)), key=lambda i: abs(timeouts[i] - seconds))


def entries(cfg: Config, groups: Mapping[str, ServerGroup]) -> list[P4TableEntry]:
    """The l4_service, l4_maglev and l4_reverse entries of ``cfg``'s L4 services, with the
    servers (weights, health) of ``groups`` as they are now."""
    out: list[P4TableEntry] = []
    add = out.append
    size, timeouts = cfg.dataplane.l4_maglev_size, cfg.dataplane.flow_timeouts_s
    for sid, svc in enumerate((s for s in cfg.services if s.l4), start=1):
        proto = PROTOCOL[svc.protocol]
        idle = cfg.limits.flow_idle_timeout_s if proto == IP_PROTO_TCP else cfg.limits.udp_idle_timeout_s
        add(P4TableEntry("l4_service", match=P4TableMatch(vip_addr=svc.vip, protocol=proto, vip_port=svc.port),
                         action=P4TableAction("l4_select", service_id=sid,
                                              timeout_profile=timeout_profile(timeouts, idle))))
        servers = groups[svc.default_group].servers
        for bucket, s in enumerate(build_table(servers, size)):
            if s is not None:
                add(P4TableEntry("l4_maglev", match=P4TableMatch(service_id=sid, bucket=bucket),
                                 action=P4TableAction("l4_pick", server_addr=ip_str(s.ip),
                                                      server_port=s.port)))
        for s in servers:
            add(P4TableEntry("l4_reverse", match=P4TableMatch(server_addr=ip_str(s.ip), protocol=proto,
                                                              server_port=s.port),
                             action=P4TableAction("l4_unnat", vip_addr=svc.vip, vip_port=svc.port)))
    return out
