"""What `increase(counter[range])`, and the exact per-step count the built-in configs use
instead, return for a counter scraped off the judge's step grid.

Real targets are scraped at their own phase. A step's range then holds the samples of that
step only: the increments between the previous step's last scrape and this step's first are
seen by neither step, and Prometheus extrapolates what the range does hold to its whole width
(promql/functions.go, `extrapolatedRate`, as of Prometheus 2.42). With 15 s scrapes and 60 s
steps each step sees three intervals of four, scaled by 4/3: per-step counts are not integers
and vary a third more than the requests did. The lab plants samples on the grid unless told
otherwise (`TrafficSide.scrape_offset`), which hides this; the detection benchmark uses
`increase` below to judge the counts a real Prometheus gives (`tests/test_lab.py` checks it
against one).

`exact` is the count the built-in configs now query (`docs/profiles.md`, "Counting a counter
per step"): the change of the series' last sample since the step before's last one, which
telescopes to the true total and is never extrapolated.
"""

from __future__ import annotations

import numpy as np


def increase(ts: np.ndarray, values: np.ndarray, ends: np.ndarray, width: float,
             left_open: bool = False) -> np.ndarray:
    """`increase(series[width])` evaluated at each of `ends` (seconds), NaN where the range
    holds fewer than two samples, as Prometheus gives no point there.

    `ts` and `values` are one counter's samples in time order; resets are handled as
    Prometheus does (a drop adds the value before it). Prometheus 2 selects samples in
    [end − width, end]; `left_open` selects (end − width, end] as Prometheus 3 does.
    """
    ts = np.asarray(ts, dtype=float)
    values = np.asarray(values, dtype=float)
    ends = np.asarray(ends, dtype=float)
    # the counter with resets undone: each drop adds the value before it
    drops = np.concatenate([[0.0], np.where(np.diff(values) < 0, values[:-1], 0.0)])
    corrected = values + np.cumsum(drops)
    starts = ends - width
    lo = np.searchsorted(ts, starts, side="right" if left_open else "left")
    hi = np.searchsorted(ts, ends, side="right") - 1
    out = np.full(ends.size, np.nan)
    ok = hi - lo >= 1
    lo, hi = lo[ok], hi[ok]
    first_t, last_t = ts[lo], ts[hi]
    result = corrected[hi] - corrected[lo]
    sampled = last_t - first_t
    to_start = first_t - starts[ok]
    to_end = ends[ok] - last_t
    average = sampled / (hi - lo)
    first_v = values[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        to_zero = np.where((result > 0) & (first_v >= 0), sampled * first_v / result, np.inf)
    to_start = np.minimum(to_start, to_zero)
    threshold = average * 1.1
    interval = (sampled + np.where(to_start < threshold, to_start, average / 2)
                + np.where(to_end < threshold, to_end, average / 2))
    out[ok] = result * interval / sampled
    return out


LOOKBACK = 3600.0  # seconds: how far back `exact`'s query looks for the step before's last sample


def exact(ts: np.ndarray, values: np.ndarray, ends: np.ndarray, width: float,
          lookback: float = LOOKBACK) -> np.ndarray:
    """What the exact per-step count returns at each of `ends`:
    `((last_over_time(x[width]) - last_over_time(x[lookback] offset width)) >= 0)
    or last_over_time(x[width])`, NaN where the step holds no sample (Prometheus 2's closed
    ranges, as in `increase`).

    The step before's last sample is looked for up to `lookback` seconds back (the built-in
    configs' `[1h]`), so a step shorter than the scrape interval counts the change since the
    previous scrape and a series back after a scrape gap counts the gap's increments once; a
    series without one there (new, or back after a gap longer than the lookback) counts its
    whole value, and so does one whose value fell (a reset counts from 0).
    """
    ts = np.asarray(ts, dtype=float)
    values = np.asarray(values, dtype=float)
    ends = np.asarray(ends, dtype=float)
    out = np.full(ends.size, np.nan)
    if not ts.size:
        return out
    last = np.searchsorted(ts, ends, side="right") - 1
    before = np.searchsorted(ts, ends - width, side="right") - 1
    has = (last >= 0) & (ts[np.maximum(last, 0)] >= ends - width)
    had = (before >= 0) & (ts[np.maximum(before, 0)] >= ends - width - lookback)
    now = values[np.maximum(last, 0)]
    change = now - values[np.maximum(before, 0)]
    counted = np.where(had & (change >= 0), change, now)
    out[has] = counted[has]
    return out
