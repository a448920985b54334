"""Metric kinds: one module each, all behind the `Kind` interface (see `base`).

| kind        | module         | config class (webhook/configs.py) |
|-------------|----------------|-----------------------------------|
| `ratio`     | `ratio.py`     | `RatioMetric`                     |
| `histogram` | `histogram.py` | `HistogramMetric`                 |
| `series`    | `series.py`    | `SeriesMetric`                    |
| `threshold` | `threshold.py` | `ThresholdMetric`                 |
| `events`    | `events.py`    | `EventsMetric`                    |
| `share`     | `share.py`     | `ShareMetric`                     |

A new kind is one new module here plus its config class (added to `MetricSpec`), listed in
`KINDS` below. The analysis and bench/detection judge every kind through `judge_spec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

import numpy as np

from webhook.configs import METRIC_KINDS, MetricSpec
from webhook.judge.corrupt import COUNT_ROLES, corrupt_check, first_corrupt_of, none_corrupt
from webhook.judge.types import CheckResult, Summary, evolve
from webhook.kinds import events, histogram, ratio, series, share, threshold
from webhook.kinds.base import ArrayData, Kind, KindContext, MetricData
from webhook.models import parse_duration
from webhook.sources.base import Series

# The `test` of a check a metric that needs equal load per instance gets under a router's
# weights (`judge_spec`): listed, informational, not judged.
UNEQUAL_LOAD_TEST = "not judged: needs equal load per instance"

KINDS: dict[str, Kind] = {cast(Kind, m).KIND: cast(Kind, m)
                          for m in (ratio, histogram, series, threshold, events, share)}
assert set(KINDS) == set(METRIC_KINDS), "every config class needs its kind module"

__all__ = ["KINDS", "ArrayData", "Kind", "KindContext", "MetricData", "check_shares", "judge_spec",
           "kind_of", "leans_beyond", "metric_step", "queries", "sides", "stamped",
           "unjudged_checks"]


def kind_of(spec: MetricSpec) -> Kind:
    return KINDS[spec.kind]


def queries(spec: MetricSpec) -> dict[str, str]:
    """The metric's query templates by role: its config class owns them."""
    return spec.queries()


def check_shares(spec: MetricSpec) -> tuple[tuple[str, float], ...]:
    """The checks judging `spec` makes, by name, with their shares of its weight."""
    return kind_of(spec).check_shares(spec)


def sides(spec: MetricSpec) -> tuple[str, ...]:
    """Which sides a metric is queried for: canary-only limits skip the stable side."""
    return kind_of(spec).sides(spec)


def metric_step(spec: MetricSpec, window_step: float) -> float:
    """The query step of one metric: its own `step` (a gauge sampled at the scrape interval
    gets several points per window step), never coarser than the window's."""
    # a pydantic model's own fields are in its __dict__; getattr on a kind without `step`
    # goes through pydantic's failing __getattr__ (several µs, once per metric and analysis)
    fields = getattr(spec, "__dict__", None)
    own = fields.get("step") if fields is not None else getattr(spec, "step", None)
    return min(parse_duration(own), window_step) if own else window_step


def judge_spec(spec: MetricSpec, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    """One metric's checks: inconclusive on corrupt data, else its kind's judgement at the
    metric's own alpha (if set); critical, weight and group stamped on every check. A metric
    that needs equal load, under a router's weights, is listed and not judged; one whose
    inconclusive answer does not hold the verdict (`inconclusive_holds`) is listed so."""
    if not ctx.equal_load and spec.needs_equal_load:
        checks = _unequal_load_checks(spec)
    elif (corrupt := _corrupt_check(spec, data, ctx)) is not None:
        checks = [corrupt]
    else:
        alpha = spec.alpha or ctx.alpha
        own = ctx if alpha == ctx.alpha else replace(ctx, alpha=alpha)
        checks = kind_of(spec).judge(spec, data, own)
        if not spec.inconclusive_holds:
            checks = [_not_holding(c, spec.direction) for c in checks]
    return stamped(spec, checks)


def leans_beyond(check: CheckResult, direction: str) -> bool:
    """Whether an undecided check's point estimate (`CheckResult.estimate`, where its judge
    gives one: `series`) lies beyond its tolerance in the direction it fails: what it has seen
    so far is a regression, not yet shown to be one."""
    estimate, allowed = check.estimate, check.allowed
    if estimate is None or allowed is None or not math.isfinite(estimate + allowed):
        return False
    return {"increase": estimate > allowed, "decrease": estimate < -allowed,
            "either": abs(estimate) > allowed}.get(direction, False)


def _not_holding(check: CheckResult, direction: str) -> CheckResult:
    """An undecided check of a metric whose inconclusive answer does not hold the verdict
    (`inconclusive_holds: false`), non-blocking, saying so in a pass's reason; unless what it
    has seen so far lies beyond its tolerance (`leans_beyond`): a canary at twice the stable's
    CPU per request, not yet shown to be, would otherwise be promoted while it is judged."""
    if check.verdict != "inconclusive" or not check.blocking:
        return check
    if leans_beyond(check, direction):
        return evolve(check, reason=f"{check.reason}; holds the verdict: its estimate lies "
                      "beyond the tolerance")
    return evolve(check, blocking=False, informational="secondary, not decided")


def stamped(spec: MetricSpec, checks: list[CheckResult]) -> list[CheckResult]:
    """The metric's checks with its critical, weight (times the check's share) and group."""
    return [evolve(c, critical=spec.critical, weight=spec.weight * c.weight, group=spec.group)
            for c in checks]


def unjudged_checks(spec: MetricSpec, test: str, reason: Callable[[str], str],
                    informational: str = "") -> list[CheckResult]:
    """The metric's checks as a judged answer names and weighs them (`latency_p95`, not the
    metric `latency`; each its share), inconclusive, `reason(name)` saying why none was
    judged, so every poll lists the same checks; with `informational` (why, in a pass's
    reason) they do not hold the verdict."""
    return [CheckResult(name=name, kind=spec.kind, verdict="inconclusive", test=test,
                        reason=reason(name), canary=Summary(0.0, None),
                        stable=Summary(0.0, None), weight=share,
                        blocking=not informational, informational=informational)
            for name, share in check_shares(spec)]


def _unequal_load_checks(spec: MetricSpec) -> list[CheckResult]:
    """The metric's checks, informational: where a router sends the canary a weight, an
    instance's rate follows that weight (at 10 % and as many canary pods as stable ones, a
    ninth of a stable pod's), not what the canary can serve; comparing it failed every
    healthy canary."""
    reason = ("not judged: traffic is split by a router's weights (traffic_split: weights; "
              "Flagger always), so each instance's rate follows the share it is sent, not "
              "what it can serve; judged where every instance takes an equal share "
              "(traffic_split: replicas: Argo's canary without trafficRouting)")
    return unjudged_checks(spec, UNEQUAL_LOAD_TEST, lambda name: f"{name}: {reason}",
                           informational="not judged under traffic weights")


def _corrupt_check(spec: Any, data: MetricData, ctx: KindContext) -> CheckResult | None:
    """An inconclusive check when any series the metric reads from the stable history (or the
    analysis start) on is present but NaN/±Inf (or a negative count): the decode step is the
    only place that still knows a NaN sample from a missing one (`Series.present`)."""
    history = ctx.history
    begin = history.start if history is not None else ctx.first
    read = [(side, role, data.series(side, role)) for side in sides(spec)
            for role in queries(spec)]
    if _all_plain(read, begin):
        return None
    for side, role, found in read:
        bad = first_corrupt_of([s.values[begin:] for s in found],
                               [None if s.present is None else s.present[begin:]
                                for s in found], counts=role in COUNT_ROLES)
        if bad is None:
            continue
        shown = "good" if role == "numerator" and getattr(spec, "good", None) else role
        return corrupt_check(spec.name, spec.kind, side, shown, bad[2],
                             where=ctx.time_of(begin + bad[1]))
    return None


def _all_plain(read: list[tuple[str, str, Sequence[Series]]], begin: int) -> bool:
    """`none_corrupt` on every series of `read` from step `begin` on, counts apart from
    gauges."""
    counts: list[np.ndarray] = []
    present: list[np.ndarray | None] = []
    gauges: list[np.ndarray] = []
    for _, role, found in read:
        # the usual window (the fetch starts where the judges read) takes no views
        values = [s.values[begin:] for s in found] if begin else [s.values for s in found]
        if role not in COUNT_ROLES:
            gauges += values
            continue
        counts += values
        present += ([None if s.present is None else s.present[begin:] for s in found]
                    if begin else [s.present for s in found])
    return none_corrupt(counts, gauges, present)
