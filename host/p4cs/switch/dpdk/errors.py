"""P4Runtime errors of the DPDK target's server, and the daemon's errno names as gRPC codes."""

from __future__ import annotations

import grpc

SC = grpc.StatusCode
#: google.rpc.Code number -> grpc.StatusCode (a google.rpc.Status read back as gRPC's code)
STATUS_CODES = {c.value[0]: c for c in SC}

_ERRNO_CODE = {
    "EEXIST": SC.ALREADY_EXISTS,
    "ENOENT": SC.NOT_FOUND,
    "ENOSPC": SC.RESOURCE_EXHAUSTED,
    "ENOMEM": SC.RESOURCE_EXHAUSTED,
    "E2BIG": SC.RESOURCE_EXHAUSTED,
    "EINVAL": SC.INVALID_ARGUMENT,
    "ERANGE": SC.OUT_OF_RANGE,
    "EPERM": SC.PERMISSION_DENIED,
    "ENOTSUP": SC.UNIMPLEMENTED,
    "EOPNOTSUPP": SC.UNIMPLEMENTED,
    "EBUSY": SC.UNAVAILABLE,
    "EAGAIN": SC.UNAVAILABLE,
}


class P4RTError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def daemon_error(reply: str) -> tuple[grpc.StatusCode, str]:
    """(code, message) of a daemon error reply such as "err EEXIST key already present"."""
    parts = reply.split(" ", 2)
    errno_name = parts[1] if len(parts) > 1 else "EIO"
    text = parts[2] if len(parts) > 2 else reply
    return _ERRNO_CODE.get(errno_name, SC.UNKNOWN), f"{text} ({errno_name})"


def unknown_device(device_id: int, ours: int) -> P4RTError:
    return P4RTError(SC.NOT_FOUND, f"unknown device id {device_id} (this server is device {ours})")
