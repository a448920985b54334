"""Latency quantiles judged from Prometheus histogram bucket counts.

Every request in the window counts, not one number per step: the per-step bucket increments are
summed into one cumulative histogram per side. A quantile's value is read off it by linear
interpolation inside the bucket, the same assumption `histogram_quantile()` makes.

Interval for a quantile: the distribution-free order-statistic interval (Conover, "Practical
Nonparametric Statistics", 3rd ed., 1999, §3.2; Hahn & Meeker 1991): with n requests, the
q-quantile lies between the order statistics of ranks `binom.ppf(a, n, q)` and
`binom.ppf(1 - a, n, q) + 1` with probability ≥ 1 − 2a (scipy.stats.binom). Ranks are turned into
latencies through the interpolated histogram.

Decision for canary vs stable, each side's bound at a = alpha/2 so both hold jointly with
probability ≥ 1 − alpha (Bonferroni):
- fail when the canary's lower bound exceeds the stable's upper bound by more than tolerated;
- pass when the canary's upper bound is within tolerance of the stable's lower bound;
- otherwise inconclusive (too few requests, or a quantile in the +Inf bucket).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from webhook.judge.sequential import checkpoint_index, spent_alpha
from webhook.judge.types import CheckResult, Summary, fmt_count, fmt_value, tri_state

# Beyond 2**53 requests counts are no longer exact floats; no real window gets near it.
MAX_COUNT = 2.0**53
TEST_NAME = "order-statistic quantile intervals from histogram buckets (Bonferroni)"
SEQUENTIAL_TEST_NAME = TEST_NAME + ", alpha spent over looks (anytime-valid)"


class Histogram:
    """A cumulative histogram: upper bounds (ending in +Inf when present) and counts ≤ bound."""

    def __init__(self, bounds: np.ndarray, cumulative: np.ndarray) -> None:
        self.bounds = bounds
        self.cumulative = cumulative

    @classmethod
    def from_steps(cls, buckets: Sequence[tuple[float, np.ndarray]]) -> Histogram:
        """Sum per-step bucket increments (NaN = absent) into one window histogram.

        Counter extrapolation in `increase()` can make a bucket look fractionally larger than
        the next; cumulative counts are forced monotone so ranks stay meaningful.
        """
        pairs = sorted(((float(le), float(np.nansum(np.clip(np.asarray(v, dtype=float),
                                                                0, None))))
                        for le, v in buckets if not math.isnan(float(le))), key=lambda p: p[0])
        if not pairs:
            return cls(np.array([]), np.array([]))
        bounds = np.array([p[0] for p in pairs])
        cumulative = np.maximum.accumulate(np.nan_to_num(np.array([p[1] for p in pairs])))
        return cls(bounds, cumulative)

    @property
    def total(self) -> float:
        return float(self.cumulative[-1]) if self.cumulative.size else 0.0

    def value_at_rank(self, rank: float, inf_bucket_as: float = math.inf) -> float:
        """Latency of the request of this rank (1-based, fractional allowed).

        A rank in the +Inf bucket has no known value: it reads as `inf_bucket_as`, +Inf for an
        upper bound and the last finite bound (what is known for sure) for a lower bound.
        """
        if self.total <= 0:
            return math.nan
        rank = min(max(rank, 0.0), self.total)
        i = int(np.searchsorted(self.cumulative, rank, side="left"))
        i = min(i, self.bounds.size - 1)
        upper = self.bounds[i]
        if math.isinf(upper):
            return inf_bucket_as
        lower = self.bounds[i - 1] if i > 0 else min(0.0, upper)
        below = self.cumulative[i - 1] if i > 0 else 0.0
        inside = self.cumulative[i] - below
        if inside <= 0:
            return float(upper)
        return float(lower + (upper - lower) * (rank - below) / inside)

    @property
    def last_finite_bound(self) -> float:
        finite = self.bounds[np.isfinite(self.bounds)]
        return float(finite[-1]) if finite.size else 0.0

    def quantile(self, q: float) -> float:
        """Point estimate like histogram_quantile(): the +Inf bucket reads as the last bound."""
        return self.value_at_rank(q * self.total, inf_bucket_as=self.last_finite_bound)

    def quantile_bounds(self, q: float, a: float) -> tuple[float, float]:
        """(lower, upper) bounds for the q-quantile, each failing with probability ≤ a."""
        n = round(self.total)
        if n <= 0:
            return math.nan, math.nan
        low_rank = float(stats.binom.ppf(a, n, q))
        high_rank = float(stats.binom.ppf(1 - a, n, q)) + 1
        low = (self.value_at_rank(low_rank, inf_bucket_as=self.last_finite_bound)
               if low_rank >= 1 else 0.0)
        high = self.value_at_rank(high_rank) if high_rank <= n else math.inf
        return low, high


def _beyond(canary_low: float, stable_high: float, rel: float, abs_: float) -> bool:
    return canary_low > stable_high + max(rel * stable_high, abs_)


def _p_value(hc: Histogram, hs: Histogram, q: float, rel: float, abs_: float, up: bool) -> float:
    """Smallest alpha at which the fail condition holds (bisection; it is monotone in alpha)."""
    def fails(alpha: float) -> bool:
        c_low, c_high = hc.quantile_bounds(q, alpha / 2)
        s_low, s_high = hs.quantile_bounds(q, alpha / 2)
        if up:
            return _beyond(c_low, s_high, rel, abs_)
        return _beyond(s_low, c_high, rel, abs_)

    if not fails(1.0):
        return 1.0
    lo, hi = 1e-12, 1.0
    if fails(lo):
        return lo
    for _ in range(24):  # geometric: 1e-12..1 to within ~0.2 % of the p-value
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fails(mid) else (mid, hi)
    return hi


def judge_quantile(
    name: str,
    canary: Histogram,
    stable: Histogram,
    q: float,
    *,
    direction: str = "increase",
    relative_tolerance: float = 0.0,
    absolute_tolerance: float = 0.0,
    alpha: float = 0.05,
    min_total: float = 100,
    min_tail: float = 10,
    critical: bool = False,
    weight: float = 1.0,
    mode: str = "fixed",
    looks: int = 1,
) -> CheckResult:
    """Judge one quantile of canary vs stable latency.

    `mode="sequential"` may fail only when `looks` (steps in the window) is a checkpoint of the
    geometric grid 1, 2, 4, 8, … (`sequential.checkpoint_index`), at the level alpha/(k(k+1))
    spent on the k-th checkpoint: over all checkpoints the levels sum to alpha, so repeated
    polls keep the false-failure rate ≤ alpha. The caller judges the window as of every earlier
    checkpoint too (analysis does; a fail found there stands). Passing stays at the
    fixed-horizon level, since passing is not the guaranteed side.
    """
    test = TEST_NAME if mode == "fixed" else SEQUENTIAL_TEST_NAME
    base = dict(name=name, kind="histogram", test=test, critical=critical, weight=weight)
    checkpoint = checkpoint_index(looks) if mode != "fixed" else None
    fail_alpha = alpha if mode == "fixed" else (
        spent_alpha(alpha, checkpoint) if checkpoint else 0.0)
    n_c, n_s = canary.total, stable.total
    need = max(min_total, min_tail / (1 - q))
    summary_c = Summary(n_c, canary.quantile(q) if n_c > 0 else None)
    summary_s = Summary(n_s, stable.quantile(q) if n_s > 0 else None)
    if not all(math.isfinite(n) and n < MAX_COUNT for n in (n_c, n_s)):
        return CheckResult(verdict="inconclusive", canary=summary_c, stable=summary_s,
                           reason=f"{name}: bucket counts are not finite or implausibly large "
                                  "(corrupt series)", **base)
    short = [f"{label} has {fmt_count(n)} requests" for label, n in
             (("canary", n_c), ("stable", n_s)) if n < need]
    if short:
        return CheckResult(
            verdict="inconclusive", canary=summary_c, stable=summary_s,
            reason=f"{name}: too little data: {' and '.join(short)}; p{q * 100:g} needs "
                   f"{fmt_count(need)} per side", **base)

    sides = 2 if direction != "either" else 4
    a = alpha / sides
    c_low, c_high = canary.quantile_bounds(q, a)
    s_low, s_high = stable.quantile_bounds(q, a)
    rel, abs_ = relative_tolerance, absolute_tolerance
    up = down = False
    if fail_alpha > 0:
        fc_low, fc_high = canary.quantile_bounds(q, fail_alpha / sides)
        fs_low, fs_high = stable.quantile_bounds(q, fail_alpha / sides)
        up = direction in ("increase", "either") and _beyond(fc_low, fs_high, rel, abs_)
        down = direction in ("decrease", "either") and _beyond(fs_low, fc_high, rel, abs_)
    if not all(math.isfinite(b) for b in (c_low, c_high, s_low, s_high)):
        within = False  # a bound in the +Inf bucket: too coarse a histogram to clear anyone
    elif direction == "increase":
        within = not _beyond(c_high, s_low, rel, abs_)
    elif direction == "decrease":
        within = not _beyond(s_high, c_low, rel, abs_)
    else:
        within = not _beyond(c_high, s_low, rel, abs_) and not _beyond(s_high, c_low, rel, abs_)

    v_c, v_s = summary_c.value or math.nan, summary_s.value or math.nan
    effect = v_c / v_s - 1 if v_s and v_s > 0 else math.nan
    ratio_low = c_low / s_high - 1 if s_high > 0 and math.isfinite(s_high) else math.nan
    ratio_high = c_high / s_low - 1 if s_low > 0 else math.inf
    p_up = _p_value(canary, stable, q, rel, abs_, True)
    p_down = _p_value(canary, stable, q, rel, abs_, False)
    p_value = {"increase": p_up, "decrease": p_down}.get(direction, min(1.0, 2 * min(p_up, p_down)))
    if mode != "fixed":  # the level this look spends: compare with alpha/(k(k+1)), not alpha
        p_value = min(1.0, p_value * alpha / fail_alpha) if fail_alpha > 0 else 1.0

    shown = (f"canary {fmt_value(v_c, 's')} vs stable {fmt_value(v_s, 's')} "
             f"({'+' if effect >= 0 else ''}{fmt_value(effect * 100)}%)"
             if math.isfinite(effect) else f"canary {fmt_value(v_c, 's')} vs stable "
             f"{fmt_value(v_s, 's')}")
    margin = f"tolerance +{rel * 100:g}% or {fmt_value(abs_, 's')}"
    verdict, why = tri_state(
        "slower" if up else "faster" if down else None, within, margin,
        f"canary between {fmt_value(c_low, 's')} and {fmt_value(c_high, 's')}")
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}", canary=summary_c, stable=summary_s,
        effect=effect, interval=(ratio_low, ratio_high), interval_of="canary / stable - 1",
        interval_level=1 - 4 * a, p_value=p_value, allowed=rel, **base)
