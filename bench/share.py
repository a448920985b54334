"""How often the `traffic` check (`webhook.judge.share`) fails a canary that serves its share, and
how soon it fails one that stopped: simulated rollouts, every poll judged as a controller asks.

    python bench/share.py [--rollouts 400] [--out bench/results/share.json]
    python bench/share.py --tiny        # seconds: CI checks the report's shape

Each rollout is 30 minutes of per-step request counts for both sides, polled every minute from
minute 3 on; each poll judges the window from the rollout's start to that minute (sequential
mode's window) and, apart, the last 10 minutes (a fixed window), with `recent: 2m` and a fall of
80 % tolerated, as `http` ships it. What the answer hinges on is varied, not picked:

- traffic: 0.5, 5, 50 and 500 requests/s on both sides together, and the canary's weight
  0.05, 0.2 or 0.5 of it; steps of 15 s and 60 s;
- load: a wave both sides share (a slow swing of ±50 % and AR(1) noise on its logarithm,
  φ = 0.8 per step), as a router or a Service splits one stream;
- burstiness: Poisson counts, or negative-binomial ones (the stream's rate in a step drawn
  from a gamma of shape 5, ±45 %, before it is split: a burst reaches both sides);
- how evenly requests spread: per request (a router or per-request balancing), or over a
  few kept-alive connections: the canary's share in each step drawn from a beta of
  concentration 20 around its weight (gRPC's few long-lived streams).

Healthy rollouts (false failures: any poll of the rollout failing; and the cost of an
undecided check: the share of polls where it holds the whole verdict, `poll_held_share`):
- `steady`: the canary's weight all along;
- `weight_steps`: the weight doubled at a random minute (Flagger's and Argo's steps), capped at 0.9;
- `stable_doubles`: the canary's share halves at a random minute (an autoscaler doubling the
  stable under a replica split, or one of two canary pods leaving the endpoints);
- `stable_scrape_gap`: the stable not scraped for 2 minutes, then counted again (its steps
  absent: left out, not zero).

Faulty rollouts (detection: a failure at some poll after the fault, and how many minutes
after it; a failure before it would be a false one and is counted apart; false passes,
`let_through_after_fault`: a rollout with a poll, once the last 2 minutes all lie after the
fault and before any failure, whose answer lets the canary through: a pass, or an undecided
answer that does not hold the verdict):
- `stops`: the canary serves nothing from a random minute on (its counter flat);
- `vanishes`: the canary is not scraped from a random minute on (its steps absent);
- `tenth`: its share falls to a tenth of its weight (a fall beyond the tolerated 80 %);
- `half`: its share halves: inside the tolerance, listed to show it is not failed (letting
  it through is right).

The false-failure figure is reported against alpha (0.05 per poll, http's default) though the
check promises no bound over polls: a healthy share falls below a fifth of itself by chance
too rarely to matter, and the figure says how rarely.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from webhook.judge.share import judge_share, recent_steps_of

MINUTES = 30
FIRST_POLL = 3
FIXED_MINUTES = 10
ALPHA = 0.05
MAX_DROP = 0.8
RATES = (0.5, 5.0, 50.0, 500.0)
WEIGHTS = (0.05, 0.2, 0.5)
STEPS = (15.0, 60.0)
BURSTS = ("poisson", "negbin")
SPREADS = ("requests", "connections")
WINDOWS = ("sequential", "fixed")
HEALTHY = ("steady", "weight_steps", "stable_doubles", "stable_scrape_gap")
FAULTY = ("stops", "vanishes", "tenth", "half")


def _load(rng: np.random.Generator, points: int) -> np.ndarray:
    """A load multiplier per step both sides share: a slow swing and AR(1) noise."""
    phase = rng.uniform(0, 2 * np.pi)
    swing = 1 + 0.5 * np.sin(phase + np.linspace(0, 2 * np.pi, points))
    noise = np.empty(points)
    noise[0] = rng.normal(0, 0.2)
    for i in range(1, points):
        noise[i] = 0.8 * noise[i - 1] + rng.normal(0, 0.2 * np.sqrt(1 - 0.64))
    return swing * np.exp(noise)


def rollout(rng: np.random.Generator, scenario: str, rate: float, weight: float, step: float,
            burst: str, spread: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-step counts of canary and stable (NaN: not scraped) and the step the scenario's
    change begins at."""
    points = int(MINUTES * 60 / step)
    per_minute = int(60 / step)
    at = int(rng.integers(8, MINUTES - 4)) * per_minute
    share = np.full(points, weight)
    if scenario == "weight_steps":
        share[at:] = min(2 * weight, 0.9)
    elif scenario in ("stable_doubles", "half"):
        share[at:] = weight / (2 - weight)  # odds halved: the stable's pods doubled
    elif scenario == "tenth":
        share[at:] = weight / 10
    elif scenario in ("stops", "vanishes"):
        share[at:] = 0.0
    if spread == "connections":  # a few kept-alive connections: the share jumps step to step
        alive = share > 0
        share[alive] = rng.beta(20 * share[alive], 20 * (1 - share[alive]))
    mean = rate * step * _load(rng, points)
    if burst == "negbin":
        mean = rng.gamma(5.0, mean / 5.0)
    canary, stable = (rng.poisson(mean * part).astype(float) for part in (share, 1 - share))
    if scenario == "vanishes":
        canary[at:] = np.nan
    if scenario == "stable_scrape_gap":
        gap = 2 * per_minute
        carried = stable[at:at + gap].sum()
        stable[at:at + gap] = np.nan
        if at + gap < points:
            stable[at + gap] += carried
    return canary, stable, at


def polls(canary: np.ndarray, stable: np.ndarray,
          step: float) -> list[tuple[int, str, str, bool]]:
    """(minute, window, verdict, blocking) of every poll: the rollout's window so far and the
    last 10 minutes."""
    per_minute = int(60 / step)
    recent = recent_steps_of(120, step)
    out = []
    for minute in range(FIRST_POLL, MINUTES + 1):
        end = minute * per_minute
        for window, begin in (("sequential", 0),
                              ("fixed", max(0, end - FIXED_MINUTES * per_minute))):
            check = judge_share("traffic", canary[begin:end], stable[begin:end],
                                recent_steps=recent, recent_text="2m", max_drop=MAX_DROP,
                                alpha=ALPHA, step=step)
            out.append((minute, window, check.verdict, check.blocking))
    return out


@dataclass
class _Tally:
    """One window's counts over a cell's rollouts."""

    failed: int = 0  # rollouts failed (after the fault, when there is one)
    early: int = 0  # rollouts failed before the fault
    through: int = 0  # faulty rollouts let through after the fault
    judged: int = 0  # polls
    passes: int = 0  # polls passed
    held: int = 0  # polls whose undecided answer holds the whole verdict
    delays: list[int] = field(default_factory=list)  # minutes from the fault to its failure

    def report(self, rollouts: int, faulty: bool) -> dict:
        return {"failed": round(self.failed / rollouts, 4),
                "failed_before_fault": round(self.early / rollouts, 4),
                "poll_pass_share": round(self.passes / max(self.judged, 1), 4),
                "poll_held_share": round(self.held / max(self.judged, 1), 4),
                "let_through_after_fault": round(self.through / rollouts, 4) if faulty else None,
                "minutes_to_fail_median": (statistics.median(self.delays) if self.delays
                                           else None)}


def measure(rollouts: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    cells = []
    grid = itertools.product(HEALTHY + FAULTY, RATES, WEIGHTS, STEPS, BURSTS, SPREADS)
    for scenario, rate, weight, step, burst, spread in grid:
        tally = {window: _Tally() for window in WINDOWS}
        for _ in range(rollouts):
            canary, stable, at = rollout(rng, scenario, rate, weight, step, burst, spread)
            change_minute = at * step / 60
            first_fail: dict[str, int] = {}
            let_through: set[str] = set()
            for minute, window, verdict, blocking in polls(canary, stable, step):
                tally[window].judged += 1
                tally[window].passes += verdict == "pass"
                tally[window].held += verdict == "inconclusive" and blocking
                if verdict == "fail" and window not in first_fail:
                    first_fail[window] = minute
                # once the recent steps all lie after the fault, a pass or an undecided answer
                # that does not hold the verdict lets a faulty canary through
                if (minute >= change_minute + 2 and window not in first_fail
                        and (verdict == "pass" or (verdict == "inconclusive" and not blocking))):
                    let_through.add(window)
            for window in let_through:
                tally[window].through += 1
            for window, minute in first_fail.items():
                if scenario in FAULTY and minute <= change_minute:
                    tally[window].early += 1
                else:
                    tally[window].failed += 1
                    if scenario in FAULTY:
                        tally[window].delays.append(int(minute - change_minute))
        cell = {"scenario": scenario, "healthy": scenario in HEALTHY, "rps": rate,
                "weight": weight, "step": step, "burst": burst, "spread": spread,
                "rollouts": rollouts,
                **{window: tally[window].report(rollouts, scenario in FAULTY)
                   for window in WINDOWS}}
        cells.append(cell)
    return {"cells": cells, "summary": summarise(cells)}


def summarise(cells: list[dict]) -> dict:
    """Worst false failures of the healthy scenarios, and detection of the faulty ones, by
    scenario and traffic."""
    out: dict[str, dict] = {}
    for scenario in HEALTHY + FAULTY:
        mine = [c for c in cells if c["scenario"] == scenario]
        row: dict[str, object] = {}
        for window in WINDOWS:
            rates = [c[window]["failed"] for c in mine]
            row[f"{window}_failed_max"] = max(rates)
            row[f"{window}_failed_mean"] = round(float(np.mean(rates)), 4)
            row[f"{window}_failed_before_fault_max"] = max(
                c[window]["failed_before_fault"] for c in mine)
            row[f"{window}_held_by_rps"] = {
                str(rps): round(float(np.mean([c[window]["poll_held_share"] for c in mine
                                               if c["rps"] == rps])), 3)
                for rps in sorted({c["rps"] for c in mine})}
            if scenario in FAULTY:
                row[f"{window}_let_through_by_rps"] = {
                    str(rps): round(float(np.mean([c[window]["let_through_after_fault"]
                                                   for c in mine if c["rps"] == rps])), 3)
                    for rps in sorted({c["rps"] for c in mine})}
                row[f"{window}_failed_by_rps"] = {
                    str(rps): round(float(np.mean([c[window]["failed"] for c in mine
                                                   if c["rps"] == rps])), 3)
                    for rps in sorted({c["rps"] for c in mine})}
                delays = [c[window]["minutes_to_fail_median"] for c in mine
                          if c[window]["minutes_to_fail_median"] is not None]
                row[f"{window}_minutes_to_fail_median"] = (statistics.median(delays)
                                                           if delays else None)
        out[scenario] = row
    return out


def to_json(report: dict) -> str:
    """The report with one line per cell: 1,536 cells indented filled half a megabyte."""
    cells = ",\n".join("  " + json.dumps(cell, separators=(",", ":")) for cell in report["cells"])
    rest = json.dumps({k: v for k, v in report.items() if k != "cells"}, indent=1)
    return rest[:-2] + ',\n "cells": [\n' + cells + "\n ]\n}"


def main(argv: Sequence[str] | None = None) -> int:
    global RATES, WEIGHTS, STEPS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=400)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.tiny:
        RATES, WEIGHTS, STEPS = (50.0,), (0.2,), (60.0,)
        args.rollouts = 3
    began = time.monotonic()
    report = {"command": "python bench/share.py " + " ".join(sys.argv[1:] if argv is None
                                                              else argv),
              "alpha": ALPHA, "max_drop": MAX_DROP, "recent": "2m",
              **measure(args.rollouts, args.seed),
              "seconds": round(time.monotonic() - began, 1)}
    text = to_json(report)
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
