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

A thread that answered on a kept-alive connection also waits a moment (`LINGER_SECONDS`) for
that connection's next request and serves it itself. gthread hands every finished connection
back to its event loop (a byte through a pipe to wake the main thread, which registers the
socket with its poller, wakes again when the next request arrives and submits it to the
pool), three thread hand-offs under one interpreter lock per request: /healthz over a kept
connection took 0.78 ms from a bare socket, 0.44-0.58 ms with the wait, and one analysis
~0.3 ms less (two rounds each, idle machine). It pays when requests follow each other on a
connection (a controller polling many rollouts over a few pooled connections; the benchmark's
callers); a caller polling once a minute finds the thread gone back to the pool, as before.
Only while at most half the worker's threads are in use, so the threads left for other
connections and the probes are never fewer than with gthread's own pool; not over TLS, whose
buffered bytes a wait on the socket cannot see.

Reading a request has a deadline (`webhook.read_deadline`): a client trickling its request
cannot hold a thread.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from webhook.read_deadline import ReadDeadlines, wrap_app

# Per connection the worker already holds; capped so a busy worker still accepts promptly
# when every worker is as busy. A millisecond outlasts the scheduling jitter between woken
# workers on a loaded node (measured: tests/test_gunicorn_edges.py, bench/latency.py).
DEFER_PER_CONNECTION_SECONDS = 0.001
DEFER_MAX_SECONDS = 0.005
# Long enough for a caller sending its next request at once, short enough that a thread
# waiting for nothing is back in the pool before anyone misses it.
LINGER_SECONDS = 0.05


class SpreadingThreadWorker(ThreadWorker):
    """gthread, accepting least-connections first (see the module docstring)."""

    def accept(self, listener: Any) -> None:
        if self.nr_conns:
            time.sleep(min(self.nr_conns * DEFER_PER_CONNECTION_SECONDS, DEFER_MAX_SECONDS))
        super().accept(listener)  # EAGAIN (another worker took it) is ignored there

    def init_process(self) -> None:
        self._in_use = 0  # threads handling a request or waiting on their connection
        self._in_use_lock = threading.Lock()
        self._deadlines = ReadDeadlines()
        self._deadlines.start()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = wrap_app(self.wsgi, self._deadlines)

    def _handle_one(self, conn: Any) -> Any:
        """gthread's handling of one request, its reading (and writing) under a deadline."""
        self._deadlines.arm(conn.sock)
        try:
            return super().handle(conn)
        finally:
            self._deadlines.release()

    def handle(self, conn: Any) -> Any:
        """gthread's handling of one request, then of the connection's next ones as long as
        they come within LINGER_SECONDS (see the module docstring)."""
        with self._in_use_lock:
            self._in_use += 1
        try:
            keep = self._handle_one(conn)
            while keep is True and self._may_linger(conn):
                if not conn.parser.unreader.buf.getvalue():  # no pipelined request waiting
                    waiting = select.poll()  # not select(): sockets past fd 1024
                    waiting.register(conn.sock, select.POLLIN)
                    if not waiting.poll(LINGER_SECONDS * 1000):
                        break
                    if not self.alive:
                        break  # the event loop answers it, or closes it at shutdown
                keep = self._handle_one(conn)
            return keep
        finally:
            with self._in_use_lock:
                self._in_use -= 1

    def _may_linger(self, conn: Any) -> bool:
        return (self.alive and not self.cfg.is_ssl and not getattr(conn, "is_http2", False)
                and self._in_use <= self.cfg.threads // 2)
