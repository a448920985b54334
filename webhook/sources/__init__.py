"""Metrics sources: adapters that turn a range query into plain numpy data.

Every source implements `MetricsSource` (see `base`); the analysis never imports a concrete one.
Adding a backend (Datadog, CloudWatch, …) is one new module here.
"""

from webhook.sources.base import (
    MetricsSource,
    QueryRejected,
    RangeQuery,
    Series,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)

__all__ = [
    "MetricsSource",
    "QueryRejected",
    "RangeQuery",
    "Series",
    "SourceError",
    "SourceTimeout",
    "SourceUnavailable",
]
