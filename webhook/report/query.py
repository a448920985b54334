"""The GET query that recomputes an analysis: the report link in every answer.

A controller's poll usually names no end ("up to now"); the link pins the end the poll used,
so the page shows the decision as it was made, not whatever the data says an hour later.
Everything else is the request as sent, so the start found from the data, the stable's
history and the warm-up come out the same.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from pydantic import TypeAdapter

from webhook.models import AnalysisRequest

_METRICS = TypeAdapter(object)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def query_params(request: AnalysisRequest, end: float) -> list[tuple[str, str]]:
    """The request as GET query parameters, with `end` fixed."""
    params: list[tuple[str, str]] = []
    for side in ("canary", "stable"):
        value = getattr(request, side)
        if isinstance(value, str):
            params.append((side, value))
        else:
            params += [(f"{side}.{label}", v) for label, v in value.items()]
    params += [(f"vars.{k}", v) for k, v in request.vars.items()]
    w = request.window
    for name in ("start", "lookback", "step", "warmup", "not_before"):
        value = getattr(w, name)
        if value is not None:
            params.append((name, _seconds(value)))
    if w.end is not None:
        params.append(("end", _seconds(w.end)))
    elif w.start is None or w.lookback is None:  # start + lookback already fix the end
        params.append(("end", _seconds(end)))
    for name in ("mode", "alpha", "provider", "traffic_split", "revision"):
        value = getattr(request, name)
        if value is not None:
            params.append((name, str(value)))
    if request.metrics is not None:
        dumped = _METRICS.dump_python(request.metrics, mode="json", exclude_none=True,
                                     exclude_unset=True)
        params.append(("metrics", json.dumps(dumped, separators=(",", ":"), sort_keys=True)))
    return params


def report_url(request: AnalysisRequest, end: float, base: str = "",
               fmt: str = "html") -> str:
    """`base`/v1/analyze/<config>?…&format=`fmt` for this request.

    Everything but the pinned end is the request's: its text before and after the end is
    kept with the request (`AnalysisRequest.derived`), so a request remembered between polls
    (`webhook.api.analyze`) encodes only the end again."""
    key = ("report_url", base, fmt)
    parts = request.derived.get(key)
    if parts is None:
        parts = request.derived[key] = _url_parts(request, base, fmt)
    head, tail = parts
    if tail is None:  # the request fixes the end itself
        return head
    return head + urlencode((("end", _seconds(end)),), quote_via=quote) + tail


_END = -1.0  # a stand-in end: `query_params` puts the pinned end where this one is


def _url_parts(request: AnalysisRequest, base: str, fmt: str) -> tuple[str, str | None]:
    """The link's text before the pinned end and after it (None: no end is pinned)."""
    params = [*query_params(request, _END), ("format", fmt)]
    prefix = f"{base.rstrip('/')}/v1/analyze/{quote(request.config)}?"
    pinned = ("end", _seconds(_END))
    if pinned not in params or request.window.end is not None:
        return prefix + urlencode(params, quote_via=quote), None
    at = params.index(pinned)
    before = urlencode(params[:at], quote_via=quote)
    after = urlencode(params[at + 1:], quote_via=quote)
    return prefix + (before + "&" if before else ""), "&" + after
