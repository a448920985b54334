"""A Prometheus down for 10 minutes in the middle of a rollout, in a real Prometheus: no sample
of any series, canary or stable, for 10 minutes, then every series back with everything it
counted meanwhile.

The built-in configs count each step as the change of a series' last sample since the step
before's, found up to an hour back (README "Counting a counter per step"). With the 5-minute
lookback they had before, every series back after the outage had no earlier sample to count
from and counted its whole value in one step: the stable's hours of history before the
rollout, an incident in them included, outweighed the window, and canaries worse than their
stable passed on the stable's old errors (http's error ratio, trading's fill and unfilled
rates, healthcare's admission failures). Now the step after the outage counts what the series
counted during it, once: the window's counts are exactly the planted ones and the verdict is
the rollout's own.

The counters are written by hand (OpenMetrics text for promtool), each pod at its own scrape
phase every 15 s; the stable's pods served three hours before the window, the first two with
many more failures than now, the canary's pods began with the window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from counters import count_between, counters_text

from webhook.app import create_app
from webhook.lab import PrometheusLab
from webhook.settings import load_settings

HOUR = 3600
SCRAPE = 15.0
OUTAGE = (25 * 60, 15 * 60)  # Prometheus down from 25 to 15 minutes before the end
CANARY, STABLE = "outcanary", "outstable"
ROLE = {CANARY: "canary", STABLE: "stable"}

# (since, rate per second) pieces: the rate from `since` (seconds before the end) on
Rates = Sequence[tuple[float, float]]


def samples(born: float, end: float, phase: float, rates: Rates) -> list[tuple[float, float]]:
    """A counter's samples every 15 s from `born` + `phase` to `end`: the whole number of
    events counted since `born` at the piecewise-constant `rates` (since is seconds before
    `end`), none while Prometheus was down."""
    ts = born + phase + SCRAPE * np.arange(math.floor((end - born - phase) / SCRAPE) + 1)
    cumulative = np.zeros(ts.size)
    bounds = [end - since for since, _ in rates] + [math.inf]
    for (_, rate), lo, hi in zip(rates, bounds, bounds[1:], strict=False):
        lo = max(lo, born)
        cumulative += rate * np.clip(np.minimum(ts, hi) - lo, 0, None)
    down = (ts >= end - OUTAGE[0]) & (ts < end - OUTAGE[1])
    return [(float(t), float(math.floor(v))) for t, v in zip(ts[~down], cumulative[~down],
                                                             strict=True)]


def split(rates: Rates, share: float) -> list[tuple[float, float]]:
    return [(since, rate * share) for since, rate in rates]


def pods(side: str, born: float, end: float, count: int) -> Iterator[tuple[str, float, float]]:
    """(pod labels, birth, scrape phase) of a side's `count` pods."""
    for k in range(count):
        yield (f'rollouts_pod_template_hash="{side}",pod="{side}-{k}"', born,
               2.3 + 5.1 * k + (7.7 if side == CANARY else 0.0))


def families(end: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per counter family, each series' samples: a stable whose first two of three hours
    before the window failed far more often than now, and a canary worse than the stable in
    the window on every judged count."""
    stable_born, canary_born = end - 4 * HOUR, end - HOUR

    def history(before: float, now: float) -> Rates:  # before: the stable's old failure share
        return [(4 * HOUR, before), (2 * HOUR, now)]

    out: dict[str, dict[str, list[tuple[float, float]]]] = {
        "http_requests": {}, "orders": {}, "orders_filled": {}, "clinical_workflow": {}}
    for side, born, count, rps, bad_share in (
            (STABLE, stable_born, 2, 20.0, history(0.05, 0.01)),
            (CANARY, canary_born, 2, 5.0, history(0.03, 0.03))):
        for labels, b, phase in pods(side, born, end, count):
            # http: 5xx share (stable 5 % → 1 %, canary 3 %)
            bad = [(since, rps * share) for since, share in bad_share]
            good = [(since, rps * (1 - share)) for since, share in bad_share]
            out["http_requests"][f'http_requests_total{{{labels},code="500"}}'] = samples(
                b, end, phase, bad)
            out["http_requests"][f'http_requests_total{{{labels},code="200"}}'] = samples(
                b, end, phase, good)
            # trading: fill share (stable 70 % → 99 %, canary 90 %)
            fills = [(4 * HOUR, rps * 0.7), (2 * HOUR, rps * 0.99)] if side == STABLE else [
                (4 * HOUR, rps * 0.9)]
            out["orders"][f"orders_total{{{labels}}}"] = samples(b, end, phase,
                                                                 [(4 * HOUR, rps)])
            out["orders_filled"][f"orders_filled_total{{{labels}}}"] = samples(
                b, end, phase, fills)
            # healthcare: admission failure share (stable 5 % → 0.3 %, canary 0.95 %)
            failing = [(4 * HOUR, 0.05), (2 * HOUR, 0.003)] if side == STABLE else [
                (4 * HOUR, 0.0095)]
            for outcome, rates in (
                    ("failure", [(since, rps * share) for since, share in failing]),
                    ("success", [(since, rps * (1 - share)) for since, share in failing])):
                out["clinical_workflow"][
                    f'clinical_workflow_total{{{labels},workflow="admission",'
                    f'outcome="{outcome}",facility="A"}}'] = samples(b, end, phase, rates)
    return out


@pytest.fixture(scope="module")
def outage() -> Iterator[tuple[Any, float, dict[str, dict[str, list[tuple[float, float]]]]]]:
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    end = math.floor(time.time() / 60) * 60 - 600
    planted = families(end)
    with PrometheusLab() as prom:
        prom.plant(counters_text(planted))
        url = prom.start()
        app = create_app(load_settings(prometheus_url=url, config_dir=None))
        client = app.test_client()
        client.prometheus_url = url  # for a cold app's answers (test_polls_…)
        yield client, end, planted


def planted_count(series: dict[str, list[tuple[float, float]]], side: str, end: float,
                  *having: str) -> float:
    return sum(count_between(points, end - HOUR, end) for name, points in series.items()
               if f'rollouts_pod_template_hash="{side}"' in name
               and all(h in name for h in having))


def judge(client: Any, config: str, end: float, mode: str, start: float | None = None,
          **vars_: str) -> dict[str, Any]:
    r = client.post("/v1/analyze", json={
        "config": config, "canary": {"rollouts_pod_template_hash": CANARY},
        "stable": {"rollouts_pod_template_hash": STABLE}, "mode": mode, "vars": vars_,
        "window": {"start": end - HOUR if start is None else start, "end": end, "step": 60}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return {c["name"]: c for c in r.json["checks"]}


def n(check: dict[str, Any], side: str) -> float:
    return float(check[side]["n"])


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_http_errors_after_an_outage_are_the_rollouts(outage, mode):
    """The canary's 3 % errors against the stable's 1 % fail; counted with the stable's whole
    history after the outage (an incident of 5 % in it) the stable read 2.75 % and it passed."""
    client, end, planted = outage
    check = judge(client, "http", end, mode)["error_ratio"]
    assert check["verdict"] == "fail", check["reason"]
    for side in (CANARY, STABLE):
        assert n(check, ROLE[side]) == planted_count(planted["http_requests"], side, end), side


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_trading_fills_after_an_outage_are_the_rollouts(outage, mode):
    """The canary fills 90 % of its orders, the stable 99 %: both fill checks fail. With the
    stable's history (70 % filled for two hours) counted again after the outage, the stable
    read 86 % filled and they passed."""
    client, end, planted = outage
    checks = judge(client, "trading", end, mode, risk_tolerance="low")
    for name in ("order_fill_rate", "order_unfilled_rate"):
        check = checks[name]
        assert check["verdict"] == "fail", (name, check["reason"])
        for side in (CANARY, STABLE):
            assert n(check, ROLE[side]) == planted_count(
                planted["orders"], side, end), (name, side)


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_healthcare_admissions_after_an_outage_are_the_rollouts(outage, mode):
    """The canary's admissions fail 0.95 % of the time, the stable's 0.3 %: more than the
    tolerance allows. With the stable's history (5 % for two hours) counted again after the
    outage, the stable read 2.35 % and the canary passed."""
    client, end, planted = outage
    checks = judge(client, "healthcare", end, mode)
    check = next(c for name, c in checks.items() if name.startswith("admission_failures"))
    assert check["verdict"] == "fail", check["reason"]
    for side in (CANARY, STABLE):
        assert n(check, ROLE[side]) == planted_count(
            planted["clinical_workflow"], side, end, 'workflow="admission"'), side


def test_polls_across_an_outage_count_what_one_read_counts(outage):
    """Argo polls every minute and the step cache reads only the steps that are new (a poll's
    queries on one grid as one union): polls before, during and after the outage count what
    one cold read of each window counts, and the last poll the planted requests."""
    client, end, planted = outage
    start = end - HOUR
    cached = steps_from_cache(client)
    for poll_end in (end - 40 * 60, end - 30 * 60, end - 20 * 60, end - 14 * 60,
                     end - 10 * 60, end):
        warm = judge(client, "http", poll_end, "sequential", start=start)["error_ratio"]
        cold_client = create_app(load_settings(prometheus_url=client.prometheus_url,
                                               config_dir=None)).test_client()
        cold = judge(cold_client, "http", poll_end, "sequential", start=start)["error_ratio"]
        for side in ROLE.values():
            assert n(warm, side) == n(cold, side), (poll_end - end, side)
    assert steps_from_cache(client) > cached  # the warm app's polls read cached steps
    for side in (CANARY, STABLE):
        assert n(warm, ROLE[side]) == planted_count(planted["http_requests"], side, end), side


def steps_from_cache(client: Any) -> float:
    """Samples the step caches of this process have answered from so far."""
    text = client.get("/metrics").get_data(as_text=True)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('canary_judge_step_cache_samples_total{read_from="cache"}'))
