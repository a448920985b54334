"""`histogram`: Prometheus histogram buckets, one check per quantile (`<name>_p99`) and, with
`tail`, the share of requests above a bucket bound (`<name>_tail`), canary vs stable, each
carrying an equal share of the metric's weight.

Statistics: `webhook.judge.histogram` (order-statistic intervals; sequential tail-exceedance
martingale) and `webhook.judge.tailshare`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from webhook.configs import HistogramMetric
from webhook.judge import CheckResult
from webhook.judge.histogram import Histogram, judge_quantiles
from webhook.judge.memo import HISTORY
from webhook.judge.tailshare import auto_bound, judge_tail_share, tail_counts
from webhook.judge.types import Trace
from webhook.kinds.base import Buckets, KindContext, MetricData, buckets, with_steps
from webhook.report import steps

KIND = "histogram"
SPEC = HistogramMetric
TRAFFIC_ROLES = {"buckets": True}


def sides(spec: HistogramMetric) -> tuple[str, ...]:
    return ("canary", "stable")


def level_updates(spec: HistogramMetric, min_data_factor: float) -> dict[str, object]:
    return {"min_tail": spec.min_tail * min_data_factor}


def judge(spec: HistogramMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    stable_all = data.series("stable", "buckets")
    before = ctx.history
    history = None if before is None else [(le, v[before]) for le, v in buckets(stable_all)]
    canary_b = buckets(data.series("canary", "buckets"), ctx.first)
    stable_b = buckets(stable_all, ctx.first)
    judged = judge_buckets(spec, canary_b, stable_b, ctx.alpha, ctx.mode, history, ctx.step)
    checks = [with_steps(check, partial(
        steps.quantile_trace, canary_b, stable_b, q, ctx.points - ctx.first,
        spec.tolerance.relative, spec.tolerance.absolute, spec.direction, spec.unit), ctx)
        for q, check in zip(spec.quantiles, judged, strict=False)]
    if spec.tail is not None:
        checks.append(with_steps(judged[-1], partial(
            _tail_trace, spec, canary_b, stable_b, history, judged[-1].allowed), ctx))
    return checks


def judge_buckets(spec: HistogramMetric, canary: Buckets, stable: Buckets, alpha: float,
                  mode: str, history: Buckets | None = None,
                  step: float = 60.0) -> list[CheckResult]:
    """Each quantile over the whole window, from the per-step bucket increments, and the tail
    share when the metric asks for it; `history` is the stable's steps before the analysis
    start (sequential mode uses them; the tail share's automatic bound is chosen from them)."""
    hc, hs = Histogram.from_steps(canary), Histogram.from_steps(stable)
    before = history_histogram(history) if history else None
    tail_name = f"{spec.name}_tail" if spec.tail is not None else None
    share = 1 / (len(spec.quantiles) + (1 if spec.tail is not None else 0))
    checks = judge_quantiles(
        [f"{spec.name}_p{q * 100:g}" for q in spec.quantiles], hc, hs, spec.quantiles,
        direction=spec.direction, relative_tolerance=spec.tolerance.relative,
        absolute_tolerance=spec.tolerance.absolute, alpha=alpha, min_total=spec.min_total,
        min_tail=spec.min_tail, weight=share, mode=mode, stable_history=before, unit=spec.unit,
        decided_by=tail_name)
    if spec.tail is not None and tail_name is not None:
        bound = None if spec.tail.bound == "auto" else float(spec.tail.bound)
        checks.append(judge_tail_share(
            tail_name, hc, hs, bound=bound, max_share=spec.tail.max_share,
            direction=spec.direction, relative_tolerance=spec.tail.tolerance.relative,
            absolute_tolerance=spec.tail.tolerance.absolute, alpha=alpha,
            min_total=spec.min_total, step_seconds=step, weight=share,
            mode=mode, stable_history=before, unit=spec.unit))
    return checks


def history_histogram(history: Buckets) -> Histogram:
    """`Histogram.from_steps` of the stable's steps before the analysis start.

    Those steps are the same at every poll of a rollout (its start is fixed and they are
    settled data): the summed histogram is remembered by their content (`memo.HISTORY`). Its
    key (the buckets joined and hashed once) costs about what the summing did; what it buys is
    arrays the memo handed out, which the values derived from the history (tail priors, the
    tail share's bound) key again at no cost. They are shared with later polls, hence
    read-only; each call gets its own `Histogram` around them (it caches look-ups on
    itself)."""
    # what from_steps reads of each bucket (the same test and conversion), in three arrays:
    # three key parts, not one per bucket
    values = [v if type(v) is np.ndarray and v.ndim == 1 and v.dtype is _FLOAT
              else np.atleast_1d(np.asarray(v, dtype=float)) for _, v in history]
    try:
        joined = np.concatenate(values)
    except ValueError:  # arrays of several dimensions (by hand): as from_steps takes them
        joined = None
    if joined is None or joined.ndim != 1:
        return Histogram.from_steps(history)
    return Histogram(*_history_arrays(
        np.array([le for le, _ in history], dtype=float),
        np.fromiter(map(len, values), dtype=np.int64, count=len(values)), joined))


_FLOAT = np.dtype(np.float64)


@HISTORY.memoise
def _history_arrays(les: np.ndarray, sizes: np.ndarray, joined: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    ends = np.cumsum(sizes).tolist()
    values = [joined[end - size:end] for size, end in zip(sizes.tolist(), ends, strict=True)]
    summed = Histogram.from_steps(list(zip(les.tolist(), values, strict=True)))
    return summed.bounds, summed.cumulative, summed.steps


def _tail_trace(spec: HistogramMetric, canary: Buckets, stable: Buckets,
                history: Buckets | None, allowed: float | None) -> Trace:
    """The tail share per step, for the report page: the same counts the check judged."""
    assert spec.tail is not None
    hc, hs = Histogram.from_steps(canary), Histogram.from_steps(stable)
    before = history_histogram(history) if history else None
    bound = (float(spec.tail.bound) if spec.tail.bound != "auto" else
             auto_bound(hs, before, spec.tail.max_share, spec.min_total)[0])
    counts = tail_counts(hc, hs, bound, before)
    if counts is None:  # no canary buckets (or no such bound): the stable's share alone
        alone = tail_counts(hs, hs, bound)
        if alone is None:
            return Trace(value_label="share of requests above the tail bound", unit="%")
        missing = np.full(alone[2].size, np.nan)
        counts = (missing, missing, alone[2], alone[3], None)
    return replace(steps.ratio_trace(*counts[:4], allowed, spec.direction),
                   value_label="share of requests above the tail bound")
