"""`ratio`: two counters judged as a proportion of events (error ratio, fill rate), canary vs
stable, plus optional canary-only limits on the ratio itself (`<name>_limit`).

Statistics: `webhook.judge.ratio` (Newcombe interval; sequential rate-ratio martingale) and
`webhook.judge.limits.judge_proportion_limit`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from webhook.configs import RatioMetric
from webhook.judge import CheckResult, judge_ratio
from webhook.judge.limits import judge_proportion_limit
from webhook.judge.ratio import SEQUENTIAL_TEST_NAME, TEST_NAME
from webhook.judge.types import Summary, evolve, fmt_count
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


def _uncountable(data: MetricData, served: tuple[float, float]) -> list[tuple[str, float]]:
    """The sides whose numerator query returned no series at all while their total served
    requests in the judged window (`served`, canary's and stable's), with those requests.

    With `absent_numerator: missing` such a query answers an explicit 0 wherever its labels
    exist, so no series means it could not count there (`code_label: status_code` on an app
    that labels codes `code`): reading that as zero bad events passed a canary failing 3 % of
    its requests."""
    return [(side, n) for side, n in zip(("canary", "stable"), served, strict=True)
            if n > 0 and not data.series(side, "numerator")]


def _uncountable_checks(spec: RatioMetric, blind: list[tuple[str, float]],
                        served: tuple[float, float], mode: str) -> list[CheckResult]:
    """The metric's checks as inconclusive (never pass, never fail), saying which side could
    not count its events and why; `judging.name_empty_queries` appends the query itself."""
    parts = [f"the {side} served {fmt_count(n)}" for side, n in blind]
    role = "bad" if spec.bad is not None else "good"
    hint = spec.absent_hint or ("compare the query's matchers below with the labels its "
                                "series carry")
    reason = (f"{spec.name}: {' and '.join(parts)} {spec.total_name}, but its `{role}` query "
              "found no series to count (not even an explicit 0): the series lack a label it "
              f"counts by; {hint}")
    canary, stable = (Summary(n, None) for n in served)
    test = SEQUENTIAL_TEST_NAME if mode == "sequential" else TEST_NAME
    return [CheckResult(name=name, kind=KIND, verdict="inconclusive", test=test,
                        reason=reason.replace(spec.name, name, 1), canary=canary,
                        stable=stable)
            for name, _ in check_shares(spec)]


def judge(spec: RatioMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    counts = [combined(data.series(side, role), ctx)
              for side in ("canary", "stable") for role in ("numerator", "total")]
    if spec.absent_numerator == "missing":
        served = (float(np.nansum(counts[1])), float(np.nansum(counts[3])))
        blind = _uncountable(data, served)
        if blind:
            return _uncountable_checks(spec, blind, served, ctx.mode)
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
