"""BMv2 target: compile the v1model program with p4c and run `simple_switch_grpc`.

BMv2 serves P4Runtime itself; p4cs only prepares the artifacts and owns the process. The
switch starts without a program (`--no-p4`): the controller pushes the pipeline (P4Info +
BMv2 JSON) with SetForwardingPipelineConfig, which finsy does on connect.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from p4cs import paths

LOG = logging.getLogger("p4cs.switch.bmv2")

BMV2_CPU_PORT = 255


class Bmv2Error(Exception):
    pass


@dataclass
class Bmv2Artifacts:
    json: Path
    p4info: Path


def compile_v1model(
    source: Path | None = None, outdir: Path | None = None, p4c: str | None = None
) -> Bmv2Artifacts:
    """Compile p4src/v1model/p4cs.p4 with p4c-bm2-ss (or `p4c --target bmv2 --arch v1model`)."""
    source = source or paths.p4src() / "v1model" / "p4cs.p4"
    outdir = outdir or paths.build_dir("bmv2")
    outdir.mkdir(parents=True, exist_ok=True)
    out_json = outdir / "p4cs.json"
    out_p4info = outdir / "p4cs.p4info.txtpb"
    includes = ["-I", str(paths.p4src() / "include"), "-I", str(outdir)]
    if p4c is None:
        p4c = shutil.which("p4c-bm2-ss") or shutil.which("p4c")
    if p4c is None:
        raise Bmv2Error(
            "p4c is not installed (neither p4c-bm2-ss nor p4c is on PATH): cannot compile "
            f"{source} for BMv2"
        )
    if os.path.basename(p4c) == "p4c":
        cmd = [p4c, "--target", "bmv2", "--arch", "v1model", "-o", str(outdir)]
        cmd += ["--p4runtime-files", str(out_p4info), *includes, str(source)]
    else:
        cmd = [p4c, "--arch", "v1model", "-o", str(out_json)]
        cmd += ["--p4runtime-files", str(out_p4info), *includes, str(source)]
    LOG.info("compiling: %s", " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise Bmv2Error(f"p4c failed ({res.returncode}):\n{res.stderr or res.stdout}")
    if not out_json.exists():
        produced = outdir / (source.stem + ".json")
        if produced.exists():
            produced.rename(out_json)
    return Bmv2Artifacts(out_json, out_p4info)


def simple_switch_argv(
    ifaces: dict[int, str],
    *,
    device_id: int,
    grpc_addr: str,
    cpu_port: int = BMV2_CPU_PORT,
    json: Path | None = None,
    binary: str = "simple_switch_grpc",
    log_console: bool = False,
) -> list[str]:
    argv = [binary, "--device-id", str(device_id)]
    for port, name in sorted(ifaces.items()):
        argv += ["-i", f"{port}@{name}"]
    if log_console:
        argv.append("--log-console")
    argv.append(str(json) if json else "--no-p4")
    argv += ["--", "--grpc-server-addr", grpc_addr, "--cpu-port", str(cpu_port)]
    return argv


def start_simple_switch(
    ifaces: dict[int, str],
    *,
    device_id: int,
    grpc_addr: str,
    cpu_port: int = BMV2_CPU_PORT,
    netns: str | None = None,
    json: Path | None = None,
) -> subprocess.Popen:
    binary = shutil.which("simple_switch_grpc")
    if binary is None:
        raise Bmv2Error(
            "simple_switch_grpc is not installed (BMv2 is not packaged for Debian 12: build it "
            "from source, or use --target dpdk)"
        )
    argv = simple_switch_argv(
        ifaces, device_id=device_id, grpc_addr=grpc_addr, cpu_port=cpu_port, json=json, binary=binary
    )
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    LOG.info("starting: %s", " ".join(argv))
    return subprocess.Popen(argv)
