"""Metrics sources: adapters that turn a range query into plain numpy data.

Every source implements `MetricsSource` and its query language `QueryLanguage` (see `base`); the
analysis never imports a concrete one, and `factory` picks one from the settings. Adding a
backend (Datadog, CloudWatch, …) is one new package here, like `prometheus/`.
"""

from webhook.sources.base import (
    MetricsSource,
    QueryKey,
    QueryLanguage,
    QueryLanguageError,
    QueryRejected,
    RangeQuery,
    Series,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)
from webhook.sources.factory import make_source, query_language

__all__ = [
    "MetricsSource",
    "QueryKey",
    "QueryLanguage",
    "QueryLanguageError",
    "QueryRejected",
    "RangeQuery",
    "Series",
    "SourceError",
    "SourceTimeout",
    "SourceUnavailable",
    "make_source",
    "query_language",
]
