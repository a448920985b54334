"""A canary that stops serving fails `http`'s `traffic` check, where every other check judged
what it served before and passed (a canary not scraped for its last 4 minutes passed with score
100). The judge alone on arrays first, then the served analysis on the session lab's canaries
whose pods stop (`webhook.lab.rollouts.ARGO_STOPPED`, `ARGO_HALF_STOPPED`)."""

from __future__ import annotations

import numpy as np
import pytest
from argo_answers import analyze, check_named

from webhook.configs import AnalysisConfig, load_registry
from webhook.judge.share import TOO_EARLY_TEST, judge_share
from webhook.judge.verdict import combine
from webhook.lab.rollouts import (
    ARGO_HALF_STOPPED,
    ARGO_STABLE,
    ARGO_STOPPED,
    STOPPED_BEFORE,
    argo_hash,
)

RECENT = dict(recent_steps=2, recent_text="2m")


def _steady(steps: int = 12, canary: float = 300.0, stable: float = 600.0,
            seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.poisson(canary, steps).astype(float), rng.poisson(stable, steps).astype(float))


def test_a_canary_at_its_share_passes():
    canary, stable = _steady()
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "pass", check.reason
    assert check.blocking and abs(check.effect) < 0.2
    assert check.canary.value == pytest.approx(1 / 3, abs=0.05)
    assert "no fall of its share beyond the 80% tolerated" in check.reason


def test_a_canary_that_counts_nothing_lately_fails():
    canary, stable = _steady()
    canary[-2:] = 0
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "fail", check.reason
    assert check.effect == -1 and check.canary.n == 0
    assert "stopped serving its share" in check.reason
    assert "served 0 of the last 2m's" in check.reason


def test_a_canary_not_scraped_lately_fails_and_says_so():
    canary, stable = _steady()
    canary[-2:] = np.nan
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "fail", check.reason
    assert "has not reported since, while the stable did" in check.reason


def test_a_fall_inside_the_tolerance_never_fails():
    """Half its share: one of two canary pods leaving the endpoints, or the stable doubled by
    an autoscaler under a replica split."""
    canary, stable = _steady(20)
    canary[-6:] /= 2
    check = judge_share("traffic", np.round(canary), stable, **RECENT)
    assert check.verdict == "pass", check.reason


def test_a_share_that_grows_passes():
    canary, stable = _steady(20)
    canary[-6:] *= 3  # the weight tripled
    assert judge_share("traffic", canary, stable, **RECENT).verdict == "pass"


def test_a_stop_too_thin_to_show_holds_the_verdict_but_does_not_fail():
    """One request a step: two silent steps are what a healthy canary does often. Never a
    pass on it either: the canary served nothing lately."""
    canary, stable = _steady(12, canary=1.0, stable=10.0, seed=3)
    canary[-2:] = 0
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "inconclusive" and check.blocking, check.reason
    assert "too few requests lately" in check.reason


def test_a_thin_canarys_longer_silence_is_judged_whole():
    """0.5 requests/s on both sides, a third of them the canary's: two silent minutes prove
    nothing, twelve do. The span judged is the whole silence, and the reason says how long."""
    canary, stable = _steady(30, canary=10.0, stable=20.0, seed=5)
    canary[-12:] = 0
    check = judge_share("traffic", canary, stable, **RECENT, step=60)
    assert check.verdict == "fail", check.reason
    assert "served 0 of the last 12m's" in check.reason
    canary, stable = _steady(30, canary=10.0, stable=20.0, seed=5)
    canary[-2:] = 0
    assert judge_share("traffic", canary, stable, **RECENT, step=60).verdict == "inconclusive"


def test_a_share_jumping_step_to_step_is_not_failed_for_a_quiet_spell():
    """A few long-lived connections (gRPC): the canary's share jumps between steps, and two
    quiet steps are not a stop. The canary served lately: listed, not holding the verdict."""
    shares = np.array([0.05, 0.5, 0.1, 0.6, 0.02, 0.4, 0.3, 0.05, 0.45, 0.2, 0.01, 0.015])
    canary, stable = np.round(1000 * shares), np.round(1000 * (1 - shares))
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "inconclusive" and not check.blocking, check.reason
    assert combine([check]).reason.startswith("inconclusive: no check could decide")


def test_a_stable_scrape_gap_sets_the_canary_against_the_same_span():
    """The stable's first sample after a 6-step gap counts the whole gap; the canary's steps
    in the gap count with it. Set against one canary step, that read as a fall to a seventh."""
    canary = np.full(20, 100.0)
    stable = np.full(20, 100.0)
    stable[13:19] = np.nan
    stable[19] = 700.0
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "pass", check.reason
    assert check.canary.n == 700 == check.stable.n  # the gap's 6 steps and the step after


def test_nothing_before_the_recent_steps_is_not_judged():
    canary, stable = _steady(2)
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "inconclusive" and not check.blocking
    assert check.test == TOO_EARLY_TEST
    canary, stable = _steady(4)  # two steps before: too few to bound the scatter
    assert judge_share("traffic", canary, stable, **RECENT).test == TOO_EARLY_TEST
    passed = combine([judge_share("traffic", *_steady(), **RECENT), check])
    assert passed.verdict == "pass"
    assert "not judged before the window is longer than its recent steps" in passed.reason


def test_a_canary_without_requests_is_too_little_data():
    _, stable = _steady()
    check = judge_share("traffic", np.full(12, np.nan), stable, **RECENT)
    assert check.verdict == "inconclusive" and check.blocking
    assert check.reason == "traffic: too little data: canary has 0 requests in the window"


def test_no_requests_anywhere_lately_does_not_hold_the_verdict():
    canary, stable = _steady()
    canary[-2:] = stable[-2:] = 0
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "inconclusive" and not check.blocking
    assert "no requests on either side in the last 2m" in check.reason
    # a pass says why it did not decide, not that the canary served lately
    passed = combine([judge_share("ok", *_steady(), **RECENT), check])
    assert passed.verdict == "pass"
    assert passed.reason.endswith("; no requests on either side lately, informational: traffic")


@pytest.mark.parametrize("weight", [0.05, 0.2, 0.5])
def test_false_failures_over_a_rollouts_polls_stay_below_alpha(weight):
    """Poisson traffic at 5 requests/s under a shared load wave, 60 s steps, polled every
    minute for 30 minutes: the share of rollouts failed at any poll (bench/share.py measures
    the grid: bursts, kept-alive connections, weights that change)."""
    rng = np.random.default_rng(int(weight * 100))
    failed = 0
    for _ in range(150):
        load = 300 * np.exp(np.cumsum(rng.normal(0, 0.1, 30)))
        canary = rng.poisson(load * weight).astype(float)
        stable = rng.poisson(load * (1 - weight)).astype(float)
        failed += any(judge_share("traffic", canary[:end], stable[:end], **RECENT).verdict
                      == "fail" for end in range(3, 31))
    assert failed / 150 <= 0.05


@pytest.mark.parametrize("mode", ["sequential", "fixed"])
def test_a_canary_whose_pod_stopped_fails_where_every_other_check_passes(client, lab, mode):
    window = lab.window(30) if mode == "fixed" else {"end": lab.window()["end"]}
    answer = analyze(client, ARGO_STOPPED, mode=mode, window=window)
    assert answer["verdict"] == "fail", answer["reason"]
    traffic = check_named(answer, "traffic")
    assert traffic["verdict"] == "fail" and traffic["canary"]["n"] == 0
    assert not traffic["critical"]  # a failed check, not a rollback by the rollback hook
    assert "has not reported since, while the stable did" in traffic["reason"]
    # judged over its whole silence, not only the last 2 minutes
    assert answer["reason"].startswith(
        f"fail: traffic: the canary served 0 of the last {STOPPED_BEFORE / 60:.0f}m's")
    for check in answer["checks"]:  # what it served before: nothing else fails on it
        assert check["name"] == "traffic" or check["verdict"] != "fail", check


def test_one_of_two_pods_stopping_is_not_failed(client, lab):
    answer = analyze(client, ARGO_HALF_STOPPED, window={"end": lab.window()["end"]})
    traffic = check_named(answer, "traffic")
    assert traffic["verdict"] == "pass", traffic["reason"]
    assert traffic["effect"] == pytest.approx(-0.33, abs=0.1)  # a third: ½ / (1 + ½) of 1/2
    assert answer["verdict"] != "fail", answer["reason"]


def test_a_healthy_canary_serves_its_share(client, lab):
    answer = analyze(client, argo_hash("healthy"), window=lab.window(60))
    assert answer["verdict"] == "pass", answer["reason"]
    traffic = check_named(answer, "traffic")
    assert traffic["verdict"] == "pass" and abs(traffic["effect"]) < 0.1
    assert traffic["blocking"]


def test_the_traffic_check_reads_the_error_ratios_total_without_a_query_of_its_own(client, lab):
    """The same total, sent once: the upstream requests of an analysis did not grow."""
    config = load_registry(None).get("http")
    assert config is not None
    for variant in (config, *(config.for_provider(p) for p in config.providers)):
        specs = {spec.name: spec for spec in variant.metrics}
        assert specs["traffic"].total == specs["error_ratio"].total


def test_the_flagger_rollout_hook_answers_412_for_a_canary_that_stopped(client, lab):
    r = client.post("/v1/hooks/rollout", json={
        "name": "stopped", "namespace": "test", "phase": "Progressing", "checksum": "abc123",
        "metadata": {"config": "http", "mode": "fixed", "lookback": "30m",
                     "canary_selector": f'rollouts_pod_template_hash="{ARGO_STOPPED}"',
                     "stable_selector": f'rollouts_pod_template_hash="{ARGO_STABLE}"',
                     "end": str(int(lab.window()["end"]))}})
    assert r.status_code == 412, r.get_data(as_text=True)
    assert "traffic" in r.get_data(as_text=True)


def test_a_shares_tolerance_is_a_fall_below_one():
    for tolerance in ({"relative": 1.0}, {"relative": 0}, {"relative": 0.5, "absolute": 1}):
        with pytest.raises(ValueError, match="a share's tolerance is `relative` only"):
            AnalysisConfig.model_validate({"name": "x", "metrics": [
                {"name": "t", "kind": "share", "total": "sum(x{ {{selector}} })",
                 "tolerance": tolerance}]})


@pytest.mark.parametrize(("override", "field"), [
    ({"tolerance": {"relative": 1.5}}, "metrics.traffic"),
    ({"direction": "increase"}, "metrics.traffic.direction"),
    ({"recent": "0s"}, "metrics.traffic.recent")])
def test_a_request_overriding_the_check_badly_is_a_400_naming_the_field(client, override, field):
    r = client.post("/v1/analyze", json={
        "canary": {"rollouts_pod_template_hash": ARGO_STOPPED},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "metrics": {"traffic": override}})
    assert r.status_code == 400 and r.json["field"] == field, r.json


def test_a_canary_silent_while_the_stable_missed_a_scrape_is_still_said_not_to_report():
    canary, stable = _steady()
    canary[-2:] = np.nan
    stable[-2] = np.nan  # its count joins the last step's
    stable[-1] *= 2
    check = judge_share("traffic", canary, stable, **RECENT)
    assert check.verdict == "fail" and "has not reported since" in check.reason, check.reason
