"""gunicorn's access log as one valid JSON object per line.

gunicorn only escapes double quotes in the values it substitutes into `access_log_format`; a
path or User-Agent holding a newline or another control character (`/v1/analyze%0a{...}`)
would split a line or forge a second one. Here every string value is JSON-escaped instead.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import glogging


class JsonAtoms(glogging.SafeAtoms):
    """The substitution values, each string escaped as the inside of a JSON string when the
    format reads it: gunicorn offers ~50 atoms per request (every header and environ entry),
    the format uses 7, and escaping them all cost more than the rest of the access line."""

    def __init__(self, atoms: dict[str, Any]) -> None:
        dict.__init__(self, atoms)

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return json.dumps(value)[1:-1] if isinstance(value, str) else value


class JsonAccessLogger(glogging.Logger):
    atoms_wrapper_class = JsonAtoms
