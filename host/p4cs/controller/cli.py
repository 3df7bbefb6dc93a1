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
from p4cs.controller.config import ConfigError, load_config


def default_artifacts(target: str) -> tuple[Path, Optional[Path]]:
    return paths.p4info(target), paths.bmv2_json() if target == "bmv2" else paths.spec()


def controller_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="controller configuration (YAML)"),
    p4info: Optional[Path] = typer.Option(None, help="P4Info (default: p4src/build/<target>/p4cs.p4info.txtpb)"),
    p4blob: Optional[Path] = typer.Option(None, help="device config to push (SWX spec or BMv2 JSON)"),
    push: bool = typer.Option(False, "--push/--no-push", help="push the pipeline even if the switch has it"),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
    access_log: Optional[str] = typer.Option(
        None, "--access-log", help="one line per spliced connection: FILE, syslog or - "
                                   "(default: control.access_log, else none)"),
) -> None:
    """Run the content-switch controller against a switch (P4Runtime)."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("finsy").setLevel(logging.WARNING)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    from p4cs.controller.operator import setup_logging
    try:
        setup_logging(access_log or cfg.control.access_log)
    except OSError as exc:
        typer.echo(f"error: access log: {exc}", err=True)
        raise typer.Exit(2)
    d_info, d_blob = default_artifacts(cfg.switch.target)
    p4info = p4info or cfg.switch.p4info or d_info
    p4blob = p4blob or cfg.switch.p4blob or d_blob
    for p in (p4info, p4blob):
        if p is not None and not p.is_file():
            typer.echo(f"error: {p} does not exist", err=True)
            raise typer.Exit(2)
    from p4cs.controller.app import AlreadyRunning, ControllerApp
    try:
        app = ControllerApp(cfg, p4info, p4blob, push)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    try:
        asyncio.run(app.run())
    except AlreadyRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def control_request(req: dict, sock_path: Optional[str] = None, timeout: float = 10.0) -> dict:
    """Send one JSON request to a running controller's control socket."""
    path = sock_path or os.environ.get("P4CS_CONTROL_SOCKET", "/run/p4cs/controller.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def ask(req: dict, sock_path: Optional[str], refused_exit: int = 1) -> dict:
    """A running controller's answer to ``req``. Exits 1 (one line) when it cannot be
    reached, ``refused_exit`` when it refuses the request."""
    try:
        resp = control_request(req, sock_path)
    except OSError as exc:
        typer.echo(f"error: cannot reach the controller: {exc}", err=True)
        raise typer.Exit(1)
    if not resp.get("ok"):
        typer.echo("error: " + "; ".join(resp.get("errors", ["unknown"])), err=True)
        raise typer.Exit(refused_exit)
    return resp


def status_cmd(
    socket_path: Optional[str] = typer.Option(None, "--socket", help="controller control socket"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    connections: bool = typer.Option(False, "--connections", "-c", help="list connections in the CS processor"),
    templates: bool = typer.Option(False, "--templates", "-t",
                                   help="list client-IP persistence templates (like ipvsadm -L -c)"),
) -> None:
    """Show a running controller's services, servers, flows and counters (like ipvsadm -L)."""
    op = "connections" if connections else "templates" if templates else "status"
    resp = ask({"op": op}, socket_path)
    if as_json:
        typer.echo(json.dumps(resp, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    console = Console()
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
    console.print(f"switch {st['switch']}  {st['state']} for {st['state_for_s']:.0f} s  "
                  f"primary={st['primary']}  flows={st['flows']}  adopted={st['adopted_flows']}")
    t = Table("service", "vip:port", "mode", "rules")
    for s in st["services"]:
        t.add_row(s["name"], f"{s['vip']}:{s['port']}", s["mode"], s["rules"] or "-")
    console.print(t)
    t = Table("group", "server", "weight", "active", "total", "up", "last check")
    for g, servers in st["groups"].items():
        for s in servers:
            h = s.get("health") or {}
            last = "-" if "last_ok" not in h else \
                ("ok" if h["last_ok"] else "failed") + f": {h['last_detail']}"
            t.add_row(g, s["server"], str(s["weight"]), str(s["active"]), str(s["total"]),
                      str(s["up"]) + (" (overloaded)" if s.get("overloaded") else ""), last)
    console.print(t)
    t = Table("counter", "value")
    for k, v in {**st["counters"], **{f"csproc.{k}": v for k, v in (st.get("csproc") or {}).items()}}.items():
        t.add_row(k, str(v))
    console.print(t)
