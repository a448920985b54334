"""What one analysis judges, resolved from the request, the config and the server's policy
before anything is fetched: the step, alpha, the window queried, the metrics (overrides merged,
locks enforced, validated again), and the sides' selectors.

Each is decided in one function here, and `run_analysis` calls them once, at its start.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from webhook import kinds, locks
from webhook.bounds import MAX_QUERY_POINTS
from webhook.configs import METRIC_KINDS, AnalysisConfig, MetricSpec
from webhook.models import AnalysisRequest, MetricOverride, parse_duration
from webhook.profiles import AppliedLevel, ProfileError, apply_level
from webhook.settings import Settings
from webhook.sources import query_language
from webhook.sources.base import QueryKey, QueryLanguage, QueryLanguageError, grid_size
from webhook.timefmt import rfc3339_seconds

# Every field of a metric that holds a query (tests pin that each kind's queries are among them)
QUERY_FIELDS = frozenset({"bad", "good", "total", "query", "samples"})
_SPEC_ADAPTER: TypeAdapter[MetricSpec] = TypeAdapter(MetricSpec)


class AnalysisRequestError(ValueError):
    """The request cannot be analysed as sent; the HTTP layer answers 400 naming `field`."""

    def __init__(self, message: str, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


# How far past now an end may lie (clocks of callers and server disagree a little).
FUTURE_SLACK = 300.0


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
    # An explicit start less than one step ago, with no end or lookback (a controller's first
    # poll): a valid question with too little data yet, answered inconclusive without
    # querying. A window that stays shorter than a step is refused instead (`_never_judged`).
    too_short: bool = False

    @property
    def points(self) -> int:
        """Steps evaluated: start+step … end, which covers (start, end]."""
        return grid_size(self.start + self.step, self.end, self.step)

    def first_step_end_after(self, since: float) -> float:
        """When the first whole step after `since` ends in a window ending now: the first end
        `resolve_window` gives such a window (now aligned down to a multiple of the step)
        that lies a step or more after `since`. One rule for every "ask again after": the
        window's start (a first poll) and `window.not_before` (a new revision's first step)."""
        return math.ceil((since + self.step) / self.step) * self.step


def resolve_vars(request: AnalysisRequest, config: AnalysisConfig) -> dict[str, str]:
    """The config's vars with the request's on top; a locked var may not be set (403)."""
    _locked(locks.check_vars, config, request.vars)
    return {**config.vars, **request.vars}


def resolve_specs(request: AnalysisRequest, config: AnalysisConfig, policy: Policy,
                  vars_: Mapping[str, str], language: QueryLanguage | None = None,
                  ) -> tuple[list[MetricSpec], AppliedLevel | None]:
    """The metrics judged, as judged: overrides merged (`resolve_metrics`), the config's level
    applied, instance labels resolved; a request's alpha clears the metrics' own, as it beats
    them (`resolve_alpha`)."""
    try:
        specs, level = apply_level(config, resolve_metrics(config, request, policy, language),
                                   vars_)
    except ProfileError as exc:
        raise AnalysisRequestError(exc.message, exc.field) from exc
    specs = resolve_instance_labels(specs, vars_, language)
    if request.alpha is not None:
        specs = [s.model_copy(update={"alpha": None}) for s in specs]
    return specs, level


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
    began (`rollout.found_start`); `lookback` then bounds that search.
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
    if w.start is not None and w.start > now + FUTURE_SLACK:
        # checked before the end, which follows from it: an hour-ahead start (a time zone
        # written wrong) was told "window.end must be after window.start", with no end given
        raise AnalysisRequestError(
            f"window.start: {rfc3339_seconds(w.start)} is in the future (it is now "
            f"{rfc3339_seconds(now)}); give a time before now, or leave start out",
            "window.start")
    if end <= start:
        raise AnalysisRequestError("window.end must be after window.start", "window.end")
    if w.end is None and end > now + FUTURE_SLACK:
        # a start and a lookback: no end was given, so "give an end that has passed" is not
        # the fix; the lookback is, or none (judge up to now)
        raise AnalysisRequestError(
            f"window.lookback: window.start ({rfc3339_seconds(start)}) plus window.lookback "
            f"({duration_text(lookback)}) ends at {rfc3339_seconds(end)}, in the future (it "
            f"is now {rfc3339_seconds(now)}); give a shorter lookback, or leave lookback out "
            "to judge up to now",
            "window.lookback")
    check_end_passed(w.end, now)
    if (end - start) / step > policy.max_points:
        raise AnalysisRequestError(
            f"window.step: {duration_text(step)} over {duration_text(end - start)} is "
            f"{int((end - start) / step):,} steps per query; at most {policy.max_points:,} "
            f"(CANARY_JUDGE_MAX_WINDOW_POINTS); use step >= "
            f"{duration_text(math.ceil((end - start) / policy.max_points))} or a shorter "
            "window", "window.step")
    if end - start >= step:
        # the steps end at `end`: laid from the start, a step that does not divide the window
        # left its newest part, up to the `end` asked for, unread while the answer still said
        # start..end; now the partial step is the oldest one, and the window says so
        start = end - math.floor((end - start) / step + 1e-9) * step
    elif not (w.start is not None and w.end is None and w.lookback is None):
        raise _never_judged(request, config, policy, step, end - start, sequential)
    return ResolvedWindow(start, end, step, too_short=(end - start) < step)


def check_end_passed(end: float | None, now: float) -> None:
    """Refuse a given `window.end` more than FUTURE_SLACK after `now`. An end replays a
    decision made; one still to come has no data yet, and read the gates (a Saturday to
    come) as if it were here. One refusal for the analysis' window and the gates alone
    (`evaluate_gates`): it said the bare "window.end is in the future" on one path and the
    fix on the other; like a future start's, it says what time it is."""
    if end is not None and end > now + FUTURE_SLACK:
        raise AnalysisRequestError(
            f"window.end: {rfc3339_seconds(end)} is in the future (it is now "
            f"{rfc3339_seconds(now)}); give a time that has passed (a decision to replay), or "
            "leave end out to judge up to now",
            "window.end")


def _never_judged(request: AnalysisRequest, config: AnalysisConfig, policy: Policy,
                  step: float, seconds: float, sequential: bool) -> AnalysisRequestError:
    """A window shorter than its step whose length is fixed (start and end, start and
    lookback, a lookback, or the default one) holds no step now and never will: it answered
    200 inconclusive at every poll until the controller gave up, so it is the caller's 400,
    naming where the length came from and the fix. Only a window from a given start to now
    grows, and stays a 200 that says to ask again later."""
    w = request.window
    if w.start is not None and w.end is not None:
        source = "window.start to window.end"
    elif w.lookback is not None:
        source = "window.lookback; bare numbers are seconds"
    elif sequential:
        source = ("sequential mode's search for the rollout's start, "
                  "CANARY_JUDGE_SEQUENTIAL_MAX_LOOKBACK")
    elif config.defaults.seconds("lookback"):
        source = f"the lookback of config {config.name!r}"
    else:
        source = "CANARY_JUDGE_DEFAULT_LOOKBACK"
    fix = (f"give a step of at most {duration_text(seconds)} or a longer window"
           if seconds >= 1 else "give a longer window")
    return AnalysisRequestError(
        f"window.step: {duration_text(step)} is longer than the window "
        f"({duration_text(seconds)}: {source}), so no step of it can be judged; {fix}",
        "window.step")


def check_metric_steps(specs: list[MetricSpec], window: ResolvedWindow) -> None:
    """A metric's own finer step (`step: 15s`, a request's override) multiplies its points
    over the window: each of its queries must stay within what Prometheus answers."""
    span = window.end - window.start
    for spec in specs:
        own = kinds.metric_step(spec, window.step)
        if own < window.step and span / own > MAX_QUERY_POINTS:
            raise AnalysisRequestError(
                f"metrics.{spec.name}.step: {duration_text(own)} over {duration_text(span)} "
                f"is {int(span / own):,} points per query; Prometheus answers at most "
                f"{MAX_QUERY_POINTS:,}; use step >= "
                f"{duration_text(math.ceil(span / MAX_QUERY_POINTS))} or a shorter window",
                f"metrics.{spec.name}.step")


def duration_text(seconds: float) -> str:
    """`90` → `1m30s`, `0.5` → `500ms`, as a person reads (and `window` fields accept) it."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    rest = whole + (seconds - int(seconds))
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


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


def callers_query(request: AnalysisRequest, specs: list[MetricSpec],
                  key: Hashable) -> str | None:
    """The field (`metrics.<name>.<field>`) holding the query the caller wrote that `key` (a
    rejected query's `QueryKey`) names, or None: a config's own query (its rejection is the
    server's bug, not the caller's)."""
    if not isinstance(key, QueryKey):
        return None
    override = _overrides(request).get(key.metric)
    spec = next((s for s in specs if s.name == key.metric), None)
    if override is None or spec is None:
        return None
    template = kinds.queries(spec).get(key.role)
    sent = override.model_dump(exclude_none=True)
    return next((f"metrics.{key.metric}.{field}" for field in sorted(QUERY_FIELDS)
                 if template is not None and sent.get(field) == template), None)


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
        if QUERY_FIELDS & fields.keys() and not policy.allow_inline_queries:
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
        # what the request names, field by field: {"tolerance": {"relative": 0.3}} keeps the
        # config's absolute floor (it read 0), {"tail": {"tolerance": …}} its bound
        merged = _merged(metric.model_dump(), override.model_dump(
            exclude_none=True, exclude_unset=True, exclude={"enabled"}))
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
            for template in kinds.queries(spec).values():
                if problem := language.template_problem(template):
                    raise AnalysisRequestError(f"metrics.{name}: {problem}", f"metrics.{name}")
            specs.append(spec)
    if not specs:
        raise AnalysisRequestError("metrics: every metric is disabled; nothing to judge", "metrics")
    return specs


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`base` with `change` laid over it; nested objects merged key by key, lists replaced."""
    out = dict(base)
    for key, value in change.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


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
            f"metrics.{name}{'.' + where if where else ''}: "
            f"{first['msg'].removeprefix('Value error, ')}",
            f"metrics.{name}{'.' + where if where else ''}") from exc


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
