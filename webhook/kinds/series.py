"""`series`: one value per step per side (a gauge, a rate, a PromQL quantile), canary vs
stable; per instance (`instance_label`) when the query returns one series per instance.

Statistics: `webhook.judge.series` (paired differences with an AR(1) effective sample size;
sequential normal-mixture SPRT; or Kayenta's classification for migrating configs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from webhook.configs import SeriesMetric
from webhook.judge import CheckResult
from webhook.judge.series import judge_series, judge_series_kayenta
from webhook.judge.types import Summary
from webhook.kinds.base import KindContext, MetricData, combined, instance_mean, with_steps
from webhook.report import steps
from webhook.sources.base import Series

KIND = "series"
SPEC = SeriesMetric
TRAFFIC_ROLES = {"values": False}  # a gauge's mere presence is activity


def sides(spec: SeriesMetric) -> tuple[str, ...]:
    return ("canary", "stable")


def level_updates(spec: SeriesMetric, min_data_factor: float) -> dict[str, object]:
    return {"min_points": max(2, round(spec.min_points * min_data_factor))}


def check_shares(spec: SeriesMetric) -> tuple[tuple[str, float], ...]:
    return ((spec.name, 1.0),)


def judge(spec: SeriesMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    label = spec.instance_label
    if label and (unlabelled := _unlabelled_sides(data, label)):
        return [_missing_label_check(spec, label, unlabelled)]
    values = instance_mean if label else combined
    canary_series, stable_series = data.series("canary", "values"), data.series("stable", "values")
    canary, stable = values(canary_series, ctx), values(stable_series, ctx)
    if spec.test == "kayenta":
        check = judge_series_kayenta(
            spec.name, canary, stable, direction=spec.direction,
            relative_tolerance=spec.tolerance.relative, min_points=spec.min_points)
        allowed = None
    else:
        history = ctx.history
        stable_rows = canary_rows = None
        if label and history is not None:  # the instances calibrate the null (judge_series)
            stable_rows = _rows(stable_series, history.start)
            canary_rows = _rows(canary_series, ctx.first)
        check = judge_series(
            spec.name, canary, stable,
            direction=spec.direction, relative_tolerance=spec.tolerance.relative,
            absolute_tolerance=spec.tolerance.absolute, alpha=ctx.alpha,
            min_points=spec.min_points, mode=ctx.mode, stable_history=None
            if history is None else values(stable_series, ctx, 0)[history],
            stable_instances=stable_rows, canary_instances=canary_rows, unit=spec.unit,
            label=spec.label)
        allowed = check.allowed
    return [with_steps(check, lambda: steps.series_trace(
        canary, stable, allowed, spec.direction, spec.unit, spec.label), ctx)]


def _rows(series: Sequence[Series], first: int) -> np.ndarray | None:
    """One row per instance from step `first` on (None: no series)."""
    return np.vstack([s.values[first:] for s in series]) if series else None


def _unlabelled_sides(data: MetricData, label: str) -> list[str]:
    """Sides whose series lack `label`: without it `by (label)` lumps every instance into one
    series, so a side would be judged on its total instead of per instance."""
    return [side for side in ("canary", "stable")
            if any(not s.labels.get(label) for s in data.series(side, "values"))]


def _missing_label_check(spec: SeriesMetric, label: str, sides: list[str]) -> CheckResult:
    """Inconclusive, never fail: the data cannot say how many instances served it.

    The reason names the var in both spellings: the same check answers a request (`vars.`)
    and a Flagger hook (the Canary's `metadata.`), and its report page and audit line too."""
    which = " and ".join(sides)
    return CheckResult(
        name=spec.name, kind="series", verdict="inconclusive",
        test=f"per-instance values by label {label}",
        canary=Summary(0.0, None), stable=Summary(0.0, None),
        reason=(f"{spec.name}: the {which} series carry no `{label}` label, so instances "
                f"cannot be told apart; add `{label}` to the series (relabelling; Prometheus "
                "gives every scraped series `instance`, which a recording rule or federation "
                "may drop), or, where the config names the label by a var, name one they "
                "carry (trading: vars.instance_label in a request, metadata.instance_label in "
                "a Flagger Canary)"))
