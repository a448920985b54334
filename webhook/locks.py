"""Enforcing a config's locks: the line between what the platform decides and what an app
team's request (Argo args, Flagger metadata, curl) may change.

Overrides are useful (a team tightens a tolerance, turns off a check that does not apply to
it), but a request must not be able to switch off the checks that protect production: with
`tolerance: {relative: "Infinity"}`, `enabled: false`, `vars.error_codes: "nomatch"` or
`vars.code_label: "le"` a canary with three times the errors used to pass. A locked check can
only be made stricter; a locked var only takes the values the operator listed. Pure functions
on the config and the request's parts; the analysis turns a refusal into a 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.configs import AnalysisConfig, CheckLock, MetricSpec

# Fields a request may always change on a locked check: they move the score, not the verdict.
_FREE = {"name", "weight", "group", "description"}
# field -> how a new value may differ from the config's: "up" (only higher is stricter),
# "down" (only lower is stricter). Every other field must stay as the config has it.
# A lower alpha asks more evidence for a pass (and for a fail): it can delay a verdict, never
# let a worse canary pass, so it is the stricter way.
_MONOTONE = {"min_total": "up", "min_points": "up", "min_tail": "up", "min": "up",
             "allowed": "down", "max": "down", "max_missing": "down", "alpha": "down"}


class LockError(ValueError):
    """A request tried to loosen what the config locks; answered 403 naming `field`."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def check_vars(config: AnalysisConfig, request_vars: Mapping[str, str]) -> None:
    """Refuse a request var the config locks, unless it keeps an allowed value."""
    for name, allowed in config.locks.vars.items():
        if name not in request_vars:
            continue
        value = request_vars[name]
        own = config.vars.get(name)
        if value == own or value in allowed:
            continue
        choices = [v for v in ([own] if own is not None else []) + allowed]
        hint = (f"allowed: {', '.join(repr(v) for v in choices)}" if allowed
                else "it is fixed; leave it out")
        raise LockError(f"vars.{name}: locked by config {config.name!r} ({hint}); in Flagger "
                        f"metadata the key is {name}", f"vars.{name}")


def check_disable(config: AnalysisConfig, name: str) -> None:
    if name in config.locks.checks:
        raise LockError(f"metrics.{name}.enabled: check {name!r} is locked by config "
                        f"{config.name!r} and cannot be disabled", f"metrics.{name}.enabled")


def check_override(config: AnalysisConfig, base: MetricSpec, merged: MetricSpec,
                   default_alpha: float) -> None:
    """Refuse a merged spec that is more lenient than the config's locked one.
    `default_alpha` is the alpha the check gets when it sets none itself."""
    lock = config.locks.checks.get(base.name)
    if lock is None:
        return
    old, new = base.model_dump(), merged.model_dump()
    old["alpha"] = old.get("alpha") or default_alpha
    new["alpha"] = new.get("alpha") or old["alpha"]
    for field in sorted(set(old) | set(new)):
        if field in _FREE or old.get(field) == new.get(field):
            continue
        where = f"metrics.{base.name}.{field}"
        if field == "tolerance":
            _check_tolerance(config, base.name, lock, old[field], new[field])
        elif field == "critical":
            if old[field] and not new[field]:
                raise _refused(config, base.name, where, "it must stay critical")
        elif field in _MONOTONE:
            if not _stricter(_MONOTONE[field], old.get(field), new.get(field)):
                way = "raised" if _MONOTONE[field] == "up" else "lowered"
                raise _refused(config, base.name, where, f"{field} may only be {way}")
        else:
            raise _refused(config, base.name, where, f"{field} cannot be changed")


def check_request_alpha(config: AnalysisConfig, alpha: float, default_alpha: float) -> None:
    """The request's `alpha` applies to every check: not above a locked check's own."""
    for metric in config.metrics:
        if metric.name not in config.locks.checks:
            continue
        own = metric.alpha or default_alpha
        if alpha > own * (1 + 1e-12):
            raise LockError(f"alpha: {alpha:g} is above the {own:g} of check {metric.name!r}, "
                            f"which config {config.name!r} locks (give at most {own:g})",
                            "alpha")


def _check_tolerance(config: AnalysisConfig, name: str, lock: CheckLock,
                     old: Mapping[str, float], new: Mapping[str, float]) -> None:
    for part in ("relative", "absolute"):
        most = old[part] * lock.max_loosening
        if new[part] > most * (1 + 1e-12):
            limit = (f"at most {most:g}" if lock.max_loosening > 1
                     else f"at most the config's {old[part]:g}")
            raise _refused(config, name, f"metrics.{name}.tolerance.{part}",
                           f"tolerance.{part} {new[part]:g} is looser than allowed ({limit})")


def _stricter(way: str, old: Any, new: Any) -> bool:
    if old is None:  # no bound in the config: any bound is stricter
        return True
    if new is None:
        return False
    return new >= old if way == "up" else new <= old


def _refused(config: AnalysisConfig, name: str, field: str, why: str) -> LockError:
    return LockError(f"{field}: check {name!r} is locked by config {config.name!r}; {why}",
                     field)
