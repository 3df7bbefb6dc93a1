"""BMv2 target: run `simple_switch_grpc` (and compile the v1model program with p4c).

BMv2 serves P4Runtime itself; p4cs only prepares the artifacts and owns the process. The
switch starts without a program (`--no-p4`): the controller pushes the pipeline (P4Info + BMv2
JSON, committed in p4src/build/bmv2/) with SetForwardingPipelineConfig, which finsy does on
connect.

With a network namespace, the data plane runs inside it (`ip netns exec`) and so would BMv2's
gRPC port; the P4Runtime address must stay in the caller's namespace, as with the DPDK target.
So BMv2 listens on a Unix socket in the work directory (the file system is shared between
namespaces) and :func:`serve` relays the TCP address to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from p4cs import paths
from p4cs.p4gen import P4C_FLAGS

LOG = logging.getLogger("p4cs.switch.bmv2")

BMV2_CPU_PORT = 255
#: MTU of a packet port's veth pair: the largest data-plane frame (jumbo) plus its
#: packet_in / packet_out header.
PACKET_PORT_MTU = 9500


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
        cmd = [p4c, "--target", "bmv2", "--arch", "v1model", *P4C_FLAGS, "-o", str(outdir)]
        cmd += ["--p4runtime-files", str(out_p4info), *includes, str(source)]
    else:
        cmd = [p4c, "--arch", "v1model", *P4C_FLAGS, "-o", str(out_json)]
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
    cpu_port: int | None = BMV2_CPU_PORT,
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
    argv += ["--", "--grpc-server-addr", grpc_addr]
    if cpu_port is not None:
        argv += ["--cpu-port", str(cpu_port)]
    return argv


def simple_switch_binary() -> str:
    """The path of simple_switch_grpc; Bmv2Error when it is not installed."""
    binary = shutil.which("simple_switch_grpc")
    if binary is None:
        raise Bmv2Error(
            "simple_switch_grpc is not installed (BMv2 is not packaged for Debian 12: build it "
            "from source, or use --target dpdk)"
        )
    return binary


def start_simple_switch(
    ifaces: dict[int, str],
    *,
    device_id: int,
    grpc_addr: str,
    cpu_port: int | None = BMV2_CPU_PORT,
    netns: str | None = None,
    json: Path | None = None,
) -> subprocess.Popen:
    argv = simple_switch_argv(
        ifaces, device_id=device_id, grpc_addr=grpc_addr, cpu_port=cpu_port, json=json,
        binary=simple_switch_binary()
    )
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    LOG.info("starting: %s", " ".join(argv))
    return subprocess.Popen(argv, preexec_fn=_die_with_parent)


_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,13}$")


def packet_veth_peer(name: str) -> str:
    """The switch's end of the packet port ``name``: ``<name>s``. ValueError for a name that
    cannot be an interface's with room for that suffix."""
    if not _IFNAME_RE.match(name):
        raise ValueError(f"{name!r} is not an interface name of at most 14 characters "
                         "(letters, digits, '_', '.', '-')")
    return name + "s"


def _ip(argv: list[str], netns: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *(["-n", netns] if netns else []), *argv],
                          capture_output=True, text=True)


def _no_ipv6(ifname: str, netns: str | None) -> None:
    """No IPv6 on a packet port: the kernel's own frames (router solicitations, MLD) would
    reach the switch as packet-outs."""
    argv = ["sysctl", "-q", "-w", f"net.ipv6.conf.{ifname}.disable_ipv6=1"]
    subprocess.run((["ip", "netns", "exec", netns] if netns else []) + argv,
                   capture_output=True)


def create_packet_veth(name: str, netns: str | None = None, mtu: int = PACKET_PORT_MTU) -> str:
    """The veth pair of a packet port: ``name`` in the caller's namespace, for the CS
    processor (the controller's ``switch.packet_port``), and its peer ``<name>s`` (in
    ``netns`` when given), which becomes the switch's CPU port. Both ends are up, without
    IPv6 or addresses. A veth ``name`` that exists already is the leftover of a killed switch
    (the caller holds the interface's lock) and is replaced. Returns the peer's name;
    Bmv2Error if it cannot be made (the name is another kind of interface, no privileges)."""
    peer = packet_veth_peer(name)
    if "veth" in _ip(["-d", "-o", "link", "show", name]).stdout.split():
        delete_packet_veth(name)
    argv = ["link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name", peer,
            "mtu", str(mtu)]
    if netns:
        argv += ["netns", netns]
    res = _ip(argv)
    if res.returncode != 0:
        raise Bmv2Error(f"cannot create the packet port {name}: "
                        f"{(res.stderr or res.stdout).strip()}")
    for ifname, ns in ((name, None), (peer, netns)):
        _no_ipv6(ifname, ns)
        res = _ip(["link", "set", ifname, "up"], ns)
        if res.returncode != 0:
            delete_packet_veth(name)
            raise Bmv2Error(f"cannot bring {ifname} up: {(res.stderr or res.stdout).strip()}")
    return peer


def delete_packet_veth(name: str) -> None:
    """Remove the packet port ``name`` (its peer goes with it); nothing if it is gone."""
    _ip(["link", "del", name])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies, so that a
    killed `p4cs switch` never leaves BMv2 attached to its interfaces."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def relay(host: str, port: int, unix_path: str) -> asyncio.AbstractServer:
    """Accept TCP connections on host:port, each forwarded to the Unix socket unix_path."""

    async def one(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_unix_connection(unix_path)
        except OSError as exc:
            LOG.warning("P4Runtime relay: %s: %s", unix_path, exc)
            cw.close()
            return
        await asyncio.gather(_pipe(cr, sw), _pipe(sr, cw))

    return await asyncio.start_server(one, host, port)


def _accepts(path: str) -> bool:
    """Whether something accepts connections on the Unix socket path."""
    with socket.socket(socket.AF_UNIX) as s:
        return s.connect_ex(path) == 0


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


async def serve(
    ifaces: dict[int, str],
    *,
    device_id: int,
    grpc_addr: str,
    cpu_port: int = BMV2_CPU_PORT,
    netns: str | None = None,
    workdir: str | None = None,
    packet_veth: str | None = None,
    start_timeout: float = 60.0,
) -> int:
    """Run simple_switch_grpc until SIGINT/SIGTERM (it is then stopped) or until it exits;
    its exit status. Raises Bmv2Error when it is not installed.

    ``packet_veth``: the CS processor attaches to a data-plane port instead of the P4Runtime
    stream. A veth pair is made (:func:`create_packet_veth`), its peer is the CPU port, and
    BMv2 runs without ``--cpu-port``: packet_in / packet_out headers ride on that port's
    frames, as they would on a switch port cabled to a CS processor. The pair is removed at
    the end."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tmp = None
    listen = grpc_addr
    if netns:
        if workdir is None:
            workdir = tmp = tempfile.mkdtemp(prefix="p4cs-bmv2-")
        Path(workdir).mkdir(parents=True, exist_ok=True)
        sock = str(Path(workdir).resolve() / "p4runtime.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        listen = f"unix:{sock}"
    simple_switch_binary()      # before anything is made for it
    sw_cpu_port: int | None = cpu_port
    if packet_veth:
        ifaces = {**ifaces, cpu_port: create_packet_veth(packet_veth, netns)}
        sw_cpu_port = None
    try:
        proc = start_simple_switch(ifaces, device_id=device_id, grpc_addr=listen,
                                   cpu_port=sw_cpu_port, netns=netns)
    except BaseException:
        if packet_veth:
            delete_packet_veth(packet_veth)
        raise
    server = None
    try:
        if netns:
            deadline = time.monotonic() + start_timeout
            while not _accepts(sock):
                if stop.is_set() or proc.poll() is not None or time.monotonic() > deadline:
                    if not stop.is_set():
                        LOG.error("simple_switch_grpc did not start its P4Runtime server "
                                  "(exit status %s)", proc.poll())
                    return 0 if stop.is_set() else 1
                await asyncio.sleep(0.1)
            host, _, port = grpc_addr.rpartition(":")
            try:
                server = await relay(host.strip("[]"), int(port), sock)
            except (OSError, ValueError) as exc:
                LOG.error("cannot listen on %s: %s", grpc_addr, exc)
                return 1
        where = f" on the packet port {packet_veth}" if packet_veth else ""
        print(f"p4cs switch: BMv2 (pid {proc.pid}), P4Runtime on {grpc_addr}, device id "
              f"{device_id}, CPU port {cpu_port}{where}", flush=True)
        exited = asyncio.ensure_future(loop.run_in_executor(None, proc.wait))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if proc.poll() is not None:
            LOG.error("simple_switch_grpc exited with status %d", proc.returncode)
            return proc.returncode or 1
        return 0
    finally:
        if server is not None:
            server.close()
        rc = await loop.run_in_executor(None, _stop, proc)
        LOG.info("simple_switch_grpc stopped (%d)", rc)
        if packet_veth:
            delete_packet_veth(packet_veth)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
