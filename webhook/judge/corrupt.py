"""Corrupt samples: a series that is there but holds NaN, ±Inf or a negative count.

An absent series is normal (a 5xx counter that never fired has none) and the judges read it as
zero events or as no data. A *present* sample that is NaN or ±Inf (a division by zero, an
overflow, a broken exporter or recording rule), or a negative count (`increase()` and the
built-in configs' exact counts already handle counter resets, so a count below zero is never
real), is neither: reading it as zero, or skipping it, once let a canary with three times the
errors pass. Such a check is inconclusive, and its reason names the metric, the side and the
bad value so that a person can find the broken series. A count that is merely large is data
below 1e15 (the judges' implausible-count check, `sequential.MAX_COUNT`): the whole value an
exact count gives a series back after a scrape gap longer than its lookback (README
"Counting a counter per step") is not flagged.

Pure functions on arrays: the analysis calls them with the mask of steps that had a sample (the
only way to tell a NaN sample from a missing one); the judges call them on the arrays they get,
where NaN means "no sample", so only ±Inf and negative counts are visible there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from webhook.judge.types import CheckResult, Summary

# Roles whose per-step values are counts (requests, events, bucket increments).
COUNT_ROLES = frozenset({"numerator", "total", "events", "buckets"})
# increase() of a float counter can come out a hair below zero through rounding.
NEGATIVE_SLACK = 1e-9

_ROLE_WORDS = {"numerator": "bad-event count", "good": "good-event count", "total": "request count",
               "events": "event count", "buckets": "histogram bucket count",
               "values": "value"}


def first_corrupt(values: np.ndarray, present: np.ndarray | None = None, *,
                  counts: bool = True) -> tuple[int, float] | None:
    """(step index, value) of the first corrupt sample, or None.

    `present` marks steps that had a sample; without it NaN is taken as "no sample". For counts
    NaN, ±Inf and negative values are corrupt; for gauges (`counts=False`, where a negative value
    is real and a NaN is an undefined step such as 0/0) only ±Inf is.
    """
    arr = np.asarray(values, dtype=float)
    if present is None and counts and plain_counts(arr):  # the judges' check: almost always
        return None
    hits = np.flatnonzero(_corrupt_mask(
        arr, None if present is None else np.asarray(present, dtype=bool), counts))
    if hits.size == 0:
        return None
    return int(hits[0]), float(arr[hits[0]])


def plain_counts(values: np.ndarray) -> bool:
    """No infinite and no negative count among `values` (NaN, an absent step, is neither):
    the usual window, told in two reductions instead of a mask per test."""
    if not values.size:
        return True
    low, high = np.fmin.reduce(values, axis=None), np.fmax.reduce(values, axis=None)
    return not (low < -NEGATIVE_SLACK or high == math.inf)


def none_corrupt(counts: Sequence[np.ndarray], gauges: Sequence[np.ndarray],
                 present: Sequence[np.ndarray | None] | None = None) -> bool:
    """True when no sample of these series can be corrupt: every count ≥ −NEGATIVE_SLACK and
    short of +Inf, and NaN only where `present` (one mask or None per count series, None: NaN
    means no sample) says there was no sample; every gauge short of ±Inf. A few reductions over
    all of a metric's series at once instead of a mask per series; False (`first_corrupt_of`
    decides) when unsure, e.g. a NaN without `present`, or a value out of range at a step
    without a sample.

    A sequential window holds the canary's absent steps before its first pod (NaN): they are
    told from a NaN sample by `present` here, not by the mask per series."""
    if counts:
        values = np.concatenate(counts)
        with np.errstate(over="ignore", invalid="ignore"):  # ±Inf, overflow: not plain
            total = np.add.reduce(values)
        if values.size and not (math.isfinite(total)
                                and np.minimum.reduce(values) >= -NEGATIVE_SLACK) and (
                present is None or not _plain_with_gaps(values, counts, present)):
            return False
    if gauges:
        values = np.concatenate(gauges)
        if values.size and not (np.fmax.reduce(values) < math.inf
                                and np.fmin.reduce(values) > -math.inf):
            return False
    return True


def _plain_with_gaps(values: np.ndarray, counts: Sequence[np.ndarray],
                     present: Sequence[np.ndarray | None]) -> bool:
    """`none_corrupt`'s counts check when their sum is not finite: `values` (the counts laid
    end to end) have no −Inf, +Inf or negative value at all (NaN aside: fmin and fmax skip
    it), and every NaN is at a step without a sample."""
    low, high = np.fmin.reduce(values), np.fmax.reduce(values)
    if low < -NEGATIVE_SLACK or high == math.inf:  # NaN when all are NaN: neither
        return False
    gaps = np.isnan(values)
    if not gaps.any():  # a finite sum of finite values that overflowed: first_corrupt_of says
        return False
    had = np.concatenate([np.zeros(c.shape, bool) if p is None else p
                          for c, p in zip(counts, present, strict=True)])
    return not np.logical_and(gaps, had).any()


def _corrupt_mask(arr: np.ndarray, present: np.ndarray | None, counts: bool) -> np.ndarray:
    """Where `arr` holds a corrupt sample (`first_corrupt`'s definition), any shape."""
    with np.errstate(invalid="ignore"):
        if counts:
            bad = ~np.isfinite(arr) if present is not None else np.isinf(arr)
            bad |= arr < -NEGATIVE_SLACK
        else:
            bad = np.isinf(arr)
    if present is not None:
        bad &= present
    return bad


def first_corrupt_of(series: Sequence[np.ndarray], present: Sequence[np.ndarray | None], *,
                     counts: bool = True) -> tuple[int, int, float] | None:
    """(series index, step index, value) of the first corrupt sample of the first series that
    has one, or None: `first_corrupt` on each series in turn, in one pass over all of them
    when they share a grid (a histogram's buckets are dozens of series)."""
    width = series[0].size if series else 0
    if len(series) < 4 or any(v.size != width for v in series) or any(
            (p is None) != (present[0] is None) for p in present):
        # few series (stacking costs more than it saves), or not one grid: one by one
        for i, (values, mask) in enumerate(zip(series, present, strict=True)):
            bad = first_corrupt(values, mask, counts=counts)
            if bad is not None:
                return i, bad[0], bad[1]
        return None
    arr = np.array(series, dtype=float).reshape(len(series), width)
    mask = (None if present[0] is None
            else np.array(present, dtype=bool).reshape(arr.shape))
    hits = np.flatnonzero(_corrupt_mask(arr, mask, counts))  # row-major: first series first
    if hits.size == 0:
        return None
    row, step = divmod(int(hits[0]), width)
    return row, step, float(arr[row, step])


def fmt_bad(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def corrupt_reason(name: str, side: str, role: str, value: float, where: str = "") -> str:
    """One line naming the metric, the side, the kind of series and the bad value."""
    what = _ROLE_WORDS.get(role, role)
    at = f" at {where}" if where else ""
    return (f"{name}: the {side}'s {what} series is corrupt ({fmt_bad(value)}{at}); a present "
            "series that is NaN, ±Inf or a negative count is not data: fix the exporter or the "
            "query")


def corrupt_check(name: str, kind: str, side: str, role: str, value: float, *,
                  where: str = "", critical: bool = False, weight: float = 1.0) -> CheckResult:
    """The inconclusive check that stands in for a judgement on corrupt data."""
    return CheckResult(name=name, kind=kind, verdict="inconclusive",
                       test="data check: present series must be finite counts",
                       reason=corrupt_reason(name, side, role, value, where),
                       canary=Summary(0.0, None), stable=Summary(0.0, None),
                       critical=critical, weight=weight)
