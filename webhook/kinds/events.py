"""`events`: a zero-tolerance counter on the canary (adverse events, compliance violations):
more than `allowed` fails whatever the statistics; inconclusive until the canary served
`min_total` when a `total` query is given.

Statistics: none; `webhook.judge.limits.judge_events` counts.
"""

from __future__ import annotations

from webhook.configs import EventsMetric
from webhook.judge import CheckResult
from webhook.judge.limits import judge_events
from webhook.kinds.base import KindContext, MetricData, combined, with_steps
from webhook.report import steps

KIND = "events"
SPEC = EventsMetric
TRAFFIC_ROLES = {"total": True}  # the events themselves say nothing of traffic


def sides(spec: EventsMetric) -> tuple[str, ...]:
    return ("canary", "stable")


def level_updates(spec: EventsMetric, min_data_factor: float) -> dict[str, object]:
    return {}


def check_shares(spec: EventsMetric) -> tuple[tuple[str, float], ...]:
    return ((spec.name, 1.0),)


def judge(spec: EventsMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    events = combined(data.series("canary", "events"), ctx)
    stable_events = combined(data.series("stable", "events"), ctx)
    check = judge_events(
        spec.name, events, allowed=spec.allowed,
        canary_total=combined(data.series("canary", "total"), ctx) if spec.total else None,
        min_total=spec.min_total, stable_events=stable_events, total_name=spec.total_name)
    return [with_steps(check, lambda: steps.events_trace(
        events, stable_events, spec.allowed), ctx)]
