"""What the judges derive from the stable's steps before the rollout is worked out once per
rollout and process (`webhook.judge.memo`), and changes no answer.

Every poll of a rollout hands the judges the same history (the start is fixed, the steps are
settled), so a repeated poll takes the history's values from the memo; a history that differs
in one step is computed afresh; only immutable values are shared; the memo stays within its
bound; threads share it safely. Each memoised value is held against the plain
computation (the function's `__wrapped__`, or the judges with an emptied memo).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from bench.detection.methods import http_specs, rollout_data
from bench.detection.simulate import Scenario, simulate
from webhook.app import create_app
from webhook.judge.histogram import Histogram, tail_dispersion_prior
from webhook.judge.memo import ENTRY_OVERHEAD, HISTORY, ContentMemo, _key
from webhook.judge.ratio import history_prior
from webhook.judge.tailshare import auto_bound, choose_bound
from webhook.kinds import KindContext, judge_spec
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import BASE
from webhook.settings import load_settings

NAMES = ("webhook.judge.ratio._history_prior", "webhook.judge.histogram._history_tail_prior",
         "webhook.judge.tailshare._history_bound")


@pytest.fixture(autouse=True)
def empty_memo():
    HISTORY.clear()
    yield
    HISTORY.clear()


def _stats() -> dict[str, tuple[int, int]]:
    return {name.rsplit(".", 1)[1]: (HISTORY.stats(name).hits, HISTORY.stats(name).misses)
            for name in NAMES}


def _exact(x):
    """Every field of a check, trace included, floats by their bits."""
    if isinstance(x, float):
        return x.hex()
    if dataclasses.is_dataclass(x):
        return {f.name: _exact(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, list | tuple):
        return [_exact(v) for v in x]
    return x


# -- a served rollout, polled like Argo ------------------------------------------------------

ANCHOR = math.floor(time.time() / 60) * 60
BEGAN = ANCHOR - 20 * 60  # the canary's first traffic: the stable served three hours before
STABLE, CANARY = "m0stable", "m1canary"


def _labels(hash_: str) -> dict[str, str]:
    return {"app": "memo", "namespace": "shop", "rollouts_pod_template_hash": hash_}


@pytest.fixture(scope="module")
def served() -> Iterator:
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics([replace(BASE, rps=40.0, labels=_labels(STABLE))],
                                      ANCHOR - 3 * 3600, ANCHOR + 600, seed=3))
        prom.plant(render_openmetrics([replace(BASE, labels=_labels(CANARY))], BEGAN,
                                      ANCHOR + 600, seed=4))
        url = prom.start()
        yield create_app(load_settings(prometheus_url=url)).test_client()


def _poll(client, minutes: int) -> dict:
    """An Argo-like poll of the `http` config: no start (the judge finds the canary's first
    traffic and reads the stable's steps before it), the poll's time as the end."""
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": {"rollouts_pod_template_hash": CANARY},
        "stable": {"rollouts_pod_template_hash": STABLE},
        "window": {"end": BEGAN + 60 * minutes, "step": 60}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return {k: v for k, v in r.json.items() if k != "analysis_id"}


def test_a_repeated_poll_reuses_the_history_values_and_answers_the_same(served):
    _poll(served, 5)
    first = _stats()
    assert all(misses > 0 for _, misses in first.values()), first  # each was computed
    second = _poll(served, 6)  # one step later: the same history
    after = _stats()
    for name, (hits, misses) in after.items():
        assert misses == first[name][1], (name, first, after)  # nothing computed again
        assert hits > first[name][0], (name, first, after)
    HISTORY.clear()
    assert _poll(served, 6) == second  # the same answer computed afresh


# -- every poll of simulated rollouts, as bench/detection judges them -------------------------

class _Numerator:
    """The simulation's bad events are the ratios' numerator."""

    def __init__(self, data) -> None:
        self.data = data

    def series(self, side: str, role: str):
        return self.data.series(side, "bad" if role == "numerator" else role)


def _judged(rollout, polls: int, history_change=None) -> list:
    data, first = rollout_data(rollout, polls, history=True)
    if history_change is not None:
        data = history_change(data, first)
    ctx = KindContext(alpha=0.05, mode="sequential", step=60.0, points=first + polls,
                      first=first, traces=True)
    return [_exact(c) for spec in http_specs() for c in judge_spec(spec, _Numerator(data), ctx)]


ROLLOUTS = [simulate(Scenario("memo_aa", "A/A", 20.0, 1, concentration=100.0), 0),
            simulate(Scenario("memo_slow", "slow", 200.0, 1, target="latency",
                              latency_scale=1.25), 0)]


@pytest.mark.parametrize("rollout", ROLLOUTS, ids=["aa_20rps", "p99_+25pct_200rps"])
def test_every_poll_judges_as_without_the_memo(rollout):
    remembered = [_judged(rollout, k) for k in range(1, 21)]
    assert all(hits >= 19 for hits, _ in _stats().values()), _stats()
    fresh = []
    for k in range(1, 21):
        HISTORY.clear()
        fresh.append(_judged(rollout, k))
    assert remembered == fresh


def _one_step_changed(data, first: int):
    """The same data with the stable's history changed in one step: 40 more errors and 40
    more slow requests ten steps before the start."""
    from webhook.kinds import ArrayData
    from webhook.sources.base import Series

    at = first - 10
    by_role = {}
    for (side, role) in (("canary", "bad"), ("canary", "total"), ("stable", "bad"),
                         ("stable", "total"), ("canary", "buckets"), ("stable", "buckets")):
        out = []
        for s in data.series(side, role):
            values = s.values.copy()
            if side == "stable" and role in ("bad", "total"):
                values[at] += 40
            elif side == "stable" and role == "buckets" and float(s.labels["le"]) >= 0.5:
                values[at] += 40  # cumulative buckets: 40 more requests above 0.25 s
            out.append(Series(s.labels, values))
        by_role[side, role] = tuple(out)
    return ArrayData(by_role)


def test_a_history_changed_in_one_step_is_judged_afresh():
    rollout = ROLLOUTS[1]
    before = _judged(rollout, 20)
    misses = _stats()
    changed = _judged(rollout, 20, _one_step_changed)
    assert all(_stats()[name][1] > m for name, (_, m) in misses.items()), (misses, _stats())
    HISTORY.clear()
    assert changed == _judged(rollout, 20, _one_step_changed)
    # the history's values did change the answer: the latency checks' evidence
    assert [c["name"] for c, d in zip(before, changed, strict=True) if c != d] == [
        "latency_p95", "latency_p99", "latency_tail"]


def _history(seed: int, steps: int = 60, buckets: int = 12):
    rng = np.random.default_rng(seed)
    # a thin tail: the p99 lies in a finite bucket
    per_bucket = rng.poisson(400.0 * 0.55 ** np.arange(buckets), size=(steps, buckets))
    per_bucket = per_bucket.astype(float)
    rows = per_bucket.cumsum(axis=1)
    bounds = [*(0.005 * 2 ** j for j in range(buckets - 1)), math.inf]
    return [(le, rows[:, j].copy()) for j, le in enumerate(bounds)]


def test_each_remembered_value_follows_its_history_step_by_step():
    """Changed in one step, as a new array or in place in the caller's own array: the fresh
    value, never the one remembered for the old content."""
    buckets = _history(1)
    events, totals = buckets[6][1] - buckets[5][1], buckets[-1][1].copy()

    def values():
        h = Histogram.from_steps(buckets)
        got = (history_prior(events, totals, True), history_prior(events, totals, False),
               tail_dispersion_prior(h, h, 0.99), auto_bound(h, h, 0.01, 100)[0])
        want = (_plain_prior(events, totals, True), _plain_prior(events, totals, False),
                _plain_tail_prior(h, 0.99), choose_bound(h, 0.01))
        assert got == want
        return got

    first = values()
    events[30] += 40  # in place: the same array objects, new content
    for _, v in buckets[10:]:  # 40 more requests in the last finite bucket, beyond the p99
        v[30] += 40
    second = values()
    assert second[0] != first[0] and second[2] != first[2]
    buckets = [(le, v.copy()) for le, v in buckets]  # new arrays, the old content again
    events[30] -= 40
    for _, v in buckets[10:]:
        v[30] -= 40
    assert values() == first


def _plain_prior(events, totals, increase):
    from webhook.judge import sequential as seq
    from webhook.judge.ratio import _clean_steps

    n, k = _clean_steps(events, totals)
    return seq.history_dispersion(k if increase else n - k, n)


def _plain_tail_prior(h, q):
    """`tail_dispersion_prior` computed without the memo."""
    from webhook.judge.histogram import _history_tail_prior

    return _history_tail_prior.__wrapped__(h.bounds, h.cumulative, h.steps, q)


# -- only what cannot change is shared ---------------------------------------------------------

def test_an_array_is_never_shared_between_callers():
    """A judge writing into an array another poll was handed would change that poll's
    answer: a memoised function that returns one fails, in a test, not in production."""
    memo = ContentMemo(max_bytes=1 << 20, max_entry_bytes=1 << 16)

    @memo.memoise
    def leak(x: np.ndarray) -> tuple[float, np.ndarray]:
        return 1.0, x

    with pytest.raises(TypeError, match="cannot share a ndarray"):
        leak(np.zeros(1))
    assert len(memo) == 0


# -- keys --------------------------------------------------------------------------------------

def test_keys_tell_apart_what_a_function_could_tell_apart():
    a = np.arange(6.0).reshape(2, 3)
    distinct = [(0.0,), (-0.0,), (math.nan,), (1,), (True,), (1.0,), (np.float32(1.0),),
                (a,), (a.reshape(3, 2),), (np.asfortranarray(a),), (a.astype(np.float32),),
                (a.view(np.int64),), ((a, 1.0),), (a, 1.0), (None,), ("1",)]
    keys = [_key(args)[0] for args in distinct]
    assert len(set(keys)) == len(keys)
    assert _key((a.copy(),))[0] == _key((a,))[0]  # content, not identity
    for bad in ([1.0], {"a": 1}, np.array([object()])):
        with pytest.raises(TypeError):
            _key((bad,))


# -- the bound ---------------------------------------------------------------------------------

def test_the_memo_stays_within_its_bound_after_many_distinct_histories():
    memo = ContentMemo(max_bytes=64 << 10, max_entry_bytes=8 << 10)

    @memo.memoise
    def doubled(x: np.ndarray) -> float:
        return float(2 * x.sum())

    entry = 60 * 8 + ENTRY_OVERHEAD  # the key's bytes + the counted overhead
    kept = []
    for i in range(1000):
        x = np.full(60, float(i))
        assert doubled(x) == 120.0 * i
        assert memo.bytes <= memo.max_bytes
        kept.append(len(memo))
        if i % 7 == 0:  # the most recently used survive eviction
            assert doubled(np.full(60, 0.0)) == 0.0
    assert max(kept) == memo.max_bytes // entry
    stats = doubled.stats()
    assert stats.entries == len(memo) and stats.bytes == memo.bytes
    assert stats.hits == 143 and stats.misses == 1000  # 0.0 was remembered throughout
    big = np.zeros(1024)  # above max_entry_bytes: computed, not kept
    assert doubled(big) == 0.0 and doubled.stats().entries == stats.entries
    assert doubled.stats().misses == stats.misses + 1


def test_the_history_memo_stays_within_its_bound():
    for seed in range(80):  # histories of 60 steps × 250 buckets: ~124 kB per key
        h = Histogram.from_steps(_history(seed, buckets=250))
        tail_dispersion_prior(h, h, 0.99)
        assert HISTORY.bytes <= HISTORY.max_bytes
    held = HISTORY.stats("webhook.judge.histogram._history_tail_prior")
    assert 0 < held.entries < 80 and held.misses == 80


# -- threads -----------------------------------------------------------------------------------

def test_threads_share_the_memo_safely():
    histories = [_history(seed) for seed in range(12)]
    plain = [Histogram.from_steps(b) for b in histories]
    want = [(tail_dispersion_prior(h, h, 0.95), tail_dispersion_prior(h, h, 0.99),
             choose_bound(h, 0.01), _plain_prior(h.steps[:, -1] - h.steps[:, 7],
                                                 h.steps[:, -1], True)) for h in plain]
    HISTORY.clear()
    small = ContentMemo(max_bytes=16 << 10, max_entry_bytes=8 << 10)  # evicts all the time

    @small.memoise
    def cumulative(x: np.ndarray) -> float:
        return float(x.cumsum()[-1])

    errors: list[BaseException] = []
    calls = 8 * 150

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(150):
                i = int(rng.integers(len(histories)))
                h = Histogram.from_steps(histories[i])
                rows = h.steps
                got = (tail_dispersion_prior(h, h, 0.95), tail_dispersion_prior(h, h, 0.99),
                       auto_bound(h, h, 0.01, 100)[0],
                       history_prior(rows[:, -1] - rows[:, 7], rows[:, -1], True))
                assert got == want[i], (i, got, want[i])
                x = np.full(100, float(i))
                assert cumulative(x) == float(x.cumsum()[-1])
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave between almost any two bytecodes
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors[0]
    for name in NAMES:
        s = HISTORY.stats(name)
        per_call = 2 if name.endswith("_history_tail_prior") else 1
        assert s.hits + s.misses == calls * per_call, (name, s)
        assert s.misses >= len(histories) * per_call
    held = sum(size for _, size in HISTORY._entries.values())
    assert held == HISTORY.bytes <= HISTORY.max_bytes
    assert len(HISTORY) == sum(HISTORY.stats(n).entries for n in NAMES)
    s = cumulative.stats()
    assert s.hits + s.misses == calls and small.bytes <= small.max_bytes
    assert sum(size for _, size in small._entries.values()) == small.bytes == s.bytes
