"""A controller's kept-alive connection outlives the minute between its polls: Argo's Go client
keeps an idle connection 90 s and reuses it, and a judge closing it after 5 s made every poll
reconnect to whichever worker accepted first, whose caches of the rollout were often cold
(webhook/gunicorn_conf.py, `bench/latency.py --only idle`)."""

from __future__ import annotations

import socket
import time

from webhook.lab.judge import served_judge

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: judge\r\n\r\n"


def _answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer (headers and its Content-Length of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_idle_connection_still_serves_after_the_old_five_seconds(lab):
    with served_judge(lab.url, workers=1) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(6.5)
            sock.setblocking(False)
            try:
                closed = sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                closed = False  # nothing to read and not closed: still open
            sock.setblocking(True)
            assert not closed, "the judge closed an idle connection within 6.5 s"
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
