"""The cheaper paths in the histogram, ratio and corrupt-data code give the same numbers as the
code they replaced (kept here as the reference), on random inputs and the edge cases a rollout
produces: absent (NaN) steps, negative and infinite counts, ragged or duplicate buckets, a
single step, tiny and huge counts. Verdicts built on them therefore do not move."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from webhook.judge import histogram as hist
from webhook.judge import tails
from webhook.judge.corrupt import first_corrupt, first_corrupt_of
from webhook.judge.histogram import Histogram
from webhook.kinds.base import KindContext, combined
from webhook.lab import DEFAULT_BUCKETS
from webhook.sources.base import Series


def reference_from_steps(buckets):
    """Histogram.from_steps before it stacked a grid's buckets at once."""
    merged: dict[float, np.ndarray] = {}
    for le, v in buckets:
        bound = float(le)
        if math.isnan(bound):
            continue
        values = np.atleast_1d(np.asarray(v, dtype=float))
        if bound in merged:
            old = merged[bound]
            width = max(old.size, values.size)
            a, b = np.full(width, np.nan), np.full(width, np.nan)
            a[:old.size], b[:values.size] = old, values
            both = np.isnan(a) & np.isnan(b)
            with np.errstate(over="ignore", invalid="ignore"):
                total = np.where(np.isnan(a), 0.0, a) + np.where(np.isnan(b), 0.0, b)
            merged[bound] = np.where(both, np.nan, total)
        else:
            merged[bound] = values
    pairs = sorted(merged.items(), key=lambda p: p[0])
    if not pairs:
        return np.array([]), np.array([]), np.zeros((0, 0))
    bounds = np.array([p[0] for p in pairs])
    width = max(p[1].size for p in pairs)
    rows = np.zeros((width, bounds.size))
    for j, (_, values) in enumerate(pairs):
        rows[:values.size, j] = np.where(np.isnan(values), 0.0, np.clip(values, 0, None))
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.maximum.accumulate(rows, axis=1)
        cumulative = np.nan_to_num(np.maximum.accumulate(rows.sum(axis=0)))
    return bounds, cumulative, steps


def random_buckets(rng: np.random.Generator) -> list[tuple[float, np.ndarray]]:
    steps = int(rng.choice([1, 2, 30, 180]))
    bounds = [*DEFAULT_BUCKETS, math.inf]
    rate = float(rng.choice([0.0, 0.5, 200.0, 1e9]))
    counts = np.cumsum(rng.poisson(rate / len(bounds), (steps, len(bounds))), axis=1)
    values = counts.astype(float)
    values[rng.random(values.shape) < rng.choice([0.0, 0.1, 1.0])] = np.nan  # absent
    if rng.random() < 0.3:
        values[rng.integers(steps), rng.integers(len(bounds))] = -3.0  # a reset-like drop
    if rng.random() < 0.2:
        values[rng.integers(steps), rng.integers(len(bounds))] = math.inf
    out = [(float(le), values[:, i]) for i, le in enumerate(bounds)]
    if rng.random() < 0.3:  # the same bound spelled twice
        out.append((float(bounds[3]), values[:, 3] * 0.5))
    if rng.random() < 0.2:  # a ragged series
        out.append((0.333, values[: max(steps - 1, 1), 2]))
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("seed", range(40))
def test_from_steps_equals_the_reference(seed):
    rng = np.random.default_rng(400 + seed)
    buckets = random_buckets(rng)
    got = Histogram.from_steps(buckets)
    bounds, cumulative, steps = reference_from_steps(buckets)
    np.testing.assert_array_equal(got.bounds, bounds)
    np.testing.assert_array_equal(got.cumulative, cumulative)
    np.testing.assert_array_equal(got.steps, steps)


def test_binom_ppf_is_scipy_stats():
    rng = np.random.default_rng(9)
    cases = [(0.025, 1, 0.99), (0.5, 1000, 0.5), (1e-13, 10**12, 0.999), (0.4999, 3, 0.01)]
    for _ in range(500):
        cases.append((float(rng.uniform(1e-12, 0.5)), int(rng.choice([1, 7, 100, 10**5, 10**14])),
                      float(rng.choice([0.5, 0.9, 0.95, 0.99, 0.999]))))
    for a, n, q in cases:
        want = stats.binom.ppf([a, 1 - a], n, q)
        np.testing.assert_array_equal(hist._binom_ppf(a, n, q), want)


def test_normal_tails_are_scipy_stats():
    for p in (1e-12, 0.001, 0.025, 0.05, 0.3, 0.5):
        assert -special.ndtri(p) == stats.norm.isf(p)
    for x in (-3.0, 0.0, 1e-9, 1.96, 8.0, 39.0):
        assert special.ndtr(-x) == stats.norm.sf(x)


@pytest.mark.parametrize("seed", range(30))
def test_first_corrupt_of_is_first_corrupt_series_by_series(seed):
    rng = np.random.default_rng(500 + seed)
    n, width = int(rng.choice([0, 1, 5, 30])), int(rng.choice([1, 3, 180]))
    series = [rng.poisson(5, width).astype(float) for _ in range(n)]
    for v in series:
        for _ in range(int(rng.integers(0, 3))):
            v[rng.integers(width)] = rng.choice([np.nan, np.inf, -np.inf, -1.0, -1e-12, 0.0])
    with_mask = rng.random() < 0.5
    present = [rng.random(width) < 0.8 if with_mask else None for _ in range(n)]
    for counts in (True, False):
        want = None
        for i, (v, p) in enumerate(zip(series, present, strict=True)):
            bad = first_corrupt(v, p, counts=counts)
            if bad is not None:
                want = (i, bad[0], bad[1])
                break
        got = first_corrupt_of(series, present, counts=counts)
        assert (got is None) == (want is None)
        if want is not None:
            assert got is not None
            assert got[:2] == want[:2]
            assert got[2] == want[2] or (math.isnan(got[2]) and math.isnan(want[2]))


def reference_rows_quantile(rows, bounds, q):
    if not rows.size:
        return np.full(rows.shape[0], np.nan)
    total = rows[:, -1]
    rank = q * total
    i = np.minimum(np.argmax(rows >= rank[:, None], axis=1), bounds.size - 1)
    upper = bounds[i]
    lower = np.where(i > 0, bounds[np.maximum(i - 1, 0)], np.minimum(0.0, upper))
    below = np.where(i > 0, np.take_along_axis(rows, np.maximum(i - 1, 0)[:, None], 1)[:, 0],
                     0.0)
    inside = np.take_along_axis(rows, i[:, None], 1)[:, 0] - below
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        value = np.where(inside > 0, lower + (upper - lower) * (rank - below) / inside, upper)
    return np.where((total > 0) & np.isfinite(upper), value, np.nan)


def reference_rows_count_above(rows, bounds, x):
    if not bounds.size or not rows.size:
        return np.full(rows.shape[0], np.nan)
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    xs = np.where(ok, x, 0.0)
    i = np.searchsorted(bounds, xs, side="left")
    exact = (i < bounds.size) & (bounds[np.minimum(i, bounds.size - 1)] == xs)
    j = np.minimum(i, bounds.size - 1)
    at_or_below = np.where(exact, np.take_along_axis(rows, j[:, None], 1)[:, 0], 0.0)
    return np.where(ok, np.maximum(rows[:, -1] - at_or_below, 0.0), np.nan)


@pytest.mark.parametrize("seed", range(30))
def test_row_quantiles_and_counts_equal_the_reference(seed):
    rng = np.random.default_rng(600 + seed)
    h = Histogram.from_steps(random_buckets(rng))
    if not h.steps.size:
        return
    running = np.cumsum(h.steps, axis=0)
    for q in (0.5, 0.95, 0.99):
        got = hist._rows_quantile(running, h.bounds, q)
        np.testing.assert_array_equal(got, reference_rows_quantile(running, h.bounds, q))
        x = hist._snap(h.bounds, got, up=bool(seed % 2))
        np.testing.assert_array_equal(hist._rows_count_above(h.steps, h.bounds, x),
                                      reference_rows_count_above(h.steps, h.bounds, x))


def test_tails_are_scipy_stats_to_the_bit():
    rng = np.random.default_rng(13)
    qs = [0.0, 1.0, 1e-300, 1e-12, 0.025, 0.5, 0.975, 1 - 1e-12, math.nan,
          *rng.uniform(0, 1, 200).tolist()]
    xs = [-math.inf, -40.0, -1.96, -0.0, 0.0, 1e-12, 2.5, 40.0, math.inf, math.nan,
          *rng.normal(0, 4, 200).tolist()]
    dfs = [1.0, 2.5, 30.0, 1e6, math.inf, *rng.uniform(1, 500, 20).tolist()]

    def same(got: float, want: float) -> bool:
        return got == want or (math.isnan(got) and math.isnan(want))

    for q in qs:
        assert same(tails.norm_isf(q), float(stats.norm.isf(q))), q
        for df in dfs:
            assert same(tails.t_isf(q, df), float(stats.t.isf(q, df))), (q, df)
    for x in xs:
        assert same(tails.norm_sf(x), float(stats.norm.sf(x))), x
        for df in dfs:
            assert same(tails.t_sf(x, df), float(stats.t.sf(x, df))), (x, df)


@pytest.mark.parametrize("seed", range(10))
def test_combined_one_series_is_the_stacked_sum(seed):
    """One series (the usual aggregated query) skips the stacking: the same values, absent
    and non-finite steps NaN."""
    rng = np.random.default_rng(800 + seed)
    width = int(rng.choice([1, 5, 180]))
    values = rng.poisson(5, width).astype(float)
    values[rng.random(width) < 0.3] = rng.choice([np.nan, np.inf, -np.inf, -1.0])
    ctx = KindContext(alpha=0.05, mode="sequential", step=60.0, points=width,
                      first=int(rng.integers(0, width)))
    stacked = values[None, ctx.first:]
    want = np.where(np.isfinite(stacked).any(axis=0),
                    np.nansum(np.where(np.isfinite(stacked), stacked, 0.0), axis=0), np.nan)
    got = combined([Series({}, values)], ctx)
    np.testing.assert_array_equal(got, want)
    assert got is not values and not np.shares_memory(got, values)
