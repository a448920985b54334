"""The shipped templates' analysis settings, judged by Argo's own metric-assessment rules.

A template's `count`, `failureLimit`, `inconclusiveLimit`, `consecutiveErrorLimit` and
`consecutiveSuccessLimit` decide what Argo does with the judge's answers. These tests run Argo's
rules (tests/argo_semantics.py) over every analysis the example Rollouts run, with the args those
Rollouts pass, as Argo Rollouts >= 1.8 reads them and as an older controller does (no streak):
- a regression first seen at the last measurement must fail the run (abort), never promote;
- a healthy canary (passes, some early low-data answers, an outage blip) must never fail;
- a step must not promote on passes its latest answers no longer give (Argo >= 1.8).
Flagger Canaries get the same two questions through their `threshold` and hooks.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from argo_semantics import (
    CONSECUTIVE_SUCCESS_SINCE,
    ERROR,
    FAILED,
    INCONCLUSIVE,
    LATEST,
    ROLLOUT_ACTION,
    RUNNING,
    SUCCESSFUL,
    MetricLimits,
    resolve_args,
    run_metric,
    validate_metric,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "analysis_templates"
# Measurements a background analysis (count "0": until the rollout ends) is given here: a
# rollout of the examples' length at one measurement a minute.
BACKGROUND_MEASUREMENTS = 12


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(TEMPLATES.rglob("*.yaml")):
        out += [(path, d) for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return out


def analyses() -> list[tuple[str, dict[str, Any]]]:
    """(label, metric with args resolved) for every analysis an example Rollout runs."""
    index = {(d["kind"], d["metadata"]["name"]): d for _, d in _docs()
             if d.get("kind") in ("AnalysisTemplate", "ClusterAnalysisTemplate")}
    out = []
    for path, rollout in _docs():
        if rollout.get("kind") != "Rollout":
            continue
        canary = rollout["spec"]["strategy"].get("canary", {})
        runs = [("background", canary["analysis"])] if "analysis" in canary else []
        runs += [(f"step{i}", s["analysis"]) for i, s in enumerate(canary.get("steps", []))
                 if "analysis" in s]
        for where, analysis in runs:
            for ref in analysis["templates"]:
                kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
                template = index[(kind, ref["templateName"])]
                # Only the limits matter here: args without a plain value get a placeholder.
                values = {a["name"]: str(a.get("value", "x")) for a in template["spec"]["args"]}
                values.update({a["name"]: str(a["value"]) for a in analysis.get("args", [])
                               if "value" in a})
                for metric in template["spec"]["metrics"]:
                    label = f"{path.parent.name}/{where}/{kind}/{metric['name']}"
                    out.append((label, resolve_args(metric, values)))
    return out


ANALYSES = analyses()
IDS = [label for label, _ in ANALYSES]


def test_every_shipped_template_is_covered():
    assert {label.split("/")[0] for label in IDS} == {
        p.name for p in TEMPLATES.iterdir() if p.is_dir()}
    assert any("/background/" in label for label in IDS)
    assert any("/step" in label for label in IDS)


def _length(limits: MetricLimits) -> int:
    return limits.count if limits.count is not None else BACKGROUND_MEASUREMENTS


# The releases the templates must be safe on: the streak is read from 1.8 on; before, the field
# is refused or dropped and count and inconclusiveLimit alone decide.
RELEASES = {"argo>=1.8": LATEST, "argo<1.8": (1, CONSECUTIVE_SUCCESS_SINCE[1] - 1)}
RELEASE = pytest.mark.parametrize("argo", list(RELEASES.values()), ids=list(RELEASES))


def without_a_streak(length: int, streak: int) -> list[str]:
    """Passes broken by low-data answers often enough that `streak` passes never run in a row."""
    if streak <= 0:
        return [SUCCESSFUL] * length
    return (([SUCCESSFUL] * (streak - 1) + [INCONCLUSIVE]) * length)[:length]


@RELEASE
@pytest.mark.parametrize(("label", "metric"), ANALYSES, ids=IDS)
def test_a_regression_first_failing_at_the_last_measurement_aborts(label, metric, argo):
    limits = MetricLimits.of(metric, argo)
    n = _length(limits)
    k = limits.consecutive_success_limit
    early = min(limits.inconclusive_limit, n - 1)  # low data at first, then passes
    leads = [without_a_streak(n - 1, k),
             [INCONCLUSIVE] * early + without_a_streak(n - 1 - early, k)]
    # The ways a step reaches its last measurement without a failure: the metric still runs.
    leads = [lead for lead in leads if run_metric(limits, lead)[0] == RUNNING]
    assert leads, (label, limits)
    for lead in leads:
        phases = [*lead, FAILED]
        phase, taken = run_metric(limits, phases, terminating=True)
        assert phase == FAILED and taken == n, (label, limits, phases, phase)
        assert ROLLOUT_ACTION[phase] == "abort"
    # ... and a regression that fails at the first look aborts at once.
    assert run_metric(limits, [FAILED, *[SUCCESSFUL] * n]) == (FAILED, 1)


@RELEASE
@pytest.mark.parametrize(("label", "metric"), ANALYSES, ids=IDS)
def test_a_healthy_canary_is_never_failed(label, metric, argo):
    limits = MetricLimits.of(metric, argo)
    n = _length(limits)
    early = min(limits.inconclusive_limit, n - 1)
    blip = [ERROR] * limits.consecutive_error_limit  # judge or Prometheus briefly down
    runs = {
        "all pass": [SUCCESSFUL] * n,
        "low data first": [INCONCLUSIVE] * early + [SUCCESSFUL] * (n - early),
        "outage blip": [SUCCESSFUL, *blip, *[SUCCESSFUL] * (n - 1)],
        "never enough data": [INCONCLUSIVE] * n,
    }
    for name, phases in runs.items():
        phase, _ = run_metric(limits, phases, terminating=True)
        assert phase in (SUCCESSFUL, INCONCLUSIVE), (label, name, phase)
        assert ROLLOUT_ACTION[phase] in ("continue", "pause")
    assert run_metric(limits, runs["all pass"], terminating=True)[0] == SUCCESSFUL
    # Too little data must pause for a person rather than promote, once it lasts.
    if n > limits.inconclusive_limit:
        assert run_metric(limits, runs["never enough data"])[0] == INCONCLUSIVE


# Argo retries a measurement Error every 10 s whatever the metric's interval.
ERROR_RETRY_SECONDS = 10
# How long a judge that cannot see (Prometheus restarting and replaying its WAL, the judge
# unreachable or refusing 503 busy) may hold each domain's rollouts before Argo aborts them:
# http rides out a Prometheus restart, where aborting would send every rollout in flight back to
# stable at once; trading and healthcare go back to stable within Argo's default ~40 s rather
# than leave a canary serving unjudged.
OUTAGE_HELD_SECONDS = {"http": 300, "trading": 40, "healthcare": 40}


@RELEASE
@pytest.mark.parametrize(("label", "metric"), ANALYSES, ids=IDS)
def test_an_outage_holds_the_rollout_for_its_domain_s_time_then_aborts(label, metric, argo):
    limits = MetricLimits.of(metric, argo)
    n = _length(limits)
    held = OUTAGE_HELD_SECONDS[label.split("/")[0]]
    # an outage `held` s long fails the measurements at 0, 10, ... s before it ends
    errors = -(-held // ERROR_RETRY_SECONDS)
    ridden_out = [SUCCESSFUL, *[ERROR] * errors, *[SUCCESSFUL] * (n - 1)]
    assert run_metric(limits, ridden_out, terminating=True)[0] == SUCCESSFUL, (label, limits)
    # one retry more and the rollout is aborted: a source that stays down never holds it forever
    phase, taken = run_metric(limits, [SUCCESSFUL, *[ERROR] * (errors + 1)])
    assert phase == ERROR and ROLLOUT_ACTION[phase] == "abort", (label, limits, phase)
    assert (taken - 2) * ERROR_RETRY_SECONDS == held  # aborted `held` s into the outage


# The judge's metric of every analysis step (a `gates` metric has inconclusiveLimit 0: any held
# gate pauses, tests/test_gates_metric.py).
STEPS = [a for a in ANALYSES if "/step" in a[0] and a[1]["name"] != "gates"]
STEP_IDS = [label for label, _ in STEPS]
S, INC = SUCCESSFUL, INCONCLUSIVE


@pytest.mark.parametrize(("label", "metric"), STEPS, ids=STEP_IDS)
def test_a_step_never_promotes_on_passes_its_latest_answers_no_longer_give(label, metric):
    """The judge answers inconclusive when it cannot see (the canary's data stopped, traffic
    gone): passes before that are stale. On count and inconclusiveLimit alone Argo promoted
    pass, pass, inconclusive x3; with the streak a step ends Successful only on two passes in
    a row, and reaching count without them pauses the rollout."""
    limits = MetricLimits.of(metric)
    n = limits.count
    assert n is not None
    named = {  # answers of one step -> (Argo's phase, measurements Argo took)
        "pass, pass, then the data stops": ([S, S, INC, INC, INC], (SUCCESSFUL, 2)),
        "passes broken by low data, then it stops": ([S, INC, S, INC, INC], (INCONCLUSIVE, 5)),
        "low data, one pass at the end": ([INC, INC, S, INC, S], (INCONCLUSIVE, 5)),
        "low data, then two passes": ([INC, INC, INC, S, S], (SUCCESSFUL, 5)),
    }
    for name, (phases, expected) in named.items():
        assert run_metric(limits, phases[:n]) == expected, (label, name)
    # Every sequence of passes and low-data answers, Errors between them included: a step is
    # Successful only on an answer that is a pass, after one more pass.
    for phases in itertools.product([S, INC, ERROR], repeat=n):
        phase, taken = run_metric(limits, phases)
        if phase == SUCCESSFUL:
            answers = [p for p in phases[:taken] if p != ERROR]
            assert answers[-2:] == [S, S], (label, phases, taken)


@pytest.mark.parametrize(("label", "metric"), STEPS, ids=STEP_IDS)
def test_before_argo_1_8_a_step_ends_as_it_did(label, metric):
    """What an older controller does with the same templates: no streak, count and
    inconclusiveLimit alone (the stale passes promote there, as they did everywhere before)."""
    old = MetricLimits.of(metric, RELEASES["argo<1.8"])
    assert old == MetricLimits.of({k: v for k, v in metric.items()
                                   if k != "consecutiveSuccessLimit"})
    assert run_metric(old, [S, S, INC, INC, INC]) == (SUCCESSFUL, 5)
    assert run_metric(old, [S] * old.count) == (SUCCESSFUL, old.count)


@pytest.mark.parametrize(("label", "metric"), ANALYSES, ids=IDS)
def test_argo_accepts_every_analysis_and_background_analysis_never_ends_on_passes(label, metric):
    """An AnalysisRun whose metric Argo's validation refuses never starts; and a streak would
    end a background analysis Successful, after which nothing watches the rest of the rollout."""
    validate_metric(metric)
    limits = MetricLimits.of(metric)
    if "/background/" in label:
        assert limits.count is None and limits.consecutive_success_limit == 0, label
        assert run_metric(limits, [SUCCESSFUL] * 50) == (RUNNING, 50)
    elif metric["name"] != "gates":
        assert limits.consecutive_success_limit >= 2, label


@pytest.mark.parametrize("path", sorted(TEMPLATES.rglob("*analysis-template.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_rollout_written_before_the_streak_arg_runs_as_it_did(path):
    """A Rollout that passes no `consecutive-successes` (written for the templates before it)
    gets the template's default: no streak. Its background analysis (count "0") keeps
    watching however many passes come, instead of ending Successful after two; its steps end
    as before."""
    for template in yaml.safe_load_all(path.read_text()):
        args = template["spec"]["args"]
        values = {a["name"]: str(a.get("value", "x")) for a in args}
        for metric in template["spec"]["metrics"]:
            background = MetricLimits.of(resolve_args(metric, values | {"count": "0"}))
            assert background.consecutive_success_limit == 0, (path, metric["name"])
            assert run_metric(background, [SUCCESSFUL] * 50) == (RUNNING, 50)


def test_the_assessment_rules_themselves():
    """Argo's rules as read from its source, on settings where the outcome is known."""
    step = MetricLimits(count=5, failure_limit=1, inconclusive_limit=3,
                        consecutive_error_limit=4, consecutive_success_limit=0)
    # The bug this file guards against: failureLimit 1 promotes a last-measurement failure.
    assert run_metric(step, [SUCCESSFUL] * 4 + [FAILED]) == (SUCCESSFUL, 5)
    assert run_metric(step, [FAILED, FAILED]) == (FAILED, 2)
    # Errors do not use up count; the fifth in a row is an Error.
    assert run_metric(step, [ERROR] * 4 + [SUCCESSFUL] * 5) == (SUCCESSFUL, 9)
    assert run_metric(step, [ERROR] * 5) == (ERROR, 5)
    assert run_metric(step, [INCONCLUSIVE] * 4) == (INCONCLUSIVE, 4)
    # Inconclusive beats Failed when both limits are crossed by the same measurement.
    tight = MetricLimits(count=5, failure_limit=0, inconclusive_limit=0,
                         consecutive_error_limit=4, consecutive_success_limit=0)
    assert run_metric(tight, [INCONCLUSIVE]) == (INCONCLUSIVE, 1)
    background = MetricLimits.of({"interval": "1m", "count": "0", "failureLimit": 0})
    assert background.count is None and background.consecutive_error_limit == 4
    assert run_metric(background, [SUCCESSFUL] * 50) == (RUNNING, 50)
    assert run_metric(background, [SUCCESSFUL] * 50, terminating=True)[0] == SUCCESSFUL
    assert MetricLimits.of({}).count == 1  # no count, no interval: one measurement
    negative = MetricLimits.of({"count": 3, "failureLimit": -1})
    assert run_metric(negative, [FAILED] * 3) == (SUCCESSFUL, 3)


def rollouts() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.parent.name}/{d['metadata']['name']}", d) for p, d in _docs()
            if d.get("kind") == "Rollout"]


@pytest.mark.parametrize(("label", "rollout"), rollouts(), ids=[r[0] for r in rollouts()])
def test_promotion_and_every_weight_increase_wait_for_a_step_analysis(label, rollout):
    """Background analysis can abort or pause a rollout but never holds it: when the steps'
    pauses run out Argo promotes and cancels the run, and a cancelled run is Successful with no
    pass, even with none measured yet (analysis.go assessMetricStatus, `terminating`). Only an
    analysis step makes a pass a condition of moving on, so one must stand between every two
    weight increases and before the end; the first weight needs none (no canary data yet)."""
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    judged, first = True, True
    for i, step in enumerate(steps):
        if "analysis" in step:
            judged = True
        elif "setWeight" in step:
            assert first or judged, f"step {i}: setWeight {step['setWeight']} without analysis"
            first, judged = False, step["setWeight"] >= 100
    assert judged, "the rollout ends without an analysis step after its last weight"
    background = MetricLimits(count=None, failure_limit=0, inconclusive_limit=3,
                              consecutive_error_limit=4, consecutive_success_limit=0)
    assert run_metric(background, [], terminating=True)[0] == SUCCESSFUL
    assert run_metric(background, [INCONCLUSIVE] * 3, terminating=True)[0] == SUCCESSFUL


@pytest.mark.parametrize(("label", "metric"), [a for a in ANALYSES if "/step" in a[0]],
                         ids=[label for label in IDS if "/step" in label])
def test_a_step_analysis_never_succeeds_without_a_pass(label, metric):
    """Errors do not count and inconclusive answers up to the limit do: a step analysis whose
    count is not above its inconclusiveLimit lets a rollout move on having never passed."""
    limits = MetricLimits.of(metric)
    assert limits.count is not None and limits.count > limits.inconclusive_limit
    for errors in range(limits.consecutive_error_limit + 1):
        phases = ([ERROR] * errors + [INCONCLUSIVE]) * (limits.count + 1)
        assert run_metric(limits, phases)[0] != SUCCESSFUL


# -- Flagger: failed checks add up to `threshold`; promotion needs confirm-promotion's 200 ----

def canaries() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.parent.name}/{d['metadata']['name']}", d) for p, d in _docs()
            if d.get("kind") == "Canary"]


# What the judge answers each hook with, per verdict (README "Wiring Flagger"): 2xx or not.
HOOK_PASSES = {"rollback": {"fail-critical"}, "rollout": {"pass", "inconclusive"},
               "confirm-promotion": {"pass"}}


def hook_passes(webhook: dict[str, Any], verdict: str) -> bool:
    """Whether Flagger reads this hook call as passed (200/201/202).

    Verdicts beyond the judge's three: "down" (every attempt gets a 5xx or no connection: the
    judge or Prometheus is out) and "blip" (the first attempt gets a 503/504 or a refused
    connection, a retry a few seconds later the answer for "pass"). Flagger retries 5xx, 429 and
    connection errors `retries` times (go-retryablehttp), and 4xx never.
    """
    if verdict == "down":
        return False
    if verdict == "blip":
        if not webhook.get("retries", 0):
            return False
        verdict = "pass"
    return verdict in HOOK_PASSES[webhook.get("type") or "rollout"]


def flagger_outcome(canary: dict[str, Any], answers: list[str], max_ticks: int = 50) -> str:
    """Flagger's loop (scheduler.go advanceCanary), reduced to what the judge's hooks decide.

    `answers[i]` is the judge's verdict at tick i (the last one repeats). Per tick: a rollback
    hook's 2xx rolls back at once; `threshold` failed checks roll back; a failing rollout hook
    adds a failed check and ends the tick; below maxWeight the weight advances by stepWeight;
    at maxWeight every confirm-promotion hook must pass to promote.
    """
    analysis = canary["spec"]["analysis"]
    hooks = analysis.get("webhooks", [])

    def of(kind: str) -> list[dict[str, Any]]:
        return [w for w in hooks if (w.get("type") or "rollout") == kind]

    threshold = analysis.get("threshold", 1)
    weight, failed = 0, 0
    for tick in range(max_ticks):
        verdict = answers[min(tick, len(answers) - 1)]
        if any(hook_passes(w, verdict) for w in of("rollback")):
            return "rolled back"
        if failed >= threshold:
            return "rolled back"
        if not all(hook_passes(w, verdict) for w in of("rollout")):
            failed += 1
            continue
        if weight < analysis["maxWeight"]:
            weight += analysis["stepWeight"]
            continue
        if all(hook_passes(w, verdict) for w in of("confirm-promotion")):
            return "promoted"
    return "rolled back" if failed >= threshold else "waiting"


CANARIES = canaries()


@pytest.mark.parametrize(("label", "canary"), CANARIES, ids=[c[0] for c in CANARIES])
def test_flagger_canaries_never_promote_a_failure(label, canary):
    analysis = canary["spec"]["analysis"]
    steps = analysis["maxWeight"] // analysis["stepWeight"]
    # A regression first seen at the last weight step, critical or not.
    for bad in ("fail", "fail-critical"):
        assert flagger_outcome(canary, ["pass"] * steps + [bad]) == "rolled back", bad
    # Healthy: some low-data ticks, then passes: promoted; no data ever: it waits.
    assert flagger_outcome(canary, ["inconclusive"] * 3 + ["pass"]) == "promoted"
    assert flagger_outcome(canary, ["inconclusive"]) == "waiting"


@pytest.mark.parametrize(("label", "canary"), CANARIES, ids=[c[0] for c in CANARIES])
def test_flagger_canaries_ride_out_judge_blips_and_never_promote_through_an_outage(label, canary):
    """A 503 busy, a 504 or a judge pod being replaced means "could not judge", which Flagger
    reads as a failed check: without `retries` on the rollout hook, `threshold` such moments in
    a whole rollout roll a healthy canary back. An outage must still never promote."""
    analysis = canary["spec"]["analysis"]
    steps = analysis["maxWeight"] // analysis["stepWeight"]
    threshold = analysis.get("threshold", 1)
    blips = ["blip", "pass"] * threshold + ["pass"] * steps
    assert flagger_outcome(canary, blips) == "promoted"
    # A judge that blips at every tick holds the canary at worst; it never rolls it back.
    assert flagger_outcome(canary, ["blip"]) in ("promoted", "waiting")
    # Down for good, from the start or at max weight: never promoted.
    assert flagger_outcome(canary, ["down"]) == "rolled back"
    assert flagger_outcome(canary, ["pass"] * steps + ["down"]) == "rolled back"
    for webhook in analysis["webhooks"]:
        if (webhook.get("type") or "rollout") == "rollout":
            # each attempt may take the whole timeout: all of them fit in one tick
            attempts = webhook.get("retries", 0) + 1
            assert attempts * int(webhook["timeout"].removesuffix("s")) + 2 ** attempts <= 60
