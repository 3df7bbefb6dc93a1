"""Package data that lives outside ``host/``: the wheel carries the P4 program (``p4src/`` →
``p4cs/p4src/``) and, when ``make -C dataplane`` has built it, the data-plane daemon with the DPDK
headers it compiles pipelines against (``p4cs/dataplane/``). A wheel with the daemon is
machine-local: it is tagged for this platform and links against this machine's DPDK.
It also builds the C part of the SYN cookies (``p4cs.csproc._hsiphash``), the XML
tag-sequence scanner of the rules (``p4cs.rules._xmlscan``), the controller's flow-update
encoder (``p4cs.controller._p4wire``), its batched packet-channel I/O
(``p4cs.controller._mmsg``) and the CS processor's frame parse and build
(``p4cs.csproc._packet``), all optional.
Everything else is configured in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Distribution, Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
P4SRC = HERE / "p4src"
DAEMON = HERE / "dataplane" / "build" / "p4cs-swxd"
DPDK_HEADERS = HERE / "build" / "dpdk-headers"


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the source tree (p4cs.paths)
        if not (P4SRC / "include" / "arch.p4").is_file():
            raise FileNotFoundError(f"{P4SRC} is incomplete: the P4 program is part of the package")
        pkg = Path(self.build_lib) / "p4cs"
        for old in (pkg / "p4src", pkg / "dataplane"):  # left by an earlier build
            shutil.rmtree(old, ignore_errors=True)
        shutil.copytree(P4SRC, pkg / "p4src")
        if DAEMON.is_file():
            (pkg / "dataplane").mkdir()
            shutil.copy2(DAEMON, pkg / "dataplane" / "p4cs-swxd")
            if (DPDK_HEADERS / "rte_swx_pipeline_internal.h").is_file():
                shutil.copytree(DPDK_HEADERS, pkg / "dataplane" / "dpdk-headers")


class MaybeBinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return super().has_ext_modules() or DAEMON.is_file()


# The SYN cookies' hash in C; optional: without a compiler the package uses the same function
# in Python (p4cs.csproc.hsiphash).
HSIPHASH = Extension("p4cs.csproc._hsiphash", ["host/p4cs/csproc/_hsiphash.c"],
                     extra_compile_args=["-O2"], optional=True)

# The rules' XML tag-sequence scanner in C; optional: without it every document goes to the
# libxml2 path it falls back to anyway (p4cs.rules.extract.extract_xml).
XMLSCAN = Extension("p4cs.rules._xmlscan", ["host/p4cs/rules/_xmlscan.c"],
                    extra_compile_args=["-O3"], optional=True)

# The controller's flow-table updates in protobuf wire format, in C; optional: without it
# p4cs.controller.p4rt.FlowEncoder builds the same bytes in Python.
P4WIRE = Extension("p4cs.controller._p4wire", ["host/p4cs/controller/_p4wire.c"],
                   extra_compile_args=["-O2"], optional=True)

# recvmmsg / sendmmsg for the controller's packet channel; optional: without it
# p4cs.controller.packetchan reads and writes one frame per system call.
MMSG = Extension("p4cs.controller._mmsg", ["host/p4cs/controller/_mmsg.c"],
                 extra_compile_args=["-O2"], optional=True)

# The P4Runtime server's flow-install fast path (wire.FlowFastPath.plan) in C; optional:
# without it the server decodes the same updates in Python.
WIREFAST = Extension("p4cs.switch.dpdk._wirefast", ["host/p4cs/switch/dpdk/_wirefast.c"],
                     extra_compile_args=["-O2"], optional=True)

# The CS processor's frame parse and build in C; optional: without it p4cs.csproc.packet
# parses and builds every frame in Python (parse_py / build_py, the reference).
PACKET = Extension("p4cs.csproc._packet", ["host/p4cs/csproc/_packet.c"],
                   extra_compile_args=["-O2"], optional=True)

setup(cmdclass={"build_py": BuildPyWithData}, distclass=MaybeBinaryDistribution,
      ext_modules=[HSIPHASH, XMLSCAN, P4WIRE, MMSG, WIREFAST, PACKET])
