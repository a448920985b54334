"""A counter series that is absent where its side has traffic means "none counted", not "no
data", when it is subtracted: trading's order_unfilled_rate (orders minus fills) read a canary
with orders but no fills series at all (a fills counter created at its first fill, or renamed
by the new version) as 0 % unfilled and passed that check while every order went unfilled.
Planted in a real Prometheus and asked through the served API."""

from __future__ import annotations

import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.lab.rollouts import _ar1_gauge, _constant, _counter
from webhook.lab.synth import ExtraSeries
from webhook.settings import load_settings

END = 1_700_000_000.0 - 1_700_000_000.0 % 3600
HASH = "rollouts_pod_template_hash"


def _version(hash_: str, pods: int, seed: int, fills: bool = True) -> str:
    """Orders (and fills, 95 % of them) per pod at 20/s, with the config's other series."""
    labels = {"app": "desk", HASH: hash_}
    side = TrafficSide(labels=labels, rps=20.0 * pods, error_ratio=0.0,
                       requests_metric="order_requests_total",
                       latency_metric="order_latency_seconds", latency_median_s=0.02,
                       latency_sigma=0.5)
    extra = [ExtraSeries("order_slippage_bps", labels, "gauge", _ar1_gauge(1.0, seed=seed)),
             ExtraSeries("pnl_impact_usd", labels, "gauge", _ar1_gauge(1.0, seed=seed)),
             ExtraSeries("market_impact_bps", labels, "gauge", _ar1_gauge(2.0, seed=seed)),
             ExtraSeries("compliance_violations_total", labels, "counter", _constant(0.0))]
    for pod in range(pods):
        pod_labels = {**labels, "pod": f"desk-{hash_}-{pod}"}
        extra.append(ExtraSeries("orders_total", pod_labels, "counter",
                                 _counter(20.0, seed + pod)))
        if fills:
            extra.append(ExtraSeries("orders_filled_total", pod_labels, "counter",
                                     _counter(20.0, seed + pod, keep=0.95)))
    return render_openmetrics([side], END - 3600, END + 600, seed=seed, extra=extra)


@pytest.fixture(scope="module")
def client():
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    with PrometheusLab() as prom:
        prom.plant(_version("d-stable", 2, 1))
        prom.plant(_version("d-filling", 1, 11))
        prom.plant(_version("d-nofills", 1, 21, fills=False))
        app = create_app(load_settings(prometheus_url=prom.start(), config_dir=None))
        yield app.test_client()


def _unfilled(client, canary: str, mode: str) -> dict:
    r = client.post("/v1/analyze", json={
        "config": "trading", "mode": mode, "canary": {HASH: canary},
        "stable": {HASH: "d-stable"}, "vars": {"risk_tolerance": "low"},
        "window": {"start": END - 1800, "end": END, "step": 60}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return next(c for c in r.json["checks"] if c["name"] == "order_unfilled_rate")


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_orders_without_any_fills_series_are_all_unfilled(client, mode):
    check = _unfilled(client, "d-nofills", mode)
    assert check["verdict"] == "fail", check["reason"]
    assert "canary 100% of" in check["reason"]


def test_a_filling_canary_still_passes(client):
    check = _unfilled(client, "d-filling", "fixed")
    assert check["verdict"] == "pass", check["reason"]
