"""A metrics source that hangs, trickles, talks garbage or breaks off mid-answer, in front of
the real Prometheus: every answer comes within the analysis deadline + 1 s, is never a verdict
(and never a 2xx from Flagger's rollback hook), liveness stays instant, and once the source
recovers the next analyses succeed. Served by the real gunicorn entry point.

The fault-injecting proxy is a small local HTTP server: Prometheus will not produce these faults
on demand. In `pass` mode it forwards to the lab's Prometheus.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from webhook.app import create_app
from webhook.configs import Locks, load_registry
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash
from webhook.settings import load_settings

DEADLINE = 2.0
FAULTS = ("hang", "trickle", "garbage", "half", "stall_mid_body")


class FaultProxy:
    """Forwards to Prometheus (`pass`) or injects one fault into every answer."""

    def __init__(self, upstream: str) -> None:
        self.mode = "pass"
        self.release = threading.Event()
        self.seen: list[dict[str, str]] = []
        self.forms: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle(self) -> None:
                # a client's pool closed while a kept-alive connection waits: not news
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def _send(self, status: int, body: bytes, ctype: str = "application/json",
                      length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _wait(self, seconds: float) -> None:
                outer.release.wait(seconds)

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length)
                outer.seen.append(dict(self.headers))
                outer.forms.append(form)
                mode = outer.mode
                try:
                    if mode in ("pass", "partial"):
                        r = requests.request(self.command, upstream + self.path, data=form,
                                             headers={"Content-Type": self.headers.get(
                                                 "Content-Type", "")}, timeout=10)
                        body = r.content
                        if mode == "partial":  # as a VictoriaMetrics cluster with a node down
                            body = json.dumps({**r.json(), "isPartial": True}).encode()
                        self._send(r.status_code, body)
                    elif mode == "hang":
                        self._wait(30)
                    elif mode == "trickle":  # a byte a second, forever
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        for ch in b'{"status":"success","data":{"resultType":"matrix"' * 100:
                            self.wfile.write(bytes([ch]))
                            self.wfile.flush()
                            if outer.release.wait(1.0):
                                break
                    elif mode == "garbage":
                        self._send(200, b"\x00\xff<html>not prometheus</html>", "text/html")
                    elif mode == "half":  # promises 5000 bytes, sends a few, hangs up
                        self._send(200, b'{"status":"success","data":{"resu', length=5000)
                        self.close_connection = True
                    elif mode == "stall_mid_body":
                        self._send(200, b'{"status":"success","data":{', length=5000)
                        self._wait(30)
                    elif mode in ("echo_json", "echo_text"):
                        echoed = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
                        if mode == "echo_json":
                            self._send(400, json.dumps({"status": "error",
                                                        "errorType": "bad_data",
                                                        "error": echoed}).encode())
                        else:
                            self._send(502, echoed.encode(), "text/plain")
                    elif mode == "echo_credential":  # a gateway quoting what it was given
                        given = self.headers.get("Authorization", "").partition(" ")[2]
                        self._send(400, json.dumps({
                            "status": "error", "errorType": "bad_data",
                            "error": f"credential {given} not valid for this tenant"}).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxy(lab):
    with FaultProxy(lab.url) as p:
        yield p


@pytest.fixture(scope="module")
def judge(proxy):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANARY_JUDGE_ANALYSIS_DEADLINE_SECONDS", str(DEADLINE))
        mp.setenv("CANARY_JUDGE_READINESS_DEADLINE_SECONDS", "1")
        with served_judge(proxy.url, workers=1, threads=4) as url:
            yield url


def _argo(judge: str, lab, version: str = "errors3x") -> requests.Response:
    body = {"canary": {"rollouts_pod_template_hash": argo_hash(version)},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60)}
    return requests.post(judge + "/v1/analyze", json=body, timeout=30)


def _hook(judge: str, kind: str, target: str = "badinfo") -> requests.Response:
    return requests.post(judge + f"/v1/hooks/{kind}", timeout=30, json={
        "name": target, "namespace": NAMESPACE, "metadata": {"lookback": "60m"}})


def _timed(call, *args):
    began = time.monotonic()
    response = call(*args)
    return response, time.monotonic() - began


def test_healthy_source_gives_verdicts(judge, proxy, lab):
    proxy.mode = "pass"
    r = _argo(judge, lab)
    assert r.status_code == 200 and r.json()["verdict"] == "fail"
    assert _hook(judge, "rollback").status_code == 200  # a real critical failure rolls back


@pytest.mark.parametrize("fault", FAULTS)
def test_faulty_source_answers_within_the_deadline_and_never_a_verdict(judge, proxy, lab,
                                                                       fault):
    proxy.mode = fault
    proxy.release.clear()
    try:
        with ThreadPoolExecutor(6) as pool:
            calls = [pool.submit(_timed, _argo, judge, lab) for _ in range(3)]
            calls += [pool.submit(_timed, _hook, judge, "rollback") for _ in range(2)]
            calls += [pool.submit(_timed, _hook, judge, "confirm-promotion")]
            time.sleep(0.3)
            health, health_s = _timed(requests.get, judge + "/healthz")
            ready, ready_s = _timed(requests.get, judge + "/readyz")
            answers = [c.result() for c in calls]
    finally:
        proxy.mode = "pass"
        proxy.release.set()
    assert health.status_code == 200 and health_s < 1.0  # liveness never waits
    assert ready.status_code == 503 and ready_s < 1.0 + 1.0
    for (r, seconds), kind in zip(answers, ["argo"] * 3 + ["rollback"] * 2 + ["promotion"],
                                  strict=True):
        assert seconds < DEADLINE + 1.0, (kind, seconds, r.text)
        assert r.status_code >= 500, (kind, r.status_code, r.text)
        if kind == "argo":
            assert "verdict" not in r.json() and r.json()["error"].startswith(
                ("metrics_source_", "busy"))
    # recovered: the very next analyses succeed (no thread or connection left stuck)
    time.sleep(0.2)
    r = _argo(judge, lab)
    assert r.status_code == 200 and r.json()["verdict"] == "fail", r.text
    assert _hook(judge, "rollback").status_code == 200
    assert _hook(judge, "rollback", "podinfo").status_code == 412


def test_hook_5xx_are_counted(judge, proxy, lab):
    text = requests.get(judge + "/metrics", timeout=5).text
    lines = [x for x in text.splitlines() if x.startswith("canary_judge_hook_responses_total{")
             and 'hook="rollback"' in x and 'status="50' in x]
    assert lines and sum(float(x.split()[-1]) for x in lines) >= 1


def test_partial_data_is_never_judged(proxy, lab):
    """A sharded backend answering from the nodes that are up (VictoriaMetrics' isPartial)
    is a broken source: 503 and a hook's 5xx, never a verdict on the series that are left."""
    client = create_app(load_settings(prometheus_url=proxy.url)).test_client()
    body = {"canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60)}
    assert client.post("/v1/analyze", json=body).json["verdict"] == "fail"
    proxy.mode = "partial"
    try:
        r = client.post("/v1/analyze", json=body)
        hook = client.post("/v1/hooks/rollback", json={
            "name": "badinfo", "namespace": NAMESPACE, "metadata": {"lookback": "60m"}})
    finally:
        proxy.mode = "pass"
    assert r.status_code == 503 and "verdict" not in r.json, r.json
    assert "partial data" in r.json["message"]
    assert hook.status_code >= 500, hook.get_data(as_text=True)


@pytest.mark.parametrize("deny", [True, False])
def test_every_query_asks_sharded_backends_to_fail_rather_than_answer_partially(proxy, lab,
                                                                                deny):
    """Thanos' partial_response=false and VictoriaMetrics' deny_partial_response=1 ride on
    every range query (the real Prometheus behind the proxy ignores them and answers)."""
    client = create_app(load_settings(prometheus_url=proxy.url,
                                      prometheus_deny_partial=deny)).test_client()
    proxy.forms.clear()
    r = client.post("/v1/analyze", json={
        "canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60)})
    assert r.status_code == 200 and r.json["verdict"] == "fail", r.json
    ranges = [f for f in proxy.forms if b"query=" in f and b"step=" in f]
    assert ranges
    for form in ranges:
        asked = b"&partial_response=false" in form and b"&deny_partial_response=1" in form
        assert asked is deny, form[-120:]


SECRET = "tok-3f9a8c7e-secret"
ORG = "tenant-7781"
CUSTOM = "custom-9d2e-value"


@pytest.mark.parametrize("mode", ["echo_json", "echo_text"])
def test_upstream_echoing_our_headers_leaks_nothing(proxy, lab, mode, capsys):
    app = create_app(load_settings(prometheus_url=proxy.url, prometheus_bearer_token=SECRET,
                                   prometheus_org_id=ORG,
                                   prometheus_headers={"X-Custom": CUSTOM}))
    client = app.test_client()
    proxy.mode = mode
    try:
        capsys.readouterr()
        r = client.post("/v1/analyze", json={
            "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)})
        hook = client.post("/v1/hooks/rollback", json={"name": "podinfo", "namespace": "shop"})
        ready = client.get("/readyz")
        logged = capsys.readouterr()
    finally:
        proxy.mode = "pass"
    assert proxy.seen[-1]["Authorization"] == f"Bearer {SECRET}"  # it was sent, and echoed
    assert r.status_code in (502, 503) and hook.status_code in (502, 503)
    assert ready.status_code == 503
    for text in (r.get_data(as_text=True), hook.get_data(as_text=True),
                 ready.get_data(as_text=True), logged.out, logged.err):
        for secret in (SECRET, ORG, CUSTOM, "X-Scope-OrgID", "X-Custom"):
            assert secret not in text
    if mode == "echo_text":
        assert r.json["message"].endswith("Prometheus answered HTTP 502: Bad Gateway")
    else:
        assert "withheld" in r.json["message"]


@pytest.mark.parametrize("how", ["url", "settings", "header"])
def test_upstream_quoting_our_basic_credentials_leaks_nothing(proxy, lab, how, capsys):
    """Basic auth sends base64(user:password), not the password: a gateway quoting that
    blob alone (no "Basic" word) would hand the password to every caller of the judge."""
    password = "pw-51c9e0aa"
    blob = base64.b64encode(f"judge:{password}".encode()).decode()
    options: dict[str, object] = {
        "url": {"prometheus_url": proxy.url.replace("://", f"://judge:{password}@")},
        "settings": {"prometheus_url": proxy.url, "prometheus_username": "judge",
                     "prometheus_password": password},
        "header": {"prometheus_url": proxy.url,
                   "prometheus_headers": {"Authorization": f"Basic {blob}"}},
    }[how]
    client = create_app(load_settings(**options)).test_client()
    proxy.mode = "echo_credential"
    try:
        capsys.readouterr()
        r = client.post("/v1/analyze", json={
            "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)})
        html = client.get(f"/v1/analyze/http?canary.rollouts_pod_template_hash="
                          f"{argo_hash('healthy')}&stable.rollouts_pod_template_hash="
                          f"{ARGO_STABLE}&format=html")
        hook = client.post("/v1/hooks/rollout", json={"name": "podinfo", "namespace": "shop"})
        logged = capsys.readouterr()
    finally:
        proxy.mode = "pass"
    assert proxy.seen[-1]["Authorization"] == f"Basic {blob}"  # it was sent, and quoted
    assert r.status_code == 502 and "withheld" in r.json["message"]
    for text in (r.get_data(as_text=True), html.get_data(as_text=True),
                 hook.get_data(as_text=True), logged.out, logged.err):
        assert blob not in text and password not in text


def test_prometheus_error_field_is_passed_on_short(client):
    """Prometheus' own `error` names the problem in a broken query: it is kept, trimmed
    (the caller's inline query here, so the caller's 400 naming it)."""
    r = client.post("/v1/analyze", json={
        "canary": {"app": "a"}, "stable": {"app": "b"},
        "metrics": [{"name": "bad", "kind": "series",
                     "query": "rate(up{ {{selector}} }[1m]) + on(" + "x" * 400 + ")"}]})
    assert r.status_code == 400, r.json
    message = r.json["message"]
    assert r.json["field"] == "metrics.bad.query"
    assert "rejected this query: bad_data: " in message
    assert len(message) < 300


def test_a_callers_rejected_query_quoting_our_headers_leaks_nothing(proxy, lab, capsys):
    """The caller's own query, refused with an error text that quotes our credentials: the
    caller's 400 names the query and withholds the text."""
    registry = load_registry(None)
    registry.configs["http"] = registry.configs["http"].model_copy(update={"locks": Locks()})
    client = create_app(load_settings(prometheus_url=proxy.url, prometheus_bearer_token=SECRET,
                                      prometheus_org_id=ORG, allow_inline_queries=True),
                        registry=registry).test_client()
    proxy.mode = "echo_json"
    try:
        capsys.readouterr()
        r = client.post("/v1/analyze", json={
            "canary": {"app": "a"}, "stable": {"app": "b"}, "mode": "fixed",
            "metrics": {"error_ratio": {"enabled": False}, "latency": {"enabled": False},
                        "restarts": {"enabled": False}, "traffic": {"enabled": False},
                        "saturation": {"enabled": False},
                        "mine": {"kind": "series", "query": "up{ {{selector}} }"}}})
        logged = capsys.readouterr()
    finally:
        proxy.mode = "pass"
    assert r.status_code == 400 and r.json["field"] == "metrics.mine.query", r.json
    assert "withheld" in r.json["message"]
    for text in (r.get_data(as_text=True), logged.out, logged.err):
        for secret in (SECRET, ORG, "X-Scope-OrgID"):
            assert secret not in text
