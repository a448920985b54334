"""Latency quantiles judged from Prometheus histogram bucket counts, claiming only what the
counts show.

Every request in the window counts, not one number per step: the per-step bucket increments are
summed into one cumulative histogram per side (buckets whose `le` spells the same bound
differently are merged). The point estimate shown is read off it by linear interpolation inside
the bucket, like `histogram_quantile()`; no decision rests on it.

Interval for a quantile: the distribution-free order-statistic interval (Conover, "Practical
Nonparametric Statistics", 3rd ed., 1999, §3.2; Hahn & Meeker 1991): with n requests, the
q-quantile lies between the order statistics of ranks `binom.ppf(a, n, q)` and
`binom.ppf(1 - a, n, q) + 1` with probability ≥ 1 − 2a (scipy.stats.binom). A rank is only known
to lie in its bucket, so the lower rank maps to the lower edge of its bucket and the upper rank
to the upper edge of its own: the interval holds wherever requests sit inside their buckets.

Decision for canary vs stable, each side's bound at a = alpha/2 so both hold jointly with
probability ≥ 1 − alpha (Bonferroni):
- fail when the canary's lower bound exceeds the stable's upper bound by more than tolerated;
- pass when the canary's upper bound is within tolerance of the stable's lower bound;
- otherwise inconclusive (too few requests, buckets too wide, or a quantile in the +Inf
  bucket). When the buckets around the stable's quantile are wider than the tolerance (both
  p99 in 0.25–0.5 s allow ×2), no number of requests can ever pass the check: the reason names
  the buckets and the bounds that would resolve them, and if the metric also judges its tail
  share (`tailshare.py`) the check is informational (`blocking=False`).

Sequential mode fails on tail exceedances instead (`tail_exceedances`), judged by the
anytime-valid rate-ratio martingale of `sequential.py`: the canary's requests above a bucket
bound at least (1 + tolerance) × the stable's running q-quantile (rounded down to a bound)
against the stable's requests above that bound, and the mirror anchored on the canary's running
quantile, the two martingales averaged. Both counts are exact (never interpolated), rounded the
way that errs against a failure. Two separate intervals that must not overlap waste power
(each side pays its own margin); comparing the two exceedance counts in one test does not, and
the martingale can be read at every poll instead of spending alpha over a grid of looks.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from webhook.judge import sequential as seq
from webhook.judge.memo import HISTORY
from webhook.judge.tails import norm_isf
from webhook.judge.types import CheckResult, Summary, Trace, fmt_count, fmt_value, tri_state

MAX_COUNT = seq.MAX_COUNT  # beyond it bucket counts are corrupt (sequential.py says why)
TEST_NAME = "order-statistic quantile intervals from histogram buckets (Bonferroni)"
SEQUENTIAL_TEST_NAME = ("anytime-valid mixture martingale on tail exceedances beyond the stable's "
                        "running quantile (Lindon & Malek 2022)")
# The half-normal mixture's scale on log(exceedance ratio): a quantile 25 % above the stable's
# at a 20 % tolerance moves the exceedance ratio to only ~1.2, so the mixture is kept narrow.
TAIL_MIXTURE_SCALE = 0.2
# Latency tails vary between steps more than binomially (a slow dependency for a minute): the
# dispersion (`sequential.step_dispersion`) is estimated from the steps, starting from this
# prior worth this many steps. Tail counts per step are larger than error counts, so the same
# clumpiness needs a smaller γ.
TAIL_DISPERSION_PRIOR = (0.02, 3.0)
# A quantile check the buckets "cannot resolve" is one that would stay inconclusive with this
# many times the requests in the same proportions (`_unresolvable`).
LAYOUT_TEST_FACTOR = 100.0


try:  # the ufunc behind scipy.stats.binom.ppf, without rv_discrete's argument handling
    # (~130 µs a call; the fixed-mode p-value bisection makes a hundred calls per check)
    from scipy.special._ufuncs import _binom_ppf as _binom_ppf_ufunc
except ImportError:  # pragma: no cover - a scipy that moved it: the public function
    _binom_ppf_ufunc = None


def _binom_ppf(a: float, n: int, q: float) -> np.ndarray:
    """stats.binom.ppf([a, 1 − a], n, q), the same numbers (tests/test_judges_fast.py)."""
    if _binom_ppf_ufunc is None or not (0 < a < 1 and 0 < q < 1 and n >= 0):
        return np.asarray(stats.binom.ppf([a, 1 - a], n, q), dtype=float)
    return _binom_ppf_ufunc(np.array([a, 1 - a]), float(n), q)  # float64 already


def _binom_rank(a: float, n: int, q: float, upper: bool) -> float:
    """One of `_binom_ppf(a, n, q)`'s two numbers (the second when `upper`), the same float:
    the ufunc is elementwise, and each element costs a few µs of its search (the fixed-mode
    p-value's bisection wants one rank per side and look)."""
    if _binom_ppf_ufunc is None or not (0 < a < 1 and 0 < q < 1 and n >= 0):
        return float(_binom_ppf(a, n, q)[1 if upper else 0])
    return float(_binom_ppf_ufunc(1 - a if upper else a, float(n), q))


class Histogram:
    """A cumulative histogram: upper bounds (ending in +Inf when present) and counts ≤ bound.

    `steps` keeps the per-step cumulative counts (one row per step) when the histogram was
    summed from steps: the sequential test needs to know when each request arrived.
    """

    def __init__(self, bounds: np.ndarray, cumulative: np.ndarray,
                 steps: np.ndarray | None = None) -> None:
        self.bounds = bounds
        self.cumulative = cumulative
        self.steps = steps
        self._lists: tuple[list[float], list[float]] | None = None

    def _as_lists(self) -> tuple[list[float], list[float]] | None:
        """(bounds, cumulative) as Python floats, for the scalar look-ups of one rank (numpy
        costs ~1 µs a call there, and the fixed-mode p-value bisection makes dozens); None
        when a count is NaN, where only np.searchsorted's ordering (NaN last) applies.
        Histograms are not changed after they are built."""
        if self._lists is None:
            cumulative = self.cumulative.tolist()
            if any(c != c for c in cumulative):
                return None
            self._lists = (self.bounds.tolist(), cumulative)
        return self._lists

    def _search(self, rank: float) -> int:
        """np.searchsorted(self.cumulative, rank, side="left"): the first bucket whose
        cumulative count reaches `rank`."""
        lists = self._as_lists() if rank == rank else None
        if lists is None:
            return int(np.searchsorted(self.cumulative, rank, side="left"))
        return bisect.bisect_left(lists[1], rank)

    @classmethod
    def from_steps(cls, buckets: Sequence[tuple[float, np.ndarray]]) -> Histogram:
        """Sum per-step bucket increments (NaN = absent) into one window histogram.

        Series whose `le` spells the same bound differently ("0.2", "2e-1", "2.0e-1": two
        targets, two client libraries) arrive separately from `sum by (le)`; they are one bucket
        and are added up. Counter extrapolation in `increase()` (a config of one's own may
        count with it) can make a bucket look fractionally larger than the next; cumulative
        counts are forced monotone so ranks stay meaningful.
        """
        if not isinstance(buckets, list | tuple):  # read twice below: an iterator once
            buckets = list(buckets)
        fast = cls._one_grid(buckets)
        if fast is not None:
            bounds, by_bound = fast
            return cls._from_grid(bounds, by_bound)
        merged: dict[float, np.ndarray] = {}
        for le, v in buckets:
            bound = float(le)
            if bound != bound:  # NaN
                continue
            values = (v if type(v) is np.ndarray and v.ndim == 1 and v.dtype == np.float64
                      else np.atleast_1d(np.asarray(v, dtype=float)))  # as decoded: as is
            old = merged.get(bound)
            if old is not None:
                width = max(old.size, values.size)
                a, b = np.full(width, np.nan), np.full(width, np.nan)
                a[:old.size], b[:values.size] = old, values
                both = np.isnan(a) & np.isnan(b)
                with np.errstate(over="ignore", invalid="ignore"):  # corrupt: caught later
                    total = np.where(np.isnan(a), 0.0, a) + np.where(np.isnan(b), 0.0, b)
                merged[bound] = np.where(both, np.nan, total)
            else:
                merged[bound] = values
        if not merged:
            return cls(np.array([]), np.array([]), np.zeros((0, 0)))
        ordered = sorted(merged)  # distinct floats: no two compare equal
        arrays = [merged[b] for b in ordered]
        bounds = np.array(ordered)
        sizes = {x.size for x in arrays}
        if len(sizes) == 1:  # one grid (always, from a query): at once
            return cls._from_grid(bounds, np.concatenate(arrays).reshape(len(arrays),
                                                                        sizes.pop()))
        # absent (NaN) and negative increments count as none: fmax(NaN, 0) is 0
        rows = np.zeros((max(sizes), bounds.size))
        for j, values in enumerate(arrays):
            rows[:values.size, j] = np.fmax(values, 0.0)
        return cls._from_rows(bounds, rows, False)

    @classmethod
    def from_step_spans(cls, buckets: Sequence[tuple[float, np.ndarray]],
                        spans: Sequence[slice]) -> list[Histogram]:
        """`from_steps` of each span of steps of the same series ([(le, v[span]), …] for each
        span; spans that do not overlap), the same histograms: the buckets are read into one
        grid once, not once per span (the stable's history and its window)."""
        fast = cls._one_grid(buckets)
        if fast is None:
            return [cls.from_steps([(le, v[span]) for le, v in buckets]) for span in spans]
        bounds, by_bound = fast
        # each span a view of the fresh grid: `_from_grid` changes only its own columns
        return [cls._from_grid(bounds, by_bound[:, span]) for span in spans]

    @staticmethod
    def _one_grid(buckets: Sequence[tuple[float, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """(sorted bounds, their increments as a fresh bounds × steps array) when no bound is
        NaN or spelled twice and every series has one value per step of one grid (every
        answer of a query): `from_steps`' merge without its Python work per bucket (a third
        of building a histogram of 23 buckets); None otherwise (the merge decides)."""
        if len(buckets) < 2:
            return None
        try:
            bounds = np.array([float(le) for le, _ in buckets])
            # the values as the merge reads them (np.asarray(v, dtype=float)), one row each
            grid = np.array([v for _, v in buckets], dtype=float)
        except (TypeError, ValueError):  # ragged series: not one grid
            return None
        if grid.ndim != 2 or not grid.shape[1]:
            return None
        order = bounds.argsort()
        bounds = bounds[order]
        # sorted, distinct and no NaN (NaN sorts last and compares false): else merge them
        if not np.less(bounds[:-1], bounds[1:]).all() or bounds[-1] != bounds[-1]:
            return None
        return bounds, grid[order]

    @classmethod
    def _from_grid(cls, bounds: np.ndarray, by_bound: np.ndarray) -> Histogram:
        """The histogram of one grid's increments (bounds × steps, changed in place)."""
        # absent (NaN) and negative increments count as none: fmax(NaN, 0) is 0
        np.fmax(by_bound, 0.0, out=by_bound)
        rows = np.ascontiguousarray(by_bound.T)
        # usually every step's counts already grow with the bound: then forcing them
        # monotone (a serial running maximum per step) would change nothing
        monotone = not np.less(by_bound[1:], by_bound[:-1]).any()
        return cls._from_rows(bounds, rows, monotone)

    @classmethod
    def _from_rows(cls, bounds: np.ndarray, rows: np.ndarray, monotone: bool) -> Histogram:
        with np.errstate(over="ignore", invalid="ignore"):
            steps = rows if monotone else np.maximum.accumulate(rows, axis=1)
            cumulative = np.maximum.accumulate(np.add.reduce(rows, axis=0))  # rows.sum()
        if not np.isfinite(cumulative).all():  # overflowing counts: corrupt, judged later
            cumulative = np.nan_to_num(cumulative)
        return cls(bounds, cumulative, steps)

    @property
    def layout_problem(self) -> str | None:
        """Why these buckets cannot be read at all, or None: without a `+Inf` bucket the
        count of all requests is unknown (a rank cannot be placed), and a single bucket says
        nothing about where requests lie."""
        if self.bounds.size == 0:
            return "no buckets"
        if self.bounds.size == 1:
            return "a single bucket"
        if not math.isinf(self.bounds[-1]):
            return "no +Inf bucket"
        return None

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
        i = min(self._search(rank), self.bounds.size - 1)
        lists = self._as_lists()
        bounds, cumulative = lists if lists is not None else (self.bounds, self.cumulative)
        upper = bounds[i]
        if math.isinf(upper):
            return inf_bucket_as
        lower = bounds[i - 1] if i > 0 else min(0.0, upper)
        below = cumulative[i - 1] if i > 0 else 0.0
        inside = cumulative[i] - below
        if inside <= 0:
            return float(upper)
        return float(lower + (upper - lower) * ((rank - below) / inside))  # no overflow

    @property
    def last_finite_bound(self) -> float:
        finite = self.bounds[np.isfinite(self.bounds)]
        return float(finite[-1]) if finite.size else 0.0

    def quantile(self, q: float) -> float:
        """Point estimate like histogram_quantile(): the +Inf bucket reads as the last bound."""
        return self.value_at_rank(q * self.total, inf_bucket_as=self.last_finite_bound)

    def bucket_of_rank(self, rank: float) -> int:
        """Index of the bucket holding the request of this rank (1-based)."""
        return min(self._search(max(rank, 0.0)), self.bounds.size - 1)

    def edges(self, i: int) -> tuple[float, float]:
        """(lower, upper) edge of bucket i: the first bucket starts at 0 (latencies are not
        negative), the +Inf bucket ends at +Inf."""
        lists = self._as_lists()
        bounds = lists[0] if lists is not None else self.bounds
        upper = float(bounds[i])
        lower = float(bounds[i - 1]) if i > 0 else min(0.0, upper)
        return lower, upper

    def quantile_bounds(self, q: float, a: float) -> tuple[float, float]:
        """(lower, upper) bounds for the q-quantile, each failing with probability ≤ a, that
        hold wherever the requests sit inside their buckets: the lower order statistic is at
        least the lower edge of its bucket, the upper one at most the upper edge of its own."""
        n = round(self.total)
        if n <= 0:
            return math.nan, math.nan
        low_rank, high_rank = _binom_ppf(a, n, q).tolist()
        return self._low_edge(low_rank), self._high_edge(high_rank + 1, n)

    def quantile_bound(self, q: float, a: float, upper: bool) -> float:
        """`quantile_bounds(q, a)`'s upper bound (`upper`) or lower one alone, the same number
        for half the binomial quantiles."""
        return self.bound_of(q, upper)(a)

    def bound_of(self, q: float, upper: bool) -> Callable[[float], float]:
        """`quantile_bound(q, a, upper)` as a function of a, with the count of requests read
        once (the fixed-mode p-value's bisection asks for fifty a)."""
        n = round(self.total)
        if n <= 0:
            return lambda a: math.nan
        if upper:
            return lambda a: self._high_edge(_binom_rank(a, n, q, True) + 1, n)
        return lambda a: self._low_edge(_binom_rank(a, n, q, False))

    def _low_edge(self, rank: float) -> float:
        return self.edges(self.bucket_of_rank(rank))[0] if rank >= 1 else 0.0

    def _high_edge(self, rank: float, n: int) -> float:
        return self.edges(self.bucket_of_rank(rank))[1] if rank <= n else math.inf


def _rows_quantile(rows: np.ndarray, bounds: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """q-quantile of each row of cumulative counts, interpolated like histogram_quantile();
    NaN for a row without requests or whose quantile lies in the +Inf bucket (unknown)."""
    if not rows.size:
        return np.full(rows.shape[0], np.nan)
    total = rows[:, -1]
    rank = q * total
    i = np.argmax(rows >= rank[:, None], axis=1)
    np.minimum(i, bounds.size - 1, out=i)
    upper = bounds[i]
    previous = i - 1
    inner = previous >= 0  # i > 0
    np.maximum(previous, 0, out=previous)
    lower = np.where(inner, bounds[previous], np.minimum(0.0, upper))
    # rows[r, i] as flat positions: cheaper than 2-d fancy indexing
    start = np.arange(0, rows.size, rows.shape[1])
    flat = rows.ravel()
    below = np.where(inner, flat[start + previous], 0.0)
    inside = flat[start + i] - below
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        value = np.where(inside > 0, lower + (upper - lower) * (rank - below) / inside, upper)
    return np.where((total > 0) & np.isfinite(upper), value, np.nan)


def _snap(bounds: np.ndarray, x: np.ndarray, up: bool | np.ndarray) -> np.ndarray:
    """Each x moved to a bucket bound: the smallest bound ≥ x (`up`) or the largest ≤ x (0
    below the first bound: latencies are not negative); `up` is one direction for all, or
    one per value. NaN where x is not finite or rounding up would reach +Inf (nothing is
    counted above the last finite bound). Bounds are sorted and distinct
    (`Histogram.from_steps`), so the largest bound ≤ x is the smallest bound ≥ x when x is a
    bound, else the one before it: one search serves both directions."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    if not bounds.size or not ok.any():
        return np.full(x.shape, np.nan)
    up = np.asarray(up)
    # searched with the non-finite values too (they sort to an end), then masked out: no
    # boolean subsetting and scattering back
    size = bounds.size
    i = bounds.searchsorted(x, side="left")
    at = bounds[np.minimum(i, size - 1)]
    down = i - 1
    down += (i < size) & (at == x)  # x is a bound: that one
    index = np.where(up, i, down)
    np.maximum(index, 0, out=index)
    got = bounds[np.minimum(index, size - 1, out=index)]
    got[up & (i >= size)] = np.inf  # nothing counted above the last bound: unknown below
    got[~up & (down < 0)] = 0.0
    return np.where(ok & np.isfinite(got), got, np.nan)


def _rows_count_above(rows: np.ndarray, bounds: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Requests above x[r] in each row, where x is a bucket bound (or 0, below all of them):
    an exact count, never interpolated. NaN where x is NaN. `x` may hold several blocks of
    one value per row (one block per quantile): each block is counted on the same rows."""
    x = np.asarray(x, dtype=float)
    if not bounds.size or not rows.size:
        return np.full(x.size if x.ndim else rows.shape[0], np.nan)
    repeat = max(x.size // rows.shape[0], 1)
    ok = np.isfinite(x)
    xs = np.where(ok, x, 0.0)
    i = bounds.searchsorted(xs, side="left")
    j = np.minimum(i, bounds.size - 1)
    exact = (i < bounds.size) & (bounds[j] == xs)
    width = rows.shape[1]
    start = np.arange(0, rows.size, width)  # rows[r, j] as flat positions
    start = _blocks(start, repeat)
    flat = rows.ravel()
    at_or_below = np.where(exact, flat[start + j], 0.0)
    last = flat[start + (width - 1)]
    return np.where(ok, np.maximum(last - at_or_below, 0.0), np.nan)


def tail_exceedances(canary: Histogram, stable: Histogram, q: float, rel: float, abs_: float,
                     slower: bool, min_tail: float, history: Histogram | None = None,
                     anchor: str = "stable") -> tuple[np.ndarray, ...]:
    """Per step: (canary requests above its threshold, canary requests, stable requests above
    its threshold, stable requests). Slower is harm when the canary's share of exceedances is
    too high, faster when it is too low.

    The anchor side's threshold at step t is its q-quantile over steps 0 … t−1, known before
    step t's requests arrive, which keeps each step's comparison a fair bet. The other side's
    is that value moved by the tolerance (× (1 + rel) or + abs_, or the reverse), in the
    direction that makes "the canary's quantile is within tolerance" imply "the canary exceeds
    its threshold no more often than the stable exceeds its own" (for slower as harm; the
    mirror for faster). Anchoring on the stable judges where the stable's distribution is
    known best; anchoring on the canary judges where the canary's quantile actually is, often
    a steeper part of the stable's tail; `judge_quantile` uses both. Steps before the anchor
    has `min_tail` requests beyond its quantile count for nothing. The stable's `history`
    before the rollout (same buckets) counts as steps before step 0 of a stable anchor.
    """
    return tail_exceedances_of(canary, stable, (q,), rel, abs_, slower, min_tail, history,
                               anchor)[0]


def tail_exceedances_of(canary: Histogram, stable: Histogram, qs: Sequence[float], rel: float,
                        abs_: float, slower: bool, min_tail: float,
                        history: Histogram | None = None,
                        anchor: str = "stable") -> list[tuple[np.ndarray, ...]]:
    """`tail_exceedances` for each quantile of `qs`, in one pass: a histogram's quantiles
    share the anchor's running counts, and the per-step work on tiny arrays is mostly numpy's
    per-call overhead, so the quantiles' rows are stacked and each step of the computation is
    one call for all of them."""
    return _exceedances(canary, stable, qs, rel, abs_, slower, min_tail, history,
                        (anchor,))[anchor]


def tail_exceedances_anchored(canary: Histogram, stable: Histogram, qs: Sequence[float],
                              rel: float, abs_: float, slower: bool, min_tail: float,
                              history: Histogram | None = None
                              ) -> dict[str, list[tuple[np.ndarray, ...]]]:
    """`tail_exceedances_of` anchored on the stable and on the canary (`judge_quantile` uses
    both), the same numbers, in one stacked pass when both sides have the same buckets (the
    usual case): the two anchors' blocks differ only in whose rows are summed and in which
    way each threshold is rounded, so every step of the computation is one call for both."""
    return _exceedances(canary, stable, qs, rel, abs_, slower, min_tail, history,
                        ("stable", "canary"))


def _exceedances(canary: Histogram, stable: Histogram, qs: Sequence[float], rel: float,
                 abs_: float, slower: bool, min_tail: float, history: Histogram | None,
                 anchors: tuple[str, ...]) -> dict[str, list[tuple[np.ndarray, ...]]]:
    """`tail_exceedances` per anchor and quantile, the rows of every (anchor, quantile) block
    stacked: anchors on different buckets are counted one after the other (each anchor's
    thresholds are read off its own bounds)."""
    rows_c, rows_s = canary.steps, stable.steps
    if rows_c is None or rows_s is None or not rows_c.size or not rows_s.size or (
            rows_c.shape[0] != rows_s.shape[0]):
        empty = np.zeros(0)
        return {a: [(empty, empty, empty, empty) for _ in qs] for a in anchors}
    if len(anchors) > 1 and (rows_c.shape != rows_s.shape or not same_bounds(canary, stable)):
        return {a: _exceedances(canary, stable, qs, rel, abs_, slower, min_tail, history,
                                (a,))[a] for a in anchors}
    m, k = rows_s.shape[0], len(qs)
    blocks = []
    for a in anchors:
        rows = rows_s if a == "stable" else rows_c
        before = np.empty_like(rows)  # the anchor's counts over the steps before each one
        before[0] = 0.0
        rows[:-1].cumsum(axis=0, out=before[1:])
        if a == "stable" and history is not None and _same_buckets(history, stable):
            before += history.cumulative
        blocks.append(_blocks(before, k))  # one block of rows per quantile
    stacked = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    q = np.repeat(np.asarray(tuple(qs) * len(anchors), dtype=float), m)
    # one bounds for every anchor (the same buckets when there are two)
    base, other = (stable, canary) if anchors[0] == "stable" else (canary, stable)
    y = _rows_quantile(stacked, base.bounds, q)
    y[stacked[:, -1] * (1 - q) < min_tail] = np.nan
    # Both thresholds are bucket bounds, so both counts are exact: the anchor's quantile is
    # rounded to a bound, the other side's threshold is the bound beyond that one moved by the
    # tolerance. Rounded the way that errs against a failure (for slower as harm: the stable's
    # down, the canary's up), the pair keeps "within tolerance ⇒ the canary exceeds its bound
    # no more often than the stable exceeds its own" without any assumption about where
    # requests sit inside a bucket.
    block = k * m
    parts = [slice(i * block, (i + 1) * block) for i in range(len(anchors))]
    up: bool | np.ndarray = (anchors[0] == "stable") != slower
    if len(anchors) > 1:
        up = np.repeat([(a == "stable") != slower for a in anchors], block)
    ya = _snap(base.bounds, y, up)
    moved = np.empty_like(ya)
    with np.errstate(invalid="ignore"):
        for a, part in zip(anchors, parts, strict=True):
            if slower == (a == "stable"):
                np.maximum(ya[part] * (1 + rel), ya[part] + abs_, out=moved[part])
            else:
                np.minimum(ya[part] / (1 + rel), ya[part] - abs_, out=moved[part])
        moved[~(moved > 0)] = np.nan
    xo = _snap(other.bounds, moved, np.logical_not(up))
    x_c = _joined([xo[p] if a == "stable" else ya[p] for a, p in zip(anchors, parts,
                                                                     strict=True)])
    x_s = _joined([ya[p] if a == "stable" else xo[p] for a, p in zip(anchors, parts,
                                                                     strict=True)])
    n = k * len(anchors)
    e_c = _rows_count_above(rows_c, canary.bounds, x_c)  # one block per (anchor, quantile)
    e_s = _rows_count_above(rows_s, stable.bounds, x_s)
    known = np.isfinite(e_c) & np.isfinite(e_s)
    total_c, total_s = _blocks(rows_c[:, -1], n), _blocks(rows_s[:, -1], n)
    counts = (np.where(known, e_c, 0.0), np.where(known, total_c, 0.0),
              np.where(known, e_s, 0.0), np.where(known, total_s, 0.0))
    out = [tuple(x[i * m:(i + 1) * m] for x in counts) for i in range(n)]
    return {a: out[i * k:(i + 1) * k] for i, a in enumerate(anchors)}


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _blocks(x: np.ndarray, k: int) -> np.ndarray:
    """`x` stacked k times along its first axis (np.tile's result, without its Python-level
    overhead: a fifth of a tail count's time)."""
    return x if k == 1 else np.concatenate((x,) * k)


def _same_buckets(history: Histogram | None, stable: Histogram) -> bool:
    return (history is not None and history.total > 0
            and same_bounds(history, stable))


def same_bounds(one: Histogram, other: Histogram) -> bool:
    """np.array_equal of their bounds (never NaN: `from_steps` drops them), without its
    Python-level overhead."""
    return one.bounds.shape == other.bounds.shape and bool((one.bounds == other.bounds).all())


def tail_dispersion_prior(history: Histogram | None, stable: Histogram,
                          q: float) -> tuple[float, float]:
    """`step_dispersion`'s prior for the tail counts, calibrated on the stable's steps before
    the rollout (how much its share above its own q-quantile varied from step to step) when
    there are enough of them, else the default."""
    if history is None or history.steps is None or not _same_buckets(history, stable):
        return TAIL_DISPERSION_PRIOR
    return _history_tail_prior(history.bounds, history.cumulative, history.steps, q)


@HISTORY.memoise
def _history_tail_prior(bounds: np.ndarray, cumulative: np.ndarray, steps: np.ndarray,
                        q: float) -> tuple[float, float]:
    """`tail_dispersion_prior` of the history histogram made of these arrays.

    The history is the same at every poll of a rollout (its start is fixed and its steps are
    settled), and so is this value: it is remembered by the arrays' content (`memo.HISTORY`)
    instead of a quantile, an exceedance count per step and the Pearson moments at every
    poll, for each quantile."""
    history = Histogram(bounds, cumulative, steps)
    y = history.value_at_rank(q * history.total, inf_bucket_as=math.nan)
    rows = history.steps
    above = _rows_count_above(rows, history.bounds,
                              _snap(history.bounds, np.full(rows.shape[0], y), up=False))
    if not np.isfinite(above).all():
        return TAIL_DISPERSION_PRIOR
    return seq.history_dispersion(above, rows[:, -1]) or TAIL_DISPERSION_PRIOR


def _beyond(canary_low: float, stable_high: float, rel: float, abs_: float) -> bool:
    return canary_low > stable_high + max(rel * stable_high, abs_)


def _p_value(hc: Histogram, hs: Histogram, q: float, rel: float, abs_: float, up: bool) -> float:
    """Smallest alpha at which the fail condition holds (bisection; it is monotone in alpha)."""
    low, high = (hc, hs) if up else (hs, hc)
    # one bound of each side decides: the other two binomial quantiles are not computed
    low_bound, high_bound = low.bound_of(q, False), high.bound_of(q, True)

    def fails(alpha: float) -> bool:
        return _beyond(low_bound(alpha / 2), high_bound(alpha / 2), rel, abs_)

    if not fails(1.0):  # most checks stop here, before the bisection
        return 1.0
    lo, hi = 1e-12, 1.0
    if fails(lo):
        return lo
    for _ in range(24):  # geometric: 1e-12..1 to within ~0.2 % of the p-value
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fails(mid) else (mid, hi)
    return hi


def _exceedance_text(e_c: np.ndarray, t_c: np.ndarray, e_s: np.ndarray, t_s: np.ndarray,
                     slower: bool, total_name: str = "requests") -> str:
    """Why the sequential test failed, in the counts it compared."""
    share_c = float(e_c.sum()) / max(float(t_c.sum()), 1.0)
    share_s = float(e_s.sum()) / max(float(t_s.sum()), 1.0)
    where = "beyond the stable's quantile + tolerance" if slower else (
        "above the stable's quantile − tolerance")
    return (f" ({fmt_value(share_c * 100)}% of canary {total_name} {where} vs "
            f"{fmt_value(share_s * 100)}% of stable {total_name} above its quantile)")


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
    stable_history: Histogram | None = None,
    unit: str = "s",
    decided_by: str | None = None,
    evidence_paths: _QuantileEvidence | None = None,
    total_name: str = "requests",
) -> CheckResult:
    """Judge one quantile of canary vs stable latency.

    `unit` is the unit of the bucket bounds (Istio and Linkerd export milliseconds), in which
    `absolute_tolerance` is given too; it only changes how values read in the reason.

    Pass and fail rest on the bucket counts alone (`Histogram.quantile_bounds`). When the
    buckets holding the two quantiles are too wide for the tolerance, no amount of data will
    let the check pass: it stays inconclusive and its reason names the buckets and the bounds
    that would resolve them. With `decided_by` (the name of a check that judges the same
    histogram by what its counts can decide, e.g. the tail share), such a check is marked
    non-blocking: it is reported, and it still fails on evidence, but it does not hold the
    verdict.

    `mode="sequential"` fails on the tail-exceedance martingale (`tail_exceedances`), whose
    running maximum over the window's steps is compared with 1/alpha: valid however often the
    controller polls, and a failure seen at an earlier step stands at every later poll. It
    needs the per-step rows (`Histogram.from_steps`). `stable_history`, the stable's steps
    before the analysis start, sets the first step's threshold and calibrates how much tails
    vary between steps. Passing stays at the fixed-horizon level, since passing is not the
    guaranteed side. `evidence_paths` is shared by the quantiles of one histogram
    (`judge_quantiles`): it computes all their martingales at once.
    """
    test = TEST_NAME if mode == "fixed" else SEQUENTIAL_TEST_NAME
    base = dict(name=name, kind="histogram", test=test, critical=critical, weight=weight)
    n_c, n_s = canary.total, stable.total
    need = max(min_total, min_tail / (1 - q))
    if not (canary.bounds.size and stable.bounds.size):  # no series: no data, not a bad layout
        return CheckResult(
            verdict="inconclusive", canary=_readable_summary(canary, q),
            stable=_readable_summary(stable, q),
            reason=f"{name}: too little data: " + " and ".join(
                f"{label} has 0 {total_name}" for label, h in (("canary", canary),
                                                               ("stable", stable))
                if not h.bounds.size) + f"; p{q * 100:g} needs {fmt_count(need)} per side",
            **base)
    layout = [f"{label} has {problem}" for label, problem in
              (("canary", canary.layout_problem), ("stable", stable.layout_problem)) if problem]
    if layout:
        return CheckResult(verdict="inconclusive", canary=Summary(n_c, None),
                           stable=Summary(n_s, None),
                           reason=f"{name}: cannot read the histogram: {' and '.join(layout)} "
                                  "(a histogram needs its +Inf bucket and at least one finite "
                                  "bound; check the query keeps `le`)", **base)
    summary_c = Summary(n_c, canary.quantile(q) if n_c > 0 else None)
    summary_s = Summary(n_s, stable.quantile(q) if n_s > 0 else None)
    if not all(math.isfinite(n) and n < MAX_COUNT for n in (n_c, n_s)):
        return CheckResult(verdict="inconclusive", canary=summary_c, stable=summary_s,
                           reason=f"{name}: bucket counts are not finite or implausibly large "
                                  "(corrupt series)", **base)
    short = [f"{label} has {fmt_count(n)} {total_name}" for label, n in
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
    evidence, trace = "", None
    if mode == "fixed":
        up = direction in ("increase", "either") and _beyond(c_low, s_high, rel, abs_)
        down = direction in ("decrease", "either") and _beyond(s_low, c_high, rel, abs_)
        # a one-sided check reports its own side's p-value: the other's bisection is skipped
        p_up = _p_value(canary, stable, q, rel, abs_, True) if direction != "decrease" else 1.0
        p_down = (_p_value(canary, stable, q, rel, abs_, False) if direction != "increase"
                  else 1.0)
    else:
        # One test per harmful direction, each at alpha (alpha/2 each for "either").
        level = math.log(1 / (alpha if direction != "either" else alpha / 2))
        evidence_of = evidence_paths or _QuantileEvidence((q,))
        logs, paths_by_side = {}, []
        for slower in (True, False):
            if direction == ("decrease" if slower else "increase"):
                logs[slower] = 0.0
                continue
            counts, path = evidence_of(canary, stable, q, rel, abs_, slower, min_tail,
                                       stable_history)
            logs[slower] = float(np.maximum.reduce(path)) if path.size else 0.0  # path.max()
            paths_by_side.append(path)
            if logs[slower] >= level:
                evidence = _exceedance_text(*counts, slower, total_name)
        up, down = logs[True] >= level, logs[False] >= level
        p_up, p_down = (min(1.0, math.exp(-logs[side])) for side in (True, False))
        # one harmful direction (the usual): its path, not a maximum over a list of one
        shown_path = (paths_by_side[0] if len(paths_by_side) == 1 else
                      np.maximum.reduce(paths_by_side) if paths_by_side else np.zeros(0))
        trace = Trace(evidence=tuple(np.maximum.accumulate(shown_path).tolist())
                      if shown_path.size else (), evidence_level=level,
                      evidence_line="1/alpha" if direction != "either" else "1/(alpha/2)")
    if not all(math.isfinite(b) for b in (c_low, c_high, s_low, s_high)):
        within = False  # a bound in the +Inf bucket: too coarse a histogram to clear anyone
    elif direction == "increase":
        within = not _beyond(c_high, s_low, rel, abs_)
    elif direction == "decrease":
        within = not _beyond(s_high, c_low, rel, abs_)
    else:
        within = not _beyond(c_high, s_low, rel, abs_) and not _beyond(s_high, c_low, rel, abs_)
    within = within and not (up or down)

    ratio_low = c_low / s_high - 1 if s_high > 0 and math.isfinite(s_high) else math.nan
    ratio_high = c_high / s_low - 1 if s_low > 0 else math.inf
    p_value = {"increase": p_up, "decrease": p_down}.get(direction, min(1.0, 2 * min(p_up, p_down)))
    v_c, v_s = summary_c.value or math.nan, summary_s.value or math.nan
    effect = v_c / v_s - 1 if v_s and v_s > 0 else math.nan

    shown = (f"canary {fmt_value(v_c, unit)} vs stable {fmt_value(v_s, unit)} "
             f"({effect * 100:+.1f}%)"
             if math.isfinite(effect) else f"canary {fmt_value(v_c, unit)} vs stable "
             f"{fmt_value(v_s, unit)}")
    margin = f"tolerance +{rel * 100:g}% or {fmt_value(abs_, unit)}"
    verdict, why = tri_state(
        "slower" if up else "faster" if down else None, within, margin,
        f"canary between {fmt_value(c_low, unit)} and {fmt_value(c_high, unit)}")
    blocking, informational = True, ""
    if verdict == "inconclusive":
        unresolved = _unresolvable(canary, stable, q, direction, rel, abs_, margin, a,
                                   unit)
        if unresolved:
            why = unresolved
            if decided_by:
                blocking, informational = False, "not resolvable by the buckets"
                why += f"; informational, {decided_by} decides"
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}{evidence}", canary=summary_c,
        stable=summary_s, effect=effect, interval=(ratio_low, ratio_high),
        interval_of="canary / stable - 1", interval_level=1 - 4 * a, p_value=p_value,
        allowed=rel, trace=trace, blocking=blocking, informational=informational, **base)


def judge_quantiles(names: Sequence[str], canary: Histogram, stable: Histogram,
                    qs: Sequence[float], **options: Any) -> list[CheckResult]:
    """`judge_quantile` of each quantile of `qs` (named by `names`), with the same options:
    in sequential mode the tail exceedances of all of them are counted in one pass and their
    martingales computed in one call (`_QuantileEvidence`), the same numbers one quantile at a
    time would give."""
    shared = _QuantileEvidence(qs, stacked=True)
    return [judge_quantile(name, canary, stable, q, **options, evidence_paths=shared)
            for name, q in zip(names, qs, strict=True)]


class _QuantileEvidence:
    """The sequential evidence of quantiles judged on the same histograms with the same
    options, which differ only in `q`: the first call for a direction counts every quantile's
    tail exceedances for both anchors (`tail_exceedances_anchored`) and computes all their
    martingales in one `sequential.rate_ratio_log_evidence_paths` call (two quantiles × two
    anchors: on a short window numpy's per-call overhead is the cost, paid once instead of
    four times). Each call answers (the stable-anchored counts, the evidence path).

    `stacked` counts both anchors in one stacked pass (`tail_exceedances_anchored`), else one
    after the other (`tail_exceedances_of`), the same numbers: stacking pays on a histogram's
    usual short window, not on one quantile of thousands of steps, where the stacked arrays
    outgrow the caches."""

    def __init__(self, qs: Sequence[float], stacked: bool = False) -> None:
        self._qs = tuple(qs)
        self._stacked = stacked
        self._done: dict[bool, dict[float, tuple[tuple[np.ndarray, ...], np.ndarray]]] = {}

    def __call__(self, canary: Histogram, stable: Histogram, q: float, rel: float,
                 abs_: float, slower: bool, min_tail: float, history: Histogram | None
                 ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        if slower not in self._done:
            both = (tail_exceedances_anchored(canary, stable, self._qs, rel, abs_, slower,
                                              min_tail, history) if self._stacked else
                    {anchor: tail_exceedances_of(canary, stable, self._qs, rel, abs_, slower,
                                                 min_tail, history, anchor)
                     for anchor in ("stable", "canary")})
            # the stable-anchored rows first, then the canary-anchored ones: the canary's
            # anchor often has no threshold in the first steps, and rows with as many
            # counting steps side by side share the sums of the dispersion's solve
            rows = list(both["stable"])
            priors = [tail_dispersion_prior(history, stable, q_i) for q_i in self._qs]
            which = []
            for i, (on_stable, on_canary) in enumerate(zip(both["stable"], both["canary"],
                                                           strict=True)):
                # With buckets wider than the tolerance both anchors often land on the same
                # pair of bounds at every step: the same counts, the same martingale.
                same = all(x.shape == y.shape and bool((x == y).all())
                           for x, y in zip(on_stable, on_canary, strict=True))
                which.append((i, i if same else len(rows)))
                if not same:
                    rows.append(on_canary)
                    priors.append(priors[i])
            # rows × steps per count (np.array of the rows' equal-length arrays: np.stack's
            # result without its Python-level checks, a third of its cost)
            paths = seq.rate_ratio_log_evidence_paths(
                *(np.array([row[j] for row in rows]) for j in range(4)), 1.0, worse=slower,
                scale=TAIL_MIXTURE_SCALE, dispersion_priors=priors)
            done = self._done[slower] = {}
            for q_i, on_stable, (i, j) in zip(self._qs, both["stable"], which, strict=True):
                # The mean of two test martingales is one: anchored on each side, at the
                # cost of at most a factor 2 of evidence.
                path = (np.logaddexp(paths[i], paths[j]) - math.log(2) if paths.shape[1]
                        else np.zeros(0))
                done[q_i] = (on_stable, path)
        return self._done[slower][q]


def _readable_summary(h: Histogram, q: float) -> Summary:
    """A side's count and its quantile where its buckets can place one (None otherwise)."""
    readable = h.total > 0 and h.layout_problem is None
    return Summary(h.total, h.quantile(q) if readable else None)


def _span(edges: tuple[float, float], unit: str) -> str:
    return f"{fmt_value(edges[0], unit)}–{fmt_value(edges[1], unit)}"


def _unresolvable(canary: Histogram, stable: Histogram, q: float, direction: str, rel: float,
                  abs_: float, margin: str, a: float, unit: str = "s") -> str | None:
    """Why more requests could not let a canary like the stable pass, or None.

    The check is put to the layout's test: with LAYOUT_TEST_FACTOR times the requests in the
    same proportions, each side's interval would shrink to the buckets around its quantile
    (one bucket, or two when the quantile sits at an edge). If the stable's are wider than the
    tolerance (p99 in 250–500 ms allows ×2), even a canary identical to the stable could not
    be shown within it: the bucket layout, not the data, is what is missing. Names the
    buckets and the bounds that would resolve them: geometric steps of (1 + tolerance) across
    the span.
    """
    z = norm_isf(a)

    def span(h: Histogram) -> tuple[float, float]:
        half = z * math.sqrt(q * (1 - q) / (LAYOUT_TEST_FACTOR * h.total))
        low = h.edges(h.bucket_of_rank(max(q - half, 0.0) * h.total))[0]
        high = h.edges(h.bucket_of_rank(min(q + half, 1.0) * h.total))[1]
        return low, high

    c_lo, c_hi = span(canary)
    s_lo, s_hi = span(stable)
    # A canary exactly like the stable would be read in the stable's buckets: if those are
    # wider than the tolerance, no canary near the stable can ever pass.
    if not _beyond(s_hi, s_lo, rel, abs_):
        return None
    p = f"p{q * 100:g}"
    c_span, s_span = _span((c_lo, c_hi), unit), _span((s_lo, s_hi), unit)
    where = (f"both {p} lie in {c_span}" if c_span == s_span else
             f"canary {p} lies in {c_span}, stable {p} in {s_span}")
    lo, hi = min(c_lo, s_lo), max(c_hi, s_hi)
    suggest: list[str] = []
    x = lo
    while math.isfinite(hi) and (rel > 0 or abs_ > 0) and len(suggest) < 4:
        x = max(x * (1 + rel), x + abs_) if x > 0 else max(abs_, hi * rel / (1 + rel), 1e-3)
        if x >= hi:
            break
        suggest.append(fmt_value(x, unit))
    fix = (f"add bounds near {', '.join(suggest)} or judge the tail share" if suggest else
           "judge the tail share, or add finite bounds above the quantile" if math.isinf(hi)
           else "judge the tail share")
    return f"{where}: buckets this wide cannot show a change within {margin}; {fix}"
