"""`p4cs demo`: content switching on a P4 target, end to end, in namespaces.

Builds a topology (a client, the switch, three HTTP servers with distinct content), starts the
switch (the embedded DPDK target, or BMv2 with ``--target bmv2``) and the controller with the URL-switching example of the source documents
(``/~lcs1/`` → ace, ``/~lcs2/`` → wait, everything else balanced over all servers), sends real
requests with curl, prints which server answered each and how many packets took the fast path
versus the controller, and tears everything down (also on Ctrl-C).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
import yaml

from p4cs.lab.server import file_sha256

BIG = 8 * 1024 * 1024

#: How the demo names each target in its messages.
TARGET_NAMES = {"dpdk": "the embedded DPDK target", "bmv2": "BMv2"}


def _check_env(target: str) -> Optional[str]:
    if target not in TARGET_NAMES:
        return f"unknown target {target!r}: expected dpdk or bmv2"
    if os.geteuid() != 0:
        return "the demo builds network namespaces: run it as root (sudo .venv/bin/p4cs demo)"
    import shutil

    from p4cs import paths
    if target == "bmv2":
        if shutil.which("simple_switch_grpc") is None:
            return ("BMv2 simple_switch_grpc is not on PATH (it is not packaged for Debian 12: "
                    "build it from source, see docs/topologies.md)")
        return None
    daemon = paths.daemon_binary()
    if not Path(daemon).exists() and shutil.which(daemon) is None:
        return f"the data-plane daemon {daemon} is not built: run scripts/setup.sh first"
    return None


def demo_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="YAML with 'services:' and optional 'groups:' / 'limits:' "
                                               "for the demo topology (hosts and ports are filled in)"),
    requests: list[str] = typer.Option(["/~lcs1/", "/~lcs2/", "/", "/", "/"], "--request", "-r",
                                       help="paths to GET through the VIP (repeatable)"),
    prefix: str = typer.Option("p4csdemo", help="name prefix of the namespaces"),
    keep: bool = typer.Option(False, help="keep the work directory (logs) after the demo"),
    target: str = typer.Option("dpdk", "--target", help="dpdk (embedded DPDK target) or bmv2"),
) -> None:
    """Run the content-switching demo on the embedded DPDK target (or on BMv2)."""
    from rich.console import Console
    from rich.table import Table

    from p4cs.lab.stack import Lab

    console = Console(width=max(110, Console().width))
    problem = _check_env(target)
    if problem:
        console.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2)
    kwargs: dict = {}
    if config is not None:
        try:
            doc = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            console.print(f"[red]error:[/red] cannot read {config}: {exc}")
            raise typer.Exit(2)
        if not isinstance(doc, dict):
            console.print(f"[red]error:[/red] {config}: expected a mapping")
            raise typer.Exit(2)
        unknown = set(doc) - {"services", "groups", "limits"}
        if unknown:
            console.print(f"[red]error:[/red] {config}: the demo takes services, groups and limits "
                          f"(the topology provides the rest); unknown: {', '.join(sorted(unknown))}")
            raise typer.Exit(2)
        for key in ("services", "groups", "limits"):
            if key in doc:
                kwargs[key] = doc[key]
        if not isinstance(kwargs.get("services", []), list) or not all(
                isinstance(kwargs.get(k, {}), dict) for k in ("groups", "limits")):
            console.print(f"[red]error:[/red] {config}: 'services' must be a list, "
                          "'groups' and 'limits' mappings")
            raise typer.Exit(2)
        if "services" in kwargs:
            for s in kwargs["services"]:
                if isinstance(s, dict) and isinstance(s.get("rules"), str):
                    s["rules"] = str((config.parent / s["rules"]).resolve())

    lab = Lab(prefix, target=target, big_files={"8M": BIG}, keep_workdir=keep, **kwargs)
    if config is not None:
        # Validate the merged configuration before anything is built.
        from p4cs.controller.config import ConfigError, parse_config
        try:
            parse_config(yaml.safe_dump(lab.config(), sort_keys=False), config)
        except ConfigError as exc:
            console.print(f"[red]error:[/red] {config}: {exc.msg}")
            lab.stop()
            raise typer.Exit(2)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            console.print(f"[red]error:[/red] {config}: services must be a list of mappings, groups and "
                          f"limits mappings ({exc})")
            lab.stop()
            raise typer.Exit(2)

    def _interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with console.status(f"building the topology, starting servers, {TARGET_NAMES[target]} "
                            "and the controller"):
            t0 = time.monotonic()
            lab.start()
        console.print(f"[green]ready[/green] in {time.monotonic() - t0:.1f} s — VIP {lab.vip}, "
                      f"switch {lab.topo.switch_netns}, P4Runtime 127.0.0.1:{lab.grpc_port}, work dir {lab.workdir}")
        table = Table("request", "status", "answered by", "time")
        ok = True
        for path in requests:
            t = time.monotonic()
            r = lab.curl(path, args=["-o", "/dev/null", "-D", "-", "-w", "%{http_code}\n"])
            dt = time.monotonic() - t
            server = next((ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines()
                           if ln.lower().startswith("x-server:")), "-")
            code = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"curl {r.returncode}"
            ok &= code == "200"
            table.add_row(f"GET http://{lab.vip}{path}", code, server, f"{dt * 1000:.0f} ms")
        # A large response: everything after the first packets must cross the fast path.
        t = time.monotonic()
        r = lab.client_exec(["sh", "-c", f"curl -sS --max-time 60 http://{lab.vip}/big/8M | sha256sum"])
        dt = time.monotonic() - t
        want = file_sha256(BIG)
        got = r.stdout.split()[0] if r.stdout else "-"
        ok &= got == want
        table.add_row(f"GET http://{lab.vip}/big/8M", "sha256 ok" if got == want else "sha256 MISMATCH",
                      "all (round robin)", f"{dt * 1000:.0f} ms, {BIG * 8 / dt / 1e6:.0f} Mbit/s")
        console.print(table)
        time.sleep(lab_teardown_wait(lab))
        fp = lab.control({"op": "fastpath"}).get("fastpath", {})
        st = lab.status()
        counts = Table("where packets went", "packets")
        counts.add_row("fast path (flow-table hits, P4 splice)", str(fp.get("packets", "?")))
        counts.add_row("controller (packet-in)", str(fp.get("controller_packet_in", "?")))
        counts.add_row("controller (packet-out)", str(fp.get("controller_packet_out", "?")))
        counts.add_row("flow entries installed / removed",
                       f"{st['counters']['flows_installed']} / {st['counters']['flows_removed']}")
        console.print(counts)
        if not ok:
            console.print("[red]some requests failed[/red]; logs in " + str(lab.workdir))
            lab.keep_workdir = True
            raise typer.Exit(1)
        console.print(f"[green]content switching on {TARGET_NAMES[target]} works[/green]")
    except KeyboardInterrupt:
        console.print("interrupted: tearing down")
        raise typer.Exit(130)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        lab.keep_workdir = True
        raise typer.Exit(1)
    finally:
        lab.stop()


def lab_teardown_wait(lab) -> float:
    """Flows are removed a TIME_WAIT-like delay after the close: wait for it so the counts are final."""
    return float(lab.limits.get("teardown_delay_s", 2.0)) + 0.5
