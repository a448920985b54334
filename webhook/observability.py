"""The service's own telemetry: Prometheus metrics and the JSON audit log.

Under gunicorn with several workers each process counts for itself; when
PROMETHEUS_MULTIPROC_DIR is set (our gunicorn config sets it) /metrics aggregates them all.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

ANALYSES = Counter("canary_judge_analyses_total", "Analyses run, by outcome.",
                   ["config", "caller", "verdict"])
ANALYSIS_SECONDS = Histogram(
    "canary_judge_analysis_duration_seconds", "Wall time of one analysis, queries included.",
    ["caller"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
UPSTREAM_QUERIES = Counter("canary_judge_upstream_queries_total",
                           "HTTP requests (range queries) sent to the metrics source.")
UPSTREAM_ERRORS = Counter("canary_judge_upstream_errors_total",
                          "Analyses that failed because the metrics source failed, by kind.",
                          ["kind"])
# Series × steps of the answers the step cache returned, by where they came from: `cache`
# (this worker's or its pod's shared store) or `upstream` (read from the metrics source). What a
# repeated poll costs Prometheus, and whether the pod's workers share what they read.
STEP_CACHE_SAMPLES = Counter(
    "canary_judge_step_cache_samples_total",
    "Samples (series x steps) of the answers the step cache returned, by where they were "
    "read from: the cache (the worker's or the pod's shared store) or upstream.",
    ["read_from"])
# Analyses a worker refused with `503 busy` (every analysis slot stayed taken for the slot
# wait), and requests answered 500 (a defect of the judge, `app.py`'s last error handler):
# neither is the metrics source's fault; the alerts of manifests/components/alerts page on both.
BUSY_REFUSALS = Counter("canary_judge_busy_refusals_total",
                        "Analyses refused with 503 busy: every analysis slot of the worker "
                        "stayed taken for the slot wait.")
INTERNAL_ERRORS = Counter("canary_judge_internal_errors_total",
                          "Requests answered 500: an error of the judge itself (the service "
                          "log has the traceback).")
# Analyses in which a side's selector matched no series at all (`analysis.unmatched_sides`):
# inconclusive every time, and under Flagger a canary walked to maxWeight judged by nothing;
# the alerts of manifests/components/alerts warn when it lasts.
UNMATCHED = Counter("canary_judge_unmatched_selectors_total",
                    "Analyses in which every query of one side (canary or stable) came back "
                    "without a series: its selector matches nothing.",
                    ["config", "caller", "side"])
HOOK_RESPONSES = Counter("canary_judge_hook_responses_total",
                         "Flagger webhook answers, by hook type and HTTP status.",
                         ["hook", "status"])


def metrics_payload() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_audit = logging.getLogger("canary_judge.audit")
# The audit trail is not diagnostics: an operator quieting the log with
# CANARY_JUDGE_LOG_LEVEL=warning must not lose the record of who was let through on what.
_audit.setLevel(logging.INFO)


def configure_logging(level: str = "INFO") -> None:
    """Plain JSON lines on stdout: what log collectors in Kubernetes expect."""
    root = logging.getLogger()
    if not any(getattr(h, "_canary_judge", False) for h in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(_JsonFormatter())
        handler._canary_judge = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # urllib3 logs every retried connection; our own error answer already says what failed.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time (gunicorn and pytest both swap it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = dict(record.msg) if isinstance(record.msg, dict) else {"msg": record.getMessage()}
        payload.setdefault("ts", round(record.created, 3))
        payload.setdefault("level", record.levelname.lower())
        payload.setdefault("logger", record.name)
        if record.exc_info and record.levelno >= logging.ERROR:
            payload["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else ""
        return json.dumps(payload, default=str, separators=(",", ":"))


def audit(event: dict[str, Any]) -> None:
    """One line per analysis: who was let through, on what evidence, and at what cost.

    Callers pass only values they chose to record; never headers or tokens.
    """
    event = {"event": "analysis", "ts": round(time.time(), 3), **event}
    _audit.info(event)
