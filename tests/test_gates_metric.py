"""`POST /v1/gates` and the shipped templates' `gates` metric: a gate that closes at any
measurement of a step, the last included, pauses the Argo rollout (holds) and never aborts it.

The analysis metric tolerates a few inconclusive answers (low data early on), so by Argo's
rules a market session opening at a step's last measurement would still end that step
Successful; the separate gates metric, with inconclusiveLimit 0, is what holds it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from argo_semantics import (
    INCONCLUSIVE,
    ROLLOUT_ACTION,
    SUCCESSFUL,
    MetricLimits,
    argo_phase,
    json_path,
    run_metric,
    with_arg_defaults,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "analysis_templates"
TOKEN = "gates-test-token"

# Instants for the shipped trading config's real sessions (NYSE, Xetra, Tokyo):
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()  # every market closed
NY_OPEN = datetime(2026, 11, 30, 15, 0, tzinfo=UTC).timestamp()  # Monday 10:00 in New York


def template_metrics(profile: str, kind: str = "analysis-template") -> dict[str, dict[str, Any]]:
    """The shipped template's metrics by name, as a step analysis gets them (count "5")."""
    doc = yaml.safe_load((TEMPLATES / profile / f"{kind}.yaml").read_text())
    return {m["name"]: with_arg_defaults(m, doc["spec"]["args"], count="5")
            for m in doc["spec"]["metrics"]}


@pytest.fixture(scope="module")
def client(lab):
    from webhook.app import create_app
    from webhook.settings import load_settings

    app = create_app(load_settings(prometheus_url=lab.url, config_dir=None, api_tokens=TOKEN))
    return app.test_client()


def gates(client, config: str, at: float, token: str = TOKEN, action: str | None = None,
          **vars_: str):
    body = {"config": config, "canary": {"rollouts_pod_template_hash": "c1", "namespace": "shop"},
            "stable": {"rollouts_pod_template_hash": "s1", "namespace": "shop"},
            "vars": vars_, "window": {"end": at}}
    path = "/v1/gates" + (f"?action={action}" if action else "")
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("profile", ["trading", "healthcare"])
@pytest.mark.parametrize("kind", ["analysis-template", "cluster-analysis-template"])
def test_every_gated_template_reads_the_gates_with_no_inconclusive_allowed(profile, kind):
    metrics = template_metrics(profile, kind)
    gate = metrics["gates"]
    assert gate["provider"]["web"]["url"].endswith("/v1/gates")
    assert gate["provider"]["web"]["jsonPath"] == "{$.gate}"
    limits = MetricLimits.of(gate)
    assert limits.inconclusive_limit == 0 and limits.failure_limit == 0
    # Same cadence as the analysis it guards, so it also looks at the last measurement.
    (analysis,) = [m for n, m in metrics.items() if n != "gates"]
    assert (gate["interval"], gate["count"]) == (analysis["interval"], analysis["count"])


def test_a_session_opening_at_the_last_measurement_pauses_the_rollout(client):
    """Four measurements with every market closed, the fifth at 10:00 in New York."""
    metrics = template_metrics("trading")
    gate = metrics["gates"]
    answers = [gates(client, "trading", at, risk_tolerance="medium")
               for at in (SATURDAY,) * 4 + (NY_OPEN,)]
    assert [r.status_code for r in answers] == [200] * 5
    assert [r.json["gate"] for r in answers] == ["open"] * 4 + ["closed"]
    assert "session open" in answers[-1].json["reason"]
    phases = [argo_phase(gate, r.status_code, r.get_data())[0] for r in answers]
    assert phases == [SUCCESSFUL] * 4 + [INCONCLUSIVE]
    run, taken = run_metric(gate, phases)
    assert (run, taken) == (INCONCLUSIVE, 5) and ROLLOUT_ACTION[run] == "pause"
    # What the analysis metric alone would do with the same held last answer: promote.
    analysis = metrics["canary-judge-trading"]
    alone = run_metric(analysis, [SUCCESSFUL] * 4 + [INCONCLUSIVE])[0]
    assert ROLLOUT_ACTION[alone] == "continue", "the gates metric is what makes it hold"


@pytest.mark.parametrize(("risk", "at", "gate"), [
    ("low", NY_OPEN, "open"), ("medium", SATURDAY, "open"), ("medium", NY_OPEN, "closed"),
    ("high", NY_OPEN, "closed"), ("critical", SATURDAY, "closed")])
def test_the_gate_answer_follows_risk_and_sessions_and_never_fails(client, risk, at, gate):
    r = gates(client, "trading", at, risk_tolerance=risk)
    assert r.status_code == 200 and r.json["gate"] == gate, r.json
    phase = argo_phase(template_metrics("trading")["gates"], r.status_code, r.get_data())[0]
    assert phase == (SUCCESSFUL if gate == "open" else INCONCLUSIVE)
    assert {c["name"] for c in r.json["checks"]} == {"market_hours"}
    if risk == "critical":
        assert "approve" in r.json["reason"]


def test_healthcare_critical_holds_until_a_person_approves(client):
    held = gates(client, "healthcare", SATURDAY, safety_level="critical")
    assert held.json["gate"] == "closed" and "approve" in held.json["reason"]
    approved = gates(client, "healthcare", SATURDAY, safety_level="critical",
                     approved_revision="c1")
    assert approved.json["gate"] == "open", approved.json
    assert gates(client, "healthcare", SATURDAY, safety_level="high").json["gate"] == "open"


NAME_IT = "set `revision` in the request and approved_revision to the same value"


@pytest.mark.parametrize(("canary", "revision", "gate", "words"), [
    # a raw matcher pinning Argo's hash names the revision as a label map does
    ('rollouts_pod_template_hash="c1", namespace="shop"', None, "open", ""),
    ("{rollouts_pod_template_hash='c1'}", None, "open", ""),
    ('rollouts_pod_template_hash="c2"', None, "closed", "approve revision c2"),  # not c1
    ('rollouts_pod_template_hash=~"c1|c2"', None, "closed", NAME_IT),  # pins none
    ('app="ehr", namespace="shop"', None, "closed", NAME_IT),  # no hash: nothing to approve
    ('app="ehr", namespace="shop"', "c1", "open", ""),  # the request names it
])
def test_a_raw_matcher_canary_can_be_approved(client, canary, revision, gate, words):
    """A canary given as raw matcher text once read as "revision (unknown)": critical held it
    forever, whatever approved_revision said."""
    body = {"config": "healthcare", "canary": canary, "stable": 'rollouts_pod_template_hash="s1"',
            "vars": {"safety_level": "critical", "approved_revision": "c1"},
            "window": {"end": SATURDAY}, **({"revision": revision} if revision else {})}
    r = client.post("/v1/gates", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json["gate"] == gate, r.json
    assert words in r.json["reason"] and "(unknown)" not in r.json["reason"], r.json["reason"]


def test_a_config_without_gates_is_open_and_bad_calls_are_refused(client):
    r = gates(client, "http", NY_OPEN)
    assert r.status_code == 200 and r.json["gate"] == "open" and r.json["checks"] == []
    assert json_path(r.json, "{$.gate}") == "open"
    assert gates(client, "http", NY_OPEN, token="wrong").status_code == 401
    bad = gates(client, "trading", NY_OPEN, action="deploy")
    assert bad.status_code == 400 and bad.json["field"] == "action"
    bad = gates(client, "trading", NY_OPEN, risk_tolerance="yolo")
    assert bad.status_code == 400 and "risk_tolerance" in bad.json["field"]
    assert gates(client, "nope", NY_OPEN).status_code == 400
    # Flagger's confirm-rollout asks "may it start": the same gate, action start.
    assert gates(client, "trading", NY_OPEN, action="start",
                 risk_tolerance="medium").json["gate"] == "closed"


def test_a_gate_is_not_read_at_a_future_instant(client):
    """`window.end` replays a decision made; one still to come (the next Saturday) opened the
    market-hours gate while New York trades now. Refused like an analysis' future end; the
    hook asking "may it start" refuses it too, and never answers 200 for it."""
    saturday = SATURDAY
    while saturday < time.time() + 86400:
        saturday += 7 * 86400
    r = gates(client, "trading", saturday, risk_tolerance="medium")
    assert r.status_code == 400 and r.json["field"] == "window.end", r.json
    # the analysis' own refusal, word for word (`resolve.check_end_passed`)
    assert r.json["message"].startswith(
        f"window.end: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(saturday))} is in the "
        "future (it is now "), r.json["message"]
    assert r.json["message"].endswith("; give a time that has passed (a decision to replay), "
                                      "or leave end out to judge up to now"), r.json["message"]
    hook = client.post("/v1/hooks/confirm-rollout", json={
        "name": "orders", "namespace": "shop", "metadata": {
            "config": "trading", "risk_tolerance": "medium",
            "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(saturday))}})
    assert hook.status_code == 400, hook.get_data(as_text=True)
