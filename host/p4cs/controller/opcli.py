"""`p4cs service|server|set|save|restore`: live edits of a running controller, the ipvsadm
verbs (:mod:`p4cs.controller.operator` applies them). A rejected edit prints one line and
exits 2; nothing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from p4cs.controller import cli
from p4cs.errors import InputError

service_app = typer.Typer(help="add, edit or delete a virtual service (ipvsadm -A/-E/-D)",
                          no_args_is_help=True)
server_app = typer.Typer(help="add, edit or delete a real server (ipvsadm -a/-e/-d)",
                         no_args_is_help=True)

_SOCKET = typer.Option(None, "--socket", help="controller control socket")


def _send(req: dict, sock: Optional[str]) -> dict:
    return cli.request_or_exit({k: v for k, v in req.items() if v is not None}, sock,
                               refused=InputError)


def _service_cmd(op: str):
    def cmd(
        address: str = typer.Option(..., "--tcp-service", "-t", help="VIP:PORT (or the service's name)"),
        name: Optional[str] = typer.Option(None, "--name", help="service name (default VIP:PORT)"),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", "-s",
                                                help="scheduler of the default group"),
        group: Optional[str] = typer.Option(None, "--group", "-g", help="default group"),
        mode: Optional[str] = typer.Option(None, "--mode", "-m", help="transparent or snat"),
        snat_address: Optional[str] = typer.Option(None, "--snat-address"),
        protocol: Optional[str] = typer.Option(None, "--protocol", help="http, tls, smtp, pop3, imap"),
        rules: Optional[Path] = typer.Option(None, "--rules", help="rule file"),
        persistent: Optional[float] = typer.Option(None, "--persistent", "-p",
                                                   help="persistence timeout (s): client-IP, or a tls-session or cookie-learn service's own; 0: none"),
        netmask: Optional[str] = typer.Option(None, "--netmask", "-M", help="persistence netmask"),
        cookie_learn: Optional[str] = typer.Option(
            None, "--cookie-learn", metavar="NAME",
            help="http: a request with cookie NAME goes to the server that set its value (-p: timeout)"),
        cookie_insert: Optional[str] = typer.Option(
            None, "--cookie-insert", metavar="NAME",
            help="http: the switch sets cookie NAME to the server's id; a request with it goes there"),
        sock: Optional[str] = _SOCKET,
    ) -> None:
        _send({"op": op, "address": address, "name": name, "scheduler": scheduler,
               "default_group": group, "mode": mode, "snat_address": snat_address,
               "protocol": protocol, "rules": str(rules.resolve()) if rules else None,
               "persistence": persistent, "netmask": netmask, "cookie_learn": cookie_learn,
               "cookie_insert": cookie_insert}, sock)
    return cmd


service_app.command("add", help="add a service (ipvsadm -A)")(_service_cmd("service.add"))
service_app.command("edit", help="change a service (ipvsadm -E)")(_service_cmd("service.edit"))


@service_app.command("del")
def service_del(address: str = typer.Option(..., "--tcp-service", "-t", help="VIP:PORT or name"),
                sock: Optional[str] = _SOCKET) -> None:
    """Delete a service (ipvsadm -D): its connections finish, new ones are not taken."""
    _send({"op": "service.del", "address": address}, sock)


def _server_cmd(op: str):
    def cmd(
        address: str = typer.Option(..., "--real-server", "-r", help="ADDRESS:PORT"),
        group: Optional[str] = typer.Option(None, "--group", "-g", help="server group"),
        service: Optional[str] = typer.Option(None, "--tcp-service", "-t",
                                              help="VIP:PORT: its default group"),
        weight: Optional[int] = typer.Option(None, "--weight", "-w", help="0 drains"),
        upper: Optional[int] = typer.Option(None, "--u-threshold", "-x"),
        lower: Optional[int] = typer.Option(None, "--l-threshold", "-y"),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", "-s",
                                                help="scheduler of a group this creates"),
        sock: Optional[str] = _SOCKET,
    ) -> None:
        _send({"op": op, "address": address, "group": group, "service": service,
               "weight": weight, "upper_threshold": upper, "lower_threshold": lower,
               "scheduler": scheduler}, sock)
    return cmd


server_app.command("add", help="add a server to a group (ipvsadm -a); a new group name "
                               "creates the group")(_server_cmd("server.add"))
server_app.command("edit", help="change a server (ipvsadm -e); -w 0 drains")(
    _server_cmd("server.edit"))


@server_app.command("del")
def server_del(
    address: str = typer.Option(..., "--real-server", "-r", help="ADDRESS:PORT"),
    group: Optional[str] = typer.Option(None, "--group", "-g"),
    service: Optional[str] = typer.Option(None, "--tcp-service", "-t"),
    reset: bool = typer.Option(False, "--reset/--drain",
                               help="reset its connections (default: they finish)"),
    sock: Optional[str] = _SOCKET,
) -> None:
    """Delete a server (ipvsadm -d)."""
    _send({"op": "server.del", "address": address, "group": group, "service": service,
           "reset": reset}, sock)


def set_cmd(
    tcp: Optional[int] = typer.Option(None, "--tcp", help="idle timeout of spliced flows (s)"),
    tcpfin: Optional[float] = typer.Option(None, "--tcpfin", help="teardown delay after FIN (s)"),
    udp: Optional[int] = typer.Option(None, "--udp", help="UDP idle timeout (s)"),
    sock: Optional[str] = _SOCKET,
) -> None:
    """Connection timeouts of a running controller (ipvsadm --set tcp tcpfin udp)."""
    _send({"op": "set", "tcp": tcp, "tcpfin": tcpfin, "udp": udp}, sock)


def save_cmd(sock: Optional[str] = _SOCKET) -> None:
    """Print the running configuration (ipvsadm-save): a file `p4cs controller --config`
    and `p4cs restore` read."""
    typer.echo(_send({"op": "save"}, sock)["config"], nl=False)


def restore_cmd(file: Path = typer.Argument(..., help="configuration (as `p4cs save` prints)"),
                sock: Optional[str] = _SOCKET) -> None:
    """Apply a configuration to the running controller at once (ipvsadm-restore): its
    groups, services and limits; nothing changes unless all of it is valid."""
    try:
        text = file.read_text()
    except OSError as exc:
        typer.echo(f"error: {file}: cannot read: {exc.strerror}", err=True)
        raise typer.Exit(2)
    _send({"op": "restore", "text": text, "path": str(file.resolve())}, sock)
