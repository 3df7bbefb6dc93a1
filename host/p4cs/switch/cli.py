"""`p4cs switch`: run a P4 switch target and its P4Runtime server."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Optional

import typer

from p4cs import paths
from p4cs.errors import Failure, InputError, grpc_address

LOG = logging.getLogger("p4cs.switch")

#: Lock files of the interfaces a running switch has attached (one per interface).
LOCK_DIR = Path(os.environ.get("P4CS_LOCK_DIR", "/run/p4cs"))


class Refused(Exception):
    """Another switch holds a resource this one needs."""


def check_grpc_addr(addr: str) -> None:
    """Refuse an address a server listens on already. (Port 0 picks a free one.)"""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise Refused(f"--grpc-addr {addr!r}: expected HOST:PORT")
    if int(port) == 0:
        return
    host = host.strip("[]") or "0.0.0.0"
    try:
        family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise Refused(f"--grpc-addr {addr!r}: {exc.strerror}") from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR ignores connections in TIME_WAIT, not a listener.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Refused(f"P4Runtime address {addr} is in use by another process") from None
            raise Refused(f"cannot listen on {addr}: {exc.strerror}") from None


def lock_ifaces(ports: dict[int, str], netns: str | None) -> list[int]:
    """Take the lock file of every interface (AF_XDP, AF_PACKET or TAP) for this process's
    lifetime; refuse an interface another switch holds. Returns the open lock descriptors."""
    fds: list[int] = []
    for name in ports.values():
        kind, _, ifname = name.partition(":")
        if kind not in ("afxdp", "afpacket", "tap") or not ifname:
            continue
        path = LOCK_DIR / f"iface-{netns or '-'}-{ifname}.lock"
        try:
            LOCK_DIR.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise Refused(f"cannot lock interface {ifname}: {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            where = f" in namespace {netns}" if netns else ""
            raise Refused(f"interface {ifname}{where} is attached to another switch "
                          f"(pid {owner})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        fds.append(fd)
    return fds


def parse_learner_timeouts(text: str) -> list[int]:
    """`10,60,300` → [10, 60, 300]: seconds, each in [1, 86400 * 7]."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isascii() or not part.isdigit() or not 1 <= int(part) <= 86400 * 7:
            raise typer.BadParameter(
                f"{text!r}: expected seconds in [1, 604800] separated by commas, e.g. 10,60,300",
                param_hint="--learner-timeouts")
        out.append(int(part))
    return out


PORT_KINDS = ("afxdp", "afpacket", "tap", "source", "sink")


def parse_ifaces(values: list[str], *, dpdk: bool, port_type: str = "afpacket") -> dict[int, str]:
    """`1=veth0` → {1: "<port_type>:veth0"} (DPDK) / {1: "veth0"} (BMv2); `1=tap:tap0` kept as is."""
    out: dict[int, str] = {}
    for v in values:
        port, sep, name = v.partition("=")
        if not sep or not port.strip().isascii() or not port.strip().isdigit() or not name:
            raise typer.BadParameter(f"--iface {v!r}: expected PORT=NAME, e.g. 1=veth0")
        p = int(port)
        if p > 511:
            raise typer.BadParameter(f"--iface {v!r}: the port number must be in [0, 511]")
        if p in out:
            raise typer.BadParameter(f"--iface: port {p} given twice")
        if dpdk:
            kind = name.split(":", 1)[0]
            if (":" not in name or kind not in PORT_KINDS) and name != "sink":
                name = f"{port_type}:{name}"
        elif ":" in name:
            name = name.split(":", 1)[1]
        out[p] = name
    return out


def _read_pipeline(spec: Path, p4info: Path) -> tuple:
    """(P4Info, spec bytes); InputError if a file is unreadable or the P4Info is not one."""
    from google.protobuf import message, text_format

    from .dpdk.pipeline import load_p4info

    try:
        info = load_p4info(p4info)
        dev = spec.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {e.filename}: {e.strerror}") from None
    except (text_format.ParseError, message.DecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p4info} is not a P4Info file: {e}") from None
    if not info.tables:
        raise InputError(f"{p4info} is not a P4Info file: it defines no table")
    return info, dev


async def _serve_dpdk(
    ports: dict[int, str],
    *,
    grpc_addr: str,
    device_id: int,
    netns: str | None,
    spec: Path | None,
    p4info: Path | None,
    cpu_port: int,
    workdir: str | None,
    learner_timeouts: list[int] | None,
    eal: str | None,
    daemon_log_level: int | None,
    packet_socket: str | None,
    packet_channels: int | None = None,
    prefault: bool = False,
) -> int:
    from .dpdk.errors import P4RTError
    from .dpdk.pipeline import TargetConfig, cookie_of
    from .dpdk.pktchan import default_path
    from .dpdk.server import P4RuntimeServer

    if cpu_port in ports:
        raise InputError(f"--cpu-port {cpu_port} is also an --iface port")
    target = TargetConfig(
        ports=ports,
        cpu_port=cpu_port,
        netns=netns,
        workdir=workdir,
        learner_timeouts=learner_timeouts,
        eal=eal,
        log_level=daemon_log_level,
        prefault=prefault,
        **({} if packet_channels is None else {"channels": packet_channels}),
    )
    pipeline = None if spec is None or p4info is None else _read_pipeline(spec, p4info)
    server = P4RuntimeServer(target, device_id=device_id)
    if pipeline is not None:
        info, dev = pipeline
        try:
            await server.load_pipeline(info, dev, cookie_of(info, dev), spec_path=str(spec))
        except P4RTError as e:
            LOG.error("cannot load the pipeline: %s", e.message)
            return 1
    else:
        LOG.warning("no pipeline loaded: waiting for SetForwardingPipelineConfig")
    try:
        port = await server.start(grpc_addr)
    except Exception as e:  # noqa: BLE001
        LOG.error("cannot start the P4Runtime server on %s: %s", grpc_addr, e)
        await server.stop()
        return 1
    if packet_socket != "none":
        host = grpc_addr.rpartition(":")[0]
        path = packet_socket or str(default_path(LOCK_DIR, f"{host}:{port}"))
        try:
            server.serve_packet_channel(path)
        except OSError as e:
            LOG.error("cannot serve the packet channel on %s: %s", path, e.strerror or e)
            await server.stop()
            return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"p4cs switch: P4Runtime on {grpc_addr}, device id {device_id}", flush=True)
    await stop.wait()
    LOG.info("shutting down")
    await server.stop()
    return 0


def switch_cmd(
    iface: list[str] = typer.Option(
        [], "--iface", "-i", help="P4 port = interface, e.g. 1=veth0 (see --port-type) or 1=tap:tap0"
    ),
    port_type: str = typer.Option(
        "afxdp",
        "--port-type",
        help="dpdk: how --iface interfaces are attached: afxdp (AF_XDP; AF_PACKET with a warning "
        "where the kernel or interface refuses XDP) or afpacket",
    ),
    target: str = typer.Option("dpdk", "--target", help="dpdk (embedded SWX daemon) or bmv2"),
    grpc_addr: str = typer.Option("127.0.0.1:9559", "--grpc-addr", help="P4Runtime listen address"),
    device_id: int = typer.Option(1, "--device-id", min=0, max=2**64 - 1, help="P4Runtime device id"),
    netns: Optional[str] = typer.Option(
        None, "--netns", help="run the data plane inside this network namespace"
    ),
    spec: Optional[Path] = typer.Option(None, "--spec", help="SWX pipeline spec (p4c-dpdk output)"),
    p4info: Optional[Path] = typer.Option(None, "--p4info", help="P4Info of --spec (text or binary)"),
    cpu_port: Optional[int] = typer.Option(
        None, "--cpu-port", min=0, max=511, help="CPU port number (default 0 for dpdk, 255 for bmv2)"
    ),
    workdir: Optional[str] = typer.Option(
        None, "--workdir", help="work directory (of the DPDK daemon; of BMv2's P4Runtime socket)"
    ),
    learner_timeouts: Optional[str] = typer.Option(
        None, "--learner-timeouts", help="override the learner timeout profiles, e.g. 10,60,300"
    ),
    eal: Optional[str] = typer.Option(None, "--eal", help="DPDK EAL arguments for the daemon"),
    prefault: bool = typer.Option(
        False, "--prefault",
        help="dpdk: make the flow tables' memory resident when the data plane starts (1,280 "
        "MiB with the default program, zeroed at start) instead of page by page as keys "
        "first hash into it: steady-state cost per connection from the first one",
    ),
    packet_socket: Optional[str] = typer.Option(
        None, "--packet-socket", metavar="PATH|none",
        help="dpdk: Unix socket of the direct packet channel, which hands the CPU port to the "
        "primary controller (default: <run dir>/p4rt-<host>-<port>.packets, the run dir being "
        "$P4CS_LOCK_DIR or /run/p4cs); none: packet I/O over P4Runtime only",
    ),
    packet_channels: Optional[int] = typer.Option(
        None, "--packet-channels", min=1, max=16,
        help="dpdk: pairs of CPU and copy sockets the data plane offers the controller's "
        "CS-processor workers (p4cs controller --workers N takes N of them and the data plane "
        "spreads the punts over them); default: the number of cores, at most 16",
    ),
    packet_veth: Optional[str] = typer.Option(
        None, "--packet-veth", metavar="NAME",
        help="bmv2: attach the CS processor to a data-plane port instead of the P4Runtime "
        "stream: a veth pair NAME / NAMEs is made, NAMEs (in --netns) is the CPU port, and the "
        "controller's switch.packet_port names NAME",
    ),
    no_pipeline: bool = typer.Option(
        False, "--no-pipeline", help="start without a pipeline (wait for the controller's)"
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more logging"),
) -> None:
    """Run the P4 switch: data plane on the given interfaces plus a P4Runtime server."""
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("p4cs.switch").setLevel(logging.INFO)
    if target not in ("dpdk", "bmv2"):
        raise typer.BadParameter("--target must be dpdk or bmv2")
    try:
        grpc_address(grpc_addr, listen=True)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--grpc-addr") from None
    if port_type not in ("afxdp", "afpacket"):
        raise typer.BadParameter("--port-type must be afxdp or afpacket")
    if packet_veth is not None:
        if target != "bmv2":
            raise typer.BadParameter("only with --target bmv2 (the DPDK target hands its CPU "
                                     "port over --packet-socket)", param_hint="--packet-veth")
        from .bmv2 import packet_veth_peer
        try:
            packet_veth_peer(packet_veth)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--packet-veth") from None
    if prefault and target != "dpdk":
        raise typer.BadParameter("only with --target dpdk (BMv2 allocates its tables itself)",
                                 param_hint="--prefault")
    ports = parse_ifaces(iface, dpdk=target == "dpdk", port_type=port_type)
    lt = parse_learner_timeouts(learner_timeouts) if learner_timeouts else None
    try:
        check_grpc_addr(grpc_addr)
        lock_ifaces(ports if target == "dpdk" else {p: f"afpacket:{n}" for p, n in ports.items()},
                    netns)
        if packet_veth is not None:     # a stale one of a killed switch is then replaced
            lock_ifaces({0: f"afpacket:{packet_veth}"}, None)
    except Refused as exc:
        typer.echo(f"p4cs switch: error: {exc}", err=True)
        raise typer.Exit(2)
    if target == "bmv2":
        from . import bmv2

        try:
            rc = asyncio.run(
                bmv2.serve(
                    ports,
                    device_id=device_id,
                    grpc_addr=grpc_addr,
                    cpu_port=cpu_port if cpu_port is not None else bmv2.BMV2_CPU_PORT,
                    netns=netns,
                    workdir=workdir,
                    packet_veth=packet_veth,
                )
            )
        except bmv2.Bmv2Error as e:
            raise Failure(str(e)) from None
        sys.exit(rc)

    default_pipeline = spec is None and p4info is None
    if not no_pipeline:
        spec = spec or paths.spec()
        p4info = p4info or paths.p4info("dpdk")
        for f in (spec, p4info):
            if not f.exists():
                raise InputError(f"{f} not found (run `p4cs generate --compile`, pass "
                                 "--spec/--p4info, or --no-pipeline)")
    else:
        spec = p4info = None
    # The p4cs flow table's idle-timeout profiles come from the one place of data-plane
    # parameters; a pipeline given with --spec keeps the profiles compiled into it.
    if lt is None and default_pipeline:
        from p4cs.params import defaults as _dp_defaults

        lt = list(_dp_defaults("dpdk").flow_timeouts_s)
    profile = os.environ.get("P4CS_PROFILE")  # developer aid: cProfile the server to this file
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    rc = asyncio.run(
        _serve_dpdk(
            ports,
            grpc_addr=grpc_addr,
            device_id=device_id,
            netns=netns,
            spec=spec,
            p4info=p4info,
            cpu_port=cpu_port if cpu_port is not None else 0,
            workdir=workdir,
            learner_timeouts=lt,
            eal=eal,
            daemon_log_level=None,
            packet_socket=packet_socket,
            packet_channels=packet_channels,
            prefault=prefault,
        )
    )
    if profile:
        prof.disable()
        prof.dump_stats(profile)
    sys.exit(rc)
