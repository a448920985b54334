"""Command line: `python -m bench.detection [--quick] [--out DIR] [--methods …]`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from bench.detection import report
from bench.detection.methods import FAMILIES, build_methods, http_specs, sequential_supported
from bench.detection.run import default_processes, run_all, summarize
from bench.detection.simulate import (
    BASE_SEED,
    BOUNDS,
    GAUGE_LEVEL,
    GAUGE_PHI,
    GAUGE_SD,
    GAUGE_STEP_SECONDS,
    GAUGE_TOLERANCE,
    LATENCY_MEDIAN_S,
    LATENCY_SIGMA,
    POLL_SECONDS,
    POLLS,
    STEP_SECONDS,
    WEIGHTS,
    Scenario,
    scenarios,
)

DEFAULT_OUT = Path(__file__).resolve().parent
# Rollouts per scenario, chosen so the full run needs about 550 CPU s: under 5 min on 2 idle
# cores, under 10 min when the cores are shared (measured). The latency regressions at +25 %
# cost the most: the fixed-mode quantile p-value bisection runs at every poll.
ROLLOUTS_LEVELS = 250  # A/A at 2, 20, 200 req/s: s.e. 0.63 % at a 1 % false-failure rate
ROLLOUTS_OTHERS = 100  # noisy and low-traffic A/A
ROLLOUTS_REGRESSIONS = 60  # s.e. ≤ 2.8 % at a 95 % detection rate, ≤ 6.5 % anywhere
ROLLOUTS_TARGETS = 180  # the canary-20-req/s regressions: s.e. ≤ 1.6 % at 95 %
QUICK_ROLLOUTS = 2


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True, cwd=DEFAULT_OUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.detection",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ROLLOUTS} rollouts per scenario (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="directory for results.json and detection.png")
    parser.add_argument("--methods", default=",".join(FAMILIES),
                        help=f"comma-separated subset of {','.join(FAMILIES)}")
    parser.add_argument("--scenarios", default="",
                        help="comma-separated scenario ids (default: all)")
    parser.add_argument("--rollouts", type=int, default=None,
                        help="rollouts of every scenario (default: "
                             f"{ROLLOUTS_LEVELS} A/A per traffic level, {ROLLOUTS_OTHERS} other "
                             f"A/A, {ROLLOUTS_REGRESSIONS} per regression, "
                             f"{ROLLOUTS_TARGETS} per regression at canary 20 req/s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the default numbers of rollouts (e.g. 0.2 to preview)")
    parser.add_argument("--processes", type=int, default=default_processes())
    parser.add_argument("--from-results", type=Path, default=None, metavar="JSON",
                        help="no simulation: print the tables and redraw the figure (into "
                             "--out) from an earlier results.json")
    return parser.parse_args(argv)


def render(doc: dict[str, Any], out: Path) -> str:
    """Markdown of a results document; also (re)draws detection.png into `out`."""
    scs = [Scenario(**{**sc, "tags": tuple(sc["tags"])}) for sc in doc["scenarios"]]
    labels = [(m["key"], m["label"]) for m in doc["methods"]]
    out.mkdir(parents=True, exist_ok=True)
    if not report.plot(out / "detection.png", scs, labels, doc["results"]):
        print("matplotlib not installed: no detection.png (pip install matplotlib)",
              file=sys.stderr)
    # Targets are recomputed from the results, so a report change needs no new simulation.
    return (report.markdown(scs, labels, doc["results"], doc["meta"]) + "\n\n"
            + report.targets_markdown(report.targets(doc["results"])))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_results is not None:
        print(render(json.loads(args.from_results.read_text()), args.out))
        return 0
    began = time.perf_counter()
    families = tuple(f.strip() for f in args.methods.split(",") if f.strip())
    methods = build_methods(families)  # validates the names
    counts = [max(1, round(n * args.scale)) for n in
              (ROLLOUTS_LEVELS, ROLLOUTS_OTHERS, ROLLOUTS_REGRESSIONS, ROLLOUTS_TARGETS)]
    if args.quick:
        counts = [QUICK_ROLLOUTS] * 4
    if args.rollouts:
        counts = [args.rollouts] * 4
    scs = scenarios(*counts)
    if args.scenarios:
        wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
        unknown = wanted - {sc.id for sc in scs}
        if unknown:
            print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scs = [sc for sc in scs if sc.id in wanted]
    print(f"bench.detection: {len(scs)} scenarios, methods {','.join(families)}, "
          f"{args.processes} processes", file=sys.stderr)

    codes, cpu = run_all(scs, families, args.processes)
    results: dict[str, dict[str, Any]] = {}
    for sc in scs:
        per_row: dict[str, Any] = {}
        for m in methods:
            for row, status in m.status().items():
                if status == "ok" and row not in codes[sc.id]:
                    status = "n/a"  # not judged in this scenario (a gauge-only one)
                per_row[row] = (summarize(codes[sc.id][row]) if status == "ok"
                                else {"status": status})
        results[sc.id] = per_row
    wall = time.perf_counter() - began

    note = (f"rollouts per scenario: {counts[0]} (A/A by traffic level), {counts[1]} (other "
            f"A/A), {counts[2]} (regressions), {counts[3]} (regressions at canary 20 req/s)"
            if not args.quick
            else f"--quick: {QUICK_ROLLOUTS} rollouts per scenario (smoke test only)")
    meta = {
        "command": "python -m bench.detection " + " ".join(sys.argv[1:] if argv is None
                                                            else argv),
        "rollouts_note": note,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "processes": args.processes, "cpu_count": os.cpu_count(),
        "quick": args.quick,
        "sequential_available": sequential_supported(),
        "seed": BASE_SEED,
        "step_seconds": STEP_SECONDS, "poll_seconds": POLL_SECONDS, "polls": POLLS,
        "canary_weights": list(WEIGHTS),
        "latency": {"median_s": LATENCY_MEDIAN_S, "sigma": LATENCY_SIGMA},
        "gauge": {"level": GAUGE_LEVEL, "sd": GAUGE_SD, "ar1_phi_default": GAUGE_PHI,
                  "step_seconds": GAUGE_STEP_SECONDS, "relative_tolerance": GAUGE_TOLERANCE},
        "buckets": [float(b) for b in BOUNDS[:-1]],
        "canary_judge_metrics": [spec.model_dump(exclude_none=True) for spec in http_specs()],
        "git_commit": _git_commit(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scipy": scipy.__version__},
    }
    doc = {
        "meta": meta,
        "scenarios": [dataclasses.asdict(sc) for sc in scs],
        "methods": [{"key": m.key, "label": m.label, "family": m.family, "rows": m.status()}
                    for m in methods],
        "results": results,
        "targets": report.targets(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(_json_safe(doc), indent=1, allow_nan=False) + "\n")
    print(render(doc, args.out))
    print(f"\nwall time {wall:.0f} s; results in {args.out / 'results.json'}", file=sys.stderr)
    return 0
