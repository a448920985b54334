"""A deadline on reading each request, so a caller sending slowly cannot hold a worker thread.

gunicorn's gthread waits for a connection's first bytes on its event loop, then hands the
connection to a thread that reads the rest of the request (headers, then the body, through
the app) with blocking reads and no timeout. A client that sends one byte and stops, or
trickles a byte every few seconds, kept that thread forever: measured, 8 such connections on a
worker of 4 threads left /healthz unanswered (every probe timed out after 5 s), so a few dozen
sockets from anything that can reach the port took the judge down and failed its liveness
probe. Argo and Flagger send a request of a few hundred bytes at once.

So a thread reading a request has `CANARY_JUDGE_REQUEST_READ_SECONDS` (10) to read all of it,
headers and body (gthread's own wait of up to 5 s for a new connection's first bytes included);
past that a watchdog shuts the socket down, which ends the blocked read (gunicorn sees the
client gone and closes the connection). The body is read here, before the app runs, bounded by
the app's own size limit, and the deadline is lifted while the app computes the answer (an
analysis is bounded by its own deadline); it applies again while the answer is written, so a
client that stops reading it cannot hold the thread either.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

READ_SECONDS_ENV = "CANARY_JUDGE_REQUEST_READ_SECONDS"
DEFAULT_READ_SECONDS = 10.0
_TICK_SECONDS = 0.25


class ReadDeadlines:
    """The sockets of the threads now reading a request (or writing an answer), each with
    the time its thread must be done by; a daemon thread shuts down any socket past its time."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds if seconds is not None else float(
            os.environ.get(READ_SECONDS_ENV) or DEFAULT_READ_SECONDS)
        self._lock = threading.Lock()
        self._by_thread: dict[int, tuple[socket.socket, float | None]] = {}
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            threading.Thread(target=self._watch, name="read-deadlines", daemon=True).start()

    def arm(self, sock: socket.socket) -> None:
        """The calling thread reads from (or writes to) `sock` from now on, for at most
        `seconds`."""
        with self._lock:
            self._by_thread[threading.get_ident()] = (sock, time.monotonic() + self.seconds)

    def disarm(self) -> None:
        """The calling thread computes for now: its socket is not waited on."""
        with self._lock:
            entry = self._by_thread.get(threading.get_ident())
            if entry is not None:
                self._by_thread[threading.get_ident()] = (entry[0], None)

    def rearm(self) -> None:
        """`arm` again the calling thread's socket, if it has one."""
        with self._lock:
            entry = self._by_thread.get(threading.get_ident())
            if entry is not None:
                self._by_thread[threading.get_ident()] = (entry[0],
                                                          time.monotonic() + self.seconds)

    def release(self) -> None:
        with self._lock:
            self._by_thread.pop(threading.get_ident(), None)

    def _watch(self) -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            self.expire(time.monotonic())

    def expire(self, now: float) -> int:
        """Shut down every socket past its deadline; how many."""
        with self._lock:
            late = [(ident, sock) for ident, (sock, until) in self._by_thread.items()
                    if until is not None and until < now]
            for ident, _ in late:
                del self._by_thread[ident]
        for _, sock in late:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
        return len(late)


def wrap_app(app: Flask, deadlines: ReadDeadlines) -> Callable[..., Iterable[bytes]]:
    """`app` with the request's body read first, under the calling thread's deadline, which is
    lifted while `app` runs and set again for writing its answer; at most the app's own
    `MAX_CONTENT_LENGTH` is read (`webhook.app` sets it)."""
    limit = app.config["MAX_CONTENT_LENGTH"]

    def read_then_run(environ: dict[str, Any], start_response: Callable[..., Any],
                      ) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        declared = int(length) if length.isdigit() else None
        # A declared size above the limit is refused by the app from its header alone.
        if declared is None or declared <= limit:
            stream = environ["wsgi.input"]
            want = limit + 1 if declared is None else declared
            chunks, size = [], 0
            while size < want:
                chunk = stream.read(min(want - size, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
        deadlines.disarm()
        try:
            return app(environ, start_response)
        finally:
            deadlines.rearm()

    return read_then_run
