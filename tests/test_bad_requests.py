"""Bad input gets a 400 that names the field and says how to fix it; routes never answer a
stray 200 (a 200 on Flagger's rollback hook rolls a canary back)."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

import pytest

from webhook.lab.rollouts import ARGO_STABLE

GOOD = {"canary": {"rollouts_pod_template_hash": "a1"},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}}


@pytest.mark.parametrize(("payload", "field", "hint"), [
    ({"canary": {"app": "a"}}, "stable", "required"),
    ({**GOOD, "config": "nope"}, "config",
     "unknown config 'nope'; this server has: healthcare, http, trading"),
    ({**GOOD, "window": {"step": "soon"}}, "window.step", "use e.g. 30s"),
    ({**GOOD, "window": {"start": "yesterday"}}, "window.start", "RFC 3339"),
    ({**GOOD, "window": {"not_before": "after lunch"}}, "window.not_before", "RFC 3339"),
    ({**GOOD, "window": {"start": 2000, "end": 1000}}, "window.end", "after window.start"),
    ({**GOOD, "window": {"start": 0, "end": 86400 * 30, "step": 1}}, "window.step", "at most"),
    ({**GOOD, "window": {"start": 0, "end": 10800, "step": 1}}, "window.step",
     "1s over 3h is 10,800 steps per query; at most 2,000 (CANARY_JUDGE_MAX_WINDOW_POINTS); "
     "use step >= 6s or a shorter window"),
    ({**GOOD, "alpha": "0.9"}, "alpha", "less than 0.5"),
    ({**GOOD, "mode": "yolo"}, "mode", "fixed"),
    ({**GOOD, "canary": 'app="x"} or vector(1) #'}, "canary", "label matchers"),
    ({**GOOD, "canary": {"bad-label": "x"}}, "canary", "not a valid Prometheus label name"),
    ({**GOOD, "stable": GOOD["canary"]}, "stable", "same series"),
    ({**GOOD, "colour": "blue"}, "colour", "unknown field"),
    ({**GOOD, "metrics": [{"name": "nope", "critical": True}]}, "metrics.nope", "has no metric"),
    ({**GOOD, "vars": {"latency_metric": "up) or vector(1"}}, "vars.latency_metric",
     "must match"),
])
def test_bad_body_is_400_naming_the_field(client, payload, field, hint):
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field
    assert hint in r.json["message"]
    assert r.json["message"].startswith(field.split(".")[0])


def test_a_start_in_the_future_is_named_with_the_time_it_is_now(client):
    """A start an hour ahead (a wrong time zone, a templated date) was refused as
    "window.end must be after window.start", blaming the end nobody had given."""
    start = math.floor(time.time()) + 3600
    for window in ({"start": start}, {"start": start, "end": start + 600}):
        r = client.post("/v1/analyze", json={**GOOD, "window": window})
        assert r.status_code == 400 and r.json["field"] == "window.start", r.json
        shown = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert re.fullmatch(
            rf"window\.start: {shown} is in the future \(it is now \d{{4}}-\d\d-\d\dT"
            r"\d\d:\d\d:\d\dZ\); give a time before now, or leave start out",
            r.json["message"]), r.json["message"]


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


NOW = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # "it is now …", whatever the second


def test_an_end_in_the_future_says_the_time_and_the_fix_on_every_path(client):
    """An end an hour ahead was refused by an analysis as the bare "window.end is in the
    future" and by the gates alone as "…; give a time that has passed (a decision to replay),
    or none for now": two texts of one refusal, neither saying what time it is (as a future
    start's does). One text now, on every path."""
    end = math.floor(time.time()) + 3600
    want = (rf"window\.end: {_utc(end)} is in the future \(it is now {NOW}\); give a time "
            r"that has passed \(a decision to replay\), or leave end out to judge up to now")
    sides = {"canary.rollouts_pod_template_hash": "a1",
             "stable.rollouts_pod_template_hash": ARGO_STABLE}
    for r in (client.post("/v1/analyze", json={**GOOD, "window": {"end": end}}),
              client.post("/v1/analyze", json={**GOOD, "window": {"end": end, "step": "30s"}}),
              client.get("/v1/analyze/http", query_string={**sides, "end": end}),
              client.post("/v1/gates", json={**GOOD, "window": {"end": end}})):
        assert r.status_code == 400 and r.json["field"] == "window.end", r.json
        assert re.fullmatch(want, r.json["message"]), r.json["message"]


def test_a_start_and_lookback_ending_in_the_future_names_the_lookback(client):
    """A start ten minutes ago and an hour's lookback end 50 minutes ahead: refused as
    "window.end is in the future", an end nobody gave; "give an end that has passed" would
    not be the fix either. The lookback is."""
    start = math.floor(time.time()) - 600
    r = client.post("/v1/analyze", json={**GOOD, "window": {"start": start, "lookback": "1h"}})
    assert r.status_code == 400 and r.json["field"] == "window.lookback", r.json
    assert re.fullmatch(
        rf"window\.lookback: window\.start \({_utc(start)}\) plus window\.lookback \(1h\) "
        rf"ends at {_utc(start + 3600)}, in the future \(it is now {NOW}\); give a shorter "
        r"lookback, or leave lookback out to judge up to now", r.json["message"]), r.json


def test_a_request_without_either_side_names_both(client):
    """`GET /v1/analyze/http` with no selector said "canary: required field is missing (and
    1 more)": the person added canary and was refused again for stable."""
    for r in (client.get("/v1/analyze/http?start=1000&end=2000"),
              client.post("/v1/analyze", json={"config": "http"})):
        assert r.status_code == 400 and r.json["field"] == "canary", r.json
        assert r.json["message"] == "canary, stable: required fields are missing"


def test_promqls_double_equals_in_a_selector_says_to_use_a_single_one(client):
    """`app=="web"` (PromQL's comparison, written as a matcher) was "expected label matchers
    like app="web" …, could not parse near 'app=="web"'", which did not say what was wrong."""
    want = 'canary.app: use = (or =~), not ==, in a label matcher: app="web"'
    r = client.post("/v1/analyze", json={**GOOD, "canary": 'namespace="shop", app == "web"'})
    assert r.status_code == 400 and r.json["field"] == "canary.app", r.json
    assert r.json["message"] == want
    r = client.get('/v1/analyze/http?canary=app=="web"&stable.app=b')
    assert r.status_code == 400 and r.json["message"] == want, r.json


def test_non_json_body_is_400(client):
    r = client.post("/v1/analyze", data="not json", content_type="application/json")
    assert r.status_code == 400 and r.json["field"] == "body"
    r = client.post("/v1/analyze", json=["a", "list"])
    assert r.status_code == 400


def test_unknown_get_parameter_is_named(client):
    r = client.get("/v1/analyze/http?canary.app=a&stable.app=b&lookbak=10m")
    assert r.status_code == 400 and r.json["field"] == "lookbak"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 404), ("GET", "/v2/analyze", 404), ("POST", "/v1/hooks/", 404),
    ("POST", "/v1/hooks/rolback", 404), ("GET", "/v1/hooks/rollback", 405),
    ("GET", "/v1/analyze", 405), ("DELETE", "/v1/analyze", 405), ("POST", "/healthz", 405),
    ("POST", "/rollback", 404),
])
def test_unknown_routes_and_methods_are_never_200(client, method, path, status):
    r = client.open(path, method=method, json={"name": "a", "namespace": "b"})
    assert r.status_code == status
    assert r.status_code not in (200, 201, 202)


def test_huge_body_is_rejected(client):
    r = client.post("/v1/analyze", data="x" * (300 * 1024), content_type="application/json")
    assert r.status_code == 413 and r.is_json


T = {"config": "trading", "canary": {"rollouts_pod_template_hash": "thealthy"},
     "stable": {"rollouts_pod_template_hash": "t0stable"}}


@pytest.mark.parametrize(("payload", "field", "hint"), [
    # each quantile is a check with sequential tests over every step: 20,000 held a worker
    # 85 s and 2.3 GB
    ({**GOOD, "metrics": {"latency": {"quantiles": [0.5 + i / 100 for i in range(11)]}}},
     "metrics.latency.quantiles", "11 quantiles; at most 10 per metric"),
    ({**GOOD, "metrics": [{"name": "latency", "quantiles": [0.99, 0.99]}]},
     "metrics.latency.quantiles", "each quantile at most once"),
    # 500 inline metrics took 8 s of judging past the 8 s deadline
    ({**GOOD, "metrics": [{"name": f"m{i}", "weight": 1} for i in range(33)]}, "metrics",
     "33 entries; at most 32"),
    ({**GOOD, "canary": {"pod": "w" * 1025}}, "canary.pod", "1,025 characters; at most 1,024"),
    ({**GOOD, "vars": {"requests_metric": "m" * 2000}}, "vars.requests_metric",
     "2,000 characters; at most 1,024"),
    ({**GOOD, "stable": 'pod=~"' + "w|" * 2100 + '"'}, "stable",
     "4,207 characters of matchers; at most 4,096"),
    ({**GOOD, "canary": {f"l{i}": "x" for i in range(33)}}, "canary", "33 entries; at most 32"),
    # a metric's own step that Prometheus refuses to answer (past 11,000 points) was its 502
    ({**T, "window": {"start": 0, "end": 600, "step": 60},
      "metrics": {"slippage_bps": {"step": "1ms"}}}, "metrics.slippage_bps.step",
     "1ms over 10m is 600,000 points per query; Prometheus answers at most 11,000; "
     "use step >= 1s"),
    # read on every analysis: a 500 each time
    ({**T, "metrics": {"slippage_bps": {"step": "0s"}}}, "metrics.slippage_bps.step",
     "duration must be positive"),
    ({**T, "metrics": {"market_impact": {"step": "99999999999h"}}}, "metrics.market_impact.step",
     "not a duration up to 10 years"),
])
def test_requests_past_the_work_budget_are_400_naming_field_limit_and_fix(client, lab, payload,
                                                                          field, hint):
    window = payload.get("window")
    if window is not None and window.get("start") == 0:  # inside the planted data
        end = lab.anchor - 300
        window = {**window, "start": end - window["end"], "end": end}
    r = client.post("/v1/analyze", json={**payload, "window": window or lab.window(30)})
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.json["field"] == field, r.json
    assert hint in r.json["message"], r.json
    assert r.json["message"].startswith(field + ": ")


def test_a_get_parameter_given_twice_is_named(client, lab):
    """The first of `alpha=0.01&alpha=0.3` was used without a word."""
    r = client.get("/v1/analyze/http?canary.rollouts_pod_template_hash=a1"
                   f"&stable.rollouts_pod_template_hash={ARGO_STABLE}&alpha=0.01&alpha=0.3")
    assert r.status_code == 400 and r.json["field"] == "alpha"
    assert r.json["message"] == "alpha: given 2 times; give it once"
    r = client.get(f"/v1/analyze/http?canary.app=a&canary.app=b&stable.app={ARGO_STABLE}")
    assert r.status_code == 400 and r.json["field"] == "canary.app"


@pytest.mark.parametrize(("metrics", "hint"), [
    ("[" * 3000 + "]" * 3000, "metrics: JSON nested deeper than 32 levels"),  # was a 500
    ('{"latency": {"weight": 1}, "latency": {"weight": 9}}',
     "metrics: key 'latency' appears twice in one object"),
    ('[{"name": "latency", "weight": NaN}]', "metrics: NaN is not JSON"),
    ("[{", "metrics: not valid JSON"),
])
def test_the_get_forms_metrics_are_read_as_strictly_as_a_body(client, metrics, hint):
    r = client.get("/v1/analyze/http", query_string={
        "canary.app": "a", "stable.app": "b", "metrics": metrics})
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.json["field"] == "metrics" and r.json["message"].startswith(hint), r.json


def test_a_kubernetes_label_name_gets_its_prometheus_spelling(client):
    """Argo's pods carry `rollouts-pod-template-hash`; Prometheus' Kubernetes discovery
    stores it as `rollouts_pod_template_hash`. The label map said only "is not a valid
    Prometheus label name", the raw matcher only "could not parse near
    'rollouts-pod-template-hash=\\"7f'": neither named the spelling that works."""
    fix = ("in Prometheus, Kubernetes' label rollouts-pod-template-hash is "
           "rollouts_pod_template_hash (every character but letters, digits and _ becomes _)")
    stable = {"rollouts_pod_template_hash": ARGO_STABLE}
    for r in (
            client.post("/v1/analyze", json={"config": "http", "stable": stable, "canary": {
                "rollouts-pod-template-hash": "7f9c4d2b1"}}),
            client.post("/v1/analyze", json={"config": "http", "stable": stable, "canary":
                                             'rollouts-pod-template-hash="7f9c4d2b1"'}),
            client.post("/v1/analyze", json={"config": "http", "stable": stable, "canary":
                                             'namespace="shop", rollouts-pod-template-hash'
                                             '=~"7f9c.*"'}),
            client.get("/v1/analyze/http", query_string={
                "canary.rollouts-pod-template-hash": "7f9c4d2b1",
                "stable.rollouts_pod_template_hash": ARGO_STABLE, "format": "text"})):
        assert r.status_code == 400, r.get_data(as_text=True)
        text = r.get_data(as_text=True)
        assert "'rollouts-pod-template-hash' is not a valid Prometheus label name" in text, text
        assert fix in text, text
