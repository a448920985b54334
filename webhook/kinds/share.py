"""`share`: the canary's share of both sides' requests lately against before: is it still
serving (the `http` config's request-rate sanity check, `traffic`)?

Statistics: `webhook.judge.share` (exact binomial tests around a Clopper–Pearson interval,
quasi-binomial dispersion).
"""

from __future__ import annotations

from functools import lru_cache

from webhook.configs import ShareMetric
from webhook.judge import CheckResult
from webhook.judge.share import judge_share, recent_steps_of
from webhook.kinds.base import KindContext, MetricData, combined, with_steps
from webhook.models import parse_duration
from webhook.report import steps

KIND = "share"
SPEC = ShareMetric
TRAFFIC_ROLES = {"total": True}
# a config's few spans, read once each rather than at every poll
_seconds = lru_cache(maxsize=64)(parse_duration)


def sides(spec: ShareMetric) -> tuple[str, ...]:
    return ("canary", "stable")


def level_updates(spec: ShareMetric, min_data_factor: float) -> dict[str, object]:
    return {}


def check_shares(spec: ShareMetric) -> tuple[tuple[str, float], ...]:
    return ((spec.name, 1.0),)


def judge(spec: ShareMetric, data: MetricData, ctx: KindContext) -> list[CheckResult]:
    through = ctx.through()  # steps past the newest sample anywhere have no data yet
    canary = combined(data.series("canary", "total"), ctx)[:through]
    stable = combined(data.series("stable", "total"), ctx)[:through]
    check = judge_share(
        spec.name, canary, stable, recent_steps=recent_steps_of(_seconds(spec.recent),
                                                                 ctx.step),
        recent_text=spec.recent, max_drop=spec.tolerance.relative, alpha=ctx.alpha,
        total_name=spec.total_name, step=ctx.step)
    return [with_steps(check, lambda: steps.share_trace(canary, stable), ctx)]
