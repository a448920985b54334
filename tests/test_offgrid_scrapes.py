"""The http config on targets scraped at their own phase, as real ones are, in a real
Prometheus: its `increase(…[{{step}}])` counts are extrapolated from the intervals inside each
step (a quarter of the increments at 15 s scrapes and 60 s steps are seen by no step, the rest
scaled by 4/3; `webhook.lab.scrapes`). The judge must still pass healthy canaries and catch a
doubling of errors; the false-failure and detection rates over many rollouts are measured by
`python -m bench.detection` (its `*_scrape15` scenarios, README "Detection benchmark")."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.settings import load_settings

PAIRS = 6
HOUR = 3600


def side(hash_: str, offset: float, rps: float, error_ratio: float = 0.01) -> TrafficSide:
    return TrafficSide({"app": "offgrid", "rollouts_pod_template_hash": hash_}, rps=rps,
                       error_ratio=error_ratio, scrape_offset=offset)


@pytest.fixture(scope="module")
def offgrid() -> Iterator[tuple[Any, float]]:
    """A/A pairs and one canary with doubled errors, every target at its own scrape phase
    (0.3 s jitter), two hours of data: the stable's history, then the canary's hour."""
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    end = math.floor(time.time() / 60) * 60 - 600
    start = end - 2 * HOUR
    offsets = np.random.default_rng(3).uniform(0, 15, size=2 * PAIRS + 2)
    sides = []
    for k in range(PAIRS):
        sides.append(side(f"stable{k}", float(offsets[2 * k]), rps=40))
        sides.append(side(f"canary{k}", float(offsets[2 * k + 1]), rps=10))
    sides.append(side("stablex", float(offsets[-2]), rps=40))
    sides.append(side("errorsx2", float(offsets[-1]), rps=10, error_ratio=0.02))
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics(sides, start, end, scrape_interval=15, seed=17,
                                      jitter=0.3))
        url = prom.start()
        app = create_app(load_settings(prometheus_url=url, config_dir=None))
        yield app.test_client(), end


def verdict(client: Any, end: float, canary: str, stable: str) -> dict[str, Any]:
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": {"rollouts_pod_template_hash": canary},
        "stable": {"rollouts_pod_template_hash": stable},
        "window": {"start": end - HOUR, "end": end, "step": 60}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_healthy_canaries_scraped_off_grid_do_not_fail(offgrid):
    client, end = offgrid
    answers = [verdict(client, end, f"canary{k}", f"stable{k}") for k in range(PAIRS)]
    assert not [a["reason"] for a in answers if a["verdict"] == "fail"]
    # an hour at 10 req/s is enough to vouch for most of them
    assert sum(a["verdict"] == "pass" for a in answers) >= PAIRS // 2, [
        a["reason"] for a in answers]


def test_doubled_errors_scraped_off_grid_fail(offgrid):
    client, end = offgrid
    answer = verdict(client, end, "errorsx2", "stablex")
    checks = {c["name"]: c for c in answer["checks"]}
    assert answer["verdict"] == "fail", answer["reason"]
    assert checks["error_ratio"]["verdict"] == "fail"
    # the counts the judge saw are Prometheus' extrapolations, not whole requests
    assert not float(checks["error_ratio"]["canary"]["n"]).is_integer()
