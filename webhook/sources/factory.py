"""Which metrics source and query language a server uses, picked from its settings.

The only module (besides the source packages themselves) that names a concrete backend:
app.py and cli.py ask here. A second backend is one new package under `webhook/sources/` and
one branch below.
"""

from __future__ import annotations

from webhook.settings import Settings
from webhook.sources.base import MetricsSource, QueryLanguage


def make_source(settings: Settings, cached: bool = True) -> MetricsSource:
    """The metrics source named by `CANARY_JUDGE_METRICS_SOURCE` (only `prometheus` so far),
    behind the per-process step cache (`step_cache`) unless `cached` is False (a one-shot CLI
    analysis has no later poll to save reads for).

    Under gunicorn the step cache and the process' rollout starts (`fetching.STARTS`) also
    share with the pod's other workers through the store its master made (`shared_steps`);
    elsewhere there is none and each process keeps its own, as before."""
    if settings.metrics_source == "prometheus":
        from webhook.sources.prometheus import PrometheusSource

        source: MetricsSource = PrometheusSource(settings)
    else:
        raise ValueError(f"unknown metrics source {settings.metrics_source!r}")
    if not cached:
        return source
    from webhook.fetching import STARTS
    from webhook.sources.shared_steps import open_store
    from webhook.sources.step_cache import with_step_cache

    shared = open_store(settings.shared_cache_mb)
    STARTS.share(shared)
    return with_step_cache(source, settings.step_cache_points,
                           settings.step_cache_settle_seconds, shared)


def query_language(name: str = "prometheus") -> QueryLanguage:
    """The query language of the source `name` (configs' query templates are written in it)."""
    if name == "prometheus":
        from webhook.sources.prometheus import PROMQL

        return PROMQL
    raise ValueError(f"unknown metrics source {name!r}")
