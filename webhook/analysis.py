"""One analysis, from a validated request to a verdict: a short pipeline.

1. resolve (`webhook.resolve`): config, metrics, alpha, selectors and the window, once each;
2. plan and fetch (`webhook.plan`, `webhook.fetching`, the metrics source), finding where
   the judged part begins (`webhook.rollout`) with one cheap query first, so only the steps
   the judges read are fetched;
3. judge each metric by its kind (`webhook.judging`, `webhook.kinds`);
4. add the config's gates and combine (`webhook.judge.combine`).

It holds no HTTP: the Argo, Flagger and curl layers all call `run_analysis`, get domain data
back (`AnalysisResult`) and shape it themselves (`webhook.api.answer`).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from webhook.configs import AnalysisConfig, ConfigRegistry, MetricSpec
from webhook.fetching import Plan, StartCache, fetch_window, plan_window
from webhook.judge import CheckResult, combine
from webhook.judging import data_end, judge_metrics, name_empty_queries
from webhook.kinds import KindContext, stamped, unjudged_checks
from webhook.models import AnalysisRequest
from webhook.plan import plan_queries
from webhook.profiles import AppliedLevel, ProfileError, apply_level, gate_checks
from webhook.resolve import (
    AnalysisRequestError,
    Policy,
    ResolvedWindow,
    callers_query,
    check_end_passed,
    check_metric_steps,
    duration_text,
    resolve_alpha,
    resolve_metrics,
    resolve_specs,
    resolve_vars,
    resolve_window,
    side_selectors,
)
from webhook.rollout import canary_activity, max_gap, warmup_seconds, warmup_steps
from webhook.sources import query_language
from webhook.sources.base import (
    MetricsSource,
    QueryKey,
    QueryLanguage,
    QueryLanguageError,
    QueryRejected,
    QueryResult,
)
from webhook.timefmt import clock

# plan_queries, resolve_metrics, resolve_window: re-exported for bench/latency.py
__all__ = ["AnalysisRequestError", "AnalysisResult", "Policy", "check_request",
           "evaluate_gates", "lookup_config", "not_before_words", "plan_queries",
           "resolve_metrics", "resolve_window", "run_analysis"]


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
    # why the judged window starts where it does, when the data alone did not decide it
    # (the request's `window.not_before` held it back); "" otherwise
    note: str = ""
    # the sides whose every query came back without a series: their selector matches
    # nothing (a label scheme that is not the data's, or a side not scraped)
    unmatched: tuple[str, ...] = ()


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


def canary_revision(request: AnalysisRequest, language: QueryLanguage) -> str | None:
    """The revision a person's approval must name: the request's `revision`, else the value the
    canary's selector pins Argo's pod-template hash to, a raw matcher's as much as a label
    map's (read as text, a raw one could never be approved); None when neither says."""
    if request.revision:
        return request.revision
    try:
        return language.pinned_value(request.canary, "rollouts_pod_template_hash")
    except QueryLanguageError:  # refused with its 400 where the selector is used
        return None


def evaluate_gates(request: AnalysisRequest, registry: ConfigRegistry, action: str,
                   now: float | None = None, at: float | None = None,
                   language: QueryLanguage | None = None) -> list[CheckResult]:
    """The config's gates alone (Flagger's confirm-rollout: may a rollout start now?), read
    at `window.end` when the request gives one, else now; `at`: at that instant, whatever
    the request says (a hook's)."""
    config = lookup_config(request, registry)
    vars_ = resolve_vars(request, config)
    now = now or time.time()
    at = _gate_instant(request, at, now)
    # an end replays a decision made; one in the future (a Saturday to come) opened the
    # market-hours gate today: refused as an analysis' own window refuses it
    check_end_passed(request.window.end, now)
    try:
        _, level = apply_level(config, [], vars_)
        return gate_checks(config, vars_, action, at,
                           canary_revision(request, language or query_language()), level)
    except ProfileError as exc:
        raise AnalysisRequestError(exc.message, exc.field) from exc


def _gate_instant(request: AnalysisRequest, at: float | None, now: float) -> float:
    """When the gates are read: at `at` when the caller fixes it (a hook: the server's clock),
    else at the request's `window.end` (a decision replayed), else now."""
    if at is not None:
        return at
    return request.window.end if request.window.end is not None else now


def run_analysis(request: AnalysisRequest, registry: ConfigRegistry, source: MetricsSource,
                 policy: Policy, now: float | None = None,
                 gate_action: str | None = None, traces: bool = False,
                 deadline: float | None = None,
                 language: QueryLanguage | None = None,
                 starts: StartCache | None = None,
                 gate_at: float | None = None) -> AnalysisResult:
    """Run one analysis. Raises AnalysisRequestError (400) or a SourceError (5xx).

    `gate_action` ("start" or "promote") adds the config's gates as checks: the Argo analysis
    and Flagger's confirm-promotion judge promotion; Flagger's other hooks judge health only.
    `traces` adds each check's per-step values for the report page's charts.
    `deadline` (time.monotonic()) bounds everything the source does for this analysis.
    `language` is the source's query language (default: the Prometheus source's).
    `starts` remembers rollout starts between polls (default: this process' `STARTS`).
    `gate_at`: the instant the gates are read at, whatever the window (a hook decides now).
    """
    began = time.perf_counter()
    language = language or query_language()
    now = time.time() if now is None else now
    resolved, mode, window = _prepare(request, registry, policy, language, now)
    config, vars_, alpha, selectors = (resolved.config, resolved.vars_, resolved.alpha,
                                       resolved.selectors)
    specs = list(resolved.specs)
    asked = _Asked(request, resolved, window, mode, now, gate_action, gate_at, began)
    if window.too_short:
        # only a window from a given start to now is too short here: it grows as time
        # passes (`resolve_window` refuses one that never would, lookback=5 read as seconds
        # where 5m was meant, or `step: 4h` against sequential mode's 3 h search). Its
        # length said "the window is 0s" when the start lay after now aligned down to the
        # step: the time to ask again says what the caller needs
        return _nothing_yet(asked, [], window.start, "too little data yet: " + _first_step(
            window, window.start, f"window.start ({clock(window.start)})"))
    try:
        got = fetch_window(request, config, specs, selectors, vars_, window, mode, source,
                           language, deadline, starts, resolved.plan(window.step, language))
    except QueryRejected as exc:
        # a regex only Prometheus' compile refuses is the caller's typo, not a broken source
        mistake = language.callers_mistake(exc.message, {"canary": request.canary,
                                                          "stable": request.stable},
                                           request.vars)
        if mistake is not None:
            raise AnalysisRequestError(mistake.message, mistake.field) from exc
        # a query the caller wrote (an inline metric) that the source cannot parse is the
        # caller's to fix, not a broken source (Argo: Error; Flagger: a failed check either way)
        field = callers_query(request, specs, exc.key) if exc.malformed else None
        if field is None:
            raise
        raise AnalysisRequestError(f"{field}: the metrics source rejected this query: "
                                   f"{exc.detail}", field) from exc
    if got.over:
        quiet = max_gap(window.step) * window.step
        return _nothing_yet(asked, got.upstream, window.end, (
            f"no canary traffic for more than {quiet:g}s (the pause that splits two "
            "rollouts): its last run is over and the next has not begun; nothing to judge "
            "yet"))
    fetched = got.window
    judged_start = fetched.start + got.first * window.step
    if got.held and request.window.not_before is not None and judged_start >= window.end:
        # the bound left no whole step (a revision seen replacing another within the last
        # step): every count would read "0 requests, sent (almost) none", which blames the
        # canary, and the note said "judged from" a step it had not judged
        return _nothing_yet(asked, got.upstream, window.end,
                            _not_before_covers(request, window, request.window.not_before))
    warmup = warmup_steps(request, config, window.step)
    searched = mode == "sequential" and request.window.start is None
    if warmup and judged_start >= window.end and not (searched and got.begun is None):
        # the warmup left no whole step: every count would read "0 requests, sent (almost)
        # none" on both sides, which blames a canary that served and never names the warmup
        # (a canary whose traffic was searched for and not found has sent none: that stands)
        return _nothing_yet(asked, got.upstream, window.end,
                            _warmup_covers(request, config, window, got.begun, warmup))
    served = None
    if _counts_silence(specs):  # the start's scan of the data, unless none was read
        served = (got.activity if got.activity is not None else
                  canary_activity(got.results, got.points, specs, window.step))[got.first:]
    ctx = KindContext(alpha=alpha, mode=mode, step=window.step, points=got.points,
                      first=got.first, origin=fetched.start + window.step, traces=traces,
                      data_end=data_end(got.results) if served is not None else None,
                      served=served, equal_load=request.traffic_split != "weights")
    checks = name_empty_queries(judge_metrics(specs, got.results, ctx), specs, got.queries,
                                got.results, selectors, language)
    result = _finish(asked, checks, got.upstream, judged_start, unmatched_sides(got.results))
    if got.held and request.window.not_before is not None:
        result = replace(result, note=f"judged from {clock(judged_start)}, not before "
                         f"{clock(request.window.not_before)} (window.not_before)")
    return result


def check_request(request: AnalysisRequest, registry: ConfigRegistry, policy: Policy,
                  now: float | None = None, language: QueryLanguage | None = None) -> None:
    """Refuse (AnalysisRequestError), without querying anything, what `run_analysis` would
    refuse before its first query at `now`: the config, vars, metrics, alpha, selectors, the
    window and the queries' text.

    Flagger's confirm-rollout decides on gates alone and reads no data, but it is the last
    word before traffic moves: answering 200 to metadata every later hook refuses (a start
    after the end, a step longer than the window) started a rollout whose first rollout hook
    failed, each tick a failed check. What only the metrics source can refuse (a regex only
    Prometheus' compile rejects) is not seen here."""
    language = language or query_language()
    _prepare(request, registry, policy, language, time.time() if now is None else now)


def _prepare(request: AnalysisRequest, registry: ConfigRegistry, policy: Policy,
             language: QueryLanguage, now: float) -> tuple[_Resolved, str, ResolvedWindow]:
    """What an analysis decides before its first query, each refusal raised in the order
    the answer names it: `_resolve`'s, then the window at `now`, the metrics' own steps over
    it and the queries' text (planned here, before a window too short to fetch returns, so a
    first poll refuses what every later one would). One function for `run_analysis` and
    `check_request`, so that a hook that only checks refuses exactly what an analysis does."""
    resolved = _resolve(request, registry, policy, language)
    mode = request.mode or resolved.config.defaults.mode
    window = resolve_window(request, resolved.config, policy, now, mode == "sequential")
    check_metric_steps(list(resolved.specs), window)
    resolved.plan(window.step, language)
    return resolved, mode, window


def _warmup_covers(request: AnalysisRequest, config: AnalysisConfig, window: ResolvedWindow,
                   begun: int | None, warmup: int) -> str:
    """Why nothing is judged when the warmup (`warmup` steps) reaches the window's end, and
    what to change: waiting helps only a window that ends now and a found rollout start (the
    warmup counts from it); a fixed window or a given end needs a longer window or a shorter
    warmup, which "too little data" never said."""
    name = ("window.warmup" if request.window.warmup is not None
            else f"the warmup of config {config.name!r}")
    seconds = warmup_seconds(request, config)
    found = begun is not None
    since = window.start + (begun or 0) * window.step
    origin = "where the canary's traffic began" if found else "the window's start"
    later = found and request.window.end is None
    text = (f"nothing to judge{' yet' if later else ''}: {name} ({duration_text(seconds)}) "
            f"leaves out every step from {clock(since)} ({origin}) to the window's end at "
            f"{clock(window.end)}; ")
    if not found:
        return text + "give a longer window or a shorter window.warmup"
    if request.window.end is not None:
        return text + "give a later window.end or a shorter window.warmup"
    return text + f"ask again after {clock(since + (warmup + 1) * window.step)}"


def not_before_words(since: float) -> str:
    """How a reason names the request's `window.not_before` bound at `since`. Only a Flagger
    hook sets it for its callers, after a revision change, and no Canary has the key: the hook
    swaps exactly these words for the change it saw (`hooks._canary_words`), so the sentence
    around them stays one, written here."""
    return f"window.not_before ({clock(since)}, where a new revision's data begin)"


def _first_step(window: ResolvedWindow, since: float, named: str) -> str:
    """When a window ending now first holds a whole step after `since` (`named` so in the
    text), and when to ask again: one sentence for a first poll's start and for a new
    revision's `window.not_before`."""
    ready = window.first_step_end_after(since)
    return (f"the first whole step after {named} runs from {clock(ready - window.step)} to "
            f"{clock(ready)} (step {duration_text(window.step)}); ask again after "
            f"{clock(ready)}")


def _not_before_covers(request: AnalysisRequest, window: ResolvedWindow, since: float) -> str:
    """Why nothing is judged when `window.not_before` (`since`) leaves no whole step before
    the window's end, and what to do. A window ending now gains the first whole step after
    the bound at a time the answer names (a first poll's rule, `_first_step`; "ask again
    after the next step" named none). A window whose end is fixed (a decision
    replayed) never does: waiting cannot help, so it names the end that would, as
    `_warmup_covers` does."""
    bound = not_before_words(since)
    w = request.window
    if w.end is None and not (w.start is not None and w.lookback is not None):
        return "nothing to judge yet: " + _first_step(window, since, bound)
    # steps are laid back from a fixed end: one ending a step or more after the bound holds one
    if w.end is not None:
        fixed, fix = "window.end", f"give a window.end of {clock(since + window.step)} or later"
    else:  # start + lookback: a third key would be refused, the lookback is what to change
        fixed = "window.start and window.lookback"
        longer = duration_text(math.ceil(since + window.step - (w.start or 0.0)))
        fix = f"give a window.lookback of {longer} or more"
    return (f"nothing to judge: no whole step after {bound} ends by the window's end at "
            f"{clock(window.end)}, which waiting will not move (set by {fixed}); {fix}")


def _counts_silence(specs: list[MetricSpec]) -> bool:
    """Whether a check counts steps without samples (`max_missing`): only those read where
    the data end (`judging.data_end`) and where the canary served (`rollout.canary_activity`),
    so other analyses skip the scans."""
    return any(getattr(spec, "max_missing", None) is not None for spec in specs)


@dataclass(frozen=True)
class _Resolved:
    """What an analysis resolves from the request and the server's fixed parts (registry,
    policy, query language) alone: the same at every poll of one question."""

    config: AnalysisConfig
    vars_: Mapping[str, str]
    specs: tuple[MetricSpec, ...]
    level: AppliedLevel | None
    alpha: float
    selectors: Mapping[str, str]
    # the revision an approval gate must name (`canary_revision`), read once per question
    revision: str | None
    plans: dict[float, Plan]  # by window step, filled as asked

    def plan(self, step: float, language: QueryLanguage) -> Plan:
        plan = self.plans.get(step)
        if plan is None:  # a failed plan raises and is not remembered
            plan = self.plans[step] = plan_window(list(self.specs), self.selectors,
                                                  self.vars_, step, language)
        return plan


def _resolve(request: AnalysisRequest, registry: ConfigRegistry, policy: Policy,
             language: QueryLanguage) -> _Resolved:
    """Config, vars, metrics, alpha and selectors, in this order (the first refusal is the
    one answered), kept with the request (`AnalysisRequest.derived`, keyed by the other
    inputs' identity): a request remembered between polls resolves once. A refusal raises
    and is not kept."""
    key = ("resolved", id(registry), id(policy), id(language))
    held = request.derived.get(key)
    if (held is not None and held[0] is registry and held[1] is policy
            and held[2] is language):
        return held[3]
    config = lookup_config(request, registry)
    vars_ = resolve_vars(request, config)
    specs, level = resolve_specs(request, config, policy, vars_, language)
    alpha = resolve_alpha(request, config, level, policy)
    selectors = side_selectors(request, language)
    resolved = _Resolved(config, vars_, tuple(specs), level, alpha, selectors,
                         canary_revision(request, language), {})
    request.derived[key] = (registry, policy, language, resolved)
    return resolved


@dataclass(frozen=True)
class _Asked:
    """One analysis' question as `run_analysis` settled it before fetching: what every way
    of answering it (judged, or nothing to judge yet) needs besides the checks."""

    request: AnalysisRequest
    resolved: _Resolved
    window: ResolvedWindow
    mode: str
    now: float
    gate_action: str | None
    gate_at: float | None
    began: float  # time.perf_counter() when the analysis began


def _nothing_yet(asked: _Asked, fetched: list[QueryResult], judged_start: float,
                 why: str) -> AnalysisResult:
    """No step of the window belongs to what is asked (a window shorter than one step, the
    warmup or window.not_before leaving none, or a canary whose last run of traffic is over):
    every check inconclusive saying `why`, not an error, and not the judges' "too little
    data", which would blame the stable too.

    The checks are the ones a judged answer has (`latency_p95`, not the metric `latency`), so
    each poll lists the same names; `why` is about the whole window, not one metric, so it
    carries no metric's name, and the answer's reason says it once."""
    checks = [check for spec in asked.resolved.specs
              for check in stamped(spec, unjudged_checks(spec, "none", lambda _: why))]
    return _finish(asked, checks, fetched, judged_start)


def _finish(asked: _Asked, checks: list[CheckResult], fetched: list[QueryResult],
            judged_start: float, unmatched: tuple[str, ...] = ()) -> AnalysisResult:
    """Add the config's gates (read at `gate_at`, else at the window's given end, else now),
    combine the checks and shape the verdict."""
    config, window = asked.resolved.config, asked.window
    if asked.gate_action:
        at = _gate_instant(asked.request, asked.gate_at, asked.now)
        try:
            checks += gate_checks(config, asked.resolved.vars_, asked.gate_action, at,
                                  asked.resolved.revision, asked.resolved.level)
        except ProfileError as exc:
            raise AnalysisRequestError(exc.message, exc.field) from exc
    combined = combine(checks, config.group_weights)
    return AnalysisResult(
        config=config.name, mode=asked.mode, verdict=combined.verdict, score=combined.score,
        reason=combined.reason, critical_failure=combined.critical_failure,
        start=judged_start, end=window.end, step=window.step,
        analysis_id=secrets.token_hex(8), checks=checks,
        query_count=sum(r.requests for r in fetched),  # HTTP requests sent
        query_seconds=sum(r.seconds for r in fetched),
        seconds=time.perf_counter() - asked.began, unmatched=unmatched)


def unmatched_sides(results: Mapping[QueryKey, QueryResult]) -> tuple[str, ...]:
    """The sides whose every query came back without a series.

    Not thin data but a selector that matches nothing: a Canary's label scheme (provider,
    app_label, namespace_label) or a template's args that are not how the series are
    labelled, or a side that is not scraped. Each such analysis is inconclusive, which Argo
    pauses on, but Flagger's rollout hook answers 200 and Flagger keeps shifting weight, up to
    maxWeight with nothing judged. The verdict cannot say more than inconclusive (a stable
    with no data is "missing data"), so the judge counts these analyses for an alert."""
    found: dict[str, bool] = {}
    for key, result in results.items():
        found[key.side] = found.get(key.side, False) or bool(result.series)
    return tuple(side for side in ("canary", "stable") if found.get(side) is False)
