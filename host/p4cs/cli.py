"""The `p4cs` command line: one sub-command per room of the architecture."""

from __future__ import annotations

import importlib

import typer

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
