"""Canary-only limits: a bound on a value, and zero-tolerance event counts.

These are rules, not statistics: a P&L impact beyond $10,000 or one adverse event on the canary
is a fail whatever the comparison with stable says. What they still owe is honesty about data:
no samples means inconclusive, never pass.
"""

from __future__ import annotations

import numpy as np

from webhook.judge.types import CheckResult, Summary, fmt_count, fmt_value

AGGREGATES = ("max", "min", "mean", "last", "p95", "p99")


def aggregate(values: np.ndarray, how: str) -> float:
    """One number for the window from per-step values (NaN steps ignored)."""
    finite = values[np.isfinite(values)]
    if how == "max":
        return float(finite.max())
    if how == "min":
        return float(finite.min())
    if how == "mean":
        return float(finite.mean())
    if how == "last":
        return float(finite[-1])
    return float(np.percentile(finite, 95 if how == "p95" else 99))


def judge_threshold(
    name: str,
    canary: np.ndarray,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    how: str = "max",
    absolute: bool = False,
    min_points: int = 1,
    max_missing: int | None = None,
    stable: np.ndarray | None = None,
    critical: bool = False,
    weight: float = 1.0,
) -> CheckResult:
    """Fail when the canary's aggregated value leaves [minimum, maximum].

    `absolute` bounds |value| (P&L impact either way). `max_missing` counts steps without a
    sample after the first one: an availability gauge that stops reporting is not "up". The
    stable side, when given, is shown for context only.
    """
    values = np.asarray(canary, dtype=float)
    if absolute:
        values = np.abs(values)
    points = int(np.isfinite(values).sum())
    value = aggregate(values, how) if points else None
    stable_values = np.asarray(stable if stable is not None else [], dtype=float)
    stable_points = int(np.isfinite(stable_values).sum())
    stable_value = (aggregate(np.abs(stable_values) if absolute else stable_values, how)
                    if stable_points else None)
    bound_text = " and ".join(
        text for text in (f"≥ {fmt_value(minimum)}" if minimum is not None else "",
                          f"≤ {fmt_value(maximum)}" if maximum is not None else "") if text)
    what = f"{how} of {'|value|' if absolute else 'value'}"
    base = dict(name=name, kind="threshold", test=f"canary {what} must be {bound_text}",
                critical=critical, weight=weight, canary=Summary(float(points), value),
                stable=Summary(float(stable_points), stable_value))
    if value is None or points < min_points:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: too little data: {points} canary samples, needs {min_points}"), **base)
    if max_missing is not None:
        seen = np.flatnonzero(np.isfinite(values))
        missing = int(values.size - seen[0] - seen.size) if seen.size else 0
        if missing > max_missing:
            return CheckResult(verdict="fail", reason=(
                f"{name}: the canary stopped reporting for {missing} steps of the window "
                f"(at most {max_missing} allowed)"), **base)
    below = minimum is not None and value < minimum
    above = maximum is not None and value > maximum
    if below or above:
        return CheckResult(verdict="fail", reason=(
            f"{name}: canary {what} {fmt_value(value)} is "
            f"{'below' if below else 'above'} the limit ({bound_text})"),
            allowed=maximum if above else minimum, **base)
    return CheckResult(verdict="pass", reason=(
        f"{name}: canary {what} {fmt_value(value)} within the limit ({bound_text})"),
        allowed=maximum if maximum is not None else minimum, **base)


def judge_events(
    name: str,
    canary_events: np.ndarray,
    *,
    allowed: float = 0,
    canary_total: np.ndarray | None = None,
    min_total: float = 0,
    stable_events: np.ndarray | None = None,
    critical: bool = True,
    weight: float = 1.0,
) -> CheckResult:
    """More than `allowed` events on the canary fails, whatever the statistics say.

    An event counter that never fired has no series at all, so absent steps count as zero
    events. To pass, the canary must have shown it served (`canary_total` ≥ `min_total`) when
    a traffic query is configured: zero events on zero traffic proves nothing.
    """
    events = np.asarray(canary_events, dtype=float)
    count = float(np.nansum(np.clip(np.where(np.isfinite(events), events, 0.0), 0, None)))
    # increase() extrapolates: 0.9 of an event is one event seen between two scrapes.
    count = float(np.round(count, 6))
    stable_count = None
    if stable_events is not None:
        stable_arr = np.asarray(stable_events, dtype=float)
        stable_count = float(np.nansum(np.clip(np.where(np.isfinite(stable_arr), stable_arr,
                                                        0.0), 0, None)))
    served = None
    if canary_total is not None:
        totals = np.asarray(canary_total, dtype=float)
        served = float(np.nansum(np.clip(np.where(np.isfinite(totals), totals, 0.0), 0, None)))
    base = dict(name=name, kind="events", test=f"zero tolerance: at most {fmt_count(allowed)} "
                "on the canary", critical=critical, weight=weight, allowed=float(allowed),
                canary=Summary(served if served is not None else float(events.size), count),
                stable=Summary(0.0, stable_count))
    if count > allowed + 0.5:
        return CheckResult(verdict="fail", reason=(
            f"{name}: {count:.0f} on the canary, more than the {fmt_count(allowed)} allowed"),
            **base)
    if served is not None and served < min_total:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: none so far, but the canary has served {fmt_count(served)} of the "
            f"{fmt_count(min_total)} requests needed to vouch for it"), **base)
    return CheckResult(verdict="pass", reason=(
        f"{name}: {count:.0f} on the canary (allowed {fmt_count(allowed)})"), **base)
