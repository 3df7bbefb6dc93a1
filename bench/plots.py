"""Charts of the benchmark results for docs/: p4cs vs HAProxy vs direct at a glance.

    .venv/bin/python bench/plots.py [RESULT.json ...] [--out docs/img]

Reads the JSON that ``bench/http_vs_haproxy.py --json FILE`` writes (its ``median`` section);
without arguments, the recorded results in ``bench/results/*.json`` (each says which run of
docs/benchmarks.md it comes from). One PNG per result file, named after it:
``http_vs_haproxy-<name>.png`` with throughput (left, higher is better) and latency p50/p99
(right, lower is better) per test. Needs matplotlib (``pip install -e '.[bench]'``)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = (("p4cs", "p4cs", "#1f77b4"), ("haproxy", "HAProxy 2.6", "#ff7f0e"),
           ("direct", "direct (no balancer)", "#7f7f7f"))
#: test -> (label, measure key, unit)
TESTS = {"newconn": ("new connections", "rps", "conn/s"),
         "keepalive": ("keep-alive requests", "rps", "req/s"),
         "get1m": ("1 MiB responses", "mb_per_s", "MB/s"),
         "get100m": ("100 MiB, 1 connection", "mb_per_s", "MB/s")}


def plot(result: dict, title: str, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    med = result["median"]
    tests = [t for t in TESTS if all(t in med.get(k, {}) for k, _, _ in TARGETS if k in med)]
    targets = [t for t in TARGETS if t[0] in med]
    fig, axes = plt.subplots(2, len(tests), figsize=(3.2 * len(tests), 6.4),
                             gridspec_kw={"height_ratios": [3, 2]})
    for col, test in enumerate(tests):
        label, key, unit = TESTS[test]
        ax = axes[0][col]
        vals = [med[k][test][key] for k, _, _ in targets]
        bars = ax.bar([n for _, n, _ in targets], vals, color=[c for _, _, c in targets])
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in vals],
                     fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        ax.margins(y=0.15)
        if "haproxy" in med and "p4cs" in med:
            ratio = med["p4cs"][test][key] / med["haproxy"][test][key]
            ax.text(0.5, 0.97, f"p4cs / HAProxy = {ratio:.2f}", transform=ax.transAxes,
                    ha="center", va="top", fontsize=8, weight="bold")
        ax = axes[1][col]
        x = range(len(targets))
        p50 = [med[k][test].get("p50_ms", 0) for k, _, _ in targets]
        p99 = [med[k][test].get("p99_ms", 0) for k, _, _ in targets]
        for shift, vals, alpha in ((-0.2, p50, 1.0), (0.2, p99, 0.45)):
            bars = ax.bar([i + shift for i in x], vals, 0.4, color=[c for _, _, c in targets],
                          alpha=alpha)
            ax.bar_label(bars, labels=[f"{v:g}" for v in vals], fontsize=6)
        ax.set_xticks(list(x), [n.split(" ")[0] for _, n, _ in targets], fontsize=7)
        ax.set_ylabel("latency ms: p50 | p99 (pale)", fontsize=8)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", type=Path,
                    help="JSON of bench/http_vs_haproxy.py --json (default: bench/results/*.json)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "img")
    args = ap.parse_args(argv)
    files = args.results or sorted((HERE / "results").glob("http_vs_haproxy-*.json"))
    if not files:
        print("error: no result files", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: matplotlib is needed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    for f in files:
        try:
            result = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: {f}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(result, dict) or not isinstance(result.get("median"), dict):
            print(f"error: {f}: not a bench/http_vs_haproxy.py result (no 'median')",
                  file=sys.stderr)
            return 2
        name = f.stem if f.stem.startswith("http_vs_haproxy") else f"http_vs_haproxy-{f.stem}"
        where = result.get("source") or f"{f.name}, {result.get('rounds', '?')} rounds"
        title = f"p4cs vs HAProxy vs direct (medians) — {where.split(';')[0]}"
        out = args.out / f"{name}.png"
        plot(result, "\n".join(textwrap.wrap(title, 110)), out)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
