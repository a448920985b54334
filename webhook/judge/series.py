"""Per-step series (gauges, rates, quantiles from PromQL) compared without pretending the
samples are independent.

Samples one step apart are strongly autocorrelated (a CPU gauge, a 5-minute rate), and Kayenta's
Mann-Whitney test fails many A/A comparisons on such data (bench/detection). Here the two sides
are compared as paired differences d_t = canary_t − stable_t on the shared time grid, which also
cancels what both sides see at once (a traffic wave, a dependency's slowness). The mean of d is
tested with a t interval on the effective number of independent samples of an AR(1) process
(Zwiers & von Storch, "Taking serial correlation into account in tests of the mean", Journal of
Climate 8, 1995), computed at an upper confidence bound for the lag-1 autocorrelation φ rather
than at its point estimate (`autocorrelation_upper_bound` says why), with the variance of the
mean estimated without the downward bias of s² under autocorrelation (`variance_divisor`) and
the degrees of freedom of that s² (`variance_df`). There is no floor on the effective sample
size: a window worth few independent samples has a large variance and few degrees of freedom,
so only a large shift can fail it (and only a window worth at most one sample is inconclusive
outright). In sequential mode the stable's values before the analysis start, which the
sequential lookback fetches anyway, pin down the autocorrelation and the spread
(`mean_variance`; for per-instance series, the stable's instances against each other, which
cancel a market or a traffic wave both sides share as d does), so a 5 sd shift of an i.i.d.
or mildly autocorrelated gauge fails within about 20 points (5 minutes at a 15 s `step`)
while A/A stays below alpha at φ up to 0.95.

Tolerance and tri-state decision as for the other kinds. In sequential mode the fail side uses
the normal-mixture SPRT on the mean difference with the same variance, its boundary moved to
the Student t quantile of the same tail probability because that variance is estimated
(Jennison & Turnbull, "Group Sequential Methods with Applications to Clinical Trials", 2000,
§3.8), and a tighter bound for φ, as its guarantee covers every poll; passing stays at the
fixed-horizon level.

Measured (tests/test_metric_kinds.py pins the key cells): on A/A pairs of AR(1) gauges with
φ in {0, 0.5, 0.8, 0.95}, false failures stay below alpha (0.05 and 0.01) for one look at n =
20…120 steps, and, in sequential mode, over every look from 20 to 120 steps of one growing
series. The price is honesty on short correlated series: at φ = 0.8 twenty steps are worth
about two independent samples, and the answer there is mostly "inconclusive".
"""

from __future__ import annotations

import math

import numpy as np

from webhook.judge import kayenta
from webhook.judge.tails import norm_isf, norm_sf, t_isf, t_sf
from webhook.judge.types import CheckResult, Summary, fmt_value, tri_state

TEST_NAME = "paired differences, t interval on the AR(1) effective sample size"
PHI_MAX = 0.99
# How often the upper bound for φ may fall below the true φ, per unit of the test's one-sided
# level, capped at the usual 5 % (see `autocorrelation_upper_bound`).
BOUND_MISS_PER_ALPHA = {"fixed": 5.0, "sequential": 1.0}
BOUND_MISS_MAX = 0.05


def autocorrelation_upper_bound(d: np.ndarray, miss: float = BOUND_MISS_MAX) -> float:
    """One-sided upper confidence bound, wrong with probability about `miss`, for the lag-1
    autocorrelation φ of `d`; 0 for white noise or too few points to say anything.

    Why a bound and not the estimate: the textbook n (1 − φ̂)/(1 + φ̂) at the bias-corrected
    estimate φ̂ (Zwiers & von Storch 1995) failed healthy canaries far above alpha (3.5 % at
    alpha 0.01 for φ = 0.8 and 20 steps; 14 % over the polls of a sequential analysis at
    φ = 0.95). φ̂ is very uncertain on a short series (sd about sqrt((1 − φ²)/n), 0.13 at φ = 0.8
    and n = 20), and its low draws come with exactly the windows that look like a shift: a slow
    wander that stays on one side looks, inside the window, like a level offset plus little
    noise. So the mean is judged at the worst autocorrelation the data do not rule out:
    maximising the p-value over a confidence set for a nuisance parameter is the construction
    of Berger & Boos, "P values maximized over a confidence set for the nuisance parameter",
    JASA 89, 1994, and the p-value grows with φ, so the maximum is at the bound.

    The bound is φ⁺ = φ̃ + z sqrt((1 − φ̃²)/n), z the normal quantile of 1 − miss, clipped to
    [0, PHI_MAX], after Kendall's bias correction E[φ̂] ≈ φ − (1 + 3φ)/n solved for φ,
    φ̃ = (n φ̂ + 1)/(n − 3) (Kendall 1954; Marriott & Pope, Biometrika 41, 1954).

    Why `miss` scales with alpha (BOUND_MISS_PER_ALPHA): a slow series whose window happens to
    look white then fails at almost any alpha, so those failures are not bounded by alpha but
    by how often the bound misses (Berger & Boos: level ≤ alpha + miss). Measured on AR(1)
    gauges with φ up to 0.98: one look stays below alpha with miss = 5·alpha (capped at 5 %),
    while a sequential analysis, whose misses accumulate over the polls, needs miss = alpha
    (at alpha 0.01 a 95 % bound let 2 % of φ = 0.95 A/A series fail by 120 steps).
    """
    n = d.size
    centred = d - d.mean()
    denom = float((centred * centred).sum())
    if n < 4 or denom == 0 or not math.isfinite(denom):
        return 0.0
    raw = float((centred[1:] * centred[:-1]).sum()) / denom
    corrected = min(max((n * raw + 1) / (n - 3), -PHI_MAX), PHI_MAX)
    z = norm_isf(miss)
    return min(max(corrected + z * math.sqrt((1 - corrected * corrected) / n), 0.0), PHI_MAX)


def ar1_effective_size(n: int, phi: float) -> float:
    """n_e with Var(mean) = σ²/n_e for n points of an AR(1) with lag-1 autocorrelation phi:
    n/(1 + 2 Σ_{k<n} (1 − k/n) φ^k) (Bayley & Hammersley, "The effective number of independent
    observations in an autocorrelated time series", JRSS B 8, 1946), not the large-n
    n (1 − φ)/(1 + φ), which overstates it on short series."""
    if phi <= 0.0 or n < 2:
        return float(n)
    inflation = 1 + 2 * (phi / (1 - phi) - phi * (1 - phi**n) / (n * (1 - phi) ** 2))
    return n / inflation


def effective_sample_size(d: np.ndarray, miss: float = BOUND_MISS_MAX) -> float:
    """How many independent samples `d` is worth for its mean, judged cautiously: the AR(1)
    effective size at the upper confidence bound of φ (`autocorrelation_upper_bound` says why).

    On white noise the 95 % bound costs about half the samples at n = 20 and a quarter at
    n = 120: the price of not being fooled by a slow series with the same 20 points.
    """
    return ar1_effective_size(d.size, autocorrelation_upper_bound(d, miss))


def variance_divisor(n: int, n_eff: float) -> float:
    """m with s²/m an unbiased estimate of Var(mean) for n autocorrelated points worth n_eff
    independent ones (s² the sample variance, ddof 1).

    Under positive autocorrelation s² itself is biased low, E[s²] = σ² (n − n/n_eff)/(n − 1), so
    s²/n_eff understates the variance; the unbiased estimate is s² (n − 1)/(n (n_eff − 1))
    (Zięba, "Effective number of observations and unbiased estimators of variance for
    autocorrelated data", Metrology and Measurement Systems 17, 2010). m = n for white noise.
    """
    if n < 2 or n_eff >= n:
        return float(n)
    return max(n * (n_eff - 1) / (n - 1), 0.0)


def variance_df(n: int, phi: float) -> float:
    """Degrees of freedom of the sample variance of n AR(1) points, n (1 − φ²)/(1 + φ²) − 1:
    Var(s²) ≈ 2σ⁴ (1 + φ²)/(n (1 − φ²)) (Bartlett 1946), matched to a scaled χ². n − 1 for
    white noise; at least 1."""
    return max(n * (1 - phi * phi) / (1 + phi * phi) - 1, 1.0)


def _student_boundary(normal_critical: float, df: float) -> float:
    """The t quantile (df degrees of freedom) with the tail probability of a normal critical
    value: a boundary derived for a known variance, used with an estimated one (Jennison &
    Turnbull 2000, §3.8).

    A t quantile is never below the normal one of the same upper tail. Far out (tails below
    about 1e-230 at 3 to 20 degrees of freedom: a mixture boundary 33 to 38 standard errors
    out, when the tolerance is small next to the noise) scipy's t quantile comes back -inf or
    negative; read as a boundary, that put the interval at (inf, -inf) and failed any canary,
    one below stable's too. The true quantile there is beyond 1e15 standard errors: no data
    cross it, +inf."""
    boundary = t_isf(norm_sf(normal_critical), df)
    return boundary if boundary >= normal_critical else math.inf


def _normal_equivalent(statistic: float, df: float) -> float:
    """Inverse of `_student_boundary`: the normal score with the tail probability of a t."""
    return norm_isf(t_sf(statistic, df))


def msprt_p_value(excess: float, variance: float, scale: float) -> float:
    """Anytime-valid p-value 1/Λ of the normal-mixture SPRT for "mean excess ≤ 0".

    Λ = sqrt(V/(V+τ²)) · exp(τ² x² / (2 V (V+τ²))) with V the variance of the mean and τ the
    mixture scale (Robbins 1970; Johari et al., "Always valid inference: continuous monitoring
    of A/B tests", Operations Research 70, 2022). Only an excess above 0 is evidence.
    """
    if excess <= 0:
        return 1.0
    if variance <= 0:
        return 0.0
    t2 = scale * scale
    log_lambda = 0.5 * math.log(variance / (variance + t2)) + t2 * excess * excess / (
        2 * variance * (variance + t2))
    return float(min(1.0, math.exp(-log_lambda)))


def msprt_half_width(variance: float, scale: float, alpha: float) -> float:
    """Half-width of the confidence sequence {θ : Λ(θ) < 1/alpha} around the mean."""
    if variance <= 0:
        return 0.0
    t2 = scale * scale
    need = math.log(1 / alpha) - 0.5 * math.log(variance / (variance + t2))
    return math.sqrt(2 * variance * (variance + t2) / t2 * need)


HISTORY_MIN_POINTS = 20


def instance_noise(instances: np.ndarray, miss: float) -> tuple[float, float, float] | None:
    """(variance σ² of one instance's own part, its degrees of freedom, upper bound φ⁺ of its
    lag-1 autocorrelation) from the stable's instances against each other, or None when fewer
    than HISTORY_MIN_POINTS steps have two instances or more.

    Why instances against each other: under the null the canary is one more instance of the
    same service, so what both sides share (the market, a traffic wave) cancels in d, and
    what is left is the instances' own parts, σ² (1/k_canary + 1/k_stable) a step. The
    stable's level carries the shared part, its swings and its slow autocorrelation; its
    instances' deviations from their step's mean do not, and they are an A/A difference
    of the same kind as d. Per step, Σ_j (x_j − x̄)² / (k − 1) estimates σ² (k − 1 degrees of
    freedom); the deviations, rescaled by sqrt(k/(k − 1)) to σ² each, give φ about a known
    mean of 0, not each instance's own time mean: an instance that stays apart from the
    others (uneven load) then reads as persistent, which errs on the cautious side.
    """
    x = np.asarray(instances, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2:
        return None
    present, k, zeroed, mean = _per_step(x)
    usable = k >= 2
    if int(usable.sum()) < HISTORY_MIN_POINTS:
        return None
    deviations = np.where(present & usable, zeroed - mean, 0.0)
    dims = float((k[usable] - 1).sum())
    sigma2 = float((deviations * deviations).sum()) / dims
    if not sigma2 > 0 or not math.isfinite(sigma2):
        return None
    u = deviations * np.sqrt(k / np.maximum(k - 1, 1))
    both = (present & usable)[:, 1:] & (present & usable)[:, :-1]
    lagged = float(np.where(both, u[:, 1:] * u[:, :-1], 0.0).sum())
    squares = float(np.where(both, (u[:, 1:] ** 2 + u[:, :-1] ** 2) / 2, 0.0).sum())
    m = int(usable.sum())
    raw = lagged / squares if squares > 0 else 0.0
    # Kendall's correction for an estimated mean over-corrects a known one: cautious.
    corrected = min(max((m * raw + 1) / (m - 3), -PHI_MAX), PHI_MAX)
    phi = min(max(corrected + norm_isf(miss) * math.sqrt((1 - corrected * corrected) / dims),
                  0.0), PHI_MAX)
    return sigma2, max(dims * (1 - phi * phi) / (1 + phi * phi), 1.0), phi


def _per_step(instances: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per step of one row per instance (NaN: no sample): which are present, how many, the
    values with absent ones as 0, and the present ones' mean (0 where none is)."""
    present = np.isfinite(instances)
    count = present.sum(axis=0)
    zeroed = np.where(present, instances, 0.0)
    return present, count, zeroed, zeroed.sum(axis=0) / np.maximum(count, 1)


def mean_variance(d: np.ndarray, miss: float, history: np.ndarray | None = None,
                  instances: tuple[np.ndarray, float, float] | None = None
                  ) -> tuple[float, float, float] | None:
    """(variance of the mean of `d`, its degrees of freedom, effective sample size), or None
    when the window alone is worth at most one independent sample.

    Without history: the AR(1) variance of the mean at the upper confidence bound φ⁺ for the
    window's own autocorrelation (`autocorrelation_upper_bound`), from the window's s²
    corrected for autocorrelation (`variance_divisor`), with `variance_df` degrees of freedom.
    On a short window that bound is necessarily high (at 10 white-noise points about 0.5, so
    10 points count as about 4), which makes large shifts wait.

    With the stable's history (at least HISTORY_MIN_POINTS values before the start), φ⁺ comes
    from that long series instead, and the marginal variance of d is pooled from the window's
    (corrected at that φ⁺) and twice the stable's own marginal variance (d is a difference of
    two such series), weighted by their degrees of freedom (Bartlett's `variance_df`): the
    uncertainty about the autocorrelation and the spread enters the test through one variance
    and its degrees of freedom, no floor. This assumes the canary's gauge wanders like the
    stable's, which holds under the null of an unchanged canary; a noisier canary still
    raises the pooled variance through its own window. A slow wave shared by both sides makes
    the stable look more autocorrelated than d, which errs on the cautious side, but so far
    that a healthy canary could not pass while a market moved.

    With the stable's instances (`instances`: their values over the history and the window,
    one row each, and the mean over the window's steps of 1/k_canary + 1/k_stable), φ⁺ and
    the spread come from the instances against each other (`instance_noise`), which cancel
    the shared swings as d does: σ² times that mean is d's marginal variance under the null,
    pooled with the window's as above. Fewer than two stable instances, or too few steps with
    two: the stable's history as above.

    A relative tolerance is a share of stable's window mean, which does carry the shared
    swings: a canary exactly at it is judged on canary − (1 + share) × stable, which keeps
    share × the market. So with instances and a relative tolerance, share² × the variance of
    the mean of the stable's level (its own φ⁺ and spread, `_level_mean_variance`) is added,
    the degrees of freedom by Welch-Satterthwaite. Without it 11 % of the trading bench's
    canaries at every tolerance at the open failed, on market impact (tolerance ×1.5).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a corrupt series: caught by the caller
        return _mean_variance(d, miss, history, instances)


def _marginal_variance(x: np.ndarray, n_eff: float) -> float:
    """σ² of n autocorrelated points worth n_eff independent ones, from their s² (ddof 1),
    which is biased low by (n − n/n_eff)/(n − 1) (`variance_divisor`)."""
    n = x.size
    return float(x.var(ddof=1)) * (n - 1) / (n - n / n_eff)


def _at_bound(series: np.ndarray, miss: float) -> tuple[float, float, float] | None:
    """A long series' (the stable's history, its level) marginal variance at the upper bound
    φ⁺ of its autocorrelation, φ⁺, and that variance's degrees of freedom; None when the series
    is worth at most one independent sample."""
    m = series.size
    phi = autocorrelation_upper_bound(series, miss)
    m_eff = ar1_effective_size(m, phi)
    if m_eff <= 1:
        return None
    return _marginal_variance(series, m_eff), phi, variance_df(m, phi)


def _pooled(d: np.ndarray, phi: float, prior: tuple[float, float]
            ) -> tuple[float, float, float]:
    """The variance of d's mean at φ, its marginal variance pooled from `prior` (degrees of
    freedom, variance) and the window's own, corrected at φ (`mean_variance`)."""
    n = d.size
    parts = [prior]
    n_eff = ar1_effective_size(n, phi)
    if n >= 2 and n_eff > 1:
        parts.append((variance_df(n, phi), _marginal_variance(d, n_eff)))
    df = sum(w for w, _ in parts)
    marginal = sum(w * v for w, v in parts) / df
    return marginal / n_eff, df, n_eff


def _level_mean_variance(instances: np.ndarray, n: int, miss: float
                         ) -> tuple[float, float] | None:
    """(variance of the mean of n steps of the stable's level, its degrees of freedom), the
    level being the mean of `instances` per step, or None when it is worth at most one
    independent sample. The level carries what both sides share (the market), with its
    autocorrelation: this is what a tolerance in proportion to stable's mean inherits."""
    _, count, _, mean = _per_step(instances)
    level = mean[count > 0]
    m = level.size
    if m < HISTORY_MIN_POINTS or not np.ptp(level) > 0:
        return (0.0, 1.0) if m >= HISTORY_MIN_POINTS else None
    fitted = _at_bound(level, miss)
    if fitted is None:
        return None
    marginal, phi, df = fitted
    return marginal / ar1_effective_size(n, phi), df


def _welch(own: tuple[float, float, float], margin: tuple[float, float]
           ) -> tuple[float, float, float]:
    """`own` (variance, df, effective size) plus an independent variance with its df, the
    degrees of freedom of the sum by Welch-Satterthwaite."""
    v1, df1, n_eff = own
    v2, df2 = margin
    total = v1 + v2
    if v2 <= 0 or total <= 0:
        return own
    return total, total * total / (v1 * v1 / df1 + v2 * v2 / df2), n_eff


def _mean_variance(d: np.ndarray, miss: float, history: np.ndarray | None,
                   instances: tuple[np.ndarray, float, float] | None
                   ) -> tuple[float, float, float] | None:
    n = d.size
    if instances is not None and (noise := instance_noise(instances[0], miss)) is not None:
        sigma2, df_noise, phi = noise
        own = _pooled(d, phi, (df_noise, sigma2 * instances[1]))
        share = instances[2]
        if share <= 0:
            return own
        margin = _level_mean_variance(instances[0], n, miss)
        if margin is None:
            return None
        return _welch(own, (share * share * margin[0], margin[1]))
    h = np.asarray(history, dtype=float) if history is not None else np.zeros(0)
    h = h[np.isfinite(h)]
    if h.size < HISTORY_MIN_POINTS or not np.ptp(h) > 0:
        phi = autocorrelation_upper_bound(d, miss)
        n_eff = ar1_effective_size(n, phi)
        divisor = variance_divisor(n, n_eff)
        if divisor <= 0:
            return None
        return float(d.var(ddof=1)) / divisor, variance_df(n, phi), n_eff
    fitted = _at_bound(h, miss)
    if fitted is None:
        return None
    stable_var, phi, df = fitted
    return _pooled(d, phi, (df, 2.0 * stable_var))


def _instance_null(stable: np.ndarray | None, canary: np.ndarray | None, both: np.ndarray,
                   share: float = 0.0) -> tuple[np.ndarray, float, float] | None:
    """For `mean_variance`: the stable's instances, the variance of one step of the judged
    contrast in units of one instance's own variance, and `share`; None without instances.

    The judged contrast is c − λ s against 0, λ = 1 ± `share` (the tolerance's share of
    stable's mean, 0 for an absolute one): per step its instances' own parts have variance
    σ² (1/k_canary + λ²/k_stable), taken at λ = 1 + share whatever the direction (the larger;
    the decrease's 1 − share would be looser)."""
    if stable is None or canary is None:
        return None
    s, c = np.atleast_2d(np.asarray(stable, dtype=float)), np.atleast_2d(
        np.asarray(canary, dtype=float))
    steps = both.size
    if s.shape[1] < steps or c.shape[1] != steps or not both.any():
        return None
    k_s = np.isfinite(s[:, -steps:]).sum(axis=0)[both]
    k_c = np.isfinite(c).sum(axis=0)[both]
    if (k_s < 1).any() or (k_c < 1).any():
        return None
    return s, float(np.mean(1.0 / k_c + (1.0 + share) ** 2 / k_s)), share


# A corrupt gauge (values near float's range) overflows the means, squares and differences
# below to inf/NaN; every path ends in the `values too large to compare` check, which answers
# inconclusive, so those overflows are expected here and not reported as warnings.
@np.errstate(over="ignore", invalid="ignore")
def judge_series(
    name: str,
    canary: np.ndarray,
    stable: np.ndarray,
    *,
    direction: str = "increase",
    relative_tolerance: float = 0.0,
    absolute_tolerance: float = 0.0,
    alpha: float = 0.05,
    min_points: int = 20,
    critical: bool = False,
    weight: float = 1.0,
    mode: str = "fixed",
    stable_history: np.ndarray | None = None,
    stable_instances: np.ndarray | None = None,
    canary_instances: np.ndarray | None = None,
    unit: str = "",
    label: str = "",
) -> CheckResult:
    """Judge two per-step series on a shared grid (NaN = no sample that step); `unit`, the
    values' (`fmt_value`), is how the reason shows them, after `label` (what a value is).

    `stable_history`, the stable's values at the same step before the analysis start, tells
    how the gauge wanders (`mean_variance`): with it a short window is judged at the
    autocorrelation and spread the stable has shown for an hour, not at the worst the few
    points of the window cannot rule out.

    When the sides are means over instances (`canary` and `stable` per step), the instances
    themselves tell it better: `stable_instances`, one row per stable instance over the history
    and then the window (its last columns aligned with `stable`), and `canary_instances`, one
    row per canary instance over the window, give the spread and autocorrelation of what d
    keeps under the null, without the swings both sides share (`instance_noise`).
    """
    c = np.asarray(canary, dtype=float)
    s = np.asarray(stable, dtype=float)
    both = np.isfinite(c) & np.isfinite(s)
    c_ok, s_ok = c[np.isfinite(c)], s[np.isfinite(s)]
    summary_c = Summary(float(c_ok.size), float(c_ok.mean()) if c_ok.size else None)
    summary_s = Summary(float(s_ok.size), float(s_ok.mean()) if s_ok.size else None)
    base = dict(name=name, kind="series", test=TEST_NAME, critical=critical, weight=weight,
                canary=summary_c, stable=summary_s)
    paired = int(both.sum())
    if paired < min_points:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: too little data: {paired} steps with both sides, needs {min_points}"),
            **base)
    d = c[both] - s[both]
    two_sided = direction == "either"
    a = alpha / 2 if two_sided else alpha
    miss = min(BOUND_MISS_PER_ALPHA["fixed" if mode == "fixed" else "sequential"] * a,
               BOUND_MISS_MAX)
    stable_mean = float(s[both].mean())
    # How much of the tolerance is a share of stable's own mean (`_instance_null`): 0 when
    # the absolute one is the wider.
    share = relative_tolerance if (relative_tolerance > 0 and relative_tolerance * abs(
        stable_mean) >= absolute_tolerance) else 0.0
    judged = mean_variance(d, miss, stable_history,
                           _instance_null(stable_instances, canary_instances, both, share))
    if judged is None:
        n_eff = ar1_effective_size(paired, autocorrelation_upper_bound(d, miss))
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: the series is too autocorrelated for {paired} steps to be judged "
            f"(about {n_eff:.1f} independent samples); more time will decide"), **base)
    variance, df, n_eff = judged
    mean_d = float(d.mean())
    se = math.sqrt(variance)
    # Beyond 1e100 squares overflow; no real gauge gets there, a corrupt series may.
    if not all(math.isfinite(x) and abs(x) < 1e100 for x in (mean_d, se, stable_mean)):
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: values too large to compare (corrupt series?)"), **base)
    allowed = max(relative_tolerance * abs(stable_mean), absolute_tolerance)
    pass_q = t_isf(a, df)
    p_low, p_high = mean_d - pass_q * se, mean_d + pass_q * se
    within = {"increase": p_high <= allowed, "decrease": p_low >= -allowed,
              "either": -allowed <= p_low and p_high <= allowed}[direction]
    if mode == "fixed":
        low, high = p_low, p_high
        p_up = t_sf((mean_d - allowed) / se, df) if se > 0 else float(
            mean_d <= allowed)
        p_down = t_sf((-mean_d - allowed) / se, df) if se > 0 else float(
            -mean_d <= allowed)
    else:
        scale = max(allowed, 0.1 * abs(stable_mean), 1e-12)
        half = msprt_half_width(se * se, scale, a)
        up_excess, down_excess = mean_d - allowed, -mean_d - allowed
        if se > 0:  # the mixture assumes a known variance; ours is estimated (variance_df)
            half = _student_boundary(half / se, df) * se
            up_excess = _normal_equivalent(up_excess / se, df) * se
            down_excess = _normal_equivalent(down_excess / se, df) * se
        low, high = mean_d - half, mean_d + half
        p_up = msprt_p_value(up_excess, se * se, scale)
        p_down = msprt_p_value(down_excess, se * se, scale)
    up = direction in ("increase", "either") and low > allowed
    down = direction in ("decrease", "either") and high < -allowed
    p_value = {"increase": p_up, "decrease": p_down}.get(direction, min(1.0, 2 * min(p_up,
                                                                                        p_down)))
    effect = mean_d / stable_mean if stable_mean else (0.0 if mean_d == 0 else math.inf)
    what = f"{label}: " if label else ""
    shown = (f"{what}canary {fmt_value(summary_c.value, unit)} vs stable "
             f"{fmt_value(summary_s.value, unit)} (mean difference {fmt_value(mean_d, unit)}, "
             f"~{n_eff:.0f} independent samples)")
    margin = f"tolerance ±{fmt_value(allowed, unit)}"
    verdict, why = tri_state(
        "higher" if up else "lower" if down else None, within, margin,
        f"difference between {fmt_value(p_low, unit)} and {fmt_value(p_high, unit)}",
        more="time")
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}", effect=effect, interval=(low, high),
        interval_of="canary - stable (mean)", interval_level=1 - (alpha if two_sided else
                                                                  2 * alpha),
        p_value=float(p_value), allowed=allowed, estimate=mean_d, **base)


def judge_series_kayenta(
    name: str,
    canary: np.ndarray,
    stable: np.ndarray,
    *,
    direction: str = "either",
    relative_tolerance: float = 0.0,
    min_points: int = 1,
    critical: bool = False,
    weight: float = 1.0,
) -> CheckResult:
    """Kayenta-compatible mode for teams migrating from Kayenta's NetflixACAJudge.

    Mann-Whitney / Hodges-Lehmann classification as `webhook.judge.kayenta.classify` does it,
    with the tolerance as Kayenta's effect size (meanRatio must reach 1 + tolerance, or fall to
    1 − tolerance, to count). It treats per-step samples as independent, so under polling and
    autocorrelation it fails healthy canaries far above alpha (bench/detection measures it):
    use it to reproduce old decisions, not for new configs.
    """
    c = np.asarray(canary, dtype=float)
    s = np.asarray(stable, dtype=float)
    c_ok, s_ok = c[np.isfinite(c)], s[np.isfinite(s)]
    summary_c = Summary(float(c_ok.size), float(c_ok.mean()) if c_ok.size else None)
    summary_s = Summary(float(s_ok.size), float(s_ok.mean()) if s_ok.size else None)
    base = dict(name=name, kind="series", critical=critical, weight=weight, canary=summary_c,
                stable=summary_s, test="Kayenta-compatible Mann-Whitney (98 % Hodges-Lehmann)")
    if min(c_ok.size, s_ok.size) < min_points:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: too little data: {min(c_ok.size, s_ok.size)} points on a side, needs "
            f"{min_points}"), **base)
    metric = kayenta.KayentaMetric(
        name, "default", direction=direction,  # type: ignore[arg-type]
        allowed_increase=1 + relative_tolerance, allowed_decrease=max(1 - relative_tolerance, 0),
        critical=critical)
    judged = kayenta.classify(c_ok, s_ok, metric)
    verdict = {"Pass": "pass", "High": "fail", "Low": "fail"}.get(judged.classification,
                                                                  "inconclusive")
    return CheckResult(
        verdict=verdict,  # type: ignore[arg-type]
        reason=f"{name}: Kayenta {judged.classification}: {judged.reason}",
        effect=judged.mean_ratio - 1 if math.isfinite(judged.mean_ratio) else None,
        interval=judged.interval, interval_of="Hodges-Lehmann shift canary - stable",
        interval_level=kayenta.CONFIDENCE, allowed=relative_tolerance, **base)
