"""http's `saturation` check: the canary's CPU per request against the stable's.

A canary that serves as fast and as well but burns more CPU per request passed every other
check; it saturates the fleet once promoted. The lab's Argo sides spend 2 ms per request plus
0.02 cores idle (`ARGO_CPU`): the stable's 40 req/s read 2.5 ms, a healthy canary's 20 req/s
3 ms, and `ARGO_CPU_HEAVY`'s 5 ms per request 6 ms.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from argo_answers import analyze, check_named

from webhook.configs import AnalysisConfig, load_registry
from webhook.judge import CheckResult
from webhook.judge.series import judge_series
from webhook.judge.verdict import combine
from webhook.kinds import _not_holding, leans_beyond
from webhook.lab.rollouts import ARGO_CPU_HEAVY, ARGO_STABLE, argo_hash


@pytest.mark.parametrize("mode", ["sequential", "fixed"])
def test_a_canary_burning_more_cpu_per_request_fails_where_every_other_check_passes(
        client, lab, mode):
    window = lab.window(30) if mode == "fixed" else {"end": lab.window()["end"]}
    answer = analyze(client, ARGO_CPU_HEAVY, mode=mode, window=window)
    assert answer["verdict"] == "fail", answer["reason"]
    saturation = check_named(answer, "saturation")
    assert saturation["verdict"] == "fail" and not saturation["critical"]
    assert saturation["canary"]["value"] == pytest.approx(0.006, rel=0.05)  # s per request
    assert saturation["stable"]["value"] == pytest.approx(0.0025, rel=0.05)
    assert saturation["effect"] == pytest.approx(1.4, abs=0.1)
    assert re.match(r"fail: saturation: CPU per request: canary (5\.9\d*|6(\.0\d*)?)ms vs "
                    r"stable 2\.\d+ms",
                    answer["reason"]), answer["reason"]
    assert re.search(r"higher beyond tolerance ±1\.2\d*ms$", answer["reason"]), answer["reason"]
    for check in answer["checks"]:
        assert check["name"] == "saturation" or check["verdict"] != "fail", check


def test_a_healthy_canarys_idle_cost_over_fewer_requests_stays_inside_the_tolerance(client, lab):
    """Half the stable's load per process: its idle CPU shows as +20 % per request."""
    answer = analyze(client, argo_hash("healthy"), window=lab.window(60))
    assert answer["verdict"] == "pass", answer["reason"]
    saturation = check_named(answer, "saturation")
    assert saturation["verdict"] == "pass" and saturation["blocking"], saturation
    assert saturation["effect"] == pytest.approx(0.2, abs=0.05)


def test_behind_a_routers_weights_it_is_listed_not_judged(client, lab):
    """A canary pod sent a ninth of a stable pod's requests spends its idle CPU on fewer of
    them: comparing failed healthy canaries, so under weights it is not judged at all."""
    answer = analyze(client, ARGO_CPU_HEAVY, window=lab.window(30), traffic_split="weights")
    assert answer["verdict"] == "pass", answer["reason"]
    saturation = check_named(answer, "saturation")
    assert saturation["verdict"] == "inconclusive" and not saturation["blocking"]
    assert "not judged under traffic weights, informational: saturation" in answer["reason"]


def test_an_app_exporting_no_cpu_counter_is_listed_and_does_not_hold_the_verdict(client, lab):
    answer = analyze(client, argo_hash("healthy"), window=lab.window(30),
                     vars={"cpu_metric": "myapp_cpu_seconds_total"})
    assert answer["verdict"] == "pass", answer["reason"]
    saturation = check_named(answer, "saturation")
    assert saturation["verdict"] == "inconclusive" and not saturation["blocking"]
    assert "myapp_cpu_seconds_total" in saturation["reason"]  # what was asked, to fix a name
    assert "secondary, not decided, informational: saturation" in answer["reason"]


def test_a_short_analysis_lists_it_and_a_request_may_make_it_hold(client, lab):
    """Four steps of a fixed 30-minute window: fewer than its 5. Listed; a request that wants
    it decided before promoting says `inconclusive_holds: true`."""
    window = {**lab.window(30), "step": 450}
    answer = analyze(client, argo_hash("healthy"), mode="fixed", window=window)
    assert answer["verdict"] == "pass", answer["reason"]
    assert "too little data" in check_named(answer, "saturation")["reason"]
    held = analyze(client, argo_hash("healthy"), mode="fixed", window=window,
                   metrics={"saturation": {"inconclusive_holds": True}})
    assert held["verdict"] == "inconclusive", held["reason"]
    assert "saturation: too little data" in held["reason"]


def test_a_locked_check_cannot_be_let_go_undecided(client):
    with pytest.raises(ValueError, match="locked metrics cannot set inconclusive_holds"):
        AnalysisConfig.model_validate({"name": "x", "locks": {"checks": ["cpu"]}, "metrics": [
            {"name": "cpu", "kind": "series", "query": "avg(x{ {{selector}} })",
             "inconclusive_holds": False}]})
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": {"rollouts_pod_template_hash": ARGO_CPU_HEAVY},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
        "metrics": {"error_ratio": {"inconclusive_holds": False}}})
    assert r.status_code == 403 and r.json["field"] == "metrics.error_ratio.inconclusive_holds"


def test_the_meshes_leave_it_out():
    """Behind a mesh the split is a router's weights: it would never be judged."""
    config = load_registry(None).get("http")
    assert config is not None
    assert "saturation" in {spec.name for spec in config.metrics}
    for provider in config.providers:
        assert "saturation" not in {spec.name for spec in config.for_provider(provider).metrics}


def test_a_cpu_metric_var_cannot_carry_promql(client):
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": {"rollouts_pod_template_hash": ARGO_CPU_HEAVY},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
        "vars": {"cpu_metric": "x) or vector(1"}})
    assert r.status_code == 400 and "cpu_metric" in r.get_data(as_text=True), r.json


def _undecided(ratio: float) -> CheckResult:
    """Six noisy steps of a canary at `ratio` × the stable's CPU per request: not enough to
    decide either way in sequential mode."""
    rng = np.random.default_rng(3)
    stable = 0.0025 * np.exp(rng.normal(0, 0.5, 6))
    canary = ratio * 0.0025 * np.exp(rng.normal(0, 0.5, 6))
    check = judge_series("saturation", canary, stable, relative_tolerance=0.5, min_points=5,
                         mode="sequential")
    assert check.verdict == "inconclusive", check.reason
    return check


def test_an_undecided_canary_seen_beyond_the_tolerance_holds_the_verdict():
    """Not yet shown, but what it has served so far costs twice the stable's CPU: promoting
    it while the check makes up its mind would let the regression through."""
    spec = next(m for m in load_registry(None).get("http").metrics if m.name == "saturation")
    leaning = _undecided(2.0)
    assert leans_beyond(leaning, "increase")
    (held,) = [_not_holding(leaning, spec.direction)]
    assert held.blocking and held.reason.endswith("its estimate lies beyond the tolerance")
    assert combine([held]).verdict == "inconclusive"
    steady = _undecided(1.0)
    assert not leans_beyond(steady, "increase")
    listed = _not_holding(steady, spec.direction)
    assert not listed.blocking and listed.informational == "secondary, not decided"


def test_a_series_label_is_plain_words():
    """It is written into reasons Argo records and the report page: no markup, no braces."""
    for label in ("CPU per request", "p95 in ms", "bytes/request", ""):
        AnalysisConfig.model_validate({"name": "x", "metrics": [
            {"name": "m", "kind": "series", "query": "avg(x{ {{selector}} })", "label": label}]})
    for label in ("<b>x</b>", "{{selector}}", "x" * 41):
        with pytest.raises(ValueError, match="label"):
            AnalysisConfig.model_validate({"name": "x", "metrics": [
                {"name": "m", "kind": "series", "query": "avg(x{ {{selector}} })",
                 "label": label}]})
