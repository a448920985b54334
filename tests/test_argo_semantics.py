"""The Argo semantics helper (tests/argo_semantics.py) itself: conditions are typed as Argo
types them; and the readings of the answer README documents (jsonPath and conditions) do with
real answers what README says Argo does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from argo_semantics import ERROR, FAILED, ArgoError, argo_phase, eval_condition

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
