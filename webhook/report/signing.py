"""Report links that open without the bearer token: signed, expiring, one report each.

With `CANARY_JUDGE_API_TOKENS` set every analysis needs the token, and a browser cannot send
one: the link an answer carries (Flagger copies it into the Canary's events) opened to a 401,
at the moment a person wants to see why a rollout stopped. So the link carries its own proof:
an HMAC-SHA256 (RFC 2104) of the config and the link's exact query, expiry included, keyed by
the API tokens. Every replica has the tokens, so any replica accepts a link any replica made,
and changing the tokens voids the links made before. Whoever holds a link can load that one
report (in any format, since the format is part of the signed query) until it expires; any
other parameter, a POST, or another config needs the token. The link lives where the answer
lives (the Canary's events, the AnalysisRun), so `CANARY_JUDGE_REPORT_LINK_HOURS` bounds how
long a leaked one works, and 0 turns signing off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Sequence
from functools import lru_cache

from webhook.timefmt import rfc3339_seconds

EXPIRES = "expires"  # unix seconds after which the link stops working
SIGNATURE = "sig"  # always the link's last parameter: it signs everything before it
PARAMS = frozenset((EXPIRES, SIGNATURE))
UNSIGNED = "no signature"  # `check`'s answer for a query that does not claim to be a link
_CONTEXT = b"canary-judge report link\x00"


@lru_cache(maxsize=8)
def link_key(tokens: tuple[str, ...]) -> bytes | None:
    """The HMAC key for `tokens` (None without tokens: links need no proof then). Derived,
    not a token itself, and the same whatever the tokens' order."""
    if not tokens:
        return None
    material = b"\x00".join(sorted(t.encode("utf-8", "surrogateescape") for t in tokens))
    return hashlib.sha256(_CONTEXT + material).digest()


def _mac(key: bytes, config: str, query: str) -> str:
    digest = hmac.new(key, f"{config}\n{query}".encode("utf-8", "surrogateescape"),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(url: str, config: str, key: bytes | None, hours: float,
         now: float | None = None) -> str:
    """`url` (a report link: `…/v1/analyze/<config>?…`) with its expiry and signature
    appended; unchanged without a key or with `hours` 0. The expiry is rounded up to a whole
    minute, so the polls of one minute get the same link."""
    if key is None or hours <= 0:
        return url
    now = time.time() if now is None else now
    expires = int(math.ceil((now + hours * 3600) / 60) * 60)
    head, _, query = url.partition("?")
    query += f"&{EXPIRES}={expires}"
    return f"{head}?{query}&{SIGNATURE}={_mac(key, config, query)}"


def check(config: str, raw_query: str, key: bytes | None, hours: float,
          now: float | None = None) -> str | None:
    """Why the raw query string of `GET /v1/analyze/<config>` does not prove a signed
    link, or None when it does (a link made by `sign` with the same key, unexpired)."""
    if key is None or hours <= 0:
        return "report links are not signed here"
    query, sep, given = raw_query.rpartition(f"&{SIGNATURE}=")
    if not sep:
        return UNSIGNED
    _, sep, expires = query.rpartition(f"&{EXPIRES}=")
    if not sep or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return "no expiry"
    if not hmac.compare_digest(given.encode("ascii", "replace"),
                               _mac(key, config, query).encode()):
        return "the signature does not match this report"
    now = time.time() if now is None else now
    if int(expires) < now:
        return f"the report link expired at {rfc3339_seconds(int(expires))}"
    if int(expires) > now + hours * 3600 + 60:  # made when links lived longer
        return "the report link outlives CANARY_JUDGE_REPORT_LINK_HOURS"
    return None


def tokens_of(secrets: Sequence[object]) -> tuple[str, ...]:
    """The tokens' values from settings' SecretStr list (a hashable key for `link_key`)."""
    return tuple(s.get_secret_value() for s in secrets)  # type: ignore[attr-defined]
