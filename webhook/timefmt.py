"""Times as the judge writes them, always in UTC: for callers that parse them and for people
who compare them with a clock.

One module, so that an answer's window, a refusal, a reason and a report link print the same
instant the same way (four modules had each written their own, two of them identical).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=1024)  # an answer's window and its audit line print the same instants
def rfc3339(ts: float) -> str:
    """RFC 3339 with a `Z` and the instant's fraction, if any: as Argo and Flagger print times,
    and exact for a caller that passes it back (`window.end` of a decision replayed)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def rfc3339_seconds(ts: float) -> str:
    """RFC 3339 to the second (`2026-12-03T10:47:31Z`): for a refusal or a note a person reads
    next to "it is now …", where a fraction is noise."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock(ts: float) -> str:
    """A time of day (`10:47:31Z`) for reasons whose window, printed beside them, carries the
    date."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%SZ")
