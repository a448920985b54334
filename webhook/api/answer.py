"""The answer's shape: a domain `AnalysisResult` as the JSON body every caller reads.

`run_analysis` returns plain data; this module is the one place that turns it into the body
`VerdictModel` documents (text and HTML are drawn from the same body). The body is built as
plain dicts with every number already of the model's type (a `float` field gets a float, never
an int), so it is exactly what `VerdictModel` validation and its JSON dump would give, without
paying for both on every poll; tests/test_answer_shape.py holds the two together.
"""

from __future__ import annotations

from typing import Any

from webhook.analysis import AnalysisResult
from webhook.judge.types import CheckResult, finite_or_none
from webhook.timefmt import rfc3339

_VERDICTS = frozenset(("pass", "fail", "inconclusive"))


def window_body(result: AnalysisResult) -> dict[str, Any]:
    """The judged window: from the analysis start (rollout start + warmup) to the end, and
    why it starts there when the data alone did not decide it."""
    return {"start": rfc3339(result.start), "end": rfc3339(result.end),
            "step": float(result.step), "note": str(result.note)}


def _verdict(value: str) -> str:
    if value not in _VERDICTS:
        raise ValueError(f"verdict {value!r} is not one of {', '.join(sorted(_VERDICTS))}")
    return value


def check_body(check: CheckResult) -> dict[str, Any]:
    low, high = check.interval if check.interval else (None, None)
    return {
        "name": str(check.name), "kind": str(check.kind), "verdict": _verdict(check.verdict),
        "critical": bool(check.critical), "weight": float(round(check.weight, 6)),
        "group": str(check.group), "cohort": str(check.cohort), "blocking": bool(check.blocking),
        "test": str(check.test),
        "effect": finite_or_none(check.effect),
        "interval": {"low": finite_or_none(low), "high": finite_or_none(high),
                     "of": check.interval_of, "level": finite_or_none(check.interval_level)},
        "p_value": finite_or_none(check.p_value), "allowed": finite_or_none(check.allowed),
        "canary": {"n": finite_or_none(check.canary.n),
                   "value": finite_or_none(check.canary.value)},
        "stable": {"n": finite_or_none(check.stable.n),
                   "value": finite_or_none(check.stable.value)},
        "reason": str(check.reason),
    }


def answer_body(result: AnalysisResult) -> dict[str, Any]:
    """The JSON answer (every key always present with the same type; see VerdictModel)."""
    return {
        "verdict": _verdict(result.verdict), "pass": result.verdict == "pass",
        "score": float(result.score), "reason": str(result.reason),
        "config": str(result.config), "mode": str(result.mode),
        "window": window_body(result), "analysis_id": str(result.analysis_id),
        "checks": [check_body(c) for c in result.checks], "report": "",
    }
