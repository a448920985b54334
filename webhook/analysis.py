"""One analysis, from a validated request to a verdict: plan the queries, fetch, judge.

This is the only place that knows both the configs and the metrics source; it holds no HTTP.
The Argo, Flagger and curl layers all call `run_analysis` and differ only in how they shape the
request and read the verdict.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from webhook import locks
from webhook.configs import (
    METRIC_KINDS,
    AnalysisConfig,
    ConfigRegistry,
    HistogramMetric,
    MetricSpec,
    RatioMetric,
    SeriesMetric,
    ThresholdMetric,
    metric_sides,
)
from webhook.judge import CheckResult, combine, judge_quantile, judge_ratio
from webhook.judge.corrupt import COUNT_ROLES, corrupt_check, first_corrupt
from webhook.judge.histogram import Histogram
from webhook.judge.limits import (
    judge_events,
    judge_proportion_limit,
    judge_threshold,
    scrape_gaps,
)
from webhook.judge.sequential import HISTORY_STEPS
from webhook.judge.series import judge_series, judge_series_kayenta
from webhook.judge.tailshare import auto_bound, judge_tail_share, tail_counts
from webhook.judge.types import Summary, Trace
from webhook.models import AnalysisRequest, MetricOverride, parse_duration
from webhook.profiles import AppliedLevel, ProfileError, apply_level, gate_checks
from webhook.report import steps
from webhook.settings import Settings
from webhook.sources import query_language
from webhook.sources.base import (
    MetricsSource,
    QueryKey,
    QueryLanguage,
    QueryLanguageError,
    QueryResult,
    RangeQuery,
    grid,
)

_QUERY_FIELDS = {"bad", "good", "total", "query"}
_SPEC_ADAPTER: TypeAdapter[MetricSpec] = TypeAdapter(MetricSpec)


class AnalysisRequestError(ValueError):
    """The request cannot be analysed as sent; the HTTP layer answers 400 naming `field`."""

    def __init__(self, message: str, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Policy:
    """Server-side limits and defaults that requests cannot change."""

    allow_inline_queries: bool = False
    default_lookback: float = 600.0
    default_step: float = 60.0
    default_alpha: float = 0.05
    max_points: int = 2000
    sequential_max_lookback: float = 3 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Policy:
        values: dict[str, Any] = dict(
            allow_inline_queries=settings.allow_inline_queries,
            default_lookback=parse_duration(settings.default_lookback),
            default_step=parse_duration(settings.default_step),
            default_alpha=settings.default_alpha,
            max_points=settings.max_window_points,
            sequential_max_lookback=parse_duration(settings.sequential_max_lookback),
        )
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class ResolvedWindow:
    start: float
    end: float
    step: float
    # An explicit start less than one step ago (a controller's first poll): a valid question
    # with too little data yet, answered inconclusive without querying.
    too_short: bool = False


@dataclass(frozen=True)
class AnalysisResult:
    """One analysis as domain data; `webhook.api.answer` shapes it for callers."""

    config: str
    mode: str
    verdict: str
    score: float
    reason: str
    critical_failure: bool
    start: float  # the judged window: analysis start (after rollout start and warmup) …
    end: float  # … to the end
    step: float
    analysis_id: str
    checks: list[CheckResult]
    query_count: int = 0
    query_seconds: float = 0.0
    seconds: float = 0.0


def resolve_step(request: AnalysisRequest, config: AnalysisConfig, policy: Policy) -> float:
    """The step, first set wins: the request's, the config's default, the server's."""
    step = request.window.step or config.defaults.seconds("step") or policy.default_step
    if step < 1:
        raise AnalysisRequestError("window.step must be at least 1s", "window.step")
    return step


def resolve_alpha(request: AnalysisRequest, config: AnalysisConfig, level: AppliedLevel | None,
                  policy: Policy) -> float:
    """Alpha, first set wins: the request, the config's (its level's, e.g. safety_level, then
    its defaults), the server's CANARY_JUDGE_DEFAULT_ALPHA. A metric's own alpha beats all but
    the request's (see `resolve_metrics`); a request may only lower a locked check's."""
    configured = ((level.alpha if level is not None else None) or config.defaults.alpha
                  or policy.default_alpha)
    if request.alpha is None:
        return configured
    _locked(locks.check_request_alpha, config, request.alpha, configured)
    return request.alpha


def resolve_window(request: AnalysisRequest, config: AnalysisConfig, policy: Policy,
                   now: float, sequential: bool = False) -> ResolvedWindow:
    """The window queried: explicit start/end win; otherwise end = now (aligned to the step)
    and look back.

    Aligning the default end to the step makes two calls within one step judge exactly the
    same data, which keeps repeated measurements of a controller reproducible. In sequential
    mode without a start, the window reaches back far enough to find where the canary's traffic
    began (`judged_from`); `lookback` then bounds that search.
    """
    w = request.window
    step = resolve_step(request, config, policy)
    lookback = w.lookback or config.defaults.seconds("lookback") or policy.default_lookback
    if sequential and w.start is None and w.lookback is None:
        lookback = policy.sequential_max_lookback
    end = w.end if w.end is not None else math.floor(now / step) * step
    if w.start is not None and w.lookback is not None and w.end is not None:
        raise AnalysisRequestError("window: give start and end, or lookback (with an optional "
                                   "end), not all three", "window")
    start = w.start if w.start is not None else end - lookback
    if w.start is not None and w.end is None and w.lookback is not None:
        end = start + lookback
    if end <= start and w.end is None and w.start is not None and w.start <= now + 300:
        # "now", aligned down to the step, is not yet past a start given a moment ago
        return ResolvedWindow(start, start, step, too_short=True)
    if end <= start:
        raise AnalysisRequestError("window.end must be after window.start", "window.end")
    if end > now + 300:
        raise AnalysisRequestError("window.end is in the future", "window.end")
    if (end - start) / step > policy.max_points:
        raise AnalysisRequestError(
            f"window has {int((end - start) / step)} steps; at most {policy.max_points} "
            "(use a larger window.step)", "window.step")
    return ResolvedWindow(start, end, step, too_short=(end - start) < step)


def judged_from(request: AnalysisRequest, config: AnalysisConfig, window: ResolvedWindow,
                mode: str, results: Mapping[QueryKey, QueryResult], points: int) -> int:
    """The first judged step of the fetched window: where the canary's latest run of traffic
    began (sequential mode without an explicit start), plus the warmup."""
    first = 0
    if mode == "sequential" and request.window.start is None:
        begun = rollout_start(canary_activity(results, points, window.step),
                              max_gap=max(3, int(300 // window.step)))
        first = begun if begun is not None else 0
    warmup = request.window.warmup
    if warmup is None:
        warmup = config.defaults.seconds("warmup")
    return min(first + math.ceil((warmup or 0.0) / window.step), points)


def side_selectors(request: AnalysisRequest, language: QueryLanguage) -> dict[str, str]:
    """Canary's and stable's selectors in the source's language; they must differ."""
    try:
        selectors = {side: language.selector(getattr(request, side), side)
                     for side in ("canary", "stable")}
    except QueryLanguageError as exc:
        raise AnalysisRequestError(exc.message, exc.field) from exc
    if selectors["canary"] == selectors["stable"]:
        raise AnalysisRequestError("stable: canary and stable select the same series; they "
                                   "must differ (e.g. by rollouts_pod_template_hash)", "stable")
    return selectors


def _overrides(request: AnalysisRequest) -> dict[str, MetricOverride]:
    if request.metrics is None:
        return {}
    if isinstance(request.metrics, dict):
        return {name: o for name, o in request.metrics.items()}
    out: dict[str, MetricOverride] = {}
    for i, override in enumerate(request.metrics):
        if not override.name:
            raise AnalysisRequestError(f"metrics[{i}].name: each entry of metrics needs a name",
                                       f"metrics[{i}].name")
        out[override.name] = override
    return out


def resolve_metrics(config: AnalysisConfig, request: AnalysisRequest, policy: Policy,
                    language: QueryLanguage | None = None) -> list[MetricSpec]:
    """The config's metrics with the request's overrides merged in, validated again."""
    language = language or query_language()
    overrides = _overrides(request)
    specs: list[MetricSpec] = []
    known = {m.name: m for m in config.metrics}
    for name, override in overrides.items():
        fields = override.model_dump(exclude_none=True, exclude={"enabled"})
        fields["name"] = name
        if _QUERY_FIELDS & fields.keys() and not policy.allow_inline_queries:
            raise AnalysisRequestError(
                f"metrics.{name}: inline queries are disabled on this server "
                "(CANARY_JUDGE_ALLOW_INLINE_QUERIES); change tolerances, not queries",
                f"metrics.{name}", status=403)
        if name not in known and (not policy.allow_inline_queries or "kind" not in fields):
            hint = (f"; to add an inline metric give its kind ({', '.join(METRIC_KINDS)}) "
                    "and queries" if policy.allow_inline_queries else "")
            raise AnalysisRequestError(
                f"metrics.{name}: config {config.name!r} has no metric {name!r} "
                f"(it has {', '.join(known)}){hint}", f"metrics.{name}")
    for metric in config.metrics:
        override = overrides.get(metric.name)
        if override is None:
            specs.append(metric)
            continue
        if not override.enabled:
            _locked(locks.check_disable, config, metric.name)
            continue
        merged = metric.model_dump()
        merged.update(override.model_dump(exclude_none=True, exclude={"enabled"}))
        merged["name"] = metric.name
        spec = _validate_spec(merged, metric.name)
        _locked(locks.check_override, config, metric, spec,
                config.defaults.alpha or policy.default_alpha)
        specs.append(spec)
    for name, override in overrides.items():
        if name not in known and override.enabled:
            fields = override.model_dump(exclude_none=True, exclude={"enabled"})
            fields["name"] = name
            spec = _validate_spec(fields, name)
            for template in _queries(spec).values():
                if problem := language.template_problem(template):
                    raise AnalysisRequestError(f"metrics.{name}: {problem}", f"metrics.{name}")
            specs.append(spec)
    if not specs:
        raise AnalysisRequestError("metrics: every metric is disabled; nothing to judge", "metrics")
    return specs


def _locked(check: Any, *args: Any) -> None:
    """Run a lock check; a refusal is a 403 naming the check or var."""
    try:
        check(*args)
    except locks.LockError as exc:
        raise AnalysisRequestError(exc.message, exc.field, status=403) from exc


def _validate_spec(fields: dict[str, Any], name: str) -> MetricSpec:
    try:
        return _SPEC_ADAPTER.validate_python(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in METRIC_KINDS)
        raise AnalysisRequestError(
            f"metrics.{name}{'.' + where if where else ''}: {first['msg']}",
            f"metrics.{name}{'.' + where if where else ''}") from exc


def _queries(spec: MetricSpec) -> dict[str, str]:
    return spec.queries()


def plan_queries(specs: list[MetricSpec], selectors: Mapping[str, str], vars_: Mapping[str, str],
                 window: ResolvedWindow, language: QueryLanguage | None = None) -> list[RangeQuery]:
    """Every range query the analysis needs; evaluation at start+step … end covers (start, end]."""
    language = language or query_language()
    queries = []
    for spec in specs:
        step = metric_step(spec, window.step)
        for role, template in _queries(spec).items():
            for side in metric_sides(spec):
                try:
                    expr = language.render(template, vars_, selectors[side], step,
                                           field=f"metrics.{spec.name}.{role}")
                except QueryLanguageError as exc:
                    raise AnalysisRequestError(exc.message, exc.field) from exc
                queries.append(RangeQuery(
                    key=QueryKey(spec.name, side, role), expr=expr,
                    start=window.start + step, end=window.end, step=step,
                    metric=spec.name))
    return queries


def metric_step(spec: MetricSpec, window_step: float) -> float:
    """The query step of one metric: its own `step` (a gauge sampled at the scrape interval
    gets several points per window step), never coarser than the window's."""
    own = getattr(spec, "step", None)
    return min(parse_duration(own), window_step) if own else window_step


def _combined_values(result: QueryResult | None, points: int, first: int = 0) -> np.ndarray:
    """One array per query: several series (an unaggregated query) are summed per step."""
    if result is None or not result.series:
        return np.full(points - first, np.nan)
    stacked = np.vstack([s.values[first:] for s in result.series])
    present = np.isfinite(stacked).any(axis=0)
    return np.where(present, np.nansum(np.where(np.isfinite(stacked), stacked, 0.0), axis=0),
                    np.nan)


def _gaps(result: QueryResult | None, points: int, first: int = 0) -> np.ndarray | None:
    """Steps where a series missed a scrape (`samples`: count_over_time per series)."""
    if result is None or not result.series:
        return None
    return scrape_gaps(np.vstack([s.values[first:] for s in result.series]))


def _instance_mean(result: QueryResult | None, points: int, first: int = 0) -> np.ndarray:
    """Per step, the mean over the series present (one series per instance)."""
    if result is None or not result.series:
        return np.full(points - first, np.nan)
    stacked = np.vstack([s.values[first:] for s in result.series])
    present = np.isfinite(stacked)
    count = present.sum(axis=0)
    total = np.where(present, stacked, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _unlabelled_sides(get: Any, label: str) -> list[str]:
    """Sides whose series lack `label`: without it `by (label)` lumps every instance into one
    series, so a side would be judged on its total instead of per instance."""
    sides = []
    for side in ("canary", "stable"):
        result = get(side, "values")
        if result is not None and any(not s.labels.get(label) for s in result.series):
            sides.append(side)
    return sides


def resolve_instance_labels(specs: list[MetricSpec], vars_: Mapping[str, str],
                            language: QueryLanguage | None = None) -> list[MetricSpec]:
    """A `{{var}}` instance label takes the var's value, checked to be a label name: it is
    placed into `by (…)`, where a metric-name character such as `:` would break the query."""
    language = language or query_language()
    out: list[MetricSpec] = []
    for spec in specs:
        label = getattr(spec, "instance_label", None)
        if label and language.placeholders(label):
            (var,) = language.placeholders(label)
            value = vars_.get(var)
            if value is None:
                raise AnalysisRequestError(
                    f"vars.{var}: metric {spec.name} needs the label that tells instances "
                    f"apart, e.g. vars.{var}=pod", f"vars.{var}")
            if not language.label_name_ok(value):
                raise AnalysisRequestError(
                    f"vars.{var}: {value!r} is not a Prometheus label name (e.g. pod, "
                    "instance)", f"vars.{var}")
            spec = spec.model_copy(update={"instance_label": value})
        out.append(spec)
    return out


def _before_start(first: int, mode: str) -> slice | None:
    """The stable's recent steps before the analysis start, which the sequential tests use to
    calibrate themselves (`judge_ratio`, `judge_quantile`: `stable_history`); None when there
    are none or the mode does not use them."""
    if mode != "sequential" or first <= 0:
        return None
    return slice(max(first - HISTORY_STEPS, 0), first)


def _buckets(result: QueryResult | None, first: int = 0) -> list[tuple[float, np.ndarray]]:
    if result is None:
        return []
    out = []
    for series in result.series:
        le = series.labels.get("le")
        if le is None:
            continue
        try:
            out.append((float(le), series.values[first:]))
        except ValueError:
            continue
    return out


def rollout_start(activity: np.ndarray, max_gap: int) -> int | None:
    """Index of the first step of the canary's latest run of traffic, or None if it has none.

    The start of the analysis must be the same at every poll and on every replica, without
    shared state: it is read off the data. A gap of more than `max_gap` quiet steps separates
    two rollouts (Flagger scales the canary to zero between them); a fresh pod-template hash
    (Argo) simply has no earlier series.
    """
    active = np.flatnonzero(activity)
    if active.size == 0:
        return None
    start = active[-1]
    for index in active[::-1][1:]:
        if start - index > max_gap + 1:
            break
        start = index
    return int(start)


def canary_activity(results: Mapping[QueryKey, QueryResult], points: int,
                    step: float | None = None) -> np.ndarray:
    """Steps where any canary-side query saw traffic (queries on the window's `step` only)."""
    active = np.zeros(points, dtype=bool)
    for key, result in results.items():
        side, role = key.side, key.role
        if side != "canary" or role in ("numerator", "events"):
            continue  # bad events are absent when all is well: they say nothing of traffic
        if step is not None and result.query.step != step:
            continue  # a metric on its own grid (a gauge's `step`): other indices
        for series in result.series:
            values = series.values[:points]
            seen = np.isfinite(values)
            # counters' increases are 0 while idle; a gauge's mere presence is activity
            active[: values.size] |= seen & (values > 0) if role in ("total", "buckets") \
                else seen
    return active


def judge_metrics(specs: list[MetricSpec], results: Mapping[QueryKey, QueryResult], points: int,
                  step: float, alpha: float, mode: str = "fixed",
                  first: int = 0, traces: bool = False) -> list[CheckResult]:
    """Judge every metric on steps `first`… of the fetched window, per cohort where asked."""
    checks: list[CheckResult] = []
    for spec in specs:
        def get(side: str, role: str, spec: MetricSpec = spec) -> QueryResult | None:
            return results.get(QueryKey(spec.name, side, role))
        own = metric_step(spec, step)
        if own != step:  # the same judged span on the metric's own, finer grid
            span = points * step
            spec_points = math.floor(span / own + 1e-9)
            spec_first = min(math.floor(first * step / own + 1e-9), spec_points)
        else:
            spec_points, spec_first = points, first
        if not spec.cohort_label:
            checks.extend(_judge_spec(spec, get, spec_points, own, alpha, mode, spec_first,
                                      traces))
            continue
        for cohort in _cohorts(spec, results):
            def get_cohort(side: str, role: str, cohort: str = cohort,
                           spec: MetricSpec = spec) -> QueryResult | None:
                result = get(side, role, spec)
                if result is None:
                    return None
                label = spec.cohort_label
                kept = tuple(x for x in result.series if x.labels.get(label or "") == cohort)
                return replace(result, series=kept)
            for check in _judge_spec(spec, get_cohort, spec_points, own, alpha, mode,
                                     spec_first, traces):
                name = f"{check.name}[{spec.cohort_label}={cohort}]"
                checks.append(replace(check, name=name, cohort=cohort,
                                      reason=check.reason.replace(check.name, name, 1)))
    return checks


def _cohorts(spec: MetricSpec, results: Mapping[QueryKey, QueryResult]) -> list[str]:
    """Cohort values seen on either side for this metric (a cohort missing on one side is
    judged too, and comes out inconclusive)."""
    values = set()
    for key, result in results.items():
        if key.metric == spec.name:
            values.update(x.labels.get(spec.cohort_label or "", "") for x in result.series)
    return sorted(v for v in values if v)


def _judge_histogram(spec: HistogramMetric, canary: list[tuple[float, np.ndarray]],
                     stable: list[tuple[float, np.ndarray]], alpha: float, mode: str,
                     history: list[tuple[float, np.ndarray]] | None = None,
                     step: float = 60.0) -> list[CheckResult]:
    """Each quantile over the whole window, from the per-step bucket increments, and the tail
    share when the metric asks for it; `history` is the stable's steps before the analysis
    start (sequential mode uses them; the tail share's automatic bound is chosen from them)."""
    hc, hs = Histogram.from_steps(canary), Histogram.from_steps(stable)
    before = Histogram.from_steps(history) if history else None
    tail_name = f"{spec.name}_tail" if spec.tail is not None else None
    share = spec.weight / (len(spec.quantiles) + (1 if spec.tail is not None else 0))
    checks = [judge_quantile(
        f"{spec.name}_p{q * 100:g}", hc, hs, q, direction=spec.direction,
        relative_tolerance=spec.tolerance.relative, absolute_tolerance=spec.tolerance.absolute,
        alpha=alpha, min_total=spec.min_total, min_tail=spec.min_tail, critical=spec.critical,
        weight=share, mode=mode, stable_history=before, unit=spec.unit,
        decided_by=tail_name)
        for q in spec.quantiles]
    if spec.tail is not None and tail_name is not None:
        bound = None if spec.tail.bound == "auto" else float(spec.tail.bound)
        checks.append(judge_tail_share(
            tail_name, hc, hs, bound=bound, max_share=spec.tail.max_share,
            direction=spec.direction, relative_tolerance=spec.tail.tolerance.relative,
            absolute_tolerance=spec.tail.tolerance.absolute, alpha=alpha,
            min_total=spec.min_total, step_seconds=step, critical=spec.critical, weight=share,
            mode=mode, stable_history=before, unit=spec.unit))
    return checks


def _with_steps(check: CheckResult, shown: Callable[[], Trace], wanted: bool) -> CheckResult:
    """The per-step values shown with the check (only when a report page will draw them: a
    controller's poll need not pay for them), plus the evidence its judge traced."""
    if not wanted:
        return check
    judged = check.trace or Trace()
    return replace(check, trace=replace(shown(), evidence=judged.evidence,
                                        evidence_level=judged.evidence_level))


def _corrupt_check(spec: MetricSpec, get: Any, begin: int) -> CheckResult | None:
    """An inconclusive check when any series the metric reads from step `begin` on is present
    but NaN/±Inf (or a negative count): the decode step is the only place that still knows a
    NaN sample from a missing one (`Series.present`)."""
    for side in metric_sides(spec):
        for role in _queries(spec):
            result = get(side, role)
            for series in () if result is None else result.series:
                present = None if series.present is None else series.present[begin:]
                bad = first_corrupt(series.values[begin:], present, counts=role in COUNT_ROLES)
                if bad is None:
                    continue
                q = result.query
                shown = "good" if role == "numerator" and getattr(spec, "good", None) else role
                return corrupt_check(spec.name, spec.kind, side, shown, bad[1],
                                     where=_iso(q.start + (begin + bad[0]) * q.step),
                                     critical=spec.critical, weight=spec.weight)
    return None


def _tail_trace(spec: HistogramMetric, canary: list[tuple[float, np.ndarray]],
                stable: list[tuple[float, np.ndarray]],
                history: list[tuple[float, np.ndarray]] | None, allowed: float | None) -> Trace:
    """The tail share per step, for the report page: the same counts the check judged."""
    assert spec.tail is not None
    hc, hs = Histogram.from_steps(canary), Histogram.from_steps(stable)
    before = Histogram.from_steps(history) if history else None
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


def _judge_spec(spec: MetricSpec, get: Any, points: int, step: float, alpha: float,
                mode: str, first: int, traces: bool = False) -> list[CheckResult]:
    a = spec.alpha or alpha
    before = _before_start(first, mode)
    corrupt = _corrupt_check(spec, get, before.start if before is not None else first)
    if corrupt is not None:
        return [replace(corrupt, group=spec.group)]
    base = dict(critical=spec.critical, weight=spec.weight)
    if isinstance(spec, RatioMetric):
        sides = [_combined_values(get(side, role), points, first)
                 for side in ("canary", "stable") for role in ("numerator", "total")]
        ratio = judge_ratio(
            spec.name, *sides,
            direction=spec.direction, relative_tolerance=spec.tolerance.relative,
            absolute_tolerance=spec.tolerance.absolute, alpha=a, min_total=spec.min_total,
            step_seconds=step, mode=mode, stable_history=None if before is None else (
                _combined_values(get("stable", "numerator"), points)[before],
                _combined_values(get("stable", "total"), points)[before]), **base)
        checks = [_with_steps(ratio, lambda: steps.ratio_trace(
            *sides, ratio.allowed, spec.direction), traces)]
        if spec.max_ratio is not None or spec.min_ratio is not None:
            limit = judge_proportion_limit(
                f"{spec.name}_limit", sides[0], sides[1],
                maximum=spec.max_ratio, minimum=spec.min_ratio, alpha=a,
                min_total=spec.min_total, mode=mode, **base)
            # stable's ratio, for context only (the limit is the canary's alone)
            limits = tuple(x for x in (spec.min_ratio, spec.max_ratio) if x is not None)
            checks.append(_with_steps(replace(limit, stable=ratio.stable), lambda: replace(
                steps.ratio_trace(*sides, None, spec.direction), limits=limits), traces))
    elif isinstance(spec, HistogramMetric):
        stable_buckets = get("stable", "buckets")
        history = None if before is None else [(le, v[before])
                                               for le, v in _buckets(stable_buckets)]
        canary_b, stable_b = _buckets(get("canary", "buckets"), first), _buckets(stable_buckets,
                                                                                 first)
        judged = _judge_histogram(spec, canary_b, stable_b, a, mode, history, step)
        checks = [_with_steps(check, partial(
            steps.quantile_trace, canary_b, stable_b, q, points - first,
            spec.tolerance.relative, spec.tolerance.absolute, spec.direction, spec.unit),
            traces)
            for q, check in zip(spec.quantiles, judged, strict=False)]
        if spec.tail is not None:
            checks.append(_with_steps(judged[-1], partial(
                _tail_trace, spec, canary_b, stable_b, history, judged[-1].allowed), traces))
    elif isinstance(spec, SeriesMetric) and spec.instance_label and (
            unlabelled := _unlabelled_sides(get, spec.instance_label)):
        checks = [_missing_label_check(spec, spec.instance_label, unlabelled)]
    elif isinstance(spec, SeriesMetric):
        values = _instance_mean if spec.instance_label else _combined_values
        canary_values = values(get("canary", "values"), points, first)
        stable_values = values(get("stable", "values"), points, first)
        if spec.test == "kayenta":
            check = judge_series_kayenta(
                spec.name, canary_values, stable_values, direction=spec.direction,
                relative_tolerance=spec.tolerance.relative, min_points=spec.min_points, **base)
            allowed = None
        else:
            check = judge_series(
                spec.name, canary_values, stable_values,
                direction=spec.direction, relative_tolerance=spec.tolerance.relative,
                absolute_tolerance=spec.tolerance.absolute, alpha=a,
                min_points=spec.min_points, mode=mode, stable_history=None if before is None
                else values(get("stable", "values"), points)[before], **base)
            allowed = check.allowed
        checks = [_with_steps(check, lambda: steps.series_trace(
            canary_values, stable_values, allowed, spec.direction), traces)]
    elif isinstance(spec, ThresholdMetric):
        canary = _combined_values(get("canary", "values"), points, first)
        check = judge_threshold(
            spec.name, canary, minimum=spec.min, maximum=spec.max, how=spec.aggregate,
            absolute=spec.absolute, min_points=spec.min_points, max_missing=spec.max_missing,
            gaps=_gaps(get("canary", "samples"), points, first), **base)
        checks = [_with_steps(check, lambda: steps.threshold_trace(
            canary, spec.min, spec.max, spec.absolute), traces)]
    else:
        events = _combined_values(get("canary", "events"), points, first)
        stable_events = _combined_values(get("stable", "events"), points, first)
        check = judge_events(
            spec.name, events, allowed=spec.allowed,
            canary_total=(_combined_values(get("canary", "total"), points, first)
                          if spec.total else None),
            min_total=spec.min_total, stable_events=stable_events, **base)
        checks = [_with_steps(check, lambda: steps.events_trace(
            events, stable_events, spec.allowed), traces)]
    return [replace(c, group=spec.group) for c in checks]


def _missing_label_check(spec: SeriesMetric, label: str, sides: list[str]) -> CheckResult:
    """Inconclusive, never fail: the data cannot say how many instances served it."""
    which = " and ".join(sides)
    return CheckResult(
        name=spec.name, kind="series", verdict="inconclusive",
        test=f"per-instance values by label {label}", critical=spec.critical,
        weight=spec.weight, canary=Summary(0.0, None), stable=Summary(0.0, None),
        reason=(f"{spec.name}: the {which} series carry no `{label}` label, so instances "
                f"cannot be told apart; add `{label}` to the series (relabelling) or name a "
                "label they carry in the config's instance-label var (trading: "
                "vars.instance_label)"))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def lookup_config(request: AnalysisRequest, registry: ConfigRegistry) -> AnalysisConfig:
    """The request's config, as its provider (a mesh's metric names and units) needs it."""
    if request.config in registry.broken:
        raise AnalysisRequestError(
            f"config {request.config!r} failed to load ({registry.broken[request.config]}); "
            "fix the file (see /v1/configs)", "config", status=503)
    config = registry.get(request.config)
    if config is None:
        known = ", ".join(sorted(registry.configs)) or "none"
        raise AnalysisRequestError(
            f"config: unknown config {request.config!r}; this server has: {known}", "config")
    return config.for_provider(request.provider)


def canary_revision(request: AnalysisRequest) -> str | None:
    if request.revision:
        return request.revision
    if isinstance(request.canary, dict):
        return request.canary.get("rollouts_pod_template_hash")
    return None


def evaluate_gates(request: AnalysisRequest, registry: ConfigRegistry, action: str,
                   now: float | None = None) -> list[CheckResult]:
    """The config's gates alone (Flagger's confirm-rollout: may a rollout start now?)."""
    config = lookup_config(request, registry)
    _locked(locks.check_vars, config, request.vars)
    vars_ = {**config.vars, **request.vars}
    at = request.window.end if request.window.end is not None else (now or time.time())
    try:
        _, level = apply_level(config, [], vars_)
        return gate_checks(config, vars_, action, at, canary_revision(request), level)
    except ProfileError as exc:
        raise AnalysisRequestError(exc.message, exc.field) from exc


def run_analysis(request: AnalysisRequest, registry: ConfigRegistry, source: MetricsSource,
                 policy: Policy, now: float | None = None,
                 gate_action: str | None = None, traces: bool = False,
                 deadline: float | None = None,
                 language: QueryLanguage | None = None) -> AnalysisResult:
    """Run one analysis. Raises AnalysisRequestError (400) or a SourceError (5xx).

    `gate_action` ("start" or "promote") adds the config's gates as checks: the Argo analysis
    and Flagger's confirm-promotion judge promotion; Flagger's other hooks judge health only.
    `traces` adds each check's per-step values for the report page's charts.
    `deadline` (time.monotonic()) bounds everything the source does for this analysis.
    `language` is the source's query language (default: the Prometheus source's).
    """
    began = time.perf_counter()
    language = language or query_language()
    now = time.time() if now is None else now
    config = lookup_config(request, registry)
    mode = request.mode or config.defaults.mode
    _locked(locks.check_vars, config, request.vars)
    vars_ = {**config.vars, **request.vars}
    try:
        specs, level = apply_level(config, resolve_metrics(config, request, policy, language),
                                   vars_)
    except ProfileError as exc:
        raise AnalysisRequestError(exc.message, exc.field) from exc
    specs = resolve_instance_labels(specs, vars_, language)
    alpha = resolve_alpha(request, config, level, policy)
    if request.alpha is not None:  # the request's alpha beats the metrics' own
        specs = [s.model_copy(update={"alpha": None}) for s in specs]
    selectors = side_selectors(request, language)
    window = resolve_window(request, config, policy, now, mode == "sequential")
    if window.too_short:
        return _too_short(request, config, specs, vars_, window, mode, now, level,
                          gate_action, began)
    queries = plan_queries(specs, selectors, vars_, window, language)
    fetched = source.query_range_many(queries, deadline=deadline)
    results = {r.query.key: r for r in fetched}
    points = grid(window.start + window.step, window.end, window.step).size
    first = judged_from(request, config, window, mode, results, points)
    checks = _name_empty_queries(judge_metrics(specs, results, points, window.step, alpha,
                                               mode, first, traces), specs, queries, results,
                                 selectors, language)
    judged_start = window.start + first * window.step
    checks = [replace(c, trace=replace(c.trace, first_time=judged_start + window.step,
                                       step=window.step)) if c.trace else c for c in checks]
    return _finish(request, config, checks, vars_, window, judged_start, mode, now, level,
                   gate_action, began, fetched)


def _name_empty_queries(checks: list[CheckResult], specs: list[MetricSpec],
                        queries: list[RangeQuery], results: Mapping[QueryKey, QueryResult],
                        selectors: Mapping[str, str],
                        language: QueryLanguage) -> list[CheckResult]:
    """An inconclusive check with no data on a side says what was queried there (metric name
    and selector), so a wrong provider, label or metric name is visible in the reason."""
    out = []
    names = sorted((s.name for s in specs), key=len, reverse=True)
    for check in checks:
        spec_name = next((n for n in names if check.name.startswith(n)), None)
        empty = [side for side, summary in (("canary", check.canary), ("stable", check.stable))
                 if not summary.n]
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
        text = "; ".join(dict.fromkeys(shown))
        out.append(replace(check, reason=f"{check.reason} (no series: {text})") if text
                   else check)
    return out


def _too_short(request: AnalysisRequest, config: AnalysisConfig, specs: list[MetricSpec],
               vars_: Mapping[str, str], window: ResolvedWindow, mode: str, now: float,
               level: AppliedLevel | None, gate_action: str | None,
               began: float) -> AnalysisResult:
    """A window shorter than one step holds no complete step yet: inconclusive, not an error."""
    seconds = max(window.end - window.start, 0.0)
    checks = [CheckResult(
        name=spec.name, kind=spec.kind, verdict="inconclusive", test="none",
        reason=f"{spec.name}: too little data yet: the window is {seconds:g}s, shorter than "
               f"one step ({window.step:g}s); ask again later",
        canary=Summary(0.0, None), stable=Summary(0.0, None), critical=spec.critical,
        weight=spec.weight, group=spec.group) for spec in specs]
    return _finish(request, config, checks, vars_, window, window.start, mode, now, level,
                   gate_action, began, [])


def _finish(request: AnalysisRequest, config: AnalysisConfig, checks: list[CheckResult],
            vars_: Mapping[str, str], window: ResolvedWindow, judged_start: float, mode: str,
            now: float, level: AppliedLevel | None, gate_action: str | None, began: float,
            fetched: list[QueryResult]) -> AnalysisResult:
    """Add the config's gates, combine the checks and shape the verdict."""
    if gate_action:
        at = window.end if request.window.end is not None else now
        try:
            checks += gate_checks(config, vars_, gate_action, at, canary_revision(request), level)
        except ProfileError as exc:
            raise AnalysisRequestError(exc.message, exc.field) from exc
    combined = combine(checks, config.group_weights)
    return AnalysisResult(
        config=config.name, mode=mode, verdict=combined.verdict, score=combined.score,
        reason=combined.reason, critical_failure=combined.critical_failure,
        start=judged_start, end=window.end, step=window.step,
        analysis_id=uuid.uuid4().hex[:16], checks=checks,
        query_count=len(fetched), query_seconds=sum(r.seconds for r in fetched),
        seconds=time.perf_counter() - began)
