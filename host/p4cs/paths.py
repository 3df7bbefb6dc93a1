"""Where p4cs finds its files: the P4 program (sources and compiled pipelines), the data-plane
daemon and the DPDK headers the daemon compiles generated C against.

An installed p4cs carries them as package data: ``p4cs/p4src/`` and, when the daemon was built
before the wheel, ``p4cs/dataplane/p4cs-swxd`` and ``p4cs/dataplane/dpdk-headers/`` (see
``setup.py``). A package imported from a source tree (an editable install, or ``PYTHONPATH=host``)
uses the tree's ``p4src/``, ``dataplane/build/p4cs-swxd`` and ``build/dpdk-headers/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

#: The ``p4cs`` package directory (``…/site-packages/p4cs`` or ``<checkout>/host/p4cs``).
PACKAGE = Path(str(resources.files("p4cs")))


def checkout() -> Path | None:
    """The source tree this package is imported from (``<tree>/host/p4cs``), else None."""
    tree = PACKAGE.parent.parent
    if PACKAGE.parent.name == "host" and (tree / "pyproject.toml").is_file():
        return tree
    return None


def p4src() -> Path:
    """The P4 program: ``include/``, ``pna/``, ``v1model/`` and ``build/<target>/``."""
    tree = checkout()
    return tree / "p4src" if tree else PACKAGE / "p4src"


def build_dir(target: str) -> Path:
    """The compiled artifacts of ``target`` (``dpdk`` or ``bmv2``)."""
    return p4src() / "build" / target


def p4info(target: str) -> Path:
    return build_dir(target) / "p4cs.p4info.txtpb"


def spec() -> Path:
    """The SWX pipeline spec the embedded DPDK target runs."""
    return build_dir("dpdk") / "p4cs.spec"


def bmv2_json() -> Path:
    return build_dir("bmv2") / "p4cs.json"


def _shipped_or_built(shipped: Path, built: str) -> Path | None:
    """The file shipped in the package, else the source tree's build output, if either exists."""
    if shipped.exists():
        return shipped
    tree = checkout()
    if tree is not None and (tree / built).exists():
        return tree / built
    return None


def daemon_binary() -> str:
    """``p4cs-swxd``: ``$P4CS_SWXD``, the package's, the source tree's, else the one on PATH."""
    env = os.environ.get("P4CS_SWXD")
    if env:
        return env
    found = _shipped_or_built(PACKAGE / "dataplane" / "p4cs-swxd", "dataplane/build/p4cs-swxd")
    return str(found) if found else "p4cs-swxd"


def dpdk_headers() -> Path | None:
    """DPDK's SWX pipeline headers for the daemon's ``--dpdk-headers``: ``$P4CS_DPDK_HEADERS``,
    the package's, the source tree's; None leaves the choice to the daemon."""
    env = os.environ.get("P4CS_DPDK_HEADERS")
    if env:
        return Path(env)
    return _shipped_or_built(PACKAGE / "dataplane" / "dpdk-headers", "build/dpdk-headers")


def subprocess_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with PYTHONPATH led by the directory that
    holds this ``p4cs`` package, so that a ``python -m p4cs…`` child imports the same package."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE.parent), env.get("PYTHONPATH")]))
    return env
