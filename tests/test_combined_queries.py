"""Queries on the same grid go to Prometheus as one request and come back exactly as the
separate queries would: same series, labels (`__name__` included), order, values, NaN/±Inf
samples and absent steps. Asked of a real Prometheus for every built-in config's query plan;
a fake upstream only where Prometheus will not misbehave (garbage, a backend rejecting
`label_replace`)."""

from __future__ import annotations

import json
import math
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import numpy as np
import pytest

from tests.test_meshes import selectors as mesh_selectors
from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.lab.rollouts import (
    ARGO_STABLE,
    HEALTHCARE_STABLE,
    TRADING_STABLE,
    argo_hash,
    healthcare_hash,
    trading_hash,
)
from webhook.lab.synth import ExtraSeries
from webhook.settings import load_settings
from webhook.sources.base import (
    MetricsSource,
    QueryRejected,
    QueryResult,
    RangeQuery,
    SourceError,
)
from webhook.sources.prometheus import PrometheusSource
from webhook.sources.prometheus.combine import PART_LABEL, RejectionMemo, plan

HASH = "rollouts_pod_template_hash"


class Recording:
    """The source the app uses, noting every set of queries it is asked (to replay them)."""

    def __init__(self, inner: MetricsSource) -> None:
        self.inner = inner
        self.asked: list[list[RangeQuery]] = []

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        self.asked.append(list(queries))
        return self.inner.query_range_many(queries, deadline)

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()


def sources(url: str) -> tuple[PrometheusSource, PrometheusSource]:
    return (PrometheusSource(load_settings(prometheus_url=url)),
            PrometheusSource(load_settings(prometheus_url=url, prometheus_combine_queries=False)))


def assert_same(combined: list[QueryResult], separate: list[QueryResult]) -> None:
    assert [r.query for r in combined] == [r.query for r in separate]
    for c, s in zip(combined, separate, strict=True):
        assert [dict(x.labels) for x in c.series] == [dict(x.labels) for x in s.series], \
            c.query.metric
        for x, y in zip(c.series, s.series, strict=True):
            assert np.array_equal(x.values, y.values, equal_nan=True), c.query.metric
            assert np.array_equal(x.present, y.present), c.query.metric


def replay(url: str, asked: list[list[RangeQuery]]) -> tuple[int, int, int]:
    """Each recorded set answered combined and separately, compared; (queries, requests
    combined, samples read)."""
    combined, separate = sources(url)
    queries = requests = samples = 0
    for qs in asked:
        got = combined.query_range_many(qs)
        assert_same(got, separate.query_range_many(qs))
        queries += len(qs)
        requests += sum(r.requests for r in got)
        samples += sum(int(s.present.sum()) for r in got for s in r.series)
    return queries, requests, samples


def plans(url: str, bodies: Sequence[dict]) -> list[list[RangeQuery]]:
    """The query sets the service asks for these analyses (each asked twice: the second poll
    reads the start off the first and the step cache's new steps)."""
    recording = Recording(PrometheusSource(load_settings(
        prometheus_url=url, prometheus_combine_queries=False)))
    client = create_app(load_settings(prometheus_url=url, config_dir=None),
                        source=recording).test_client()
    for body in bodies:
        for _ in range(2):
            r = client.post("/v1/analyze", json=body)
            assert r.status_code == 200, r.get_data(as_text=True)
    return recording.asked


def _sides(canary: str, stable: str) -> dict:
    return {"canary": {HASH: canary}, "stable": {HASH: stable}}


def _mesh(provider: str) -> dict:
    return {"config": "http", "provider": provider, **mesh_selectors(provider, "podinfo")}


def builtin_bodies(lab) -> dict[str, list[dict]]:
    window = lab.window(60)
    return {
        "http": [{"config": "http", **_sides(argo_hash("slow"), ARGO_STABLE)},  # sequential
                 {"config": "http", "mode": "fixed", "window": window,
                  **_sides(argo_hash("errors3x"), ARGO_STABLE)}],
        "http-istio": [{**_mesh("istio"), "window": window}, _mesh("istio")],
        "http-linkerd": [{**_mesh("linkerd"), "window": window}, _mesh("linkerd")],
        "trading": [{"config": "trading", "window": window, "vars": {"risk_tolerance": "low"},
                     **_sides(trading_hash("slippage"), TRADING_STABLE)}],
        "healthcare": [{"config": "healthcare", "window": window,
                        **_sides(healthcare_hash(v), HEALTHCARE_STABLE)}
                       for v in ("gap30", "adverse")],
    }


@pytest.mark.parametrize("config", ["http", "http-istio", "http-linkerd", "trading",
                                    "healthcare"])
def test_every_builtin_plan_answers_combined_as_separately(lab, config):
    asked = plans(lab.url, builtin_bodies(lab)[config])
    queries, requests, samples = replay(lab.url, asked)
    assert samples > 1000  # real data compared, not empty answers
    assert requests < queries  # and it did combine


# -- planted NaN, ±Inf and absent steps ---------------------------------------------------


def _const(value: float):
    return lambda ts: np.full(ts.size, value)


@pytest.fixture(scope="module")
def corrupt(lab) -> Iterator[str]:
    """http traffic whose 5xx series is NaN, +Inf or -Inf, and gauges with missed scrapes."""
    sides = [TrafficSide(labels={HASH: "stab1e"}, rps=40, error_ratio=0.01)]
    extra = []
    for name, value in {"nan": math.nan, "posinf": math.inf, "neginf": -math.inf}.items():
        sides.append(TrafficSide(labels={HASH: f"h-{name}"}, rps=20, error_ratio=0.03,
                                 error_code="599"))
        extra.append(ExtraSeries("http_requests_total", {HASH: f"h-{name}", "code": "500"},
                                 "gauge", _const(value)))
        extra.append(ExtraSeries("test_gauge", {HASH: f"h-{name}", "pod": "a"}, "gauge",
                                 _const(value), gaps=tuple(range(600, 1800, 15))))
        extra.append(ExtraSeries("test_gauge", {HASH: f"h-{name}", "pod": "b"}, "gauge",
                                 _const(2.5), gaps=tuple(range(1200, 2400, 15))))
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics(sides, lab.anchor - 3600, lab.anchor, seed=3,
                                      extra=extra))
        yield prom.start()


@pytest.mark.parametrize("name", ["nan", "posinf", "neginf"])
def test_nan_inf_and_absent_steps_come_back_as_separately(lab, corrupt, name):
    asked = plans(corrupt, [
        {"config": "http", "mode": "fixed", "window": lab.window(50),
         **_sides(f"h-{name}", "stab1e")}])
    start, end = lab.anchor - 3300, lab.anchor - 300
    sel = f'{HASH}="h-{name}"'
    raw = [RangeQuery(f"g{i}", expr, start, end, 60, f"m{i}") for i, expr in enumerate([
        f"test_gauge{{{sel}}}",  # raw series: __name__ kept, NaN/Inf samples, gaps
        f'http_requests_total{{{sel}, code="500"}}',
        f"last_over_time(test_gauge{{{sel}}}[1m])",
        f"test_gauge{{{sel}}} * 2"])]
    replay(corrupt, [*asked, raw])
    combined, _ = sources(corrupt)
    gauge, five_xx, _, _ = combined.query_range_many(raw)
    assert sum(r.requests for r in combined.query_range_many(raw)) == 1
    assert [s.labels["__name__"] for s in gauge.series] == ["test_gauge"] * 2
    assert PART_LABEL not in gauge.series[0].labels
    a = gauge.series[0]
    assert not a.present.all() and a.present.any()  # absent steps stay absent
    value = {"nan": math.nan, "posinf": math.inf, "neginf": -math.inf}[name]
    assert np.array_equal(a.values[a.present], np.full(a.present.sum(), value), equal_nan=True)
    assert five_xx.series[0].present.all()


def test_groups_on_different_grids_each_go_as_one_and_keep_the_callers_order(lab):
    sel = f'{HASH}="{ARGO_STABLE}"'
    end = lab.anchor - 300
    grids = [(end - 600, end, 60), (end - 1200, end, 60), (end - 600, end, 30),
             (end - 7000, end, 60)]  # the last: 117 steps, too long to combine
    exprs = [f"sum(increase(http_requests_total{{{sel}}}[1m]))",
             f"sum by (code) (increase(http_requests_total{{{sel}}}[1m]))",
             f"sum by (le) (increase(http_request_duration_seconds_bucket{{{sel}}}[1m]))"]
    queries = [RangeQuery((g, e), expr, *grid, f"m{e}")
               for e, expr in enumerate(exprs) for g, grid in enumerate(grids)]
    combined, separate = sources(lab.url)
    got = combined.query_range_many(queries)
    assert_same(got, separate.query_range_many(queries))
    assert sum(r.requests for r in got) == 3 + 3  # one per short grid, separately on the long
    assert math.isclose(sum(r.seconds for r in got), sum(
        r.seconds for r in got if r.requests), rel_tol=1e-12)


# -- rejections: the same error, naming the same metric, and one round trip next time ---------


def test_a_rejected_part_answers_or_fails_exactly_as_alone(lab):
    """Prometheus rejects a union whose part is not an instant vector or does not parse; the
    parts then go alone: a scalar part answers (a range query makes it a series), a broken
    one fails naming its metric, as before."""
    sel = f'{HASH}="{ARGO_STABLE}"'
    end = lab.anchor - 300

    def ask(source: PrometheusSource, broken: str) -> list[QueryResult] | SourceError:
        queries = [RangeQuery("a", f"sum(rate(http_requests_total{{{sel}}}[1m]))",
                              end - 600, end, 60, "requests"),
                   RangeQuery("b", broken, end - 600, end, 60, "broken"),
                   RangeQuery("c", "vector(1)", end - 600, end, 60, "one")]
        try:
            return source.query_range_many(queries)
        except SourceError as exc:
            return exc

    for broken, outcome in [("sum(rate(http_requests_total[1m]", QueryRejected),  # syntax
                            ('"text"', QueryRejected),  # a string
                            ("scalar(vector(1))", list)]:  # not a vector, but answers
        combined, separate = sources(lab.url)
        was, now = ask(separate, broken), ask(combined, broken)
        assert isinstance(was, outcome) and isinstance(now, outcome)
        if isinstance(was, SourceError):
            assert isinstance(now, SourceError)
            assert type(now) is type(was) and now.metric == was.metric == "broken"
            assert now.message == was.message and "metric 'broken'" in now.message
        else:
            assert isinstance(now, list)
            assert_same(now, was)
            assert sum(r.requests for r in now) == 1 + 3  # the rejected union, then 3 alone
            again = ask(combined, broken)  # remembered: straight to the parts
            assert isinstance(again, list) and sum(r.requests for r in again) == 3


class Upstream:
    """Forwards every query to the real Prometheus and counts them; `reject_unions` answers a
    query using label_replace with that status, as a backend without it (400) or over its
    sample limit (422) would; `garbage` answers every query with that JSON and `status`."""

    def __init__(self, target: str, reject_unions: int = 0,
                 garbage: object | None = None, status: int = 200) -> None:
        self.seen: list[str] = []
        self.garbage, self.status = garbage, status  # changeable between requests
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                query = parse_qs(raw.decode())["query"][0]
                upstream.seen.append(query)
                if upstream.garbage is not None:
                    self._send(upstream.status, json.dumps(upstream.garbage).encode())
                elif reject_unions and "label_replace" in query:
                    self._send(reject_unions, b'{"status":"error","errorType":"bad_data",'
                                              b'"error":"unknown function label_replace"}')
                else:
                    req = urllib.request.Request(target + self.path, data=raw, method="POST")
                    with urllib.request.urlopen(req) as answer:
                        self._send(answer.status, answer.read())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Upstream:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _audits(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if '"event":"analysis"' in line]


@pytest.mark.parametrize("status", [400, 422])
def test_a_backend_rejecting_unions_pays_two_round_trips_once_then_one(lab, capsys, status):
    body = {"config": "http", "mode": "fixed", "window": lab.window(10),
            **_sides(argo_hash("errors3x"), ARGO_STABLE)}
    direct = create_app(load_settings(prometheus_url=lab.url, config_dir=None)).test_client()
    expected = direct.post("/v1/analyze", json=body).json
    with Upstream(lab.url, reject_unions=status) as upstream:
        client = create_app(load_settings(prometheus_url=upstream.url,
                                          config_dir=None)).test_client()
        capsys.readouterr()
        answers = [client.post("/v1/analyze", json=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    for a in answers:
        assert a.json["verdict"] == expected["verdict"] == "fail"
        assert a.json["checks"] == expected["checks"]
    # the first poll: the two unions of five (rejected) and the ten parts; later polls only
    # the parts (a cached poll reads a few steps, so its queries would combine without the memo)
    unions = [q for q in upstream.seen if "label_replace" in q]
    assert len(unions) == 2 and len(upstream.seen) == 2 + 10 + 10 + 10
    assert [e["queries"] for e in _audits(capsys)] == [12, 10, 10]


def test_the_setting_off_sends_each_query_alone_and_the_audit_counts_requests(lab, capsys):
    body = {"config": "http", "mode": "fixed", "window": lab.window(10),
            **_sides(argo_hash("healthy"), ARGO_STABLE)}
    counts = {}
    for combine in (True, False):
        with Upstream(lab.url) as upstream:
            client = create_app(load_settings(prometheus_url=upstream.url, config_dir=None,
                                              prometheus_combine_queries=combine)).test_client()
            capsys.readouterr()
            assert client.post("/v1/analyze", json=body).status_code == 200
            (audit,) = _audits(capsys)
            assert audit["queries"] == len(upstream.seen)
            counts[combine] = len(upstream.seen)
            assert all(("label_replace" in q) is combine for q in upstream.seen)
    assert counts == {True: 2, False: 10}  # combined: two unions of five, sent at once


def test_a_repeated_poll_goes_as_two_unions_at_once_and_judges_as_one(lab, capsys):
    """Prometheus evaluates one request on one goroutine: a poll's ten queries go as two
    unions of five, sent at once, and the answer is the one a single union gives."""
    body = {"config": "http", **_sides(argo_hash("slow"), ARGO_STABLE)}  # sequential
    one = create_app(load_settings(prometheus_url=lab.url, config_dir=None,
                                   prometheus_union_requests=1)).test_client()
    with Upstream(lab.url) as upstream:
        client = create_app(load_settings(prometheus_url=upstream.url,
                                          config_dir=None)).test_client()
        for _ in range(2):
            assert client.post("/v1/analyze", json=body).status_code == 200
        upstream.seen.clear()
        capsys.readouterr()
        split = client.post("/v1/analyze", json=body).json
        (audit,) = _audits(capsys)
    for _ in range(2):
        single = one.post("/v1/analyze", json=body).json
    (_, single_audit) = _audits(capsys)
    assert audit["queries"] == len(upstream.seen) == 2 and single_audit["queries"] == 1
    assert [q.count(PART_LABEL) for q in upstream.seen] == [5, 5]
    assert split["verdict"] == single["verdict"] == "fail"
    assert split["checks"] == single["checks"]


@pytest.mark.parametrize("parts, steps, spread, runs", [
    (10, 6, 2, [5, 5]),     # a repeated poll of `http`: two halves
    (10, 6, 1, [10]),       # the setting at 1: one union
    (10, 6, 4, [3, 3, 4]),  # each run keeps at least three parts
    (5, 6, 2, [5]),         # too few parts to cut
    (10, 31, 1, [5, 5]),    # a 30-minute window: two runs for MAX_POINTS, of equal size
    (19, 31, 2, [6, 6, 7]),  # trading's 19 distinct queries: MAX_POINTS cuts it in three
    (4, 100, 2, [1, 1, 1, 1]),  # too long a grid to combine at all
])
def test_a_group_is_cut_into_near_equal_runs_in_the_callers_order(parts, steps, spread, runs):
    queries = [RangeQuery(i, f"q{i}", 0, (steps - 1) * 60, 60, f"m{i}") for i in range(parts)]
    batches = plan(queries, RejectionMemo(), spread=spread)
    assert [len(b.members) for b in batches] == runs
    assert [i for b in batches for i in b.members] == list(range(parts))
    assert all(b.exprs == tuple(f"q{i}" for i in b.members) for b in batches)


@pytest.mark.parametrize("metric", [
    {"le": "1"},  # no tag: a backend that dropped it
    {PART_LABEL: "17"},  # a part the query did not have
    {PART_LABEL: "zero"}])
def test_garbage_in_a_combined_answer_is_503_never_data(lab, metric):
    body = {"config": "http", "mode": "fixed", "window": lab.window(10),
            **_sides(argo_hash("healthy"), ARGO_STABLE)}
    start = lab.window(10)["start"]
    garbage = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": metric, "values": [[start + 60, "1"]]}]}}
    with Upstream(lab.url, garbage=garbage) as upstream:
        client = create_app(load_settings(prometheus_url=upstream.url,
                                          config_dir=None)).test_client()
        r = client.post("/v1/analyze", json=body)
    assert r.status_code == 503, r.json
    assert r.json["error"] == "metrics_source_unavailable"
    assert "COMBINE_QUERIES" in r.json["message"]


@pytest.mark.parametrize("status, error", [(503, "metrics_source_unavailable"),
                                           (500, "metrics_source_unavailable")])
def test_a_failing_combined_query_is_not_asked_again_part_by_part(lab, status, error):
    """Only a rejection (4xx) sends the parts alone: a 5xx fails the analysis as before,
    after the first round of requests (the two unions, sent at once), so the wait cannot
    double."""
    body = {"config": "http", "mode": "fixed", "window": lab.window(10),
            **_sides(argo_hash("healthy"), ARGO_STABLE)}
    failure = {"status": "error", "errorType": "internal", "error": "boom"}
    with Upstream(lab.url, garbage=failure, status=status) as upstream:
        client = create_app(load_settings(prometheus_url=upstream.url,
                                          config_dir=None)).test_client()
        r = client.post("/v1/analyze", json=body)
    assert r.status_code == 503 and r.json["error"] == error
    assert 1 <= len(upstream.seen) <= 2 and all("label_replace" in q for q in upstream.seen)


def test_a_union_refused_with_its_parts_is_not_remembered_as_uncombinable(lab, capsys):
    """Thanos refuses a query 422 while a store is down (partial_response=false): the union
    and each part alike. That says nothing about unions, so once the store is back the next
    poll sends its combined requests again, not ten for as long as the rollout runs."""
    body = {"config": "http", "mode": "fixed", "window": lab.window(10),
            **_sides(argo_hash("healthy"), ARGO_STABLE)}
    down = {"status": "error", "errorType": "execution", "error": "store 10.0.0.7 unavailable"}
    with Upstream(lab.url, garbage=down, status=422) as upstream:
        client = create_app(load_settings(prometheus_url=upstream.url,
                                          config_dir=None)).test_client()
        failed = client.post("/v1/analyze", json=body)
        upstream.garbage = None
        capsys.readouterr()
        recovered = client.post("/v1/analyze", json=body)
        (audit,) = _audits(capsys)
    assert failed.status_code == 502 and "verdict" not in failed.json, failed.json
    assert recovered.status_code == 200, recovered.json
    assert audit["queries"] == 2  # two unions (the parts refused before ran alone)
