"""`p4cs top`: a live view of a running controller (services, servers, rules, fast path
against slow path), refreshed from its control socket."""

from __future__ import annotations

import time
from typing import Optional

import typer

from p4cs.controller import views
from p4cs.controller.cli import request_or_exit


def render(st: dict):
    """The tables of one refresh, from a status dict."""
    from rich.console import Group
    from rich.table import Table
    head = (f"switch {st['switch']}  {st['state']} for {st['state_for_s']:.0f} s  "
            f"flows {st['flows']}  adopted {st['adopted_flows']}")
    services = Table("service", "vip:port", "mode", "scheduler", "conns", "conn/s", "in B/s",
                     "out B/s", title="services", title_justify="left")
    for row in views.service_rows(st):
        services.add_row(*row)
    servers = Table("service", "group", "server", "state", "weight", "active", "inactive",
                    "conn/s", "in B/s", "out B/s", title="servers", title_justify="left")
    for row in views.server_rows(st):
        servers.add_row(*row, style=None if row[3] == "up" else "red")
    rules = Table("service", "rule", "hits", "last hit", title="rules", title_justify="left")
    for row in views.rule_rows(st):
        rules.add_row(*row)
    paths = Table("packets", "count", title="fast path / slow path", title_justify="left")
    for row in views.path_rows(st):
        paths.add_row(*row)
    why = views.dataplane_unavailable(st)
    ports = Table(*views.PORT_COLS, title="ports" if why is None else f"ports: {why}",
                  title_justify="left")
    for row in views.port_rows(st):
        ports.add_row(*row)
    tables = [head, services, servers, rules, paths, ports]
    if st.get("l4"):
        l4 = Table(*views.L4_COLS, title="L4 services", title_justify="left")
        for row in views.l4_rows(st):
            l4.add_row(*row, style=None if row[-1] == "active" else "yellow")
        counts = Table("L4 data plane", "count", title_justify="left")
        for row in views.l4_counter_rows(st):
            counts.add_row(*row)
        tables[3:3] = [l4, counts]
    return Group(*tables)


def top_cmd(
    socket_path: Optional[str] = typer.Option(None, "--socket", help="controller control socket"),
    interval: float = typer.Option(2.0, "--interval", "-i", min=0.2,
                                   help="seconds between refreshes"),
) -> None:
    """A live view of a running controller (like top): servers, rates, rule hits; Ctrl-C quits."""
    from rich.live import Live
    st = request_or_exit({"op": "status"}, socket_path)["status"]
    try:
        with Live(render(st), auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                st = request_or_exit({"op": "status"}, socket_path)["status"]
                live.update(render(st), refresh=True)
    except KeyboardInterrupt:
        pass
