"""The Argo semantics helper (tests/argo_semantics.py) itself: conditions are typed as Argo
types them; and the readings of the answer README documents (jsonPath and conditions) do with
real answers what README says Argo does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from argo_semantics import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    RUNNING,
    SUCCESSFUL,
    ArgoError,
    MetricLimits,
    MetricResult,
    argo_phase,
    assess_metric,
    eval_condition,
    run_metric,
    validate_metric,
)

from webhook.lab.rollouts import FLAGGER_NEW, NAMESPACE, SCHEME_VARS


@pytest.mark.parametrize(("result", "condition", "expected"), [
    ("pass", 'result == "pass"', True),
    ("inconclusive", 'result == "fail"', False),
    (True, "result == true", True),
    (95.0, "result >= 90", True),
    (12, "result < 50", True),
])
def test_condition_evaluator_follows_argo_typing(result, condition, expected):
    assert eval_condition(result, condition) is expected


@pytest.mark.parametrize(("result", "condition"), [
    (True, 'result == "true"'), ("95", "result >= 90"), ("pass", "result == true"),
    (None, 'result == "pass"'),
])
def test_condition_evaluator_rejects_type_mismatches(result, condition):
    with pytest.raises(ArgoError):
        eval_condition(result, condition)


# -- The readings of the answer README documents, run through Argo's rules on real answers ----

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| jsonPath | successCondition | failureCondition | pass | fail | inconclusive |"


def documented_readings() -> list[dict[str, str]]:
    """Rows of README's table of jsonPath and conditions with what Argo does per verdict."""
    lines = README.read_text().splitlines()
    start = lines.index(HEADER)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        rows.append(dict(zip(HEADER.strip("|").replace(" ", "").split("|"), cells,
                             strict=True)))
    return rows


# A planted Flagger-style rollout per verdict (webhook/lab/rollouts.py).
TARGETS = {"pass": "podinfo", "fail": "badinfo", "inconclusive": FLAGGER_NEW}


def test_readme_documents_what_argo_makes_of_every_verdict(client):
    readings = documented_readings()
    assert {r["jsonPath"] for r in readings} >= {"{$.reason}", "{$.verdict}", "{$.score}",
                                                   "{$.pass}"}
    for verdict, target in TARGETS.items():
        body = {"config": "http", "canary": {"app": target, "namespace": NAMESPACE},
                "stable": {"app": f"{target}-primary", "namespace": NAMESPACE},
                "vars": SCHEME_VARS["app"], "window": {"lookback": "60m"}}
        r = client.post("/v1/analyze", json=body)
        assert r.status_code == 200 and r.json["verdict"] == verdict, r.get_data(as_text=True)
        for reading in readings:
            metric = {"successCondition": reading["successCondition"],
                      "failureCondition": reading["failureCondition"],
                      "provider": {"web": {"jsonPath": reading["jsonPath"]}}}
            phase, value = argo_phase(metric, 200, r.get_data())
            assert phase == reading[verdict], (reading, verdict, value)
        # and any non-2xx is an Error whatever the reading: never a verdict
        assert argo_phase(metric, 503, b"") == (ERROR, "non 2xx response 503")


def test_a_reading_that_fails_thin_data_is_never_shipped():
    """The shipped templates read `reason`, `verdict` or `score`: low data pauses, never
    aborts."""
    aborting = {r["jsonPath"] for r in documented_readings() if r["inconclusive"] == FAILED}
    for path in sorted((README.parent / "analysis_templates").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for metric in (doc or {}).get("spec", {}).get("metrics", []):
                web = metric.get("provider", {}).get("web", {})
                assert web.get("jsonPath") not in aborting, (path, metric["name"])


# -- consecutiveSuccessLimit: the model against Argo's own unit tests' expectations --------------
# analysis/analysis_test.go (TestAssessMetricStatusConsecutiveSuccessLimit,
# TestAssessMetricStatusFailureLimitAndConsecutiveSuccessLimit) and utils/analysis/
# factory_test.go (TestValidateMetrics), v1.8.0 to master 9f8d111: counters as the tests set
# them, the phase they expect (not terminating, terminating).

def _limits(count, failure_limit, success_limit, inconclusive_limit=0):
    return MetricLimits(count=count, failure_limit=failure_limit,
                        inconclusive_limit=inconclusive_limit,
                        consecutive_error_limit=4, consecutive_success_limit=success_limit)


@pytest.mark.parametrize(("count", "failure_limit", "success_limit", "counters", "expected"), [
    # failureLimit -1 (failures never fail), 7 measurements: 3 failed, 4 passed, the last 3 in
    # a row. Without a count:
    (None, -1, 3, (7, 3, 3), (SUCCESSFUL, SUCCESSFUL)),
    (None, -1, 5, (7, 3, 3), (RUNNING, SUCCESSFUL)),
    # count 7 reached: the streak decides, and without it the metric fails
    (7, -1, 5, (7, 3, 3), (FAILED, FAILED)),
    (7, -1, 3, (7, 3, 3), (SUCCESSFUL, SUCCESSFUL)),
    # count 9 not reached: the streak ends it early
    (9, -1, 3, (7, 3, 3), (SUCCESSFUL, SUCCESSFUL)),
    (9, -1, 5, (7, 3, 3), (RUNNING, SUCCESSFUL)),
    # failureLimit 4 and a streak of 4. Without a count:
    (None, 4, 4, (7, 3, 3), (RUNNING, SUCCESSFUL)),
    (None, 4, 4, (9, 5, 0), (FAILED, FAILED)),
    (None, 4, 4, (8, 3, 4), (SUCCESSFUL, SUCCESSFUL)),
    (None, 4, 4, (10, 5, 4), (FAILED, FAILED)),  # the failure limit is checked first
    # count 10 reached: without the streak, Inconclusive (a failure limit applies)
    (10, 4, 4, (10, 4, 3), (INCONCLUSIVE, INCONCLUSIVE)),
    (10, 4, 4, (10, 5, 3), (FAILED, FAILED)),
    (10, 4, 4, (10, 4, 4), (SUCCESSFUL, SUCCESSFUL)),
    (10, 4, 4, (10, 5, 4), (FAILED, FAILED)),
    # count 10 not reached
    (10, 4, 4, (8, 3, 3), (RUNNING, SUCCESSFUL)),
    (10, 4, 4, (8, 5, 3), (FAILED, FAILED)),
    (10, 4, 4, (8, 3, 4), (SUCCESSFUL, SUCCESSFUL)),
    (10, 4, 4, (9, 5, 4), (FAILED, FAILED)),
])
def test_consecutive_success_assessment_matches_argo_s_unit_tests(
        count, failure_limit, success_limit, counters, expected):
    measured, failed, streak = counters
    result = MetricResult(count=measured, failed=failed, successful=measured - failed,
                          consecutive_success=streak)
    limits = _limits(count, failure_limit, success_limit)
    assert (assess_metric(limits, result), assess_metric(limits, result, terminating=True)) \
        == expected


def test_the_streak_counter_follows_every_measurement_phase():
    """runMeasurements: +1 on Successful, back to 0 on Failed, Inconclusive and Error."""
    result = MetricResult()
    seen = []
    for phase in (SUCCESSFUL, SUCCESSFUL, INCONCLUSIVE, SUCCESSFUL, ERROR, SUCCESSFUL,
                  SUCCESSFUL, FAILED, SUCCESSFUL):
        result.record(phase)
        seen.append(result.consecutive_success)
    assert seen == [1, 2, 0, 1, 0, 1, 2, 0, 1]
    assert (result.count, result.error) == (8, 1)  # an Error is not a measurement of count


def test_a_streak_ends_a_metric_before_its_count_and_its_absence_at_count_pauses():
    step = _limits(5, 0, 2, inconclusive_limit=3)
    assert run_metric(step, [SUCCESSFUL] * 5) == (SUCCESSFUL, 2)
    assert run_metric(step, [INCONCLUSIVE, SUCCESSFUL, INCONCLUSIVE, SUCCESSFUL, INCONCLUSIVE]) \
        == (INCONCLUSIVE, 5)
    # An Error between two passes breaks the streak, though it does not use up count.
    assert run_metric(step, [SUCCESSFUL, ERROR, SUCCESSFUL, SUCCESSFUL]) == (SUCCESSFUL, 4)
    # Limits beat the streak: the failure, the inconclusive and the error limits come first.
    assert run_metric(step, [SUCCESSFUL, FAILED]) == (FAILED, 2)
    assert run_metric(_limits(5, -1, 2), [FAILED] * 5) == (FAILED, 5)  # no streak at count


def test_an_older_controller_reads_no_streak():
    metric = {"interval": "1m", "count": "5", "inconclusiveLimit": "3",
              "consecutiveSuccessLimit": "2"}
    assert MetricLimits.of(metric).consecutive_success_limit == 2
    assert MetricLimits.of(metric, argo=(1, 8)).consecutive_success_limit == 2
    old = MetricLimits.of(metric, argo=(1, 7))
    assert old.consecutive_success_limit == 0
    stale = [SUCCESSFUL, SUCCESSFUL, INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE]
    assert run_metric(old, stale) == (SUCCESSFUL, 5)
    with pytest.raises(AssertionError, match="resolve the args"):
        MetricLimits.of({**metric, "consecutiveSuccessLimit": "{{args.streak}}"})


@pytest.mark.parametrize(("metric", "error"), [
    ({"count": 1, "failureLimit": 2}, "count (1) must be >= failureLimit + "
                                      "consecutiveSuccessLimit (2 + 0) if both >= 0"),
    ({"count": 1, "inconclusiveLimit": 2}, "count must be >= inconclusiveLimit"),
    ({"consecutiveSuccessLimit": -1}, "consecutiveSuccessLimit must be >= 0"),
    ({"consecutiveSuccessLimit": 0, "failureLimit": -1},
     "failureLimit and consecutiveSuccessLimit cannot both be disabled"),
    ({"interval": "1m", "count": "5", "consecutiveSuccessLimit": "6"},
     r"count \(5\) must be >= failureLimit \+ consecutiveSuccessLimit \(0 \+ 6\)"),
    ({"count": "5"}, "interval must be specified when count > 1"),
])
def test_metric_validation_follows_argo(metric, error):
    with pytest.raises(ArgoError, match=error if "\\" in error else re.escape(error)):
        validate_metric(metric)


@pytest.mark.parametrize("metric", [
    {"count": 0, "failureLimit": 2},  # count 0: measured until the run ends, no count rules
    {"interval": "1m", "count": "5", "inconclusiveLimit": "3", "consecutiveSuccessLimit": "2"},
    {"interval": "1m", "count": "5", "failureLimit": "-1", "consecutiveSuccessLimit": "5"},
    {"interval": "1m", "count": "0", "consecutiveSuccessLimit": "0"},
])
def test_metric_validation_accepts_what_argo_accepts(metric):
    validate_metric(metric)
