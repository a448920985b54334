"""One analysis as the HTTP layer runs it: a bounded number at a time, within a deadline, with
the audit line and the service's own metrics left behind whatever happens.

Everything a request needs hangs off one `Service` object, built once per worker process by
`webhook.app.create_app`, so there is no global state and tests can build apps with their own parts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from webhook.analysis import AnalysisRequestError, AnalysisResult, Policy, run_analysis
from webhook.api.answer import window_body
from webhook.configs import ConfigRegistry
from webhook.models import AnalysisRequest
from webhook.observability import (
    ANALYSES,
    ANALYSIS_SECONDS,
    BUSY_REFUSALS,
    UNMATCHED,
    UPSTREAM_ERRORS,
    UPSTREAM_QUERIES,
    audit,
)
from webhook.render import readable
from webhook.revisions import Change, Revisions
from webhook.settings import Settings
from webhook.slots import FairSlots
from webhook.sources import MetricsSource, QueryLanguage, SourceError, query_language
from webhook.sources.shared_steps import open_store
from webhook.timefmt import clock


@lru_cache(maxsize=1024)
def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per label set (prometheus_client returns the
    same child every time, after validating the labels and taking a lock)."""
    return metric.labels(*labels)


class Busy(SourceError):
    """Every analysis slot of this worker is taken and none freed within the wait: 503, and
    a thread stays free for /healthz (a liveness probe that waited behind analyses would get
    the pod restarted)."""

    status = 503
    kind = "busy"


@dataclass
class Service:
    settings: Settings
    registry: ConfigRegistry
    source: MetricsSource
    policy: Policy
    language: QueryLanguage = field(default_factory=query_language)
    slots: FairSlots = field(init=False)
    admitted: threading.BoundedSemaphore = field(init=False)
    # the Flagger canaries' revisions this pod saw (`webhook.revisions`), shared with the
    # pod's other workers through the store their master made, when there is one
    revisions: Revisions = field(init=False)
    # the metrics source answered a readiness probe of this process (`/readyz?source=once`)
    source_answered: bool = field(default=False, init=False)
    # what a hook's gates read as now (a test sets the hour; a hook's metadata cannot)
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        # Analyses running at once (CPU-bound under the GIL: more only adds latency), and
        # analyses in the worker at all, running or waiting for a slot: never every thread,
        # so /healthz, /readyz and /metrics always find one.
        threads = max(self.settings.threads - 1, 1)
        self.slots = FairSlots(min(self.settings.analysis_slots, threads))
        self.admitted = threading.BoundedSemaphore(threads)
        self.revisions = Revisions(self.policy.sequential_max_lookback,
                                   shared=open_store(self.settings.shared_cache_mb))

    def _acquire(self, deadline: float) -> bool:
        """A slot, waiting at most `slot_wait_seconds` and never past half the deadline's
        remainder (the analysis needs the rest); False at once if the worker is full."""
        if not self.admitted.acquire(blocking=False):
            return False
        wait = min(self.settings.slot_wait_seconds, (deadline - time.monotonic()) / 2)
        if self.slots.acquire(wait):
            return True
        self.admitted.release()
        return False

    def analyze(self, req: AnalysisRequest, caller: str, route: str,
                audit_extra: dict[str, Any] | None = None,
                gate_action: str | None = None, traces: bool = False,
                change: Change | None = None, gate_at: float | None = None,
                spelling: Callable[[AnalysisRequestError], AnalysisRequestError] | None = None,
                wording: Callable[[str], str] | None = None,
                ) -> AnalysisResult:
        """Run one analysis within the deadline and leave the audit line and metrics behind,
        whatever happens. `change`: the revision change that set the request's
        `window.not_before`, named in the window's note when that bound held the start.
        `spelling`: a refusal as the caller's own request names its fields (a Flagger hook:
        `metadata.<key>`), for the answer and the audit line alike. `wording`: the same for
        the verdict's reason (`window.warmup` is a Canary's `metadata.warmup`), so the audit
        line an operator greps says what the Canary's events said."""
        began = time.perf_counter()
        deadline = time.monotonic() + self.settings.analysis_deadline_seconds
        record: dict[str, Any] = {
            "caller": caller, "route": route, "config": req.config,
            "canary": req.canary, "stable": req.stable, **(audit_extra or {}),
        }
        if not self._acquire(deadline):
            exc = Busy(f"busy: every analysis slot of this worker stayed taken for "
                       f"{self.settings.slot_wait_seconds:g}s; retry shortly")
            BUSY_REFUSALS.inc()
            record.update(verdict="error", status=exc.status, reason=exc.message,
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise exc
        try:
            return self._analyze(req, record, began, deadline, gate_action, traces, change,
                                 gate_at, spelling, wording)
        finally:
            self.slots.release()
            self.admitted.release()

    def _analyze(self, req: AnalysisRequest, record: dict[str, Any], began: float,
                 deadline: float, gate_action: str | None, traces: bool,
                 change: Change | None = None, gate_at: float | None = None,
                 spelling: Callable[[AnalysisRequestError], AnalysisRequestError] | None = None,
                 wording: Callable[[str], str] | None = None,
                 ) -> AnalysisResult:
        caller = record["caller"]
        try:
            result = run_analysis(req, self.registry, self.source, self.policy,
                                  gate_action=gate_action, traces=traces, deadline=deadline,
                                  language=self.language, gate_at=gate_at)
        except SourceError as exc:
            UPSTREAM_ERRORS.labels(exc.kind).inc()
            record.update(verdict="error", status=exc.status, reason=exc.message,
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise
        except AnalysisRequestError as exc:
            told = spelling(exc) if spelling is not None else exc
            record.update(verdict="error", status=told.status, reason=readable(told.message),
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            if told is exc:
                raise
            raise told from exc
        except Exception as exc:
            record.update(verdict="error", status=500, reason=f"internal error "
                          f"({type(exc).__name__}); see the service log",
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise
        if change is not None and result.note:
            result = replace(result, note=change.note(clock(result.start)))
        if wording is not None:
            result = replace(result, reason=wording(result.reason))
        _child(ANALYSES, result.config, caller, result.verdict).inc()
        _child(ANALYSIS_SECONDS, caller).observe(result.seconds)
        UPSTREAM_QUERIES.inc(result.query_count)
        for side in result.unmatched:
            _child(UNMATCHED, result.config, caller, side).inc()
        record.update(
            analysis_id=result.analysis_id, mode=result.mode, window=window_body(result),
            verdict=result.verdict, score=result.score, reason=result.reason, status=200,
            duration_s=round(result.seconds, 4), queries=result.query_count,
            query_seconds=round(result.query_seconds, 4))
        if result.unmatched:
            record["unmatched"] = list(result.unmatched)
        audit(record)
        return result
