"""What the report page costs next to the JSON answer of the same analysis.

    python bench/report_cost.py [--runs 60] [--out bench/results/report_cost.json]

Against a real Prometheus with the planted rollouts (webhook.lab) and `canary-judge serve`
(gunicorn), GETs the same explicit one-hour window (60 steps, http config: 3 checks) as JSON
and as HTML, alternating so both see the same machine load, for a passing and a failing
rollout. Reports p50/p95 wall time, the ratio HTML/JSON, and the bytes of each answer; and,
in process (less exposed to a busy machine), run_analysis plus serialising, without and with
the per-step traces and the page. The
page recomputes the analysis (no state is kept), so it costs the analysis plus drawing the
charts; the target is at most ~2x the JSON answer.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import requests
from flask import json as flask_json

if __package__ in (None, ""):  # `python bench/report_cost.py`: only bench/ is on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import summary, timed
from webhook.analysis import Policy, run_analysis
from webhook.api.answer import answer_body
from webhook.configs import load_registry
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, argo_hash, standard_sides
from webhook.models import AnalysisRequest
from webhook.report.page import report_html
from webhook.settings import load_settings
from webhook.sources.prometheus import PrometheusSource


def in_process(url: str, now: float, runs: int) -> dict[str, object]:
    """run_analysis + JSON vs run_analysis with traces + the page, alternating."""
    source = PrometheusSource(load_settings(prometheus_url=url))
    registry, policy = load_registry(None), Policy()
    request = AnalysisRequest.model_validate({
        "config": "http", "canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
        "window": {"start": now - 3600, "end": now, "step": 60}})

    def as_json() -> None:
        flask_json.dumps(answer_body(run_analysis(request, registry, source, policy)))

    def as_html() -> None:
        result = run_analysis(request, registry, source, policy, traces=True)
        report_html(answer_body(result), result.checks)

    as_json(), as_html()
    samples: dict[str, list[float]] = {"json": [], "html": []}
    for _ in range(runs):
        samples["json"] += timed(as_json, 1)
        samples["html"] += timed(as_html, 1)
    stats = {k: summary(v) for k, v in samples.items()}
    return {**stats, "html_over_json_p50": round(stats["html"]["p50_ms"]
                                                 / stats["json"]["p50_ms"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--out", default="bench/results/report_cost.json")
    args = parser.parse_args()

    now = math.floor(time.time() / 60) * 60
    results: dict[str, object] = {
        "window": "1h at 60s step, http config (3 checks, 6 range queries), sequential",
        "runs": args.runs}
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics(standard_sides(), now - 7200, now + 600, seed=7))
        url = prom.start()
        results["in_process"] = in_process(url, now, args.runs)
        with served_judge(url, workers=1) as judge, requests.Session() as http:
            for label, version in (("pass", "healthy"), ("fail", "errors3x")):
                query = {"canary.rollouts_pod_template_hash": argo_hash(version),
                         "stable.rollouts_pod_template_hash": ARGO_STABLE,
                         "start": now - 3600, "end": now, "step": 60}
                urls = {fmt: f"{judge}/v1/analyze/http?{urlencode({**query, 'format': fmt})}"
                        for fmt in ("json", "html")}
                for url in urls.values():  # warm up: imports, connections, Prometheus caches
                    http.get(url, timeout=30).raise_for_status()
                times: dict[str, list[float]] = {"json": [], "html": []}
                sizes: dict[str, int] = {}
                for _ in range(args.runs):
                    for fmt, url in urls.items():
                        began = time.perf_counter()
                        r = http.get(url, timeout=30)
                        times[fmt].append(time.perf_counter() - began)
                        r.raise_for_status()
                        sizes[fmt] = len(r.content)
                stats = {fmt: summary(samples) for fmt, samples in times.items()}
                results[label] = {
                    **{fmt: {**s, "bytes": sizes[fmt]} for fmt, s in stats.items()},
                    "html_over_json_p50": round(stats["html"]["p50_ms"]
                                                / stats["json"]["p50_ms"], 2),
                    "html_over_json_p95": round(stats["html"]["p95_ms"]
                                                / stats["json"]["p95_ms"], 2)}
    text = json.dumps(results, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    worst = max(results[k]["html_over_json_p50"] for k in ("pass", "fail"))  # type: ignore[index]
    return 0 if worst <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
