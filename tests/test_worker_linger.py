"""A thread waiting on its kept-alive connection for the next request (webhook/gunicorn_worker.py)
must never cost another connection or a probe its turn, and must serve what a caller sends
back to back, pipelined or not, exactly as gthread's event loop would."""

from __future__ import annotations

import socket
import time

from webhook.lab.judge import served_judge

THREADS, CONNECTIONS = 4, 10


def _get(sock: socket.socket, path: str = "/healthz", count: int = 1) -> list[bytes]:
    """Send `count` GETs at once (pipelined when more than one) and read their answers."""
    sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: judge\r\n\r\n" % path.encode()
                          for _ in range(count)))
    answers, buf = [], b""
    while len(answers) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(buf) < length:
            buf += sock.recv(65536)
        answers.append(head.split(b"\r\n")[0] + b"\n" + buf[:length])
        buf = buf[length:]
    return answers


def test_more_kept_connections_than_threads_are_all_answered_promptly(lab):
    """Ten kept-alive callers on one worker of four threads, taking turns: with threads that
    waited on their own connection for long, the others' requests would queue behind them."""
    with served_judge(lab.url, workers=1, threads=THREADS) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5)
                 for _ in range(CONNECTIONS)]
        try:
            slowest = 0.0
            for _ in range(5):
                for sock in socks:
                    began = time.monotonic()
                    (answer,) = _get(sock)
                    slowest = max(slowest, time.monotonic() - began)
                    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
            # gthread alone answers each in milliseconds; a thread held for a connection's
            # whole keep-alive (5 s) would show here
            assert slowest < 1.0, slowest
            # and the probe still finds a thread while every connection is open
            probe = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert _get(probe, "/readyz")[0].startswith(b"HTTP/1.1 200")
            probe.close()
        finally:
            for sock in socks:
                sock.close()


def test_back_to_back_and_pipelined_requests_on_one_connection_are_all_answered(lab):
    with served_judge(lab.url, workers=1, threads=THREADS) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for _ in range(20):  # each sent as soon as the last answer is read
                assert _get(sock)[0].startswith(b"HTTP/1.1 200")
            answers = _get(sock, count=3)  # three requests in one write
            assert [a.split(b"\n")[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
            time.sleep(0.2)  # past the wait: the event loop has the connection again
            assert _get(sock)[0].startswith(b"HTTP/1.1 200")
