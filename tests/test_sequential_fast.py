"""The blocked, one-logarithm-per-point evidence of `sequential.py` gives the same numbers as
the plain formula it replaced (kept here as the reference), on random inputs of every shape a
rollout produces: idle steps, all-canary or all-stable events, huge and tiny counts, both
directions, long windows that span many blocks. Verdicts built on it therefore do not move."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special, stats

from webhook.judge import judge_quantile, judge_ratio
from webhook.judge import sequential as seq
from webhook.judge.histogram import Histogram
from webhook.lab import DEFAULT_BUCKETS


def reference_path(bad_c, n_c, bad_s, n_s, rho0, worse, scale=seq.MIXTURE_SCALE,
                   dispersion_prior=(seq.DISPERSION_PRIOR, seq.DISPERSION_PRIOR_STEPS)):
    """The implementation before the rewrite: one (θ × steps) array at a time."""
    bad_c, bad_s = np.asarray(bad_c, float), np.asarray(bad_s, float)
    n_c, n_s = np.asarray(n_c, float), np.asarray(n_s, float)
    path = np.zeros(bad_c.size)
    use = (n_c > 0) & (n_s > 0) & ((bad_c + bad_s) > 0)
    if not use.any():
        return path
    k_c, k_s = bad_c[use], bad_s[use]
    w = n_c[use] / (n_c[use] + n_s[use])
    v = n_s[use] / (n_c[use] + n_s[use])
    grid = seq._GRID if worse else -seq._GRID
    rho1 = rho0 * np.exp(grid)[:, None]
    log_norm = np.log(rho1 * w + v) - np.log(rho0 * w + v)
    loglik = k_c * grid[:, None] - (k_c + k_s) * log_norm
    log_prior = stats.halfnorm.logpdf(seq._GRID, scale=scale) + math.log(
        seq._GRID[1] - seq._GRID[0])
    cumulative = np.cumsum(loglik / seq.step_dispersion(k_c, k_s, w, *dispersion_prior), axis=1)
    terms = cumulative + log_prior[:, None]
    top = terms.max(axis=0)
    values = top + np.log(np.exp(terms - top).sum(axis=0))
    index = np.maximum.accumulate(np.where(use, np.arange(bad_c.size), -1))
    return np.where(index >= 0, values[np.maximum(np.cumsum(use) - 1, 0)], 0.0)


def random_counts(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, ...]:
    rate = rng.choice([0.5, 20, 500, 20000])
    share = rng.uniform(0.01, 0.9)
    n_c = rng.poisson(rate * share, steps).astype(float)
    n_s = rng.poisson(rate * (1 - share), steps).astype(float)
    p_s = rng.choice([0.0, 1e-4, 0.01, 0.3])
    p_c = min(p_s * rng.choice([0.5, 1.0, 2.0, 5.0]) + rng.choice([0.0, 0.01]), 1.0)
    bad_c = rng.binomial(n_c.astype(int), p_c).astype(float)
    bad_s = rng.binomial(n_s.astype(int), p_s).astype(float)
    idle = rng.random(steps) < rng.choice([0.0, 0.3])
    n_c[idle] = 0.0
    bad_c[idle] = 0.0
    return bad_c, n_c, bad_s, n_s


@pytest.mark.parametrize("seed", range(40))
def test_evidence_path_equals_the_reference(seed):
    rng = np.random.default_rng(seed)
    steps = int(rng.choice([1, 2, 7, 255, 256, 257, 1000, 3000]))
    bad_c, n_c, bad_s, n_s = random_counts(rng, steps)
    rho0 = float(rng.choice([1.0, 1.2, 2.0]))
    prior = (float(rng.uniform(0, 1)), float(rng.uniform(1, 60)))
    scale = float(rng.choice([seq.MIXTURE_SCALE, 1.5]))
    for worse in (True, False):
        want = reference_path(bad_c, n_c, bad_s, n_s, rho0, worse, scale, prior)
        got = seq.rate_ratio_log_evidence_path(bad_c, n_c, bad_s, n_s, rho0, worse, scale, prior)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)
        last = seq.rate_ratio_log_evidence(bad_c, n_c, bad_s, n_s, rho0, worse, prior, scale)
        assert last == pytest.approx(float(want[-1]) if want.size else 0.0, rel=1e-9, abs=1e-8)


def test_no_counting_step_is_no_evidence():
    zeros = np.zeros(5)
    ones = np.ones(5)
    assert not seq.rate_ratio_log_evidence_path(zeros, ones, zeros, ones, 1.2, True).any()
    assert seq.rate_ratio_log_evidence(zeros, ones, zeros, ones, 1.2, False) == 0.0


def _reference_judges(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    """The same judge with the reference formula swapped in."""
    with monkeypatch.context() as m:
        m.setattr(seq, "rate_ratio_log_evidence_path", reference_path)
        m.setattr(seq, "rate_ratio_log_evidence",
                  lambda *a, **k: float(reference_path(*a, **k)[-1]))
        m.setattr(seq, "rate_ratio_log_evidence_both", lambda *a, dispersion_prior, **k: (
            reference_path(*a, True, dispersion_prior=dispersion_prior),
            float(reference_path(*a, False, dispersion_prior=dispersion_prior)[-1])))
        return args[0](*args[1:], **kwargs)


@pytest.mark.parametrize("seed", range(12))
def test_ratio_verdicts_unchanged(monkeypatch, seed):
    rng = np.random.default_rng(100 + seed)
    bad_c, n_c, bad_s, n_s = random_counts(rng, int(rng.choice([30, 600])))
    direction = str(rng.choice(["increase", "decrease", "either"]))
    kw = dict(direction=direction, relative_tolerance=0.2, mode="sequential", min_total=10)
    got = judge_ratio("e", bad_c, n_c, bad_s, n_s, **kw)
    want = _reference_judges(monkeypatch, judge_ratio, "e", bad_c, n_c, bad_s, n_s, **kw)
    assert (got.verdict, got.reason) == (want.verdict, want.reason)
    assert (got.trace is None) == (want.trace is None)
    if want.trace is not None:
        assert got.p_value == pytest.approx(want.p_value, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(got.trace.evidence, want.trace.evidence, rtol=1e-9,
                                   atol=1e-8)


def _steps(rng: np.random.Generator, steps: int, scale: float) -> list[tuple[float, np.ndarray]]:
    # with the +Inf bucket: without it a histogram cannot be read (inconclusive)
    bounds = np.asarray([*DEFAULT_BUCKETS, math.inf], float)
    counts = np.zeros((steps, bounds.size))
    for t in range(steps):
        latencies = rng.lognormal(math.log(0.1 * scale), 0.6, rng.poisson(200))
        counts[t] = (latencies[:, None] <= bounds).sum(axis=0)
    return [(float(le), counts[:, i]) for i, le in enumerate(bounds)]


@pytest.mark.parametrize("seed", range(6))
def test_quantile_verdicts_unchanged(monkeypatch, seed):
    rng = np.random.default_rng(200 + seed)
    canary = Histogram.from_steps(_steps(rng, 40, float(rng.choice([1.0, 1.3]))))
    stable = Histogram.from_steps(_steps(rng, 40, 1.0))
    kw = dict(alpha=0.05, mode="sequential", relative_tolerance=0.1)
    got = judge_quantile("p", canary, stable, 0.99, **kw)
    want = _reference_judges(monkeypatch, judge_quantile, "p", canary, stable, 0.99, **kw)
    assert (got.verdict, got.reason) == (want.verdict, want.reason)
    assert got.trace is not None and want.trace is not None
    np.testing.assert_allclose(got.trace.evidence, want.trace.evidence, rtol=1e-9, atol=1e-8)


def _extended_path(bad_c, n_c, bad_s, n_s, rho0, worse):
    """The reference formula in 80-bit long doubles: closer to the exact value than either
    float64 formula when the counts are huge."""
    ld = np.longdouble
    k_c, k_s = bad_c.astype(ld), bad_s.astype(ld)
    w, v = n_c.astype(ld) / (n_c + n_s).astype(ld), n_s.astype(ld) / (n_c + n_s).astype(ld)
    grid = (seq._GRID if worse else -seq._GRID).astype(ld)
    rho1 = ld(rho0) * np.exp(grid)[:, None]
    log_norm = np.log(rho1 * w + v) - np.log(ld(rho0) * w + v)
    loglik = k_c * grid[:, None] - (k_c + k_s) * log_norm
    phi = seq.step_dispersion(bad_c, bad_s, n_c / (n_c + n_s)).astype(ld)
    prior = stats.halfnorm.logpdf(seq._GRID, scale=seq.MIXTURE_SCALE) + math.log(
        seq._GRID[1] - seq._GRID[0])
    terms = np.cumsum(loglik / phi, axis=1) + prior.astype(ld)[:, None]
    top = terms.max(axis=0)
    return (top + np.log(np.exp(terms - top).sum(axis=0))).astype(float)


def test_huge_counts_at_least_as_accurate_as_the_reference():
    """w within 1e-12 of 1 (1e14 canary requests a step, a trickle of stable) and 1e12 bad
    events a step: every step's log-likelihood is a difference of two terms of ~1e12, so both
    float64 formulas carry rounding; the new one is no further from the long-double value."""
    steps = 600
    n_c, n_s = np.full(steps, 1e14), np.full(steps, 3.0)
    bad_c, bad_s = np.full(steps, 1e12), np.ones(steps)
    for worse in (True, False):
        exact = _extended_path(bad_c, n_c, bad_s, n_s, 1.2, worse)
        old = reference_path(bad_c, n_c, bad_s, n_s, 1.2, worse)
        new = seq.rate_ratio_log_evidence_path(bad_c, n_c, bad_s, n_s, 1.2, worse)
        assert np.isfinite(new).all()
        assert np.abs(new - exact).max() <= np.abs(old - exact).max()


# The scalar solvers before they were made cheaper. proportion_cs evaluates the same function
# operation for operation, so scipy's brentq must take the same steps and return the same
# bits. mle_rate_ratio now solves by Newton's method instead of brentq at xtol 1e-6: it lands
# closer to the exact root (brentq stopped up to ~4e-5 from it in log ρ), so it is compared
# with the reference within brentq's slack and must leave no larger a residual.
def reference_mle_rate_ratio(k_c, total, w):
    k_c, total = np.asarray(k_c, float), np.asarray(total, float)
    observed = float(k_c.sum()) + 0.5

    def score(log_rho):
        shares = seq.share_at(math.exp(log_rho), w)
        return observed - float((total * shares).sum()) - float(shares.mean())

    if score(-20.0) <= 0:
        return math.exp(-20.0)
    if score(20.0) >= 0:
        return math.exp(20.0)
    return math.exp(optimize.brentq(score, -20.0, 20.0, xtol=1e-6))


def reference_proportion_cs(k, n, alpha, a=0.5, b=0.5):
    if n <= 0:
        return 0.0, 1.0
    log_mix = special.betaln(a + k, b + n - k) - special.betaln(a, b)
    bound = math.log(1 / alpha)

    def excess(p):
        return log_mix - (special.xlogy(k, p) + special.xlog1py(n - k, -p)) - bound

    tiny = 1e-300
    mle = min(max(k / n, tiny), 1 - 1e-15)
    if not excess(mle) < 0:
        return mle, mle
    low = optimize.brentq(excess, tiny, mle) if k > 0 and excess(tiny) > 0 else 0.0
    high = (optimize.brentq(excess, mle, 1 - 1e-15)
            if k < n and excess(1 - 1e-15) > 0 else 1.0)
    return low, high


def _score_long_double(rho, k_c, total, w):
    """The score of `mle_rate_ratio` in 80-bit long doubles: how far from the root ρ is."""
    ld = np.longdouble
    x, r = np.asarray(w, float).astype(ld), ld(rho)
    shares = r * x / (r * x + 1 - x)
    return abs(float(ld(np.sum(k_c)) + ld(0.5)
                     - ((total.astype(ld) + ld(1) / x.size) * shares).sum()))


@pytest.mark.parametrize("seed", range(30))
def test_mle_rate_ratio_is_the_reference_or_closer_to_the_root(seed):
    rng = np.random.default_rng(300 + seed)
    steps = int(rng.choice([1, 2, 5, 180, 3000]))
    total = rng.poisson(rng.choice([0.3, 3.0, 50.0, 5000.0, 1e9]), steps).astype(float)
    share = rng.uniform(0, 1)
    k_c = rng.binomial(total.astype(np.int64), share).astype(float)
    w = rng.uniform(1e-6, 1 - 1e-6, steps)
    if seed % 5 == 0:
        k_c[:] = 0.0  # all-stable
    if seed % 7 == 0:
        k_c = total.copy()  # all-canary
    got, want = seq.mle_rate_ratio(k_c, total, w), reference_mle_rate_ratio(k_c, total, w)
    assert math.log(got) == pytest.approx(math.log(want), abs=1e-4)
    if want not in (math.exp(-20.0), math.exp(20.0)):  # at the clamp both return it exactly
        assert (_score_long_double(got, k_c, total, w)
                <= _score_long_double(want, k_c, total, w) + 1e-9 * (1 + float(total.sum())))
    else:
        assert got == want


def test_proportion_cs_is_the_reference_to_the_bit():
    rng = np.random.default_rng(5)
    cases = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 1e6), (3.0, 10.0), (5e14, 9e14),
             (1.0, 1e15), (7.0, 7.0)]
    for _ in range(300):
        n = float(rng.choice([1, 10, 1000, 1e6, 1e12])) * rng.uniform(0.5, 2)
        n = float(round(n))
        cases.append((float(rng.binomial(int(min(n, 1e15)), rng.choice([0.0, 1e-4, 0.01, 0.5]))),
                      n))
    for k, n in cases:
        for alpha in (0.05, 0.005, 0.2):
            assert seq.proportion_cs(k, n, alpha) == reference_proportion_cs(k, n, alpha), (k, n)


@pytest.mark.parametrize("seed", range(8))
def test_both_evidences_equal_the_reference(seed):
    rng = np.random.default_rng(700 + seed)
    bad_c, n_c, bad_s, n_s = random_counts(rng, int(rng.choice([1, 16, 17, 180, 2000])))
    prior = (float(rng.uniform(0, 1)), float(rng.uniform(1, 60)))
    path, last = seq.rate_ratio_log_evidence_both(bad_c, n_c, bad_s, n_s, 1.2, prior)
    np.testing.assert_allclose(path, reference_path(bad_c, n_c, bad_s, n_s, 1.2, True,
                                                    dispersion_prior=prior),
                               rtol=1e-9, atol=1e-8)
    want = reference_path(bad_c, n_c, bad_s, n_s, 1.2, False, dispersion_prior=prior)
    assert last == pytest.approx(float(want[-1]) if want.size else 0.0, rel=1e-9, abs=1e-8)


@pytest.mark.parametrize("change", ["worse", "better", "swing"])
def test_band_follows_a_regime_change(change):
    """The evidence's band of θ narrows around the first regime, then the canary changes:
    columns left behind must catch up and the band must widen, every step still exact."""
    rng = np.random.default_rng({"worse": 1, "better": 2, "swing": 3}[change])
    steps = 6000
    n_c = rng.poisson(600, steps).astype(float)
    n_s = rng.poisson(1200, steps).astype(float)
    p_c = np.full(steps, 0.01)
    if change == "worse":
        p_c[3000:] = 0.05
    elif change == "better":
        p_c[:3000] = 0.05
    else:
        p_c[1500:3000], p_c[4500:] = 0.04, 0.002
    bad_c = rng.binomial(n_c.astype(int), p_c).astype(float)
    bad_s = rng.binomial(n_s.astype(int), 0.01).astype(float)
    for worse in (True, False):
        for scale in (seq.MIXTURE_SCALE, 0.2):
            want = reference_path(bad_c, n_c, bad_s, n_s, 1.2, worse, scale)
            got = seq.rate_ratio_log_evidence_path(bad_c, n_c, bad_s, n_s, 1.2, worse, scale)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)


def test_eleven_thousand_steps_equal_the_reference():
    """Prometheus' longest answer, many blocks of a narrow band."""
    rng = np.random.default_rng(11)
    bad_c, n_c, bad_s, n_s = random_counts(rng, 11000)
    for worse in (True, False):
        want = reference_path(bad_c, n_c, bad_s, n_s, 1.0, worse)
        got = seq.rate_ratio_log_evidence_path(bad_c, n_c, bad_s, n_s, 1.0, worse)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)


def test_huge_counts_final_evidence_as_accurate_as_the_reference():
    """The window's final evidence of a short window (one matrix-vector product over the
    steps) against the long-double value, as in the path's test above."""
    steps = 200
    n_c, n_s = np.full(steps, 1e14), np.full(steps, 3.0)
    bad_c, bad_s = np.full(steps, 1e12), np.ones(steps)
    for worse in (True, False):
        exact = _extended_path(bad_c, n_c, bad_s, n_s, 1.2, worse)[-1]
        old = reference_path(bad_c, n_c, bad_s, n_s, 1.2, worse)[-1]
        new = seq.rate_ratio_log_evidence(bad_c, n_c, bad_s, n_s, 1.2, worse)
        assert math.isfinite(new)
        assert abs(new - exact) <= max(abs(old - exact), 1e-12 * abs(exact))


@pytest.mark.parametrize("seed", range(12))
def test_evidence_with_the_newton_dispersion_is_the_brentq_one_within_1e_5(monkeypatch, seed):
    """The dispersion's pooled share now comes from the exact root (Newton) instead of
    brentq's (xtol 1e-6): the evidence and the p-values built on it move by less than 1e-5
    relative."""
    rng = np.random.default_rng(900 + seed)
    bad_c, n_c, bad_s, n_s = random_counts(rng, int(rng.choice([5, 30, 600, 3000])))
    kw = dict(direction="increase", relative_tolerance=0.2, mode="sequential", min_total=10)
    paths = [seq.rate_ratio_log_evidence_path(bad_c, n_c, bad_s, n_s, 1.2, worse)
             for worse in (True, False)]
    got = judge_ratio("e", bad_c, n_c, bad_s, n_s, **kw)
    with monkeypatch.context() as m:
        m.setattr(seq, "mle_rate_ratio", reference_mle_rate_ratio)
        want_paths = [seq.rate_ratio_log_evidence_path(bad_c, n_c, bad_s, n_s, 1.2, worse)
                      for worse in (True, False)]
        want = judge_ratio("e", bad_c, n_c, bad_s, n_s, **kw)
    for path, want_path in zip(paths, want_paths, strict=True):
        np.testing.assert_allclose(path, want_path, rtol=1e-5, atol=1e-9)
    assert got.verdict == want.verdict
    assert got.p_value == pytest.approx(want.p_value, rel=1e-5, abs=1e-12)


def reference_history_dispersion(events, totals):
    k = np.nan_to_num(np.asarray(events, float), nan=0.0, posinf=0.0)
    n = np.nan_to_num(np.asarray(totals, float), nan=0.0, posinf=0.0)
    ok = (n > 0) & (k >= 0) & (k <= n)
    m = int(ok.sum())
    if m < seq.HISTORY_MIN_STEPS or k[ok].sum() <= 0:
        return None
    k, n = k[ok], n[ok]
    mu = n * float(k.sum()) / float(n.sum())
    pearson = float(((k - mu) ** 2 / mu).sum())
    delta = max(0.0, (pearson - (m - 1)) / float(mu.sum()))
    return 2.0 * delta, float(min(m, seq.HISTORY_STEPS))


@pytest.mark.parametrize("seed", range(20))
def test_history_dispersion_is_the_reference(seed):
    rng = np.random.default_rng(1100 + seed)
    steps = int(rng.choice([3, 8, 60]))
    n = rng.poisson(rng.choice([5.0, 500.0]), steps).astype(float)
    k = rng.binomial(n.astype(np.int64), 0.05).astype(float)
    for arr in (k, n):
        hit = rng.random(steps) < 0.2
        arr[hit] = rng.choice([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e6], hit.sum())
    assert seq.history_dispersion(k, n) == reference_history_dispersion(k, n)


@pytest.mark.parametrize("size", [0, 1, 8192, 8193, 11000, 30000])
def test_dot_is_numpys_dot_on_long_vectors(size):
    """`_dot` keeps long products off OpenBLAS's threads, chunk by chunk: the same number."""
    rng = np.random.default_rng(size)
    x, y = rng.uniform(0, 1e6, size), rng.uniform(0, 1, size)
    assert seq._dot(x, y) == pytest.approx(float(np.dot(x, y)), rel=1e-12, abs=0.0)


def _whole_grid_final(t) -> float:
    """The window's final evidence summed over every θ of the grid (the straightforward way)."""
    e = t.log_prior + seq._terms_at(t, 0, t.a.size, slice(None)).sum(axis=1)
    top = float(e.max())
    return top + math.log(float(np.exp(e - top).sum()))


@pytest.mark.parametrize("seed", range(40))
def test_final_evidence_on_its_band_is_the_whole_grids(seed):
    """`_final_log_evidence` sums only the rows of θ its coarse pass keeps: the same number
    as all 160, whether the best θ is inside the grid, at either end, or the data are thin."""
    rng = np.random.default_rng(900 + seed)
    steps = int(rng.choice([1, 3, 40, 180, 256]))
    bad_c, n_c, bad_s, n_s = random_counts(rng, steps)
    if seed % 4 == 0:  # a canary far worse than the grid reaches: the best θ at its end
        bad_c = np.minimum(n_c, bad_c * 50 + 5)
    for worse in (True, False):
        for rho0 in (1.0, 1.2):
            t = seq._step_terms(bad_c, n_c, bad_s, n_s, rho0, worse, seq.MIXTURE_SCALE,
                                (seq.DISPERSION_PRIOR, seq.DISPERSION_PRIOR_STEPS))
            if t is None:
                continue
            assert seq._final_log_evidence(t) == pytest.approx(_whole_grid_final(t), rel=1e-12,
                                                               abs=1e-12)




@pytest.mark.parametrize("seed", range(16))
def test_ratio_check_passes_by_the_interval_or_the_mirrored_evidence(seed):
    """The sequential ratio judge computes the passing side's evidence only when the interval
    has not already shown the canary within tolerance: its verdict is still "pass exactly
    when, for every harmful direction, the Newcombe interval or the mirrored evidence says
    within tolerance" (both computed here in full), unless it failed."""
    from webhook.judge.ratio import _clean_steps, newcombe_interval
    from webhook.judge.tails import norm_isf

    rng = np.random.default_rng(1600 + seed)
    bad_c, n_c, bad_s, n_s = random_counts(rng, int(rng.choice([30, 180, 600])))
    if seed % 2:  # equal error rates: thin (inconclusive) to plenty (passes on evidence)
        steps, rate = int(rng.choice([20, 200, 2000])), float(rng.choice([30, 300, 3000]))
        n_c, n_s = rng.poisson(rate, steps).astype(float), rng.poisson(rate, steps).astype(float)
        bad_c = rng.binomial(n_c.astype(int), 0.02).astype(float)
        bad_s = rng.binomial(n_s.astype(int), 0.02).astype(float)
    direction = ["increase", "decrease", "either"][seed % 3]
    alpha, rel, abs_ = 0.05, 0.2, 0.002
    got = judge_ratio("e", bad_c, n_c, bad_s, n_s, direction=direction, relative_tolerance=rel,
                      absolute_tolerance=abs_, alpha=alpha, mode="sequential", min_total=10)
    if got.verdict == "fail" or got.reason.startswith("e: too little data"):
        return
    (t_c, e_c), (t_s, e_s) = _clean_steps(bad_c, n_c), _clean_steps(bad_s, n_s)
    allowed = max(rel * e_s.sum() / t_s.sum(), abs_)
    harms = {"increase": [(e_c, e_s)], "decrease": [(t_c - e_c, t_s - e_s)]}
    harms["either"] = harms["increase"] + harms["decrease"]
    a = alpha / len(harms[direction])
    within = True
    for h_c, h_s in harms[direction]:
        _, high = newcombe_interval(h_c.sum(), t_c.sum(), h_s.sum(), t_s.sum(), norm_isf(a))
        log_pass = seq.rate_ratio_log_evidence(h_c, t_c, h_s, t_s, 1 + rel, worse=False)
        within = within and (high <= allowed or log_pass >= math.log(1 / a))
    assert got.verdict == ("pass" if within else "inconclusive")
