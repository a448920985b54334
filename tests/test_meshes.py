"""Istio and Linkerd out of the box: `provider` selects the mesh's own metric names, labels and
units, planted in the lab exactly as the meshes export them (webhook/lab/rollouts.py):
Istio `istio_requests_total{reporter="destination", destination_workload, response_code}` and
`istio_request_duration_milliseconds_bucket`; Linkerd `response_total{direction="inbound",
deployment, classification}` and `response_latency_ms_bucket`.
"""

from __future__ import annotations

import pytest

from webhook.lab.rollouts import FLAGGER_NEW, NAMESPACE

MESHES = {
    "istio": ("istio_requests_total", 'destination_workload="{}"'),
    "linkerd": ("response_total", 'deployment="{}"'),
}


def hook(client, kind: str, target: str, provider: str, **meta: str) -> tuple[int, str]:
    payload = {"name": target, "namespace": NAMESPACE, "phase": "Progressing",
               "checksum": "abc123",
               "metadata": {"provider": provider, "lookback": "60m", **meta}}
    r = client.post(f"/v1/hooks/{kind}", json=payload)
    return r.status_code, r.get_data(as_text=True)


def selectors(provider: str, target: str) -> dict[str, dict[str, str]]:
    """What the Flagger hooks select for `target` (canary) and `target-primary` (stable)."""
    if provider == "istio":
        def side(name: str) -> dict[str, str]:
            return {"destination_workload": name, "destination_workload_namespace": NAMESPACE}
    else:
        def side(name: str) -> dict[str, str]:
            return {"deployment": name, "namespace": NAMESPACE}
    return {"canary": side(target), "stable": side(f"{target}-primary")}


def analyze(client, lab, provider: str | None, target: str) -> dict:
    body = {"config": "http", **selectors(provider or "istio", target),
            "window": lab.window(60)}
    if provider:
        body["provider"] = provider
    r = client.post("/v1/analyze", json=body)
    assert r.status_code == 200, r.json
    return r.json


@pytest.mark.parametrize("provider", list(MESHES))
def test_healthy_mesh_canary_is_judged_on_its_traffic_and_promoted(client, lab, provider):
    answer = analyze(client, lab, provider, "podinfo")
    assert answer["verdict"] == "pass", answer["reason"]
    checks = {c["name"]: c for c in answer["checks"]}
    assert checks["error_ratio"]["canary"]["n"] > 50_000
    assert checks["error_ratio"]["stable"]["n"] > 100_000
    # Latency in the mesh's milliseconds (p95 of the planted lognormal: about 270 ms).
    p95 = checks["latency_p95"]
    assert 150 < p95["stable"]["value"] < 400 and "ms" in p95["reason"]
    # The GET form (curl) names the provider too.
    sides = selectors(provider, "podinfo")
    query = "&".join(f"{side}.{k}={v}" for side, labels in sides.items()
                     for k, v in labels.items())
    window = lab.window(60)
    r = client.get(f"/v1/analyze/http?provider={provider}&{query}"
                   f"&start={window['start']}&end={window['end']}")
    assert r.status_code == 200 and r.json["verdict"] == "pass", r.json
    assert hook(client, "rollout", "podinfo", provider)[0] == 200
    status, text = hook(client, "confirm-promotion", "podinfo", provider)
    assert status == 200 and text.startswith("promote"), text
    assert hook(client, "rollback", "podinfo", provider)[0] == 412


@pytest.mark.parametrize("provider", list(MESHES))
def test_mesh_canary_with_three_times_the_errors_fails_and_rolls_back(client, lab, provider):
    answer = analyze(client, lab, provider, "badinfo")
    ratio = next(c for c in answer["checks"] if c["name"] == "error_ratio")
    assert answer["verdict"] == "fail" and ratio["verdict"] == "fail"
    assert ratio["effect"] == pytest.approx(2.0, abs=0.4)
    status, text = hook(client, "rollout", "badinfo", provider)
    assert status == 412 and "error_ratio" in text, text
    assert hook(client, "rollback", "badinfo", provider)[0] == 200
    assert hook(client, "confirm-promotion", "badinfo", provider)[0] == 412


@pytest.mark.parametrize("provider", list(MESHES))
def test_slow_mesh_canary_fails_on_latency(client, lab, provider):
    answer = analyze(client, lab, provider, "slowinfo")
    slow = [c for c in answer["checks"] if c["name"].startswith("latency")
            and c["verdict"] == "fail"]
    assert answer["verdict"] == "fail" and slow, answer["reason"]
    status, text = hook(client, "rollout", "slowinfo", provider)
    assert status == 412 and "latency" in text and "slower" in text, text
    assert hook(client, "rollback", "slowinfo", provider)[0] == 412  # not critical


@pytest.mark.parametrize("provider", list(MESHES))
def test_zero_traffic_names_the_metric_and_selector_it_queried(client, lab, provider):
    metric, label = MESHES[provider]
    status, text = hook(client, "rollout", FLAGGER_NEW, provider)
    assert status == 200 and "inconclusive" in text, text
    assert f"canary queried {metric}{{" in text and label.format(FLAGGER_NEW) in text, text
    assert hook(client, "confirm-promotion", FLAGGER_NEW, provider)[0] == 412


def test_without_the_provider_a_mesh_selector_finds_nothing_and_says_where_it_looked(
        client, lab):
    """The failure this replaces: Istio labels on the app's metric names judged nothing."""
    answer = analyze(client, lab, None, "podinfo")
    assert answer["verdict"] == "inconclusive"
    assert 'canary queried http_requests_total{destination_workload="podinfo"' in \
        answer["reason"], answer["reason"]
