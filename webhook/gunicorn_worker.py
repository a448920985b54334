"""gunicorn's threaded worker, taking new connections least-loaded first.

A kept-alive connection is served by the worker that accepted it for as long as it lives, and
every worker is woken when a connection arrives: whichever runs first takes it. When callers
connect at once (a controller starting its analyses, a load balancer's pool filling), the
first worker to run took them all: with 8 callers polling back to back on 4 workers they sat
on one or two workers in each of 6 runs of `bench/latency.py`, all 8 on one in 3, served on
one interpreter lock while three workers idled. Here a worker that already holds connections
waits a moment before it accepts, longer the more it holds, so a worker holding fewer takes
the connection first; when none does, the waiting one accepts it as before. The wait is paid
only when a connection opens, never per request on a kept-alive one. A caller opening a
connection per request pays it each time, in the worker's event loop: 8 such callers of
`/v1/analyze` got 141-181 analyses/s in four runs against plain gthread's 164-168 in two,
within the run-to-run spread, with the same p99 (4 workers, 2 cores).
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# Per connection the worker already holds; capped so a busy worker still accepts promptly
# when every worker is as busy. A millisecond outlasts the scheduling jitter between woken
# workers on a loaded node (measured: tests/test_gunicorn_edges.py, bench/latency.py).
DEFER_PER_CONNECTION_SECONDS = 0.001
DEFER_MAX_SECONDS = 0.005


class SpreadingThreadWorker(ThreadWorker):
    """gthread, accepting least-connections first (see the module docstring)."""

    def accept(self, listener: Any) -> None:
        if self.nr_conns:
            time.sleep(min(self.nr_conns * DEFER_PER_CONNECTION_SECONDS, DEFER_MAX_SECONDS))
        super().accept(listener)  # EAGAIN (another worker took it) is ignored there
