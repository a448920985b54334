"""`/v1/analyze`: the Argo Rollouts `web` provider and curl.

Argo reads 2xx bodies with a JSONPath and treats any non-2xx as a measurement Error (retried,
never a verdict), so: 200 carries the complete verdict whatever it is; 400 means the request is
wrong; 502/503/504 mean the metrics source failed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from webhook.analysis import AnalysisRequestError
from webhook.api.answer import answer_body
from webhook.api.body import BodyError, json_object, json_value, read_body
from webhook.api.common import (
    bearer_ok,
    error_response,
    get_service,
    report_link,
    report_link_problem,
    unauthorized,
    validation_message,
)
from webhook.models import AnalysisRequest, parse_time, query_time
from webhook.render import error_text, printable, verdict_text
from webhook.report import signing
from webhook.report.page import error_html, report_html
from webhook.report.query import report_url
from webhook.resolve import side_selectors
from webhook.sources import SourceError

bp = Blueprint("analyze", __name__)

_WINDOW_PARAMS = ("start", "end", "lookback", "step", "warmup", "not_before")
_TIME_PARAMS = ("start", "end", "not_before")
_SCALAR_PARAMS = ("mode", "alpha", "provider", "traffic_split", "revision")


MEMO_SIZE = 512  # recent bodies whose parsed request is remembered: a few per rollout polled
MEMO_BODY = 8192  # bytes beyond which a body is parsed afresh every time (bounds the memo)
_WHAT = "a JSON object (the analysis request)"

_FORMATS = {"json": "application/json", "text": "text/plain", "html": "text/html"}
_JSON_ACCEPTS = frozenset(("", "*/*", "application/json"))
# Inline styles and SVG only: nothing may load or run, whatever a label value holds.
_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
             "frame-ancestors 'none'")


def _wanted_format() -> str:
    """`?format=` wins; else the Accept header, JSON unless text or HTML is preferred to it
    (Argo and curl send no preference or */*; a browser prefers text/html). A format it does
    not have is an AnalysisRequestError: `format=txt` answered JSON without a word."""
    environ = request.environ  # read directly: Argo's polls send no query and no preference
    asked = request.args.get("format") if environ.get("QUERY_STRING") else None
    if asked in _FORMATS:
        return asked
    if asked is not None:
        raise AnalysisRequestError(f"format: {asked[:40]!r} is not a format; use "
                                   f"{', '.join(_FORMATS)}", "format")
    if environ.get("HTTP_ACCEPT", "*/*") in _JSON_ACCEPTS:  # Argo, Flagger, curl: at once
        return "json"
    accept = request.accept_mimetypes
    best = accept.best_match(list(_FORMATS.values()))
    for name, mime in _FORMATS.items():
        if best == mime and name != "json" and accept[mime] > accept["application/json"]:
            return name
    return "json"


def _caller() -> str:
    agent = request.environ.get("HTTP_USER_AGENT", "")  # the User-Agent header
    if agent.startswith("Go-http-client") or "argo" in agent.lower():
        return "argo"
    if agent.startswith("curl"):
        return "curl"
    return "api"


def _respond(req: AnalysisRequest, route: str) -> Response:
    service = get_service()
    try:
        wanted = _wanted_format()
    except AnalysisRequestError as exc:
        return error_response(400, exc.message, exc.field)
    try:
        # Argo's analysis decides promotion: deployment gates (market hours, approvals) apply.
        result = service.analyze(req, caller=_caller(), route=route, gate_action="promote",
                                 traces=wanted != "json")
    except AnalysisRequestError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except SourceError as exc:
        return error_response(exc.status, exc.message, kind=f"metrics_source_{exc.kind}")
    body = answer_body(result)
    # the report pins the end as the answer prints it (to the microsecond); a whole second,
    # as every default window's end is, prints and parses back exactly
    end = result.end if float(result.end).is_integer() else parse_time(body["window"]["end"])
    settings = service.settings
    base = settings.public_url or ""
    body["report"] = report_link(report_url(req, end, base), req.config, settings)
    if wanted == "json":  # Argo's and Flagger's polls: the body is the whole answer
        return jsonify(body)
    # what was compared, as the source was asked: the on-call opening a link from an event
    # sees which versions the verdict is about without reading the URL
    sides = side_selectors(req, service.language)
    if wanted == "text":
        return Response(verdict_text(body, result.checks, sides), mimetype="text/plain")
    links = {fmt: report_link(report_url(req, end, base, fmt), req.config, settings)
             for fmt in ("json", "text")}
    response = Response(report_html(body, result.checks, links, sides), mimetype="text/html")
    response.headers["Content-Security-Policy"] = _PAGE_CSP
    return response


def _error_as_asked(response: Response) -> Response:
    """An error answer in the format the caller asked for: the on-call running
    `curl '…?format=text'` reads a few lines, a browser opening a report link reads a page;
    Argo and Flagger never ask either and keep the JSON (and its status code, which is what
    makes their measurement an Error). A `format` this route does not have stays JSON: the
    400 saying so is about the format itself."""
    try:
        wanted = _wanted_format()
    except AnalysisRequestError:
        return response
    body = response.get_json(silent=True) if wanted != "json" else None
    if not isinstance(body, dict) or "message" not in body:
        return response
    status = f"{response.status_code} {body.get('error', 'error')}"
    if wanted == "text":
        response.set_data(error_text(status, str(body["message"]), body.get("field")))
        response.mimetype = "text/plain"
    else:
        response.set_data(error_html(status, str(body["message"]), body.get("field")))
        response.mimetype = "text/html"
        response.headers["Content-Security-Policy"] = _PAGE_CSP
    return response


@bp.after_request
def not_stored(response: Response) -> Response:
    """Every answer is the verdict as of its own request: a "now" window judges new data at
    each poll, and a signed report link's page is for whoever holds that link. So no cache
    (an Ingress's, a browser's) may keep one and hand it out again; and since the format
    follows the Accept header, a cache that stored one anyway must not give the page to curl
    or the JSON to a browser. The text and JSON answers repeat label values as sent
    (`"><script>…`), and a signed link opens them in a browser too: `nosniff` keeps a browser
    to the type given, so neither is ever read as a page (only the page has a CSP).

    Also applied by the app's error handler to a 404 or 405 under /v1/analyze, which no
    route of this blueprint answers: they are /v1/analyze's answers all the same."""
    if response.status_code >= 400 and response.mimetype == "application/json":
        response = _error_as_asked(response)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.vary.add("Accept")
    return response


_CONFIG_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_BODY_SHAPE = '"canary": …, "stable": …}'


def wrong_route_message(method: str, path: str, config: str | None) -> str | None:
    """What a 404 or 405 under /v1/analyze says, or None elsewhere (the generic answer).

    The two forms differ in where the config goes (the POST's body, the GET's path), and
    people mix them: `POST /v1/analyze/http` was told only "use GET or HEAD", a path below
    that only "no such route". Each now names the call that works; a config name is repeated
    only when it is one (the path is the caller's text)."""
    if path == "/v1/analyze":
        named = config if config and _CONFIG_NAME.fullmatch(config) else "<config>"
        return (f"{method} is not allowed here; use POST; or GET "
                f"/v1/analyze/{named}?canary=…&stable=…")
    if not path.startswith("/v1/analyze/"):
        return None
    rest = path.removeprefix("/v1/analyze/")
    shown = printable(path[:120])
    if _CONFIG_NAME.fullmatch(rest):
        return (f"{method} {shown}: the config goes in the body: POST /v1/analyze with "
                f'{{"config": "{rest}", {_BODY_SHAPE}, or GET {shown}?canary=…&stable=…')
    return (f'{method} {shown}: no such route; use POST /v1/analyze with {{"config": …, '
            f"{_BODY_SHAPE}, or GET /v1/analyze/<config>?canary=…&stable=…")


@bp.post("/v1/analyze")
def analyze_post() -> Response:
    if not bearer_ok(get_service().settings):
        return unauthorized()
    try:
        # the request itself, not Flask's proxy: read_body reads several of its attributes
        req = analysis_request(read_body(request._get_current_object()))  # type: ignore[attr-defined]
    except BodyError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except ValidationError as exc:
        message, field = validation_message(exc)
        return error_response(400, message, field)
    return _respond(req, "POST /v1/analyze")


def analysis_request(raw: bytes) -> AnalysisRequest:
    """The request a POSTed body holds, or BodyError / ValidationError.

    Argo and Flagger send the same bytes at every poll of a rollout, and parsing them is a pure
    function of the bytes, so the request parsed from each of the last MEMO_SIZE bodies (of at
    most MEMO_BODY bytes) is remembered: a repeated poll neither parses nor validates again,
    and the analysis finds what it resolved from the request last time (`derived`). A body
    that fails raises every time; nothing is remembered of it."""
    if len(raw) > MEMO_BODY:
        return _parsed(raw)
    return _parsed_remembered(raw)


def _parsed(raw: bytes) -> AnalysisRequest:
    return AnalysisRequest.model_validate(json_object(raw, _WHAT))


_parsed_remembered = lru_cache(maxsize=MEMO_SIZE)(_parsed)


def request_from_query(config: str, args: Any) -> AnalysisRequest:
    """GET form: `canary=app="web"` or `canary.app=web`, `vars.x=…`, window fields flat."""
    data: dict[str, Any] = {"config": config, "window": {}, "vars": {}}
    unknown = []
    for key in args:
        value = args.get(key)
        if len(given := args.getlist(key)) > 1:
            # `alpha=0.01&alpha=0.3`: the first was used without a word, where a proxy or a
            # person reading the link may take the last
            raise AnalysisRequestError(f"{key}: given {len(given)} times; give it once", key)
        if key == "format" or key in signing.PARAMS:  # the signed link's proof, checked apart
            continue
        if key in ("canary", "stable"):
            data[key] = value
        elif key.startswith(("canary.", "stable.")):
            side, _, label = key.partition(".")
            existing = data.setdefault(side, {})
            if not isinstance(existing, dict):
                raise AnalysisRequestError(f"{side}: give either {side}=<matchers> or "
                                           f"{side}.<label>=<value>, not both", side)
            existing[label] = value
        elif key.startswith("vars."):
            data["vars"][key[5:]] = value
        elif key in _TIME_PARAMS:
            try:
                data["window"][key] = query_time(value)
            except ValueError as exc:
                raise AnalysisRequestError(f"window.{key}: {exc}", f"window.{key}") from exc
        elif key in _WINDOW_PARAMS:
            data["window"][key] = value
        elif key in _SCALAR_PARAMS:
            data[key] = value
        elif key == "metrics":
            try:
                data["metrics"] = json_value(value.encode("utf-8", "surrogatepass"),
                                             "the same list or object as the POST body's metrics")
            except BodyError as exc:
                raise AnalysisRequestError(f"metrics: {exc.message.removeprefix('body: ')}",
                                           "metrics") from exc
        else:
            unknown.append(key)
    if unknown:
        raise AnalysisRequestError(
            f"unknown query parameter(s) {', '.join(sorted(unknown))}; use canary, stable, "
            "canary.<label>, stable.<label>, vars.<name>, start, end, lookback, step, warmup, "
            "not_before, mode, alpha, provider, traffic_split, revision, metrics (JSON), "
            "format", unknown[0])
    return AnalysisRequest.model_validate(data)


@bp.get("/v1/analyze/<config>")
def analyze_get(config: str) -> Response:
    settings = get_service().settings
    if not bearer_ok(settings):
        # a report link opens without the token when it is signed for exactly this query
        problem = report_link_problem(config, settings)
        if problem is not None:
            return unauthorized("" if problem == signing.UNSIGNED else
                                f"; as a report link: {problem} (every answer carries a "
                                "fresh link)")
    try:
        req = request_from_query(config, request.args)
    except AnalysisRequestError as exc:
        return error_response(400, exc.message, exc.field)
    except ValidationError as exc:
        message, field = validation_message(exc)
        return error_response(400, message, field)
    return _respond(req, f"GET /v1/analyze/{req.config}")
