"""From fetched series to checks: each metric judged by its kind, once per cohort where the
config asks, and an inconclusive check's reason naming what was queried where no series came.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from webhook.configs import MetricSpec, RatioMetric
from webhook.judge.types import CheckResult, Summary, evolve
from webhook.kinds import KindContext, judge_spec, metric_step
from webhook.sources.base import QueryKey, QueryLanguage, QueryResult, RangeQuery, Series


@dataclass(frozen=True)
class FetchedData:
    """`MetricData` of one metric (one cohort's series when `cohort` is set). `results` are
    keyed by (metric, side, role) tuples (`_by_parts`): a judge asks for its series a dozen
    times per analysis, and building and hashing a frozen `QueryKey` each time cost more than
    the look-up."""

    results: Mapping[tuple[str, str, str], QueryResult]
    metric: str
    cohort_label: str | None = None
    cohort: str | None = None

    def series(self, side: str, role: str) -> Sequence[Series]:
        result = self.results.get((self.metric, side, role))
        if result is None:
            return ()
        if self.cohort_label is None:
            return result.series
        return tuple(x for x in result.series
                     if x.labels.get(self.cohort_label) == self.cohort)


def judge_metrics(specs: list[MetricSpec], results: Mapping[QueryKey, QueryResult],
                  ctx: KindContext) -> list[CheckResult]:
    """Judge every metric on steps `ctx.first`… of the fetched window, per cohort where asked."""
    checks: list[CheckResult] = []
    by_parts = _by_parts(results)
    for spec in specs:
        own = _on_own_grid(spec, ctx)
        if not spec.cohort_label:
            checks.extend(judge_spec(spec, FetchedData(by_parts, spec.name), own))
            continue
        cohorts = _cohorts(spec, results)
        unlabelled = _unlabelled_sides(spec, results)
        if unlabelled or not cohorts:
            checks.append(_uncohorted_check(spec, unlabelled))
            continue
        shared, note = _split_alpha(spec, own, _read_cohorts(spec, results, own))
        for cohort in cohorts:
            data = FetchedData(by_parts, spec.name, spec.cohort_label, cohort)
            for check in judge_spec(shared, data, own):
                name = f"{check.name}[{spec.cohort_label}={cohort}]"
                checks.append(evolve(check, name=name, cohort=cohort, test=check.test + note,
                                     reason=check.reason.replace(check.name, name, 1)))
    # the report page's charts start at the analysis start
    start = ctx.origin + ctx.first * ctx.step
    return [evolve(c, trace=evolve(c.trace, first_time=start, step=ctx.step)) if c.trace
            else c for c in checks]


def data_end(results: Mapping[QueryKey, QueryResult]) -> float | None:
    """The newest time any query has a sample at, if a stable-side query has data at all
    (`KindContext.data_end`); None otherwise.

    Without the stable's data there is no telling a source that has not caught up from a
    canary that went silent, so a canary-only analysis gets no allowance."""
    newest, stable_seen = None, False
    for key, result in results.items():
        q = result.query
        for series in result.series:
            seen = (np.isfinite(series.values) if series.present is None
                    else np.asarray(series.present, dtype=bool))
            found = np.flatnonzero(seen)
            if not found.size:
                continue
            stable_seen |= isinstance(key, QueryKey) and key.side == "stable"
            at = q.start + float(found[-1]) * q.step
            newest = at if newest is None else max(newest, at)
    return newest if stable_seen else None


def _by_parts(results: Mapping[QueryKey, QueryResult]
              ) -> dict[tuple[str, str, str], QueryResult]:
    """The fetched results keyed by plain (metric, side, role) tuples."""
    return {(key.metric, key.side, key.role): result for key, result in results.items()
            if isinstance(key, QueryKey)}


def _on_own_grid(spec: MetricSpec, ctx: KindContext) -> KindContext:
    """The context of a metric queried on its own, finer step (`metric_step`): the same judged
    span, in that grid's indices."""
    own = metric_step(spec, ctx.step)
    if own == ctx.step:
        return ctx
    points = math.floor(ctx.points * ctx.step / own + 1e-9)
    first = min(math.floor(ctx.first * ctx.step / own + 1e-9), points)
    return replace(ctx, step=own, points=points, first=first, origin=ctx.origin - ctx.step + own)


def _split_alpha(spec: MetricSpec, ctx: KindContext, cohorts: int) -> tuple[MetricSpec, str]:
    """The metric as judged in each of its `cohorts`: at alpha / cohorts (Bonferroni), and the
    note its checks' `test` carries.

    Each cohort's test keeps its own false-failure rate at the alpha it is given, and one
    failing cohort fails the verdict: at the full alpha, eight facilities sitting at a limit
    would fail a healthy canary up to eight times as often as alpha says. Split, the chance
    that any cohort of the metric ever fails stays at alpha whatever the number of cohorts
    (the union bound), for the price of a slightly higher bar per cohort (log(k / alpha)
    instead of log(1 / alpha) of evidence). The cohorts are counted on both sides over the
    stable's history too, so a facility known to stable has its share from the first poll."""
    if cohorts <= 1:
        return spec, ""
    alpha = spec.alpha or ctx.alpha
    shared = alpha / cohorts
    return (spec.model_copy(update={"alpha": shared}),
            f" (alpha {shared:.3g} = {alpha:g} / {cohorts} {spec.cohort_label} cohorts)")


def _read_cohorts(spec: MetricSpec, results: Mapping[QueryKey, QueryResult],
                  ctx: KindContext) -> int:
    """How many cohorts have a sample where the judges read (from the stable's history before
    the analysis start on): the divisor of `_split_alpha`. A cohort seen only before that
    is judged (inconclusive, `_cohorts`) but can never fail, and the window fetched without
    it (`fetching`) must split alpha the same way."""
    history = ctx.history
    begin = history.start if history is not None else ctx.first
    seen = set()
    for key, result in results.items():
        if key.metric != spec.name:
            continue
        for x in result.series:
            present = (np.isfinite(x.values[begin:]) if x.present is None
                       else np.asarray(x.present[begin:], dtype=bool))
            if present.any():
                seen.add(x.labels.get(spec.cohort_label or "", ""))
    seen.discard("")
    return len(seen)


def _cohorts(spec: MetricSpec, results: Mapping[QueryKey, QueryResult]) -> list[str]:
    """Cohort values seen on either side for this metric (a cohort missing on one side is
    judged too, and comes out inconclusive)."""
    values = set()
    for key, result in results.items():
        if key.metric == spec.name:
            values.update(x.labels.get(spec.cohort_label or "", "") for x in result.series)
    return sorted(v for v in values if v)


def _unlabelled_sides(spec: MetricSpec, results: Mapping[QueryKey, QueryResult]) -> list[str]:
    """Sides with a series of the metric that carries no `cohort_label`: its counts belong to
    no cohort, so they would be left out of every cohort's check unseen."""
    found = {key.side for key, result in results.items()
             if key.metric == spec.name
             and any(not x.labels.get(spec.cohort_label or "") for x in result.series)}
    return [side for side in ("canary", "stable") if side in found]


def _uncohorted_check(spec: MetricSpec, unlabelled: list[str]) -> CheckResult:
    """The one check of a per-cohort metric whose series cannot be split into cohorts: some
    carry no cohort label, or none came back. Inconclusive, never pass: without it a metric
    whose series all lacked the label vanished from the answer, and the verdict passed on the
    other checks alone (healthcare's workflows, with no `facility` label)."""
    label = spec.cohort_label
    if unlabelled:
        reason = (f"{spec.name}: judged per `{label}`, but the {' and '.join(unlabelled)} "
                  f"series carry no `{label}` label, so their counts belong to no cohort; add "
                  f"`{label}` to the series (relabelling), or judge the metric as a whole "
                  "(drop its cohort_label in a copied config)")
    else:
        reason = f"{spec.name}: judged per `{label}`, but no series of it came back"
    return CheckResult(name=spec.name, kind=spec.kind, verdict="inconclusive",
                       test=f"one check per value of label {label}", reason=reason,
                       canary=Summary(0.0, None), stable=Summary(0.0, None),
                       critical=spec.critical, weight=spec.weight, group=spec.group)


def name_empty_queries(checks: list[CheckResult], specs: list[MetricSpec],
                        queries: list[RangeQuery], results: Mapping[QueryKey, QueryResult],
                        selectors: Mapping[str, str],
                        language: QueryLanguage) -> list[CheckResult]:
    """An inconclusive check with no data on a side says what was queried there (metric name
    and selector), so a wrong provider, label or metric name is visible in the reason. A
    ratio with `absent_numerator: missing` whose numerator found nothing on a side that
    served requests counts as such a side too: its reason shows the matchers it counted by
    (`status_code=~"5.."`), the label the series lack."""
    out = []
    names = sorted((s.name for s in specs), key=len, reverse=True)
    strict = {s.name for s in specs
              if isinstance(s, RatioMetric) and s.absent_numerator == "missing"}
    found = {(q.key.metric, q.key.side, q.key.role) for q in queries
             if (result := results.get(q.key)) is not None and result.series} if strict else set()
    for check in checks:
        spec_name = next((n for n in names if check.name.startswith(n)), None)
        empty = [side for side, summary in (("canary", check.canary), ("stable", check.stable))
                 if not summary.n or (spec_name in strict and summary.value is None
                                      and (spec_name, side, "numerator") not in found)]
        if check.verdict != "inconclusive" or spec_name is None or not empty:
            out.append(check)
            continue
        shown = []
        for side in empty:
            for q in queries:
                result = results.get(q.key)
                if q.key.metric != spec_name or q.key.side != side or (result and result.series):
                    continue
                shown.append(f"{side} queried {language.describe(q.expr, selectors[side])}")
        text = "; ".join(_broadest(list(dict.fromkeys(shown))))
        out.append(replace(check, reason=f"{check.reason} (no series: {text})") if text
                   else check)
    return out


def _broadest(shown: list[str]) -> list[str]:
    """`shown` without a query another one implies: when `x{sel, workflow="a"}` found
    nothing, `x{sel, workflow="a", outcome="failure"}` cannot have found anything either, and
    naming both doubled the reason of every workflow check. Only single-selector texts are
    dropped (one listing several series is kept whole)."""
    return [text for text in shown
            if "}, " in text or not any(other != text and other.endswith("}")
                                        and text.startswith(other[:-1] + ",")
                                        for other in shown)]


