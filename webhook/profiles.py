"""What a config's levels and gates do to one analysis: stricter statistics, timing rules and
the need for a person's approval.

Levels (healthcare's `safety_level`) rescale alpha, tolerances and minimum data before judging.
Gates (trading's market hours) become checks of their own, so the verdict's reason names the
open session. A closed gate is `inconclusive`, never `fail`: it must hold a rollout (Argo
pauses on Inconclusive, Flagger's confirm hooks answer 412), while a `fail` would make Argo abort,
i.e. shift traffic back in the middle of a trading session. Neither is ever `critical`, so
Flagger's rollback hook never rolls back because of a gate.

Approval path: a person approves one canary revision by passing `approved_revision` equal to
that revision: Flagger's `checksum` (metadata `approved_revision`), Argo's canary pod-template
hash (an arg placed in `vars.approved_revision`). A new revision is never covered by an old
approval. Until then the check is inconclusive, which pauses Argo (a person may also run
`kubectl argo rollouts promote`) and keeps Flagger's confirm-promotion closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from webhook.configs import AnalysisConfig, MetricSpec, Tolerance
from webhook.gates.market_hours import decide
from webhook.judge.types import CheckResult, Summary
from webhook.kinds import kind_of


class ProfileError(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class AppliedLevel:
    name: str
    alpha: float | None
    needs_approval: bool


def apply_level(config: AnalysisConfig, specs: list[MetricSpec],
                vars_: Mapping[str, str]) -> tuple[list[MetricSpec], AppliedLevel | None]:
    """Rescale the metrics for the level the request asks for (or the config's default)."""
    if config.levels is None:
        return specs, None
    levels = config.levels
    name = vars_.get(levels.var, levels.default)
    level = levels.values.get(name)
    if level is None:
        raise ProfileError(f"vars.{levels.var}: {name!r} is not one of "
                           f"{', '.join(levels.values)}", f"vars.{levels.var}")
    out: list[MetricSpec] = []
    for spec in specs:
        tolerance = Tolerance(relative=spec.tolerance.relative * level.tolerance_factor,
                              absolute=spec.tolerance.absolute * level.tolerance_factor)
        update: dict[str, object] = {"tolerance": tolerance,
                                     "min_total": spec.min_total * level.min_data_factor}
        update.update(kind_of(spec).level_updates(spec, level.min_data_factor))
        out.append(spec.model_copy(update=update))
    return out, AppliedLevel(name, level.alpha, level.promotion_needs_approval)


def _gate_check(name: str, verdict: str, reason: str, test: str) -> CheckResult:
    return CheckResult(name=name, kind="gate", verdict=verdict,  # type: ignore[arg-type]
                       test=test, reason=reason, canary=Summary(0.0, None),
                       stable=Summary(0.0, None), critical=False, group="gates")


def is_approved(vars_: Mapping[str, str], revision: str | None) -> bool:
    approved = vars_.get("approved_revision", "")
    return bool(revision) and approved == revision


def _to_approve(revision: str | None) -> str:
    """What a person must approve, and how: a canary whose selector pins no pod-template hash
    (a pod or app matcher) has no revision to name until the request gives one."""
    if revision:
        return f"revision {revision}: set approved_revision to it"
    return ("the canary's revision, which this request does not name (its canary selector "
            "pins no rollouts_pod_template_hash): set `revision` in the request and "
            "approved_revision to the same value")


def gate_checks(config: AnalysisConfig, vars_: Mapping[str, str], action: str, at: float,
                revision: str | None, level: AppliedLevel | None) -> list[CheckResult]:
    """Checks for the config's gates, evaluated at `at` (unix seconds) for `action`."""
    checks: list[CheckResult] = []
    approved = is_approved(vars_, revision)
    gates = config.gates
    if gates.market_hours is not None:
        risk = vars_.get(gates.risk_var, gates.default_risk)
        if risk not in ("low", "medium", "high", "critical"):
            raise ProfileError(f"vars.{gates.risk_var}: {risk!r} is not one of low, medium, "
                               "high, critical", f"vars.{gates.risk_var}")
        when = datetime.fromtimestamp(at, UTC)
        decision = decide(gates.market_hours, risk, action, when,  # type: ignore[arg-type]
                          approved=approved)
        # A closed gate holds (inconclusive), whatever the reason: never a fail, which Argo
        # would turn into an abort and Flagger's rollout hook into a failed check.
        verdict = "pass" if decision.allowed else "inconclusive"
        reason = decision.reason
        if decision.needs_approval:
            reason = (f"{gates.risk_var}=critical needs a person to approve "
                      f"{_to_approve(revision)}; it then waits for closed markets like medium")
        checks.append(_gate_check("market_hours", verdict, f"market_hours: {reason}",
                                  f"market-hours gate for risk_tolerance={risk} at "
                                  f"{when.isoformat().replace('+00:00', 'Z')}"))
    if level is not None and level.needs_approval and action == "promote":
        if approved:
            checks.append(_gate_check("approval", "pass", f"approval: revision {revision} "
                                      "approved by a person", "manual approval"))
        else:
            checks.append(_gate_check(
                "approval", "inconclusive",
                f"approval: {config.levels.var if config.levels else 'level'}={level.name} "
                f"needs a person to approve {_to_approve(revision)}", "manual approval"))
    return checks
