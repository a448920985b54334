"""Plain result types shared by the judge's tests and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Summary:
    """One side of a comparison: how much data, and the value judged."""

    n: float
    value: float | None


@dataclass(frozen=True)
class CheckResult:
    """The judgement of one check, with everything a person needs to see why."""

    name: str
    kind: str
    verdict: Outcome
    test: str
    reason: str
    canary: Summary
    stable: Summary
    critical: bool = False
    weight: float = 1.0
    effect: float | None = None  # canary relative to stable: +0.5 = 50 % higher
    interval: tuple[float, float] | None = None  # bounds of `interval_of`
    interval_of: str = ""
    interval_level: float | None = None
    p_value: float | None = None
    allowed: float | None = None  # the tolerated change, in `interval_of`'s units
    group: str = "default"
    cohort: str = ""  # label value of the cohort judged, "" for the whole population


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or Infinity; an undefined number is reported as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def fmt_value(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if unit == "%":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return f"{value * 1000:.4g}ms" if abs(value) < 1 else f"{value:.4g}s"
    if unit == "ms":
        return f"{value:.4g}ms" if abs(value) < 1000 else f"{value / 1000:.4g}s"
    return f"{value:.4g}"


def fmt_count(n: float) -> str:
    return f"{n:,.0f}"


def tri_state(worse: str | None, within: bool, margin: str, range_text: str,
              more: str = "requests") -> tuple[Outcome, str]:
    """The verdict of a comparison and the clause a person reads after the numbers.

    `worse` names the harmful change ("higher", "slower") when it is shown beyond the margin;
    `within` says the change is shown inside it; otherwise the data cannot tell yet.
    """
    if worse:
        return "fail", f"{worse} beyond {margin}"
    if within:
        return "pass", f"within {margin}"
    return "inconclusive", (f"cannot yet rule out a change beyond {margin} ({range_text}); "
                            f"more {more} will decide")
