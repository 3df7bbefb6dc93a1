#!/usr/bin/env python3
"""Run the p4cs PTF conformance suite against one target, in private network namespaces.

    run.py --target dpdk [--logdir DIR] [--list] [TEST ...]
    run.py --target bmv2 ...

What it does (everything is named with a prefix unique to this run and removed at the end,
also when the run fails or is interrupted):

* two namespaces: ``<prefix>-sw`` (the switch) and ``<prefix>-tg`` (PTF, the traffic side);
* one veth pair per data port, ``<prefix>s<N>`` in the switch namespace (P4 port N) to
  ``<prefix>t<N>`` in the PTF namespace (PTF port N); offloads off, IPv6 off;
* one management veth pair (192.0.2.1/30 switch side, .2 PTF side) that carries P4Runtime,
  so PTF talks to the target from its own namespace and nothing leaves the two namespaces;
* starts the target inside ``<prefix>-sw``: ``p4cs switch`` (embedded DPDK target, the
  committed ``p4src/build/dpdk`` artifacts) or ``simple_switch_grpc --no-p4`` (BMv2, the
  v1model program compiled with p4c into the run directory with the data-plane parameters of
  ``dataplane.yaml``; PTF pushes the pipeline);
* runs ``ptf --test-dir tests/ptf/tests`` inside ``<prefix>-tg`` with the test parameters;
* stops the target by its PID (process group), ends what is left in the two namespaces,
  deletes the namespaces.

Exit status: 0 all tests passed, 1 a test failed or the target broke, 77 the target is not
available here (the reason is printed).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_BIN = Path(sys.executable).parent
SKIP = 77
DATA_PORTS = (1, 2, 3)
GRPC_PORT = 9559
MGMT_SW, MGMT_TG = "192.0.2.1", "192.0.2.2"
DPDK_DIR = REPO / "p4src" / "build" / "dpdk"
#: `p4cs generate --config` file of the BMv2 build the suite runs (a small flow table)
PTF_DATAPLANE = HERE / "dataplane.yaml"
SWXD = REPO / "dataplane" / "build" / "p4cs-swxd"

_seq = itertools.count()

SWITCH_LAUNCHER = (
    "import sys, typer; from p4cs.switch.cli import switch_cmd; "
    "sys.argv[0] = 'p4cs switch'; typer.run(switch_cmd)"
)


def _log(msg: str) -> None:
    print(f"[ptf-run] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# Availability
# ------------------------------------------------------------------------------------------


def unavailable(target: str) -> str | None:
    """Why `target` cannot run on this machine (a reason to skip), or None.

    Only what a machine may legitimately lack is a reason: root, the built DPDK daemon and the
    compiled DPDK artifacts; for BMv2, simple_switch_grpc and p4c. A missing tool that setup
    installs (ip, ethtool, ptf, the p4cs package) is an error, see `broken_setup`."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, AF_PACKET sockets)"
    if target == "dpdk":
        if not os.access(SWXD, os.X_OK):
            return f"{SWXD.relative_to(REPO)} is not built (run `make -C dataplane`)"
        for f in ("p4cs.spec", "p4cs.p4info.txtpb"):
            if not (DPDK_DIR / f).exists():
                return f"p4src/build/dpdk/{f} is missing (compile with `p4cs generate --target dpdk --compile`)"
        return None
    if target == "bmv2":
        if shutil.which("simple_switch_grpc") is None:
            return "simple_switch_grpc (BMv2) is not installed"
        if shutil.which("p4c-bm2-ss") is None and shutil.which("p4c") is None:
            return "p4c (p4c-bm2-ss) is not installed: cannot compile the v1model program"
        return None
    return f"unknown target {target!r}"


def broken_setup(target: str) -> str | None:
    """A tool the suite needs and setup should have installed is missing."""
    for tool in ("ip", "ethtool", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if not (VENV_BIN / "ptf").exists() and shutil.which("ptf") is None:
        return "the ptf command is not installed (pip install ptf)"
    if target == "dpdk":
        import importlib.util

        try:
            if importlib.util.find_spec("p4cs.switch.cli") is None:
                return "the p4cs package (p4cs.switch.cli) is not importable"
        except ImportError as e:
            return f"the p4cs package is not importable: {e}"
    return None


def _ptf() -> str:
    cand = VENV_BIN / "ptf"
    return str(cand) if cand.exists() else "ptf"


# ------------------------------------------------------------------------------------------
# Namespaces
# ------------------------------------------------------------------------------------------


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


class Netns:
    """The two namespaces and their veths, named after one prefix."""

    def __init__(self, prefix: str, ports: tuple[int, ...]):
        self.prefix = prefix
        self.ports = ports
        self.sw = f"{prefix}-sw"
        self.tg = f"{prefix}-tg"
        self.created: list[str] = []

    def sw_if(self, port: int) -> str:
        return f"{self.prefix}s{port}"

    def tg_if(self, port: int) -> str:
        return f"{self.prefix}t{port}"

    def create(self) -> None:
        for ns in (self.sw, self.tg):
            _run(["ip", "netns", "add", ns])
            self.created.append(ns)
            for k in ("all", "default"):
                _run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        pairs = [(self.sw_if(p), self.tg_if(p)) for p in self.ports]
        pairs.append((f"{self.prefix}m0", f"{self.prefix}m1"))
        for a, b in pairs:
            _run(["ip", "-n", self.sw, "link", "add", a, "type", "veth", "peer", "name", b, "netns", self.tg])
            for ns, ifname in ((self.sw, a), (self.tg, b)):
                _run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"], check=False)
                _run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off",
                      "gso", "off", "gro", "off", "sg", "off"], check=False)
                _run(["ip", "-n", ns, "link", "set", ifname, "up"])
        _run(["ip", "-n", self.sw, "addr", "add", f"{MGMT_SW}/30", "dev", f"{self.prefix}m0"])
        _run(["ip", "-n", self.tg, "addr", "add", f"{MGMT_TG}/30", "dev", f"{self.prefix}m1"])

    def pids(self) -> list[int]:
        out: list[int] = []
        for ns in self.created:
            res = _run(["ip", "netns", "pids", ns], check=False)
            out += [int(x) for x in res.stdout.split() if x.isdigit()]
        return out

    def destroy(self) -> None:
        # Whatever still runs inside was started by this run (the target and its daemon).
        pids = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if _alive(p)]
                time.sleep(0.05)
            if not pids:
                break
        for ns in reversed(self.created):
            _run(["ip", "netns", "del", ns], check=False)
        left = [ns for ns in self.created if Path(f"/run/netns/{ns}").exists()]
        self.created = left
        if left:
            raise RuntimeError(f"could not delete namespaces {left}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------


@dataclass
class TargetProc:
    proc: subprocess.Popen
    log: Path
    test_params: dict[str, object] = field(default_factory=dict)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _flow_timeouts() -> list[int]:
    try:
        sys.path.insert(0, str(REPO / "host"))
        from p4cs.params import defaults  # type: ignore

        return list(defaults("dpdk").flow_timeouts_s)
    except Exception:  # noqa: BLE001
        return [2, 10, 30, 60, 120, 300, 3600, 86400]
    finally:
        sys.path.pop(0)


def start_dpdk(ns: Netns, rundir: Path) -> TargetProc:
    # `p4cs switch`, started through its own module so that an import problem in an unrelated
    # part of the p4cs command line cannot stop the conformance run.
    argv = ["ip", "netns", "exec", ns.sw, sys.executable, "-c", SWITCH_LAUNCHER, "--target", "dpdk"]
    for p in ns.ports:
        argv += ["--iface", f"{p}={ns.sw_if(p)}"]
    argv += [
        "--grpc-addr", f"{MGMT_SW}:{GRPC_PORT}", "--device-id", "1", "--cpu-port", "0",
        "--spec", str(DPDK_DIR / "p4cs.spec"), "--p4info", str(DPDK_DIR / "p4cs.p4info.txtpb"),
        "--workdir", str(rundir / "swxd"),
        # The configured profiles (p4cs.params), so a 2 s idle timeout is honoured as 2 s.
        "--learner-timeouts", ",".join(str(t) for t in _flow_timeouts()),
        "-v",
    ]  # fmt: skip
    eal = os.environ.get("P4CS_PTF_EAL")
    if eal:
        argv += ["--eal", eal]
    env = dict(os.environ)
    dev = os.environ.get("P4CS_PTF_PYTHONPATH")  # a development copy of the p4cs package
    if dev:
        env["PYTHONPATH"] = dev + os.pathsep + env.get("PYTHONPATH", "")
    log = rundir / "switch.log"
    _log("target: " + " ".join(shlex.quote(a) for a in argv))
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO, env=env)
    params = {
        "p4info": str(DPDK_DIR / "p4cs.p4info.txtpb"),
        "device_config": str(DPDK_DIR / "p4cs.spec"),
        "cpu_port": 0,
        "target": "dpdk",
        "rearbitration_answered": True,
    }
    return TargetProc(proc, log, params)


def start_bmv2(ns: Netns, rundir: Path) -> TargetProc:
    sys.path.insert(0, str(REPO / "host"))
    try:
        import yaml
        from p4cs import p4gen  # type: ignore
        from p4cs.switch import bmv2  # type: ignore
    finally:
        sys.path.pop(0)
    # Compile the v1model program fresh (it must match p4src/) into the run directory, with the
    # suite's data-plane parameters: params.p4 rendered from dataplane.yaml (#included by
    # headers.p4), as `p4cs generate --config dataplane.yaml --out DIR` does.
    overrides = yaml.safe_load(PTF_DATAPLANE.read_text())["dataplane"]
    outdir = p4gen.generate("bmv2", overrides, out=rundir / "bmv2")
    arts = bmv2.compile_v1model(outdir=outdir)
    ifaces = {p: ns.sw_if(p) for p in ns.ports}
    argv = bmv2.simple_switch_argv(ifaces, device_id=1, grpc_addr=f"{MGMT_SW}:{GRPC_PORT}",
                                   cpu_port=bmv2.BMV2_CPU_PORT, binary=shutil.which("simple_switch_grpc"))
    argv = ["ip", "netns", "exec", ns.sw] + argv
    log = rundir / "switch.log"
    _log("target: " + " ".join(shlex.quote(a) for a in argv))
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO)
    params = {
        "p4info": str(arts.p4info),
        "device_config": str(arts.json),
        "cpu_port": bmv2.BMV2_CPU_PORT,
        "target": "bmv2",
        # PI answers only arbitration updates that change the election id (docs/targets.md)
        "rearbitration_answered": False,
        # no add-on-miss tables: the connections of L4 services are not learned
        "l4_learns": False,
        # the exact flow table refuses at its size, with PI's code for a target error
        "table_full_at": int(overrides["flow_table_size"]),
        "table_full_max": 2 * int(overrides["flow_table_size"]),
        "table_full_code": "UNKNOWN",
    }
    return TargetProc(proc, log, params)


def wait_listening(ns: Netns, tp: TargetProc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tp.proc.poll() is not None:
            raise RuntimeError(f"the target exited ({tp.proc.returncode}) before serving P4Runtime:\n{tp.tail()}")
        res = _run(["ip", "netns", "exec", ns.sw, "ss", "-Hltn", f"sport = :{GRPC_PORT}"], check=False)
        if res.stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the target did not listen on {MGMT_SW}:{GRPC_PORT} within {timeout:.0f} s:\n{tp.tail()}")


def stop_target(tp: TargetProc | None) -> None:
    if tp is None or tp.proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(tp.proc.pid)
    except ProcessLookupError:
        return
    # The target runs in its own process group (start_new_session): signal that group only.
    os.killpg(pgid, signal.SIGTERM)
    try:
        tp.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        tp.proc.wait(timeout=5)


# ------------------------------------------------------------------------------------------
# PTF
# ------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    target: str
    returncode: int
    results: dict[str, str] = field(default_factory=dict)  # test -> ok / FAIL / ERROR / skipped
    details: dict[str, str] = field(default_factory=dict)  # test -> failure text
    output: str = ""
    skipped: str | None = None
    rundir: Path | None = None
    target_log: str = ""

    @property
    def failed(self) -> list[str]:
        return [t for t, r in self.results.items() if r not in ("ok", "skipped")]

    def summary(self) -> str:
        lines = [f"PTF on {self.target}:"]
        for t, r in sorted(self.results.items()):
            lines.append(f"  {r:8s} {t}")
        return "\n".join(lines)


_RESULT = re.compile(r"(ok|FAIL|ERROR|skipped(?: .*)?|expected failure|unexpected success)")
_START = re.compile(r"^(?P<name>[A-Za-z_][\w]*\.[A-Za-z_][\w]*) \.\.\. ?(?P<rest>.*)$")


def parse_results(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """Per-test results from PTF's (unittest's verbose) output. A test may print between
    "name ... " and its result, so the result is the first line (from the start line on) that
    ends with a result word."""
    results: dict[str, str] = {}
    details: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        m = _START.match(line)
        if m:
            current = m.group("name")
            line = m.group("rest")
        if current is None:
            continue
        r = _RESULT.fullmatch(line.strip())
        if r:
            res = r.group(1)
            results[current] = "skipped" if res.startswith("skipped") else res
            current = None
    # unittest's failure blocks: "FAIL: name" / "ERROR: name", a dashed line, the traceback.
    for m in re.finditer(r"^(FAIL|ERROR): (\S+)\n-+\n(.*?)(?=^={20,}|^-{20,}\nRan |\Z)", output, re.M | re.S):
        details.setdefault(m.group(2), m.group(3).strip())
    return results, details


def run_ptf(ns: Netns, tp: TargetProc, rundir: Path, tests: list[str], extra: list[str]) -> tuple[int, str]:
    params = {"grpcaddr": f"{MGMT_SW}:{GRPC_PORT}", "device_id": 1, "ports": tuple(ns.ports), **tp.test_params}
    tparams = ";".join(f"{k}={v!r}" for k, v in params.items())
    argv = ["ip", "netns", "exec", ns.tg, _ptf(), "--test-dir", str(HERE / "tests"), "--pypath", str(HERE),
            "--log-dir", str(rundir / "ptf"),
            "--test-params", tparams, "--default-timeout", "2", "--default-negative-timeout", "0.3",
            "--test-case-timeout", "150"]
    for p in ns.ports:
        argv += ["--interface", f"0-{p}@{ns.tg_if(p)}"]
    argv += extra + tests
    _log("ptf: " + " ".join(shlex.quote(a) for a in argv))
    env = dict(os.environ)
    env.pop("http_proxy", None)
    env.pop("https_proxy", None)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    out_lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Using packet manipulation module" in line:
            continue
        out_lines.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
    return proc.wait(), "".join(out_lines)


class _Interrupted(Exception):
    pass


def run_suite(target: str, tests: list[str] | None = None, logdir: Path | None = None, extra: list[str] | None = None,
              ports: tuple[int, ...] = DATA_PORTS) -> RunResult:
    why = unavailable(target)
    if why:
        return RunResult(target, SKIP, skipped=why)
    broken = broken_setup(target)
    if broken:
        return RunResult(target, 1, results={"<setup>": "ERROR"}, details={"<setup>": broken}, output=broken)
    rundir = Path(logdir) if logdir else Path(tempfile.mkdtemp(prefix=f"p4cs-ptf-{target}-"))
    rundir.mkdir(parents=True, exist_ok=True)
    while True:  # unique among the namespaces that exist now (several runs may share a machine)
        prefix = f"pt{os.getpid() % 100000:05d}{next(_seq) % 10}"
        if not any(Path(f"/run/netns/{prefix}-{k}").exists() for k in ("sw", "tg")):
            break
    ns = Netns(prefix, ports)
    tp: TargetProc | None = None
    result = RunResult(target, 1, rundir=rundir)

    def on_signal(signum, frame):  # noqa: ARG001
        raise _Interrupted(f"signal {signum}")

    old = {}
    in_main = __import__("threading").current_thread() is __import__("threading").main_thread()
    if in_main:
        for s in (signal.SIGTERM, signal.SIGHUP):
            old[s] = signal.signal(s, on_signal)
    try:
        _log(f"namespaces {ns.sw} / {ns.tg}, ports {list(ports)}, logs in {rundir}")
        ns.create()
        tp = start_dpdk(ns, rundir) if target == "dpdk" else start_bmv2(ns, rundir)
        wait_listening(ns, tp, timeout=300)
        rc, out = run_ptf(ns, tp, rundir, list(tests or []), list(extra or []))
        result.output = out
        result.results, result.details = parse_results(out)
        alive = tp.proc.poll() is None
        if not alive:
            result.details["<target>"] = f"the target exited during the run ({tp.proc.returncode})"
            result.results["<target>"] = "ERROR"
        result.returncode = 0 if rc == 0 and alive and result.results and not result.failed else 1
    except (Exception, KeyboardInterrupt, _Interrupted) as e:  # noqa: BLE001
        result.output += f"\nrunner error: {type(e).__name__}: {e}\n"
        result.results.setdefault("<runner>", "ERROR")
        result.details["<runner>"] = str(e)
        result.returncode = 1
        _log(f"error: {e}")
    finally:
        try:
            stop_target(tp)
        finally:
            try:
                ns.destroy()
            except Exception as e:  # noqa: BLE001
                _log(f"cleanup: {e}")
                result.returncode = 1
            for s, h in old.items():
                signal.signal(s, h)
        if tp is not None:
            result.target_log = tp.tail(60)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=("dpdk", "bmv2"), default="dpdk")
    ap.add_argument("--logdir", type=Path, help="keep logs here (default: a new temporary directory)")
    ap.add_argument("--ptf-arg", action="append", default=[], help="extra argument for ptf (repeatable)")
    ap.add_argument("tests", nargs="*", help="PTF test names or groups (default: all)")
    a = ap.parse_args(argv)
    res = run_suite(a.target, a.tests, a.logdir, a.ptf_arg)
    if res.skipped:
        print(f"SKIP: {a.target}: {res.skipped}")
        return SKIP
    print(res.summary())
    if res.returncode != 0 and res.target_log:
        print(f"--- target log (tail) ---\n{res.target_log}")
    print(f"logs: {res.rundir}")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
