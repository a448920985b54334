"""What one analysis costs, next to the Prometheus queries it needs.

    python bench/latency.py [--runs 200] [--out bench/results/latency.json]

Measures, against a real Prometheus with the planted rollout (webhook.lab):
- queries: the analysis' own range queries sent one after another on one requests.Session
  (the floor a client pays for them);
- analyze_inproc: run_analysis end to end (queries concurrently + judging), in process;
- http_gunicorn: POST /v1/analyze to `canary-judge serve` (2 workers × 8 threads), as Argo calls it;
- http_concurrent: the same with 8 client threads, as several AnalysisRuns polling at once.
Reports p50/p95/p99 in milliseconds and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from webhook.analysis import Policy, plan_queries, resolve_metrics, resolve_window, run_analysis
from webhook.configs import load_registry
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, argo_hash, standard_sides
from webhook.models import AnalysisRequest
from webhook.settings import load_settings
from webhook.sources.prometheus import PrometheusSource


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, math.ceil(p * len(ms)) - 1)], 2)

    return {"n": len(ms), "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ms), 2)}


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default="bench/results/latency.json")
    args = parser.parse_args()

    now = math.floor(time.time() / 60) * 60
    body = {"config": "http", "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
            "window": {"start": now - 3600, "end": now, "step": 60}}
    results: dict[str, object] = {"window": "1h at 60s step, http config (6 range queries)"}
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics(standard_sides(), now - 7200, now + 600, seed=7))
        url = prom.start()
        settings = load_settings(prometheus_url=url)
        registry = load_registry(None)
        policy = Policy()
        request = AnalysisRequest.model_validate(body)
        config = registry.get("http")
        assert config is not None
        queries = plan_queries(
            resolve_metrics(config, request, policy),
            {"canary": f'rollouts_pod_template_hash="{argo_hash("healthy")}"',
             "stable": f'rollouts_pod_template_hash="{ARGO_STABLE}"'},
            config.vars, resolve_window(request, config, policy, time.time()))
        session = requests.Session()

        def sequential_queries() -> None:
            for q in queries:
                session.post(url + "/api/v1/query_range", timeout=10, data={
                    "query": q.expr, "start": q.start, "end": q.end, "step": q.step}).json()

        source = PrometheusSource(settings)
        for fn in (sequential_queries, lambda: run_analysis(request, registry, source, policy)):
            timed(fn, 10)  # warm up
        results["queries_sequential"] = summary(timed(sequential_queries, args.runs))
        results["analyze_inproc"] = summary(timed(
            lambda: run_analysis(request, registry, source, policy), args.runs))

        with served_judge(url) as judge:
            client = requests.Session()

            def http_call(s: requests.Session = client) -> None:
                r = s.post(judge + "/v1/analyze", json=body, timeout=10)
                assert r.status_code == 200 and r.json()["verdict"] == "pass", r.text

            timed(http_call, 10)
            results["http_gunicorn"] = summary(timed(http_call, args.runs))
            sessions = [requests.Session() for _ in range(8)]
            with ThreadPoolExecutor(8) as pool:
                began = time.perf_counter()
                lat = list(pool.map(lambda i: timed(lambda: http_call(sessions[i % 8]), 1)[0],
                                    range(args.runs)))
                wall = time.perf_counter() - began
            results["http_concurrent_8"] = {**summary(lat),
                                            "throughput_per_s": round(args.runs / wall, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
