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
from webhook.judge.tailshare import auto_bound, judge_tail_share, tail_counts
from webhook.judge.types import Trace, fmt_value
from webhook.kinds.base import Buckets, KindContext, MetricData, buckets, with_steps
from webhook.report import steps

KIND = "histogram"
SPEC = HistogramMetric
TRAFFIC_ROLES = {"buckets": True}


def sides(spec: HistogramMetric) -> tuple[str, ...]:
    return ("canary", "stable")


def level_updates(spec: HistogramMetric, min_data_factor: float) -> dict[str, object]:
    return {"min_tail": spec.min_tail * min_data_factor}


def check_shares(spec: HistogramMetric) -> tuple[tuple[str, float], ...]:
    names = [f"{spec.name}_p{q * 100:g}" for q in spec.quantiles]
    if spec.tail is not None:
        names.append(f"{spec.name}_tail")
    return tuple((name, 1 / len(names)) for name in names)


def judge(spec: HistogramMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    stable_series = data.series("stable", "buckets")
    canary_b = buckets(data.series("canary", "buckets"), ctx.first)
    before = ctx.history
    if before is None:
        history, stable_b = None, buckets(stable_series, ctx.first)
        hs, earlier = Histogram.from_steps(stable_b), None
    else:  # the stable's window and history from one reading of its buckets
        stable_all = buckets(stable_series)
        history = [(le, v[before]) for le, v in stable_all]
        stable_b = [(le, v[ctx.first:]) for le, v in stable_all]
        hs, earlier = Histogram.from_step_spans(stable_all, [slice(ctx.first, None), before])
    judged = _judge_histograms(spec, Histogram.from_steps(canary_b), hs,
                               earlier if history else None, ctx.alpha, ctx.mode, ctx.step)
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
    return _judge_histograms(spec, Histogram.from_steps(canary), Histogram.from_steps(stable),
                             Histogram.from_steps(history) if history else None, alpha, mode,
                             step)


def _judge_histograms(spec: HistogramMetric, hc: Histogram, hs: Histogram,
                      before: Histogram | None, alpha: float, mode: str,
                      step: float) -> list[CheckResult]:
    """`judge_buckets` of the histograms of its bucket lists."""
    tail_name = f"{spec.name}_tail" if spec.tail is not None else None
    share = 1 / (len(spec.quantiles) + (1 if spec.tail is not None else 0))
    checks = judge_quantiles(
        [f"{spec.name}_p{q * 100:g}" for q in spec.quantiles], hc, hs, spec.quantiles,
        direction=spec.direction, relative_tolerance=spec.tolerance.relative,
        absolute_tolerance=spec.tolerance.absolute, alpha=alpha, min_total=spec.min_total,
        min_tail=spec.min_tail, weight=share, mode=mode, stable_history=before, unit=spec.unit,
        total_name=spec.total_name,
        decided_by=tail_name)
    if spec.tail is not None and tail_name is not None:
        bound = None if spec.tail.bound == "auto" else float(spec.tail.bound)
        checks.append(judge_tail_share(
            tail_name, hc, hs, bound=bound, max_share=spec.tail.max_share,
            direction=spec.direction, relative_tolerance=spec.tail.tolerance.relative,
            absolute_tolerance=spec.tail.tolerance.absolute, alpha=alpha,
            min_total=spec.min_total, step_seconds=step, weight=share,
            mode=mode, stable_history=before, unit=spec.unit, total_name=spec.total_name))
    return checks


def _tail_trace(spec: HistogramMetric, canary: Buckets, stable: Buckets,
                history: Buckets | None, allowed: float | None) -> Trace:
    """The tail share per step, for the report page: the same counts the check judged."""
    assert spec.tail is not None
    hc, hs = Histogram.from_steps(canary), Histogram.from_steps(stable)
    before = Histogram.from_steps(history) if history else None
    bound = (float(spec.tail.bound) if spec.tail.bound != "auto" else
             auto_bound(hs, before, spec.tail.max_share, spec.min_total, hc)[0])
    counts = tail_counts(hc, hs, bound, before)
    if counts is None:  # no canary buckets (or no such bound): the stable's share alone
        alone = tail_counts(hs, hs, bound)
        if alone is None:
            return Trace(value_label="share above the tail bound", unit="%")
        missing = np.full(alone[2].size, np.nan)
        counts = (missing, missing, alone[2], alone[3], None)
    # the bound as the check's interval names it; short enough for the chart's axis
    return replace(steps.ratio_trace(*counts[:4], allowed, spec.direction),
                   value_label=f"share above {fmt_value(bound, spec.unit)} per step")
