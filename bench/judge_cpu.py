"""CPU of `judging.judge_metrics` on the short windows a rollout's polls judge: the part of
one analysis' CPU that is the judges' own, measured without the noise of HTTP and Prometheus.

The `http` config as Argo asks it (no window) about a canary begun ~10 minutes before the run
(`bench/latency.py`'s `single`): ~11 steps of 60 s, plus 60 steps of the stable's history in
sequential mode. Each case's analysis runs once against a real Prometheus (the lab, the
rollouts `bench/latency.py` plants) to capture what `judge_metrics` is given (the fetched
series and the judging context); then `judge_metrics` is replayed on that input `--runs`
times, timed with time.process_time (other work on the machine does not count). The median
and the minimum per call are reported; the cases take turns, one call each per round, so a
burst of other work falls on all of them alike. Every replay's checks must equal the captured
analysis' checks (a replay that judged something else would time nothing useful).

    PYTHONPATH=. python bench/judge_cpu.py [--runs 2000] [--out judge_cpu.json]

Figures are for the machine it runs on; compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from webhook import analysis, judging
from webhook.analysis import Policy, run_analysis
from webhook.configs import load_registry
from webhook.fetching import StartCache
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import (
    ARGO_APP,
    ARGO_CANARIES,
    ARGO_CPU,
    ARGO_STABLE,
    BASE,
    NAMESPACE,
    standard_sides,
)
from webhook.models import AnalysisRequest
from webhook.settings import load_settings
from webhook.sources.prometheus import PrometheusSource

logging.getLogger("canary_judge.audit").setLevel(logging.WARNING)

STEP = 60
FRESH_MINUTES = 10  # as bench/latency.py's `single`: the canary began this long before the run
# case -> (planted difference of the canary from the stable's traffic, mode)
CASES = {
    "sequential_healthy": ("healthy", "sequential"),
    "fixed_healthy": ("healthy", "fixed"),
    "sequential_errors3x": ("errors3x", "sequential"),
    "fixed_slow": ("slow", "fixed"),
}


def canary_hash(version: str) -> str:
    return f"c0ffee{list(ARGO_CANARIES).index(version):04d}"


def captured_inputs(prom: str, now: float) -> dict[str, tuple[Any, Any, Any, list]]:
    """Each case's `judge_metrics` arguments and checks, from one real analysis."""
    settings = load_settings(prometheus_url=prom)
    registry, policy = load_registry(None), Policy()
    source = PrometheusSource(settings)
    seen: list[tuple[Any, Any, Any, list]] = []
    inner = judging.judge_metrics

    def capture(specs: Any, results: Any, ctx: Any) -> Any:
        checks = inner(specs, results, ctx)
        seen.append((specs, results, ctx, checks))
        return checks

    out = {}
    analysis.judge_metrics = capture  # type: ignore[assignment]
    try:
        for name, (version, mode) in CASES.items():
            request = AnalysisRequest.model_validate({
                "config": "http", "mode": mode,
                "canary": {"rollouts_pod_template_hash": canary_hash(version)},
                "stable": {"rollouts_pod_template_hash": ARGO_STABLE}})
            seen.clear()
            run_analysis(request, registry, source, policy, now=now, starts=StartCache())
            assert len(seen) == 1, name
            out[name] = seen[0]
    finally:
        analysis.judge_metrics = inner  # type: ignore[assignment]
    return out


def measure(inputs: dict[str, tuple[Any, Any, Any, list]], runs: int) -> dict[str, dict]:
    """Median and fastest CPU ms per `judge_metrics` call of each case, over `runs` calls."""
    spent: dict[str, list[float]] = {name: [] for name in inputs}
    for name, (specs, results, ctx, checks) in inputs.items():  # warm up; same answer
        for _ in range(20):
            assert repr(judging.judge_metrics(specs, results, ctx)) == repr(checks), name
    for _ in range(runs):
        for name, (specs, results, ctx, _checks) in inputs.items():
            began = time.process_time()
            judging.judge_metrics(specs, results, ctx)
            spent[name].append(time.process_time() - began)
    out = {}
    for name, (_specs, _results, ctx, checks) in inputs.items():
        out[name] = {"judge_metrics_ms": round(statistics.median(spent[name]) * 1000, 3),
                     "judge_metrics_ms_min": round(min(spent[name]) * 1000, 3),
                     "mode": ctx.mode, "judged_steps": ctx.points - ctx.first,
                     "history_steps": (ctx.first - ctx.history.start
                                       if ctx.history is not None else 0),
                     "checks": len(checks),
                     "verdicts": sorted({c.verdict for c in checks})}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    now = math.floor(time.time() / STEP) * STEP
    canaries = [replace(BASE, labels={"app": ARGO_APP, "namespace": NAMESPACE,
                                      "rollouts_pod_template_hash": canary_hash(version)},
                        **ARGO_CPU, **ARGO_CANARIES[version])
                for version in dict.fromkeys(v for v, _ in CASES.values())]
    with PrometheusLab() as lab:
        lab.plant(render_openmetrics(standard_sides(), now - 4 * 3600, now + 600, seed=7))
        lab.plant(render_openmetrics(canaries, now - FRESH_MINUTES * 60, now + 600, seed=100))
        inputs = captured_inputs(lab.start(), now)
    report = {"command": "python bench/judge_cpu.py "
              + " ".join(sys.argv[1:] if argv is None else argv),
              "runs": args.runs, "cases": measure(inputs, args.runs)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
