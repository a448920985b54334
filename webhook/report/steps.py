"""Per-step values behind each check, for the report's charts.

Pure numpy on the arrays the analysis judged. The judge decides on window totals (counts are
judged as counts); these per-step values only show a person how the two sides moved, so a
step without traffic is a gap (NaN), never a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from webhook.judge.histogram import Histogram
from webhook.judge.types import Trace

Buckets = Sequence[tuple[float, np.ndarray]]


def _tuple(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, dtype=float))


def _band(stable: np.ndarray, direction: str, up: np.ndarray,
          down: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(low, high) of the canary's tolerated range; the harmless side is left open (NaN)."""
    nan = np.full(stable.size, np.nan)
    high = up if direction in ("increase", "either") else nan
    low = down if direction in ("decrease", "either") else nan
    return _tuple(low), _tuple(high)


def ratio_trace(bad_c: np.ndarray, total_c: np.ndarray, bad_s: np.ndarray, total_s: np.ndarray,
                allowed: float | None, direction: str) -> Trace:
    """Each side's ratio per step; the band is the stable's ratio ± the tolerated difference."""
    def per_step(bad: np.ndarray, total: np.ndarray) -> np.ndarray:
        total = np.asarray(total, dtype=float)
        bad = np.nan_to_num(np.asarray(bad, dtype=float), nan=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.isfinite(total) & (total > 0),
                            np.clip(bad, 0, None) / total, np.nan)

    c, s = per_step(bad_c, total_c), per_step(bad_s, total_s)
    margin = allowed if allowed is not None and math.isfinite(allowed) else np.nan
    low, high = _band(s, direction, s + margin, np.clip(s - margin, 0, None))
    return Trace(canary=_tuple(c), stable=_tuple(s), band_low=low, band_high=high,
                 value_label="ratio per step", unit="%")


def _step_quantiles(buckets: Buckets, q: float, points: int) -> np.ndarray:
    """`Histogram.quantile` of each step's row, vectorised (every poll pays for it): linear
    inside the bucket, the +Inf bucket read as the last finite bound, NaN without requests."""
    h = Histogram.from_steps(buckets)
    out = np.full(points, np.nan)
    if h.steps is None or not h.steps.size:
        return out
    rows, bounds = h.steps[:points], h.bounds
    finite = bounds[np.isfinite(bounds)]
    last = float(finite[-1]) if finite.size else 0.0
    total = rows[:, -1]
    rank = q * total
    i = np.minimum(np.argmax(rows >= rank[:, None], axis=1), bounds.size - 1)
    upper = bounds[i]
    lower = np.where(i > 0, bounds[np.maximum(i - 1, 0)], np.minimum(0.0, upper))
    below = np.where(i > 0, rows[np.arange(rows.shape[0]), np.maximum(i - 1, 0)], 0.0)
    inside = rows[np.arange(rows.shape[0]), i] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(inside > 0, lower + (upper - lower) * (rank - below) / inside, upper)
    value = np.where(np.isinf(upper), last, value)
    out[: rows.shape[0]] = np.where((total > 0) & np.isfinite(value), value, np.nan)
    return out


def quantile_trace(canary: Buckets, stable: Buckets, q: float, points: int, rel: float,
                   abs_: float, direction: str, unit: str = "s") -> Trace:
    """Each side's q-quantile per step (read off that step's buckets like histogram_quantile);
    the band is the stable's quantile moved by the tolerance, as the judge moves it."""
    c, s = _step_quantiles(canary, q, points), _step_quantiles(stable, q, points)
    with np.errstate(invalid="ignore", divide="ignore"):
        up = np.maximum(s * (1 + rel), s + abs_)
        down = np.clip(np.minimum(s / (1 + rel), s - abs_), 0, None)
    low, high = _band(s, direction, up, down)
    bounds = sorted({b for side in (canary, stable) for le, _ in side
                     if math.isfinite(b := float(le))})
    return Trace(canary=_tuple(c), stable=_tuple(s), band_low=low, band_high=high,
                 bucket_bounds=tuple(bounds),
                 value_label=f"p{q * 100:g} per step (interpolated)", unit=unit)


def series_trace(canary: np.ndarray, stable: np.ndarray, allowed: float | None,
                 direction: str, unit: str = "", label: str = "") -> Trace:
    """The samples themselves; the band is the stable's sample ± the tolerated difference."""
    c, s = np.asarray(canary, dtype=float), np.asarray(stable, dtype=float)
    margin = allowed if allowed is not None and math.isfinite(allowed) else np.nan
    low, high = _band(s, direction, s + margin, s - margin)
    return Trace(canary=_tuple(c), stable=_tuple(s), band_low=low, band_high=high,
                 value_label=label or "value per step", unit=unit)


def share_trace(canary: np.ndarray, stable: np.ndarray) -> Trace:
    """Each side's share of each step's requests: a canary that stopped serving shows as its
    line falling to 0 % and the stable's rising to 100 % (a step the canary did not report,
    while the stable did, as 0)."""
    c, s = np.asarray(canary, dtype=float), np.asarray(stable, dtype=float)
    c = np.where(np.isfinite(s) & ~np.isfinite(c), 0.0, c)
    total = c + s
    served = np.isfinite(total) & (total > 0)
    safe = np.where(served, total, 1.0)
    return Trace(canary=_tuple(np.where(served, c / safe, np.nan)),
                 stable=_tuple(np.where(served, s / safe, np.nan)),
                 value_label="share of requests per step", unit="%")


def threshold_trace(canary: np.ndarray, minimum: float | None, maximum: float | None,
                    absolute: bool) -> Trace:
    c = np.asarray(canary, dtype=float)
    limits = tuple(float(x) for x in (minimum, maximum) if x is not None)
    return Trace(canary=_tuple(np.abs(c) if absolute else c), limits=limits,
                 value_label="|value| per step" if absolute else "value per step")


def events_trace(canary: np.ndarray, stable: np.ndarray | None, allowed: float) -> Trace:
    """Events so far (cumulative), against the number allowed."""
    def running(values: np.ndarray | None) -> tuple[float, ...]:
        if values is None:
            return ()
        v = np.asarray(values, dtype=float)
        return _tuple(np.cumsum(np.clip(np.where(np.isfinite(v), v, 0.0), 0, None)))

    return Trace(canary=running(canary), stable=running(stable), limits=(float(allowed),),
                 value_label="events so far")
