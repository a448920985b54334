"""What every blueprint shares: the worker's `Service`, error bodies, validation messages, the
bearer-token check and the signed report links. Blueprints import this module, never
`webhook.app` (which imports them).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Response, current_app, jsonify, request
from pydantic import ValidationError

from webhook.render import readable
from webhook.report import signing
from webhook.service import Service
from webhook.settings import Settings


def get_service() -> Service:
    """The worker's `Service`, built by `create_app`."""
    return current_app.extensions["canary_judge"]


_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
          500: "internal", 503: "unavailable", 504: "timeout"}


def error_response(status: int, message: str, field: str | None = None,
                   kind: str | None = None) -> Response:
    body: dict[str, Any] = {"error": kind or _KINDS.get(status, "error"),
                            "message": readable(message)}
    if field:
        body["field"] = readable(field)
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
    field = _error_field(first, prefix)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field; check its spelling against /openapi.json"
    elif first["type"] == "missing":
        # every field missing beside it at once: "canary: required (and 1 more)" was fixed
        # and refused again for stable
        missing = [_error_field(e, prefix) for e in errors if e["type"] == "missing"
                   and e["loc"][:-1] == first["loc"][:-1]]
        msg = "required field is missing" if len(missing) == 1 else "required fields are missing"
        return _with_more(f"{', '.join(missing)}: {msg}", len(errors) - len(missing)), field
    return _with_more(f"{field}: {msg}", len(errors) - 1), field


def _error_field(error: Any, prefix: str) -> str:
    """The field one pydantic error is about, as the caller spells it (`canary.pod`)."""
    loc = [str(p) for p in error["loc"]
           if not str(p).startswith(("function-", "str", "dict[", "list["))]
    where = (error.get("ctx") or {}).get("where")
    if isinstance(where, str):  # a check that names a field below its own (canary.pod)
        loc = [*loc[:-1], *where.split(".")] if loc else where.split(".")
    return prefix + ".".join(loc) if loc else (prefix.rstrip(".") or "body")


def _with_more(message: str, more: int) -> str:
    return f"{message} (and {more} more)" if more > 0 else message


def bearer_ok(settings: Settings) -> bool:
    if not settings.api_tokens:
        return True
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 11.1)
        return False
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return any(hmac.compare_digest(given, t.get_secret_value().encode())
               for t in settings.api_tokens)


def unauthorized(why: str = "") -> Response:
    """401 for a missing or wrong token, with the challenge RFC 9110 requires of a 401."""
    response = error_response(401, "missing or wrong bearer token" + why, kind="unauthorized")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _link_key(settings: Settings) -> bytes | None:
    return signing.link_key(signing.tokens_of(settings.api_tokens))


def report_link(url: str, config: str, settings: Settings) -> str:
    """A report link as answers carry it: signed to open without the token when tokens are
    set (`webhook.report.signing`)."""
    return signing.sign(url, config, _link_key(settings), settings.report_link_hours)


def report_link_problem(config: str, settings: Settings) -> str | None:
    """Why this GET is not a signed report link that may open without the token, or None."""
    return signing.check(config, request.environ.get("QUERY_STRING", ""), _link_key(settings),
                         settings.report_link_hours)
