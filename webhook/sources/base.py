"""The one interface between the judge and wherever the numbers live.

A source answers range queries with aligned numpy arrays and reports failures as one of three
exceptions, which the HTTP layer maps to 503 (unavailable), 504 (timeout) and 502 (the source
refused the query). A failure is never turned into data: missing numbers must not become a pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RangeQuery:
    """One query over the analysis window; `key` lets the caller find its answer again."""

    key: str
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
    query: RangeQuery
    series: tuple[Series, ...]
    seconds: float = 0.0


@dataclass
class QueryStats:
    """What an analysis cost upstream: reported in the audit log."""

    count: int = 0
    seconds: float = 0.0
    per_query: list[float] = field(default_factory=list)


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
    """The source answered 4xx: the query itself is wrong (a config bug), not the canary."""

    status = 502
    kind = "rejected"


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


def grid(start: float, end: float, step: float) -> np.ndarray:
    """Evaluation timestamps of a range query, as the source would produce them."""
    n = int(np.floor((end - start) / step + 1e-9)) + 1
    return start + step * np.arange(max(n, 0))
