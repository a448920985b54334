"""Combining checks into one verdict and a score whose bands agree with it.

Rules, strictest first:
- any failing check fails the canary (a critical one also asks for a rollback);
- any inconclusive check, or no checks, leaves the whole analysis inconclusive: never a pass
  on missing data;
- only when every check passes does the canary pass. A non-blocking check (`blocking=False`:
  a latency quantile the bucket layout cannot resolve, while the tail share of the same
  histogram is judged) is reported but its inconclusive answer does not hold the verdict; it
  still fails it on evidence.

The score follows the same rule in bands, so Argo conditions on `{$.score}` agree with
`{$.verdict}`: pass = 100; inconclusive in [50, 90); fail in [0, 50). Inside a band it grows
with the share of passing checks: weighted within each group, groups weighted by
`group_weights` (an equal share each by default), the Kayenta habit of reading a score as "how
much looked fine".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from webhook.judge.types import CheckResult, Outcome

# a per-cohort check's name: `admission_failures[facility=B]`
_COHORT = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<label>[^=\[\]]+)=(?P<value>[^\[\]]*)\]$")


@dataclass(frozen=True)
class Verdict:
    verdict: Outcome
    score: float
    reason: str
    critical_failure: bool


def _share_passing(checks: Sequence[CheckResult]) -> float:
    total = sum(c.weight for c in checks)
    if not 0 < total < math.inf:  # no weight, or weights so large their sum overflows
        return sum(c.verdict == "pass" for c in checks) / max(len(checks), 1)
    return sum(c.weight for c in checks if c.verdict == "pass") / total


def group_shares(checks: Sequence[CheckResult]) -> dict[str, float]:
    """Weighted share of passing checks in each group, groups in order of first appearance."""
    groups: dict[str, list[CheckResult]] = {}
    for check in checks:
        groups.setdefault(check.group, []).append(check)
    return {name: _share_passing(members) for name, members in groups.items()}


def _overall_share(checks: Sequence[CheckResult],
                   group_weights: Mapping[str, float] | None) -> float:
    """Groups count by their weight (an equal share unless configured), as in Kayenta."""
    shares = group_shares(checks)
    weights = {g: (group_weights or {}).get(g, 1.0) for g in shares}
    total = sum(weights.values())
    if not 0 < total < math.inf:
        return sum(shares.values()) / len(shares)
    return sum(shares[g] * weights[g] for g in shares) / total


def combine(checks: Sequence[CheckResult],
            group_weights: Mapping[str, float] | None = None) -> Verdict:
    if not checks:
        return Verdict("inconclusive", 50.0, "inconclusive: no checks to judge", False)
    failed = [c for c in checks if c.verdict == "fail"]
    unsure = [c for c in checks if c.verdict == "inconclusive" and c.blocking]
    share = _overall_share(checks, group_weights)
    critical = any(c.critical for c in failed)
    if failed:
        ordered = sorted(failed, key=lambda c: not c.critical)
        reason = "; ".join(_cohorts_together(ordered, critical_mark=True))
        return Verdict("fail", round(49.0 * share, 1), f"fail: {reason}", critical)
    if unsure:
        # a held gate (market hours, a missing approval) first: it is what a person can act
        # on, and a long reason is cut at its end (a Flagger event's line); a reason several
        # checks share (a window that left nothing to judge) is said once
        reason = "; ".join(dict.fromkeys(
            _cohorts_together(sorted(unsure, key=lambda c: c.kind != "gate"))))
        return Verdict("inconclusive", round(50.0 + 39.9 * share, 1),
                       f"inconclusive: {reason}", False)
    passed = _names_together([c.name for c in checks if c.verdict == "pass"])
    informational = [c for c in checks if c.verdict != "pass"]
    if not passed:
        return Verdict("inconclusive", round(50.0 + 39.9 * share, 1),
                       "inconclusive: no check could decide", False)
    if not informational:
        return Verdict("pass", 100.0, f"pass: all {len(checks)} checks within tolerance "
                       f"({', '.join(passed)})", False)
    return Verdict("pass", 100.0, f"pass: {len(passed)} checks within tolerance "
                   f"({', '.join(passed)}); {_informational(informational)}", False)


def _informational(checks: Sequence[CheckResult]) -> str:
    """Why the non-blocking checks of a pass did not decide, each as its judge said
    (`CheckResult.informational`), the checks that say the same thing together."""
    grouped: dict[str, list[str]] = {}
    for check in checks:
        grouped.setdefault(check.informational or "informational", []).append(check.name)
    return "; ".join(f"{text}, informational: {', '.join(_names_together(names))}"
                     for text, names in grouped.items())


def _names_together(names: Sequence[str]) -> list[str]:
    """`names` with the cohorts of one metric as one name, `x[facility=A,B,C]`, where the
    first of them stood: healthcare's pass listed 35 names, 30 of them five workflows (and
    their limits) three facilities over, in a reason Argo records at every poll."""
    return _together([(name, "") for name in names])


def _cohorts_together(checks: Sequence[CheckResult], critical_mark: bool = False) -> list[str]:
    """Each check's reason, a metric's cohorts that say the same thing as one reason
    (`x[facility=A,B,C]: too little data: ...`), where the first of them stood. A workflow
    label the config does not match gave one line per workflow, limit and facility, thirty
    copies of six texts (7 KB); cohorts that differ in anything (their counts) stay apart."""
    lines: list[tuple[str, str | None]] = []
    for check in checks:
        mark = " [critical]" if critical_mark and check.critical else ""
        if check.reason.startswith(check.name + ":"):
            lines.append((check.name, check.reason[len(check.name):] + mark))
        else:
            lines.append((check.reason + mark, None))
    return _together(lines)


def _together(lines: Sequence[tuple[str, str | None]]) -> list[str]:
    """`name + text` for each line, the lines of one metric's cohorts with the same text as
    one, `x[label=A,B,C]` + text, where the first of them stood. A line whose text is None is
    kept as its name alone, never merged."""
    out: list[str | list[str]] = []  # a line, or [base, label, text, *values]
    at: dict[tuple[str, str, str], list[str]] = {}
    for name, text in lines:
        cohort = _COHORT.match(name) if text is not None else None
        if cohort is None:
            out.append(name + (text or ""))
            continue
        key = (cohort["base"], cohort["label"], text or "")
        if key not in at:
            at[key] = [*key]
            out.append(at[key])
        at[key].append(cohort["value"])
    return [line if isinstance(line, str) else
            f"{line[0]}[{line[1]}={','.join(line[3:])}]{line[2]}" for line in out]
