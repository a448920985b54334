"""Finding the rollout start with one query and fetching only what the judges read, against a
real Prometheus planted with rollouts of every shape: a fresh canary, one whose earlier run
ended more than max_gap before a new one (with the counter reset that brings), a short quiet
blip inside one run, a canary older than the lookback, one never seen, and gauge-only configs
with metrics on their own step. In each case the answer (verdict, score, reasons, judged start,
the report page's traces) equals the one computed the old way, from every query over the whole
lookback; the start query's activity equals `canary_activity` step for step; a repeated poll is
one round trip, a moved start two. The one difference by design: a cohort whose series all
ended before the stable's history is no longer judged (the last test)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from webhook.analysis import Policy, run_analysis
from webhook.configs import load_registry
from webhook.fetching import (
    START_METRIC,
    StartCache,
    activity_of,
    keep_from,
    start_query,
    traffic_parts,
)
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import BASE
from webhook.lab.synth import ExtraSeries
from webhook.models import AnalysisRequest
from webhook.plan import plan_queries
from webhook.resolve import resolve_window
from webhook.rollout import canary_activity
from webhook.settings import load_settings
from webhook.sources.base import QueryRejected, QueryResult, RangeQuery
from webhook.sources.prometheus import PROMQL, PrometheusSource, PromQL
from webhook.sources.step_cache import StepCache

MIN = 60.0
END = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # the last poll's end, aligned to the hour
STABLE = "stable"
# canary hash -> its runs of traffic, in minutes before END (traffic goes on to END + 10 min
# when a run's end is None)
HTTP_RUNS = {
    "fresh": [(20, None)],
    "regap": [(170, 150), (100, None)],  # 50 quiet minutes: a new rollout, counters reset
    "blip": [(150, 93), (90, None)],  # 3 quiet minutes (≤ max_gap 5): one rollout
    "mid": [(130, None)],
    "old": [(250, None)],  # older than the 3 h lookback
}
GAUGE_RUNS = {
    "g-fresh": [(100, None)],
    "g-gap": [(170, 160), (110, None)],
    "g-blip": [(140, 124), (120, None)],
}
GAUGES = """\
name: {name}
defaults: {{mode: sequential}}
metrics:
  - name: depth
    kind: series
    query: avg(queue_depth{{ {{{{selector}}}} }})
    {step}
    tolerance: {{relative: 0.5}}
{up}"""
UP = """\
  - name: up
    kind: threshold
    query: min(min_over_time(up_gauge{ {{selector}} }[{{step}}]))
    samples: count_over_time(up_gauge{ {{selector}} }[{{step}}])
    min: 1
    aggregate: min
"""


COHORTS = """\
name: cohorts
defaults: {mode: sequential}
metrics:
  - name: failures
    kind: ratio
    bad: sum by (facility) (increase(jobs_total{ {{selector}}, outcome="failure" }[{{step}}]))
    total: sum by (facility) (increase(jobs_total{ {{selector}} }[{{step}}]))
    tolerance: {relative: 1.0, absolute: 0.005}
    min_total: 100
    cohort_label: facility
"""
# facility -> minutes before END the stable's jobs began and ended: A only long before the
# canary's latest run
FACILITIES = {"A": (240, 170), "B": (240, None)}


def _jobs(hash_: str, facility: str, rate: float) -> list[ExtraSeries]:
    labels = {**_labels(hash_), "facility": facility}
    return [ExtraSeries("jobs_total", {**labels, "outcome": "success"}, "counter",
                        lambda ts: np.floor((ts - ts[0]) * rate * 0.99)),
            ExtraSeries("jobs_total", {**labels, "outcome": "failure"}, "counter",
                        lambda ts: np.floor((ts - ts[0]) * rate * 0.01))]


def _labels(hash_: str) -> dict[str, str]:
    return {"app": "shop", "rollouts_pod_template_hash": hash_}


def _gauges(hash_: str) -> list[ExtraSeries]:
    return [ExtraSeries("queue_depth", _labels(hash_), "gauge",
                        lambda ts: 5 + np.sin(ts / 300.0)),
            ExtraSeries("up_gauge", _labels(hash_), "gauge", lambda ts: np.ones(ts.size))]


@pytest.fixture(scope="module")
def prom() -> Iterator[str]:
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    with PrometheusLab() as lab:
        lab.plant(render_openmetrics(
            [replace(BASE, rps=40.0, labels=_labels(STABLE))], END - 5 * 3600, END + 600,
            seed=1, extra=_gauges(STABLE)))
        for seed, (hash_, runs) in enumerate([*HTTP_RUNS.items(), *GAUGE_RUNS.items()]):
            for began, ended in runs:
                start, end = END - began * MIN, END + 600 if ended is None else END - ended * MIN
                if hash_.startswith("g-"):
                    lab.plant(render_openmetrics([], start, end, extra=_gauges(hash_)))
                else:
                    lab.plant(render_openmetrics([replace(BASE, labels=_labels(hash_))],
                                                 start, end, seed=10 + seed))
        for facility, (began, ended) in FACILITIES.items():
            end = END + 600 if ended is None else END - ended * MIN
            lab.plant(render_openmetrics([], END - began * MIN, end, extra=_jobs(
                STABLE, facility, 8.0)))
            # the canary's earlier run served A, its latest (100 minutes ago on) serves B
            since = END - (200 if ended is not None else 100) * MIN
            lab.plant(render_openmetrics([], since, end, extra=_jobs("c-jobs", facility, 4.0)))
        yield lab.start()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("configs")
    for name, step, up in (("gauges", "", UP), ("gauges15", "step: 15s", ""),
                           ("gauges45", "step: 45s", UP), ("gauges15up", "step: 15s", UP)):
        (folder / f"{name}.yaml").write_text(GAUGES.format(name=name, step=step, up=up))
    (folder / "cohorts.yaml").write_text(COHORTS)
    # a threshold counting steps without samples: the judges read where the canary served
    (folder / "gaugesgaps.yaml").write_text(GAUGES.format(name="gaugesgaps", step="",
                                                          up=UP + "    max_missing: 2\n"))
    registry = load_registry(folder)
    assert not registry.errors and not registry.broken, (registry.errors, registry.broken)
    return registry


class OldLanguage(PromQL):
    """PromQL without the start query: the analysis reads every query over the lookback and
    the start off their data, as it did before the start query."""

    def activity(self, parts: Sequence[tuple[str, bool]]) -> str | None:
        return None


class Counting:
    """Counts round trips and the queries sent."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.queries = inner, 0, []

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        self.calls += 1
        self.queries += list(queries)
        return self.inner.query_range_many(queries, deadline)

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()


def _request(config: str, hash_: str, **window) -> AnalysisRequest:
    return AnalysisRequest.model_validate({
        "config": config, "mode": "sequential", "canary": _labels(hash_),
        "stable": _labels(STABLE), **({"window": window} if window else {})})


def _answer(result) -> str:
    """Everything an analysis answers and shows, bar its id and timings, traces included."""
    plain = dataclasses.asdict(replace(result, analysis_id="", query_count=0,
                                       query_seconds=0.0, seconds=0.0))
    return repr(plain)


CASES = [("http", h) for h in [*HTTP_RUNS, "never"]] + [
    (c, h) for c in ("gauges", "gauges15", "gauges45", "gauges15up")
    for h in [*GAUGE_RUNS, "never"]]


def _planted_start(config: str, hash_: str, end: float, lookback: float = 3 * 3600) -> float:
    """Where the canary's latest run began (runs ≤ 5 quiet minutes apart are one), clamped to
    the lookback; the lookback's start when nothing on the window's step measures traffic."""
    runs = {**HTTP_RUNS, **GAUGE_RUNS}.get(hash_)
    if not runs or config == "gauges15":
        return end - lookback
    began = runs[-1][0]
    for earlier, ended in reversed(runs[:-1]):
        if ended is not None and ended - began > 5:
            break
        began = earlier
    return max(END - began * MIN, end - lookback)


@pytest.mark.parametrize(("config", "hash_"), CASES)
def test_answers_equal_the_whole_lookback_ones(prom, registry, config, hash_):
    source = PrometheusSource(load_settings(prometheus_url=prom))
    policy = Policy()
    warm = StartCache()
    for minutes_ago in (60, 7, 0):  # three polls; the warm cache carries the start between
        now = END - minutes_ago * MIN + 7
        for window, warmup in (({}, 0.0), ({"warmup": "12m"}, 12 * MIN),
                               ({"lookback": "150m"}, 0.0)):
            request = _request(config, hash_, **window)
            old = run_analysis(request, registry, source, policy, now=now, traces=True,
                               language=OldLanguage())
            for starts in (StartCache(), warm):
                new = run_analysis(request, registry, source, policy, now=now, traces=True,
                                   starts=starts)
                assert _answer(new) == _answer(old)
            # the answers compared are about the planted rollout: its start was found
            planted = _planted_start(config, hash_, new.end, 150 * MIN if "lookback" in window
                                     else 3 * 3600)
            if new.end > planted + warmup:
                assert abs(new.start - (planted + warmup)) <= MIN, (new.start, planted)


@pytest.mark.parametrize("hash_", [*HTTP_RUNS, *GAUGE_RUNS, "never"])
def test_start_query_marks_the_steps_canary_activity_does(prom, registry, hash_):
    source = PrometheusSource(load_settings(prometheus_url=prom))
    config = registry.get("http" if not hash_.startswith("g-") else "gauges45")
    request = _request(config.name, hash_)
    for minutes_ago in (0, 95, 140):
        window = resolve_window(request, config, Policy(), END - minutes_ago * MIN, True)
        specs = list(config.metrics)
        selectors = {"canary": PROMQL.selector(_labels(hash_), "canary"),
                     "stable": PROMQL.selector(_labels(STABLE), "stable")}
        queries = plan_queries(specs, selectors, config.vars, window)
        points = round((window.end - window.start) / window.step)
        results = {r.query.key: r for r in source.query_range_many(queries)}
        want = canary_activity(results, points, specs, window.step)
        query = start_query(traffic_parts(queries, specs, window.step), window, PROMQL)
        (got,) = source.query_range_many([query])
        assert len(got.series) <= 1
        np.testing.assert_array_equal(activity_of(got, points), want)
        if hash_ not in ("never", "old") and minutes_ago == 0:
            assert want.any() and not want.all()


def test_a_repeated_poll_is_one_round_trip_and_a_new_rollout_two(prom, registry):
    counting = Counting(PrometheusSource(load_settings(prometheus_url=prom)))
    source, starts, policy = StepCache(counting), StartCache(), Policy()
    plain = PrometheusSource(load_settings(prometheus_url=prom))

    def poll(minutes_ago: float, began: int, **window) -> tuple[int, int]:
        """Round trips and start queries of one poll (answer checked against the old way)."""
        request = _request("http", "regap", **window)
        calls, sent = counting.calls, len(counting.queries)
        now = END - minutes_ago * MIN
        result = run_analysis(request, registry, source, policy, now=now, starts=starts)
        warmup = 58 * MIN if window else 0.0
        assert abs(result.start - (END - began * MIN + warmup)) <= MIN
        # whatever start is remembered changes nothing but the round trips
        assert _answer(result) == _answer(run_analysis(request, registry, plain, policy,
                                                       now=now, language=OldLanguage()))
        return (counting.calls - calls,
                sum(q.metric == START_METRIC for q in counting.queries[sent:]))

    assert poll(152, 170) == (2, 1)  # cold: the start query, then the window from its history
    # repeated: the window's queries alone; their canary data settle the start (the run ends
    # 150 minutes before END: from 144 on it is over, tests/test_edges_rollouts.py)
    assert [poll(m, 170) for m in (151, 150, 149)] == [(1, 0)] * 3
    assert poll(95, 100) == (2, 0)  # the canary's new run: the start moved, window fetched again
    assert poll(94, 100) == (1, 0)
    # a warmup of 58 minutes leaves too few quiet steps in the window before the start: the
    # start query rides along in the same round trip (the question differs only by its
    # warmup, so the start remembered is the same)
    assert poll(30, 100, warmup="58m") == (1, 1)
    assert poll(29, 100, warmup="58m") == (1, 1)
    # a start remembered wrong (as after late data joined two runs): the window's data cannot
    # settle it, the start query does, and the window is fetched again
    (query,) = [q for q in counting.queries if q.metric == START_METRIC][-1:]
    starts.put(query, END - 40 * MIN)
    assert poll(28, 100) == (3, 1)
    assert poll(27, 100) == (1, 0)


@pytest.mark.parametrize("hash_", ["g-gap", "g-blip", "never"])
def test_the_canarys_activity_is_scanned_once_per_analysis(prom, registry, hash_, monkeypatch):
    """Where the canary served is read off the data for the start and again for a check that
    counts steps without samples (`max_missing`): the same scan of the same results, twice
    per analysis. Now the start's is passed on; the answers are the old way's."""
    from webhook import analysis, fetching, rollout

    scans = []
    real = rollout.canary_activity

    def counted(*args, **kwargs):
        scans.append(1)
        return real(*args, **kwargs)

    for module in (analysis, fetching, rollout):
        monkeypatch.setattr(module, "canary_activity", counted)
    source = PrometheusSource(load_settings(prometheus_url=prom))
    policy, warm = Policy(), StartCache()
    for minutes_ago in (60, 7, 0):
        now = END - minutes_ago * MIN + 7
        for window in ({}, {"lookback": "150m"}, {"start": END - 200 * MIN}):
            request = _request("gaugesgaps", hash_, **window)
            scans.clear()
            old = run_analysis(request, registry, source, policy, now=now,
                               language=OldLanguage())
            assert len(scans) == 1
            for starts in (StartCache(), warm):
                scans.clear()
                new = run_analysis(request, registry, source, policy, now=now, starts=starts)
                assert len(scans) <= 1 and _answer(new) == _answer(old)
            assert any(c.name == "up" for c in old.checks)


def test_poll_one_reads_what_the_rollouts_age_needs(prom, registry):
    """A 100-minute-old rollout: the window's queries cover 100 + 60 minutes, not 180."""
    counting = Counting(PrometheusSource(load_settings(prometheus_url=prom)))
    run_analysis(_request("http", "regap"), registry, counting, Policy(), now=END,
                 starts=StartCache())
    spans = {q.metric: (q.end - q.start) / MIN + 1 for q in counting.queries}
    assert spans[START_METRIC] == 180
    assert {spans[m] for m in ("error_ratio", "latency")} == {160}


def test_keep_from_keeps_every_grids_history():
    assert keep_from(59, 60.0, [60.0]) == 0
    assert keep_from(100, 60.0, [60.0]) == 40
    assert keep_from(100, 60.0, [15.0, 60.0]) == 40  # 4 own steps per step
    # 45 s: a cut of whole window steps keeps the 45 s grid only every 3 steps, and its
    # history (60 steps of 45 s) must stay inside
    keep = keep_from(100, 60.0, [45.0])
    assert keep % 3 == 0 and keep * 60 / 45 <= int(100 * 60 / 45) - 60
    assert keep_from(100, 60.0, [7.0]) == 0 or (keep_from(100, 60.0, [7.0]) * 60) % 7 == 0


@pytest.mark.parametrize("value", ["0", "1", "-1", "NaN", "+Inf", "-Inf"])
@pytest.mark.parametrize("counts", [True, False])
def test_start_query_counts_a_value_as_canary_activity_does(prom, value, counts):
    """NaN and ±Inf are no traffic, 0 is a counter's quiet step but a gauge's presence."""
    source = PrometheusSource(load_settings(prometheus_url=prom))
    expr = PROMQL.activity([(f"vector({value})", counts)])
    (got,) = source.query_range_many([RangeQuery("q", expr, END - 120, END, MIN)])
    x = float(value)
    want = bool(np.isfinite(x) and (x > 0 or not counts))
    assert bool(got.series) == want


class RejectsStart(PrometheusSource):
    """A source that cannot run the start query (a backend speaking a PromQL subset)."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.start_queries = 0

    def query_range_many(self, queries, deadline=None):
        if any(q.metric == START_METRIC for q in queries):
            self.start_queries += 1
            raise QueryRejected("unsupported", START_METRIC)
        return super().query_range_many(queries, deadline)


def test_a_source_that_rejects_the_start_query_gets_the_whole_lookback(prom, registry):
    settings = load_settings(prometheus_url=prom)
    request = _request("http", "mid")
    old = run_analysis(request, registry, PrometheusSource(settings), Policy(), now=END,
                       language=OldLanguage())
    source, starts = RejectsStart(settings), StartCache()
    for _ in range(3):  # the rejection is remembered: asked once, not at every poll
        new = run_analysis(request, registry, source, Policy(), now=END, starts=starts)
        assert _answer(new) == _answer(old) and new.verdict != "inconclusive"
    assert source.start_queries == 1


def test_a_cohort_gone_before_the_history_is_no_longer_judged(prom, registry):
    """Facility A ran on both sides until 170 minutes ago, the canary's run (facility B) began
    100 minutes ago: the whole lookback judged A as an empty cohort, the cut window does not
    see it; B is judged the same either way."""
    source = PrometheusSource(load_settings(prometheus_url=prom))
    request = _request("cohorts", "c-jobs")
    old = run_analysis(request, registry, source, Policy(), now=END, language=OldLanguage())
    new = run_analysis(request, registry, source, Policy(), now=END, starts=StartCache())
    assert {c.cohort for c in old.checks} == {"A", "B"}
    assert {c.cohort for c in new.checks} == {"B"}
    assert next(c for c in old.checks if c.cohort == "A").verdict == "inconclusive"
    assert [c for c in old.checks if c.cohort == "B"] == new.checks
    assert new.start == old.start


def test_a_query_several_metrics_read_is_sent_once(lab, monkeypatch):
    """Trading's fill and unfilled rates, its compliance check and its traffic check all
    count orders, with the same query: 25 queries, 19 distinct. Each is sent once and every
    metric is judged on its own copy of the answer: the same answer as each sent on its own,
    and the audit counts the requests that went out."""
    from webhook import fetching
    from webhook.lab.rollouts import TRADING_STABLE, trading_hash

    request = AnalysisRequest.model_validate({
        "config": "trading", "mode": "fixed",
        "canary": {"rollouts_pod_template_hash": trading_hash("fills")},
        "stable": {"rollouts_pod_template_hash": TRADING_STABLE},
        "window": lab.window(60), "vars": {"risk_tolerance": "low"}})
    settings = load_settings(prometheus_url=lab.url, prometheus_combine_queries=False)
    answers, sent = [], []
    for each_alone in (False, True):
        if each_alone:
            monkeypatch.setattr(fetching, "_ask", lambda source, queries, deadline:
                                source.query_range_many(queries, deadline=deadline))
        source = Counting(PrometheusSource(settings))
        result = run_analysis(request, load_registry(None), source, Policy())
        answers.append(_answer(result))
        sent.append([(q.expr, q.start, q.end, q.step) for q in source.queries])
        assert result.query_count == len(source.queries)  # one request per query sent
    assert len(sent[0]) == len(set(sent[0])) == 19 and len(sent[1]) == 25
    assert set(sent[0]) == set(sent[1])
    assert answers[0] == answers[1]
