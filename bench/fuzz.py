"""Fuzz the parsers that read client bytes or rule files for a fixed time budget each.

    .venv/bin/python bench/fuzz.py                  # 60 s per target
    .venv/bin/python bench/fuzz.py --seconds 10 --only xml rules

Targets and input strategies: tests/rules/fuzz_targets.py (HTTP framer of the CS processor,
HTTP request view, XML / JSON / form extractors, TLS ClientHello, SMTP, rule-file parser).
Each input has a time bound (--bound); an exception or a broken invariant is a crash, an input
over the bound a hang. The shrunk failing input is saved under tests/rules/data/fuzz/<target>/,
where tests/rules/test_fuzz.py replays it from then on. Exit status 1 if anything failed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(ROOT / "tests" / "rules"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

import fuzz_targets as ft  # noqa: E402


def fuzz(name: str, seconds: float, bound: float) -> tuple[int, list[str]]:
    """Run one target until `seconds` are used; return (inputs tried, failures)."""
    target, strategy, _ = ft.TARGETS[name]
    count = [0]
    last_failure: list = []

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(data):
        count[0] += 1
        try:
            with ft.time_bound(bound):
                target(data)
        except Exception:
            last_failure[:] = [data]
            raise

    failures = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        last_failure.clear()
        try:
            run()
        except Exception as e:  # hypothesis re-raises the shrunk failure last
            path = ft.save(name, last_failure[0]) if last_failure else None
            failures.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} -> {path}")
    return count[0], failures


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="budget per target")
    ap.add_argument("--bound", type=float, default=2.0, help="time bound per input (s)")
    ap.add_argument("--only", nargs="*", choices=sorted(ft.TARGETS))
    a = ap.parse_args()
    print("| target | inputs | seconds | crashes + hangs |")
    print("|---|---|---|---|")
    bad = 0
    for name in a.only or sorted(ft.TARGETS):
        t = time.perf_counter()
        n, failures = fuzz(name, a.seconds, a.bound)
        print(f"| {name} | {n} | {time.perf_counter() - t:.0f} | {len(failures)} |", flush=True)
        for f in failures:
            print(f"    {f}", flush=True)
        bad += len(failures)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
