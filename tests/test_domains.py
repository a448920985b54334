"""Trading and healthcare safety checks on planted rollouts in a real Prometheus: alerting must
be up at every sample, failure rates near 100 % success, gates hold instead of failing, and
per-instance throughput needs its instance label (issue: domain profiles' safety checks)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from argo_semantics import (
    FAILED,
    INCONCLUSIVE,
    ROLLOUT_ACTION,
    MetricLimits,
    argo_phase,
    run_metric,
    with_arg_defaults,
)

from webhook.app import create_app
from webhook.configs import ThresholdMetric, load_registry
from webhook.judge.limits import judge_proportion_limit, judge_threshold, scrape_gaps
from webhook.judge.ratio import judge_ratio
from webhook.lab.rollouts import (
    ARGO_STABLE,
    FAST_STABLE,
    HEALTHCARE_CANARIES,
    HEALTHCARE_STABLE,
    HISTORY_SECONDS,
    NAMESPACE,
    TRADING_ROLLOUT_START,
    TRADING_STABLE,
    argo_hash,
    healthcare_hash,
    trading_hash,
)
from webhook.settings import load_settings

TEMPLATES = Path(__file__).resolve().parents[1] / "analysis_templates"

# -- helpers ------------------------------------------------------------------------------------


def post_analysis(client, config: str, canary: str, stable: str, window: dict[str, float],
                  **vars_: str):
    return client.post("/v1/analyze", json={
        "config": config, "canary": {"rollouts_pod_template_hash": canary},
        "stable": {"rollouts_pod_template_hash": stable}, "window": window, "vars": vars_})


def analyze(client, config: str, canary: str, stable: str, window: dict[str, float],
            **vars_: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    r = post_analysis(client, config, canary, stable, window, **vars_)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json, {c["name"]: c for c in r.json["checks"]}


def healthcare(client, lab, version: str, **vars_: str):
    return analyze(client, "healthcare", healthcare_hash(version), HEALTHCARE_STABLE,
                   lab.window(60), **vars_)


def trading(client, lab, version: str, stable: str = TRADING_STABLE, **vars_: str):
    return analyze(client, "trading", trading_hash(version), stable, lab.window(60),
                   **{"risk_tolerance": "low", **vars_})


def hook(client, kind: str, config: str, canary: str, stable: str, window: dict[str, float],
         **meta: str) -> tuple[int, str]:
    """A Flagger webhook call as Flagger sends it (POST, metadata a string map)."""
    metadata = {"config": config, "start": str(window["start"]), "end": str(window["end"]),
                "canary_selector": f'rollouts_pod_template_hash="{canary}"',
                "stable_selector": f'rollouts_pod_template_hash="{stable}"', **meta}
    r = client.post(f"/v1/hooks/{kind}", data=json.dumps({
        "name": "svc", "namespace": NAMESPACE, "phase": "Progressing", "checksum": "rev-1",
        "metadata": metadata}), headers={"Content-Type": "application/json"})
    return r.status_code, r.get_data(as_text=True)


def template_metric(profile: str = "trading") -> dict[str, Any]:
    """The shipped AnalysisTemplate's web metric, as an AnalysisRun of an analysis step gets it
    (count "5"): its conditions and limits decide what Argo does with our answers."""
    template = yaml.safe_load((TEMPLATES / profile / "analysis-template.yaml").read_text())
    (metric,) = [m for m in template["spec"]["metrics"] if m["name"] != "gates"]
    return with_arg_defaults(metric, template["spec"]["args"], count="5")


def argo_run(metric: dict[str, Any], answers: list[Any]) -> tuple[list[str], str]:
    """Measurement phases of `answers` (flask responses) and the metric's phase after them."""
    phases = [argo_phase(metric, r.status_code, r.get_data())[0] for r in answers]
    return phases, run_metric(MetricLimits.of(metric), phases)[0]


# -- 1. clinical alerting: every sample, and a missed scrape is missing ---------------------------

@pytest.mark.parametrize("offset", [0, 15, 30, 45])
def test_one_scrape_alerting_outage_fails_and_rolls_back_at_any_offset(client, lab, offset):
    version = f"down{offset}"
    answer, checks = healthcare(client, lab, version)
    alerting = checks["clinical_alerting"]
    assert alerting["verdict"] == "fail" and alerting["critical"], alerting["reason"]
    assert alerting["canary"]["value"] == 0
    assert answer["verdict"] == "fail" and "clinical_alerting" in answer["reason"]
    status, text = hook(client, "rollback", "healthcare", healthcare_hash(version),
                        HEALTHCARE_STABLE, lab.window(60))
    assert status == 200 and "clinical_alerting" in text, text


def step_point_minimum(lab, version: str) -> float:
    """What a gauge read at step points only sees (the old query): proof that the outages
    between points are invisible to it."""
    w = lab.window(60)
    r = requests.get(f"{lab.url}/api/v1/query_range", params={
        "query": f'min(clinical_alerting_up{{rollouts_pod_template_hash="'
                 f'{healthcare_hash(version)}"}})',
        "start": w["start"] + 60, "end": w["end"], "step": 60}, timeout=10)
    values = r.json()["data"]["result"][0]["values"]
    return min(float(v) for _, v in values)


@pytest.mark.parametrize("offset", [15, 30, 45])
def test_the_outages_fall_between_step_points(lab, offset):
    assert step_point_minimum(lab, f"down{offset}") == 1.0


@pytest.mark.parametrize("version", ["gap30", "gap0"])
def test_a_missed_scrape_is_missing_not_up(client, lab, version):
    answer, checks = healthcare(client, lab, version)
    alerting = checks["clinical_alerting"]
    assert answer["verdict"] == "fail"
    # The gauge never left 1, but one scrape never arrived: not "up the whole window".
    assert alerting["canary"]["value"] == 1
    assert alerting["verdict"] == "fail" and "missed scrapes" in alerting["reason"]
    status, text = hook(client, "rollback", "healthcare", healthcare_hash(version),
                        HEALTHCARE_STABLE, lab.window(60))
    assert status == 200 and "clinical_alerting" in text, text


def test_healthy_alerting_passes(client, lab):
    _, checks = healthcare(client, lab, "healthy")
    assert checks["clinical_alerting"]["verdict"] == "pass", checks["clinical_alerting"]


@pytest.mark.parametrize("window", ["fixed", "polled"])
def test_alerting_that_reports_only_after_the_canary_began_serving_fails(client, lab, window):
    """"Up all window" holds from the canary's first traffic on: an alerting gauge that first
    reports 30 minutes into the window (or 90 minutes into the rollout, polled as Argo does,
    from the canary's first traffic) was silent while clinicians relied on the canary."""
    w = lab.window(60) if window == "fixed" else {"end": lab.window(60)["end"], "step": 60}
    answer, checks = analyze(client, "healthcare", healthcare_hash("latealert"),
                             HEALTHCARE_STABLE, w)
    alerting = checks["clinical_alerting"]
    assert alerting["verdict"] == "fail" and alerting["critical"], alerting["reason"]
    assert "served without reporting" in alerting["reason"]
    assert answer["verdict"] == "fail" and "clinical_alerting" in answer["reason"]
    status, text = hook(client, "rollback", "healthcare", healthcare_hash("latealert"),
                        HEALTHCARE_STABLE, lab.window(60))
    assert status == 200 and "clinical_alerting" in text, text


@pytest.mark.parametrize("step", [5, 10, 20, 40])
def test_a_step_off_the_scrape_interval_is_no_outage(client, lab, step):
    """A step shorter than the 15 s scrapes leaves two 5 s steps in three without a sample,
    and a 20 s step holds two samples but one in every three steps: the grid's rhythm, not
    missed scrapes. Both failed a healthy canary's critical check, firing Flagger's rollback."""
    w = {**lab.window(60), "step": step}
    answer, checks = analyze(client, "healthcare", healthcare_hash("healthy"), HEALTHCARE_STABLE,
                             w)
    alerting = checks["clinical_alerting"]
    assert alerting["verdict"] == "pass", alerting["reason"]
    assert answer["verdict"] != "fail", answer["reason"]
    status, text = hook(client, "rollback", "healthcare", healthcare_hash("healthy"),
                        HEALTHCARE_STABLE, w, step=f"{step}s")
    assert status != 200, text


@pytest.mark.parametrize("step", [5, 10, 20, 40])
def test_a_missed_scrape_still_fails_whatever_the_step(client, lab, step):
    w = {**lab.window(60), "step": step}
    _, checks = analyze(client, "healthcare", healthcare_hash("gap30"), HEALTHCARE_STABLE, w)
    alerting = checks["clinical_alerting"]
    assert alerting["verdict"] == "fail" and alerting["canary"]["value"] == 1, alerting["reason"]


@pytest.mark.parametrize("step", [5, 10, 60])
def test_an_event_before_the_window_is_not_counted_at_any_step(client, lab, step):
    """At a step shorter than the 15 s scrapes most steps hold no sample, so "the change since
    the step before" read the counter's whole value at each scrape: a canary whose one adverse
    event came before the window failed its critical check with 92 events."""
    after = lab.anchor - HISTORY_SECONDS + HEALTHCARE_CANARIES["adverse"]["adverse_at"] + 120
    w = {"start": after, "end": lab.window(60)["end"], "step": step}
    answer, checks = analyze(client, "healthcare", healthcare_hash("adverse"), HEALTHCARE_STABLE,
                             w)
    assert checks["adverse_events"]["verdict"] != "fail", checks["adverse_events"]["reason"]
    assert answer["verdict"] != "fail", answer["reason"]


@pytest.mark.parametrize("step", [5, 10, 20, 60])
def test_an_event_in_the_window_counts_once_at_any_step(client, lab, step):
    w = {**lab.window(60), "step": step}
    _, checks = analyze(client, "healthcare", healthcare_hash("adverse"), HEALTHCARE_STABLE, w)
    adverse = checks["adverse_events"]
    assert adverse["verdict"] == "fail" and adverse["canary"]["value"] == 1, adverse["reason"]


def test_scrape_gaps_tell_the_steps_rhythm_from_a_missed_scrape():
    nan = np.nan
    beat = np.array([[2, 2, 1] * 6])                # 20 s steps over 15 s scrapes
    assert not scrape_gaps(beat).any()
    sparse = np.array([[1, nan, nan] * 6])          # 5 s steps over 15 s scrapes
    assert not scrape_gaps(sparse).any()
    missed = np.array([[2, 2, 1, 2, 2, 1, 2, 1, 1, 2, 2, 1]])  # step 7 lost a scrape
    assert scrape_gaps(missed)[7]
    assert scrape_gaps(np.array([[4, 4, 4, 3, 4, 4, 4, 4]])).tolist() == [
        False, False, False, True, False, False, False, False]
    sparse_values = np.array([1.0, nan, nan] * 6)
    assert judge_threshold("alerting", sparse_values, minimum=1, how="min",
                           max_missing=0).verdict == "pass"
    silent = np.array([1.0, nan, nan] * 3 + [nan] * 9)
    assert judge_threshold("alerting", silent, minimum=1, how="min",
                           max_missing=0).verdict == "fail"


def test_scrape_gaps_spare_pods_that_start_or_stop_mid_window():
    nan = np.nan
    counts = np.array([
        [5, 5, 5, 4, 5, 5, 5],      # a missed scrape in step 3
        [nan, nan, 2, 5, 5, 5, 5],  # a pod starting mid-step 2: no gap
        [5, 5, 5, 5, 3, nan, nan],  # a pod stopping in step 4: no gap
        [5, 5, nan, 5, 5, 5, 5],    # a whole step without a sample
    ])
    assert scrape_gaps(counts).tolist() == [False, False, True, True, False, False, False]


def test_a_gauge_absent_while_the_canary_served_is_missing_but_for_its_first_step():
    nan = np.nan
    late = judge_threshold("alerting", np.array([nan, nan, nan, 1.0]), minimum=1,
                           how="min", max_missing=0, served=np.array([True] * 4))
    assert late.verdict == "fail" and "served without reporting in 2 steps" in late.reason
    # a pod that starts mid-step: its first step of traffic may lack the gauge's first scrape
    started = judge_threshold("alerting", np.array([nan, nan, 1.0, 1.0]), minimum=1,
                              how="min", max_missing=0,
                              served=np.array([False, True, True, True]))
    assert started.verdict == "pass", started.reason
    # steps without traffic before the gauge's first sample are not the canary's
    quiet = judge_threshold("alerting", np.array([nan, nan, 1.0]), minimum=1, how="min",
                            max_missing=0, served=np.array([False, False, True]))
    assert quiet.verdict == "pass", quiet.reason


def test_threshold_with_max_missing_must_read_every_sample():
    with pytest.raises(ValueError, match="min_over_time"):
        ThresholdMetric(kind="threshold", name="up", query="min(x{ {{selector}} })", min=1,
                        max_missing=0, samples="count_over_time(x{ {{selector}} }[{{step}}])")
    with pytest.raises(ValueError, match="samples"):
        ThresholdMetric(kind="threshold", name="up", min=1, max_missing=0,
                        query="min(min_over_time(x{ {{selector}} }[{{step}}]))")


# -- 2. success ratios near 100 %: judge the failure rate, with a floor ------------------------

def test_medication_ordering_at_98_5_vs_99_6_fails_in_every_facility(client, lab):
    answer, checks = healthcare(client, lab, "medorder")
    assert answer["verdict"] == "fail"
    for facility in "ABC":
        check = checks[f"medication_ordering_failures[facility={facility}]"]
        assert check["verdict"] == "fail", check["reason"]
        assert check["canary"]["value"] == pytest.approx(0.015, abs=0.003)
        assert check["stable"]["value"] == pytest.approx(0.004, abs=0.0015)
        floor = checks[f"medication_ordering_failures_limit[facility={facility}]"]
        assert floor["verdict"] == "fail" and "above the limit 1%" in floor["reason"], floor
    # the other workflows of the same canary are fine
    assert checks["admission_failures[facility=A]"]["verdict"] == "pass"


def test_failures_under_another_outcome_value_still_fail_the_canary(client, lab):
    """A new version that exports its failed runs as `outcome="error"`: the config counted only
    `outcome="failure"`, read none, and passed medication ordering at 98.5 % success (the
    "medorder" canary, failing everywhere, with its failures spelled otherwise)."""
    answer, checks = healthcare(client, lab, "wferror")
    assert answer["verdict"] == "fail", answer["reason"]
    for facility in "ABC":
        check = checks[f"medication_ordering_failures[facility={facility}]"]
        assert check["verdict"] == "fail", check["reason"]
        assert check["canary"]["value"] == pytest.approx(0.015, abs=0.003)
    assert checks["admission_failures[facility=A]"]["verdict"] == "pass"
    status, text = hook(client, "confirm-promotion", "healthcare", healthcare_hash("wferror"),
                        HEALTHCARE_STABLE, lab.window(60))
    assert status == 412, text


def test_the_floor_is_a_limit_on_the_canary_alone():
    runs = np.full(60, 120.0)
    at = {name: np.full(60, 120.0 * p) for name, p in (("ok", 0.004), ("bad", 0.015),
                                                        ("edge", 0.009))}
    verdicts = {name: judge_proportion_limit("floor", failures, runs, maximum=0.01, alpha=0.01,
                                             min_total=200, mode="sequential").verdict
                for name, failures in at.items()}
    assert verdicts == {"ok": "pass", "bad": "fail", "edge": "inconclusive"}
    thin = judge_proportion_limit("floor", np.zeros(1), np.full(1, 50.0), maximum=0.01)
    assert thin.verdict == "inconclusive" and "too little data" in thin.reason


@pytest.mark.filterwarnings("error")
def test_a_denormal_limit_is_judged_without_a_nan():
    """`max_ratio: 5e-324` centred the sequential prior at weight 1/5e-324 = inf: inf - inf,
    a RuntimeWarning, and a NaN interval read as a point at the estimate, so a canary with no
    failure at all failed, and one with no success passed `min_ratio: 5e-324`."""
    runs = np.full(10, 100.0)

    def verdict(events: float, **limit: float) -> str:
        return judge_proportion_limit("floor", np.full(10, events), runs, mode="sequential",
                                      **limit).verdict

    assert verdict(0.0, maximum=5e-324) == "inconclusive"
    assert verdict(0.5, maximum=5e-324) == "fail"  # 5 failures: above any denormal limit
    assert verdict(0.0, minimum=5e-324) == "inconclusive"
    assert verdict(0.5, minimum=5e-324) == "pass"


def failure_config():
    """The shipped healthcare workflow rule at safety_level high (tolerances x0.75)."""
    spec = load_registry(None).get("healthcare").metrics
    (workflow,) = [m for m in spec if m.name == "medication_ordering_failures"]
    return workflow.tolerance.relative * 0.75, workflow.tolerance.absolute * 0.75


def first_verdicts(p_canary: float, p_stable: float, rollouts: int, seed: int,
                   polls: int = 12, rate: float = 2.0) -> list[str]:
    """Poll a simulated workflow every 5 minutes for an hour (canary `rate` runs/s, stable
    twice that) with the shipped rule; per rollout: "fail" if any poll failed, else the last
    poll's verdict."""
    rel, abs_ = failure_config()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rollouts):
        n_c = rng.poisson(rate * 60, polls * 5).astype(float)
        n_s = rng.poisson(2 * rate * 60, polls * 5).astype(float)
        f_c = rng.binomial(n_c.astype(int), p_canary).astype(float)
        f_s = rng.binomial(n_s.astype(int), p_stable).astype(float)
        verdict = "inconclusive"
        for t in range(5, polls * 5 + 1, 5):
            verdict = judge_ratio("w", f_c[:t], n_c[:t], f_s[:t], n_s[:t],
                                  direction="increase", relative_tolerance=rel,
                                  absolute_tolerance=abs_, alpha=0.01, min_total=200,
                                  mode="sequential").verdict
            if verdict == "fail":
                break
        out.append(verdict)
    return out


@pytest.mark.slow
def test_failure_rate_rule_a_a_and_power():
    """A/A at 99.6 % never fails here (the martingale bounds it at alpha = 1 %); 98.5 % vs
    99.6 % fails within the hour at 2 runs/s in most rollouts: 167 of 200 polled every 5
    minutes (187 while the test's null was x1.75 alone, stricter than the tolerance's
    "x1.75 and +0.375 points", which is x1.94 at 0.4 %). Figures for more rollouts polled
    every minute: docs/profiles.md."""
    healthy = first_verdicts(0.004, 0.004, rollouts=40, seed=1)
    assert healthy.count("fail") == 0
    worse = first_verdicts(0.015, 0.004, rollouts=20, seed=2)
    assert worse.count("fail") >= 15


def test_unfilled_rate_catches_what_the_fill_rate_rule_lets_through():
    """0.8 % → 4 % unfilled is a 3.2 % fill-rate drop (within the 5 % rule) but x5 unfilled."""
    specs = {m.name: m for m in load_registry(None).get("trading").metrics}
    fill, unfilled = specs["order_fill_rate"], specs["order_unfilled_rate"]
    steps, orders = 20, np.full(20, 3000.0)
    fills_c, fills_s = orders * 0.96, orders * 0.992
    by_fill = judge_ratio("order_fill_rate", fills_c, orders, fills_s, orders,
                          direction=fill.direction, relative_tolerance=fill.tolerance.relative,
                          alpha=0.01, min_total=fill.min_total, mode="sequential")
    by_unfilled = judge_ratio(
        "order_unfilled_rate", orders - fills_c, orders, orders - fills_s, orders,
        direction=unfilled.direction, relative_tolerance=unfilled.tolerance.relative,
        absolute_tolerance=unfilled.tolerance.absolute, alpha=0.01,
        min_total=unfilled.min_total, mode="sequential")
    assert steps == orders.size and by_fill.verdict != "fail"
    assert by_unfilled.verdict == "fail" and unfilled.critical


def test_trading_fill_drop_fails_both_views_and_healthy_passes_both(client, lab):
    # 89.3 % filled vs 95 %: unfilled x2.1, where the 5 % tolerance on the fill rate allows
    # x1.95 (5 % -> 9.75 %); so close to the tolerance, an hour of 20 orders/s does not yet
    # show it beyond reasonable doubt, 110 minutes do
    _, bad = analyze(client, "trading", trading_hash("fills"), TRADING_STABLE, lab.window(110),
                     risk_tolerance="low")
    assert bad["order_fill_rate"]["verdict"] == "fail"
    assert bad["order_unfilled_rate"]["verdict"] != "pass"
    _, good = trading(client, lab, "healthy")
    assert good["order_unfilled_rate"]["verdict"] == "pass", good["order_unfilled_rate"]


def test_throughput_is_judged_only_where_instances_share_traffic_equally(client, lab):
    """A healthy canary behind a router's 10 % weight, with as many pods as stable: each of
    its pods serves a ninth of a stable pod's orders. Flagger always splits by weight, and
    its rollout hook answered 412 on throughput (two ticks: a rollback) for every healthy
    trading canary; there the check is listed, not judged. Where pods share traffic
    equally (Argo without trafficRouting, the default) the same rates are a real shortfall."""
    canary, w = trading_hash("weighted"), lab.window(60)
    status, text = hook(client, "rollout", "trading", canary, TRADING_STABLE, w,
                        risk_tolerance="low")
    assert status == 200 and text.startswith("pass:"), text
    assert "not judged under traffic weights, informational: throughput" in text
    status, _ = hook(client, "confirm-promotion", "trading", canary, TRADING_STABLE, w,
                     risk_tolerance="low")
    assert status == 200
    # Argo with trafficRouting says so; without, the template's default, a shortfall fails
    for split, verdict in (("weights", "pass"), ("replicas", "fail"), (None, "fail")):
        body = {"config": "trading", "canary": {"rollouts_pod_template_hash": canary},
                "stable": {"rollouts_pod_template_hash": TRADING_STABLE}, "window": w,
                "vars": {"risk_tolerance": "low"},
                **({"traffic_split": split} if split else {})}
        r = client.post("/v1/analyze", json=body)
        checks = {c["name"]: c for c in r.json["checks"]}
        assert r.json["verdict"] == verdict, (split, r.json["reason"])
        throughput = checks["throughput"]
        if split == "weights":
            assert throughput["verdict"] == "inconclusive" and not throughput["blocking"]
            assert "not judged" in throughput["reason"]
            assert "traffic_split=weights" in r.json["report"]  # the replay judges the same
        else:
            assert throughput["verdict"] == "fail" and "lower beyond" in throughput["reason"]
    # a canary pod with a stable pod's share passes it, as before
    _, healthy = trading(client, lab, "healthy")
    assert healthy["throughput"]["verdict"] == "pass"


def test_a_locked_check_cannot_need_equal_load(tmp_path):
    """A request naming traffic_split: weights would switch such a check off: a locked one
    may not set it (the config does not load)."""
    data = yaml.safe_load((resources.files("webhook") / "configs" / "trading.yaml").read_text())
    data["name"] = "trading-unlocked"
    for metric in data["metrics"]:
        if metric["name"] == "order_fill_rate":
            metric["needs_equal_load"] = True
    (tmp_path / "trading-unlocked.yaml").write_text(yaml.safe_dump(data))
    registry = load_registry(tmp_path)
    assert "trading-unlocked" not in registry.configs
    assert any("needs_equal_load" in e and "order_fill_rate" in e
               for e in registry.errors.values()), \
        registry.errors


# -- 3. a closed gate or a missing approval holds -----------------------------------------------

@pytest.fixture(scope="module")
def gated(lab, tmp_path_factory):
    """The service with `trading-open`: the shipped trading config whose sessions cover every
    second of every day, so the gate is closed whenever this test runs."""
    data = yaml.safe_load((resources.files("webhook") / "configs" / "trading.yaml").read_text())
    data["name"] = "trading-open"
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    data["gates"]["market_hours"]["sessions"] = [
        {"name": "Always", "timezone": "UTC", "open": "00:00", "close": "23:59:59",
         "weekdays": every_day},
        {"name": "Kiritimati", "timezone": "Pacific/Kiritimati", "open": "00:00",
         "close": "23:59:59", "weekdays": every_day}]
    config_dir = tmp_path_factory.mktemp("configs")
    (config_dir / "trading-open.yaml").write_text(yaml.safe_dump(data))
    app = create_app(load_settings(prometheus_url=lab.url, config_dir=config_dir))
    assert not app.extensions["canary_judge"].registry.errors
    return app.test_client()


@pytest.mark.parametrize("risk", ["medium", "high", "critical"])
def test_a_closed_gate_holds_on_argo_never_aborts(gated, lab, risk):
    answer, checks = analyze(gated, "trading-open", trading_hash("healthy"), TRADING_STABLE,
                             lab.window(60), risk_tolerance=risk)
    assert checks["market_hours"]["verdict"] == "inconclusive"
    # every other check that can hold the verdict passes (an order-latency quantile the
    # buckets cannot resolve is informational)
    assert {c["verdict"] for n, c in checks.items()
            if n != "market_hours" and c["blocking"]} == {"pass"}
    assert answer["verdict"] == "inconclusive" and answer["pass"] is False
    reason = checks["market_hours"]["reason"]
    assert ("session open" in reason) if risk != "critical" else ("approv" in reason)
    # Five measurements of the shipped template's step analysis while the session is open:
    # each is Inconclusive, and the run pauses the rollout; it never aborts it.
    metric = template_metric()
    answers = [post_analysis(gated, "trading-open", trading_hash("healthy"), TRADING_STABLE,
                             lab.window(60), risk_tolerance=risk) for _ in range(5)]
    phases, run = argo_run(metric, answers)
    assert set(phases) == {INCONCLUSIVE} and run == INCONCLUSIVE
    assert ROLLOUT_ACTION[run] == "pause"


def test_a_closed_gate_holds_on_flagger_never_rolls_back(gated, lab):
    canary, w = trading_hash("healthy"), lab.window(60)
    for kind in ("confirm-rollout", "confirm-promotion"):
        status, text = hook(gated, kind, "trading-open", canary, TRADING_STABLE, w,
                            risk_tolerance="medium")
        assert status == 412 and "session open" in text, (kind, text)
    status, text = hook(gated, "rollback", "trading-open", canary, TRADING_STABLE, w,
                        risk_tolerance="medium")
    assert status == 412 and text.startswith("no rollback"), text
    # The hooks that carry no gate still see a healthy canary.
    for kind in ("rollout", "confirm-traffic-increase"):
        assert hook(gated, kind, "trading-open", canary, TRADING_STABLE, w,
                    risk_tolerance="medium")[0] == 200


def test_a_missing_approval_holds_on_both_controllers(gated, client, lab):
    canary, w = trading_hash("healthy"), lab.window(60)
    # Closed markets (low-risk sessions do not matter for critical): approval is the gate.
    r = post_analysis(gated, "trading-open", canary, TRADING_STABLE, w,
                      risk_tolerance="critical")
    assert argo_phase(template_metric(), r.status_code, r.get_data())[0] == INCONCLUSIVE
    for kind in ("confirm-promotion", "rollback"):
        status, text = hook(gated, kind, "trading-open", canary, TRADING_STABLE, w,
                            risk_tolerance="critical")
        assert status == 412, (kind, text)
    # Healthcare at safety_level critical without an approval: the same hold.
    w = lab.window(110)
    r = post_analysis(client, "healthcare", healthcare_hash("healthy"), HEALTHCARE_STABLE, w,
                      safety_level="critical")
    assert {c["name"]: c for c in r.json["checks"]}["approval"]["verdict"] == "inconclusive"
    assert argo_phase(template_metric("healthcare"), r.status_code,
                      r.get_data())[0] == INCONCLUSIVE
    status, _ = hook(client, "rollback", "healthcare", healthcare_hash("healthy"),
                     HEALTHCARE_STABLE, w, safety_level="critical")
    assert status == 412


def test_a_failing_canary_still_fails_under_a_closed_gate(gated, lab):
    r = post_analysis(gated, "trading-open", trading_hash("fills"), TRADING_STABLE,
                      lab.window(110), risk_tolerance="medium")  # as above: 110 minutes
    checks = {c["name"]: c for c in r.json["checks"]}
    assert r.json["verdict"] == "fail" and checks["market_hours"]["verdict"] == "inconclusive"
    phases, run = argo_run(template_metric(), [r])
    assert phases == [FAILED] and run == FAILED and ROLLOUT_ACTION[run] == "abort"
    status, text = hook(gated, "rollback", "trading-open", trading_hash("fills"),
                        TRADING_STABLE, lab.window(110), risk_tolerance="medium")
    assert status == 200 and "order_fill_rate" in text and "market_hours" not in text, text


# -- 4. per-instance throughput needs its instance label ----------------------------------------

def test_stable_without_pod_label_is_inconclusive_naming_it(client, lab):
    """The `nopod` stable has two instances at 20/s but no `pod` label: the old query compared
    the canary's 20/s with the stable's 40/s total and failed."""
    answer, checks = analyze(client, "trading", trading_hash("healthy"),
                             trading_hash("nopod"), lab.window(60), risk_tolerance="low")
    check = checks["throughput"]
    assert check["verdict"] == "inconclusive", check["reason"]
    assert "stable" in check["reason"] and "`pod`" in check["reason"]
    assert answer["verdict"] != "fail"


def test_canary_without_pod_label_is_inconclusive_naming_it(client, lab):
    # slippage and market impact are per-instance gauges too: without the label the
    # stable's instances cannot be told apart to calibrate them
    _, checks = trading(client, lab, "nopod")
    for name in ("throughput", "slippage_bps", "market_impact"):
        check = checks[name]
        assert check["verdict"] == "inconclusive" and "canary" in check["reason"], name
        assert "`pod`" in check["reason"], name


def test_instance_label_var_judges_per_instance(client, lab):
    _, checks = analyze(client, "trading", trading_hash("healthy"), trading_hash("nopod"),
                        lab.window(60), risk_tolerance="low", instance_label="instance")
    check = checks["throughput"]
    assert check["verdict"] == "pass", check["reason"]
    assert check["canary"]["value"] == pytest.approx(20, rel=0.05)
    assert check["stable"]["value"] == pytest.approx(20, rel=0.05)


def test_default_pod_label_judges_per_instance(client, lab):
    _, checks = trading(client, lab, "healthy")  # stable: 2 pods, canary: 1 pod, 20/s each
    assert checks["throughput"]["verdict"] == "pass"
    assert checks["throughput"]["stable"]["value"] == pytest.approx(20, rel=0.05)


@pytest.mark.parametrize("label", ["a:b", "pod)", ""])
def test_instance_label_must_be_a_label_name(client, label):
    r = client.post("/v1/analyze", json={
        "config": "trading", "canary": {"app": "a"}, "stable": {"app": "b"},
        "vars": {"risk_tolerance": "low", "instance_label": label}})
    assert r.status_code == 400 and r.json["field"] == "vars.instance_label", r.json


# -- 5. a healthy trading canary passes within its analysis -------------------------------------

def polled(client, lab, version: str, minutes: int) -> list[str]:
    """Verdicts of an Argo-like poll each minute from the rollout's start on: like the shipped
    template, no start (the judge finds the canary's first traffic and reads the stable's
    steps before it), only the poll's time as the end."""
    start = lab.anchor - TRADING_ROLLOUT_START
    out = []
    for k in range(1, minutes + 1):
        answer, _ = analyze(client, "trading", trading_hash(version), FAST_STABLE,
                            {"end": start + 60 * k, "step": 60},
                            risk_tolerance="low")
        out.append(answer["verdict"])
    return out


def test_fifty_orders_per_second_healthy_passes_and_slippage_fails_within_minutes(client, lab):
    healthy = polled(client, lab, "fast", 10)
    assert "fail" not in healthy and "pass" in healthy, healthy
    slipped = polled(client, lab, "fastslip", 5)
    assert "fail" in slipped, slipped


# -- 6. zero tolerance sees every event, wherever the step points fall between scrapes ----------
#
# Prometheus scrapes each target at its own offset, never on the judge's step points. Counted
# per step with increase(…[step]), the increment between the last scrape of one step and the
# first of the next belongs to neither: one single event in four (15 s scrapes, 60 s steps)
# was never counted, and one adverse event on the canary passed. The planted event falls
# between two scrapes that straddle a step point for some of these shifts.

SHIFTS = [-12, -8, -3, 0, 3, 7, 12]


def shifted(lab, seconds: float) -> dict[str, float]:
    w = lab.window(60)
    return {"start": w["start"] + seconds, "end": w["end"] + seconds, "step": 60}


@pytest.mark.parametrize("shift", SHIFTS)
def test_one_adverse_event_fails_wherever_the_step_points_fall(client, lab, shift):
    answer, checks = analyze(client, "healthcare", healthcare_hash("adverse"),
                             HEALTHCARE_STABLE, shifted(lab, shift))
    adverse = checks["adverse_events"]
    assert adverse["verdict"] == "fail" and adverse["critical"], adverse["reason"]
    assert adverse["canary"]["value"] == 1  # one event counted once: a count, not a rate
    assert answer["verdict"] == "fail" and "adverse_events" in answer["reason"]


def test_an_adverse_event_between_step_points_fires_the_rollback_hook(client, lab):
    status, text = hook(client, "rollback", "healthcare", healthcare_hash("adverse"),
                        HEALTHCARE_STABLE, shifted(lab, -8))
    assert status == 200 and "adverse_events" in text, text


@pytest.mark.parametrize("shift", SHIFTS)
def test_one_compliance_breach_fails_wherever_the_step_points_fall(client, lab, shift):
    answer, checks = analyze(client, "trading", trading_hash("breach"), TRADING_STABLE,
                             shifted(lab, shift), risk_tolerance="low")
    breach = checks["compliance_violations"]
    assert breach["verdict"] == "fail" and breach["critical"], breach["reason"]
    assert breach["canary"]["value"] == 1
    assert answer["verdict"] == "fail" and "compliance_violations" in answer["reason"]


@pytest.mark.parametrize("shift", [0, 7])
def test_a_counter_created_at_its_first_error_counts_that_error(client, lab, shift):
    """Client libraries create a labelled counter's series at its first increment, already at
    1: increase() has no earlier sample to count it from."""
    answer, checks = analyze(client, "healthcare", healthcare_hash("lazymed"),
                             HEALTHCARE_STABLE, shifted(lab, shift))
    errors = checks["medication_errors"]
    assert errors["verdict"] == "fail" and errors["canary"]["value"] == 1, errors["reason"]
    assert answer["verdict"] == "fail"


@pytest.mark.parametrize("shift", SHIFTS)
def test_no_event_is_no_event_wherever_the_step_points_fall(client, lab, shift):
    answer, checks = analyze(client, "healthcare", healthcare_hash("healthy"),
                             HEALTHCARE_STABLE, shifted(lab, shift))
    for name in ("adverse_events", "medication_errors", "data_integrity_errors",
                 "phi_audit_failures"):
        assert checks[name]["verdict"] == "pass" and checks[name]["canary"]["value"] == 0
    assert answer["verdict"] == "pass", answer["reason"]


def test_a_canary_without_the_compliance_counter_is_inconclusive_naming_it(client, lab):
    """A new version that stopped exporting (or renamed) its compliance counter has not shown
    zero breaches: the zero-tolerance check must not pass on a metric that is not there."""
    answer, checks = analyze(client, "trading", trading_hash("nocomply"), TRADING_STABLE,
                             lab.window(60), risk_tolerance="low")
    check = checks["compliance_violations"]
    assert check["verdict"] == "inconclusive", check["reason"]
    assert "compliance_violations_total" in check["reason"]  # what was queried, and where
    assert answer["verdict"] == "inconclusive" and "compliance_violations" in answer["reason"]
    # every other check passes: it is the missing counter alone that holds the verdict
    assert {c["verdict"] for n, c in checks.items()
            if n != "compliance_violations" and c["blocking"]} == {"pass"}


WORKFLOW_METRICS = ("admission_failures", "medication_ordering_failures", "lab_results_failures",
                    "discharge_failures", "emergency_response_failures")


def test_workflows_without_the_facility_label_hold_the_verdict_naming_it(client, lab):
    """An application whose workflow counter carries no `facility` label (on both versions)
    had every workflow check vanish from the answer: the canary passed, and Flagger promoted
    it, on the safety counters alone, whatever its workflows' failure rate."""
    answer, checks = analyze(client, "healthcare", healthcare_hash("nofac"),
                             healthcare_hash("nofacold"), lab.window(60))
    for name in WORKFLOW_METRICS:
        check = checks[name]
        assert check["verdict"] == "inconclusive", check["reason"]
        assert "`facility` label" in check["reason"] and "add" in check["reason"]
    assert answer["verdict"] == "inconclusive" and "facility" in answer["reason"]
    status, text = hook(client, "confirm-promotion", "healthcare", healthcare_hash("nofac"),
                        healthcare_hash("nofacold"), lab.window(60))
    assert status == 412, text


def test_a_canary_without_the_facility_label_is_told_so_not_that_it_ran_nothing(client, lab):
    """The canary ran thousands of workflows, none with a `facility` label: each facility's
    check said it had run none ("it has sent (almost) none"), which sends a person looking
    for missing traffic instead of the missing label."""
    answer, checks = analyze(client, "healthcare", healthcare_hash("nofac"), HEALTHCARE_STABLE,
                             lab.window(60))
    for name in WORKFLOW_METRICS:
        check = checks[name]
        assert check["verdict"] == "inconclusive", check["reason"]
        assert "canary series carry no `facility` label" in check["reason"], check["reason"]
    assert not any(n.startswith(WORKFLOW_METRICS) and "[" in n for n in checks), list(checks)
    assert answer["verdict"] == "inconclusive"


def test_a_workflow_label_the_config_does_not_match_is_named_with_the_query(client, lab):
    """A canary whose workflow label reads `ADMISSION`: "no series: canary queried
    clinical_workflow_total{rollouts_pod_template_hash=...}" left out the config's own
    `workflow="admission"`, so the query the reason showed found thousands of series and the
    person reading it could not see what was missing."""
    answer, checks = analyze(client, "healthcare", healthcare_hash("wfupper"),
                             HEALTHCARE_STABLE, lab.window(60))
    check = checks["admission_failures[facility=A]"]
    assert check["verdict"] == "inconclusive", check["reason"]
    selector = f'rollouts_pod_template_hash="{healthcare_hash("wfupper")}"'
    assert (f'canary queried clinical_workflow_total{{{selector}, workflow="admission"}}'
            in check["reason"]), check["reason"]
    assert answer["verdict"] == "inconclusive"
    # the reason Argo records says it once per workflow and limit, not once per facility
    assert answer["reason"].count("admission_failures[facility=A,B,C]: too little data") == 1
    assert "facility=A]" not in answer["reason"] and len(answer["reason"]) < 3000, \
        answer["reason"]


def test_a_canary_without_the_pnl_gauge_is_told_to_export_it_not_to_wait(client, lab):
    """A healthy canary that does not export pnl_impact_usd: the critical check said "too
    little data: 0 canary samples, needs 1", as if a minute more would do; no wait will."""
    answer, checks = analyze(client, "trading", trading_hash("nopnl"), TRADING_STABLE,
                             lab.window(60), risk_tolerance="low")
    pnl = checks["pnl_impact_usd"]
    assert pnl["verdict"] == "inconclusive" and pnl["critical"], pnl["reason"]
    assert "too little data" not in pnl["reason"], pnl["reason"]
    assert "export" in pnl["reason"] and "pnl_impact_usd{" in pnl["reason"], pnl["reason"]
    assert answer["verdict"] == "inconclusive" and "pnl_impact_usd" in answer["reason"]
    status, _ = hook(client, "rollback", "trading", trading_hash("nopnl"), TRADING_STABLE,
                     lab.window(60), risk_tolerance="low")
    assert status == 412


def test_a_serving_canary_without_the_alerting_gauge_is_told_to_export_it(client, lab):
    """The canary ran clinical workflows the whole window without ever reporting
    clinical_alerting_up: "too little data: 0 canary samples, needs 2" sent a person to wait
    for data that will never come."""
    answer, checks = healthcare(client, lab, "noalert")
    alerting = checks["clinical_alerting"]
    assert alerting["verdict"] == "inconclusive" and alerting["critical"], alerting["reason"]
    assert "too little data" not in alerting["reason"], alerting["reason"]
    assert "served" in alerting["reason"] and "export" in alerting["reason"], alerting["reason"]
    assert "clinical_alerting_up{" in alerting["reason"], alerting["reason"]
    assert answer["verdict"] == "inconclusive"


def test_a_pnl_breach_reads_in_whole_dollars(client, lab):
    """What the trading desk reads when the P&L limit rolls a release back: amounts as
    written on the desk, not in scientific notation."""
    _, checks = analyze(client, "trading", argo_hash("errors3x"), ARGO_STABLE,
                        lab.window(60), risk_tolerance="low")
    pnl = checks["pnl_impact_usd"]
    assert pnl["verdict"] == "fail" and pnl["critical"], pnl["reason"]
    assert "|value| 25,000 is above the limit (≤ 10,000)" in pnl["reason"]
    status, text = hook(client, "rollback", "trading", argo_hash("errors3x"), ARGO_STABLE,
                        lab.window(60), risk_tolerance="low")
    assert status == 200 and "25,000" in text and "e+0" not in text, text


def test_a_pnl_excursion_between_step_points_fails(client, lab):
    """"Beyond ±$10,000 at any point of the window": one scrape at -$12,000 between two step
    points is such a point; read at step points only, the gauge showed a quiet canary."""
    answer, checks = analyze(client, "trading", trading_hash("pnlspike"), TRADING_STABLE,
                             lab.window(60), risk_tolerance="low")
    pnl = checks["pnl_impact_usd"]
    assert pnl["verdict"] == "fail" and pnl["critical"], pnl["reason"]
    assert pnl["canary"]["value"] == 12_000
    assert answer["verdict"] == "fail" and "pnl_impact_usd" in answer["reason"]
    status, text = hook(client, "rollback", "trading", trading_hash("pnlspike"), TRADING_STABLE,
                        lab.window(60), risk_tolerance="low")
    assert status == 200 and "pnl_impact_usd" in text, text


# -- 7. what the docs and templates tell a team to send is accepted -----------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "profiles.md"
# "e.g. name: value", possibly across a YAML comment's line break
VAR_EXAMPLE = re.compile(r"e\.g\.\s+(?:#\s+)?`?([a-z_]+): ([a-z_]+)`?")


def test_the_documented_request_overrides_are_accepted(client, lab):
    """docs/profiles.md's "Overriding defaults" examples, sent as a trading request. A
    locked var or a loosened locked check answers 403: as Argo Error measurements, that
    aborts the rollout, and Flagger counts it as a failed check."""
    text = DOCS.read_text()
    section = text[text.index("## Overriding defaults"):text.index("\n## Trading")]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    assert [set(b) for b in blocks] == [{"vars"}, {"metrics"}]
    for block in blocks:
        r = client.post("/v1/analyze", json={
            "config": "trading", "canary": {"rollouts_pod_template_hash": trading_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": TRADING_STABLE}, "window": lab.window(60),
            "vars": {"risk_tolerance": "low"}, **block})
        assert r.status_code == 200, (block, r.get_data(as_text=True))


@pytest.mark.parametrize("profile", ["trading", "healthcare"])
def test_the_var_examples_in_the_domain_templates_are_accepted(client, lab, profile):
    """"Metric names can be changed here too, e.g. …": each such example, sent as the template
    sends vars (Argo jsonBody.vars, Flagger metadata), must not be refused."""
    examples = {m for path in (TEMPLATES / profile).glob("*.yaml")
                for m in VAR_EXAMPLE.findall(path.read_text())}
    assert examples or profile == "healthcare"  # healthcare's metric names are all locked
    hash_of = trading_hash if profile == "trading" else healthcare_hash
    stable = TRADING_STABLE if profile == "trading" else HEALTHCARE_STABLE
    for name, value in examples:
        status, text = hook(client, "rollout", profile, hash_of("healthy"), stable,
                            lab.window(60), **{name: value})
        assert status == 200, (name, value, text)

