"""The share of requests slower than a bucket bound, canary vs stable: an SLO-style latency
check that histogram buckets can always decide.

A quantile read from buckets is only known to lie somewhere in its bucket: with the usual
layouts (… 0.1, 0.25, 0.5, 1 s …) both sides' p99 often share one bucket twice as wide as any
tolerance, and no number of requests can then show a 20 % difference either way
(`histogram.judge_quantile` says so). The number of requests above a bucket bound, on the
other hand, is counted exactly: "requests over 500 ms: canary 0.80 % vs stable 0.11 %" rests on
the counts alone, and a tail regression (3 % of requests four times slower) moves it by ×7 while
it moves the interpolated p99 by a few percent.

Method: the per-step counts above the bound and the per-step totals are judged exactly like a
`ratio` metric (`ratio.judge_ratio`): in sequential mode the anytime-valid mixture martingale on
the rate ratio of slow requests (Lindon & Malek, NeurIPS 2022), tempered by their step-to-step
dispersion, calibrated on the stable's steps before the rollout; in fixed mode the Newcombe
interval. Tolerance, direction and minimum data mean what they mean there.

The bound is either configured (it must be a bucket bound of both sides) or chosen from the
stable's steps before the analysis start: the smallest bucket bound the stable's requests
exceed at most `max_share` of the time, among the bounds the canary's layout has too. Chosen
from data the canary's test never sees (the steps before the start, and the canary's layout,
not its counts), it is fixed before the canary's requests are looked at, so the martingale's
guarantee over every poll holds. Without those steps (fixed mode, an explicit start) the
stable's own window chooses it: the canary's counts still play no part.
"""

from __future__ import annotations

import math

import numpy as np

from webhook.judge.histogram import Histogram, same_bounds
from webhook.judge.memo import HISTORY
from webhook.judge.ratio import judge_ratio
from webhook.judge.types import CheckResult, Summary, fmt_count, fmt_value

TEST_NAME = "share of requests above a bucket bound, judged as a ratio: "
DEFAULT_MAX_SHARE = 0.01


def _bound_index(hist: Histogram, bound: float) -> int | None:
    """Index of `bound` among the histogram's bounds (numerically equal), or None."""
    return _index_in(hist.bounds, bound)


def _index_in(bounds: np.ndarray, bound: float) -> int | None:
    """Index of `bound` among `bounds` (numerically equal), or None."""
    hits = _same_as(bounds, bound).nonzero()[0]
    return int(hits[0]) if hits.size else None


def _same_as(bounds: np.ndarray, bound: float | np.ndarray) -> np.ndarray:
    """Which of `bounds` equal `bound` numerically; `bound` a column of several bounds (and
    `bounds` a row) gives one row per bound."""
    # np.isclose(bounds, bound, rtol=1e-9, atol=0) for finite bounds, without its overhead
    # (a plain float's abs: np.abs would make a numpy scalar of the same value, slower)
    return np.abs(bounds - bound) <= 1e-9 * (abs(bound) if isinstance(bound, float)
                                             else np.abs(bound))


def choose_bound(reference: Histogram, max_share: float,
                 among: np.ndarray | None = None) -> float | None:
    """The smallest finite bucket bound that at most `max_share` of `reference`'s requests
    exceed; the largest finite bound when even that is exceeded more often; None without
    requests or finite bounds. `among`: only bounds also in it count (the canary's)."""
    total = reference.total
    finite = np.flatnonzero(np.isfinite(reference.bounds))
    if among is not None and not (among.shape == reference.bounds.shape
                                  and bool((among == reference.bounds).all())):
        # `_index_in` of every finite bound at once: one numpy call per bound cost a
        # fixed-mode analysis a tenth of its judging
        finite = finite[_same_as(among[None, :], reference.bounds[finite][:, None]).any(axis=1)]
    if total <= 0 or not finite.size:
        return None
    above = (total - reference.cumulative[finite]) / total
    ok = finite[above <= max_share]
    return float(reference.bounds[ok[0] if ok.size else finite[-1]])


def _per_step_above(hist: Histogram, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(requests above bound j, requests) per step; one step when the histogram has no rows."""
    rows = hist.steps if hist.steps is not None and hist.steps.size else hist.cumulative[None, :]
    return rows[:, -1] - rows[:, j], rows[:, -1].copy()


def auto_bound(stable: Histogram, stable_history: Histogram | None, max_share: float,
               min_total: float, canary: Histogram | None = None) -> tuple[float | None, bool]:
    """(bound, whether the stable's history chose it): from the steps before the rollout when
    they hold `min_total` requests, else from the stable's own window; with `canary`, among
    the bounds of its layout alone.

    A new version often changes its buckets: a bound the canary does not have cannot be
    counted on its side, and the check would stay inconclusive for the whole rollout. The
    canary's bounds are its layout, not its requests, so choosing among them still fixes the
    bound before any of the canary's counts are looked at."""
    among = None if canary is None or canary.layout_problem is not None else canary.bounds
    history_ok = (stable_history is not None and stable_history.total >= min_total
                  and stable_history.layout_problem is None)
    if history_ok and stable_history is not None:
        return _history_bound(stable_history.bounds, stable_history.cumulative,
                              max_share, among), True
    return choose_bound(stable, max_share, among), False


@HISTORY.memoise
def _history_bound(bounds: np.ndarray, cumulative: np.ndarray, max_share: float,
                   among: np.ndarray | None = None) -> float | None:
    """`choose_bound` of the stable's history: the same at every poll of a rollout (its start
    is fixed and its steps are settled), so remembered by content (`memo.HISTORY`)."""
    return choose_bound(Histogram(bounds, cumulative), max_share, among)


def tail_counts(canary: Histogram, stable: Histogram, bound: float | None,
                stable_history: Histogram | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                           tuple[np.ndarray, np.ndarray] | None] | None:
    """Per step: canary requests above `bound`, canary requests, the same for the stable,
    and the stable's history as (above, requests) when it has the bound; None when `bound` is
    not a finite bucket bound of both sides."""
    if bound is None or not math.isfinite(bound):
        return None
    j_c, j_s = _bound_index(canary, bound), _bound_index(stable, bound)
    if j_c is None or j_s is None:
        return None
    above_c, total_c = _per_step_above(canary, j_c)
    above_s, total_s = _per_step_above(stable, j_s)
    history = None
    if stable_history is not None and stable_history.layout_problem is None:
        j_h = _bound_index(stable_history, bound)
        if j_h is not None:
            history = _per_step_above(stable_history, j_h)
    return above_c, total_c, above_s, total_s, history


def judge_tail_share(
    name: str,
    canary: Histogram,
    stable: Histogram,
    *,
    bound: float | None = None,
    max_share: float = DEFAULT_MAX_SHARE,
    direction: str = "increase",
    relative_tolerance: float = 0.0,
    absolute_tolerance: float = 0.0,
    alpha: float = 0.05,
    min_total: float = 100,
    step_seconds: float = 60.0,
    critical: bool = False,
    weight: float = 1.0,
    mode: str = "fixed",
    stable_history: Histogram | None = None,
    unit: str = "s",
    total_name: str = "requests",
) -> CheckResult:
    """Judge the share of requests above `bound` (None: chosen, see the module docstring);
    `unit` is the bounds' unit (Istio and Linkerd export milliseconds), for the reason only.

    `direction="increase"` fails a canary whose share of slow requests is higher than the
    stable's by more than the tolerance (`max(relative × stable share, absolute)`).
    """
    base = dict(name=name, kind="histogram", critical=critical, weight=weight)
    if not (canary.bounds.size and stable.bounds.size):  # no series: no data, not a bad layout
        return CheckResult(verdict="inconclusive", test=TEST_NAME.rstrip(": "),
                           canary=Summary(canary.total, None), stable=Summary(stable.total, None),
                           reason=f"{name}: too little data: " + " and ".join(
                               f"{label} has 0 {total_name}" for label, h in
                               (("canary", canary), ("stable", stable)) if not h.bounds.size)
                           + f", needs {fmt_count(min_total)}", **base)
    problems = [f"{label} has {p}" for label, p in
                (("canary", canary.layout_problem), ("stable", stable.layout_problem)) if p]
    if problems:
        return CheckResult(verdict="inconclusive", test=TEST_NAME.rstrip(": "),
                           canary=Summary(canary.total, None), stable=Summary(stable.total, None),
                           reason=f"{name}: cannot read the histogram: {' and '.join(problems)}",
                           **base)
    chosen = ""
    if bound is None:
        bound, history_ok = auto_bound(stable, stable_history, max_share, min_total, canary)
        both = ("" if same_bounds(canary, stable)
                else "bound of both sides' buckets ")
        chosen = (f" (bound: the smallest {both}the stable exceeded in ≤ "
                  f"{max_share * 100:g}% of {total_name} "
                  f"{'before the rollout' if history_ok else 'in this window'})")
    counts = tail_counts(canary, stable, bound, stable_history)
    if bound is None or counts is None:
        known = ", ".join(fmt_value(b, unit) for b in stable.bounds if math.isfinite(b))
        what = f"no bound to judge yet (no stable {total_name})" if bound is None else (
            f"{fmt_value(bound, unit)} is not a finite bucket bound of both sides")
        return CheckResult(verdict="inconclusive", test=TEST_NAME.rstrip(": "),
                           canary=Summary(canary.total, None), stable=Summary(stable.total, None),
                           reason=f"{name}: {what}; the tail share is counted at a bucket bound "
                                  f"(the stable's: {known or 'none'})", **base)
    above_c, total_c, above_s, total_s, history = counts
    judged = judge_ratio(name, above_c, total_c, above_s, total_s, direction=direction,
                         relative_tolerance=relative_tolerance,
                         absolute_tolerance=absolute_tolerance, alpha=alpha,
                         min_total=min_total, step_seconds=step_seconds, critical=critical,
                         weight=weight, mode=mode, stable_history=history,
                         total_name=total_name)
    # judge_ratio's reason is "name: canary x% of n vs stable y% of m: why" once it judged;
    # the clause after the numbers is kept, the numbers are said the SLO way.
    rest = judged.reason.removeprefix(f"{name}: ")
    over = f"{name}: {total_name} over {fmt_value(bound, unit)}: "
    if rest.startswith("canary ") and ": " in rest:
        shares = " vs ".join(f"{label} {value * 100:.2f}%" if value is not None else
                             f"{label} n/a" for label, value in
                             (("canary", judged.canary.value), ("stable", judged.stable.value)))
        why = rest.split(": ", 1)[1]
        # Said of latency: a higher share of slow requests is a slower canary.
        why = why.replace("higher beyond", "slower: share higher beyond", 1).replace(
            "lower beyond", "faster: share lower beyond", 1)
        reason = f"{over}{shares}: {why}{chosen}"
    else:
        reason = over + rest
    return CheckResult(
        verdict=judged.verdict, test=TEST_NAME + judged.test, reason=reason,
        canary=judged.canary, stable=judged.stable, effect=judged.effect,
        interval=judged.interval, interval_of=f"share above {fmt_value(bound, unit)}: "
        "canary - stable", interval_level=judged.interval_level, p_value=judged.p_value,
        allowed=judged.allowed, trace=judged.trace, **base)
