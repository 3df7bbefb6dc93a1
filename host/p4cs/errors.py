"""Errors the `p4cs` command line reports as one line: bad input (exit status 2) and
failures of what a command needs (exit status 1); and the checks of input that more than one
room reads."""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class InputError(Exception):
    """An argument, file or setting the command cannot use. The message is one line for the
    user and names the file:line where there is one; nothing has been changed."""


class Failure(Exception):
    """Something the command needs does not work (a controller that does not answer, a
    switch that refuses): one line for the user."""


def grpc_address(text: object, *, listen: bool = False) -> str:
    """``text`` if it is a gRPC address: ``HOST:PORT`` (an IPv4 address, ``[IPv6]`` or a DNS
    name; port 1-65535, or 0 for a listening address: any free port) or ``unix:PATH``.
    Raises ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.isprintable() or not text.strip():
        raise ValueError(f"{text!r} is not an address (HOST:PORT or unix:PATH)")
    if text.startswith("unix:"):
        if len(text) == len("unix:"):
            raise ValueError(f"{text!r}: unix: needs a socket path")
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not an address (HOST:PORT or unix:PATH)")
    if not port.isascii() or not port.isdigit() or not (0 if listen else 1) <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number in [{0 if listen else 1}, 65535]")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from None
        return text
    if not host.isascii() or not _HOSTNAME.fullmatch(host) or (
            host.replace(".", "").isdigit() and not _is_ipv4(host)):
        raise ValueError(f"{text!r}: {host!r} is not an IPv4 address, [IPv6] address or host name")
    return text


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
