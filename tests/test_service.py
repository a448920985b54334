"""The service around the analysis: auth, audit trail, own metrics, readiness, configs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from openapi_spec_validator import validate as validate_openapi

from webhook.app import create_app
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.settings import load_settings


def payload(lab, version: str = "healthy") -> dict:
    return {"canary": {"rollouts_pod_template_hash": argo_hash(version)},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60)}


def test_api_tokens_guard_analyze_with_bearer(lab):
    client = create_app(load_settings(prometheus_url=lab.url, api_tokens="t1,t2")).test_client()
    assert client.post("/v1/analyze", json=payload(lab)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/v1/analyze", json=payload(lab), headers=wrong).status_code == 401
    ok = client.post("/v1/analyze", json=payload(lab), headers={"Authorization": "Bearer t2"})
    assert ok.status_code == 200
    assert "t2" not in ok.get_data(as_text=True)
    # Flagger cannot send headers: hooks stay reachable (protect them with a NetworkPolicy)
    r = client.post("/v1/hooks/post-rollout", json={"name": "a", "namespace": "b"})
    assert r.status_code == 200


def test_every_analysis_leaves_one_json_audit_line(client, lab, capsys):
    capsys.readouterr()
    r = client.post("/v1/analyze", json=payload(lab, "errors3x"),
                    headers={"Authorization": "Bearer should-not-be-logged",
                             "User-Agent": "Go-http-client/1.1"})
    assert r.status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if '"event":"analysis"' in line]
    assert len(lines) == 1
    entry = lines[0]
    assert entry["analysis_id"] == r.json["analysis_id"]
    assert entry["caller"] == "argo" and entry["route"] == "POST /v1/analyze"
    assert entry["config"] == "http" and entry["verdict"] == "fail"
    assert entry["window"] == r.json["window"]
    # HTTP requests sent: the six queries share a grid, so fewer requests than queries
    assert 1 <= entry["queries"] < 6 and entry["query_seconds"] > 0 and entry["duration_s"] > 0
    assert "error_ratio" in entry["reason"]
    assert "should-not-be-logged" not in json.dumps(entry)


def test_own_metrics_count_verdicts_and_upstream_errors(client, lab):
    client.post("/v1/analyze", json=payload(lab, "slow"))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'canary_judge_analyses_total{caller="api",config="http",verdict="fail"}' in text
    assert "canary_judge_analysis_duration_seconds_bucket" in text
    assert "canary_judge_upstream_queries_total" in text


def _unmatched(client, caller: str, side: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    name = (f'canary_judge_unmatched_selectors_total{{caller="{caller}",config="http",'
            f'side="{side}"}} ')
    return next((float(x.removeprefix(name)) for x in text.splitlines()
                 if x.startswith(name)), 0.0)


def test_a_selector_that_matches_nothing_is_counted_and_logged(client, lab, capsys):
    """A Flagger Canary whose label scheme is not the data's (`provider: app` for pods
    labelled otherwise) finds no series on either side: inconclusive, which Flagger's rollout
    hook answers 200, so Flagger shifts weight up to maxWeight with nothing judged. The
    verdict cannot say more; the judge counts such analyses (an alert of the manifests warns
    when it lasts) and its audit line says which side matched nothing."""
    before = {side: _unmatched(client, "flagger", side) for side in ("canary", "stable")}
    capsys.readouterr()
    r = client.post("/v1/hooks/rollout", json={
        "name": "nosuch", "namespace": "shop", "phase": "Progressing",
        "metadata": {"config": "http", "start": str(lab.window(60)["start"]),
                     "end": str(lab.window(60)["end"])}})
    assert r.status_code == 200 and r.get_data(as_text=True).startswith("inconclusive")
    for side in ("canary", "stable"):
        assert _unmatched(client, "flagger", side) == before[side] + 1, side
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()
               if '"event":"analysis"' in x]
    assert line["unmatched"] == ["canary", "stable"] and line["verdict"] == "inconclusive"
    # a stable that matches nothing beside a canary that does: only the stable is counted
    was = {side: _unmatched(client, "api", side) for side in ("canary", "stable")}
    wrong = {**payload(lab), "stable": {"rollouts_pod_template_hash": "nosuch"}}
    assert client.post("/v1/analyze", json=wrong).json["verdict"] == "inconclusive"
    assert _unmatched(client, "api", "stable") == was["stable"] + 1
    assert _unmatched(client, "api", "canary") == was["canary"]
    # a judged analysis counts nothing and its audit line has no `unmatched`
    capsys.readouterr()
    assert client.post("/v1/analyze", json=payload(lab)).json["verdict"] == "pass"
    assert _unmatched(client, "api", "stable") == was["stable"] + 1
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()
               if '"event":"analysis"' in x]
    assert "unmatched" not in line


def test_readiness_follows_the_metrics_source(client, lab):
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json["configs"] == ["healthcare", "http", "trading"]
    assert client.get("/readyz?source=once").status_code == 200
    down = create_app(load_settings(prometheus_url="http://127.0.0.1:9")).test_client()
    r = down.get("/readyz")
    assert r.status_code == 503 and "metrics source" in r.json["problems"][0]
    assert down.get("/healthz").status_code == 200  # liveness must not restart us for it
    # the probe of the manifests: a source that never answered keeps the pod out
    r = down.get("/readyz?source=once")
    assert r.status_code == 503
    assert "has not answered since the pod started" in r.json["problems"][0]
    r = down.get("/readyz?source=sometimes")
    assert r.status_code == 400 and r.json["field"] == "source"
    assert "'once'" in r.json["message"] and "'sometimes'" in r.json["message"]


CUSTOM = """
name: checkout
description: error ratio only, on a custom metric name
vars: {requests_metric: http_requests_total}
defaults: {alpha: 0.01, lookback: 30m, step: 30s}
metrics:
  - name: errors
    kind: ratio
    bad: sum(increase({{requests_metric}}{ {{selector}}, code="500" }[{{step}}]))
    total: sum(increase({{requests_metric}}{ {{selector}} }[{{step}}]))
    tolerance: {relative: 0.25}
    critical: true
"""


def test_config_dir_adds_configs_and_reports_broken_files(lab, tmp_path):
    (tmp_path / "checkout.yaml").write_text(CUSTOM)
    (tmp_path / "broken.yaml").write_text("name: broken\nmetrics: [{kind: nope}]\n")
    (tmp_path / "notes.txt").write_text("ignored")
    client = create_app(load_settings(prometheus_url=lab.url,
                                      config_dir=str(tmp_path))).test_client()
    listed = client.get("/v1/configs").json
    assert [c["name"] for c in listed["configs"]] == ["checkout", "healthcare", "http", "trading"]
    assert listed["errors"][0]["source"].endswith("broken.yaml")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "broken.yaml" in ready.json["problems"][0]
    assert client.get("/v1/configs/checkout").json["defaults"]["step"] == "30s"
    assert client.get("/v1/configs/nope").status_code == 404
    body = {**payload(lab, "errors3x"), "config": "checkout"}
    r = client.post("/v1/analyze", json=body)
    assert r.status_code == 200
    assert r.json["config"] == "checkout" and r.json["verdict"] == "fail"
    assert [c["name"] for c in r.json["checks"]] == ["errors"]


def test_openapi_documents_every_route(client):
    doc = client.get("/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    validate_openapi(doc)  # raises on any violation of the OpenAPI 3.1 schema
    for route in ("/v1/analyze", "/v1/hooks/{type}"):
        responses = doc["paths"][route]["post"]["responses"]
        assert {"400", "403", "413", "415", "500", "503", "504"} <= set(responses), route
    for path in ("/v1/analyze", "/v1/analyze/{config}", "/v1/hooks/{type}", "/v1/configs",
                 "/v1/configs/{name}", "/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert path in doc["paths"], path
    verdict = doc["components"]["schemas"]["Verdict"]
    assert {"verdict", "pass", "score", "reason", "checks"} <= set(verdict["properties"])
    hook_types = doc["paths"]["/v1/hooks/{type}"]["post"]["parameters"][0]["schema"]["enum"]
    assert len(hook_types) == 8


def test_openapi_shows_each_request_bound_the_judge_enforces(client, lab):
    """A client generated from /openapi.json learned none of the work bounds (a request's
    labels, vars and matchers, its metrics, a histogram's quantiles, a metric's own step):
    each is shown, and one past the bound shown is the 400 naming the field."""
    doc = client.get("/openapi.json").json
    validate_openapi(doc)
    schemas = doc["components"]["schemas"]
    request = schemas["AnalysisRequest"]["properties"]
    labels, matchers = request["canary"]["anyOf"]
    assert request["stable"]["anyOf"] == [labels, matchers]
    vars_ = request["vars"]
    listed, named, _ = request["metrics"]["anyOf"]
    override = schemas["MetricOverride"]["properties"]
    quantiles, step = override["quantiles"], override["step"]
    alpha = request["alpha"]["anyOf"][0]
    assert alpha["minimum"] == 1e-12 and override["alpha"]["anyOf"][0]["minimum"] == 1e-12

    def refused(change: dict, field: str) -> None:
        r = client.post("/v1/analyze", json={**payload(lab), **change})
        assert r.status_code == 400 and r.json["field"] == field, (field, r.json)

    most = labels["maxProperties"]
    refused({"canary": {f"l{i}": "x" for i in range(most + 1)}}, "canary")
    refused({"stable": {"pod": "x" * (labels["additionalProperties"]["maxLength"] + 1)}},
            "stable.pod")
    long_name = "p" * (labels["propertyNames"]["maxLength"] + 1)
    refused({"stable": {long_name: "x"}}, "stable." + "p" * 40)
    refused({"canary": 'pod=~"' + "x" * matchers["maxLength"] + '"'}, "canary")
    refused({"vars": {f"v{i}": "x" for i in range(vars_["maxProperties"] + 1)}}, "vars")
    refused({"vars": {"v": "x" * (vars_["additionalProperties"]["maxLength"] + 1)}}, "vars.v")
    refused({"metrics": [{"name": f"m{i}"} for i in range(listed["maxItems"] + 1)]}, "metrics")
    refused({"metrics": {f"m{i}": {} for i in range(named["maxProperties"] + 1)}}, "metrics")
    refused({"alpha": alpha["minimum"] * 0.99}, "alpha")
    histogram = {"kind": "histogram", "query": "sum by (le) (x_bucket{ {{selector}} })"}
    too_many = [round(0.5 + i / 100, 2) for i in range(quantiles["maxItems"] + 1)]
    refused({"metrics": {"h": {**histogram, "quantiles": too_many}}}, "metrics.h.quantiles")
    points = step["x-max-points-per-query"]
    # a whole step past the bound: the judged window is whole steps ending at `end`
    window = {"end": lab.window(60)["end"], "lookback": points + 60, "step": 60}
    refused({"window": window, "metrics": {"g": {
        "kind": "series", "query": "x{ {{selector}} }", "step": "1s"}}}, "metrics.g.step")
    window["lookback"] = points  # at the bound: no 400 (and no series: inconclusive)
    r = client.post("/v1/analyze", json={**payload(lab), "window": window, "metrics": {"g": {
        "kind": "series", "query": "x{ {{selector}} }", "step": "1s"}}})
    assert r.status_code == 200, r.json


def _request_validator(doc: dict):
    """A JSON Schema validator of /openapi.json's AnalysisRequest, its refs resolved in the
    document (as a generated client would check a body before sending it)."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("doc", Resource.from_contents(
        doc, default_specification=DRAFT202012))
    schema = {"$ref": "doc#/components/schemas/AnalysisRequest"}
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_openapi_accepts_the_windows_callers_send(client, lab):
    """The window's times and durations were `number` in /openapi.json, though the README and
    every example send `"10m"` and RFC 3339 times: a client generated from the document refused
    them before sending. Each form the judge accepts is one the document accepts."""
    validator = _request_validator(client.get("/openapi.json").json)
    end = lab.window(60)["end"]
    rfc3339 = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    windows = [{"lookback": "10m", "step": "60s"}, {"lookback": "1h30m", "step": 60},
               {"end": rfc3339, "lookback": 600}, {"end": str(end), "lookback": "600"},
               {"start": end - 600, "end": end, "step": "1m", "warmup": "2m"},
               {"end": rfc3339, "lookback": "10m", "warmup": 0, "not_before": end - 300}]
    for window in windows:
        body = {**payload(lab), "window": window}
        assert not list(validator.iter_errors(body)), window
        r = client.post("/v1/analyze", json=body)
        assert r.status_code == 200, (window, r.json)
    # what the judge refuses as a duration or a time, the document refuses too
    for window in ({"lookback": "10 minutes"}, {"end": "yesterday"}, {"step": -60}):
        body = {**payload(lab), "window": window}
        assert list(validator.iter_errors(body)), window
        assert client.post("/v1/analyze", json=body).status_code == 400, window


def test_every_shipped_template_body_is_a_request_the_document_accepts(client):
    """What Argo sends from each shipped AnalysisTemplate (its jsonBody, args at their
    defaults: a value the request restricts, `traffic_split`, must be one it accepts; args
    without a default, strings either way) is a valid AnalysisRequest by /openapi.json."""
    from argo_semantics import resolve_args
    from k8s_files import template_index

    validator = _request_validator(client.get("/openapi.json").json)
    bodies = []
    for (kind, name), template in template_index().items():
        args = {a["name"]: str(a.get("value", f"<{a['name']}>"))
                for a in template["spec"].get("args", [])}
        bodies += [(f"{kind}/{name}/{m['name']}", resolve_args(m["provider"]["web"]["jsonBody"],
                                                               args))
                   for m in template["spec"]["metrics"] if "web" in m["provider"]]
    assert len(bodies) >= 6
    for label, body in bodies:
        assert not [e.message for e in validator.iter_errors(body)], label


class _BrokenAdapter:
    """A metrics-source adapter with a defect: it raises what no SourceError wraps."""

    def query_range_many(self, queries, deadline=None):
        raise KeyError("a defect in an adapter")

    def ready(self):
        return True, "ok"


def test_a_defect_of_the_judge_is_a_500_counted_and_audited_never_a_verdict(lab, capsys):
    app = create_app(load_settings(prometheus_url=lab.url), source=_BrokenAdapter())
    client = app.test_client()

    def internal_errors() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return float(text.split("\ncanary_judge_internal_errors_total ")[1].split()[0])

    before = internal_errors()
    capsys.readouterr()
    r = client.post("/v1/analyze", json=payload(lab))
    assert r.status_code == 500 and r.json["error"] == "internal"
    assert "verdict" not in r.json and "KeyError" not in r.json["message"]
    assert internal_errors() == before + 1  # what the CanaryJudgeInternalErrors alert reads
    audit = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if '"event":"analysis"' in line]
    assert [(a["status"], a["verdict"]) for a in audit] == [(500, "error")]
    assert "KeyError" in audit[0]["reason"]
    # Flagger's rollback hook: a defect never rolls back
    r = client.post("/v1/hooks/rollback", json={"name": "podinfo", "namespace": "shop"})
    assert r.status_code == 500 and internal_errors() == before + 2


def test_a_quieter_log_keeps_the_audit_trail(client, lab, capsys):
    """CANARY_JUDGE_LOG_LEVEL=warning silences diagnostics, not the record of each analysis."""
    import logging

    from webhook.observability import configure_logging

    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("warning")
        capsys.readouterr()
        r = client.post("/v1/analyze", json=payload(lab))
        logging.getLogger("webhook").info("a diagnostic line")
        out = capsys.readouterr().out
    finally:
        root.setLevel(level)
    assert r.status_code == 200
    assert [json.loads(line)["analysis_id"] for line in out.splitlines()
            if '"event":"analysis"' in line] == [r.json["analysis_id"]]
    assert "a diagnostic line" not in out
