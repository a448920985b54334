"""A controller's kept-alive connection outlives the minute between its polls: Argo's Go client
keeps an idle connection 90 s and reuses it, and a judge closing it after 5 s made every poll
reconnect to whichever worker accepted first, whose caches of the rollout were often cold
(webhook/gunicorn_conf.py, `bench/latency.py --only idle`)."""

from __future__ import annotations

import socket
import time

from tests.test_worker_linger import _get
from webhook.lab.judge import served_judge


def test_an_idle_connection_still_serves_after_the_old_five_seconds(lab):
    with served_judge(lab.url, workers=1) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            assert _get(sock)[0].startswith(b"HTTP/1.1 200")
            time.sleep(6.5)
            sock.setblocking(False)
            try:
                closed = sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                closed = False  # nothing to read and not closed: still open
            sock.settimeout(5)
            assert not closed, "the judge closed an idle connection within 6.5 s"
            assert _get(sock)[0].startswith(b"HTTP/1.1 200")
