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
from webhook.judge import tails, tailshare
from webhook.judge.corrupt import first_corrupt, first_corrupt_of, none_corrupt
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


@pytest.mark.parametrize("seed", range(60))
def test_none_corrupt_never_vouches_for_a_corrupt_count(seed):
    """The shortcut before the mask per series: when it says "plain", no series of the
    metric holds a corrupt count (`first_corrupt`), with or without `present` masks."""
    rng = np.random.default_rng(900 + seed)
    n, width = int(rng.integers(1, 6)), int(rng.choice([1, 3, 80]))
    series, present = [], []
    for _ in range(n):
        v = rng.poisson(5, width).astype(float)
        mask = rng.random(width) < 0.7 if rng.random() < 0.8 else None
        if mask is not None:
            v[~mask] = np.nan  # as the decoder leaves a step without a sample
        for _ in range(int(rng.integers(0, 3))):
            v[rng.integers(width)] = rng.choice([np.nan, np.inf, -np.inf, -1.0, -1e-12, 1e308])
        series.append(v)
        present.append(mask)
    plain = none_corrupt(series, [], present)
    corrupt = [first_corrupt(v, p) for v, p in zip(series, present, strict=True)]
    if plain:
        assert all(c is None for c in corrupt), (series, present)


def test_a_sequential_windows_absent_canary_steps_take_the_shortcut():
    """The canary has no samples before its first pod (NaN, `present` False): that is not
    corrupt, and is told so without a mask per series; a NaN *sample* there is corrupt."""
    values = np.r_[np.full(60, np.nan), np.full(20, 3.0)]
    had = np.r_[np.zeros(60, bool), np.ones(20, bool)]
    assert none_corrupt([values, values], [], [had, had])
    broken = values.copy()
    broken[70] = np.nan
    assert not none_corrupt([values, broken], [], [had, had])
    assert first_corrupt(broken, had)[0] == 70
    assert not none_corrupt([values], [])  # without `present` a NaN cannot be told apart


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


def reference_tail_exceedances(canary, stable, q, rel, abs_, slower, min_tail, history, anchor):
    """tail_exceedances one quantile at a time, as it was before the quantiles were stacked."""
    rows_c, rows_s = canary.steps, stable.steps
    if not rows_c.size or not rows_s.size or rows_c.shape[0] != rows_s.shape[0]:
        return (np.zeros(0),) * 4
    base = stable if anchor == "stable" else canary
    rows = rows_s if anchor == "stable" else rows_c
    before = np.vstack([np.zeros((1, rows.shape[1])), np.cumsum(rows[:-1], axis=0)])
    if (anchor == "stable" and history is not None and history.total > 0
            and np.array_equal(history.bounds, stable.bounds)):
        before = before + history.cumulative
    y = reference_rows_quantile(before, base.bounds, q)
    y[before[:, -1] * (1 - q) < min_tail] = np.nan
    anchor_up = (anchor == "stable") != slower
    ya = hist._snap(base.bounds, y, up=anchor_up)
    with np.errstate(invalid="ignore"):
        if slower == (anchor == "stable"):
            moved = np.maximum(ya * (1 + rel), ya + abs_)
        else:
            moved = np.minimum(ya / (1 + rel), ya - abs_)
        moved[~(moved > 0)] = np.nan
    other = canary if anchor == "stable" else stable
    xo = hist._snap(other.bounds, moved, up=not anchor_up)
    x_c, x_s = (xo, ya) if anchor == "stable" else (ya, xo)
    e_c = reference_rows_count_above(rows_c, canary.bounds, x_c)
    e_s = reference_rows_count_above(rows_s, stable.bounds, x_s)
    known = np.isfinite(e_c) & np.isfinite(e_s)
    return (np.where(known, e_c, 0.0), np.where(known, rows_c[:, -1], 0.0),
            np.where(known, e_s, 0.0), np.where(known, rows_s[:, -1], 0.0))


def _latency_steps(rng, steps, median, bounds):
    counts = np.zeros((steps, len(bounds)))
    for t in range(steps):
        latencies = rng.lognormal(math.log(median), 0.6, rng.poisson(300))
        counts[t] = (latencies[:, None] <= np.asarray(bounds)).sum(axis=0)
    return [(float(le), counts[:, i]) for i, le in enumerate(bounds)]


COARSE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf]  # wider than the tolerance


def _pair(rng, steps, slower_by, coarse):
    bounds = COARSE_BUCKETS if coarse else [*DEFAULT_BUCKETS, math.inf]
    return (Histogram.from_steps(_latency_steps(rng, steps, 0.1 * slower_by, bounds)),
            Histogram.from_steps(_latency_steps(rng, steps, 0.1, bounds)),
            Histogram.from_steps(_latency_steps(rng, 30, 0.1, bounds)))


@pytest.mark.parametrize("seed", range(12))
def test_stacked_tail_exceedances_equal_one_quantile_at_a_time(seed):
    """tail_exceedances_of counts every quantile in one stacked pass: each quantile's counts
    are the ones the one-quantile reference gives, for both anchors and directions, with and
    without the stable's history."""
    rng = np.random.default_rng(1200 + seed)
    canary, stable, history = _pair(rng, int(rng.choice([1, 2, 40, 180])),
                                     float(rng.choice([1.0, 1.4])), bool(seed % 2))
    qs = (0.5, 0.95, 0.99)
    for anchor in ("stable", "canary"):
        for slower in (True, False):
            for before in (None, history):
                got = hist.tail_exceedances_of(canary, stable, qs, 0.2, 0.005, slower, 10.0,
                                               before, anchor)
                for q, counts in zip(qs, got, strict=True):
                    want = reference_tail_exceedances(canary, stable, q, 0.2, 0.005, slower,
                                                      10.0, before, anchor)
                    for g, w in zip(counts, want, strict=True):
                        np.testing.assert_array_equal(g, w)


def _reference_evidence(canary, stable, q, rel, abs_, history, direction):
    """The sequential quantile check's evidence the straightforward way: each anchor's counts
    from the reference, each anchor's martingale computed, their mean taken."""
    from webhook.judge import sequential as seq
    dispersion = hist.tail_dispersion_prior(history, stable, q)
    paths = []
    for slower in (True, False):
        if direction == ("decrease" if slower else "increase"):
            continue
        both = [seq.rate_ratio_log_evidence_path(
            *reference_tail_exceedances(canary, stable, q, rel, abs_, slower, 10.0, history,
                                        anchor), 1.0, worse=slower,
            scale=hist.TAIL_MIXTURE_SCALE, dispersion_prior=dispersion)
            for anchor in ("stable", "canary")]
        paths.append(np.logaddexp(*both) - math.log(2))
    return np.maximum.accumulate(np.maximum.reduce(paths))


@pytest.mark.parametrize("seed", range(10))
def test_quantiles_judged_together_equal_each_alone_and_the_reference(seed):
    """judge_quantiles (stacked exceedances; one martingale when both anchors count the same)
    gives each quantile the check judge_quantile gives it alone, and the evidence of both
    anchors' martingales computed separately; coarse buckets make the anchors coincide."""
    rng = np.random.default_rng(1300 + seed)
    coarse = seed % 2 == 0
    canary, stable, history = _pair(rng, int(rng.choice([20, 90])),
                                    float(rng.choice([1.0, 1.5])), coarse)
    direction = str(rng.choice(["increase", "decrease", "either"]))
    history = history if seed % 3 else None
    qs = [0.5, 0.95, 0.99]
    kw = dict(direction=direction, relative_tolerance=0.2, absolute_tolerance=0.005,
              alpha=0.05, min_total=50, min_tail=10.0, mode="sequential",
              stable_history=history, decided_by="t")
    together = hist.judge_quantiles([f"p{q}" for q in qs], canary, stable, qs, **kw)
    for q, got in zip(qs, together, strict=True):
        alone = hist.judge_quantile(f"p{q}", canary, stable, q, **kw)
        assert got == alone
        assert got.trace is not None and alone.trace is not None
        assert got.trace.evidence == alone.trace.evidence
        want = _reference_evidence(canary, stable, q, 0.2, 0.005, history, direction)
        np.testing.assert_allclose(got.trace.evidence, want, rtol=1e-12, atol=1e-12)


def test_anchors_that_count_the_same_give_the_reference_evidence():
    """Identical sides on buckets wider than the tolerance: both anchors land on the same pair
    of bounds at every step, so judge_quantile computes one martingale for both; its evidence
    is still the mean of the two computed separately."""
    rng = np.random.default_rng(1400)
    steps = _latency_steps(rng, 60, 0.12, COARSE_BUCKETS)
    canary, stable = Histogram.from_steps(steps), Histogram.from_steps(steps)
    for q in (0.5, 0.95):
        counts = [hist.tail_exceedances(canary, stable, q, 0.2, 0.005, True, 10.0, None, a)
                  for a in ("stable", "canary")]
        assert all(np.array_equal(x, y) for x, y in zip(*counts, strict=True))
        assert counts[0][0].sum() > 0
        got = hist.judge_quantile("p", canary, stable, q, relative_tolerance=0.2,
                                  absolute_tolerance=0.005, min_total=50, mode="sequential")
        assert got.trace is not None
        want = _reference_evidence(canary, stable, q, 0.2, 0.005, None, "increase")
        np.testing.assert_allclose(got.trace.evidence, want, rtol=1e-12, atol=1e-12)


def reference_clean_steps(numerator, total):
    """ratio._clean_steps before its fast path for plain counts."""
    total = np.asarray(total, dtype=float)
    numerator = np.broadcast_to(np.asarray(numerator, dtype=float), total.shape)
    with np.errstate(invalid="ignore"):
        dropped = (np.isinf(total) | (total < -1e-9) | np.isinf(numerator)
                   | (numerator < -1e-9))
    totals = np.where(np.isfinite(total) & ~dropped, np.clip(total, 0, None), 0.0)
    events = np.where(np.isfinite(numerator) & ~dropped, np.clip(numerator, 0, None), 0.0)
    return totals, np.minimum(events, totals)


@pytest.mark.parametrize("seed", range(30))
def test_clean_steps_equal_the_reference(seed):
    from webhook.judge.ratio import _clean_steps
    rng = np.random.default_rng(1500 + seed)
    steps = int(rng.choice([0, 1, 5, 180]))
    total = rng.poisson(100, steps).astype(float)
    numerator = rng.binomial(total.astype(int), 0.05).astype(float)
    for values in (total, numerator):
        kind = seed % 5
        if steps and kind:
            where = rng.integers(steps, size=2)
            values[where] = [math.nan, -2e-10, -math.inf, math.inf][kind - 1]
    for got, want in zip(_clean_steps(numerator, total), reference_clean_steps(numerator, total),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_evolve_is_dataclasses_replace():
    import dataclasses

    from webhook.judge.types import CheckResult, Summary, Trace, evolve
    check = CheckResult(name="e", kind="ratio", verdict="pass", test="t", reason="r",
                        canary=Summary(10.0, 0.1), stable=Summary(20.0, 0.2),
                        trace=Trace(evidence=(0.5,)))
    for changes in ({}, {"critical": True, "weight": 0.5, "group": "g"},
                    {"name": "e[x=1]", "cohort": "1", "reason": "r2"}):
        got, want = evolve(check, **changes), dataclasses.replace(check, **changes)
        assert got == want and repr(got) == repr(want) and got.trace is want.trace
    trace = evolve(check.trace, first_time=5.0, step=60.0)
    assert trace == dataclasses.replace(check.trace, first_time=5.0, step=60.0)
    with pytest.raises(TypeError):
        evolve(check, verdicts="fail")


@pytest.mark.parametrize("seed", range(12))
def test_both_anchors_counted_together_equal_each_anchor_alone(seed):
    """tail_exceedances_anchored stacks the stable's and the canary's anchors in one pass:
    each anchor's counts are tail_exceedances_of's, in both directions, with and without the
    stable's history, and on layouts the two sides do not share (counted one by one)."""
    rng = np.random.default_rng(1500 + seed)
    canary, stable, history = _pair(rng, int(rng.choice([1, 2, 40, 180])),
                                     float(rng.choice([1.0, 1.4])), bool(seed % 2))
    if seed % 4 == 3:  # a canary on other buckets
        canary = Histogram.from_steps(_latency_steps(rng, stable.steps.shape[0], 0.1,
                                                     [0.07, 0.2, 0.6, math.inf]))
    qs = (0.5, 0.95, 0.99)
    for slower in (True, False):
        for before in (None, history):
            for rel, abs_ in ((0.2, 0.005), (0.0, 0.0), (1.5, 0.3)):
                got = hist.tail_exceedances_anchored(canary, stable, qs, rel, abs_, slower,
                                                     10.0, before)
                for anchor in ("stable", "canary"):
                    want = hist.tail_exceedances_of(canary, stable, qs, rel, abs_, slower,
                                                    10.0, before, anchor)
                    for g, w in zip(got[anchor], want, strict=True):
                        for x, y in zip(g, w, strict=True):
                            np.testing.assert_array_equal(x, y)


def _snapped(bounds: np.ndarray, x: float, up: bool) -> float:
    """_snap's definition, one value at a time: the smallest bound ≥ x, or the largest ≤ x
    (0 below the first); NaN for a non-finite x or an infinite result."""
    if not math.isfinite(x):
        return math.nan
    if up:
        got = min((b for b in bounds if b >= x), default=math.inf)
    else:
        got = max((b for b in bounds if b <= x), default=0.0)
    return got if math.isfinite(got) else math.nan


@pytest.mark.parametrize("seed", range(20))
def test_snap_rounds_each_value_its_own_way(seed):
    """_snap with a direction per value (both anchors' thresholds at once) and with one for
    all: each value the bound its definition names, at bounds, between them, beyond both
    ends and for non-finite values."""
    rng = np.random.default_rng(1600 + seed)
    bounds = np.array(sorted({float(b) for b in rng.choice([0.01, 0.05, 0.1, 0.25, 0.5, 1.0],
                                                          int(rng.integers(1, 6)))}
                             | ({math.inf} if seed % 2 else set())))
    x = np.concatenate((rng.uniform(-0.1, 1.5, 30), rng.choice(bounds, 10),
                        [np.nan, np.inf, -np.inf, 0.0]))
    up = rng.random(x.size) < 0.5
    want = np.array([_snapped(bounds, xi, bool(u)) for xi, u in zip(x, up, strict=True)])
    np.testing.assert_array_equal(hist._snap(bounds, x, up), want)
    for direction in (True, False):
        np.testing.assert_array_equal(hist._snap(bounds, x, direction),
                                      [_snapped(bounds, xi, direction) for xi in x])


def reference_choose_bound(reference: Histogram, max_share: float, among):
    """tailshare.choose_bound before it matched every bound against `among` at once."""
    total = reference.total
    finite = np.flatnonzero(np.isfinite(reference.bounds))
    if among is not None:
        finite = finite[[tailshare._index_in(among, float(reference.bounds[j])) is not None
                         for j in finite]]
    if total <= 0 or not finite.size:
        return None
    above = (total - reference.cumulative[finite]) / total
    ok = finite[above <= max_share]
    return float(reference.bounds[ok[0] if ok.size else finite[-1]])


@pytest.mark.parametrize("seed", range(40))
def test_choose_bound_among_the_canarys_layout_equals_the_reference(seed):
    """The canary's layout: the same bounds, a subset, the same bounds spelled a hair apart
    (within the 1e-9 match), a different layout, one without +Inf, or none in common."""
    rng = np.random.default_rng(seed)
    stable = Histogram.from_steps(random_buckets(rng))
    bounds = stable.bounds
    layouts = [bounds, bounds[::2], bounds * (1 + 1e-10), bounds * (1 + 1e-7),
               np.array([0.05, 0.3, 2.0, math.inf]), bounds[np.isfinite(bounds)],
               np.array([123.0, math.inf]), np.array([]), None]
    for among in layouts:
        for share in (0.0, 0.01, 0.2, 1.0):
            assert (tailshare.choose_bound(stable, share, among)
                    == reference_choose_bound(stable, share, among)), (among, share)


def _busy_buckets(rng: np.random.Generator, steps: int,
                  scale: float) -> list[tuple[float, np.ndarray]]:
    """A few hundred requests a step, log-normal latencies `scale` times the usual."""
    bounds = np.asarray([*DEFAULT_BUCKETS, math.inf])
    latencies = np.exp(rng.normal(math.log(0.1 * scale), 0.6, (steps, 300)))
    counts = (latencies[:, :, None] <= bounds).sum(axis=1).astype(float)
    return [(float(le), counts[:, i]) for i, le in enumerate(bounds)]


def reference_p_value(hc: Histogram, hs: Histogram, q: float, rel: float, abs_: float,
                      up: bool) -> float:
    """histogram._p_value before its looks computed one bound of each side."""
    def fails(alpha: float) -> bool:
        c_low, c_high = hc.quantile_bounds(q, alpha / 2)
        s_low, s_high = hs.quantile_bounds(q, alpha / 2)
        if up:
            return hist._beyond(c_low, s_high, rel, abs_)
        return hist._beyond(s_low, c_high, rel, abs_)

    if not fails(1.0):
        return 1.0
    lo, hi = 1e-12, 1.0
    if fails(lo):
        return lo
    for _ in range(24):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fails(mid) else (mid, hi)
    return hi


@pytest.mark.parametrize("seed", range(30))
def test_one_quantile_bound_and_the_p_value_equal_both_bounds(seed):
    """A slower or faster canary than the stable, few or many requests, both directions."""
    rng = np.random.default_rng(900 + seed)
    stable, canary = (Histogram.from_steps(_busy_buckets(rng, steps, scale))
                      for steps, scale in ((30, 1.0), (int(rng.integers(1, 12)),
                                                       float(rng.choice([0.3, 1.0, 2.0])))))
    for q in (0.5, 0.95, 0.99):
        for a in (1e-13, 0.0125, 0.25, 0.5):
            for h in (stable, canary):
                low, high = h.quantile_bounds(q, a)
                np.testing.assert_equal((h.quantile_bound(q, a, False),
                                         h.quantile_bound(q, a, True)), (low, high))
        for up in (True, False):
            for one, other in ((canary, stable), (stable, canary)):
                assert (hist._p_value(one, other, q, 0.2, 0.005, up)
                        == reference_p_value(one, other, q, 0.2, 0.005, up))


def test_from_steps_reads_an_iterator_of_buckets_like_a_list():
    rng = np.random.default_rng(77)
    buckets = _busy_buckets(rng, 10, 1.0)
    buckets.append((0.333, buckets[2][1][:-1]))  # ragged: the merge decides, after a look
    got, want = Histogram.from_steps(iter(buckets)), Histogram.from_steps(buckets)
    for a, b in ((got.bounds, want.bounds), (got.cumulative, want.cumulative),
                 (got.steps, want.steps)):
        np.testing.assert_array_equal(a, b)
    assert want.total > 0
