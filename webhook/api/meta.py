"""Routes about the service itself: configs, health, metrics and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook.api.common import error_response, get_service
from webhook.models import AnalysisRequest, VerdictModel
from webhook.observability import metrics_payload
from webhook.worker_boot import boot_problem, mark_source_answered, source_answered_in_pod

bp = Blueprint("meta", __name__)


def _config_summary(name: str) -> dict[str, Any]:
    service = get_service()
    config = service.registry.configs[name]
    return {
        "name": config.name,
        "description": config.description,
        "source": service.registry.sources.get(name, ""),
        "defaults": config.defaults.model_dump(),
        "vars": config.vars,
        "metrics": [m.model_dump() for m in config.metrics],
        "providers": {name: v.model_dump() for name, v in config.providers.items()},
        "locks": config.locks.model_dump(),
    }


@bp.get("/v1/configs")
def list_configs() -> Response:
    registry = get_service().registry
    return jsonify({
        "configs": [_config_summary(name) for name in sorted(registry.configs)],
        "errors": [{"source": src, "error": err} for src, err in sorted(registry.errors.items())],
    })


@bp.get("/v1/configs/<name>")
def show_config(name: str) -> Response:
    registry = get_service().registry
    if name not in registry.configs:
        return error_response(404, f"unknown config {name!r}; this server has: "
                              f"{', '.join(sorted(registry.configs)) or 'none'}", "name",
                              kind="not_found")
    return jsonify(_config_summary(name))


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the worker answers. Deliberately not tied to Prometheus, so an outage of the
    metrics source never gets the judge restarted in a loop."""
    return jsonify({"status": "ok"})


# `/readyz?source=…`: when the metrics source must have answered for the pod to be ready.
SOURCE_REQUIRED, SOURCE_ONCE = "required", "once"


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the configs are valid, every worker booted, and the metrics source answers
    now, or with `?source=once` has answered once since the pod started.

    `source=once` is what the manifests' readinessProbe asks. A Prometheus outage is the same
    for every replica, so tying readiness to it takes every pod out of the Service at once:
    callers then get connection errors instead of a 503 naming the source, the
    PodDisruptionBudget blocks node drains, a rolling update of the judge stalls, and the
    judge's own upstream-error counters cannot be scraped when they matter. Having answered
    once still keeps a pod with a wrong Prometheus URL or token out of the Service, so such a
    rollout of the judge stalls with the old pods serving instead of replacing them."""
    source = request.args.get("source", SOURCE_REQUIRED)
    if source not in (SOURCE_REQUIRED, SOURCE_ONCE):
        return error_response(400, f"source must be {SOURCE_REQUIRED!r} (the default: not ready "
                              f"while the metrics source does not answer) or {SOURCE_ONCE!r} "
                              f"(ready once it has answered since the pod started), not "
                              f"{source!r}", "source")
    service = get_service()
    problems = [f"config {src}: {err}" for src, err in sorted(service.registry.errors.items())]
    if not service.registry.configs:
        problems.append("no analysis configs loaded")
    if source == SOURCE_ONCE and (service.source_answered or source_answered_in_pod()):
        checked = "answered since the pod started; not asked now (source=once)"
    else:
        ok, checked = service.source.ready()
        if ok:
            service.source_answered = True
            mark_source_answered()
        elif source == SOURCE_ONCE:
            problems.append(f"metrics source: has not answered since the pod started: {checked}")
        else:
            problems.append(f"metrics source: {checked}")
    starting = boot_problem()
    if starting:
        problems.append(starting)
    body = {"status": "ok" if not problems else "not ready", "problems": problems,
            "configs": sorted(service.registry.configs), "metrics_source": checked}
    response = jsonify(body)
    response.status_code = 200 if not problems else 503
    return response


@bp.get("/metrics")
def metrics() -> Response:
    payload, content_type = metrics_payload()
    return Response(payload, content_type=content_type)


def _verdict_schema() -> dict[str, Any]:
    return VerdictModel.model_json_schema(by_alias=True,
                                          ref_template="#/components/schemas/{model}")


def openapi_document() -> dict[str, Any]:
    request_schema = AnalysisRequest.model_json_schema(
        ref_template="#/components/schemas/{model}")
    verdict_schema = _verdict_schema()
    components: dict[str, Any] = {}
    for schema in (request_schema, verdict_schema):
        components.update(schema.pop("$defs", {}))
    components["AnalysisRequest"] = request_schema
    components["Verdict"] = verdict_schema
    components["Error"] = {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string"}},
    }

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_of(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": ref(name)}}

    errors = {
        "400": {"description": "Bad request or unknown config; `field` names what to fix.",
                "content": json_of("Error")},
        "401": {"description": "Missing or wrong bearer token (when API tokens are set).",
                "content": json_of("Error")},
        "403": {"description": "The request disables or loosens a check, or sets a var, that "
                "the config locks (`field` names it); or sends inline queries this server "
                "refuses.", "content": json_of("Error")},
        "413": {"description": "Body larger than 256 KiB.", "content": json_of("Error")},
        "415": {"description": "Content-Type is not application/json.",
                "content": json_of("Error")},
        "500": {"description": "Internal error of the judge (never a verdict).",
                "content": json_of("Error")},
        "502": {"description": "The metrics source rejected a query (config bug).",
                "content": json_of("Error")},
        "503": {"description": "The metrics source is unreachable or failing, or every "
                "analysis slot of this worker is busy.", "content": json_of("Error")},
        "504": {"description": "The metrics source did not answer within the analysis "
                "deadline.", "content": json_of("Error")},
    }
    get_errors = {k: v for k, v in errors.items() if k not in ("413", "415")}
    verdict_body = {"description": "An analysis ran; any verdict.", "content": {
        **json_of("Verdict"), "text/plain": {"schema": {"type": "string"}},
        "text/html": {"schema": {"type": "string"}}}}
    verdict_ok = {"200": verdict_body, **errors}
    verdict_get = {"200": verdict_body, **get_errors}
    text = {"text/plain": {"schema": {"type": "string"}}}
    query_params = [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"},
         "description": d} for n, d in (
            ("canary", 'Matchers, e.g. rollouts_pod_template_hash="7d9f"; or canary.<label>'),
            ("stable", "Matchers, or stable.<label>"),
            ("start", "RFC 3339 or unix seconds"), ("end", "RFC 3339 or unix seconds"),
            ("lookback", "Duration, e.g. 10m"), ("step", "Duration, e.g. 60s"),
            ("warmup", "Duration left out at the start, e.g. 2m"),
            ("not_before", "RFC 3339 or unix seconds the judged part may not begin before "
                           "(a Flagger hook's report link carries it)"),
            ("mode", "sequential (the config's default) or fixed"),
            ("alpha", "False-failure rate, e.g. 0.05"),
            ("provider", "app, istio, linkerd or pod: a mesh's own metric names"),
            ("revision", "The canary revision an approval must name"),
            ("metrics", "Per-metric overrides as JSON, as in the POST body"),
            ("format", "text for a plain-text table, html for the report page with a "
                       "chart per check, json (default)"),
            ("expires", "A report link's expiry (unix seconds), signed with it"),
            ("sig", "A report link's signature, its last parameter: with API tokens set, "
                    "the answer's `report` link opens without the token until it expires"))]
    hook_types = ["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
                  "confirm-promotion", "rollback", "post-rollout", "event"]
    return {
        # pydantic writes JSON Schema 2020-12 (anyOf with null, exclusiveMinimum as a
        # number), which is the schema dialect of OpenAPI 3.1, not of 3.0.
        "openapi": "3.1.0",
        "info": {"title": "canary-judge", "version": "1",
                 "description": "Canary analysis for Argo Rollouts and Flagger."},
        "paths": {
            "/v1/analyze": {"post": {
                "summary": "Judge canary vs stable",
                "requestBody": {"required": True, "content": json_of("AnalysisRequest")},
                "responses": verdict_ok}},
            "/v1/analyze/{config}": {"get": {
                "summary": "Judge with a named config; request fields as query parameters",
                "parameters": [{"name": "config", "in": "path", "required": True,
                                "schema": {"type": "string"}}, *query_params],
                "responses": verdict_get}},
            "/v1/gates": {"post": {
                "summary": "The config's deployment gates alone (market hours, approval); "
                           "no metrics queried. For an Argo metric with inconclusiveLimit 0",
                "parameters": [{"name": "action", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["promote", "start"]}}],
                "requestBody": {"required": True, "content": json_of("AnalysisRequest")},
                "responses": {
                    "200": {"description": "gate: open or closed, with the reason",
                            "content": {"application/json": {"schema": {
                                "type": "object", "required": ["gate", "reason", "checks"],
                                "properties": {
                                    "gate": {"type": "string", "enum": ["open", "closed"]},
                                    "reason": {"type": "string"},
                                    "config": {"type": "string"},
                                    "action": {"type": "string"},
                                    "at": {"type": "string"},
                                    "checks": {"type": "array", "items": {"type": "object"}}}}}}},
                    "400": {"description": "Bad request", "content": json_of("Error")},
                    "401": {"description": "Missing or wrong bearer token",
                            "content": json_of("Error")},
                    "403": {"description": "A locked var", "content": json_of("Error")},
                    "413": {"description": "Body larger than 256 KiB",
                            "content": json_of("Error")},
                    "415": {"description": "Content-Type is not application/json",
                            "content": json_of("Error")},
                    "500": {"description": "Internal error", "content": json_of("Error")}}}},
            "/v1/hooks/{type}": {"post": {
                "summary": "Flagger webhook",
                "parameters": [{"name": "type", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": hook_types}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["name", "namespace"],
                    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                   "phase": {"type": "string"}, "checksum": {"type": "string"},
                                   "metadata": {"type": "object", "additionalProperties": {
                                       "type": "string"}}}}}}},
                "responses": {
                    "200": {"description": "Go ahead (meaning depends on the hook type)",
                            "content": text},
                    "400": {"description": "Bad payload or metadata", "content": text},
                    "403": {"description": "Metadata sets a var the config locks",
                            "content": text},
                    "404": {"description": "Unknown hook type", "content": text},
                    "412": {"description": "Do not go ahead; the body is the reason",
                            "content": text},
                    "413": {"description": "Body larger than 256 KiB", "content": text},
                    "415": {"description": "Content-Type is not application/json",
                            "content": text},
                    "500": {"description": "Internal error of the judge", "content": text},
                    "502": {"description": "Metrics source rejected a query", "content": text},
                    "503": {"description": "Metrics source unavailable", "content": text},
                    "504": {"description": "Metrics source timed out", "content": text}}}},
            "/v1/configs": {"get": {"summary": "Known analysis configs and load errors",
                                    "responses": {"200": {"description": "Configs"}}}},
            "/v1/configs/{name}": {"get": {
                "summary": "One config",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The config"},
                              "404": {"description": "Unknown", "content": json_of("Error")}}}},
            "/healthz": {"get": {"summary": "Liveness",
                                 "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {
                "summary": "Readiness: configs valid, workers booted, metrics source reachable",
                "parameters": [{
                    "name": "source", "in": "query", "required": False,
                    "description": "`once`: ready once the metrics source has answered since "
                                   "the pod started, whatever it does now (the manifests' "
                                   "readinessProbe)",
                    "schema": {"type": "string", "enum": [SOURCE_REQUIRED, SOURCE_ONCE],
                               "default": SOURCE_REQUIRED}}],
                "responses": {"200": {"description": "Ready"},
                              "400": {"description": "Unknown `source`",
                                      "content": json_of("Error")},
                              "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of the service",
                                 "responses": {"200": {"description": "Exposition format"}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3"}}}},
        },
        "components": {"schemas": components},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
