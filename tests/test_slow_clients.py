"""A client sending its request a byte at a time (or stopping halfway) cannot hold a worker
thread: reading a request has a deadline (webhook/read_deadline.py). Served by the real gunicorn
entry point, one worker of 4 threads.

Before the deadline, 6 such connections on 4 threads left /healthz unanswered for as long as
they stayed open (a liveness probe failing, the pod restarted, every analysis refused).
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.read_deadline import READ_SECONDS_ENV

READ_SECONDS = 2.0
THREADS = 4


@pytest.fixture(scope="module")
def judge(lab):
    with served_judge(lab.url, workers=1, threads=THREADS,
                      env={READ_SECONDS_ENV: str(READ_SECONDS)}) as url:
        yield url


def _slow(url: str, head: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head)
    return sock


@pytest.mark.parametrize("head", [
    b"POST /v1/analyze HTTP/1.1\r\nHost: j\r\nContent-Type: application/json\r\n"
    b"Content-Length: 900\r\n\r\n{\"canary\":",  # the body stops after a few bytes
    b"POST /v1/hooks/rollback HTTP/1.1\r\nHost: j\r\n",  # the headers never end
], ids=["body", "headers"])
def test_slow_clients_do_not_hold_the_threads(judge, lab, head):
    slow = [_slow(judge, head) for _ in range(THREADS + 2)]
    try:
        time.sleep(0.5)  # every thread now reads one of them
        began = time.monotonic()
        for sock in slow:  # still sending: a byte now and then
            sock.sendall(b" ")
        r = requests.get(judge + "/healthz", timeout=30)
        waited = time.monotonic() - began
        assert r.status_code == 200
        # the first 4 are dropped at the deadline, the next 2 take 2 threads, 2 are free
        assert waited < 2 * READ_SECONDS + 1.5, waited
        for sock in slow[:THREADS]:  # dropped: the read ends
            sock.settimeout(5)
            assert sock.recv(100) == b""
    finally:
        for sock in slow:
            sock.close()
    # a caller sending at a normal pace is served as before, on a kept connection too
    body = {"canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)}
    with requests.Session() as session:
        for _ in range(3):
            r = session.post(judge + "/v1/analyze", json=body, timeout=30)
            assert r.status_code == 200 and r.json()["verdict"] == "pass", r.text


class _SlowPrometheus:
    """Forwards to the lab's Prometheus after a pause: an analysis that takes longer than the
    read deadline (a real Prometheus is not slow on demand)."""

    def __init__(self, upstream: str, pause: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                form = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST":  # range queries; /readyz's GET answers at once
                    time.sleep(pause)
                r = requests.request(self.command, upstream + self.path, data=form, timeout=10,
                                     headers={"Content-Type": self.headers.get(
                                         "Content-Type", "")})
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_an_analysis_longer_than_the_read_deadline_is_not_cut(lab):
    """The deadline is lifted while the app computes: only reading and writing count."""
    slow = _SlowPrometheus(lab.url, pause=READ_SECONDS + 1)
    body = {"canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)}
    try:
        with served_judge(slow.url, workers=1, threads=THREADS, env={
                READ_SECONDS_ENV: str(READ_SECONDS),
                "CANARY_JUDGE_ANALYSIS_DEADLINE_SECONDS": str(3 * READ_SECONDS + 4)}) as url:
            began = time.monotonic()
            r = requests.post(url + "/v1/analyze", json=body, timeout=30)
            took = time.monotonic() - began
    finally:
        slow.server.shutdown()
        slow.server.server_close()
    assert r.status_code == 200 and r.json()["verdict"] == "pass", r.text
    assert took > READ_SECONDS + 1
