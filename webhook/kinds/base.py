"""What every metric kind shares: the interface a kind implements, the context it is judged
in, and how fetched series become the arrays the pure judges in `webhook.judge` take.

A kind module (`ratio.py`, `histogram.py`, …) says which sides are queried (the config class
holds the query templates), which of its queries measure canary traffic, how a config level
scales its minimum data, and how its checks are judged. `webhook.kinds.judge_spec` wraps every
kind the same way: the corrupt-data check first, the metric's own alpha, then critical, weight
and group stamped on the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from webhook.judge.limits import scrape_gaps
from webhook.judge.sequential import HISTORY_STEPS
from webhook.judge.types import CheckResult, Trace
from webhook.sources.base import Series
from webhook.timefmt import rfc3339

Buckets = list[tuple[float, np.ndarray]]


@dataclass(frozen=True)
class KindContext:
    """What a kind is judged with, besides its spec and data.

    `points` steps were fetched, `origin` is the time of step 0; the analysis starts at step
    `first` (the canary's latest run of traffic, after the warmup). In sequential mode the
    stable's steps before it (`history`) calibrate the tests.
    """

    alpha: float
    mode: str
    step: float
    points: int
    first: int = 0
    origin: float = 0.0
    traces: bool = False
    # The newest time any query of the analysis has a sample at (`judging.data_end`), when
    # the stable side has data; None: no such reference. Steps after it have no data anywhere
    # yet (a metrics source lagging behind, or a clock ahead of it).
    data_end: float | None = None
    # Per step from `first` on, whether the canary had traffic (`rollout.canary_activity`),
    # for the checks that count steps without samples (`max_missing`); None otherwise.
    served: np.ndarray | None = None
    # Whether every instance takes an equal share of the traffic (`traffic_split: replicas`);
    # False: a router's weights, where checks that need equal load are not judged.
    equal_load: bool = True

    def through(self) -> int | None:
        """How many steps from `first` on lie at or before `data_end` (None: all of them)."""
        if self.data_end is None:
            return None
        last = math.floor((self.data_end - self.origin) / self.step + 1e-9)
        return min(max(last + 1 - self.first, 0), self.points - self.first)

    @property
    def history(self) -> slice | None:
        """The stable's recent steps before the analysis start (`stable_history` of the
        sequential judges); None when there are none or the mode does not use them."""
        if self.mode != "sequential" or self.first <= 0:
            return None
        return slice(max(self.first - HISTORY_STEPS, 0), self.first)

    def time_of(self, index: int) -> str:
        """The RFC 3339 time of step `index` of the fetched grid (for reasons)."""
        return rfc3339(self.origin + index * self.step)


class MetricData(Protocol):
    """One metric's fetched series (one cohort's, when judged per cohort)."""

    def series(self, side: str, role: str) -> Sequence[Series]:
        """The series of one side and role on the fetched grid; empty when there are none."""
        ...


@dataclass(frozen=True)
class ArrayData:
    """`MetricData` from plain arrays, for judging simulated data (bench/detection) and tests:
    `{(side, role): [Series, …]}`."""

    by_role: Mapping[tuple[str, str], Sequence[Series]]

    def series(self, side: str, role: str) -> Sequence[Series]:
        return self.by_role.get((side, role), ())


class Kind(Protocol):
    """A metric kind: one module under webhook/kinds/ (modules satisfy this protocol)."""

    KIND: str
    # Canary-side roles that show the canary serving: True = a step counts when its value is
    # above 0 (a counter's increase), False = when a value is present (a gauge).
    TRAFFIC_ROLES: Mapping[str, bool]

    def sides(self, spec: Any) -> tuple[str, ...]:
        """Sides the queries run for."""
        ...

    def level_updates(self, spec: Any, min_data_factor: float) -> dict[str, object]:
        """Kind-specific minimum-data fields a config level scales (beyond min_total)."""
        ...

    def judge(self, spec: Any, data: MetricData, ctx: KindContext) -> list[CheckResult]:
        """The metric's checks; `ctx.alpha` is already the metric's. Each check's `weight` is
        its share of the metric's weight (1 for a single check)."""
        ...

    def check_shares(self, spec: Any) -> tuple[tuple[str, float], ...]:
        """The checks `judge` makes, by name, each with its share of the metric's weight: an
        answer that judged nothing lists the same checks as one that did."""
        ...


def combined(series: Sequence[Series], ctx: KindContext, first: int | None = None) -> np.ndarray:
    """One array per query from step `first` (default: the analysis start) on: several series
    (an unaggregated query) are summed per step."""
    first = ctx.first if first is None else first
    if not series:
        return np.full(ctx.points - first, np.nan)
    if len(series) == 1:  # the usual aggregated query: the same numbers without the stacking
        values = series[0].values[first:]
        return np.where(np.isfinite(values), values, np.nan)
    stacked = np.vstack([s.values[first:] for s in series])
    present = np.isfinite(stacked).any(axis=0)
    return np.where(present, np.nansum(np.where(np.isfinite(stacked), stacked, 0.0), axis=0),
                    np.nan)


def instance_mean(series: Sequence[Series], ctx: KindContext,
                  first: int | None = None) -> np.ndarray:
    """Per step, the mean over the series present (one series per instance)."""
    first = ctx.first if first is None else first
    if not series:
        return np.full(ctx.points - first, np.nan)
    return rows_mean(np.vstack([s.values[first:] for s in series]))


def rows_mean(rows: np.ndarray) -> np.ndarray:
    """Per column of one row per instance, the mean of the rows with a value (NaN: none)."""
    present = np.isfinite(rows)
    count = present.sum(axis=0)
    total = np.where(present, rows, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def gaps(series: Sequence[Series], ctx: KindContext) -> np.ndarray | None:
    """Steps where a series missed a scrape (`samples`: count_over_time per series)."""
    if not series:
        return None
    return scrape_gaps(np.vstack([s.values[ctx.first:] for s in series]))


def undefined(series: Sequence[Series], ctx: KindContext) -> np.ndarray | None:
    """Steps where a series had a sample whose value is NaN (not a missing sample: only
    `Series.present` tells them apart), from the analysis start on; None when no series
    says which steps had a sample, or none was NaN."""
    marks = [s.present[ctx.first:] & np.isnan(s.values[ctx.first:])
             for s in series if s.present is not None]
    out = np.logical_or.reduce(marks) if marks else None
    return out if out is not None and out.any() else None


def buckets(series: Sequence[Series], first: int = 0) -> Buckets:
    """Per-step bucket increments by upper bound (`le`), from step `first` on."""
    out = []
    for s in series:
        le = s.labels.get("le")
        if le is None:
            continue
        try:
            out.append((float(le), s.values[first:] if first else s.values))
        except ValueError:
            continue
    return out


def with_steps(check: CheckResult, shown: Callable[[], Trace], ctx: KindContext) -> CheckResult:
    """The per-step values shown with the check (only when a report page will draw them: a
    controller's poll need not pay for them), plus the evidence its judge traced."""
    if not ctx.traces:
        return check
    judged = check.trace or Trace()
    return replace(check, trace=replace(shown(), evidence=judged.evidence,
                                        evidence_level=judged.evidence_level,
                                        evidence_line=judged.evidence_line))
