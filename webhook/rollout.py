"""Where the judged part of the window begins: read off the data, so every poll and every
replica computes the same analysis start without shared state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from webhook.configs import AnalysisConfig, MetricSpec
from webhook.kinds import kind_of
from webhook.models import AnalysisRequest
from webhook.resolve import ResolvedWindow
from webhook.sources.base import QueryKey, QueryResult, Series


def found_start(request: AnalysisRequest, window: ResolvedWindow, mode: str,
                results: Mapping[QueryKey, QueryResult], points: int,
                specs: list[MetricSpec]) -> tuple[int | None, np.ndarray | None]:
    """Where the canary's latest run of traffic began in the fetched window (`current_start`:
    the window's length when that run is over), in sequential mode without an explicit start;
    None otherwise. With it the `canary_activity` it was read off (None when not read), which
    the judges reuse instead of scanning the data again."""
    if mode != "sequential" or request.window.start is not None:
        return None, None
    activity = canary_activity(results, points, specs, window.step)
    return current_start(activity, max_gap=max_gap(window.step)), activity


def first_judged(begun: int | None, warmup: int, points: int) -> int:
    """The first judged step: the rollout's first step (0 when none was found), plus the
    warmup, at most the window's end."""
    return min((begun or 0) + warmup, points)


def floor_step(not_before: float | None, window: ResolvedWindow, points: int) -> int | None:
    """The first step of `window` whose data all come after `not_before` (None: no bound).

    Step i holds what happened in (start + i·step, start + (i+1)·step]: a step that began
    before the bound may hold another revision's requests, so it is not judged."""
    if not_before is None:
        return None
    index = math.ceil((not_before - window.start) / window.step - 1e-9)
    return min(max(index, 0), max(points, 0))


def bounded_first(begun: int | None, floor: int | None, warmup: int,
                  points: int) -> tuple[int, bool]:
    """`first_judged`, with the rollout's start moved to `floor` if that is later (the warmup
    then counts from there: the traffic judged begins there), and whether it moved the first
    judged step. A bound only ever shortens the judged part, never lengthens it."""
    first = first_judged(begun, warmup, points)
    if floor is None:
        return first, False
    bounded = first_judged(max(begun or 0, floor), warmup, points)
    return bounded, bounded > first


def warmup_seconds(request: AnalysisRequest, config: AnalysisConfig) -> float:
    """The warmup: the request's, else the config's, else none."""
    warmup = request.window.warmup
    if warmup is None:
        warmup = config.defaults.seconds("warmup")
    return warmup or 0.0


def warmup_steps(request: AnalysisRequest, config: AnalysisConfig, step: float) -> int:
    """The warmup in steps."""
    return math.ceil(warmup_seconds(request, config) / step)


def max_gap(step: float) -> int:
    """Quiet steps that still belong to one rollout: 5 minutes, at least 3 steps."""
    return max(3, int(300 // step))


def rollout_start(activity: np.ndarray, max_gap: int) -> int | None:
    """Index of the first step of the canary's latest run of traffic, or None if it has none.

    The start of the analysis must be the same at every poll and on every replica, without
    shared state: it is read off the data. A gap of more than `max_gap` quiet steps separates
    two rollouts (Flagger scales the canary to zero between them); a fresh pod-template hash
    (Argo) simply has no earlier series.
    """
    active = np.asarray(activity).nonzero()[0]
    if active.size == 0:
        return None
    # the run goes back from the last active step while the steps between two active ones
    # are at most `max_gap` quiet ones: it begins after the last wider gap (array methods,
    # not a Python loop over the active steps; called twice a poll)
    wide = ((active[1:] - active[:-1]) > max_gap + 1).nonzero()[0]
    return int(active[wide[-1] + 1] if wide.size else active[0])


def current_start(activity: np.ndarray, max_gap: int) -> int | None:
    """`rollout_start`, or the window's length when the latest run of traffic is over: more
    than `max_gap` quiet steps end the window (Flagger scaled the canary to zero after its last
    analysis, or every canary pod is down). Those steps are as wide a pause as the one that
    splits two rollouts, so the run before it is not the current rollout: judging it would
    answer the poll with another version's data (a pass, or a failure of a version rolled back
    long ago). Nothing of the current rollout is judged, so every check is inconclusive.

    Read off the same data at every poll and replica, as `rollout_start` is; an explicit end
    re-judges a past poll exactly as it was answered.
    """
    activity = np.asarray(activity)
    begun = rollout_start(activity, max_gap)
    if begun is None:
        return None
    last = int(activity.nonzero()[0][-1])
    return int(activity.size) if activity.size - 1 - last > max_gap else begun


def canary_activity(results: Mapping[QueryKey, QueryResult], points: int,
                    specs: list[MetricSpec], step: float | None = None) -> np.ndarray:
    """Steps where any canary-side query that measures traffic saw some (its kind's
    `TRAFFIC_ROLES`: a counter's increase above 0, or a gauge's mere presence); only queries on
    the window's `step` count (a metric on its own grid has other indices)."""
    roles = {spec.name: kind_of(spec).TRAFFIC_ROLES for spec in specs}
    active = np.zeros(points, dtype=bool)
    for key, result in results.items():
        counts = roles.get(key.metric, {}).get(key.role)
        if key.side != "canary" or counts is None:
            continue
        if step is not None and result.query.step != step:
            continue
        mark_traffic(active, result.series, counts)
    return active


def mark_traffic(active: np.ndarray, series: Iterable[Series], counts: bool) -> None:
    """Set in `active` the steps where a series saw traffic: a finite value above 0 when it
    `counts` (a counter's increase), else any finite value (a gauge's presence).

    A query's series share its grid, so they are stacked and reduced as one matrix: a few
    numpy calls per query, not per series (a histogram has a series per bucket)."""
    rows = [s.values[: active.size] for s in series]
    if not rows:
        return
    if len({r.size for r in rows}) > 1:  # series of unequal lengths: one at a time
        for values in rows:
            _mark(active, values, counts)
        return
    _mark(active, np.concatenate(rows).reshape(len(rows), rows[0].size), counts)


def _mark(active: np.ndarray, values: np.ndarray, counts: bool) -> None:
    """`mark_traffic` for one series (1-D) or a matrix of equally long ones (2-D)."""
    seen = np.isfinite(values)
    if counts:
        seen &= values > 0
    if seen.ndim == 2:
        seen = np.logical_or.reduce(seen, axis=0)
    active[: seen.size] |= seen
