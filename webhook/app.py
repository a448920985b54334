"""Flask application factory: wires settings, configs and the metrics source to the routes.

Everything a request needs hangs off one `Service` object in `app.extensions`, built once per
worker process, so there is no global state and tests can build apps with their own parts.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from webhook.analysis import AnalysisRequestError, AnalysisResult, Policy, run_analysis
from webhook.configs import ConfigRegistry, load_registry
from webhook.models import AnalysisRequest
from webhook.observability import (
    ANALYSES,
    ANALYSIS_SECONDS,
    HOOK_RESPONSES,
    UPSTREAM_ERRORS,
    UPSTREAM_QUERIES,
    audit,
    configure_logging,
)
from webhook.settings import Settings, load_settings
from webhook.sources import MetricsSource, SourceError
from webhook.sources.prometheus import PrometheusSource
from webhook.sources.step_cache import with_step_cache

log = logging.getLogger(__name__)


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
    slots: threading.BoundedSemaphore = field(init=False)
    admitted: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        # Analyses running at once (CPU-bound under the GIL: more only adds latency), and
        # analyses in the worker at all, running or waiting for a slot: never every thread,
        # so /healthz, /readyz and /metrics always find one.
        threads = max(self.settings.threads - 1, 1)
        self.slots = threading.BoundedSemaphore(min(self.settings.analysis_slots, threads))
        self.admitted = threading.BoundedSemaphore(threads)

    def _acquire(self, deadline: float) -> bool:
        """A slot, waiting at most `slot_wait_seconds` and never past half the deadline's
        remainder (the analysis needs the rest); False at once if the worker is full."""
        if not self.admitted.acquire(blocking=False):
            return False
        wait = min(self.settings.slot_wait_seconds, (deadline - time.monotonic()) / 2)
        if self.slots.acquire(timeout=max(wait, 0.0)):
            return True
        self.admitted.release()
        return False

    def analyze(self, req: AnalysisRequest, caller: str, route: str,
                audit_extra: dict[str, Any] | None = None,
                gate_action: str | None = None, traces: bool = False) -> AnalysisResult:
        """Run one analysis within the deadline and leave the audit line and metrics behind,
        whatever happens."""
        began = time.perf_counter()
        deadline = time.monotonic() + self.settings.analysis_deadline_seconds
        record: dict[str, Any] = {
            "caller": caller, "route": route, "config": req.config,
            "canary": req.canary, "stable": req.stable, **(audit_extra or {}),
        }
        if not self._acquire(deadline):
            exc = Busy(f"busy: every analysis slot of this worker stayed taken for "
                       f"{self.settings.slot_wait_seconds:g}s; retry shortly")
            record.update(verdict="error", status=exc.status, reason=exc.message,
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise exc
        try:
            return self._analyze(req, record, began, deadline, gate_action, traces)
        finally:
            self.slots.release()
            self.admitted.release()

    def _analyze(self, req: AnalysisRequest, record: dict[str, Any], began: float,
                 deadline: float, gate_action: str | None, traces: bool) -> AnalysisResult:
        caller = record["caller"]
        try:
            result = run_analysis(req, self.registry, self.source, self.policy,
                                  gate_action=gate_action, traces=traces, deadline=deadline)
        except SourceError as exc:
            UPSTREAM_ERRORS.labels(exc.kind).inc()
            record.update(verdict="error", status=exc.status, reason=exc.message,
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise
        except AnalysisRequestError as exc:
            record.update(verdict="error", status=exc.status, reason=exc.message,
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise
        except Exception as exc:
            record.update(verdict="error", status=500, reason=f"internal error "
                          f"({type(exc).__name__}); see the service log",
                          duration_s=round(time.perf_counter() - began, 4))
            audit(record)
            raise
        body = result.verdict
        ANALYSES.labels(body.config, caller, body.verdict).inc()
        ANALYSIS_SECONDS.labels(caller).observe(result.seconds)
        UPSTREAM_QUERIES.inc(result.query_count)
        record.update(
            analysis_id=body.analysis_id, mode=body.mode, window=body.window.model_dump(),
            verdict=body.verdict, score=body.score, reason=body.reason, status=200,
            duration_s=round(result.seconds, 4), queries=result.query_count,
            query_seconds=round(result.query_seconds, 4))
        audit(record)
        return result


def get_service() -> Service:
    return current_app.extensions["canary_judge"]


_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
          500: "internal", 503: "unavailable", 504: "timeout"}


def error_response(status: int, message: str, field: str | None = None,
                   kind: str | None = None) -> Response:
    body: dict[str, Any] = {"error": kind or _KINDS.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    return response


def validation_message(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The first error as `field: what is wrong`, which is what a person fixes first."""
    errors = exc.errors()
    # A union (labels or matcher string, list or map of overrides) reports one error per
    # branch; the branch of the type the caller sent is the one that explains the problem.
    shape = ("list_type", "dict_type", "string_type", "model_type")
    first = next((e for e in errors if e["type"] not in shape), errors[0])
    loc = [str(p) for p in first["loc"]
           if not str(p).startswith(("function-", "str", "dict[", "list["))]
    field = prefix + ".".join(loc) if loc else (prefix.rstrip(".") or "body")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field; check its spelling against /openapi.json"
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {msg}{more}", field


def bearer_ok(settings: Settings) -> bool:
    if not settings.api_tokens:
        return True
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 11.1)
        return False
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return any(hmac.compare_digest(given, t.get_secret_value().encode())
               for t in settings.api_tokens)


def _count_hook(status: int) -> None:
    """Hook answers that never reached the hook's own code still count in /metrics."""
    if request.path.startswith("/v1/hooks/"):
        from webhook.api.hooks import HOOK_TYPES

        hook = request.path.removeprefix("/v1/hooks/")
        HOOK_RESPONSES.labels(hook if hook in HOOK_TYPES else "unknown", str(status)).inc()


class StrictJSONProvider(DefaultJSONProvider):
    """JSON has no NaN or Infinity: Argo cannot read `"score": NaN`, so refuse to write one."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def create_app(settings: Settings | None = None, source: MetricsSource | None = None,
               registry: ConfigRegistry | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = Flask("canary_judge")
    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    registry = registry or load_registry(settings.config_dir)
    policy = Policy.from_settings(settings)
    app.extensions["canary_judge"] = Service(
        settings=settings, registry=registry, source=source or with_step_cache(
            PrometheusSource(settings), settings.step_cache_points,
            settings.step_cache_settle_seconds), policy=policy)

    from webhook.api.analyze import bp as analyze_bp
    from webhook.api.hooks import bp as hooks_bp
    from webhook.api.meta import bp as meta_bp

    app.register_blueprint(analyze_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(meta_bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = {
            404: "no such route; see /openapi.json",
            405: f"{request.method} is not allowed here",
            413: "request body too large (max 256 KiB)",
        }.get(status, exc.description or "error")
        response = error_response(status, message)
        valid = getattr(exc, "valid_methods", None)
        if status == 405 and valid:
            response.headers["Allow"] = ", ".join(sorted(valid))
        _count_hook(status)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        _count_hook(500)
        return error_response(500, "internal error; see the service log")

    return app
