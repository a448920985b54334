"""Requests on a kept-alive connection are written and read by `wire`, not urllib3: the answers,
the requests Prometheus sees and the errors must be the same either way.

The first request of a source opens its connection through urllib3; the next ones reuse it
through `wire`. A raw-socket server scripts each answer byte by byte (framings, compression,
faults Prometheus will not produce), and each fault is met once on a new connection (urllib3)
and once on a kept one (`wire`), the two errors compared. The real Prometheus checks the
combined answers (identity and gzip) against a source that never uses `wire`.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.test_metrics_source import self_signed  # noqa: F401 (a fixture)
from webhook.settings import load_settings
from webhook.sources import RangeQuery
from webhook.sources.base import SourceError, SourceTimeout
from webhook.sources.prometheus import PrometheusSource, wire

START, STEP = 1_700_000_000.0, 60.0
QUERY = RangeQuery("k", "up", START, START + 4 * STEP, STEP, "m")
RESULT = [{"metric": {"job": "a"}, "values": [[START + i * STEP, str(i + 0.5)] for i in range(5)]},
          {"metric": {"job": "b"}, "values": [[START + STEP, "NaN"], [START + 3 * STEP, "+Inf"]]}]
BODY = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": RESULT}},
                  separators=(",", ":")).encode()
Answer = Callable[[socket.socket], bool]  # writes an answer; True: close the connection


def answer(body: bytes = BODY, framing: str = "length", compress: bool = False,
           chunk: int = 7) -> Answer:
    """An answer framed by Content-Length, chunks of `chunk` bytes sent one by one, or the end
    of the connection (HTTP/1.0, or HTTP/1.1 with `Connection: close`)."""
    def write(conn: socket.socket) -> bool:
        data = gzip.compress(body) if compress else body
        version = "HTTP/1.0" if framing == "eof" else "HTTP/1.1"
        head = [f"{version} 200 OK", "Content-Type: application/json"]
        if compress:
            head.append("Content-Encoding: gzip")
        if framing in ("length", "close"):
            head.append(f"Content-Length: {len(data)}")
        if framing == "close":
            head.append("Connection: close")
        if framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if framing == "chunked":
            for lo in range(0, len(data), chunk):
                piece = data[lo: lo + chunk]
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        else:
            conn.sendall(data)
        return framing in ("eof", "close")
    return write


def raw(data: bytes, close: bool = True, then_sleep: float = 0.0) -> Answer:
    def write(conn: socket.socket) -> bool:
        conn.sendall(data)
        time.sleep(then_sleep)
        return close
    return write


def trickle(conn: socket.socket) -> bool:
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode())
    for byte in BODY:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)
    return True


class Scripted:
    """A raw-socket HTTP/1.1 server: request n gets `answers[n]` (the last one repeated); it
    records each request (connection number, head, body)."""

    def __init__(self, answers: list[Answer], tls: tuple[Path, Path] | None = None) -> None:
        self.answers = answers
        self.tls = None
        if tls is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls)
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:
                    continue
            threading.Thread(target=self._serve, args=(conn, self.connections),
                             daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append((number, head, body))
                script = self.answers[min(len(self.requests), len(self.answers)) - 1]
                try:
                    if script(conn):
                        return
                except OSError:
                    return

    def close(self) -> None:
        self.server.close()


def source(url: str, **settings: object) -> PrometheusSource:
    return PrometheusSource(load_settings(prometheus_url=url, **settings))


def arrays(results: list) -> list[tuple[dict, list, list]]:
    return [(dict(s.labels), s.values.tolist(), s.present.tolist())
            for r in results for s in r.series]


def test_answers_read_by_wire_on_a_kept_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every framing and gzip, asked three times: the same series each time; a kept
    connection is reused (by `wire`), one the server ends is opened again (by urllib3)."""
    sent = []
    original = wire.Answer.send
    monkeypatch.setattr(wire.Answer, "send", lambda self, data: sent.append(1) or original(
        self, data))
    expected = [({"job": "a"}, [0.5, 1.5, 2.5, 3.5, 4.5], [True] * 5),
                ({"job": "b"}, [np.nan, np.nan, np.nan, np.inf, np.nan],
                 [False, True, False, True, False])]
    for framing in ("length", "chunked", "eof", "close"):
        for compress in (False, True):
            server = Scripted([answer(framing=framing, compress=compress)])
            sent.clear()
            try:
                s = source(server.url)
                got = [arrays(s.query_range_many([QUERY])) for _ in range(3)]
            finally:
                server.close()
            for one in got:
                assert str(one) == str(expected), (framing, compress)
            kept = framing in ("length", "chunked")
            assert server.connections == (1 if kept else 3), (framing, compress)
            assert len(sent) == (2 if kept else 0), (framing, compress)


def test_wire_writes_the_request_urllib3_writes() -> None:
    """Path prefix, credentials and extra headers: the kept connection's request (wire) is
    the first one's (urllib3) byte for byte but for the order of headers."""
    server = Scripted([answer()])
    try:
        s = source(server.url + "/prefix/", prometheus_bearer_token="s3cret-token",
                   prometheus_org_id="tenant-1", prometheus_headers={"X-Extra": "yes"})
        s.query_range_many([QUERY])
        s.query_range_many([QUERY])
    finally:
        server.close()
    (first_conn, first, first_body), (second_conn, second, second_body) = server.requests
    assert first_conn == second_conn == 1
    first_lines, second_lines = first.split(b"\r\n"), second.split(b"\r\n")
    assert first_lines[0] == second_lines[0] == b"POST /prefix/api/v1/query_range HTTP/1.1"
    assert sorted(first_lines[1:]) == sorted(second_lines[1:])
    assert b"Authorization: Bearer s3cret-token" in second_lines
    assert first_body == second_body and b"query=up&start=1700000000" in second_body


def test_a_connection_the_server_dropped_is_opened_again() -> None:
    """The server closes each connection a moment after answering without saying so: the
    next request finds it closed and opens another, and answers as before."""
    server = Scripted([raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
                           close=True, then_sleep=0.05)])
    try:
        s = source(server.url)
        first = arrays(s.query_range_many([QUERY]))
        time.sleep(0.2)
        assert str(arrays(s.query_range_many([QUERY]))) == str(first)
    finally:
        server.close()
    assert server.connections == 2


FAULTS: dict[str, Answer] = {
    "truncated": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + BODY[:40]),
    "bad chunk": raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY),
    "chunks cut": raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"%x\r\n" % len(BODY) + BODY[:30]),
    "closed unanswered": raw(b""),
    "garbage head": raw(b"HELLO THERE\r\n\r\n"),
    "bad gzip": raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                    % len(BODY) + BODY),
    "not json": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{not json"),
    "error envelope": raw(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 58\r\n\r\n'
                          b'{"status":"error","errorType":"bad_data","error":"no good"}'),
    "no content": raw(b"HTTP/1.1 204 No Content\r\n\r\n", close=False),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_on_a_kept_connection_is_reported_as_on_a_new_one(fault: str) -> None:
    errors = []
    for script in ([FAULTS[fault]], [answer(), FAULTS[fault]]):
        server = Scripted(script)
        try:
            s = source(server.url, prometheus_timeout_seconds=2, analysis_deadline_seconds=3)
            if len(script) == 2:
                s.query_range_many([QUERY])
            with pytest.raises(SourceError) as caught:
                s.query_range_many([QUERY])
        finally:
            server.close()
        errors.append((type(caught.value), caught.value.message))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("fault", ["stall", "trickle"])
def test_a_stalling_or_trickling_kept_connection_ends_at_the_deadline(fault: str) -> None:
    stall = raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY[:50],
                close=False, then_sleep=5)
    server = Scripted([answer(), stall if fault == "stall" else trickle])
    try:
        s = source(server.url, prometheus_timeout_seconds=5, analysis_deadline_seconds=1)
        s.query_range_many([QUERY])
        began = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            s.query_range_many([QUERY])
        assert time.monotonic() - began < 1.6
    finally:
        server.close()
    assert "within the analysis deadline of 1s" in caught.value.message


@pytest.mark.parametrize("gzip_on", [False, True])
def test_combined_answers_of_a_real_prometheus_are_the_same_through_wire(lab, gzip_on) -> None:
    """The lab's combined answers, asked repeatedly on a kept connection, equal those of a
    source that always goes through urllib3."""
    end = time.time() // 60 * 60
    queries = [RangeQuery(i, expr, end - 600, end, 60, "m") for i, expr in enumerate([
        "sum by (code) (rate(http_requests_total[1m]))",
        "sum by (le) (rate(http_request_duration_seconds_bucket[1m]))",
        "sum(rate(http_requests_total[1m]))"])]
    lean, plain = source(lab.url, prometheus_gzip=gzip_on), source(lab.url, prometheus_gzip=gzip_on)
    plain._kept = None  # never through wire
    for _ in range(3):
        a, b = lean.query_range_many(queries), plain.query_range_many(queries)
        assert str(arrays(a)) == str(arrays(b)) and sum(len(r.series) for r in a) > 3
        assert [list(s.labels) for r in a for s in r.series] == [
            list(s.labels) for r in b for s in r.series]


def test_an_answer_saying_close_ends_its_connection_even_if_the_server_keeps_it() -> None:
    """`Connection: close` (or HTTP/1.0) read by wire from a server that then leaves the socket
    open: the connection is still not used again, as http.client would not use it."""
    for version, extra in (("HTTP/1.1", b"Connection: close\r\n"), ("HTTP/1.0", b"")):
        closing = raw(b"%s 200 OK\r\n%sContent-Length: %d\r\n\r\n" % (
            version.encode(), extra, len(BODY)) + BODY, close=False)
        server = Scripted([answer(), closing, answer()])
        try:
            s = source(server.url)
            for _ in range(3):
                s.query_range_many([QUERY])
        finally:
            server.close()
        assert [number for number, _, _ in server.requests] == [1, 1, 2], version


def test_tls_answers_are_read_by_wire_on_the_verified_connection(self_signed,  # noqa: F811
                                                                  monkeypatch) -> None:
    """urllib3 makes the TLS connection (against the CA file); wire reads the next answers
    on it; a source that does not trust the certificate never gets an answer."""
    sent = []
    original = wire.Answer.send
    monkeypatch.setattr(wire.Answer, "send", lambda self, data: sent.append(1) or original(
        self, data))
    cert, _ = self_signed
    server = Scripted([answer(framing="chunked")], tls=self_signed)
    try:
        s = source(server.url, prometheus_ca_file=cert)
        got = [str(arrays(s.query_range_many([QUERY]))) for _ in range(3)]
        with pytest.raises(SourceError, match="SSLError"):
            source(server.url).query_range_many([QUERY])
    finally:
        server.close()
    assert got[0] == got[1] == got[2] and "'job': 'a'" in got[0]
    assert len(sent) == 2 and [n for n, _, _ in server.requests] == [1, 1, 1]
