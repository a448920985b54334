"""The trust boundary: a config's locks keep requests (Argo args, Flagger metadata, curl) from
switching off or loosening the checks that protect production. Each bypass below once let the
canary with three times the stable's errors pass."""

from __future__ import annotations

import pytest

from webhook.app import create_app
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash
from webhook.settings import load_settings


def body(lab, version: str = "errors3x", **extra) -> dict:
    return {"canary": {"rollouts_pod_template_hash": argo_hash(version)},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
            "window": lab.window(60), **extra}


@pytest.mark.parametrize(("extra", "field"), [
    ({"metrics": [{"name": "error_ratio", "enabled": False}]}, "metrics.error_ratio.enabled"),
    ({"metrics": {"error_ratio": {"enabled": "false"}}}, "metrics.error_ratio.enabled"),
    ({"metrics": [{"name": "error_ratio", "tolerance": {"relative": "50"}}]},
     "metrics.error_ratio.tolerance.relative"),
    ({"metrics": [{"name": "error_ratio", "tolerance": {"absolute": 0.5}}]},
     "metrics.error_ratio.tolerance.absolute"),
    ({"metrics": [{"name": "error_ratio", "critical": "false"}]}, "metrics.error_ratio.critical"),
    ({"metrics": [{"name": "error_ratio", "min_total": 10}]}, "metrics.error_ratio.min_total"),
    ({"metrics": [{"name": "error_ratio", "direction": "decrease"}]},
     "metrics.error_ratio.direction"),
    ({"metrics": [{"name": "error_ratio", "bad": "sum(increase(nope{ {{selector}} }[1m]))"}]},
     "metrics.error_ratio.bad"),
    ({"metrics": [{"name": "error_ratio", "alpha": "0.2"}]}, "metrics.error_ratio.alpha"),
    ({"alpha": "0.3"}, "alpha"),
    ({"vars": {"error_codes": "nomatch"}}, "vars.error_codes"),
    ({"vars": {"code_label": "le"}}, "vars.code_label"),
    ({"vars": {"requests_metric": "http_request_duration_seconds_count"}},
     "vars.requests_metric"),
])
def test_loosening_a_locked_check_is_403_naming_it(client, lab, extra, field):
    r = client.post("/v1/analyze", json=body(lab, **extra))
    assert r.status_code == 403, r.json
    assert r.json["error"] == "forbidden" and r.json["field"] == field
    assert r.json["message"].startswith(field)
    assert "locked by config 'http'" in r.json["message"] or "which config 'http' locks" in \
        r.json["message"]


def test_locked_var_via_get_and_flagger_metadata(client, lab):
    r = client.get(f"/v1/analyze/http?canary.rollouts_pod_template_hash={argo_hash('errors3x')}"
                   f"&stable.rollouts_pod_template_hash={ARGO_STABLE}&vars.error_codes=nomatch")
    assert r.status_code == 403 and r.json["field"] == "vars.error_codes"
    for hook in ("rollback", "rollout", "confirm-promotion", "confirm-rollout"):
        r = client.post(f"/v1/hooks/{hook}", json={
            "name": "badinfo", "namespace": NAMESPACE,
            "metadata": {"lookback": "60m", "code_label": "le"}})
        # non-2xx: Flagger shows the 4xx body as the reason; a rollback is never triggered
        assert r.status_code == 403, (hook, r.get_data(as_text=True))
        assert "metadata.code_label: locked by config 'http'" in r.get_data(as_text=True)


def test_tightening_and_unlocked_changes_stay_allowed(client, lab):
    ok = [{"metrics": [{"name": "error_ratio", "tolerance": {"relative": 0.1}, "min_total": 400,
                        "weight": 3}]},
          {"metrics": [{"name": "latency", "enabled": False}]},
          {"metrics": [{"name": "error_ratio", "alpha": 0.01}], "alpha": "0.04"},
          {"metrics": [{"name": "latency", "tolerance": {"relative": 5}}]},
          {"vars": {"error_codes": "5..", "code_label": "code"}}]
    for extra in ok:
        r = client.post("/v1/analyze", json=body(lab, **extra))
        assert r.status_code == 200, (extra, r.json)
        assert r.json["verdict"] == "fail"  # the 3x-errors canary still fails
    # a mesh's own label and metric names are among the allowed values
    r = client.post("/v1/analyze", json=body(lab, "healthy", vars={
        "code_label": "response_code", "requests_metric": "istio_requests_total"}))
    assert r.status_code == 200


def test_shipped_configs_lock_their_critical_checks(client):
    for config in client.get("/v1/configs").json["configs"]:
        critical = {m["name"] for m in config["metrics"] if m["critical"]}
        assert critical and critical <= set(config["locks"]["checks"]), config["name"]


LOOSE = """
name: loose
vars: {requests_metric: http_requests_total}
metrics:
  - name: errors
    kind: ratio
    bad: sum(increase({{requests_metric}}{ {{selector}}, code=~"5.." }[{{step}}]))
    total: sum(increase({{requests_metric}}{ {{selector}} }[{{step}}]))
    tolerance: {relative: 0.2}
    critical: true
locks:
  checks: {errors: {max_loosening: 2}}
  vars: {requests_metric: [istio_requests_total]}
"""


def test_max_loosening_bounds_tolerance_overrides(lab, tmp_path):
    (tmp_path / "loose.yaml").write_text(LOOSE)
    (tmp_path / "wrong.yaml").write_text(LOOSE.replace("name: loose", "name: wrong")
                                         .replace("{errors:", "{typo:"))
    client = create_app(load_settings(prometheus_url=lab.url,
                                      config_dir=str(tmp_path))).test_client()
    within = body(lab, config="loose", metrics=[{"name": "errors",
                                                  "tolerance": {"relative": 0.4}}])
    assert client.post("/v1/analyze", json=within).status_code == 200
    beyond = body(lab, config="loose", metrics=[{"name": "errors",
                                                  "tolerance": {"relative": 0.41}}])
    r = client.post("/v1/analyze", json=beyond)
    assert r.status_code == 403 and "at most 0.4" in r.json["message"]
    errors = client.get("/v1/configs").json["errors"]
    assert any(e["source"].endswith("wrong.yaml") and "typo" in e["error"] for e in errors)
