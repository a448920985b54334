"""Trading and healthcare profiles on planted domain series in a real Prometheus, with the
market-hours gate and the approval path."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from webhook.lab.rollouts import (
    HEALTHCARE_STABLE,
    NAMESPACE,
    TRADING_STABLE,
    healthcare_hash,
    trading_hash,
)


def trading(client, lab, version: str, minutes: int = 60, **vars_):
    r = client.post("/v1/analyze", json={
        "config": "trading",
        "canary": {"rollouts_pod_template_hash": trading_hash(version)},
        "stable": {"rollouts_pod_template_hash": TRADING_STABLE},
        "window": lab.window(minutes), "vars": {"risk_tolerance": "low", **vars_}})
    assert r.status_code == 200, r.json
    return r.json, {c["name"]: c for c in r.json["checks"]}


def healthcare(client, lab, version: str, **vars_):
    r = client.post("/v1/analyze", json={
        "config": "healthcare",
        "canary": {"rollouts_pod_template_hash": healthcare_hash(version)},
        "stable": {"rollouts_pod_template_hash": HEALTHCARE_STABLE},
        "window": lab.window(60), "vars": vars_})
    assert r.status_code == 200, r.json
    return r.json, {c["name"]: c for c in r.json["checks"]}


def test_trading_healthy_canary_passes_every_check(client, lab):
    answer, checks = trading(client, lab, "healthy")
    assert answer["verdict"] == "pass", answer["reason"]
    assert {"order_fill_rate", "order_unfilled_rate", "order_latency_p99", "order_latency_tail",
            "slippage_bps", "pnl_impact_usd", "market_impact", "compliance_violations",
            "throughput", "restarts", "traffic",
            "market_hours"} == set(checks)


def test_fill_rate_six_percent_lower_fails(client, lab):
    # unfilled x2.1 where the 5 % tolerance allows x1.95: 110 minutes of 20 orders/s show it
    # beyond reasonable doubt, one hour does not yet (test_domains.py, the fill drop)
    answer, checks = trading(client, lab, "fills", minutes=110)
    assert answer["verdict"] == "fail"
    assert checks["order_fill_rate"]["verdict"] == "fail"
    assert checks["order_fill_rate"]["effect"] == pytest.approx(-0.06, abs=0.015)


def test_slippage_three_bps_higher_fails(client, lab):
    answer, checks = trading(client, lab, "slippage")
    assert checks["slippage_bps"]["verdict"] == "fail"
    assert answer["verdict"] == "fail" and "slippage_bps" in answer["reason"]


def flagger(client, kind: str, config: str, end: str | None = None, **meta):
    """A Flagger hook with the server's clock at `end` (a hook's gates read that clock; its
    metadata cannot set it)."""
    metadata = {"config": config, "canary_selector": 'app="orders", rollouts_pod_template_hash='
                f'"{trading_hash("healthy")}"', "stable_selector":
                f'app="orders", rollouts_pod_template_hash="{TRADING_STABLE}"', **meta}
    service = client.application.extensions["canary_judge"]
    if end:
        service.clock = lambda: datetime.fromisoformat(end).timestamp()
    try:
        return client.post(f"/v1/hooks/{kind}", json={
            "name": "orders", "namespace": NAMESPACE, "phase": "Progressing",
            "checksum": "rev-42", "metadata": metadata})
    finally:
        service.clock = time.time


@pytest.mark.parametrize(("instant", "status", "words"), [
    # DST week: US clocks moved on 2026-03-08, Europe's not until 03-29.
    ("2026-03-10T19:45:00Z", 412, "New York"),   # 15:45 EDT: open
    ("2026-03-10T20:30:00Z", 200, ""),           # 16:30 EDT: closed (Frankfurt, Tokyo too)
    ("2026-03-03T20:30:00Z", 412, "New York"),   # same UTC time a week earlier: 15:30 EST
    ("2026-07-03T16:00:00Z", 200, ""),           # NYSE holiday; Frankfurt/Tokyo closed
    ("2026-11-27T18:30:00Z", 200, ""),           # 13:30 EST on the half day: closed
    ("2026-11-27T17:30:00Z", 412, "New York"),   # 12:30 EST on the half day: open
    ("2026-03-09T08:30:00Z", 412, "Frankfurt"),  # 09:30 CET
    ("2026-03-09T16:15:00Z", 412, "Frankfurt"),  # 17:15 CET: Xetra's last hour
    ("2026-03-14T15:00:00Z", 200, ""),           # Saturday
])
def test_confirm_rollout_follows_market_hours_for_medium_risk(client, instant, status, words):
    r = flagger(client, "confirm-rollout", "trading", end=instant, risk_tolerance="medium")
    assert r.status_code == status, r.get_data(as_text=True)
    assert words in r.get_data(as_text=True)


def test_low_risk_may_start_during_trading_hours(client):
    r = flagger(client, "confirm-rollout", "trading", end="2026-03-10T13:45:00Z",
                risk_tolerance="low")
    assert r.status_code == 200


def test_critical_risk_needs_a_person_then_closed_markets(client):
    closed = "2026-03-14T15:00:00Z"
    r = flagger(client, "confirm-rollout", "trading", end=closed, risk_tolerance="critical")
    assert r.status_code == 412 and "approv" in r.get_data(as_text=True)
    r = flagger(client, "confirm-rollout", "trading", end=closed, risk_tolerance="critical",
                approved_revision="rev-42")
    assert r.status_code == 200
    r = flagger(client, "confirm-rollout", "trading", end="2026-03-10T13:45:00Z",
                risk_tolerance="critical", approved_revision="rev-41")  # another revision
    assert r.status_code == 412


def test_argo_analysis_holds_during_open_session_naming_it(client, lab):
    answer, checks = trading(client, lab, "healthy", risk_tolerance="medium")
    gate = checks["market_hours"]
    assert gate["critical"] is False  # a closed gate holds a rollout, never rolls it back
    if gate["verdict"] == "inconclusive":  # a session is open now: hold, never fail
        assert answer["verdict"] == "inconclusive" and "session open" in answer["reason"]
    else:
        assert gate["verdict"] == "pass" and answer["verdict"] == "pass"


def test_unknown_risk_tolerance_is_400(client):
    r = flagger(client, "confirm-rollout", "trading", risk_tolerance="yolo")
    assert r.status_code == 400 and "risk_tolerance" in r.get_data(as_text=True)


def test_healthcare_healthy_canary_passes_every_cohort(client, lab):
    answer, checks = healthcare(client, lab, "healthy")
    assert answer["verdict"] == "pass", answer["reason"]
    cohorts = {c["cohort"] for c in answer["checks"] if c["cohort"]}
    assert cohorts == {"A", "B", "C"}
    assert "admission_failures[facility=B]" in checks
    assert "admission_failures_limit[facility=B]" in checks


def test_one_adverse_event_fails_and_fires_the_rollback_hook(client, lab):
    answer, checks = healthcare(client, lab, "adverse")
    assert answer["verdict"] == "fail"
    assert checks["adverse_events"]["verdict"] == "fail" and checks["adverse_events"]["critical"]
    assert "adverse_events" in answer["reason"]
    w = lab.window(60)
    meta = {"config": "healthcare", "start": str(w["start"]), "end": str(w["end"]),
            "canary_selector": f'rollouts_pod_template_hash="{healthcare_hash("adverse")}"',
            "stable_selector": f'rollouts_pod_template_hash="{HEALTHCARE_STABLE}"'}
    r = client.post("/v1/hooks/rollback", json={"name": "ehr", "namespace": NAMESPACE,
                                                 "metadata": meta})
    assert r.status_code == 200 and "adverse_events" in r.get_data(as_text=True)


def test_a_failing_facility_fails_the_verdict_and_is_named(client, lab):
    answer, checks = healthcare(client, lab, "facility")
    assert checks["admission_failures[facility=B]"]["verdict"] == "fail"
    assert checks["admission_failures[facility=A]"]["verdict"] != "fail"
    assert answer["verdict"] == "fail" and "facility=B" in answer["reason"]


def test_safety_level_critical_needs_approval_to_promote(client, lab):
    w = lab.window(110)  # critical asks for 4x the data and half the tolerance
    meta = {"config": "healthcare", "safety_level": "critical", "start": str(w["start"]),
            "end": str(w["end"]),
            "canary_selector": f'rollouts_pod_template_hash="{healthcare_hash("healthy")}"',
            "stable_selector": f'rollouts_pod_template_hash="{HEALTHCARE_STABLE}"'}
    payload = {"name": "ehr", "namespace": NAMESPACE, "checksum": "ehr-7", "metadata": meta}
    r = client.post("/v1/hooks/confirm-promotion", json=payload)
    assert r.status_code == 412 and "approve" in r.get_data(as_text=True)
    payload["metadata"] = {**meta, "approved_revision": "ehr-7"}
    r = client.post("/v1/hooks/confirm-promotion", json=payload)
    assert r.status_code == 200, r.get_data(as_text=True)


def test_safety_level_makes_the_judge_stricter(client, lab):
    _, low = healthcare(client, lab, "healthy", safety_level="low")
    _, high = healthcare(client, lab, "healthy", safety_level="high")
    name = "admission_failures[facility=A]"
    assert high[name]["allowed"] < low[name]["allowed"]
    r = client.post("/v1/analyze", json={
        "config": "healthcare", "canary": {"app": "x"}, "stable": {"app": "y"},
        "vars": {"safety_level": "extreme"}})
    assert r.status_code == 400 and r.json["field"] == "vars.safety_level"
