"""Constants of the P4 program, read from ``p4src/include/defines.p4`` (the one place they are
defined), so the server never carries its own copy of a number the program decides."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from p4cs import paths

_CONST = re.compile(r"^\s*const\s+bit<\d+>\s+(\w+)\s*=\s*(0[xX][0-9a-fA-F]+|\d+)\s*;", re.M)


@functools.lru_cache(maxsize=None)
def p4_constants(path: str | None = None) -> dict[str, int]:
    """``const bit<N> NAME = VALUE;`` lines of defines.p4 as {NAME: VALUE}."""
    text = Path(path or paths.defines()).read_text()
    return {name: int(value, 0) for name, value in _CONST.findall(text)}


def p4_constant(name: str) -> int:
    try:
        return p4_constants()[name]
    except KeyError:
        raise KeyError(f"{name} is not a `const bit<N>` of {paths.defines()}") from None


#: PacketIn reason of a FIN/RST copy of a spliced flow.
REASON_FLOW_END = p4_constant("REASON_FLOW_END")
