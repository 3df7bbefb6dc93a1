"""Helpers of the end-to-end tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

CLIENTS = Path(__file__).resolve().parent / "netclients.py"


def run_client(lab, cmd: str, *args: str, timeout: float = 120.0, client: int = 0) -> dict:
    """Run ``netclients.py cmd --vip VIP args...`` in the client namespace; its JSON report."""
    r = lab.client_exec([sys.executable, str(CLIENTS), cmd, "--vip", lab.vip, *args],
                        client=client, timeout=timeout)
    assert r.returncode == 0, f"client {cmd} {args} failed ({r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_for(pred: Callable[[], object], timeout: float, interval: float = 0.2):
    """Poll ``pred`` until it returns something true; that value, or the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def headers_of(text: str) -> dict[str, str]:
    out = {}
    for ln in text.splitlines():
        k, sep, v = ln.partition(":")
        if sep and not ln.startswith("HTTP/"):
            out[k.strip().lower()] = v.strip()
    return out
