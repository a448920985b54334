"""Property test over the request schema: whatever mix of valid and hostile values a caller
sends to /v1/analyze or a Flagger hook, the answer is never a 5xx and every JSON answer is
strict JSON (no NaN/Infinity) with a finite score. Runs against the real Prometheus of the lab;
the number of examples is bounded to keep CI time down (about 30 s on 2 cores)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash

HOSTILE_STRINGS = ["NaN", "Infinity", "-Infinity", "inf", "1e999", "-1", "0", "", " ",
                   "\ud800", "\x00", "5..", "le", "__name__", "bool", "nan", "sum",
                   'x"} or vector(1) #', "10m", "60s", "1h30m", "2026-11-22T10:00:00Z",
                   "true", "false", "0.05", "0.9", "1e308", "9" * 400, "é" * 50]
scalars = st.one_of(
    st.sampled_from(HOSTILE_STRINGS), st.text(max_size=12), st.booleans(), st.none(),
    st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


def fields(keys: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    """An object with any subset of `keys`, each drawn from `values`."""
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, values))


hostile = st.one_of(st.sampled_from(HOSTILE_STRINGS), scalars)
labels = st.one_of(
    st.sampled_from([{"rollouts_pod_template_hash": argo_hash("errors3x")},
                     {"rollouts_pod_template_hash": ARGO_STABLE},
                     'rollouts_pod_template_hash="x"', {"__name__": "up"}]),
    st.dictionaries(st.sampled_from(["app", "pod", "__name__", "le", "bad-label"]),
                    st.one_of(st.sampled_from(HOSTILE_STRINGS), st.integers()), max_size=2),
    scalars)
window = fields(["start", "end", "lookback", "step", "warmup", "colour"], hostile)
tolerance = st.one_of(fields(["relative", "absolute"], hostile), json_values)
override = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(["error_ratio", "latency", "x"]), scalars),
    **dict.fromkeys(["enabled", "critical", "weight", "min_total", "alpha", "direction",
                     "kind", "query", "min", "max", "quantiles"], hostile),
    "tolerance": tolerance})
request = st.fixed_dictionaries({}, optional={
    "config": st.one_of(st.sampled_from(["http", "trading", "healthcare", "nope"]), scalars),
    "canary": labels, "stable": labels,
    "vars": st.one_of(fields(["error_codes", "code_label", "latency_metric", "service",
                              "safety_level", "risk_tolerance"],
                             st.sampled_from(HOSTILE_STRINGS)), json_values),
    "window": st.one_of(window, json_values),
    "metrics": st.one_of(st.lists(override, max_size=2),
                         st.dictionaries(st.sampled_from(["error_ratio", "latency"]), override,
                                         max_size=2), json_values),
    "mode": st.one_of(st.sampled_from(["sequential", "fixed"]), hostile),
    "alpha": hostile, "revision": hostile, "colour": scalars})


def strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a JSON answer")
    return json.loads(text, parse_constant=refuse)


def encode(payload: dict) -> bytes:
    # allow_nan: the caller may well send NaN literals; the server must refuse them politely
    return json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")


# One field of an otherwise runnable request, set to a hostile value.
PATHS = [("window", "start"), ("window", "end"), ("window", "lookback"), ("window", "step"),
         ("window", "warmup"), ("alpha",), ("mode",), ("config",), ("revision",),
         ("canary", "rollouts_pod_template_hash"), ("canary",), ("stable",),
         ("vars", "latency_metric"), ("vars", "error_codes"), ("vars", "code_label"),
         ("vars", "safety_level"), ("metrics", "latency", "weight"),
         ("metrics", "latency", "enabled"), ("metrics", "latency", "alpha"),
         ("metrics", "latency", "min_total"), ("metrics", "latency", "quantiles"),
         ("metrics", "error_ratio", "tolerance", "relative"),
         ("metrics", "latency", "tolerance", "absolute"), ("metrics", "error_ratio", "critical")]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "inf", "-inf", "nan"]
mutation = st.tuples(st.sampled_from(PATHS), st.one_of(
    st.sampled_from(NON_FINITE), st.sampled_from(HOSTILE_STRINGS), scalars, json_values))


def mutate(base: dict, path: tuple, value: object) -> dict:
    node = base
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
    return base


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=request, change=mutation, base=st.integers(0, 3))
def test_analyze_never_5xx_and_always_strict_json(client, lab, payload, change, base):
    if base:  # most examples break one field of a request that would otherwise run
        payload = mutate({"canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
                          "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
                          "window": lab.window(30), "mode": "fixed"}, *change)
    r = client.post("/v1/analyze", data=encode(payload), content_type="application/json")
    assert r.status_code < 500, r.get_data(as_text=True)
    body = strict_json(r.get_data(as_text=True))
    assert isinstance(body, dict)
    if r.status_code == 200:
        assert body["verdict"] in ("pass", "fail", "inconclusive")
        assert math.isfinite(body["score"]) and 0 <= body["score"] <= 100
        if body["verdict"] == "pass":
            assert payload.get("canary") != {"rollouts_pod_template_hash":
                                             argo_hash("errors3x")} or not any(
                c["name"] == "error_ratio" and c["verdict"] != "pass" for c in body["checks"])
    else:
        assert {"error", "message"} <= set(body)


metadata = st.dictionaries(
    st.sampled_from(["config", "provider", "target", "canary_selector", "stable_selector",
                     "namespace_label", "app_label", "start", "end", "lookback", "step",
                     "warmup", "mode", "alpha", "inconclusive", "error_codes", "x"]),
    st.one_of(st.sampled_from(NON_FINITE), st.sampled_from(HOSTILE_STRINGS),
              st.text(max_size=10)), max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(meta=metadata, hook=st.sampled_from(["rollback", "rollout", "confirm-promotion",
                                            "confirm-rollout", "pre-rollout"]),
       name=st.sampled_from(["podinfo", "badinfo", "x" * 300, "\ud800", "Pod_Info"]))
def test_hooks_never_5xx(client, meta, hook, name):
    payload = {"name": name, "namespace": NAMESPACE, "metadata": {"lookback": "60m", **meta}}
    r = client.post(f"/v1/hooks/{hook}", data=encode(payload), content_type="application/json")
    assert r.status_code < 500, r.get_data(as_text=True)
    if hook == "rollback" and r.status_code == 200:
        assert name == "badinfo" or "canary_selector" in meta  # only a real critical failure
