"""Per-step series (gauges, rates, quantiles from PromQL) compared without pretending the
samples are independent.

Samples one step apart are strongly autocorrelated (a CPU gauge, a 5-minute rate), and Kayenta's
Mann-Whitney test fails 26–63 % of A/A comparisons on such data (JUDGES.md). Here the two sides
are compared as paired differences d_t = canary_t − stable_t on the shared time grid, which also
cancels what both sides see at once (a traffic wave, a dependency's slowness). The mean of d is
tested with a t interval on the effective number of independent samples of an AR(1) process,
n_eff = n (1 − φ)/(1 + φ), with the lag-1 autocorrelation φ estimated from d and corrected for
its small-sample bias (Kendall 1954): Zwiers & von Storch, "Taking serial correlation into
account in tests of the mean", Journal of Climate 8, 1995. Measured in tests/test_metric_kinds.py:
A/A false failures stay ≤ alpha for φ up to 0.95; below 5 effective samples it is inconclusive.

Tolerance and tri-state decision as for the other kinds. In sequential mode the fail side uses
the normal-mixture SPRT on the mean difference with the same effective variance, whose
guarantee holds over any number of polls; passing stays at the fixed-horizon level.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from webhook.judge import kayenta
from webhook.judge.types import CheckResult, Summary, fmt_value, tri_state

TEST_NAME = "paired differences, t interval on the AR(1) effective sample size"
MIN_EFFECTIVE = 5.0


def effective_sample_size(d: np.ndarray) -> float:
    """n (1 − φ)/(1 + φ) with φ the bias-corrected lag-1 autocorrelation, clipped to [0, 0.99]."""
    n = d.size
    centred = d - d.mean()
    denom = float((centred * centred).sum())
    if n < 3 or denom == 0:
        return float(n)
    phi = float((centred[1:] * centred[:-1]).sum()) / denom
    phi = min(max(phi + (1 + 3 * phi) / n, 0.0), 0.99)
    return n * (1 - phi) / (1 + phi)


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
) -> CheckResult:
    """Judge two per-step series on a shared grid (NaN = no sample that step)."""
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
    n_eff = effective_sample_size(d)
    if n_eff < MIN_EFFECTIVE:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: the series is too autocorrelated for {paired} steps to be judged "
            f"(about {n_eff:.1f} independent samples, needs {MIN_EFFECTIVE:g}); more time "
            "will decide"), **base)
    mean_d = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n_eff)
    df = max(n_eff - 1, 1.0)
    stable_mean = float(s[both].mean())
    # Beyond 1e100 squares overflow; no real gauge gets there, a corrupt series may.
    if not all(math.isfinite(x) and abs(x) < 1e100 for x in (mean_d, se, stable_mean)):
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: values too large to compare (corrupt series?)"), **base)
    allowed = max(relative_tolerance * abs(stable_mean), absolute_tolerance)
    two_sided = direction == "either"
    a = alpha / 2 if two_sided else alpha
    pass_q = float(stats.t.isf(a, df))
    p_low, p_high = mean_d - pass_q * se, mean_d + pass_q * se
    within = {"increase": p_high <= allowed, "decrease": p_low >= -allowed,
              "either": -allowed <= p_low and p_high <= allowed}[direction]
    if mode == "fixed":
        low, high = p_low, p_high
        p_up = float(stats.t.sf((mean_d - allowed) / se, df)) if se > 0 else float(
            mean_d <= allowed)
        p_down = float(stats.t.sf((-mean_d - allowed) / se, df)) if se > 0 else float(
            -mean_d <= allowed)
    else:
        scale = max(allowed, 0.1 * abs(stable_mean), 1e-12)
        half = msprt_half_width(se * se, scale, a)
        low, high = mean_d - half, mean_d + half
        p_up = msprt_p_value(mean_d - allowed, se * se, scale)
        p_down = msprt_p_value(-mean_d - allowed, se * se, scale)
    up = direction in ("increase", "either") and low > allowed
    down = direction in ("decrease", "either") and high < -allowed
    p_value = {"increase": p_up, "decrease": p_down}.get(direction, min(1.0, 2 * min(p_up,
                                                                                        p_down)))
    effect = mean_d / stable_mean if stable_mean else (0.0 if mean_d == 0 else math.inf)
    shown = (f"canary {fmt_value(summary_c.value)} vs stable {fmt_value(summary_s.value)} "
             f"(mean difference {fmt_value(mean_d)}, ~{n_eff:.0f} independent samples)")
    margin = f"tolerance ±{fmt_value(allowed)}"
    verdict, why = tri_state(
        "higher" if up else "lower" if down else None, within, margin,
        f"difference between {fmt_value(p_low)} and {fmt_value(p_high)}", more="time")
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}", effect=effect, interval=(low, high),
        interval_of="canary - stable (mean)", interval_level=1 - (alpha if two_sided else
                                                                  2 * alpha),
        p_value=float(p_value), allowed=allowed, **base)


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
