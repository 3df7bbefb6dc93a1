"""`p4cs rules check | eval | load`."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import List, Optional

import typer

from .parser import RuleError

app = typer.Typer(help="Content-switching rules: check conflicts, dry-run requests, hot reload.",
                  no_args_is_help=True, add_completion=False)

DEFAULT_SOCKET = "/run/p4cs/controller.sock"


def _err(msg: str, code: int = 2) -> "typer.Exit":
    typer.echo(msg, err=True)
    return typer.Exit(code)


def _load(path: Path):
    from .ruleset import load_rules

    try:
        return load_rules(path)
    except RuleError as e:
        for m in e.messages:
            typer.echo(m, err=True)
        raise typer.Exit(1)


def _endpoint(text: str, what: str) -> tuple[str, int]:
    import ipaddress

    host, sep, port = text.rpartition(":")
    if not sep:
        raise _err(f"invalid {what} {text!r}: expected IP:PORT")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        p = int(port)
        if not 0 <= p <= 65535:
            raise ValueError
    except ValueError:
        raise _err(f"invalid {what} {text!r}: expected IP:PORT (e.g. 10.0.0.1:40000)")
    return host, p


@app.command()
def check(
    file: Path = typer.Argument(..., help="rule file"),
    json_out: bool = typer.Option(False, "--json", help="print findings as a JSON list"),
    disjoint: bool = typer.Option(False, "--disjoint", help="with --json: print an object with "
                                  "the findings and every compared pair proven disjoint, with the proof's source"),
    timeout_ms: int = typer.Option(3000, "--timeout-ms", help="solver time limit per query"),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="the service's protocol "
                                           "(http, tls, smtp, pop3, imap): reject fields its requests "
                                           "never have, as the controller does"),
) -> None:
    """Detect duplicate, absolute, potential, shadowed and wrongly ordered rules, each with a
    witness request. Exit status 1 if any error-level finding (all but potential)."""
    from p4cs.capabilities import PROTOCOL_FIELDS

    from .conflicts import check_rules
    from .ruleset import protocol_problems

    rs = _load(file)
    if protocol is not None:
        if protocol not in PROTOCOL_FIELDS:
            raise _err(f"--protocol must be one of {', '.join(PROTOCOL_FIELDS)}")
        problems = protocol_problems(rs, protocol)
        if problems:
            for m in problems:
                typer.echo(m, err=True)
            raise typer.Exit(1)
    findings, stats = check_rules(rs, timeout_ms=timeout_ms)
    if json_out and disjoint:
        typer.echo(json.dumps({"findings": [f.to_dict() for f in findings],
                               "disjoint": stats["disjoint"]}, indent=2))
    elif json_out:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        con = Console()
        if not findings:
            con.print(f"{file}: {len(rs)} rules, no conflicts")
        else:
            t = Table(title=f"{file}: {len(rs)} rules, {len(findings)} findings", show_lines=True)
            for col in ("kind", "rules", "finding", "witness"):
                t.add_column(col, overflow="fold")
            for f in findings:
                w = f.witness
                wt = "-"
                if w:
                    assign = ", ".join(f"{k}={v!r}" if v is not None else f"{k} absent"
                                       for k, v in w["fields"].items())
                    wt = assign + "\n\n" + w["request"].replace("\r\n", "\n").strip()
                    if not w.get("verified"):
                        wt += "\n(not verified against the extractors)"
                style = "red" if f.severity == "error" else "yellow"
                t.add_row(f"[{style}]{f.kind}[/{style}]", " vs ".join(f.rules), f.message, wt)
            con.print(t)
        if stats["undecided"]:
            con.print(f"[yellow]undecided (solver time limit): {stats['undecided']}[/yellow]")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    file: Path = typer.Argument(..., help="rule file"),
    requests: List[Path] = typer.Argument(..., help="files with the raw bytes a client sends"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per request"),
    client: str = typer.Option("192.0.2.10:40000", "--client", help="client IP:PORT"),
    vip: str = typer.Option("198.51.100.1:80", "--vip", help="virtual service IP:PORT"),
) -> None:
    """Dry run: the decision for each request (same code path as the controller)."""
    from .ruleset import classify

    rs = _load(file)
    c = _endpoint(client, "--client")
    v = _endpoint(vip, "--vip")
    status = 0
    for req in requests:
        try:
            raw = req.read_bytes()
        except OSError as e:
            typer.echo(f"{req}: cannot read: {e.strerror or e}", err=True)
            status = 2
            continue
        d = classify(rs, raw, c, v)
        if json_out:
            typer.echo(json.dumps({"request": str(req), "rule": d.rule, "action": d.action,
                                   "target": d.target,
                                   "sticky": d.sticky if d.rule is not None else None,
                                   "algorithm": d.algorithm, "logs": list(d.logs)}))
        else:
            typer.echo(f"{req}: {d.describe()}")
            for line in d.logs:
                typer.echo(f"    log: {line}")
    raise typer.Exit(status)


@app.command()
def load(
    file: Path = typer.Argument(..., help="rule file to activate"),
    sock: Optional[str] = typer.Option(None, "--socket", help=f"controller control socket (default $P4CS_CONTROL_SOCKET or {DEFAULT_SOCKET})"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the controller"),
) -> None:
    """Validate FILE, then ask the running controller to swap to it atomically."""
    path = file.resolve()
    _load(path)  # local validation: errors are shown even when the controller is not running
    sock_path = sock or os.environ.get("P4CS_CONTROL_SOCKET") or DEFAULT_SOCKET
    try:
        reply = control_request(sock_path, {"op": "rules.load", "path": str(path)}, timeout)
    except OSError as e:
        raise _err(f"cannot reach the controller at {sock_path}: {e.strerror or e}", 2)
    except ValueError as e:
        raise _err(f"bad reply from the controller at {sock_path}: {e}", 2)
    if reply.get("ok") is True:
        typer.echo(f"loaded {path}")
        return
    errors = reply.get("errors") or [reply.get("error") or "rejected without a reason"]
    for e in errors:
        typer.echo(str(e), err=True)
    raise typer.Exit(1)


def control_request(sock_path: str, msg: dict, timeout: float = 30.0) -> dict:
    """Send one JSON line on the controller's Unix socket and read one JSON line back."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall((json.dumps(msg) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 16 << 20:
                raise ValueError("reply too long")
    finally:
        s.close()
    line = buf.split(b"\n", 1)[0]
    if not line:
        raise ValueError("connection closed without a reply")
    try:
        reply = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}")
    if not isinstance(reply, dict):
        raise ValueError("not a JSON object")
    return reply
