"""CPU spent judging inside one analysis, per config and mode: what a poll costs besides its
Prometheus queries.

Starts a real Prometheus (the lab), plants the test suite's rollouts, and sends POST /v1/analyze
through Flask's test client. Each analysis's time in `judging.judge_metrics` (every kind's
checks and the corrupt-data check, nothing of the queries) is read with time.process_time, so
other work on the machine does not count; the median and the minimum over `--runs` analyses
are reported, with the whole analysis's CPU alongside. The configs and modes take turns, one
analysis each per round, so load from other work falls on all of them alike (the whole
analysis's CPU then includes what the configs' turns cost the per-process caches they share,
so it is not comparable with runs that measured one config at a time).

    PYTHONPATH=. python bench/judging_cost.py [--runs 50] [--out judging.json]

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from webhook import analysis, judging
from webhook.app import create_app
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import (
    ARGO_STABLE,
    HEALTHCARE_STABLE,
    TRADING_STABLE,
    argo_hash,
    extra_series,
    healthcare_hash,
    healthcare_series,
    standard_sides,
    trading_hash,
    trading_series,
)
from webhook.settings import load_settings

# the audit log's line per analysis would bury the report
logging.getLogger("canary_judge.audit").setLevel(logging.WARNING)


def questions(anchor: float) -> dict[str, dict[str, Any]]:
    """One healthy rollout per config: http over the last 3 hours as Argo asks it (no window),
    trading and healthcare over an explicit hour inside the planted data."""
    hour = {"start": anchor - 300 - 3600, "end": anchor - 300, "step": 60}
    return {
        "http": {"config": "http",
                 "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
                 "stable": {"rollouts_pod_template_hash": ARGO_STABLE}},
        "trading": {"config": "trading",
                    "canary": {"rollouts_pod_template_hash": trading_hash("healthy")},
                    "stable": {"rollouts_pod_template_hash": TRADING_STABLE},
                    "window": hour, "vars": {"risk_tolerance": "low"}},
        "healthcare": {"config": "healthcare",
                       "canary": {"rollouts_pod_template_hash": healthcare_hash("healthy")},
                       "stable": {"rollouts_pod_template_hash": HEALTHCARE_STABLE},
                       "window": hour},
    }


def measure(post: Callable[[dict], Any], bodies: dict[tuple[str, str], dict],
            runs: int) -> dict[tuple[str, str], dict[str, float]]:
    """Median CPU ms of judging and of the whole analysis over `runs` analyses of each body,
    and the fastest judging (the least disturbed by other work on a busy machine). The
    bodies take turns, one analysis each per round, so a burst of other work on a shared
    machine falls on all of them alike instead of on whichever was being measured."""
    spent: dict[tuple[str, str], list[float]] = {key: [] for key in bodies}
    whole: dict[tuple[str, str], list[float]] = {key: [] for key in bodies}
    inner = judging.judge_metrics
    current: list[tuple[str, str]] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[current[-1]].append(time.process_time() - began)

    analysis.judge_metrics = timed  # type: ignore[assignment]
    try:
        for key, body in bodies.items():  # warm caches (configs, step cache, scipy)
            current[:] = [key]
            for _ in range(5):
                post(body)
            spent[key].clear()
        for _ in range(runs):
            for key, body in bodies.items():
                current[:] = [key]
                began = time.process_time()
                post(body)
                whole[key].append(time.process_time() - began)
    finally:
        analysis.judge_metrics = inner  # type: ignore[assignment]
    return {key: {"judging_ms": round(statistics.median(spent[key]) * 1000, 2),
                  "judging_ms_min": round(min(spent[key]) * 1000, 2),
                  "analysis_cpu_ms": round(statistics.median(whole[key]) * 1000, 2)}
            for key in bodies}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    anchor = math.floor(time.time() / 60) * 60
    trading_sides, trading_extra = trading_series()
    text = render_openmetrics([*standard_sides(), *trading_sides], anchor - 4 * 3600,
                              anchor + 600, scrape_interval=15.0, seed=7,
                              extra=[*extra_series(), *trading_extra, *healthcare_series()])
    report: dict[str, Any] = {"command": "python bench/judging_cost.py "
                              + " ".join(sys.argv[1:] if argv is None else argv),
                              "runs": args.runs, "configs": {}}
    with PrometheusLab() as lab:
        lab.plant(text)
        app = create_app(load_settings(prometheus_url=lab.start(), config_dir=None))
        client = app.test_client()

        def post(body: dict) -> Any:
            r = client.post("/v1/analyze", json=body)
            assert r.status_code == 200, r.get_data(as_text=True)
            return r.json

        bodies = {(name, mode): {**body, "mode": mode}
                  for name, body in questions(anchor).items()
                  for mode in ("sequential", "fixed")}
        checks = {key: len(post(body)["checks"]) for key, body in bodies.items()}
        for (name, mode), figures in measure(post, bodies, args.runs).items():
            report["configs"].setdefault(name, {})[mode] = {
                **figures, "checks": checks[name, mode]}
    text_out = json.dumps(report, indent=2)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
