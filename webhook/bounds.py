"""Bounds shared by the settings, the configs, the requests and their schema: its own module,
free of every other import, because `webhook.configs` imports the query language and so the
settings (an import of `webhook.configs` from `webhook.settings` is a cycle), and the request
models that show a bound in /openapi.json cannot import the analysis that enforces it.
"""

from __future__ import annotations

# The smallest alpha a check may be judged at (a server's default, a config's, a request's):
# below it the judges' 1/alpha and alpha/2 leave the floats (alpha 5e-324 was a
# ZeroDivisionError, a 500 on every analysis), and no data could ever reach such evidence
# anyway.
MIN_ALPHA = 1e-12

# Prometheus answers at most 11,000 points per series and query (Thanos and Mimir the same);
# past it the query is refused, and the caller's choice of step came back as the source's 502.
MAX_QUERY_POINTS = 11_000
