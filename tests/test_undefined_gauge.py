"""A NaN sample in a safety gauge is not "up": the healthcare config's clinical alerting check
fails on it, as on a gap, and says NaN rather than "stopped reporting".

Planted in a real Prometheus. `min_over_time` and `min()` pass over a NaN (and a +Inf) next to
any number, so before the config kept them a canary whose alerting gauge read NaN for one
scrape, or on one of two pods, passed the patient-safety check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.synth import ExtraSeries
from webhook.settings import load_settings

HASH = "rollouts_pod_template_hash"
GAUGE = "clinical_alerting_up"
MID_STEP = 1830.0  # seconds after the first sample: between two step points (60 s steps)


def _up_but(at: dict[float, float]):
    """1 at every scrape but the offsets (from the first sample) in `at`."""
    def values(ts: np.ndarray) -> np.ndarray:
        out = np.ones(ts.size)
        for offset, value in at.items():
            out[np.isclose(ts - ts[0], offset)] = value
        return out
    return values


CANARIES: dict[str, list[dict[float, float]]] = {  # one dict of odd samples per pod
    "ok": [{}],
    "nanscrape": [{MID_STEP: math.nan}],
    # a minute of NaN, 4 scrapes: 1 step, or 2 where ranges hold both ends (Prometheus 2)
    "nanstep": [{MID_STEP - 15 + 15 * k: math.nan for k in range(4)}],
    "nanpod": [{}, {MID_STEP: math.nan}],  # one pod of two
    "infscrape": [{MID_STEP: math.inf}],
    "allnan": [{15.0 * k: math.nan for k in range(241)}],
}


@pytest.fixture(scope="module")
def client(lab):
    extra = []
    for name, pods in {"stable": [{}], **CANARIES}.items():
        for i, odd in enumerate(pods):
            extra.append(ExtraSeries(GAUGE, {HASH: f"g-{name}", "pod": f"{name}-{i}"}, "gauge",
                                     _up_but(odd)))
    text = render_openmetrics([], lab.anchor - 3600, lab.anchor, extra=extra)
    with PrometheusLab() as prom:
        prom.plant(text)
        url = prom.start()
        yield create_app(load_settings(prometheus_url=url, config_dir=None)).test_client()


def alerting(client, lab, canary: str) -> dict:
    end = lab.anchor - 300
    r = client.post("/v1/analyze", json={
        "config": "healthcare", "canary": {HASH: f"g-{canary}"}, "stable": {HASH: "g-stable"},
        "window": {"start": end - 40 * 60, "end": end, "step": 60}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return next(c for c in r.json["checks"] if c["name"] == "clinical_alerting")


def test_alerting_up_at_every_sample_passes(client, lab):
    check = alerting(client, lab, "ok")
    assert check["verdict"] == "pass", check["reason"]


@pytest.mark.parametrize(("canary", "steps"), [
    ("nanscrape", (1,)), ("nanstep", (1, 2)), ("nanpod", (1,)), ("infscrape", (1,))])
def test_a_nan_or_inf_alerting_sample_fails_and_says_nan(client, lab, canary, steps):
    check = alerting(client, lab, canary)
    assert check["verdict"] == "fail", check["reason"]
    assert any(f"reported NaN (no value) in {n} steps" in check["reason"] for n in steps), \
        check["reason"]
    assert "stopped reporting" not in check["reason"]


def test_an_alerting_gauge_that_is_only_nan_is_never_a_pass(client, lab):
    check = alerting(client, lab, "allnan")
    assert check["verdict"] == "inconclusive", check["reason"]
    assert "all NaN" in check["reason"], check["reason"]
