"""`threshold`: a bound on the canary alone (P&L impact, saturation, an availability gauge
that must stay up at every sample): no comparison with the stable.

Statistics: none; `webhook.judge.limits.judge_threshold` applies the bound to an aggregate.
"""

from __future__ import annotations

from webhook.configs import ThresholdMetric
from webhook.judge import CheckResult
from webhook.judge.limits import judge_threshold
from webhook.kinds.base import KindContext, MetricData, combined, gaps, undefined, with_steps
from webhook.report import steps

KIND = "threshold"
SPEC = ThresholdMetric
TRAFFIC_ROLES = {"values": False, "samples": False}


def sides(spec: ThresholdMetric) -> tuple[str, ...]:
    return ("canary",)


def level_updates(spec: ThresholdMetric, min_data_factor: float) -> dict[str, object]:
    return {"min_points": max(1, round(spec.min_points * min_data_factor))}


def check_shares(spec: ThresholdMetric) -> tuple[tuple[str, float], ...]:
    return ((spec.name, 1.0),)


def judge(spec: ThresholdMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    found = data.series("canary", "values")
    canary = combined(found, ctx)
    nan = undefined(found, ctx)
    missed = gaps(data.series("canary", "samples"), ctx)
    served = ctx.served if spec.max_missing is not None else None
    through = ctx.through() if spec.max_missing is not None else None
    if through is not None:
        # steps no query of the analysis has data for yet (the stable's neither) are not the
        # canary going silent: a source two minutes behind failed every healthy canary's
        # "up all window" check. They are judged once their data arrive.
        canary = canary[:through]
        missed = None if missed is None else missed[:through]
        served = None if served is None else served[:through]
        nan = None if nan is None else nan[:through]
    check = judge_threshold(
        spec.name, canary, minimum=spec.min, maximum=spec.max, how=spec.aggregate,
        absolute=spec.absolute, min_points=spec.min_points, max_missing=spec.max_missing,
        gaps=missed, served=served, undefined=nan)
    return [with_steps(check, lambda: steps.threshold_trace(
        canary, spec.min, spec.max, spec.absolute), ctx)]
