"""`ratio`: two counters judged as a proportion of events (error ratio, fill rate), canary vs
stable, plus optional canary-only limits on the ratio itself (`<name>_limit`).

Statistics: `webhook.judge.ratio` (Newcombe interval; sequential rate-ratio martingale) and
`webhook.judge.limits.judge_proportion_limit`.
"""

from __future__ import annotations

from dataclasses import replace

from webhook.configs import RatioMetric
from webhook.judge import CheckResult, judge_ratio
from webhook.judge.limits import judge_proportion_limit
from webhook.judge.types import evolve
from webhook.kinds.base import KindContext, MetricData, combined, with_steps
from webhook.report import steps

KIND = "ratio"
SPEC = RatioMetric
# bad events are absent when all is well: they say nothing of traffic
TRAFFIC_ROLES = {"total": True}


def sides(spec: RatioMetric) -> tuple[str, ...]:
    return ("canary", "stable")


def level_updates(spec: RatioMetric, min_data_factor: float) -> dict[str, object]:
    return {}


def check_shares(spec: RatioMetric) -> tuple[tuple[str, float], ...]:
    limit = spec.max_ratio is not None or spec.min_ratio is not None
    return ((spec.name, 1.0),) + (((f"{spec.name}_limit", 1.0),) if limit else ())


def judge(spec: RatioMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    counts = [combined(data.series(side, role), ctx)
              for side in ("canary", "stable") for role in ("numerator", "total")]
    history = ctx.history
    ratio = judge_ratio(
        spec.name, *counts,
        direction=spec.direction, relative_tolerance=spec.tolerance.relative,
        absolute_tolerance=spec.tolerance.absolute, alpha=ctx.alpha, min_total=spec.min_total,
        step_seconds=ctx.step, mode=ctx.mode, stable_history=None if history is None else (
            combined(data.series("stable", "numerator"), ctx, 0)[history],
            combined(data.series("stable", "total"), ctx, 0)[history]),
        total_name=spec.total_name)
    checks = [with_steps(ratio, lambda: steps.ratio_trace(
        *counts, ratio.allowed, spec.direction), ctx)]
    if spec.max_ratio is not None or spec.min_ratio is not None:
        limit = judge_proportion_limit(
            f"{spec.name}_limit", counts[0], counts[1],
            maximum=spec.max_ratio, minimum=spec.min_ratio, alpha=ctx.alpha,
            min_total=spec.min_total, mode=ctx.mode, total_name=spec.total_name)
        # stable's ratio, for context only (the limit is the canary's alone)
        limits = tuple(x for x in (spec.min_ratio, spec.max_ratio) if x is not None)
        checks.append(with_steps(evolve(limit, stable=ratio.stable), lambda: replace(
            steps.ratio_trace(*counts, None, spec.direction), limits=limits), ctx))
    return checks
