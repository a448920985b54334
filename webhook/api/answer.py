"""The answer's shape: a domain `AnalysisResult` as the JSON body every caller reads.

`run_analysis` returns plain data; this module is the one place that turns it into the
`VerdictModel` the API documents (text and HTML are drawn from the same body).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from webhook.analysis import AnalysisResult
from webhook.judge.types import CheckResult, finite_or_none
from webhook.models import VerdictModel


def iso(ts: float) -> str:
    """RFC 3339 in UTC with a `Z`, as Argo and Flagger print times."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def window_body(result: AnalysisResult) -> dict[str, Any]:
    """The judged window: from the analysis start (rollout start + warmup) to the end."""
    return {"start": iso(result.start), "end": iso(result.end), "step": result.step}


def check_body(check: CheckResult) -> dict[str, Any]:
    low, high = check.interval if check.interval else (None, None)
    return {
        "name": check.name, "kind": check.kind, "verdict": check.verdict,
        "critical": check.critical, "weight": round(check.weight, 6), "group": check.group,
        "cohort": check.cohort, "blocking": check.blocking,
        "test": check.test,
        "effect": finite_or_none(check.effect),
        "interval": {"low": finite_or_none(low), "high": finite_or_none(high),
                     "of": check.interval_of, "level": finite_or_none(check.interval_level)},
        "p_value": finite_or_none(check.p_value), "allowed": finite_or_none(check.allowed),
        "canary": {"n": finite_or_none(check.canary.n),
                   "value": finite_or_none(check.canary.value)},
        "stable": {"n": finite_or_none(check.stable.n),
                   "value": finite_or_none(check.stable.value)},
        "reason": check.reason,
    }


def answer_body(result: AnalysisResult) -> dict[str, Any]:
    """The JSON answer (every key always present with the same type; see VerdictModel)."""
    verdict = VerdictModel(
        verdict=result.verdict, pass_=result.verdict == "pass", score=result.score,
        reason=result.reason, config=result.config, mode=result.mode,
        window=window_body(result), analysis_id=result.analysis_id,
        checks=[check_body(c) for c in result.checks])
    return verdict.model_dump(mode="json", by_alias=True)
