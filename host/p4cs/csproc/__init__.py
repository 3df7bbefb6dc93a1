"""CS processor: TCP delayed binding (SYN cookies, request buffering, server selection,
flow installation, teardown) as a pure state machine over Ethernet frames.

    from p4cs.csproc import Engine, Config, VirtualService, StaticTopology
    from p4cs.csproc import ServerGroup, Server, PrefixRouter, Route

See docs/csproc.md.
"""

from .effects import CountFlows, FlowKey, FlowSpec, InstallFlows, Log, PacketOut, RemoveFlows
from .engine import (REASON_FLOW_END, REASON_LOCAL, REASON_BACKEND_MISS, REASON_VIP_MISS,
                     Config, Engine, StaticTopology, Topology, VirtualService)
from .routing import Decision, PrefixRouter, Route, RuleSetDecider
from .schedulers import Server, ServerGroup
from .serverpool import ServerPool
from .stats import Stats

__all__ = [
    "Config", "CountFlows", "Decision", "Engine", "FlowKey", "FlowSpec", "InstallFlows", "Log",
    "PacketOut", "PrefixRouter", "REASON_FLOW_END", "REASON_LOCAL", "REASON_BACKEND_MISS",
    "REASON_VIP_MISS", "RemoveFlows", "Route", "RuleSetDecider", "Server", "ServerGroup",
    "ServerPool", "StaticTopology", "Stats", "Topology", "VirtualService",
]
