"""Fixtures for the namespace topology tests: unique prefixes and guaranteed teardown."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


from p4cs.lab.netns import cleanup_prefix, prefix_namespaces  # noqa: E402

_counter = itertools.count()


def _can_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    return None


@pytest.fixture
def netns_ok() -> None:
    reason = _can_netns()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def prefix(netns_ok: None) -> Iterator[str]:
    """A prefix unique to this process and test; whatever the test leaves under it is removed
    afterwards (and the removal is checked), even when the test body failed."""
    p = f"t{os.getpid() % 10000}x{next(_counter)}"
    assert not prefix_namespaces(p), f"stale namespaces for {p}"
    yield p
    cleanup_prefix(p)
    assert not prefix_namespaces(p)
