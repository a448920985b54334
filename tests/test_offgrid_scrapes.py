"""The http config on targets scraped at their own phase, as real ones are, in a real
Prometheus. Each step counts the change of every series' last sample since the step before's
(`webhook.lab.scrapes.exact`): the steps telescope to the true total, whatever the scrape phase
or the step, and nothing is extrapolated. Counted with `increase(…[{{step}}])` instead, a step
sees only the intervals inside it and Prometheus scales them up (a quarter of the increments at
15 s scrapes and 60 s steps seen by no step, the rest ×4/3), which cost a latency regression
just beyond tolerance a quarter of its detection (`python -m bench.detection`, its `*_scrape15`
scenarios, README "Detection benchmark").

Also pinned here, on hand-written series: a new pod's requests before its first scrape and a
labelled child created at its first error are counted (increase() never counts a series' first
value), a restart counts from 0, and a series back after a scrape gap counts the gap's requests
once, unless the gap is longer than the hour-long lookback: then it counts its whole value
again (the documented limit of that lookback)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from counters import count_between, counters_text

from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.lab.scrapes import LOOKBACK
from webhook.settings import load_settings

PAIRS = 6
# hand-written pods away from their scrapes: (seconds before the end it went, seconds away)
GAPS = {"gap4m": (1200, 240), "gap6m": (1200, 360), "gap40m": (3000, 2400),
        "gap70m": (6000, 4200)}
HOUR = 3600
REQ = "http_requests_total"


def side(hash_: str, offset: float, rps: float, error_ratio: float = 0.01) -> TrafficSide:
    return TrafficSide({"app": "offgrid", "rollouts_pod_template_hash": hash_}, rps=rps,
                       error_ratio=error_ratio, scrape_offset=offset)


def hand_written(end: float) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """Counters no client library's steady state gives, every 15 s off the minute grid: the
    OpenMetrics text and, per series, its (time, value) samples.

    - newpod: a pod started 30 minutes before `end` that served 150 requests before its first
      scrape; its 5xx child is created at its first error (at 1), a second follows;
    - restart: a pod restarted 25 minutes before `end`, 45 requests served before the first
      scrape after it;
    - gap4m / gap6m: a pod not scraped for 4 minutes and for 6 minutes (longer than
      Prometheus' 5-minute staleness horizon) from 20 minutes before `end`; gap40m: for 40
      minutes from 50 minutes before `end`; gap70m: for 70 minutes (longer than the
      configs' hour-long lookback) from 100 minutes before `end`.
    """
    series: dict[str, list[tuple[float, float]]] = {}

    def add(hash_: str, code: str, points: list[tuple[float, float]]) -> None:
        labels = f'app="offgrid",rollouts_pod_template_hash="{hash_}",code="{code}"'
        series[f"{REQ}{{{labels}}}"] = points

    def every(first: float, last: float) -> np.ndarray:
        return first + 15.0 * np.arange(math.floor((last - first) / 15 + 1e-9) + 1)

    born = end - 1800 + 7.2
    add("newpod", "200", [(t, 150.0 * (k + 1)) for k, t in enumerate(every(born, end))])
    add("newpod", "500", [(t, 1.0 if t < born + 1200 else 2.0)
                          for t in every(born + 600, end)])
    old, restarted = end - 2 * HOUR + 4.1, end - 1500 + 4.1
    add("restart", "200", [(t, 150.0 * k) for k, t in enumerate(every(old, restarted - 15))]
        + [(t, 45.0 + 150.0 * k) for k, t in enumerate(every(restarted, end))])
    for hash_, (away, hole) in GAPS.items():
        away = end - away + 11.6
        add(hash_, "200", [(t, 150.0 * k) for k, t in enumerate(every(old, end))
                           if not away < t < away + hole + 1])
    return counters_text({"http_requests": series}), series


@pytest.fixture(scope="module")
def offgrid() -> Iterator[tuple[Any, float, dict[str, list[tuple[float, float]]]]]:
    """A/A pairs and one canary with doubled errors, every target at its own scrape phase
    (0.3 s jitter), two hours of data: the stable's history, then the canary's hour; and the
    hand-written pods (`hand_written`)."""
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
    text = render_openmetrics(sides, start, end, scrape_interval=15, seed=17, jitter=0.3)
    extra, series = hand_written(end)
    with PrometheusLab() as prom:
        prom.plant(text)
        prom.plant(extra)
        url = prom.start()
        app = create_app(load_settings(prometheus_url=url, config_dir=None))
        planted = {name: [(float(t), float(v)) for t, v in
                          (line.rsplit(" ", 2)[::-1][:2] for line in lines)]
                   for name, lines in _lines_by_series(text).items()}
        yield app.test_client(), end, {**planted, **series}


def _lines_by_series(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(REQ + "{"):
            name, rest = line.split(" ", 1)
            out.setdefault(name, []).append(rest)
    return out


def planted(series: dict[str, list[tuple[float, float]]], hash_: str, since: float,
            until: float, code: str | None = None) -> float:
    """The requests (of `code`, or all) `hash_`'s pods served in (since, until]."""
    return sum(count_between(points, since, until) for name, points in series.items()
               if f'rollouts_pod_template_hash="{hash_}"' in name
               and (code is None or f'code="{code}"' in name))


def verdict(client: Any, end: float, canary: str, stable: str, step: float = 60,
            length: float = HOUR, mode: str = "sequential") -> dict[str, Any]:
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": {"rollouts_pod_template_hash": canary},
        "stable": {"rollouts_pod_template_hash": stable}, "mode": mode,
        "window": {"start": end - length, "end": end, "step": step}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def counted(answer: dict[str, Any]) -> tuple[float, float]:
    """(requests, errors) the canary's error_ratio check counted."""
    check = next(c for c in answer["checks"] if c["name"] == "error_ratio")
    n = float(check["canary"]["n"])
    return n, round(n * float(check["canary"]["value"] or 0.0), 6)


def test_healthy_canaries_scraped_off_grid_do_not_fail(offgrid):
    client, end, _ = offgrid
    answers = [verdict(client, end, f"canary{k}", f"stable{k}") for k in range(PAIRS)]
    assert not [a["reason"] for a in answers if a["verdict"] == "fail"]
    # an hour at 10 req/s is enough to vouch for most of them
    assert sum(a["verdict"] == "pass" for a in answers) >= PAIRS // 2, [
        a["reason"] for a in answers]


def test_doubled_errors_scraped_off_grid_fail(offgrid):
    client, end, _ = offgrid
    answer = verdict(client, end, "errorsx2", "stablex")
    checks = {c["name"]: c for c in answer["checks"]}
    assert answer["verdict"] == "fail", answer["reason"]
    assert checks["error_ratio"]["verdict"] == "fail"


@pytest.mark.parametrize("step", [60, 20, 5])
def test_an_off_grid_window_counts_exactly_the_planted_requests_at_any_step(offgrid, step):
    """The window's counts are the requests and errors served in it, whole, at a 60 s step
    and at steps shorter than (5 s) or not a multiple of (20 s) the 15 s scrape interval:
    increase() extrapolated each 60 s step's three intervals to four (not whole requests),
    and at 5 s, where no step holds two scrapes, counted nothing at all."""
    client, end, series = offgrid
    for canary, stable in (("canary0", "stable0"), ("errorsx2", "stablex")):
        answer = verdict(client, end, canary, stable, step=step, length=600)
        assert counted(answer) == (planted(series, canary, end - 600, end),
                                   planted(series, canary, end - 600, end, code="500"))
    assert counted(answer)[1] > 0


def test_a_new_pods_first_requests_and_its_first_error_are_counted(offgrid):
    """A pod serves before its first scrape, and a client library creates the 5xx child at
    the first error, already at 1: increase() counts neither (a series' first sample has no
    earlier one to count from), a bias toward pass that hits only the canary, whose pods and
    children are the new ones."""
    client, end, series = offgrid
    n, errors = counted(verdict(client, end, "newpod", "stable0"))
    assert errors == 2
    # all it served, its first 150 requests and both errors included
    assert n == planted(series, "newpod", end - HOUR, end) == 150 * 120 + 2


def test_a_restart_counts_from_zero(offgrid):
    client, end, series = offgrid
    n, _ = counted(verdict(client, end, "restart", "stable0", mode="fixed"))
    assert n == planted(series, "restart", end - HOUR, end)
    # 140 scrapes' requests before the restart, 45 before its first scrape, 99 scrapes after
    assert n == 150 * 140 + 45 + 150 * 99


def test_a_scrape_gap_is_counted_once_unless_longer_than_the_lookback(offgrid):
    """A series not scraped for 4, 6 or 40 minutes (unreachable, or Prometheus down) counts
    the gap's requests once, in the step after it: the step before's last sample is looked
    for up to an hour back. With the 5-minute lookback the configs had before, the 6- and
    40-minute gaps counted the pod's whole value, its requests of the hours before as if they
    were the window's. One away longer than the hour has no sample to count from and counts
    its whole value, as a new series does (the documented limit of the lookback)."""
    client, end, series = offgrid
    for hash_ in ("gap4m", "gap6m", "gap40m"):
        n, _ = counted(verdict(client, end, hash_, "stable0", mode="fixed"))
        assert n == planted(series, hash_, end - HOUR, end), hash_
    n, _ = counted(verdict(client, end, "gap70m", "stable0", mode="fixed"))
    before = max(v for t, v in series[next(s for s in series if '"gap70m"' in s)]
                 if t < end - GAPS["gap70m"][0] + 12)
    assert n == planted(series, "gap70m", end - HOUR, end) + before


@pytest.mark.parametrize("name", ["http", "trading", "healthcare"])
def test_every_built_in_count_is_exact(name):
    """Every count a built-in config judges (ratio numerators and totals, histogram buckets,
    events and their traffic), in every provider's variant, is the exact per-step count pinned
    above: none extrapolates with increase()."""
    from webhook.configs import load_registry

    config = load_registry(None).get(name)
    assert config is not None
    variants = [config, *(config.for_provider(p) for p in config.providers)]
    counts = [(spec.name, role, query) for variant in variants for spec in variant.metrics
              if spec.kind in ("ratio", "histogram", "events", "share")
              for role, query in spec.queries().items() if role != "samples"
              # http's restarts count targets whose counter went back, not increments
              and (spec.name, role) != ("restarts", "events")]
    assert counts
    for metric, role, query in counts:
        assert "increase(" not in query, (metric, role)
        assert "[1h] offset {{step}}" in query and ">= 0) or last_over_time(" in query, (
            metric, role)
        assert "[5m] offset" not in query, (metric, role)  # a longer gap counted twice
    assert LOOKBACK == 3600  # the lab's model of these counts looks as far back
