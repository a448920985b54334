"""A canary whose process keeps restarting in place fails `http`, though its own counters
look healthy: the requests it refuses while down never reach them (planted in the session lab:
`webhook.lab.rollouts.ARGO_RESTARTING`, otherwise the healthy canary's traffic)."""

from __future__ import annotations

import math

import pytest
import yaml
from argo_answers import analyze, check_named

from webhook.configs import AnalysisConfig, load_registry
from webhook.lab.rollouts import ARGO_RESTARTING, argo_hash


# every restart period, including one shorter than two steps (a counter that restarted is
# then often higher at a step's end than at the one before) and one with a single missed scrape
@pytest.mark.parametrize("canary", list(ARGO_RESTARTING))
@pytest.mark.parametrize("mode", ["sequential", "fixed"])
def test_a_canary_restarting_in_place_fails_where_its_own_counters_look_healthy(
        client, lab, canary, mode):
    every = ARGO_RESTARTING[canary][0]
    answer = analyze(client, canary, mode=mode, window=lab.window(60))
    assert answer["verdict"] == "fail", answer["reason"]
    restarts = check_named(answer, "restarts")
    assert restarts["verdict"] == "fail"
    # a lower bound: a restart whose new process out-counts the old one within a step is
    # not seen, but the slowest planted loop is seen at least every other time
    assert 3600 / every / 2 <= restarts["canary"]["value"] <= math.floor(3600 / every) + 1
    assert restarts["stable"]["value"] == 0
    assert "restarts" in answer["reason"] and "on the canary" in answer["reason"]
    assert not restarts["critical"]  # a failed check, not a rollback by the rollback hook
    # what the canary's own counters say: nothing the error ratio or latency would fail on
    assert check_named(answer, "error_ratio")["verdict"] != "fail"
    assert check_named(answer, "latency_p95")["verdict"] != "fail"


def test_a_healthy_canary_has_no_restarts(client, lab):
    answer = analyze(client, argo_hash("healthy"), window=lab.window(60))
    assert answer["verdict"] == "pass", answer["reason"]
    restarts = check_named(answer, "restarts")
    assert restarts["verdict"] == "pass"
    assert restarts["canary"]["value"] == 0 and restarts["stable"]["value"] == 0


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_the_meshes_leave_restarts_to_the_error_ratio(provider):
    """A mesh's proxy outlives the app's restarts (its counters never go back) and answers the
    requests the app refuses as failures, which error_ratio counts."""
    config = load_registry(None).get("http")
    assert "restarts" in {m.name for m in config.metrics}
    assert "restarts" not in {m.name for m in config.for_provider(provider).metrics}


def test_a_provider_cannot_leave_out_a_locked_check():
    text = """
name: leaky
metrics:
  - {name: errors, kind: ratio, bad: "sum(x{ {{selector}} })", total: "sum(y{ {{selector}} })"}
providers:
  istio: {metrics: {errors: null}}
locks: {checks: [errors]}
"""
    with pytest.raises(ValueError, match="'errors' is locked"):
        AnalysisConfig.model_validate(yaml.safe_load(text))


def test_trading_fails_a_canary_whose_order_service_restarts(client, lab):
    """Orders and fills from 0 again every 4 minutes: the fill rate and every other order check
    read the restarted counters as they should; only the restarts check sees the loop."""
    from webhook.lab.rollouts import TRADING_STABLE, trading_hash

    r = client.post("/v1/analyze", json={
        "config": "trading", "canary": {"rollouts_pod_template_hash": trading_hash("restarting")},
        "stable": {"rollouts_pod_template_hash": TRADING_STABLE}, "mode": "fixed",
        "window": lab.window(60), "vars": {"risk_tolerance": "low"}})
    assert r.status_code == 200, r.get_data(as_text=True)
    answer = r.json
    restarts = check_named(answer, "restarts")
    assert restarts["verdict"] == "fail" and 10 <= restarts["canary"]["value"] <= 16, restarts
    assert restarts["stable"]["value"] == 0
    assert answer["verdict"] == "fail" and answer["reason"].startswith("fail: restarts:"), \
        answer["reason"]
    assert check_named(answer, "order_fill_rate")["verdict"] != "fail"


def test_a_flagger_canary_restarting_in_place_fails_its_checks_without_a_rollback(client, lab):
    """Flagger's rollout hook fails the check (412, the reason Flagger records in its event);
    the rollback hook does not fire for a non-critical check, and promotion stays shut."""
    from webhook.lab.rollouts import NAMESPACE

    def hook(kind: str):
        return client.post(f"/v1/hooks/{kind}", json={
            "name": "crashinfo", "namespace": NAMESPACE, "phase": "Progressing",
            "checksum": "abc123", "metadata": {"provider": "app", "lookback": "60m"}})

    rollout = hook("rollout")
    assert rollout.status_code == 412
    assert "restarts:" in rollout.get_data(as_text=True) and "on the canary" in \
        rollout.get_data(as_text=True)
    assert hook("rollback").status_code != 200
    assert hook("confirm-promotion").status_code == 412
