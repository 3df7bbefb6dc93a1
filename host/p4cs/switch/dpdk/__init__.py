"""The embedded DPDK SWX target: `p4cs-swxd` data-plane daemon + P4Runtime server."""

from .daemon import DaemonDead, DaemonError, SwxDaemon
from .pipeline import TargetConfig, load_p4info
from .schema import Schema, SchemaError
from .server import P4RuntimeServer

__all__ = [
    "DaemonDead",
    "DaemonError",
    "SwxDaemon",
    "P4RuntimeServer",
    "TargetConfig",
    "load_p4info",
    "Schema",
    "SchemaError",
]
