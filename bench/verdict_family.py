"""How often a whole verdict fails a healthy canary when a config judges many checks at once:
the healthcare workflows, per facility.

    PYTHONPATH=. python bench/verdict_family.py [--runs 200] [--level high] [--facilities 3]
        [--failure-rate 0.005] [--cv 0] [--regression admission:0:0.015]

Every check of a sequential analysis keeps its own chance of ever failing a healthy canary at
the alpha it is judged at (Ville's inequality). The verdict fails if any check fails, so a
family of k checks can fail up to k times as often (the union bound); the healthcare config
judges five workflows per facility, each against stable and against the 99 % success floor.
A metric's facilities share its alpha (alpha / k each, Bonferroni: `judging._split_alpha`).
This simulates A/A rollouts of those checks and counts the rollouts whose verdict ever failed;
docs/profiles.md ("Cohorts") has the figures, tests/test_verdict_family.py pins them. The
polling (`poll_checks`, `window`) and `upper_bound` serve bench/trading_family.py too.

The simulation: `judging.judge_metrics`, as the analysis calls it, on the healthcare config's
`ratio` metrics at a `safety_level` (the other checks are zero-tolerance rules that a canary
without adverse events, and with alerting up, cannot fail). Facility i has `rate` / (i + 1)
admissions per second (a large hospital and smaller sites); the other workflows run at
MIX times that (emergency response a tenth: the low-volume case). Each one-minute step the
canary gets `weight` of the runs, stable the rest; the stable's HISTORY steps before the
rollout are there as a poll reads them. Failures per step are binomial at `failure_rate`, or,
with `cv` > 0, at a Beta-distributed per-step rate with that coefficient of variation (bursts),
drawn independently per side, workflow and facility. The rollout is polled POLLS times one
step apart (Argo's `interval: 1m`), each poll judging [start, now]; a rollout counts as failed
at its first failing poll. `--regression workflow:facility:rate` gives one workflow at one
facility that failure rate on the canary (the power).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from webhook.configs import MetricSpec, load_registry
from webhook.judge.types import CheckResult
from webhook.judging import judge_metrics
from webhook.kinds import KindContext
from webhook.profiles import apply_level
from webhook.sources.base import QueryKey, QueryResult, RangeQuery, Series

STEP = 60.0
HISTORY = 60
POLLS = 20
MIX = {"admission": 1.0, "medication_ordering": 3.0, "lab_results": 4.0, "discharge": 1.0,
       "emergency_response": 0.1}


@dataclass(frozen=True)
class Regression:
    workflow: str
    facility: int
    failure_rate: float


def healthcare_workflows(level: str) -> tuple[list[MetricSpec], float]:
    """The healthcare config's workflow (ratio) metrics at `level`, and the level's alpha."""
    config = load_registry(None).get("healthcare")
    assert config is not None
    specs, applied = apply_level(config, list(config.metrics), {"safety_level": level})
    assert applied is not None and applied.alpha is not None
    return [s for s in specs if s.kind == "ratio"], applied.alpha


def _failures(rng: np.random.Generator, runs: np.ndarray, rate: float, cv: float) -> np.ndarray:
    if cv <= 0:
        return rng.binomial(runs.astype(int), rate).astype(float)
    concentration = rate * (1 - rate) / (cv * rate) ** 2 - 1
    per_step = rng.beta(concentration * rate, concentration * (1 - rate), size=runs.shape)
    return rng.binomial(runs.astype(int), per_step).astype(float)


def simulate(rng: np.random.Generator, specs: Sequence[MetricSpec], facilities: int,
             rate: float, weight: float, failure_rate: float, cv: float, polls: int,
             regression: Regression | None = None, equal: bool = False,
             ) -> dict[QueryKey, QueryResult]:
    """One rollout's fetched results (every poll's window is a prefix of them); `equal`:
    every facility as large as the first."""
    results: dict[QueryKey, QueryResult] = {}
    share = np.r_[np.zeros(HISTORY), np.full(polls, weight)]
    for spec in specs:
        workflow = spec.name.removesuffix("_failures")
        series: dict[tuple[str, str], list[Series]] = {}
        for facility in range(facilities):
            mean = rate * MIX[workflow] * STEP / (1 if equal else facility + 1)
            labels = {spec.cohort_label or "facility": f"F{facility}"}
            for side, part in (("canary", share), ("stable", 1 - share)):
                runs = rng.poisson(mean * part).astype(float)
                p = failure_rate
                if (side == "canary" and regression is not None
                        and (regression.workflow, regression.facility) == (workflow, facility)):
                    p = regression.failure_rate
                failed = _failures(rng, runs, p, cv)
                if side == "canary":  # no canary before the rollout: no series there
                    runs[:HISTORY] = failed[:HISTORY] = np.nan
                series.setdefault((side, "total"), []).append(Series(labels, runs))
                series.setdefault((side, "numerator"), []).append(Series(labels, failed))
        for (side, role), found in series.items():
            key = QueryKey(spec.name, side, role)  # type: ignore[arg-type]
            results[key] = QueryResult(RangeQuery(key, "", 0.0, 0.0, STEP), tuple(found))
    return results


def window(results: Mapping[QueryKey, QueryResult], points: int,
           step: float = STEP) -> dict[QueryKey, QueryResult]:
    """What a poll whose window holds `points` steps of `step` fetched: each result cut to the
    same span on its own grid (a gauge queried at its own, finer step has more points)."""
    out = {}
    for key, r in results.items():
        own = math.floor(points * step / r.query.step + 1e-9) if r.query.step else points
        out[key] = QueryResult(r.query, tuple(Series(s.labels, s.values[:own])
                                              for s in r.series))
    return out


def poll_checks(specs: Sequence[MetricSpec], alpha: float,
                results: Mapping[QueryKey, QueryResult], polls: int, history: int = HISTORY,
                step: float = STEP, delay: int = 0) -> Iterator[tuple[int, list[CheckResult]]]:
    """Each poll's checks as an analysis judges them: poll p (1-based) judges the first
    `delay` + p steps after the stable's `history`, [start, now], one step later each time
    (Argo's `interval`; `delay` steps of its `initialDelay` before the first)."""
    for poll in range(1, polls + 1):
        points = history + delay + poll
        ctx = KindContext(alpha=alpha, mode="sequential", step=step, points=points,
                          first=history)
        yield poll, judge_metrics(list(specs), window(results, points, step), ctx)


def first_failure(specs: Sequence[MetricSpec], alpha: float,
                  results: dict[QueryKey, QueryResult], polls: int) -> tuple[int | None, list[str]]:
    """The first poll (1-based) whose analysis has a failing check, and those checks."""
    for poll, checks in poll_checks(specs, alpha, results, polls):
        failed = [c.name for c in checks if c.verdict == "fail"]
        if failed:
            return poll, failed
    return None, []


@dataclass(frozen=True)
class Outcome:
    runs: int
    failed: int
    first_polls: list[int]
    checks: dict[str, int]  # how many failed rollouts each check failed in

    @property
    def rate(self) -> float:
        return self.failed / self.runs


def run(level: str = "high", facilities: int = 3, rate: float = 2.0, weight: float = 0.2,
        failure_rate: float = 0.005, cv: float = 0.0, runs: int = 200, polls: int = POLLS,
        regression: Regression | None = None, seed: int = 7,
        specs: Sequence[MetricSpec] | None = None, alpha: float | None = None,
        equal: bool = False) -> Outcome:
    """`runs` rollouts; `specs` and `alpha` replace the config's workflows at `level`."""
    if specs is None or alpha is None:
        specs, alpha = healthcare_workflows(level)
    rng = np.random.default_rng(seed)
    failed, first, checks = 0, [], {}
    for _ in range(runs):
        results = simulate(rng, specs, facilities, rate, weight, failure_rate, cv, polls,
                           regression, equal)
        poll, names = first_failure(specs, alpha, results, polls)
        if poll is not None:
            failed += 1
            first.append(poll)
            for name in names:
                checks[name] = checks.get(name, 0) + 1
    return Outcome(runs, failed, first, checks)


def upper_bound(failed: int, runs: int, z: float = 2.576) -> float:
    """Wilson's upper 99.5 % bound on a rate seen `failed` times in `runs`."""
    p = failed / runs
    centre = p + z * z / (2 * runs)
    spread = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs))
    return (centre + spread) / (1 + z * z / runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--level", default="high")
    parser.add_argument("--facilities", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2.0,
                        help="admissions per second at the largest facility")
    parser.add_argument("--weight", type=float, default=0.2, help="the canary's share of runs")
    parser.add_argument("--failure-rate", type=float, default=0.005)
    parser.add_argument("--cv", type=float, default=0.0)
    parser.add_argument("--polls", type=int, default=POLLS)
    parser.add_argument("--regression", default=None, help="workflow:facility:failure_rate")
    args = parser.parse_args()
    regression = None
    if args.regression:
        workflow, facility, bad = args.regression.split(":")
        regression = Regression(workflow, int(facility), float(bad))
    specs, alpha = healthcare_workflows(args.level)
    out = run(args.level, args.facilities, args.rate, args.weight, args.failure_rate, args.cv,
              args.runs, args.polls, regression, specs=specs, alpha=alpha)
    first = f", median first failing poll {np.median(out.first_polls):g}" if out.failed else ""
    top = sorted(out.checks.items(), key=lambda kv: -kv[1])[:3]
    print(f"{args.level} (alpha {alpha:g}), {args.facilities} facilities, failures "
          f"{args.failure_rate:g} cv {args.cv:g}"
          f"{', ' + args.regression if args.regression else ''}: ever failed "
          f"{out.failed}/{out.runs} = {out.rate:.1%}{first}; most: {top}", flush=True)


if __name__ == "__main__":
    main()
