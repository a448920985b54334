"""A series that is present but NaN, ±Inf or a negative count is corrupt data: the check is
inconclusive and says which metric, side and value, never a pass (and never read as zero).

Planted in a real Prometheus: once in the shipped `http` config's own counters (a NaN-valued
5xx series under `increase()`), once as recording-rule style per-minute counts, which is where
+Inf, -Inf and negative values reach a query unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.lab.synth import ExtraSeries
from webhook.settings import load_settings

HASH = "rollouts_pod_template_hash"
STABLE = "stab1e"
BAD = {"nan": math.nan, "posinf": math.inf, "neginf": -math.inf, "negative": -5.0}

RECORDED = """
name: recorded
description: per-minute counts from recording rules
defaults: {mode: fixed}
metrics:
  - name: error_ratio
    kind: ratio
    bad: sum(last_over_time(test:errors:increase1m{ {{selector}} }[{{step}}]))
    total: sum(last_over_time(test:requests:increase1m{ {{selector}} }[{{step}}]))
    tolerance: {relative: 0.2, absolute: 0.002}
    critical: true
    min_total: 200
  - name: adverse_events
    kind: events
    query: sum(last_over_time(test:adverse:increase1m{ {{selector}} }[{{step}}]))
    critical: true
"""

# Zero events only vouch for a canary with the traffic to show it: a request count no real
# window has (1e15 and more, or finite steps whose sum overflows) is a broken series.
VOUCHED = """
name: vouched
description: zero-tolerance events that need traffic to pass
defaults: {mode: fixed}
metrics:
  - name: adverse_events
    kind: events
    query: sum(last_over_time(test:adverse:increase1m{ {{selector}} }[{{step}}]))
    total: sum(last_over_time(test:requests:increase1m{ {{selector}} }[{{step}}]))
    min_total: 200
    critical: true
"""
TRAFFIC = {"t-plain": 1200.0, "t-implausible": 1e15, "t-overflowing": 1e307}


def _const(value: float):
    return lambda ts: np.full(ts.size, value)


def _recorded(hash_: str, errors: float, requests: float, adverse: float) -> list[ExtraSeries]:
    labels = {HASH: hash_}
    return [ExtraSeries("test:errors:increase1m", labels, "gauge", _const(errors)),
            ExtraSeries("test:requests:increase1m", labels, "gauge", _const(requests)),
            ExtraSeries("test:adverse:increase1m", labels, "gauge", _const(adverse))]


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory, lab):
    """Canaries with 3x the stable's errors whose bad-event series alone is corrupt."""
    sides = [TrafficSide(labels={HASH: STABLE}, rps=40, error_ratio=0.01)]
    extra = [*_recorded(STABLE, 24, 2400, 0), *_recorded("r-control", 36, 1200, 0),
             *_recorded("e-control", 12, 1200, 2)]
    for name, value in BAD.items():
        # http config: the real errors sit under code 599, a corrupt series under code 500
        sides.append(TrafficSide(labels={HASH: f"h-{name}"}, rps=20, error_ratio=0.03,
                                 error_code="599"))
        extra.append(ExtraSeries("http_requests_total", {HASH: f"h-{name}", "code": "500"},
                                 "gauge", _const(value)))
        extra += _recorded(f"r-{name}", value, 1200, 0)  # corrupt bad events, 3x otherwise
        extra += _recorded(f"e-{name}", 12, 1200, value)  # corrupt adverse events
    for name, requests in TRAFFIC.items():
        extra += _recorded(name, 0, requests, 0)  # no adverse events, on this traffic
    text = render_openmetrics(sides, lab.anchor - 3600, lab.anchor, seed=3, extra=extra)
    config_dir = tmp_path_factory.mktemp("configs")
    (config_dir / "recorded.yaml").write_text(RECORDED)
    (config_dir / "vouched.yaml").write_text(VOUCHED)
    with PrometheusLab() as prom:
        prom.plant(text)
        url = prom.start()
        app = create_app(load_settings(prometheus_url=url, config_dir=str(config_dir)))
        yield app.test_client()


def _analyze(client, lab, canary: str, config: str = "http"):
    end = lab.anchor - 300
    r = client.post("/v1/analyze", json={
        "config": config, "canary": {HASH: canary}, "stable": {HASH: STABLE},
        "mode": "fixed", "window": {"start": end - 40 * 60, "end": end, "step": 60}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def _check(body: dict, name: str) -> dict:
    return next(c for c in body["checks"] if c["name"] == name)


def test_controls_fail(corrupt, lab):
    """The planted canaries are bad: with clean series both configs fail them."""
    assert _analyze(corrupt, lab, "r-control", "recorded")["verdict"] == "fail"
    body = _analyze(corrupt, lab, "e-control", "recorded")
    assert _check(body, "adverse_events")["verdict"] == "fail"


@pytest.mark.parametrize("bad", list(BAD))
def test_corrupt_bad_event_counter_under_increase_is_inconclusive(corrupt, lab, bad):
    body = _analyze(corrupt, lab, f"h-{bad}")
    assert body["verdict"] != "pass" and body["score"] < 100
    check = _check(body, "error_ratio")
    if bad == "negative":
        # increase() reads a drop as a counter reset: the constant -5 adds no events, and the
        # real 599s still fail the canary
        assert check["verdict"] == "fail"
        return
    assert check["verdict"] == "inconclusive", check["reason"]
    # increase() over ±Inf samples gives NaN; the reason names metric, side and value
    assert "error_ratio" in check["reason"] and "canary's bad-event count" in check["reason"]
    assert "NaN" in check["reason"]


@pytest.mark.parametrize(("bad", "shown"), [("nan", "NaN"), ("posinf", "+Inf"),
                                            ("neginf", "-Inf"), ("negative", "-5")])
def test_corrupt_recorded_bad_events_are_inconclusive(corrupt, lab, bad, shown):
    body = _analyze(corrupt, lab, f"r-{bad}", "recorded")
    assert body["verdict"] == "inconclusive" and not body["pass"]
    check = _check(body, "error_ratio")
    assert check["verdict"] == "inconclusive"
    assert f"error_ratio: the canary's bad-event count series is corrupt ({shown}" \
        in check["reason"]
    assert "error_ratio" in body["reason"]


@pytest.mark.parametrize(("bad", "shown"), [("nan", "NaN"), ("posinf", "+Inf"),
                                            ("neginf", "-Inf"), ("negative", "-5")])
def test_corrupt_zero_tolerance_events_are_inconclusive(corrupt, lab, bad, shown):
    body = _analyze(corrupt, lab, f"e-{bad}", "recorded")
    assert body["verdict"] == "inconclusive"
    check = _check(body, "adverse_events")
    assert check["verdict"] == "inconclusive" and check["critical"]
    assert f"canary's event count series is corrupt ({shown}" in check["reason"]


@pytest.mark.parametrize("canary", ["t-implausible", "t-overflowing"])
def test_no_events_on_an_implausible_request_count_is_inconclusive(corrupt, lab, canary):
    """40 steps of 1e307 requests each are finite samples whose sum overflows to +Inf: that
    once passed as "traffic enough", where the ratio and histogram judges call such counts
    corrupt. The same canary on plausible traffic passes."""
    assert _analyze(corrupt, lab, "t-plain", "vouched")["verdict"] == "pass"
    body = _analyze(corrupt, lab, canary, "vouched")
    assert body["verdict"] == "inconclusive" and not body["pass"]
    check = _check(body, "adverse_events")
    assert check["verdict"] == "inconclusive"
    assert "count of requests is implausibly large" in check["reason"]


def test_corrupt_data_never_fires_or_passes_flagger_hooks(corrupt, lab):
    end = lab.anchor - 300
    meta = {"config": "recorded", "canary_selector": f'{HASH}="r-nan"',
            "stable_selector": f'{HASH}="{STABLE}"', "start": str(end - 2400),
            "end": str(end), "mode": "fixed"}
    payload = {"name": "web", "namespace": "shop", "metadata": meta}
    assert corrupt.post("/v1/hooks/rollback", json=payload).status_code == 412
    assert corrupt.post("/v1/hooks/confirm-promotion", json=payload).status_code == 412
