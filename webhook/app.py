"""Flask application factory: wires settings, configs and the metrics source to the routes.

It only builds the app: the shared HTTP helpers live in `webhook.api.common`, one analysis as the
HTTP layer runs it in `webhook.service`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from webhook.analysis import Policy
from webhook.api.analyze import bp as analyze_bp
from webhook.api.analyze import not_stored, wrong_route_message
from webhook.api.common import error_response
from webhook.api.gates import bp as gates_bp
from webhook.api.hooks import HOOK_TYPES
from webhook.api.hooks import bp as hooks_bp
from webhook.api.meta import bp as meta_bp
from webhook.configs import ConfigRegistry, load_registry
from webhook.observability import HOOK_RESPONSES, INTERNAL_ERRORS, configure_logging
from webhook.service import Service
from webhook.settings import Settings, load_settings
from webhook.sources import MetricsSource, make_source, query_language

log = logging.getLogger(__name__)


def _count_hook(status: int) -> None:
    """Hook answers that never reached the hook's own code still count in /metrics."""
    if request.path.startswith("/v1/hooks/"):
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
        settings=settings, registry=registry, source=source or make_source(settings),
        policy=policy, language=query_language(settings.metrics_source))

    app.register_blueprint(analyze_bp)
    app.register_blueprint(gates_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(meta_bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        valid = getattr(exc, "valid_methods", None)
        # curl's first tries at the analysis mix its two forms: say which call works
        analyze = (wrong_route_message(request.method, request.path, request.args.get("config"))
                   if status in (404, 405) else None)
        message = analyze or {
            404: "no such route; see /openapi.json",
            405: f"{request.method} is not allowed here"
                 + (f"; use {' or '.join(m for m in sorted(valid) if m != 'OPTIONS')}"
                    if valid else ""),
            413: "request body too large (max 256 KiB)",
        }.get(status, exc.description or "error")
        response = error_response(status, message)
        if status == 405 and valid:
            response.headers["Allow"] = ", ".join(sorted(valid))
        if analyze is not None:  # its headers and `?format=text`, as its own errors have
            response = not_stored(response)
        _count_hook(status)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        INTERNAL_ERRORS.inc()
        _count_hook(500)
        return error_response(500, "internal error; see the service log")

    return app
