"""Combining checks into one verdict and a score whose bands agree with it.

Rules, strictest first:
- any failing check fails the canary (a critical one also asks for a rollback);
- any inconclusive check, or no checks, leaves the whole analysis inconclusive: never a pass
  on missing data;
- only when every check passes does the canary pass.

The score follows the same rule in bands, so Argo conditions on `{$.score}` agree with
`{$.verdict}`: pass = 100; inconclusive in [50, 90); fail in [0, 50). Inside a band it grows
with the weighted share of passing checks (the Kayenta habit of reading a score as "how much
looked fine").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webhook.judge.types import CheckResult, Outcome


@dataclass(frozen=True)
class Verdict:
    verdict: Outcome
    score: float
    reason: str
    critical_failure: bool


def _share_passing(checks: Sequence[CheckResult]) -> float:
    total = sum(c.weight for c in checks)
    if total <= 0:
        return sum(c.verdict == "pass" for c in checks) / max(len(checks), 1)
    return sum(c.weight for c in checks if c.verdict == "pass") / total


def combine(checks: Sequence[CheckResult]) -> Verdict:
    if not checks:
        return Verdict("inconclusive", 50.0, "no checks to judge", False)
    failed = [c for c in checks if c.verdict == "fail"]
    unsure = [c for c in checks if c.verdict == "inconclusive"]
    share = _share_passing(checks)
    critical = any(c.critical for c in failed)
    if failed:
        ordered = sorted(failed, key=lambda c: not c.critical)
        reason = "; ".join(
            (c.reason + (" [critical]" if c.critical else "")) for c in ordered)
        return Verdict("fail", round(49.0 * share, 1), f"fail: {reason}", critical)
    if unsure:
        reason = "; ".join(c.reason for c in unsure)
        return Verdict("inconclusive", round(50.0 + 39.9 * share, 1),
                       f"inconclusive: {reason}", False)
    names = ", ".join(c.name for c in checks)
    return Verdict("pass", 100.0, f"pass: all {len(checks)} checks within tolerance ({names})",
                   False)
