"""Proportions judged on their counts (error ratio, fill rate, workflow success).

Method: the Newcombe hybrid score interval for a difference of two independent proportions
(Newcombe, "Interval estimation for the difference between independent proportions",
Statistics in Medicine 17, 1998, method 10), built from the Wilson score intervals of each side.
It keeps close to nominal coverage with few events and at proportions of 0, where the Wald
interval collapses; that matters because a canary's error count is often single digits.

Decision, one-sided at `alpha` in the harmful direction, with an equivalence margin `allowed`
(the tolerance):
- fail when the whole interval lies beyond the margin (significantly worse by more than
  tolerated);
- pass when the whole interval lies within the margin (shown not worse by more than tolerated);
- otherwise inconclusive: the data cannot yet tell, and more requests will.
So thin data can never pass: the interval is wide and straddles the margin.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from webhook.judge.types import CheckResult, Summary, fmt_count, fmt_value

TEST_NAME = "Newcombe hybrid score interval (difference of proportions)"


def wilson_interval(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x_c: float, n_c: float, x_s: float, n_s: float,
                      z: float) -> tuple[float, float]:
    """Interval for p_canary − p_stable (Newcombe 1998, method 10)."""
    p_c, p_s = x_c / n_c, x_s / n_s
    l_c, u_c = wilson_interval(x_c, n_c, z)
    l_s, u_s = wilson_interval(x_s, n_s, z)
    d = p_c - p_s
    low = d - math.sqrt((p_c - l_c) ** 2 + (u_s - p_s) ** 2)
    high = d + math.sqrt((u_c - p_c) ** 2 + (p_s - l_s) ** 2)
    return low, high


def _one_sided_p(x_c: float, n_c: float, x_s: float, n_s: float, allowed: float,
                 worse_is_up: bool) -> float:
    """Smallest alpha at which the interval clears the margin: the test's p-value."""
    def clears(z: float) -> bool:
        low, high = newcombe_interval(x_c, n_c, x_s, n_s, z)
        return low > allowed if worse_is_up else high < -allowed

    if not clears(1e-9):
        return 1.0
    lo, hi = 1e-9, 40.0
    if clears(hi):
        return 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if clears(mid) else (lo, mid)
    return float(stats.norm.sf(lo))


def _rate_per_second(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def judge_ratio(
    name: str,
    numerator_c: np.ndarray,
    total_c: np.ndarray,
    numerator_s: np.ndarray,
    total_s: np.ndarray,
    *,
    direction: str = "increase",
    relative_tolerance: float = 0.0,
    absolute_tolerance: float = 0.0,
    alpha: float = 0.05,
    min_total: float = 100,
    step_seconds: float = 60.0,
    critical: bool = False,
    weight: float = 1.0,
) -> CheckResult:
    """Judge canary vs stable proportions from per-step counts (NaN = no sample that step).

    A missing numerator with a present total is zero events (Prometheus returns nothing for a
    5xx counter that never fired); a missing total is no data.
    """
    base = dict(name=name, kind="ratio", test=TEST_NAME, critical=critical, weight=weight)
    sides = []
    for numerator, total in ((numerator_c, total_c), (numerator_s, total_s)):
        total = np.asarray(total, dtype=float)
        numerator = np.asarray(numerator, dtype=float)
        seen = np.isfinite(total)
        n = float(np.sum(np.clip(total[seen], 0, None))) if seen.any() else 0.0
        k = float(np.sum(np.clip(np.nan_to_num(numerator[seen], nan=0.0, posinf=0.0,
                                               neginf=0.0), 0, None))) if seen.any() else 0.0
        k = min(k, n)
        sides.append((k, n, int(seen.sum()) * step_seconds))
    (k_c, n_c, sec_c), (k_s, n_s, sec_s) = sides
    canary = Summary(n_c, k_c / n_c if n_c > 0 else None)
    stable = Summary(n_s, k_s / n_s if n_s > 0 else None)

    short = [(label, n, sec) for label, n, sec in (("canary", n_c, sec_c), ("stable", n_s, sec_s))
             if n < min_total]
    if short:
        parts = []
        for label, n, sec in short:
            minutes = (min_total - n) / _rate_per_second(n, sec) / 60 if n > 0 else math.inf
            wait = (f", about {math.ceil(minutes)} more min at its current rate"
                    if minutes < 1e6 else ", and it has sent (almost) none")
            parts.append(f"{label} has {fmt_count(n)} requests, needs {fmt_count(min_total)}{wait}")
        return CheckResult(verdict="inconclusive", reason=f"{name}: too little data: "
                           + "; ".join(parts), canary=canary, stable=stable, **base)

    if not all(math.isfinite(x) for x in (k_c, n_c, k_s, n_s)):
        return CheckResult(verdict="inconclusive", reason=f"{name}: counts are not finite "
                           "(overflowing or corrupt series)", canary=canary, stable=stable, **base)
    p_c, p_s = k_c / n_c, k_s / n_s
    allowed = max(relative_tolerance * p_s, absolute_tolerance)
    effect = p_c / p_s - 1 if p_s > 0 else (0.0 if p_c == 0 else math.inf)
    two_sided = direction == "either"
    z = float(stats.norm.isf(alpha / 2 if two_sided else alpha))
    low, high = newcombe_interval(k_c, n_c, k_s, n_s, z)
    up = direction in ("increase", "either") and low > allowed
    down = direction in ("decrease", "either") and high < -allowed
    p_up = _one_sided_p(k_c, n_c, k_s, n_s, allowed, True)
    p_down = _one_sided_p(k_c, n_c, k_s, n_s, allowed, False)
    p_value = {"increase": p_up, "decrease": p_down}.get(direction, min(1.0, 2 * min(p_up, p_down)))

    shown = (f"canary {fmt_value(p_c, '%')} of {fmt_count(n_c)} vs stable {fmt_value(p_s, '%')} "
             f"of {fmt_count(n_s)}")
    margin = f"tolerance ±{fmt_value(allowed, '%')}"
    if up or down:
        verdict, why = "fail", f"{'higher' if up else 'lower'} beyond {margin}"
    else:
        within = {
            "increase": high <= allowed,
            "decrease": low >= -allowed,
            "either": -allowed <= low and high <= allowed,
        }[direction]
        if within:
            verdict, why = "pass", f"within {margin}"
        else:
            verdict, why = "inconclusive", (
                f"cannot yet rule out a change beyond {margin} (difference between "
                f"{fmt_value(low, '%')} and {fmt_value(high, '%')}); more requests will decide")
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}", canary=canary, stable=stable,
        effect=effect, interval=(low, high), interval_of="canary - stable",
        interval_level=1 - alpha if two_sided else 1 - 2 * alpha, p_value=p_value,
        allowed=allowed, **base)
