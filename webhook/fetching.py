"""What one analysis reads from the metrics source, and no more.

In sequential mode without a start (how Argo and Flagger poll) the window reaches back hours
(`sequential_max_lookback`) to find where the canary's latest run of traffic began, but the
judges only read from the stable's `HISTORY_STEPS` steps before the judged start on. So:

1. the start is found with ONE cheap query: the query language's `activity` folds every
   canary-side query that measures traffic (`canary_activity`'s definition) into a single
   series, present at the steps with traffic; `rollout_start` reads the start off it;
2. the analysis' queries are then fetched only from `keep_from` steps into the window on;
3. the start found is remembered per question (`StartCache`, bounded, per process, and under
   gunicorn shared with the pod's other workers through `shared_steps`). A repeated
   poll fetches the window's queries as the remembered start has them, in one round trip, and
   reads the start off their canary data: that is the start query's answer whenever more than
   `max_gap` quiet steps precede the start inside the fetched part (`settled_start`), so traffic
   before the cut could not join its run. Where the cut leaves fewer (a warmup of nearly the
   stable's history), the start query rides along in the same round trip. Only when the start
   moved (a new rollout), or the data cannot settle it, is there a second round trip.

The start is always read off the data of the same poll, so a cold replica, late samples and
counter resets give the answer they give without the cache: the cache only saves round trips.
A language that cannot write the start query (`activity` returns None) or whose source rejects
it gets the old behaviour: the whole lookback, activity read off the fetched queries.

Answers equal those read off the whole lookback (tests/test_fetching.py): every step is
evaluated on its own, whatever the range's start. Two things differ by design: a series with no
sample from the cut on (a pod or cohort gone before the stable's history) is not fetched, so it
is no longer judged as an empty cohort. Queries using `@ start()` or `@ end()`, which would see
the cut's bounds, are refused when a config loads and in a request (`promql.range_pin`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from webhook.configs import AnalysisConfig, MetricSpec
from webhook.judge.sequential import HISTORY_STEPS
from webhook.kinds import kind_of, metric_step
from webhook.models import AnalysisRequest
from webhook.plan import PlannedQuery, over, plan_exprs
from webhook.resolve import ResolvedWindow
from webhook.rollout import (
    bounded_first,
    canary_activity,
    current_start,
    first_judged,
    floor_step,
    found_start,
    mark_traffic,
    max_gap,
    warmup_steps,
)
from webhook.sources.base import (
    MetricsSource,
    QueryKey,
    QueryLanguage,
    QueryRejected,
    QueryResult,
    RangeQuery,
    Series,
)
from webhook.sources.shared_steps import REJECTED, SharedSteps

START_METRIC = "rollout start"  # how the start query is named in errors and counted by benches


@dataclass(frozen=True)
class Fetched:
    """The data one analysis judges."""

    window: ResolvedWindow  # the window fetched: the resolved one, or a later start
    queries: list[RangeQuery]  # the analysis' queries over `window`
    results: dict[QueryKey, QueryResult]
    first: int  # the first judged step of `window`
    upstream: list[QueryResult]  # every answer read, the start query's included
    # the canary's latest run of traffic is over (`current_start`): nothing of the current
    # rollout is judged
    over: bool = False
    # the request's `window.not_before` moved the first judged step later than the data's
    # start (and warmup) would have it
    held: bool = False
    # `canary_activity` over `window`, when the start was read off these results (None: it
    # was not, and whoever needs it computes it)
    activity: np.ndarray | None = None
    # the step of the resolved window (not of `window`, which may start later) where the
    # canary's latest run of traffic began; None when no start was looked for or found
    begun: int | None = None

    @property
    def points(self) -> int:
        return self.window.points


class StartCache:
    """The last rollout start found per start query (its text and step), least recently used
    evicted past `size`: a guess that saves a round trip, checked against every poll's data.
    A start query the source rejected is remembered too, so that a backend speaking a PromQL
    subset costs one wasted round trip per question and process, not one per poll.

    With `shared` (the pod's store, `share`), a question this process has not seen is looked
    up there before it costs the start query over the whole lookback, and every start found
    (or rejection) is left there for the pod's other workers. A start read there is only a
    guess like one's own: each poll checks it against its data."""

    def __init__(self, size: int = 4096, shared: SharedSteps | None = None) -> None:
        self.size = size
        self.shared = shared
        self._entries: OrderedDict[tuple[str, float], float | str | None] = OrderedDict()
        self._lock = threading.Lock()

    def share(self, shared: SharedSteps | None) -> None:
        """Share through `shared` from now on (None: keep to this process)."""
        self.shared = shared

    def _known(self, query: RangeQuery) -> tuple[bool, float | str | None]:
        """This process' value for the query, else the pod's (then kept here too)."""
        key = (query.expr, query.step)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return True, self._entries[key]
        shared = self.shared
        if shared is None:
            return False, None
        found, value = shared.read_start(key)
        if found:
            self._keep(key, value)
        return found, value

    def get(self, query: RangeQuery) -> tuple[bool, float | None]:
        """Whether a start is known for this query, and its time (None: no traffic seen)."""
        found, value = self._known(query)
        if not found or isinstance(value, str):
            return False, None
        return True, value

    def rejected(self, query: RangeQuery) -> bool:
        """Whether the source refused this start query before."""
        found, value = self._known(query)
        return found and value == REJECTED

    def put(self, query: RangeQuery, begun_at: float | str | None) -> None:
        """Remember a start (a time, or None: no traffic), or `reject` it."""
        key = (query.expr, query.step)
        self._keep(key, begun_at)
        shared = self.shared
        if shared is not None:
            shared.write_start(key, begun_at)

    def reject(self, query: RangeQuery) -> None:
        self.put(query, REJECTED)

    def _keep(self, key: tuple[str, float], value: float | str | None) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


STARTS = StartCache()


@dataclass(frozen=True)
class Plan:
    """What one analysis asks, before it is placed on a window: a pure function of the
    metrics, selectors, vars, step and language (`webhook.analysis` keeps it with the request,
    so a repeated poll plans once)."""

    exprs: list[PlannedQuery]  # every query's text (`plan_exprs`)
    parts: list[tuple[str, bool]]  # the canary-side traffic queries (`traffic_parts`)
    activity: str | None  # the start query's text, None if the language cannot write it


def plan_window(specs: list[MetricSpec], selectors: Mapping[str, str],
                vars_: Mapping[str, str], step: float, language: QueryLanguage) -> Plan:
    """The `Plan` for a window of `step`."""
    exprs = plan_exprs(specs, selectors, vars_, step, language)
    parts = traffic_parts(exprs, specs, step)
    return Plan(exprs, parts, language.activity(parts) if parts else None)


def fetch_window(request: AnalysisRequest, config: AnalysisConfig, specs: list[MetricSpec],
                 selectors: Mapping[str, str], vars_: Mapping[str, str],
                 window: ResolvedWindow, mode: str, source: MetricsSource,
                 language: QueryLanguage, deadline: float | None = None,
                 starts: StartCache | None = None, plan: Plan | None = None) -> Fetched:
    """Fetch what the analysis judges; see the module docstring. `plan` is
    `plan_window(specs, selectors, vars_, window.step, language)`, if the caller has it."""
    starts = STARTS if starts is None else starts
    if plan is None:
        plan = plan_window(specs, selectors, vars_, window.step, language)
    planned_exprs = plan.exprs

    def whole() -> Fetched:  # the whole window at once, its queries placed only when asked
        return _whole(request, config, specs, window, mode, over(planned_exprs, window),
                      source, deadline)

    if mode != "sequential" or request.window.start is not None:
        return whole()
    parts = plan.parts
    start_q = _start_query(plan.activity, window) if parts else None
    if (parts and start_q is None) or (start_q is not None and starts.rejected(start_q)):
        return whole()
    points = window.points
    warmup = warmup_steps(request, config, window.step)
    own = [metric_step(spec, window.step) for spec in specs]

    # the queries over each cut, placed once per cut (a poll usually asks twice) and only
    # when asked (a repeated poll never needs the whole window's)
    planned: dict[int, tuple[int, ResolvedWindow, list[RangeQuery]]] = {}

    def narrowed(begun: int | None) -> tuple[int, ResolvedWindow, list[RangeQuery]]:
        keep = keep_from(first_judged(begun, warmup, points), window.step, own)
        if keep not in planned:
            cut = window if keep == 0 else ResolvedWindow(
                window.start + keep * window.step, window.end, window.step, window.too_short)
            planned[keep] = keep, cut, over(planned_exprs, cut)
        return planned[keep]

    gap = max_gap(window.step)
    upstream: list[QueryResult] = []
    # answers fetched, by key, and their cut
    held: tuple[int, dict[QueryKey, QueryResult]] | None = None
    seen: np.ndarray | None = None  # canary_activity of `held`'s results, if read
    begun: int | None = None
    if start_q is not None:
        known, guess = starts.get(start_q)
        settled = False
        if known:  # a repeated poll: the window as the remembered start has it, at once
            remembered = _index(guess, window, points)
            keep, _, cut_queries = narrowed(remembered)
            # the window's own data settle the start unless the cut leaves too few quiet
            # steps before it (a long warmup): then the start query rides along
            along = keep > 0 and (remembered is None or remembered - keep <= gap)
            got = _ask(source, [start_q, *cut_queries] if along else cut_queries, deadline)
            upstream += got
            held = keep, {r.query.key: r for r in (got[1:] if along else got)}
            if along:
                settled, begun = True, current_start(activity_of(got[0], points), gap)
            else:
                settled, begun, seen = settled_start(held[1], specs, points - keep,
                                                     window.step, keep)
        if not settled:  # cold here, or the window cannot tell: ask the start query
            try:
                got = _ask(source, [start_q], deadline)
            except QueryRejected:  # the language wrote what this source cannot run
                starts.reject(start_q)
                return whole()
            upstream += got
            begun = current_start(activity_of(got[0], points), gap)
        begun_at = None if begun is None else window.start + window.step * (begun + 1)
        if not known or begun_at != guess:  # `get` already marked a known start as used
            starts.put(start_q, begun_at)
    keep, cut, cut_queries = narrowed(begun)
    if held is not None and held[0] == keep:
        results = held[1]
    else:  # first poll of this question here, or the start moved: fetch the window (again)
        answers = _ask(source, cut_queries, deadline)
        upstream += answers
        results = {r.query.key: r for r in answers}
        seen = None
    # the request's lower bound moves only the first judged step: the cut (the stable's
    # history before it included) is the data start's, so a bound costs no other query
    first, bounded = bounded_first(begun, floor_step(request.window.not_before, window,
                                                     points), warmup, points)
    return Fetched(cut, cut_queries, results, first - keep, upstream,
                   over=begun is not None and begun >= points, held=bounded, activity=seen,
                   begun=begun)


def _ask(source: MetricsSource, queries: list[RangeQuery],
         deadline: float | None) -> list[QueryResult]:
    """`source.query_range_many`, each distinct query sent once: metrics of one config often
    read the same total (trading's fill and unfilled rates and its compliance check all count
    orders; healthcare's four safety checks all count workflow runs), 4 of trading's 23
    queries and 6 of healthcare's 40. A repeat gets its own copy of the answer (the judges
    are handed arrays no other query shares) and none of its cost, so the audit's requests
    and seconds stay what was sent."""
    first: dict[tuple[str, float, float, float], int] = {}
    distinct: list[RangeQuery] = []
    at = []
    for q in queries:
        n = first.setdefault((q.expr, q.start, q.end, q.step), len(distinct))
        if n == len(distinct):
            distinct.append(q)
        at.append(n)
    if len(distinct) == len(queries):
        return source.query_range_many(queries, deadline=deadline)
    answers = source.query_range_many(distinct, deadline=deadline)
    return [answers[n] if distinct[n] is q else
            QueryResult(q, tuple(Series(s.labels, s.values.copy(),
                                        None if s.present is None else s.present.copy())
                                 for s in answers[n].series), 0.0, 0)
            for q, n in zip(queries, at, strict=True)]


def settled_start(results: Mapping[QueryKey, QueryResult], specs: list[MetricSpec],
                  points: int, step: float, keep: int
                  ) -> tuple[bool, int | None, np.ndarray]:
    """Whether the window's data from step `keep` on settle the rollout start, the start
    (a step of the whole window, None: no traffic) if they do, and the cut window's
    `canary_activity` it was read off (the judges reuse it).

    The start is the first step of the latest run of canary traffic, runs split by more than
    `max_gap` quiet steps. Read off the cut window (`canary_activity`, the start query's
    definition), it is the whole window's when nothing was cut, or when at least `max_gap + 1`
    quiet steps precede it inside the cut window: traffic before the cut is then too far back
    to join its run.
    """
    gap = max_gap(step)
    activity = canary_activity(results, points, specs, step)
    begun = current_start(activity, gap)
    if keep == 0:
        return True, begun, activity
    if begun is not None and begun >= gap + 1:
        return True, begun + keep, activity
    return False, None, activity


def _whole(request: AnalysisRequest, config: AnalysisConfig, specs: list[MetricSpec],
           window: ResolvedWindow, mode: str, queries: list[RangeQuery], source: MetricsSource,
           deadline: float | None) -> Fetched:
    """Every query over the whole resolved window; the start read off their data."""
    fetched = _ask(source, queries, deadline)
    results = {r.query.key: r for r in fetched}
    points = window.points
    begun, activity = found_start(request, window, mode, results, points, specs)
    first, held = bounded_first(begun, floor_step(request.window.not_before, window, points),
                                warmup_steps(request, config, window.step), points)
    return Fetched(window, queries, results, first, fetched,
                   over=begun is not None and begun >= points, held=held, activity=activity,
                   begun=begun)


def traffic_parts(queries: Sequence[RangeQuery | PlannedQuery], specs: list[MetricSpec],
                  step: float) -> list[tuple[str, bool]]:
    """The rendered canary-side queries `canary_activity` reads, each with whether a step
    counts when its value is above 0 (a counter) or merely present (a gauge)."""
    roles = {spec.name: kind_of(spec).TRAFFIC_ROLES for spec in specs}
    parts = []
    for q in queries:
        key = q.key
        if not isinstance(key, QueryKey) or key.side != "canary" or q.step != step:
            continue
        counts = roles.get(key.metric, {}).get(key.role)
        if counts is not None:
            parts.append((q.expr, counts))
    return list(dict.fromkeys(parts))


def start_query(parts: Sequence[tuple[str, bool]], window: ResolvedWindow,
                language: QueryLanguage) -> RangeQuery | None:
    """The one query whose samples mark the canary's traffic over the window, or None."""
    return _start_query(language.activity(parts), window)


def _start_query(expr: str | None, window: ResolvedWindow) -> RangeQuery | None:
    if expr is None:
        return None
    return RangeQuery(key=START_METRIC, expr=expr, start=window.start + window.step,
                      end=window.end, step=window.step, metric=START_METRIC)


def keep_from(first: int, step: float, own_steps: Iterable[float]) -> int:
    """How many leading steps of the window no judge reads: those before the stable's history
    (`KindContext.history`, HISTORY_STEPS before the first judged step).

    A metric on its own, finer step (`metric_step`) keeps its grid's times only if the cut is a
    whole number of its steps, and its history is HISTORY_STEPS of its own steps: the cut is
    rounded down until both hold (0: nothing is cut).
    """
    keep = first - HISTORY_STEPS
    if keep <= 0:
        return 0
    ratios = [step / own for own in set(own_steps) if own != step]
    multiple = 1
    for ratio in ratios:
        whole = next((m for m in range(1, 1001) if abs(m * ratio - round(m * ratio)) < 1e-9),
                     None)
        if whole is None:
            return 0
        multiple = math.lcm(multiple, whole)
    keep -= keep % multiple
    for ratio in ratios:
        own_first = math.floor(first * ratio + 1e-9)
        while keep > 0 and round(keep * ratio) > own_first - HISTORY_STEPS:
            keep -= multiple
    return max(keep, 0)


def _index(begun_at: float | None, window: ResolvedWindow, points: int) -> int | None:
    """A start remembered as a time, as a step of this window (its first step if older; the
    window's length, nothing judged, if later: a run that was over, `current_start`)."""
    if begun_at is None:
        return None
    index = round((begun_at - window.start) / window.step) - 1
    return min(max(index, 0), max(points, 0))


def activity_of(result: QueryResult, points: int) -> np.ndarray:
    """The start query's answer as `canary_activity`'s array: steps where it has a sample."""
    active = np.zeros(points, dtype=bool)
    mark_traffic(active, result.series, counts=True)
    return active
