"""The Prometheus adapter's failure modes, mapped to statuses Argo and Flagger treat as
"could not judge" (5xx), never as a verdict.

A real Prometheus is used where it can produce the fault (stopped, bad PromQL); a small fake
HTTP server only for faults Prometheus will not produce on demand (hangs, garbage, half answers).
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.settings import load_settings
from webhook.sources import RangeQuery
from webhook.sources.prometheus import PrometheusSource


class FakeUpstream:
    """Answers every request with one canned behaviour and records what it was sent."""

    def __init__(self, behaviour: str, tls: tuple[Path, Path] | None = None) -> None:
        self.behaviour = behaviour
        self.seen: list[dict[str, str]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append(dict(self.headers))
                outer.paths.append(self.path)
                kind = outer.behaviour
                if kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind == "hang":
                    time.sleep(3)
                    return
                status, ctype, body = {
                    "garbage": (200, "application/json", b"{not json"),
                    "half": (200, "application/json", b'{"status":"success","data":{"resul'),
                    "starting": (503, "text/plain", b"Service Unavailable"),
                    "timeout": (503, "application/json", json.dumps(
                        {"status": "error", "errorType": "timeout",
                         "error": "query timed out in expression evaluation"}).encode()),
                    "unauthorized": (401, "text/plain", b"Unauthorized"),
                    "wrongshape": (200, "application/json", json.dumps(
                        {"status": "success", "data": {"resultType": "vector",
                                                       "result": []}}).encode()),
                    "empty": (200, "application/json", json.dumps(
                        {"status": "success", "data": {"resultType": "matrix",
                                                       "result": []}}).encode()),
                }[kind]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:  # (certificate, key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def analyze(url: str, lab, **settings):
    client = create_app(load_settings(prometheus_url=url, prometheus_timeout_seconds=1,
                                      **settings)).test_client()
    return client.post("/v1/analyze", json={
        "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)})


def test_prometheus_stopped_is_503(lab):
    side = TrafficSide(labels={"app": "x"}, rps=1)
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics([side], lab.anchor - 600, lab.anchor))
        url = prom.start()
        assert analyze(url, lab).status_code == 200
        prom.stop()
        r = analyze(url, lab)
    assert r.status_code == 503
    assert r.json["error"] == "metrics_source_unavailable"
    assert "unreachable" in r.json["message"]


@pytest.mark.parametrize(("behaviour", "status", "words"), [
    ("hang", 504, "did not answer within 1s"),
    ("timeout", 504, "query timed out"),
    ("garbage", 503, "unreadable"),
    ("half", 503, "unreadable"),
    ("starting", 503, "HTTP 503: Service Unavailable"),
    ("unauthorized", 503, "credentials"),
    ("wrongshape", 503, "without a matrix"),
])
def test_upstream_faults_are_5xx_never_a_verdict(lab, behaviour, status, words):
    with FakeUpstream(behaviour) as fake:
        began = time.monotonic()
        r = analyze(fake.url, lab)
        elapsed = time.monotonic() - began
    assert r.status_code == status, r.json
    assert words in r.json["message"]
    assert "verdict" not in r.json
    assert elapsed < 2.5  # the per-call timeout holds; queries ran concurrently, not in series


def test_empty_results_everywhere_are_inconclusive(lab):
    with FakeUpstream("empty") as fake:
        r = analyze(fake.url, lab)
    assert r.status_code == 200 and r.json["verdict"] == "inconclusive"


def test_credentials_and_headers_reach_prometheus_but_never_the_answer(lab, capsys):
    secret = "s3cr3t-token-value"
    with FakeUpstream("empty") as fake:
        r = analyze(fake.url, lab, prometheus_bearer_token=secret, prometheus_org_id="tenant-a",
                    prometheus_headers={"X-Extra": "1", "user-agent": "our-proxy-wants-this"})
    sent = fake.seen[0]
    assert sent["Authorization"] == f"Bearer {secret}"
    # an operator's header replaces ours of the same name, whatever its case
    assert [(k, v) for k, v in sent.items() if k.lower() == "user-agent"] == [
        ("user-agent", "our-proxy-wants-this")]
    assert sent["X-Scope-OrgID"] == "tenant-a" and sent["X-Extra"] == "1"
    assert secret not in r.get_data(as_text=True)
    out = capsys.readouterr()
    assert secret not in out.out + out.err


def test_basic_auth_and_token_file(lab, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    with FakeUpstream("empty") as fake:
        analyze(fake.url, lab, prometheus_bearer_token_file=token_file)
        analyze(fake.url, lab, prometheus_username="judge", prometheus_password="pw")
    assert fake.seen[0]["Authorization"] == "Bearer from-file"
    assert fake.seen[-1]["Authorization"].startswith("Basic ")


def test_userinfo_in_the_url_is_basic_auth_and_never_shown(lab):
    with FakeUpstream("empty") as fake:
        url = fake.url.replace("http://", "http://judge:p%40ss-w0rd@")
        r = analyze(url, lab)
    assert r.status_code == 200
    assert fake.seen[0]["Authorization"] == "Basic " + base64.b64encode(b"judge:p@ss-w0rd").decode()
    assert "p@ss-w0rd" not in r.get_data(as_text=True)


def test_a_redirect_is_an_error_naming_the_fix_and_nothing_follows_it(lab):
    """Following it would send the token and tenant header to wherever Location points."""
    with FakeUpstream("redirect") as fake:
        r = analyze(fake.url, lab, prometheus_bearer_token="tok-123456")
    assert r.status_code == 503
    assert "HTTP 302" in r.json["message"] and "redirects are not followed" in r.json["message"]
    assert all(path.startswith("/api/v1/") for path in fake.paths)


def _proxy_through(monkeypatch, url: str) -> None:
    """The environment names `url` as the HTTP proxy and exempts no host."""
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(lab, monkeypatch):
    with FakeUpstream("empty") as proxy:
        _proxy_through(monkeypatch, proxy.url)
        assert analyze("http://prometheus.example:9090", lab).status_code == 200
        assert proxy.paths[0].startswith("http://prometheus.example:9090/api/v1/query_range")
        monkeypatch.setenv("NO_PROXY", "prometheus.example")
        before = len(proxy.paths)
        r = analyze("http://prometheus.example:9090", lab)
    assert r.status_code == 503 and len(proxy.paths) == before  # straight to it: unreachable


def test_a_path_prefix_in_the_url_is_kept_with_or_without_a_proxy(lab, monkeypatch):
    """Mimir and Thanos behind an ingress serve the API under a prefix (`…/prometheus`)."""
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    with FakeUpstream("empty") as fake:
        assert analyze(fake.url + "/prometheus/", lab).status_code == 200
    assert fake.paths and all(p.startswith("/prometheus/api/v1/") for p in fake.paths)
    with FakeUpstream("empty") as proxy:
        _proxy_through(monkeypatch, proxy.url)
        assert analyze("http://prometheus.example:9090/prometheus", lab).status_code == 200
    assert proxy.paths[0].startswith("http://prometheus.example:9090/prometheus/api/v1/")


def test_answers_are_asked_uncompressed_unless_gzip_is_on(lab):
    with FakeUpstream("empty") as fake:
        analyze(fake.url, lab)
        plain = fake.seen[-1]["Accept-Encoding"]
        analyze(fake.url, lab, prometheus_gzip=True)
    assert plain == "identity" and fake.seen[-1]["Accept-Encoding"] == "gzip"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls_is_verified_against_the_ca_file_or_skipped_only_when_asked(lab, self_signed):
    cert, _ = self_signed
    with FakeUpstream("empty", tls=self_signed) as fake:
        unknown = analyze(fake.url, lab)
        trusted = analyze(fake.url, lab, prometheus_ca_file=cert)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # urllib3 warns about every unverified call
            unverified = analyze(fake.url, lab, prometheus_insecure_skip_verify=True)
    assert unknown.status_code == 503 and "SSLError" in unknown.json["message"]
    assert trusted.status_code == 200 and unverified.status_code == 200
    # no query crossed the untrusted handshake (each analysis: its ten queries over 31 steps
    # as two requests, a union holding at most MAX_POINTS parts × steps)
    assert len(fake.seen) == 4


def _answer_after(fake: FakeUpstream, seconds: float) -> None:
    """Make `fake` wait `seconds` before each answer."""
    original = fake.server.RequestHandlerClass._answer

    def slow(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        original(handler)

    fake.server.RequestHandlerClass.do_POST = slow


def test_queries_run_concurrently_on_one_pool(lab):
    """Six queries against a server that takes 0.3 s each finish in well under 6 × 0.3 s
    (sent separately: combining them would make this one request)."""
    with FakeUpstream("empty") as fake:
        _answer_after(fake, 0.3)
        source = PrometheusSource(load_settings(prometheus_url=fake.url,
                                                prometheus_combine_queries=False))
        queries = [RangeQuery(f"q{i}", "up", lab.anchor - 600, lab.anchor, 60, "m")
                   for i in range(6)]
        began = time.monotonic()
        results = source.query_range_many(queries)
        elapsed = time.monotonic() - began
    assert [r.query.key for r in results] == [q.key for q in queries]
    assert len(fake.seen) == 6 and elapsed < 1.2


def test_a_union_cut_in_two_is_sent_at_once_and_bounded_by_the_deadline(lab):
    """The halves of a cut union go at once (one from the calling thread, one from the
    pool), so a slow source costs one wait, not two; both hanging cost the deadline."""
    from webhook.sources import SourceTimeout

    queries = [RangeQuery(f"q{i}", "up", lab.anchor - 600, lab.anchor, 60, f"m{i}")
               for i in range(6)]
    with FakeUpstream("empty") as fake:
        _answer_after(fake, 0.5)
        source = PrometheusSource(load_settings(prometheus_url=fake.url))
        began = time.monotonic()
        results = source.query_range_many(queries)
        elapsed = time.monotonic() - began
    assert [r.query.key for r in results] == [q.key for q in queries]
    assert len(fake.seen) == 2 and sum(r.requests for r in results) == 2
    assert 0.5 < elapsed < 0.9, elapsed  # one after the other: 1 s
    with FakeUpstream("hang") as fake:
        source = PrometheusSource(load_settings(prometheus_url=fake.url,
                                                prometheus_timeout_seconds=5,
                                                analysis_deadline_seconds=1))
        began = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            source.query_range_many(queries)
        elapsed = time.monotonic() - began
    assert 0.9 < elapsed < 1.3, elapsed
    assert "within the analysis deadline of 1s" in caught.value.message


@pytest.mark.parametrize("gzip", [False, True])
def test_real_prometheus_values_land_on_the_window_grid(lab, gzip):
    source = PrometheusSource(load_settings(prometheus_url=lab.url, prometheus_gzip=gzip))
    start, end = lab.anchor - 3600, lab.anchor - 600
    (result,) = source.query_range_many([RangeQuery(
        "k", f'sum(increase(http_requests_total{{rollouts_pod_template_hash="{ARGO_STABLE}"}}'
        "[60s]))", start, end, 60, "m")])
    values = result.series[0].values
    assert values.shape == (51,)
    assert 1800 < values.mean() < 3000  # 40 req/s for 60 s
    ok, detail = source.ready()
    assert ok, detail


def _trickle_then_stall(handler: BaseHTTPRequestHandler) -> None:
    """A head at once, then a byte every 0.1 s for 0.7 s, then silence for 3 s."""
    length = int(handler.headers.get("Content-Length") or 0)
    handler.rfile.read(length)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for ch in b'{"status":"success"':
        handler.wfile.write(bytes([ch]))
        handler.wfile.flush()
        time.sleep(0.1)
        if ch == ord("t"):
            break
    time.sleep(3)


@pytest.mark.parametrize("fault", ["hang", "trickle_then_stall"])
def test_one_request_ends_at_the_analysis_deadline_whatever_the_socket_timeout(lab, fault):
    """A repeated poll's one request is sent from the calling thread: a source that stalls
    late in its answer still costs no more than the deadline, though each socket operation may
    take 5 s."""
    from webhook.sources import SourceTimeout

    with FakeUpstream("hang") as fake:
        if fault == "trickle_then_stall":
            fake.server.RequestHandlerClass.do_POST = _trickle_then_stall
        source = PrometheusSource(load_settings(prometheus_url=fake.url,
                                                prometheus_timeout_seconds=5,
                                                analysis_deadline_seconds=1))
        began = time.monotonic()
        with pytest.raises(SourceTimeout) as caught:
            source.query_range_many([RangeQuery("k", "up", lab.anchor - 600, lab.anchor, 60,
                                                "errors")])
        elapsed = time.monotonic() - began
    assert 0.9 < elapsed < 1.3, elapsed
    assert "within the analysis deadline of 1s" in caught.value.message
    assert caught.value.metric == "errors"


def test_requests_in_flight_never_exceed_the_pool_size(lab):
    """Single requests sent from callers' threads share the pool's size with pooled ones: with
    CANARY_JUDGE_PROMETHEUS_MAX_CONCURRENCY=2, six callers at once never have more than two
    requests at the source, and all of them are answered."""
    with FakeUpstream("empty") as fake:
        original = fake.server.RequestHandlerClass._answer
        lock, now, most = threading.Lock(), [0], [0]

        def counted(handler: BaseHTTPRequestHandler) -> None:
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.2)
            with lock:
                now[0] -= 1
            original(handler)

        fake.server.RequestHandlerClass.do_POST = counted
        source = PrometheusSource(load_settings(prometheus_url=fake.url,
                                                prometheus_max_concurrency=2))
        query = RangeQuery("k", "up", lab.anchor - 600, lab.anchor, 60, "m")
        with ThreadPoolExecutor(6) as callers:
            answers = list(callers.map(lambda _: source.query_range_many([query]), range(6)))
    assert all(len(a) == 1 and a[0].series == () for a in answers)
    assert most[0] == 2
