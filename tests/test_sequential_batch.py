"""Several evidence paths computed in one go (`rate_ratio_log_evidence_paths`) give each row
exactly, to the bit, what the row gets on its own.

Rows are batched only to pay numpy's per-call overhead once on short windows; nothing about a
row's answer may depend on its neighbours. "The same bits" is checked on the bytes of the
arrays (so that -0.0 and 0.0, or two NaNs, are not confused), against the row-by-row code
paths that do not go through the batch: the band path on a row's own counting steps
(`_band_path` + `_spread`) and the one-row Newton solve.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.judge import histogram as hist
from webhook.judge import sequential as seq
from webhook.judge.histogram import Histogram
from webhook.lab import DEFAULT_BUCKETS


def _alone(bad_c, n_c, bad_s, n_s, rho0, worse, scale, prior):
    """One row's path the row-by-row way: its own counting steps, the band path over them
    (`_band_path`'s first block is the transposed steps × θ layout, not the batch's rows ×
    steps × θ one), steps without events repeating the last value."""
    terms = seq._step_terms(bad_c, n_c, bad_s, n_s, rho0, worse, scale, prior)
    if terms is None:
        return np.zeros(np.asarray(bad_c).size)
    return seq._spread(terms.use, seq._band_path(terms))


def _same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and got.tobytes() == want.tobytes()


@st.composite
def _rows(draw):
    """Rows of counts of the same steps: busy or thin traffic, huge counts, steps without
    events or without traffic on one side, each row its own."""
    rows = draw(st.integers(1, 5))
    steps = draw(st.sampled_from([1, 2, 5, 9, 10, 11, 16, 17, 40]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([3.0, 300.0, 3e4, 1e9, 1e14]))
    n_c = rng.poisson(scale / 3 if scale < 1e9 else 1.0, (rows, steps)) * (
        1.0 if scale < 1e9 else scale / 3)
    n_s = rng.poisson(scale if scale < 1e9 else 1.0, (rows, steps)) * (
        1.0 if scale < 1e9 else scale)
    p = draw(st.sampled_from([0.0005, 0.01, 0.2]))
    bad_c = np.floor(n_c * p * rng.uniform(0.2, 3.0, (rows, steps)))
    bad_s = np.floor(n_s * p * rng.uniform(0.2, 2.0, (rows, steps)))
    bad_c, bad_s = np.minimum(bad_c, n_c), np.minimum(bad_s, n_s)
    quiet = rng.random((rows, steps)) < draw(st.sampled_from([0.0, 0.2, 0.6]))
    bad_c[quiet] = 0.0
    bad_s[quiet] = 0.0
    if draw(st.booleans()):  # a row's anchor without a threshold in its first steps
        lead = rng.integers(0, steps + 1, rows)
        for i, k in enumerate(lead):
            bad_c[i, :k] = bad_s[i, :k] = 0.0
    if draw(st.booleans()):  # no canary traffic in a step
        n_c[:, rng.integers(0, steps)] = 0.0
    if draw(st.booleans()):  # one row without any event
        bad_c[0] = bad_s[0] = 0.0
    priors = [(float(rng.choice([0.0, 0.02, 0.2])), float(rng.choice([3.0, 60.0])))
              for _ in range(rows)]
    return bad_c, n_c, bad_s, n_s, priors


@settings(max_examples=250, deadline=None)
@given(_rows(), st.sampled_from([1.0, 1.2]), st.booleans(), st.sampled_from([0.3, 0.75]))
def test_each_row_of_the_batch_is_the_row_alone_to_the_bit(rows, rho0, worse, scale):
    bad_c, n_c, bad_s, n_s, priors = rows
    batch = seq.rate_ratio_log_evidence_paths(bad_c, n_c, bad_s, n_s, rho0, worse, scale,
                                              priors)
    assert batch.shape == bad_c.shape
    for i, prior in enumerate(priors):
        want = _alone(bad_c[i], n_c[i], bad_s[i], n_s[i], rho0, worse, scale, prior)
        assert _same_bits(batch[i], want), (i, batch[i] - want)
        one = seq.rate_ratio_log_evidence_path(bad_c[i], n_c[i], bad_s[i], n_s[i], rho0, worse,
                                               scale, prior)
        assert _same_bits(one, want)


@settings(max_examples=150, deadline=None)
@given(_rows())
def test_the_rows_dispersions_are_each_rows_own(rows):
    """The batch's Newton solves (all rows in step, sums and dots per run of equal lengths)
    land where each row's own solve does, and so do the dispersions built on them."""
    bad_c, n_c, bad_s, n_s, priors = rows
    batch = seq._Rows.of(bad_c, n_c, bad_s, n_s)
    if not any(batch.counting):
        return
    terms = seq._rows_terms(batch, 1.0, True, 0.75, priors)
    for i, prior in enumerate(priors):
        alone = seq._step_terms(bad_c[i], n_c[i], bad_s[i], n_s[i], 1.0, True, 0.75, prior)
        if alone is None:
            continue
        mine = terms.row(i)
        for field in ("w", "v", "a", "b", "phi"):
            assert _same_bits(getattr(mine, field), getattr(alone, field)), field


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_runs_sum_and_dot_each_row_as_numpy_does(sizes, seed):
    """Sums and dot products of rows laid end to end are np.add.reduce and np.dot of each
    row alone: numpy's pairwise sums and BLAS's blocked dots depend on a row's length, so
    a run only ever holds rows of one length."""
    rng = np.random.default_rng(seed)
    sizes = sorted(sizes) if seed % 2 else sizes
    x = rng.standard_normal(sum(sizes)) * 10.0 ** rng.uniform(-6, 6, sum(sizes))
    y = rng.standard_normal(sum(sizes))
    runs = seq._Runs(sizes)
    edges = np.cumsum([0, *sizes]).tolist()
    sums, dots = runs.sums(x), runs.dots(x, y)
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        assert sums[i] == float(np.add.reduce(x[a:b]))
        assert dots[i] == float(np.dot(x[a:b], y[a:b]))


def test_mle_rate_ratios_take_each_rows_own_newton_steps():
    """Rows solved together each stop where they would alone, whether their solve takes one
    step (a root at the bracket's end) or many."""
    rng = np.random.default_rng(7)
    w = rng.uniform(0.2, 0.5, (3, 12))
    total = rng.poisson(200, (3, 12)).astype(float)
    k_c = np.floor(total * w * np.array([[1.0], [3.0], [0.0]]))  # even, worse, no canary
    got = seq._mle_rate_ratios(k_c.ravel(), total.ravel(), w.ravel(), seq._Runs([12] * 3))
    want = [seq.mle_rate_ratio(k_c[i], total[i], w[i]) for i in range(3)]
    assert got == want
    assert want[1] > 2.0 and want[2] < 0.01


def _steps(rng, steps, median, bounds):
    counts = np.zeros((steps, len(bounds)))
    for t in range(steps):
        latencies = rng.lognormal(math.log(median), 0.6, rng.poisson(400))
        counts[t] = (latencies[:, None] <= np.asarray(bounds)).sum(axis=0)
    return Histogram.from_steps([(float(le), counts[:, i]) for i, le in enumerate(bounds)])


@pytest.mark.parametrize("seed", range(8))
def test_quantile_evidence_is_each_anchors_path_alone(seed):
    """judge_quantiles computes its quantiles' and anchors' martingales in one call; each
    quantile's evidence is the mean of the two anchors' paths computed one by one, to the bit
    (and one path when both anchors count the same)."""
    rng = np.random.default_rng(4100 + seed)
    bounds = [*DEFAULT_BUCKETS, math.inf] if seed % 2 else [0.05, 0.1, 0.25, 0.5, 1.0, math.inf]
    steps = int(rng.choice([3, 10, 20]))
    canary = _steps(rng, steps, 0.1 * float(rng.choice([1.0, 1.5])), bounds)
    stable = _steps(rng, steps, 0.1, bounds)
    history = _steps(rng, 30, 0.1, bounds) if seed % 3 else None
    qs = [0.95, 0.99]
    checks = hist.judge_quantiles([f"p{q}" for q in qs], canary, stable, qs,
                                  relative_tolerance=0.2, absolute_tolerance=0.005,
                                  min_total=50, min_tail=10.0, mode="sequential",
                                  stable_history=history)
    for q, check in zip(qs, checks, strict=True):
        prior = hist.tail_dispersion_prior(history, stable, q)
        paths = [seq.rate_ratio_log_evidence_path(
            *hist.tail_exceedances(canary, stable, q, 0.2, 0.005, True, 10.0, history, anchor),
            1.0, worse=True, scale=hist.TAIL_MIXTURE_SCALE, dispersion_prior=prior)
            for anchor in ("stable", "canary")]
        path = np.logaddexp(paths[0], paths[1]) - math.log(2)
        want = tuple(np.maximum.accumulate(path).tolist()) if path.size else ()
        assert check.trace is not None
        assert check.trace.evidence == want
