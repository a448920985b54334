"""gunicorn's access log as one valid JSON object per line.

gunicorn only escapes double quotes in the values it substitutes into `access_log_format`; a
path or User-Agent holding a newline or another control character (`/v1/analyze%0a{...}`)
would split a line or forge a second one. Here every string value is JSON-escaped instead.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import glogging

# The line gunicorn_conf.py configures: the 7 atoms it reads are all this module provides.
ACCESS_LOG_FORMAT = (
    '{"event":"access","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"bytes":"%(B)s","duration_ms":%(M)s,"agent":"%(a)s"}'
)


class JsonAtoms(glogging.SafeAtoms):
    """The substitution values, each string escaped as the inside of a JSON string when the
    format reads it."""

    def __init__(self, atoms: dict[str, Any]) -> None:
        dict.__init__(self, atoms)

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return json.dumps(value)[1:-1] if isinstance(value, str) else value


class JsonAccessLogger(glogging.Logger):
    atoms_wrapper_class = JsonAtoms

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
              ) -> dict[str, Any]:
        """Only the 7 atoms `ACCESS_LOG_FORMAT` reads, each as gunicorn computes it. gunicorn
        builds ~50 per request (every request and response header and environ entry, a
        formatted date, the Basic-auth user) whatever the format uses: that was ~3/4 of the
        access line's cost. Another format (an operator's `--access-logformat`) gets them all."""
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        return {
            "h": environ.get("REMOTE_ADDR", "-"), "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"), "s": status, "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + int(request_time.microseconds / 1000),
            "a": environ.get("HTTP_USER_AGENT", "-"),
        }
