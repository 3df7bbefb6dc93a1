"""`p4cs generate`: render the P4 programs' parameters and, where p4c is installed, compile.

The P4 sources in ``p4src/`` are the source of truth for the program, :mod:`p4cs.params` and
:mod:`p4cs.constants` for its numbers. For each target this writes
``p4src/build/<target>/params.p4`` (rendered from those two) and, with ``--compile``, runs

* DPDK: ``p4c-dpdk --arch pna`` → ``p4cs.spec`` (the SWX pipeline the embedded target runs),
  ``p4cs.p4info.txtpb``, ``context.json``;
* BMv2: ``p4c-bm2-ss --arch v1model`` → ``p4cs.json``, ``p4cs.p4info.txtpb``.

A ``COMPILER`` file records the compiler version and a hash of the sources, so a stale
artifact is detectable (``p4cs generate --check``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import typer
import yaml

from p4cs import constants
from p4cs import params as params_mod
from p4cs import paths
from p4cs.errors import InputError

P4SRC = paths.p4src()

MAIN = {"dpdk": P4SRC / "pna" / "p4cs.p4", "bmv2": P4SRC / "v1model" / "p4cs.p4"}
COMPILER = {"dpdk": "p4c-dpdk", "bmv2": "p4c-bm2-ss"}
#: The p4c release the committed artifacts are built with (its --version prints no release).
P4C_RELEASE = "v1.2.4.8"


def source_hash(target: str, rendered_params: str) -> str:
    h = hashlib.sha256()
    files = sorted((P4SRC / "include").glob("*.p4")) + [MAIN[target]]
    for f in files:
        h.update(f.relative_to(P4SRC).as_posix().encode())
        h.update(f.read_bytes())
    h.update(rendered_params.encode())
    return h.hexdigest()[:16]


PARSER_PORT = "m.pna_main_parser_input_metadata_input_port"
MAIN_PORT = "m.pna_main_input_metadata_input_port"


def fixup_spec(text: str) -> tuple[str, list[str]]:
    """Repair known p4c-dpdk defects in a generated spec; return the text and what was done.

    p4c-dpdk 1.2.4.8 gives the parser's ``istd.input_port`` its own metadata field but never
    writes it (``rx`` fills only the main control's copy), so a parser that selects on the
    ingress port (ours: packet-out from the CPU port) reads a constant 0. The fix is the one
    assignment the compiler forgot, right after ``rx``.
    """
    notes: list[str] = []
    lines = text.splitlines()
    reads = any(PARSER_PORT in ln for ln in lines)
    writes = any(ln.split()[:2] == ["mov", PARSER_PORT] for ln in lines if ln.strip())
    if reads and not writes:
        for i, ln in enumerate(lines):
            if ln.split()[:2] == ["rx", MAIN_PORT]:
                lines.insert(i + 1, f"\tmov {PARSER_PORT} {MAIN_PORT}")
                notes.append("parser input port: inserted the missing copy from the main input port after rx")
                break
        else:
            raise ValueError("spec reads the parser input port but has no rx into the main input port")
    return "\n".join(lines) + "\n", notes


#: p4c's copy propagation substitutes each assignment into the next one, metadata included:
#: on the SYN cookie's HalfSipHash rounds (every variable read twice per rotation) the
#: expressions double per round and the compiler never finishes. It is an optimisation only.
P4C_FLAGS = ["--excludeMidendPasses", "P4::LocalCopyPropagation"]


def compile_target(target: str, out: Path, compiler: str) -> list[str]:
    main = MAIN[target]
    p4info = out / "p4cs.p4info.txtpb"
    if target == "dpdk":
        cmd = [compiler, "--arch", "pna", *P4C_FLAGS, "-I", str(out), "-o", str(out / "p4cs.spec"),
               "--p4runtime-files", str(p4info), "--context", str(out / "context.json"), str(main)]
    else:
        cmd = [compiler, "--arch", "v1model", *P4C_FLAGS, "-I", str(out), "-o", str(out / "p4cs.json"),
               "--p4runtime-files", str(p4info), str(main)]
    subprocess.run(cmd, check=True)
    return cmd


def postprocess(target: str, out: Path) -> list[str]:
    if target != "dpdk":
        return []
    spec = out / "p4cs.spec"
    text, notes = fixup_spec(spec.read_text())
    spec.write_text(text)
    return notes


def compiler_version(compiler: str) -> str:
    out = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[-1] if (out.stdout or out.stderr) else "unknown"


def generate(target: str, overrides: dict | None = None, out: Path | None = None,
             compile_: bool = False) -> Path:
    p = params_mod.with_overrides(params_mod.defaults(target), overrides or {})
    out = out or paths.build_dir(target)
    out.mkdir(parents=True, exist_ok=True)
    rendered = p.to_p4()
    (out / "params.p4").write_text(rendered)
    if compile_:
        compiler = shutil.which(COMPILER[target])
        if compiler is None:
            raise FileNotFoundError(f"{COMPILER[target]} is not on PATH: cannot compile for {target}")
        cmd = compile_target(target, out, compiler)
        notes = postprocess(target, out)
        (out / "COMPILER").write_text(
            f"compiler: {Path(compiler).name} {P4C_RELEASE} ({compiler_version(compiler)})\n"
            + "".join(f"fixup: {n}\n" for n in notes) +
            f"command: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)).replace(str(P4SRC.parent) + '/', '')}\n"
            f"sources: {source_hash(target, rendered)}\n")
    return out


def check(target: str) -> Optional[str]:
    """Return None if the committed artifacts match the sources, else a reason."""
    out = paths.build_dir(target)
    stamp = out / "COMPILER"
    if not stamp.exists():
        return f"{stamp} is missing: run `p4cs generate --target {target} --compile`"
    rendered = (out / "params.p4").read_text() if (out / "params.p4").exists() else ""
    if [ln for ln in rendered.splitlines() if ln.startswith("const ")] != constants.to_p4():
        return (f"host/p4cs/constants.py changed since {target} artifacts were generated: "
                f"run `p4cs generate --target {target} --compile`")
    want = source_hash(target, rendered)
    for line in stamp.read_text().splitlines():
        if line.startswith("sources:") and line.split(":", 1)[1].strip() == want:
            return None
    return f"p4src/ changed since {target} artifacts were compiled: run `p4cs generate --target {target} --compile`"


def generate_cmd(
    target: list[str] = typer.Option(["dpdk", "bmv2"], "--target", "-t", help="dpdk and/or bmv2"),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="YAML file with a 'dataplane:' section of parameter overrides"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (default p4src/build/<target>)"),
    compile_: bool = typer.Option(False, "--compile", help="run p4c-dpdk / p4c-bm2-ss (must be on PATH)"),
    check_only: bool = typer.Option(False, "--check", help="only check that the committed artifacts are current"),
) -> None:
    """Render the P4 programs' parameters for a configuration and compile them if p4c is present."""
    overrides: dict = {}
    if config is not None:
        try:
            doc = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError, RecursionError, ValueError) as exc:
            raise InputError(f"cannot read {config}: {exc}") from None
        section = doc.get("dataplane") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or not isinstance(section or {}, dict):
            raise InputError(f"{config}: expected a mapping with a 'dataplane:' mapping")
        overrides = dict(section or {})
    status = 0
    for t in target:
        if t not in params_mod.TARGETS:
            raise InputError(f"unknown target {t!r} (expected dpdk or bmv2)")
        if check_only:
            reason = check(t)
            typer.echo(f"{t}: {'up to date' if reason is None else reason}")
            status |= reason is not None
            continue
        try:
            t_overrides = {k: v for k, v in overrides.items() if k != "target"}
            path = generate(t, t_overrides, out / t if out and len(target) > 1 else out, compile_)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None
        except subprocess.CalledProcessError as exc:
            typer.echo(f"error: {COMPILER[t]} failed with status {exc.returncode}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{t}: {path}")
    raise typer.Exit(status)
