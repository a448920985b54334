"""Plain result types shared by the judge's tests and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Summary:
    """One side of a comparison: how much data, and the value judged."""

    n: float
    value: float | None


@dataclass(frozen=True)
class Trace:
    """What a check saw step by step, for the report page's chart; never in the JSON answer.

    The judge fills the sequential evidence (it alone knows it); the analysis fills the
    per-step values and the tolerance band from the same arrays it judged. Display only:
    nothing here takes part in a verdict. Sequences are per judged step, NaN where unknown.
    """

    canary: tuple[float, ...] = ()
    stable: tuple[float, ...] = ()
    band_low: tuple[float, ...] = ()  # the canary's tolerated range around the stable
    band_high: tuple[float, ...] = ()
    limits: tuple[float, ...] = ()  # fixed bounds (threshold, allowed events)
    # a quantile's histogram bucket bounds: the buckets place each step's quantile between
    # two of them, and the drawn value is interpolated in between
    bucket_bounds: tuple[float, ...] = ()
    value_label: str = ""  # what the values are ("error ratio", "p99 latency", ...)
    unit: str = ""  # "%", "s" or "" (fmt_value's units)
    evidence: tuple[float, ...] = ()  # log of the test martingale after each step
    evidence_level: float | None = None  # log(1/alpha): the evidence needed to fail
    # what the level is of alpha: "1/(alpha/2)" for a check that fails either way, where
    # each direction's test has half of alpha
    evidence_line: str = "1/alpha"
    first_time: float = 0.0  # unix time of the end of the first judged step
    step: float = 0.0

    @property
    def crossed(self) -> int | None:
        """Index of the first step whose evidence reached the level, or None."""
        if self.evidence_level is None:
            return None
        for i, value in enumerate(self.evidence):
            if value >= self.evidence_level:
                return i
        return None


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
    # the point estimate of `interval_of` (series: the mean difference), where the judge
    # gives one: an interval 1e263 wide has lost it to rounding
    estimate: float | None = None
    group: str = "default"
    cohort: str = ""  # label value of the cohort judged, "" for the whole population
    trace: Trace | None = field(default=None, compare=False, repr=False)
    # False: an inconclusive answer of this check does not hold the verdict (a quantile the
    # bucket layout cannot resolve while another check judges the same histogram); its
    # failures still count.
    blocking: bool = True
    # With blocking False, why it did not decide, as a pass's reason groups such checks
    # ("not resolvable by the buckets"): the judge that made it knows, the verdict does not.
    informational: str = ""


_Result = TypeVar("_Result", CheckResult, Trace)


def evolve(result: _Result, **changes: Any) -> _Result:
    """`dataclasses.replace` for `CheckResult` and `Trace`, at a fifth of its cost.

    An analysis stamps every check several times (critical, weight and group; the cohort;
    the chart's time axis): with dozens of checks `replace`, which matches every field to
    `__init__` by keyword, cost more than some judges. These classes have no init-only
    fields and no `__post_init__`, so a copy of the instance's fields with the changes is
    the same object `replace` would build; an unknown field is still an error.
    """
    fields = result.__dataclass_fields__.keys()
    if not changes.keys() <= fields:  # told without building the set of unknown names
        raise TypeError(f"{type(result).__name__} has no fields {sorted(changes.keys() - fields)}")
    new = object.__new__(type(result))
    new.__dict__.update(result.__dict__, **changes)
    return new


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
    if 1e4 <= abs(value) < 1e15:
        # dollars, orders, bytes: "25,000" above "≤ 10,000", not "2.5e+04" above "≤ 1e+04"
        return f"{value:,.0f}"
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
