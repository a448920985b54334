"""The one interface between the judge and wherever the numbers live.

A source answers range queries with aligned numpy arrays and reports failures as one of three
exceptions, which the HTTP layer maps to 503 (unavailable), 504 (timeout) and 502 (the source
refused the query). A failure is never turned into data: missing numbers must not become a pass.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Side = Literal["canary", "stable"]


@dataclass(frozen=True)
class QueryKey:
    """Which metric, side and role (numerator, total, buckets, values, …) a query serves."""

    metric: str
    side: Side
    role: str


@dataclass(frozen=True)
class RangeQuery:
    """One query over the analysis window; `key` (a `QueryKey` in the analysis, anything
    hashable to a source) lets the caller find its answer again."""

    key: Hashable
    expr: str
    start: float
    end: float
    step: float
    metric: str = ""  # the config metric this query serves, for error messages


@dataclass(frozen=True)
class Series:
    """One labelled series on the window's grid: `values[i]` is at `start + i*step`, NaN if
    absent.

    `present` marks the steps that had a sample: a sample whose value is NaN (Prometheus sends
    "NaN") is not an absent step, it is corrupt data, and only this mask tells the two apart.
    None means "every finite value is a sample" (arrays built by hand).
    """

    labels: Mapping[str, str]
    values: np.ndarray
    present: np.ndarray | None = None


@dataclass(frozen=True)
class QueryResult:
    """One query's answer. `seconds` and `requests` are what it cost upstream: a source that
    answers several queries with one request puts that request's cost on one of them and 0 on
    the others, so their sums over an analysis are the time spent and HTTP requests sent."""

    query: RangeQuery
    series: tuple[Series, ...]
    seconds: float = 0.0
    requests: int = 1


class SourceError(Exception):
    """Base for failures of the metrics source. `status` is the HTTP status we answer with."""

    status = 503
    kind = "unavailable"

    def __init__(self, message: str, metric: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.metric = metric


class SourceUnavailable(SourceError):
    """Unreachable, refusing connections, or answering 5xx / garbage."""

    status = 503
    kind = "unavailable"


class SourceTimeout(SourceError):
    """The source did not answer within the per-call timeout or the analysis deadline."""

    status = 504
    kind = "timeout"


class QueryRejected(SourceError):
    """The source answered 4xx: the query itself is wrong, not the canary.

    A config's query is a server-side bug (502); one the caller wrote (an inline metric) is
    the caller's to fix, which the analysis can tell only with `key` (the rejected query's
    `RangeQuery.key`), `malformed` (the source said the query text itself is bad, not that
    running it failed) and `detail` (the source's own error text, scrubbed of credentials)."""

    status = 502
    kind = "rejected"

    def __init__(self, message: str, metric: str = "", key: Hashable = None,
                 detail: str = "", malformed: bool = False) -> None:
        super().__init__(message, metric)
        self.key = key
        self.detail = detail
        self.malformed = malformed


class MetricsSource(Protocol):
    """What the analysis needs from a backend; nothing else about it leaks through."""

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        """Run all queries (concurrently where possible); raise a SourceError if any fails,
        SourceTimeout when `deadline` (a time.monotonic() instant) passes first."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Cheap reachability check for /readyz: (ok, human-readable detail)."""
        ...


class QueryLanguageError(ValueError):
    """A caller-supplied piece cannot be placed into a query safely; the analysis answers 400
    naming `field`."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class QueryLanguage(Protocol):
    """How a source's queries are written: the one place that knows its syntax and escaping.

    Configs hold query templates with `{{name}}` placeholders: `{{selector}}` (the side's
    series), `{{step}}` (the window's step) and vars. Caller values reach a query only through
    `selector` and `render`, which raise QueryLanguageError for anything unsafe.
    """

    def selector(self, side: Mapping[str, str] | str, field: str) -> str:
        """A side's label map or raw matcher text, checked and rendered as a selector."""
        ...

    def render(self, template: str, vars_: Mapping[str, str], selector: str, step: float,
               field: str) -> str:
        """A config's query template with the side's selector, the step and vars placed."""
        ...

    def placeholders(self, template: str) -> set[str]:
        """The `{{name}}` placeholders a template (or a templated config value) holds."""
        ...

    def template_problem(self, template: str) -> str | None:
        """Why a caller's inline query template cannot be used, or None."""
        ...

    def label_name_ok(self, name: str) -> bool:
        """Whether `name` may be used as a label name (a config's instance label)."""
        ...

    def describe(self, expr: str, selector: str) -> str:
        """The series a query asked for on one side, for an inconclusive check's reason."""
        ...

    def pinned_value(self, side: Mapping[str, str] | str, label: str) -> str | None:
        """The one value a side's selector pins `label` to by equality (a raw matcher's
        `label="v"` as much as a label map's), or None when it pins none or several: the
        canary's revision (`rollouts_pod_template_hash`) that a person's approval must name.
        Raises QueryLanguageError for a selector it cannot read."""
        ...

    def callers_mistake(self, rejection: str, sides: Mapping[str, Mapping[str, str] | str],
                        vars_: Mapping[str, str]) -> QueryLanguageError | None:
        """The caller's value a source's refusal (`rejection`, its error text) is about, as the
        400 naming its field (`canary.pod`, `vars.x`), or None when the refusal is not about
        anything the caller sent (a config's query: the source's 502 stands)."""
        ...

    def activity(self, parts: Sequence[tuple[str, bool]]) -> str | None:
        """One query whose answer is a single series with a sample exactly at the steps where
        any of `parts` (rendered queries) has a finite sample that is above 0 (`True`: a
        counter's increase) or merely present (`False`: a gauge); None if the language cannot
        say it (the analysis then reads the activity off the full queries instead).

        It lets the rollout's start be found with one cheap query (`webhook.fetching`)."""
        ...


def grid(start: float, end: float, step: float) -> np.ndarray:
    """Evaluation timestamps of a range query, as the source would produce them."""
    return start + step * np.arange(grid_size(start, end, step))


def grid_size(start: float, end: float, step: float) -> int:
    """How many steps `grid` has, without building it (counted on every poll)."""
    return max(math.floor((end - start) / step + 1e-9) + 1, 0)
