"""The `p4cs` command line: one sub-command per room of the architecture.

Errors are one line on stderr, ``p4cs COMMAND: error: MESSAGE``: usage errors and bad input
(:class:`p4cs.errors.InputError`, e.g. a configuration error with its file:line) exit with
status 2, failures (:class:`p4cs.errors.Failure`, and any other exception) with status 1.
No traceback reaches the user (``--log-level debug`` / ``-vv`` logs it)."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import NoReturn

import typer
from typer._click import exceptions as click_exc

from p4cs.errors import Failure, InputError

app = typer.Typer(
    name="p4cs",
    help="p4cs content switch: P4 fast path, Python CS processor.",
    no_args_is_help=True,
    add_completion=False,
)

@app.callback()
def _root() -> None:
    """p4cs content switch: P4 fast path, Python CS processor."""


# (module, attribute, command or group name, kind). Each room owns its own CLI module.
_ROOMS = [
    ("p4cs.p4gen", "generate_cmd", "generate", "command"),
    ("p4cs.switch.cli", "switch_cmd", "switch", "command"),
    ("p4cs.controller.cli", "controller_cmd", "controller", "command"),
    ("p4cs.controller.cli", "status_cmd", "status", "command"),
    ("p4cs.controller.top", "top_cmd", "top", "command"),
    ("p4cs.controller.opcli", "service_app", "service", "group"),
    ("p4cs.controller.opcli", "server_app", "server", "group"),
    ("p4cs.controller.opcli", "set_cmd", "set", "command"),
    ("p4cs.controller.opcli", "save_cmd", "save", "command"),
    ("p4cs.controller.opcli", "restore_cmd", "restore", "command"),
    ("p4cs.rules.cli", "app", "rules", "group"),
    ("p4cs.lab.demo", "demo_cmd", "demo", "command"),
]


def _register() -> None:
    for module, attr, name, kind in _ROOMS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # room not built into this install
        obj = getattr(mod, attr)
        if kind == "group":
            app.add_typer(obj, name=name)
        else:
            app.command(name)(obj)


_register()


def _command_path(args: list[str]) -> str:
    """``p4cs rules load`` for ``["rules", "load", ...]``: the command a failure belongs to."""
    group = typer.main.get_command(app)
    path = ["p4cs"]
    for a in args:
        sub = getattr(group, "commands", {}).get(a)
        if sub is None:
            break
        path.append(a)
        group = sub
    return " ".join(path)


def _fail(where: str, msg: str, status: int) -> NoReturn:
    line = " ".join(str(msg).split()) or "failed"
    print(f"{where}: error: {line}", file=sys.stderr, flush=True)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        status = typer.main.get_command(app).main(args, prog_name="p4cs", standalone_mode=False)
    except click_exc.NoArgsIsHelpError:
        sys.exit(2)                       # the help has been printed
    except click_exc.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else _command_path(args)
        _fail(where, exc.format_message(), 2)
    except click_exc.ClickException as exc:
        _fail(_command_path(args), exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail(_command_path(args), "aborted", 1)
    except InputError as exc:
        _fail(_command_path(args), str(exc), 2)
    except Failure as exc:
        _fail(_command_path(args), str(exc), 1)
    except Exception as exc:  # noqa: BLE001 - a failure is one line, never a traceback
        logging.getLogger("p4cs").debug("%s failed", _command_path(args), exc_info=True)
        _fail(_command_path(args), f"{type(exc).__name__}: {exc}", 1)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
