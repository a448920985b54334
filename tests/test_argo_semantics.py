"""The Argo semantics helper (tests/argo_semantics.py) itself: conditions are typed as Argo
types them."""

from __future__ import annotations

import pytest
from argo_semantics import ArgoError, eval_condition


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
