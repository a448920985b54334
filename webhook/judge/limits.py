"""Canary-only limits: a bound on a value, and zero-tolerance event counts.

These are rules, not statistics: a P&L impact beyond $10,000 or one adverse event on the canary
is a fail whatever the comparison with stable says. What they still owe is honesty about data:
no samples means inconclusive, never pass.
"""

from __future__ import annotations

import numpy as np

from webhook.judge.corrupt import corrupt_reason, first_corrupt
from webhook.judge.ratio import _clean_steps, wilson_interval
from webhook.judge.sequential import MAX_COUNT, proportion_cs
from webhook.judge.tails import norm_isf
from webhook.judge.types import CheckResult, Summary, fmt_count, fmt_value

AGGREGATES = ("max", "min", "mean", "last", "p95", "p99")
# How close to 0 or 1 the sequential limit's prior may be centred. Its weight is 1/centre: at a
# denormal limit (5e-324) that was inf, and inf - inf a NaN interval (a RuntimeWarning, and a
# fail with no event at all); past ~1e15 the counts vanish in `weight + n` by rounding. A limit
# beyond the edge gets the prior centred at the edge: still fixed before any data (the
# sequence stays valid), only less tight at the limit itself.
_PRIOR_EDGE = 1e-12


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
    gaps: np.ndarray | None = None,
    served: np.ndarray | None = None,
    undefined: np.ndarray | None = None,
    stable: np.ndarray | None = None,
    critical: bool = False,
    weight: float = 1.0,
) -> CheckResult:
    """Fail when the canary's aggregated value leaves [minimum, maximum].

    `absolute` bounds |value| (P&L impact either way). `max_missing` counts steps without a
    sample after the first one, steps flagged in `gaps` (a missed scrape, see `scrape_gaps`),
    and, with `served` (per step, whether the canary had traffic), the steps without a sample
    before the first one in which the canary already served, but for its first step of
    traffic (a pod that starts mid-step): an availability gauge that stops reporting, or only
    begins after the canary does, is not "up". Steps without a sample at a regular beat
    (`beat_period`: a step shorter than the scrape interval) are not gaps. `undefined` marks
    the steps whose value was a NaN sample (the canary reported, but no number): they count
    as missing like a gap, and the reason says NaN, not "stopped reporting", so that a person
    looks at the exporter and not at the scrapes. Without `max_missing` they are skipped, as a
    gauge's NaN usually is an empty step (a quantile of no requests). The stable side, when
    given, is shown for context only.
    """
    values = np.asarray(canary, dtype=float)
    nan = (np.asarray(undefined, dtype=bool) if undefined is not None
           and np.asarray(undefined).size == values.size else np.zeros(values.size, dtype=bool))
    bad = first_corrupt(values, counts=False)
    if bad is not None:  # +Inf would otherwise be skipped as "no sample" and could pass
        return CheckResult(name=name, kind="threshold", verdict="inconclusive",
                           test="data check: present series must be finite",
                           reason=corrupt_reason(name, "canary", "values", bad[1],
                                                 f"step {bad[0]}"),
                           canary=Summary(0.0, None), stable=Summary(0.0, None),
                           critical=critical, weight=weight)
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
    # a max already above its maximum (a min below its minimum) stays beyond it whatever
    # points come next: `min_points` is what it takes to vouch for a pass, not to see a breach
    settled = value is not None and (
        (how == "max" and maximum is not None and value > maximum)
        or (how == "min" and minimum is not None and value < minimum))
    if value is None:
        # no sample at all is not "too little data": waiting will not bring a metric the
        # canary does not export, and a person must be told to export it (its name and
        # labels are named after this reason, `judging.name_empty_queries`)
        serving = (int(np.asarray(served, dtype=bool).sum())
                   if served is not None and np.asarray(served).size == values.size else 0)
        nans = int(nan.sum())
        reason = (f"{name}: the canary's samples in the window are all NaN ({nans} steps): "
                  "the query finds its series but no number (a ratio or quantile of no "
                  "requests, or a broken exporter)" if nans else
                  f"{name}: the canary served in {serving} steps without reporting any "
                  "sample of it: export it from the process' start, under the name and "
                  "labels queried" if serving else
                  f"{name}: no canary sample in the window: export it under the name and "
                  "labels queried, or wait for the canary's first scrapes")
        return CheckResult(verdict="inconclusive", reason=reason, **base)
    if points < min_points and not settled:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: too little data: {points} canary samples, needs {min_points}"), **base)
    if max_missing is not None:
        seen = np.flatnonzero(np.isfinite(values))
        silent = np.zeros(values.size, dtype=bool)
        late = np.zeros(values.size, dtype=bool)
        if seen.size:
            silent[seen[0]:] = ~np.isfinite(values[seen[0]:])
            # a step shorter than the scrape interval: steps without a sample at a regular
            # beat (and fewer than one beat of them at the end) are between two scrapes
            period = beat_period(silent[seen[0]:seen[-1] + 1])
            if period is not None and values.size - 1 - seen[-1] < period:
                silent[:] = False
            if served is not None and np.asarray(served).size == values.size:
                serving = np.flatnonzero(np.asarray(served, dtype=bool)[:seen[0]])
                late[serving[1:]] = True  # the first step of traffic may be a partial one
        nan = nan & ~np.isfinite(values)
        late &= ~nan
        silent &= ~nan
        missed = np.zeros(values.size, dtype=bool)
        if gaps is not None and np.asarray(gaps).size == values.size:
            missed = np.asarray(gaps, dtype=bool) & ~silent & ~nan
        missing = int(late.sum() + silent.sum() + missed.sum() + nan.sum())
        if missing > max_missing:
            what = " and ".join(text for text in (
                f"served without reporting in {int(late.sum())} steps" if late.any() else "",
                f"stopped reporting for {int(silent.sum())} steps" if silent.any() else "",
                f"reported NaN (no value) in {int(nan.sum())} steps" if nan.any() else "",
                f"missed scrapes in {int(missed.sum())} steps" if missed.any() else "") if text)
            return CheckResult(verdict="fail", reason=(
                f"{name}: the canary {what} of the window (at most {max_missing} allowed); "
                "a gap is not \"up\""), **base)
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
    total_name: str = "requests",
) -> CheckResult:
    """More than `allowed` events on the canary fails, whatever the statistics say.

    Steps without a sample (a pod not scraped yet) count as zero events, but a canary with no
    sample of the counter in the whole window is inconclusive: zero events cannot be told from
    a counter the new version no longer exports (renamed, dropped, or created only at its
    first event), and a zero-tolerance check must not pass on a metric that is not there. To
    pass, the canary must also have shown it served (`canary_total` ≥ `min_total`) when a
    traffic query is configured: zero events on zero traffic proves nothing.
    """
    events = np.asarray(canary_events, dtype=float)
    for side, role, arr in (("canary", "events", canary_events), ("canary", "total", canary_total),
                            ("stable", "events", stable_events)):
        bad = None if arr is None else first_corrupt(arr)
        if bad is not None:  # an infinite or negative count is not "no events"
            return CheckResult(name=name, kind="events", verdict="inconclusive",
                               test=f"zero tolerance: at most {fmt_count(allowed)} on the canary",
                               reason=corrupt_reason(name, side, role, bad[1], f"step {bad[0]}"),
                               canary=Summary(0.0, None), stable=Summary(0.0, None),
                               critical=critical, weight=weight, allowed=float(allowed))
    # Finite counts whose sum is beyond float's range make an infinite count: more events than
    # allowed (fail), or a request count no real window has (inconclusive, below); that
    # overflow is expected and needs no warning.
    with np.errstate(over="ignore"):
        count = float(np.nansum(np.clip(np.where(np.isfinite(events), events, 0.0), 0, None)))
        # increase() extrapolates: 0.9 of an event is one event seen between two scrapes.
        count = float(np.round(count, 6)) if count < 1e300 else count  # round scales by 1e6
        stable_count = None
        if stable_events is not None:
            stable_arr = np.asarray(stable_events, dtype=float)
            stable_count = float(np.nansum(np.clip(np.where(np.isfinite(stable_arr), stable_arr,
                                                            0.0), 0, None)))
        served = None
        if canary_total is not None:
            totals = np.asarray(canary_total, dtype=float)
            served = float(np.nansum(np.clip(np.where(np.isfinite(totals), totals, 0.0), 0,
                                             None)))
    base = dict(name=name, kind="events", test=f"zero tolerance: at most {fmt_count(allowed)} "
                "on the canary", critical=critical, weight=weight, allowed=float(allowed),
                canary=Summary(served if served is not None else float(events.size), count),
                # without a traffic query each side's n is the steps it was read over (a stable
                # "n 0" beside the canary's steps read as a stable without data)
                stable=Summary(float(np.asarray(stable_events).size)
                               if served is None and stable_events is not None else 0.0,
                               stable_count))
    if count > allowed + 0.5:
        # what the stable did in the same window is the first thing a person asks: the same
        # events there too point at the environment or at how the counter is read (http's
        # restarts: a counter per worker process, not per pod, goes back at every scrape)
        beside = (f"; the stable had {stable_count:.0f} in the same window"
                  if stable_count is not None and stable_count > allowed + 0.5 else "")
        return CheckResult(verdict="fail", reason=(
            f"{name}: {count:.0f} on the canary, more than the {fmt_count(allowed)} allowed"
            f"{beside}"), **base)
    if not np.isfinite(events).any():
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: the canary reports no series of this counter in the window: zero "
            "events cannot be told from a counter it does not export (renamed, dropped, or "
            "created only at its first event); export it at 0 from the start"),
            **{**base, "canary": Summary(0.0, None)})
    if served is not None and not served < MAX_COUNT:
        # no real window serves 1e15 requests (sequential.MAX_COUNT): a total that large, or
        # finite steps summing beyond float's range, is a broken series, and "no events on
        # enough traffic" cannot rest on it (the ratio and histogram judges say the same)
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: none so far, but the canary's count of {total_name} is implausibly large "
            "(1e15 or more: an overflowing or corrupt series), so it cannot vouch for the "
            "canary"), **base)
    if served is not None and served < min_total:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: none so far, but the canary has served {fmt_count(served)} of the "
            f"{fmt_count(min_total)} {total_name} needed to vouch for it"), **base)
    return CheckResult(verdict="pass", reason=(
        f"{name}: {count:.0f} on the canary (allowed {fmt_count(allowed)})"), **base)


def beat_period(mask: np.ndarray, longest: int = 16) -> int | None:
    """The period (2 to `longest` steps) with which `mask` repeats exactly, when it holds some
    but not all steps and spans at least two periods; None otherwise.

    A step that is not a whole multiple of the scrape interval holds one sample fewer (or
    none) at regular steps: with 15 s scrapes, every third 20 s step holds one sample where the
    others hold two, and two 5 s steps in three hold none. That is the grid beating against
    the scrapes, not scrapes going missing; a missed scrape breaks the pattern.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.all():
        return None
    for period in range(2, min(longest, mask.size // 2) + 1):
        if np.array_equal(mask[:-period], mask[period:]):
            return period
    return None


def scrape_gaps(counts: np.ndarray) -> np.ndarray:
    """Per step, whether any series missed a scrape; `counts` is samples per (series, step)
    from `count_over_time(…[step])`, NaN where a series has none.

    The scrape interval is not known to the judge, so each series' usual count (its median over
    the steps it reported in) stands for "every scrape arrived"; a step with fewer samples, or
    none, between the series' first and last step with data missed one. A series' first and
    last step are not judged: a pod that starts or stops mid-step fills them only partly.
    Fewer samples at regular steps (`beat_period`: a step that is not a whole multiple of the
    scrape interval) are the step's own rhythm, not gaps: a 20 s step over 15 s scrapes failed
    every healthy canary's "up at every scrape" check.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    gaps = np.zeros(counts.shape[1], dtype=bool)
    for row in counts:
        seen = np.flatnonzero(np.isfinite(row) & (row > 0))
        if seen.size < 3:
            continue
        usual = float(np.floor(np.median(row[seen])))
        inner = np.where(np.isfinite(row[seen[0] + 1:seen[-1]]), row[seen[0] + 1:seen[-1]], 0.0)
        if beat_period(inner < usual) is not None and inner.min() == usual - 1:
            usual -= 1
        gaps[seen[0] + 1:seen[-1]] |= inner < usual
    return gaps


PROPORTION_LIMIT_TEST = "Wilson score interval of the canary's proportion against a fixed limit"
PROPORTION_LIMIT_SEQUENTIAL_TEST = ("anytime-valid beta-binomial confidence sequence of the "
                                    "canary's proportion against a fixed limit (Robbins 1970)")


def judge_proportion_limit(
    name: str,
    numerator: np.ndarray,
    total: np.ndarray,
    *,
    maximum: float | None = None,
    minimum: float | None = None,
    alpha: float = 0.05,
    min_total: float = 100,
    mode: str = "fixed",
    critical: bool = False,
    weight: float = 1.0,
    total_name: str = "runs",
) -> CheckResult:
    """The canary's own proportion against a limit a person can state ("failures never above
    1 %", i.e. success never below 99 %), whatever stable does.

    Judged on the window's counts, not per step: fail when the whole confidence interval lies
    beyond the limit, pass when it lies within, otherwise inconclusive (too few runs to tell).
    Sequential mode uses a time-uniform confidence sequence (Robbins' beta-binomial mixture,
    `sequential.proportion_cs`), so asking again at every poll keeps the chance of ever failing
    a canary that is exactly at the limit at alpha; fixed mode a one-sided Wilson interval.
    """
    totals, events = _clean_steps(numerator, total)
    n, k = float(totals.sum()), float(events.sum())
    value = k / n if n > 0 else None
    bounds = " and ".join(text for text in (
        f"≥ {fmt_value(minimum, '%')}" if minimum is not None else "",
        f"≤ {fmt_value(maximum, '%')}" if maximum is not None else "") if text)
    sequential = mode == "sequential"
    base = dict(name=name, kind="ratio", critical=critical, weight=weight,
                test=(PROPORTION_LIMIT_SEQUENTIAL_TEST if sequential else PROPORTION_LIMIT_TEST)
                + f": canary must be {bounds}",
                canary=Summary(n, value), stable=Summary(0.0, None),
                allowed=maximum if maximum is not None else minimum)
    if n < min_total or value is None:
        return CheckResult(verdict="inconclusive", reason=(
            f"{name}: too little data: the canary has {fmt_count(n)} {total_name}, needs "
            f"{fmt_count(min_total)}"), **base)
    sides = sum(b is not None for b in (minimum, maximum))
    a = alpha / max(sides, 1)
    if sequential:
        # The mixing prior is centred on the limit (fixed before any data, so validity
        # holds): the sequence is tightest where the decision is made.
        limit = maximum if maximum is not None else minimum
        assert limit is not None
        centre = min(max(limit, _PRIOR_EDGE), 1 - _PRIOR_EDGE)
        prior = (1.0, (1 - centre) / centre) if centre <= 0.5 else (centre / (1 - centre), 1.0)
        low, high = proportion_cs(k, n, 2 * a, *prior)  # two-sided at 2a: each side at a
    else:
        low, high = wilson_interval(k, n, norm_isf(a))
    shown = f"canary {fmt_value(value, '%')} of {fmt_count(n)}"
    interval = dict(interval=(low, high), interval_of="canary proportion",
                    interval_level=1 - 2 * a)
    if maximum is not None and low > maximum:
        return CheckResult(verdict="fail", reason=(
            f"{name}: {shown}: above the limit {fmt_value(maximum, '%')} (at least "
            f"{fmt_value(low, '%')})"), **interval, **base)
    if minimum is not None and high < minimum:
        return CheckResult(verdict="fail", reason=(
            f"{name}: {shown}: below the limit {fmt_value(minimum, '%')} (at most "
            f"{fmt_value(high, '%')})"), **interval, **base)
    if (maximum is None or high <= maximum) and (minimum is None or low >= minimum):
        return CheckResult(verdict="pass", reason=(
            f"{name}: {shown}: within the limit ({bounds})"), **interval, **base)
    return CheckResult(verdict="inconclusive", reason=(
        f"{name}: {shown}: cannot yet tell it from the limit ({bounds}; between "
        f"{fmt_value(low, '%')} and {fmt_value(high, '%')}); more runs will decide"),
        **interval, **base)
