"""A metrics source behind the judge's clock (rule evaluation or remote-write ingestion a
minute or two late, or the judge's clock ahead of it) leaves the newest steps empty on both
sides. The healthcare config's clinical_alerting must stay up at every sample, and read those
steps as the canary going silent: a healthy canary failed its critical check (and fired
Flagger's rollback hook) whenever the source lagged more than one step. Steps with no data in
any query are now judged once their data arrive; a canary whose alerting gauge really stops
while the rest of the data keeps coming still fails.

Planted in a real Prometheus: the shipped healthcare series ending 75 s or 2 min before the
poll's end (explicit `end`: the poll re-judged as it was asked then), and on a source without
lag, the healthy canary's alerting gauge alone ending 3 minutes before it.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from webhook.app import create_app
from webhook.judging import data_end
from webhook.kinds import KindContext
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import healthcare_hash, healthcare_series
from webhook.settings import load_settings
from webhook.sources.base import QueryKey, QueryResult, RangeQuery, Series

END = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # the poll's end
HASH = "rollouts_pod_template_hash"
LAGS = (75, 120)


def _silenced(text: str, hash_: str, after: float) -> str:
    """`text` without `hash_`'s clinical_alerting_up samples after `after`."""
    def kept(line: str) -> bool:
        if not line.startswith("clinical_alerting_up{") or f'"{hash_}"' not in line:
            return True
        return float(line.rsplit(" ", 1)[1]) <= after
    return "\n".join(line for line in text.splitlines() if kept(line)) + "\n"


@pytest.fixture(scope="module")
def clients():
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    with contextlib.ExitStack() as stack:
        out = {}
        for lag in (*LAGS, 0):
            prom = stack.enter_context(PrometheusLab())
            text = render_openmetrics([], END - 2 * 3600, END - lag, seed=1,
                                      extra=healthcare_series())
            if lag == 0:  # no lag: the healthy canary's alerting alone stops reporting
                text = _silenced(text, healthcare_hash("healthy"), END - 180)
            prom.plant(text)
            app = create_app(load_settings(prometheus_url=prom.start(), config_dir=None))
            out[lag] = app.test_client()
        yield out


def _payload(version: str, mode: str) -> dict:
    window = {"end": END} if mode == "sequential" else {"start": END - 3600, "end": END}
    return {"config": "healthcare", "mode": mode, "window": window,
            "canary": {HASH: healthcare_hash(version)},
            "stable": {HASH: healthcare_hash("stable")}}


def _alerting(client, version: str, mode: str) -> dict:
    r = client.post("/v1/analyze", json=_payload(version, mode))
    assert r.status_code == 200, r.get_data(as_text=True)
    return next(c for c in r.json["checks"] if c["name"] == "clinical_alerting")


@pytest.mark.parametrize("mode", ["sequential", "fixed"])
@pytest.mark.parametrize("lag", LAGS)
def test_a_lagging_source_does_not_fail_a_healthy_canarys_alerting(clients, lag, mode):
    check = _alerting(clients[lag], "healthy", mode)
    assert check["verdict"] == "pass", check["reason"]


@pytest.mark.parametrize("lag", LAGS)
def test_a_lagging_source_still_fails_a_missed_scrape(clients, lag):
    check = _alerting(clients[lag], "gap30", "fixed")
    assert check["verdict"] == "fail" and "missed scrapes" in check["reason"]


def test_the_rollback_hook_does_not_fire_on_a_lagging_source(clients):
    meta = {"config": "healthcare",
            "canary_selector": f'{HASH}="{healthcare_hash("healthy")}"',
            "stable_selector": f'{HASH}="{healthcare_hash("stable")}"', "end": str(END)}
    r = clients[120].post("/v1/hooks/rollback", json={"name": "ehr", "namespace": "care",
                                                       "metadata": meta})
    assert r.status_code != 200, r.get_data(as_text=True)


@pytest.mark.parametrize("mode", ["sequential", "fixed"])
def test_alerting_that_stops_while_the_rest_reports_fails(clients, mode):
    check = _alerting(clients[0], "healthy", mode)
    assert check["verdict"] == "fail", check["reason"]
    assert "stopped reporting" in check["reason"]


def test_data_end_needs_the_stables_data_and_bounds_the_judged_steps():
    nan = np.nan

    def result(side: str, values: list[float]) -> tuple[QueryKey, QueryResult]:
        key = QueryKey("up", side, "values")  # type: ignore[arg-type]
        query = RangeQuery(key, "x", 60.0, 60.0 * len(values), 60.0)
        return key, QueryResult(query, (Series({}, np.array(values)),))

    canary = result("canary", [1, 1, 1, nan, nan])
    assert data_end(dict([canary])) is None  # canary only: silence and lag look alike
    assert data_end(dict([canary, result("stable", [1, 1, nan, nan, nan])])) == 180.0
    assert data_end(dict([canary, result("stable", [1, 1, 1, 1, nan])])) == 240.0
    ctx = KindContext(alpha=0.05, mode="fixed", step=60.0, points=5, first=1, origin=60.0,
                      data_end=180.0)
    assert ctx.through() == 2  # steps 1 and 2 (120 s, 180 s)
    assert KindContext(alpha=0.05, mode="fixed", step=60.0, points=5).through() is None
