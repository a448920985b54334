"""The shortcuts that keep judging cheap give the answers of the long way round: the corrupt-data
check's one-pass test for a clean metric, the band path's steps × θ blocks, counting every
quantile's thresholds on untiled rows, and a histogram's rank look-ups in Python lists. Each is
compared with the plain computation it stands in for, on random inputs that reach both branches.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from webhook.configs import EventsMetric, HistogramMetric, RatioMetric, SeriesMetric
from webhook.judge import histogram as hist
from webhook.judge import sequential as seq
from webhook.judge.corrupt import COUNT_ROLES, first_corrupt_of
from webhook.kinds import ArrayData, KindContext, _corrupt_check, queries, sides
from webhook.lab import DEFAULT_BUCKETS
from webhook.sources.base import Series

SPECS = [
    RatioMetric(name="errors", kind="ratio", bad="b{ {{selector}} }", total="t{ {{selector}} }"),
    SeriesMetric(name="cpu", kind="series", query="c{ {{selector}} }"),
    EventsMetric(name="adverse", kind="events", query="e{ {{selector}} }"),
    HistogramMetric(name="latency", kind="histogram", query="x{ {{selector}} }"),
]


def searched_one_by_one(spec, data, begin):
    """(side, role, series index, step) of the first corrupt sample, series by series."""
    for side in sides(spec):
        for role in queries(spec):
            found = data.series(side, role)
            bad = first_corrupt_of([s.values[begin:] for s in found],
                                   [None if s.present is None else s.present[begin:]
                                    for s in found], counts=role in COUNT_ROLES)
            if bad is not None:
                return side, role, bad[1]
    return None


@pytest.mark.parametrize("seed", range(60))
def test_corrupt_check_finds_what_the_series_by_series_search_finds(seed):
    rng = np.random.default_rng(900 + seed)
    spec = SPECS[seed % len(SPECS)]
    points = int(rng.choice([1, 5, 60]))
    first = int(rng.integers(0, points))
    by_role = {}
    for side in sides(spec):
        for role in queries(spec):
            found = []
            for j in range(int(rng.choice([0, 1, 3]))):
                values = rng.poisson(20, points).astype(float)
                present = rng.random(points) < rng.choice([1.0, 0.8])
                values[~present] = np.nan  # absent steps: NaN, not corrupt
                for _ in range(int(rng.choice([0, 0, 1]))):  # now and then a bad sample
                    values[rng.integers(points)] = rng.choice(
                        [np.nan, np.inf, -np.inf, -1.0, -1e-12, 1e308])
                labels = {"le": str(j)} if role == "buckets" else {}
                found.append(Series(labels, values, present if rng.random() < 0.8 else None))
            by_role[side, role] = found
    data = ArrayData(by_role)
    ctx = KindContext(alpha=0.05, mode="fixed", step=60.0, points=points, first=first)
    got = _corrupt_check(spec, data, ctx)
    want = searched_one_by_one(spec, data, first)
    assert (got is None) == (want is None), (got, want)
    if want is not None:
        assert got is not None and got.verdict == "inconclusive"
        assert f"the {want[0]}'s" in got.reason


@pytest.mark.parametrize("seed", range(30))
def test_band_blocks_built_steps_by_theta_equal_the_plain_running_sum(seed):
    """`_running` on blocks taller than wide (steps × θ, complex pairs for an even number of
    rows, plain for an odd one) and wider than tall: bit for bit the running sum of
    `_terms_at`'s ratios plus the carry."""
    rng = np.random.default_rng(seed)
    steps = int(rng.choice([3, 16, 40]))
    bad_c = rng.poisson(rng.choice([2.0, 50.0]), steps).astype(float)
    bad_s = rng.poisson(rng.choice([4.0, 100.0]), steps).astype(float) + 1.0
    n_c = bad_c * 30 + 100.0
    n_s = bad_s * 30 + 200.0
    terms = seq._step_terms(bad_c, n_c, bad_s, n_s, float(rng.choice([1.0, 1.2])),
                            bool(rng.random() < 0.5), seq.MIXTURE_SCALE,
                            (seq.DISPERSION_PRIOR, seq.DISPERSION_PRIOR_STEPS))
    assert terms is not None
    g = terms.theta.size
    carry = rng.normal(0, 5, g)
    for _ in range(4):
        lo = int(rng.integers(0, steps))
        hi = int(rng.integers(lo + 1, steps + 1))
        jl = int(rng.integers(0, g))
        jh = int(rng.integers(jl + 1, g + 1))
        want = seq._terms_at(terms, lo, hi, slice(jl, jh))
        want[:, 0] += carry[jl:jh]
        want = np.cumsum(want, axis=1)
        got = seq._running(terms, lo, hi, jl, jh, carry)
        np.testing.assert_array_equal(got, want)


def test_both_block_layouts_are_taken():
    """The test above reaches the tall layout with even and odd row counts and the wide one:
    the first block (the whole grid, 16 steps), a later band of odd width, a long block."""
    bad = np.full(40, 30.0)
    terms = seq._step_terms(bad, bad * 40, bad, bad * 40, 1.0, True, seq.MIXTURE_SCALE,
                            (seq.DISPERSION_PRIOR, seq.DISPERSION_PRIOR_STEPS))
    assert terms is not None
    carry = np.zeros(terms.theta.size)
    assert not seq._running(terms, 0, 16, 0, 160, carry).flags.c_contiguous  # tall, a view
    assert not seq._running(terms, 0, 16, 0, 87, carry).flags.c_contiguous
    assert seq._running(terms, 0, 40, 0, 10, carry).flags.c_contiguous  # wide


@pytest.mark.parametrize("seed", range(20))
def test_counting_above_several_blocks_of_thresholds_equals_tiled_rows(seed):
    rng = np.random.default_rng(300 + seed)
    bounds = np.array([*DEFAULT_BUCKETS, math.inf])
    steps, k = int(rng.choice([1, 7, 180])), int(rng.choice([1, 2, 3]))
    rows = np.cumsum(rng.poisson(3, (steps, bounds.size)), axis=1).astype(float)
    x = rng.choice([*bounds[:-1], 0.0, np.nan, 0.123], size=steps * k)
    got = hist._rows_count_above(rows, bounds, x)
    tiled = np.tile(rows, (k, 1))
    want = np.array([np.nan if not math.isfinite(xi) else max(
        r[-1] - (r[int(np.searchsorted(bounds, xi))] if xi in bounds else 0.0), 0.0)
        for r, xi in zip(tiled, x, strict=True)])
    np.testing.assert_array_equal(got, want)


def test_snap_keeps_non_finite_values_unknown():
    bounds = np.array([0.1, 0.25, 0.5, math.inf])
    x = np.array([np.nan, np.inf, -np.inf, 0.05, 0.1, 0.3, 0.6])
    np.testing.assert_array_equal(hist._snap(bounds, x, up=True),
                                  [np.nan, np.nan, np.nan, 0.1, 0.1, 0.5, np.nan])
    np.testing.assert_array_equal(hist._snap(bounds, x, up=False),
                                  [np.nan, np.nan, np.nan, 0.0, 0.1, 0.25, 0.5])


@pytest.mark.parametrize("seed", range(20))
def test_rank_look_ups_are_numpy_searchsorted(seed):
    rng = np.random.default_rng(700 + seed)
    bounds = np.array([*DEFAULT_BUCKETS, math.inf])
    cumulative = np.cumsum(rng.poisson(rng.choice([0.2, 5.0]), bounds.size)).astype(float)
    if rng.random() < 0.3:
        cumulative[rng.integers(bounds.size)] = np.nan  # only numpy's ordering applies
    h = hist.Histogram(bounds, cumulative)
    total = float(np.nan_to_num(cumulative[-1]))
    for rank in [*rng.uniform(-1, total + 2, 30), 0.0, total, math.nan, *cumulative]:
        want = int(np.searchsorted(cumulative, max(rank, 0.0), side="left"))
        assert h.bucket_of_rank(rank) == min(want, bounds.size - 1)
