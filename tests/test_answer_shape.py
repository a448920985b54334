"""The answer body is built by hand (no pydantic round trip per poll), so it must be exactly
what `VerdictModel` validation and its JSON dump give: same keys in the same order, and a float
wherever the model says float (`1.0`, never `1`, reaches Argo's JSONPath)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from webhook.analysis import AnalysisResult
from webhook.api.answer import answer_body
from webhook.judge.types import CheckResult, Summary
from webhook.models import VerdictModel


def _check(**changes) -> CheckResult:
    fields = dict(name="error_ratio", kind="ratio", verdict="pass", test="mixture martingale",
                  reason="within tolerance · ≤ 2×", canary=Summary(120.0, 0.01),
                  stable=Summary(240.0, 0.012), critical=True, weight=1.0, effect=-0.1,
                  interval=(-0.2, 0.05), interval_of="canary - stable", interval_level=0.95,
                  p_value=0.5, allowed=0.002, group="default", cohort="", blocking=True)
    return CheckResult(**{**fields, **changes})


def _result(checks: list[CheckResult], **changes) -> AnalysisResult:
    fields = dict(config="http", mode="sequential", verdict="pass", score=100.0,
                  reason="pass: 1 check", critical_failure=False, start=1_764_600_000.0,
                  end=1_764_603_600.0, step=60.0, analysis_id="0123456789abcdef", checks=checks)
    return AnalysisResult(**{**fields, **changes})


CASES = {
    "usual": _result([_check(), _check(name="latency_p95", kind="quantile", verdict="fail")]),
    "ints where floats go": _result(
        [_check(weight=2, canary=Summary(0, None), stable=Summary(3, 1), p_value=1,
                interval=(0, 1), allowed=0, effect=0, interval_level=1)],
        score=0, step=60, end=1_764_603_600, start=1_764_600_000, verdict="fail"),
    "numpy numbers": _result([_check(weight=np.float64(0.5), effect=np.float64(0.25),
                                     canary=Summary(np.float64(10.0), np.float64(0.1)),
                                     p_value=np.float64(0.01))], score=np.float64(50.0)),
    "undefined numbers": _result(
        [_check(verdict="inconclusive", effect=math.nan, interval=None, p_value=None,
                allowed=math.inf, interval_level=None, canary=Summary(0.0, None),
                stable=Summary(math.nan, -math.inf), blocking=False)],
        verdict="inconclusive"),
    "weight rounded": _result([_check(weight=1 / 3)]),
    "fractional times": _result([], start=1_764_600_000.123456, end=1_764_603_600.5,
                                step=0.5),
    "no checks": _result([], verdict="inconclusive", score=0.0),
}


@pytest.mark.parametrize("name", CASES)
def test_body_is_what_the_model_gives_byte_for_byte(name):
    body = answer_body(CASES[name])
    through_model = VerdictModel.model_validate(body).model_dump(mode="json", by_alias=True)
    assert json.dumps(body, allow_nan=False) == json.dumps(through_model, allow_nan=False)
    assert list(body) == list(VerdictModel.model_json_schema(by_alias=True)["properties"])


def test_a_verdict_outside_the_contract_is_refused_not_sent():
    with pytest.raises(ValueError, match="not one of"):
        answer_body(_result([], verdict="error"))
    with pytest.raises(ValueError, match="not one of"):
        answer_body(_result([_check(verdict="maybe")]))
