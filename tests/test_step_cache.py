"""The step cache against a real Prometheus: answers equal the uncached ones poll after poll
(also on a replica whose cache starts cold, and across a counter reset), samples that arrive
late are picked up (also by another worker of the pod, through its shared store), a repeated
poll reads only its last steps (also when sequential and fixed polls of one question take
turns), and memory stays bounded."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from webhook.analysis import Policy, run_analysis
from webhook.api.answer import answer_body
from webhook.configs import load_registry
from webhook.fetching import StartCache
from webhook.lab import PrometheusLab
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.models import AnalysisRequest
from webhook.settings import load_settings
from webhook.sources.base import QueryResult, RangeQuery
from webhook.sources.prometheus import PrometheusSource
from webhook.sources.shared_steps import SharedSteps
from webhook.sources.step_cache import StepCache

STEP = 60.0
SCRAPE = 15


def _same(a: list[QueryResult], b: list[QueryResult]) -> None:
    """Same series (labels, order), same values bit for bit, same presence."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert [dict(s.labels) for s in x.series] == [dict(s.labels) for s in y.series]
        for s, t in zip(x.series, y.series, strict=True):
            np.testing.assert_array_equal(s.values, t.values)
            np.testing.assert_array_equal(s.present, t.present)


def _verdict(result) -> dict:
    body = answer_body(result)
    body.pop("analysis_id")
    return body


def test_analyses_equal_uncached_across_polls_and_replicas(lab):
    """Argo's poll, sequential with no start (3 h of history), every minute for 40 minutes:
    the cached replica, a replica whose cache starts cold at poll 15 and an uncached one agree
    on every verdict, and from the second poll on the cache reads only the last steps."""
    plain = PrometheusSource(load_settings(prometheus_url=lab.url))
    replica_a, replica_b = StepCache(plain), StepCache(plain)
    starts_a, starts_b = StartCache(), StartCache()  # each replica's remembered start
    registry, policy = load_registry(None), Policy()
    request = AnalysisRequest.model_validate({
        "config": "http", "mode": "sequential",
        "canary": {"rollouts_pod_template_hash": argo_hash("slow")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}})
    verdicts = set()
    for poll in range(40):
        now = lab.anchor - 3000 + poll * STEP + 7
        want = _verdict(run_analysis(request, registry, plain, policy, now=now,
                                     starts=StartCache()))
        before = replica_a.stats.steps_read
        assert _verdict(run_analysis(request, registry, replica_a, policy, now=now,
                                     starts=starts_a)) == want
        if poll >= 15:
            assert _verdict(run_analysis(request, registry, replica_b, policy, now=now,
                                         starts=starts_b)) == want
        if poll:  # the window's 10 queries × (1 new step + 3 re-read), not 10 × 181
            assert replica_a.stats.steps_read - before == 10 * 4
        verdicts.add(want["verdict"])
    assert "fail" in verdicts  # the slow canary is caught: the answers compared are not trivial


def _counter_text(anchor: float, cutoff: float | None = None) -> str:
    """Pods' request counters at 15 s: one resetting to zero mid-way (a restart), one that
    starts late (it enters the window between polls) and one that stopped before the window
    (it leaves it); with a `cutoff`, samples after it have not arrived yet."""
    lines = ["# TYPE app_requests counter"]
    start = anchor - 3600
    times = np.arange(start, anchor + 600 + 1, SCRAPE)
    lives = {"a": (start, math.inf), "b": (start, math.inf), "c": (anchor - 30, math.inf),
             "0": (start, anchor - 3300)}
    for pod, rate in (("a", 5.0), ("b", 9.0), ("c", 2.0), ("0", 1.0)):
        values = np.cumsum(np.full(times.size, rate * SCRAPE))
        if pod == "b":
            reset = times.size // 2
            values[reset:] -= values[reset - 1] + rate * SCRAPE / 3
        born, gone = lives[pod]
        for t, v in zip(times, values, strict=True):
            if (cutoff is None or t <= cutoff) and born <= t <= gone:
                lines.append(f'app_requests_total{{pod="{pod}"}} {v:.1f} {int(t)}')
    lines.append("# EOF\n")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def labs() -> Iterator[tuple[str, str, float]]:
    """The same counters served twice: complete, and as seen before the last 4 minutes of
    samples (ending 2 minutes before the anchor) had arrived."""
    anchor = math.floor(time.time() / 60) * 60 - 1800
    with PrometheusLab() as full, PrometheusLab() as early:
        full.plant(_counter_text(anchor))
        early.plant(_counter_text(anchor, cutoff=anchor - 360))
        yield full.start(), early.start(), anchor


class Switch:
    """A source that answers from whichever Prometheus is current (data arriving later)."""

    def __init__(self, source: PrometheusSource) -> None:
        self.current = source

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        return self.current.query_range_many(queries, deadline)

    def ready(self) -> tuple[bool, str]:
        return self.current.ready()


def _queries(start: float, end: float) -> list[RangeQuery]:
    exprs = ["sum by (pod) (increase(app_requests_total[1m]))",
             "sum(rate(app_requests_total[1m]))", "app_requests_total"]
    return [RangeQuery(f"q{i}", e, start, end, STEP) for i, e in enumerate(exprs)]


def test_counter_reset_and_late_samples(labs):
    full_url, early_url, anchor = labs
    full = PrometheusSource(load_settings(prometheus_url=full_url))
    early = PrometheusSource(load_settings(prometheus_url=early_url))
    clock = [anchor - 120.0]
    upstream = Switch(early)
    cache = StepCache(upstream, clock=lambda: clock[0])
    start = anchor - 3000
    # first poll: the last minutes' samples are still on their way
    first = cache.query_range_many(_queries(start, anchor - 120))
    _same(first, early.query_range_many(_queries(start, anchor - 120)))
    # they arrive; the next poll, a minute later, sees them and the counter reset as an
    # uncached read does
    upstream.current = full
    for minute in range(1, 6):
        clock[0] = anchor - 120 + minute * STEP
        qs = _queries(start + minute * STEP, anchor - 120 + minute * STEP)
        _same(cache.query_range_many(qs), full.query_range_many(qs))
    answer = cache.query_range_many(qs)
    by_pod = {s.labels["pod"]: s.values for s in answer[0].series}
    assert np.isfinite(by_pod["b"]).all() and by_pod["b"].min() > 0  # reset: no negative step
    assert "c" in by_pod and "0" not in by_pod  # entered and left between polls
    # what a judge does to an answer's arrays never reaches the cache
    for result in answer:
        for series in result.series:
            series.values[:] = -1.0
    _same(cache.query_range_many(qs), full.query_range_many(qs))


def test_settled_steps_are_not_read_again_and_memory_is_bounded(labs):
    full_url, _, anchor = labs
    full = PrometheusSource(load_settings(prometheus_url=full_url))
    cache = StepCache(full, max_points=3000, clock=lambda: anchor + 3600)
    for i in range(30):  # 30 windows at distinct phases: more than the bound holds
        qs = _queries(anchor - 3000 + i, anchor - 60 + i)
        _same(cache.query_range_many(qs), full.query_range_many(qs))
        assert cache.points <= 3000
    qs = _queries(anchor - 3000 + 29, anchor - 60 + 29)
    read = cache.stats.steps_read
    _same(cache.query_range_many(qs), full.query_range_many(qs))
    assert cache.stats.steps_read - read == 3 * 3  # only the margin, per query


def test_a_workers_unsettled_steps_are_read_again_by_another_worker(labs, tmp_path):
    """Late samples and the pod's store: what one worker read before the last minutes'
    samples arrived is taken by another only up to its settled steps; the rest is re-read."""
    full_url, early_url, anchor = labs
    full = PrometheusSource(load_settings(prometheus_url=full_url))
    early = PrometheusSource(load_settings(prometheus_url=early_url))
    clock = [anchor - 120.0]
    upstream = Switch(early)
    first = StepCache(upstream, clock=lambda: clock[0],
                      shared=SharedSteps(str(tmp_path), 2**24))
    start = anchor - 3000
    _same(first.query_range_many(_queries(start, anchor - 120)),
          early.query_range_many(_queries(start, anchor - 120)))
    assert first.stats.shared_writes == 3
    upstream.current = full  # the samples arrive
    for minute in range(1, 4):  # each poll on a worker whose own cache is cold
        clock[0] = anchor - 120 + minute * STEP
        other = StepCache(upstream, clock=lambda: clock[0],
                          shared=SharedSteps(str(tmp_path), 2**24))
        qs = _queries(start + minute * STEP, anchor - 120 + minute * STEP)
        _same(other.query_range_many(qs), full.query_range_many(qs))
        assert other.stats.shared_hits == 3
        # the steps the first worker read within `settle` of their time are read again
        assert other.stats.steps_read >= 3 * (300 // STEP)


def test_sequential_and_fixed_polls_of_one_question_keep_each_others_steps(labs):
    """Argo's sequential poll and a fixed one share a key but not a start: storing the
    later-starting answer used to drop the earlier steps, so every other poll re-read its
    whole window. Now both read only their last steps, and a window sliding alone keeps one
    step more than it asks, not a step more per poll."""
    full_url, _, anchor = labs
    full = PrometheusSource(load_settings(prometheus_url=full_url))
    cache = StepCache(full, clock=lambda: anchor + 3600)
    end = anchor - 1200
    for poll in range(6):
        for start in (end - 3000, end - 600):  # sequential (50 min), fixed (10 min)
            qs = _queries(start + poll * STEP, end + poll * STEP)
            read = cache.stats.steps_read
            _same(cache.query_range_many(qs), full.query_range_many(qs))
            if poll:  # 1 new step and the 3 of the margin, or the margin alone
                assert cache.stats.steps_read - read <= 3 * 4, (poll, start)
    sliding = StepCache(full, clock=lambda: anchor + 3600)
    for poll in range(30):
        qs = _queries(end - 3000 + poll * STEP, end + poll * STEP)
        _same(sliding.query_range_many(qs), full.query_range_many(qs))
        assert {e.size for e in sliding._entries.values()} <= {51, 52}
