"""Reading a POSTed body as strict JSON, with every refusal a clear 4xx.

Python's `json` accepts `NaN`, `Infinity` and `1e999` (which become floats no JSON reader can
send back), recurses once per nesting level (10,000 levels crash a worker) and lets lone UTF-16
surrogates (`"\\ud800"`) through into strings that cannot be encoded again. None of that may
reach the analysis. The Content-Type must say JSON: a browser can post `text/plain` to any
origin without a CORS preflight, so accepting it would let any web page drive the judge.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_TYPES = ("application/json",)


class BodyError(ValueError):
    """A body we refuse; `status` is 400, 413 or 415 and `field` names what to fix."""

    def __init__(self, message: str, field: str = "body", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def _is_json_type(mimetype: str) -> bool:
    return mimetype in _JSON_TYPES or (mimetype.startswith("application/")
                                       and mimetype.endswith("+json"))


def _too_deep(raw: bytes) -> bool:
    """Whether arrays/objects nest deeper than MAX_DEPTH. Every body Argo or Flagger sends
    opens fewer brackets than that in all, which bounds its depth without a scan."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    return _depth(raw) > MAX_DEPTH


def _depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects, strings skipped; a linear scan, no recursion."""
    stripped = _STRING.sub(b'""', raw)
    codes = np.frombuffer(stripped, dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(codes, (ord("]"), ord("}"))).astype(np.int32))
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(name: str) -> Any:
    raise BodyError(f"body: {name} is not JSON; send numbers as finite numbers or strings")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice (`"alpha": 0.01, "alpha": 0.3`) is ambiguous: JSON leaves
    it to the reader, Python's keeps the last silently, and a proxy or policy check in front of
    the judge may read the first. Refused, naming the key."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        shown = key[:40].encode("utf-8", "backslashreplace").decode()
        raise BodyError(f"body: key {shown!r} appears twice in one object; send it once",
                        shown or "body")
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"body: the number {text[:40]} is out of range")
    return value


def _check_strings(value: Any, path: str) -> None:
    """Every key and string must be encodable text (no lone surrogates)."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            _encodable(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                _encodable(key, f"{where}.{key}" if where else "body key")
                stack.append((child, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = where.encode("utf-8", "backslashreplace").decode() or "body"
        raise BodyError(f"{shown}: contains a lone UTF-16 surrogate (e.g. \\ud800); send "
                        "valid Unicode text", shown) from None


def _read_upto(stream: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(min(65536, size - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_json_object(request: Request, what: str = "a JSON object") -> dict[str, Any]:
    """The body as a dict, or BodyError. `what` describes the expected object for messages."""
    return json_object(read_body(request), what)


def read_body(request: Request) -> bytes:
    """The raw body of a JSON request, or BodyError (415 for another Content-Type, 413 past the
    size limit)."""
    if not _is_json_type(request.mimetype or ""):
        sent = request.mimetype or "no Content-Type"
        raise BodyError(
            f"body: Content-Type must be application/json (got {sent}); with curl add "
            "-H 'Content-Type: application/json' (or use --json), with Argo use jsonBody",
            "Content-Type", status=415)
    limit = request.max_content_length
    too_large = BodyError("body: request body too large (max 256 KiB)", status=413)
    try:
        if (request.content_length is None and limit is not None
                and request.environ.get("wsgi.input_terminated")):
            # chunked: Werkzeug would cut the body at the limit without a word; read one
            # byte past it from the server's own decoded stream to know
            raw = _read_upto(request.environ["wsgi.input"], limit + 1)
        else:
            raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large from None
    if limit is not None and len(raw) > limit:
        raise too_large
    return raw


def json_object(raw: bytes, what: str = "a JSON object") -> dict[str, Any]:
    """A raw body as a dict, or BodyError: a pure function of the bytes (callers may remember
    its result per body)."""
    payload = json_value(raw, what)
    if not isinstance(payload, dict):
        raise BodyError(f"body: expected {what}")
    return payload


def json_value(raw: bytes, what: str = "a JSON object") -> Any:
    """Any JSON value read as strictly as a body (the GET form's `metrics` parameter too: a
    few thousand `[` there crashed the parser's recursion, a 500), or BodyError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body: not UTF-8 text") from None
    if _too_deep(raw):
        raise BodyError(f"body: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        payload = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                             object_pairs_hook=_unique_keys)
    except BodyError:
        raise
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "unreadable"
        raise BodyError(f"body: not valid JSON ({detail}); expected {what}") from None
    if b"\\u" in raw:  # strictly decoded UTF-8 holds no surrogate: only a \u escape can
        _check_strings(payload, "")
    return payload
