"""`p4cs controller` and the operator commands that talk to a running controller."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Optional

import typer

from p4cs import paths
from p4cs.controller.config import load_config
from p4cs.errors import Failure, InputError


def default_artifacts(target: str) -> tuple[Path, Optional[Path]]:
    return paths.p4info(target), paths.bmv2_json() if target == "bmv2" else paths.spec()


def controller_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="controller configuration (YAML)"),
    p4info: Optional[Path] = typer.Option(None, help="P4Info (default: p4src/build/<target>/p4cs.p4info.txtpb)"),
    p4blob: Optional[Path] = typer.Option(None, help="device config to push (SWX spec or BMv2 JSON)"),
    push: bool = typer.Option(False, "--push/--no-push", help="push the pipeline even if the switch has it"),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
    packet_io: Optional[str] = typer.Option(
        None, "--packet-io", metavar="direct|p4runtime",
        help="packet-ins and packet-outs on the switch's direct packet channel when it offers "
             "one, else on the P4Runtime stream (direct), or on the stream always (p4runtime); "
             "default: switch.packet_io, else direct"),
    writes: Optional[str] = typer.Option(
        None, "--writes", metavar="channel|grpc",
        help="the primary's flow Writes on the switch's channel socket when it offers one, "
             "else over gRPC (channel), or over gRPC always (grpc); default: switch.writes, "
             "else channel"),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64,
        help="CS-processor workers: the controller's engine and N-1 worker processes, each "
             "with its share of the connections (docs/architecture.md, the packet path)"),
    access_log: Optional[str] = typer.Option(
        None, "--access-log", help="one line per spliced connection: FILE, syslog or - "
                                   "(default: control.access_log, else none)"),
) -> None:
    """Run the content-switch controller against a switch (P4Runtime)."""
    if packet_io not in (None, "direct", "p4runtime"):
        raise typer.BadParameter("expected direct or p4runtime", param_hint="--packet-io")
    if writes not in (None, "channel", "grpc"):
        raise typer.BadParameter("expected channel or grpc", param_hint="--writes")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("finsy").setLevel(logging.WARNING)
    cfg = load_config(config)
    from p4cs.controller.operator import setup_logging
    access_log = access_log or cfg.control.access_log
    try:
        setup_logging(access_log)
    except OSError as exc:
        raise InputError(f"access log: {exc}") from None
    d_info, d_blob = default_artifacts(cfg.switch.target)
    p4info = p4info or cfg.switch.p4info or d_info
    p4blob = p4blob or cfg.switch.p4blob or d_blob
    for p in (p4info, p4blob):
        if p is not None and not p.is_file():
            raise InputError(f"{p} does not exist")
    check_p4info(p4info)
    from p4cs.controller.app import AlreadyRunning, ControllerApp
    try:
        app = ControllerApp(cfg, p4info, p4blob, push, packet_io, workers, access_log,
                            writes=writes)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        asyncio.run(app.run())
    except AlreadyRunning as exc:
        raise InputError(str(exc)) from None


#: The P4 objects the controller writes (docs/usage.md: what the controller writes).
P4_TABLES = ("egress_table", "arp_table", "local_table", "vip_table", "backend_table",
             "ipv4_route", "flow_table")


def check_p4info(path: Path) -> None:
    """InputError unless ``path`` is a P4Info (text format) with the tables of p4cs."""
    from google.protobuf import text_format
    from finsy.proto import p4i

    info = p4i.P4Info()
    try:
        text_format.Parse(path.read_text(), info)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a P4Info file (text format): {exc}") from None
    have = {t.preamble.alias or t.preamble.name for t in info.tables}
    missing = [t for t in P4_TABLES if t not in have]
    if missing:
        raise InputError(f"{path} is not the P4Info of p4cs: no table {', '.join(missing)}")


def control_socket(sock_path: Optional[str] = None) -> str:
    return sock_path or os.environ.get("P4CS_CONTROL_SOCKET", "/run/p4cs/controller.sock")


def control_request(req: dict, sock_path: Optional[str] = None, timeout: float = 10.0) -> dict:
    """Send one JSON request to a running controller's control socket. OSError if it cannot
    be reached, ValueError if the answer is not a JSON object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(control_socket(sock_path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    try:
        resp = json.loads(buf)
    except ValueError:
        resp = None
    if not isinstance(resp, dict):
        raise ValueError("the controller's answer is not a JSON object")
    return resp


def request_or_exit(req: dict, sock_path: Optional[str],
                    refused: type[Exception] = Failure) -> dict:
    """The answer of the controller to ``req``; :class:`Failure` (one line, exit 1) when it
    cannot be reached, ``refused`` when it refuses the request (:class:`InputError`, exit 2,
    for a request the user got wrong)."""
    where = control_socket(sock_path)
    try:
        resp = control_request(req, sock_path)
    except OSError as exc:
        raise Failure(f"cannot reach the controller at {where}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Failure(f"controller at {where}: {exc}") from None
    if not resp.get("ok"):
        raise refused("; ".join(map(str, resp.get("errors", ["unknown"]))))
    return resp


def status_cmd(
    socket_path: Optional[str] = typer.Option(None, "--socket", help="controller control socket"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    connections: bool = typer.Option(False, "--connections", "-c", help="list connections in the CS processor"),
    templates: bool = typer.Option(False, "--templates", "-t",
                                   help="list persistence templates (like ipvsadm -L -c)"),
    stats: bool = typer.Option(False, "--stats", help="totals per service and server (like ipvsadm -L --stats)"),
    rate: bool = typer.Option(False, "--rate", help="rates per service and server (like ipvsadm -L --rate)"),
    flow: Optional[str] = typer.Option(None, "--flow", metavar="CLIENT_IP:PORT",
                                       help="the switch's packet/byte counters of one client connection"),
) -> None:
    """Show a running controller's services, servers, flows and counters (like ipvsadm -L -n)."""
    from p4cs.controller import views
    if flow is not None:
        resp = request_or_exit({"op": "flow", "client": flow}, socket_path)
    else:
        op = "connections" if connections else "templates" if templates else "status"
        resp = request_or_exit({"op": op}, socket_path)
    if as_json:
        typer.echo(json.dumps(resp, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table
    console = Console()
    if flow is not None:
        if not resp["flows"]:
            raise Failure(f"no flow of client {flow} is installed")
        t = Table("flow id", "direction", "client", "service", "server", "packets", "bytes")
        for row in views.flow_rows(resp["flows"]):
            t.add_row(*row)
        console.print(t)
        return
    if connections:
        t = Table("id", "state", "client", "service", "server", "age")
        for c in resp["connections"]:
            t.add_row(*(str(c.get(k, "")) for k in ("id", "state", "client", "service", "server", "age")))
        console.print(t)
        return
    if templates:
        t = Table("service", "client", "netmask", "server", "connections", "expires in (s)")
        for c in resp["templates"]:
            t.add_row(*(str(c[k]) for k in ("service", "client", "netmask", "server",
                                            "connections", "expires_in")))
        console.print(t)
        return
    st = resp["status"]
    if stats or rate:
        typer.echo(views.ipvs_listing(st, "stats" if stats else "rate"))
        return
    console.print(f"switch {st['switch']}  {st['state']} for {st['state_for_s']:.0f} s  "
                  f"primary={st['primary']}  packets={st.get('packet_io', '-')}  "
                  f"writes={st.get('writes', '-')}  flows={st['flows']}  "
                  f"adopted={st['adopted_flows']}")
    if len(st.get("workers", ())) > 1:
        console.print("workers " + "  ".join(
            f"{w['worker']}: pid {w['pid']} accepted {w['accepted']} restarts {w['restarts']}"
            + (f" channel {w['channel']}" if "channel" in w else "")
            for w in st["workers"]), highlight=False, markup=False)
    console.print(views.ipvs_listing(st), highlight=False, markup=False)
    t = Table("service", "vip:port", "mode", "rules")
    for s in st["services"]:
        t.add_row(s["name"], f"{s['vip']}:{s['port']}", s["mode"], s["rules"] or "-")
    console.print(t)
    if st.get("rules"):
        t = Table("service", "rule", "hits", "last hit")
        for row in views.rule_rows(st):
            t.add_row(*row)
        console.print(t)
    t = Table("group", "server", "weight", "active", "total", "pooled", "up", "last check")
    for g, servers in st["groups"].items():
        for s in servers:
            h = s.get("health") or {}
            last = "-" if "last_ok" not in h else \
                ("ok" if h["last_ok"] else "failed") + f": {h['last_detail']}"
            pool = s.get("pooled") or {}
            t.add_row(g, s["server"], str(s["weight"]), str(s["active"]), str(s["total"]),
                      f"{pool.get('idle', 0)}+{pool.get('opening', 0)}", str(s["up"]) + (" (overloaded)" if s.get("overloaded") else ""), last)
    console.print(t)
    if st.get("l4"):
        t = Table(*views.L4_COLS, title="L4 services (balanced in the data plane)",
                  title_justify="left")
        for row in views.l4_rows(st):
            t.add_row(*row)
        console.print(t)
        why = views.dataplane_unavailable(st)
        if why is None:
            t = Table("L4 data plane (all L4 services)", "count")
            for row in views.l4_counter_rows(st):
                t.add_row(*row)
            console.print(t)
        else:
            console.print(f"L4 data plane counts: {why}", highlight=False, markup=False)
    console.print(views.ports_listing(st), highlight=False, markup=False, soft_wrap=True)
    if st.get("neighbours"):
        t = Table("neighbour", "mac", "port", "state", "confirmed (s ago)")
        for n in st["neighbours"]:
            t.add_row(n["ip"], n["mac"] or "-", str(n["port"] if n["port"] is not None else "-"),
                      n["state"], "-" if n["confirmed_s_ago"] is None else str(n["confirmed_s_ago"]))
        console.print(t)
    t = Table("counter", "value")
    for k, v in {**st["counters"], **{f"csproc.{k}": v for k, v in (st.get("csproc") or {}).items()}}.items():
        t.add_row(k, str(v))
    console.print(t)
