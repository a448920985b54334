"""How often `http`'s `saturation` check fails a healthy canary, and how soon it fails one that
burns more CPU per request: simulated rollouts, every poll judged as a controller asks.

    python bench/saturation.py [--rollouts 200] [--out bench/results/saturation.json]
    python bench/saturation.py --tiny        # seconds: CI checks the report's shape

Why: CPU seconds per request is a ratio whose denominator is the pod's own load, and every pod
also spends CPU whatever its load (GC, the runtime, scrapes, health checks). Even where every
pod takes an equal share of requests (the only place the check is judged), kept-alive
connections stick to pods, so a canary pod sent less shows more CPU per request; a JIT's
warm-up and a pod on an older CPU generation raise it too. The +50 % tolerance must absorb
those and still catch a canary that really costs more; whether it does hinges on the numbers
below, so they are varied rather than picked. The judge is the check's own
(`webhook.judge.series.judge_series` with `SETTINGS`, given what `webhook.kinds.series` gives
it for a per-instance metric: paired per-step differences of the sides' instance means, the
normal-mixture SPRT calibrated on the stable's instances against each other over the hour
before the rollout); Prometheus and the query are not simulated.

Each rollout is 30 judged 60 s steps (the canary pod's first step, its start-up, is left out by
the query, so step 0 begins 60 s after the pod started), with the stable's 60 steps before step
0 as `stable_history`. It is polled every minute from minute 3 on, each poll judging steps 0 to
the minute against the stable's same steps (polls 3 and 4 have fewer than `min_points` steps:
inconclusive by construction); a rollout counts as failed at its first failing poll, and is
not polled after it (the controller aborts it).

Per step and pod: requests ~ Poisson(rate × 60 s × burst), burst 1 (`poisson`) or a gamma of
shape 5 (±45 %) per step that all pods share (`gamma`: one Service spreads one bursty stream);
the sum of the requests' CPU costs, each lognormal with σ = 1 (CV 1.3) around the side's mean
cost, drawn one by one up to 200 requests per pod and step (so at 0.5 requests/s) and beyond that
from the Fenton-Wilkinson lognormal with the sum's mean and variance (Fenton, "The sum of
log-normal probability distributions in scatter transmission systems", IRE Trans.
Communications Systems 8, 1960), which keeps about two thirds of its skewness (0.28 of 0.44 at
200 requests, where the sum's sd is 9 % of its mean): drawn one by one, a cell at 5 requests/s
took three times as long, for a difference far below the noise added next; that sum times a
multiplicative noise; plus the pod's background CPU, a constant per second. The noise is the
product of a shared AR(1) on the log (the request mix drifts for everyone), an own AR(1) on the
log per pod (cache warmth, neighbours), both of lag-1 autocorrelation `phi`, and 1 + a GC
burst per pod and step (gamma of shape 0.5, mean 5 %). `noise` sets the split of the log sds:
`shared` 0.12 shared and 0.06 own, `own` the reverse. d = canary − stable cancels the shared
part and keeps a 1-pod canary's whole own part, which the stable's mean over 4 pods averages
away: calibrated on that mean alone (the check's first version, one series per side), the
own-heavy split failed 7–8 % of healthy canaries at the tolerance's edge; the stable's
instances against each other measure the own part. Each pod's value per step: its CPU
seconds over its requests (NaN with none); a side's, its pods' mean.

Axes. The stable has 4 pods at `rps` requests/s each; the canary `canary_pods` pods at `load` ×
that each (the kept-alive imbalance, fixed over a rollout). `background`: a stable pod's
background CPU as a share of its expected CPU at its load. `warmup` `jit`: the canary's
per-request cost × (1 + 2 exp(−t/90 s)), t from the pod's start, averaged over each step.
`node`: a canary pod on a slower CPU spends `node` × the CPU seconds, on its requests and on its
background alike (an older CPU generation runs the GC and the runtime slower too: the request
cost alone would understate it). `regression`: the canary's per-request cost × 1.3 (inside the
tolerance: must almost never fail), 2 or 3.

The grid (`grid`): healthy canaries over rps × background × load × warmup × node × phi × noise
with 1 canary pod and Poisson traffic; the same without and with both warm-up and slower node
(the benign extremes) for 2 canary pods and for gamma bursts; regressions over rps ×
background × regression × phi × noise × (1 pod, 2 pods, gamma bursts) at load 1.0.

Each cell reports its true expected relative excess of the canary's CPU per request over the
stable's (`expected_excess`, from the parameters: ratio of the sides' expected per-step
values, E[1/N] of the request counts included, averaged over the steps a poll judges) at the
first judgeable poll, the last, and the largest over the polls. A cell whose largest lies
beyond the tolerance is `beyond_tolerance`: failing it is the check doing what its tolerance
says, not a false failure, however benign its cause. Reported per cell: failed rollouts,
held polls among the polls made (`OUTCOMES`: the check is `inconclusive_holds: false`, so an
undecided answer holds the verdict only when its estimate lies beyond the tolerance), each
rollout's standing at minute 7 and 30 (`MARKS`: failed, held, or let through), the median
minute of the first failure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

if __package__ in (None, ""):  # `python bench/saturation.py`: only bench/ is on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.share import to_json  # one line per cell
from webhook.judge.series import judge_series
from webhook.kinds import leans_beyond
from webhook.kinds.base import rows_mean

STEP = 60.0
MINUTES = 30
HISTORY = 60
FIRST_POLL = 3
SETTINGS = dict(direction="increase", relative_tolerance=0.5, absolute_tolerance=0.0,
                alpha=0.05, min_points=5, mode="sequential")
TOLERANCE = float(SETTINGS["relative_tolerance"])  # type: ignore[arg-type]
FIRST_JUDGED = int(SETTINGS["min_points"])  # type: ignore[call-overload]
STABLE_PODS = 4
COST = 0.005  # CPU seconds per request: the units cancel; the stable's mean cost
COST_SIGMA = 1.0
GC_SHAPE, GC_MEAN = 0.5, 0.05
BURST_SHAPE = 5.0
NOISE = {"shared": (0.12, 0.06), "own": (0.06, 0.12)}  # log sds: (shared, own per pod)
JIT_EXTRA, JIT_SECONDS = 2.0, 90.0
EXACT_MAX = 200  # requests per pod and step drawn one by one; beyond, Fenton-Wilkinson
DRAWS_PER_CHUNK = 4_000_000

RATES = (0.5, 5.0, 50.0)
BACKGROUNDS = (0.05, 0.2, 0.4)
LOADS = (1.0, 0.7, 1.3)
WARMUPS = ("none", "jit")
NODES = (1.0, 1.25)
PHIS = (0.5, 0.9)
NOISES = ("shared", "own")
REGRESSIONS = (1.3, 2.0, 3.0)
# (canary pods, burst): the main case, and the variants run on fewer cells
MAIN = (1, "poisson")
VARIANTS = ((2, "poisson"), (1, "gamma"))


@dataclass(frozen=True)
class Cell:
    """One combination of the simulated rollouts' parameters."""

    regression: float  # the canary's per-request cost × this; 1.0: healthy
    rps: float  # per stable pod
    background: float
    load: float
    warmup: str
    node: float
    phi: float
    noise: str
    canary_pods: int
    burst: str

    @property
    def healthy(self) -> bool:
        return self.regression == 1.0

    def seed(self, base: int) -> np.random.SeedSequence:
        """A seed of the cell's own, so a cell draws the same rollouts in any grid."""
        return np.random.SeedSequence([base, zlib.crc32(repr(self).encode())])


def grid(tiny: bool = False) -> list[Cell]:
    """The cells measured (the module docstring says why these)."""
    if tiny:
        return ([Cell(1.0, r, 0.2, load, "none", 1.0, 0.5, "own", 1, "poisson")
                 for r, load in itertools.product((5.0, 50.0), (1.0, 0.7))]
                + [Cell(2.0, r, 0.2, 1.0, "none", 1.0, 0.5, "own", 1, "poisson")
                   for r in (5.0, 50.0)])
    cells = [Cell(1.0, r, b, load, w, node, phi, noise, *MAIN)
             for r, b, load, w, node, phi, noise in itertools.product(
                 RATES, BACKGROUNDS, LOADS, WARMUPS, NODES, PHIS, NOISES)]
    cells += [Cell(1.0, r, b, load, w, node, phi, noise, *variant)
              for variant, r, b, load, (w, node), phi, noise in itertools.product(
                  VARIANTS, RATES, BACKGROUNDS, LOADS, (("none", 1.0), ("jit", 1.25)), PHIS,
                  NOISES)]
    cells += [Cell(x, r, b, 1.0, "none", 1.0, phi, noise, *variant)
              for x, variant, r, b, phi, noise in itertools.product(
                  REGRESSIONS, (MAIN, *VARIANTS), RATES, BACKGROUNDS, PHIS, NOISES)]
    return cells


def warmup_factors(warmup: str) -> np.ndarray:
    """The canary's per-request cost factor of each judged step: 1 + 2 exp(−t/90 s) averaged
    over the step, t from the pod's start, 60 s before step 0 begins."""
    if warmup == "none":
        return np.ones(MINUTES)
    begin = STEP * np.arange(1, MINUTES + 1)
    k = JIT_SECONDS / STEP
    return 1 + JIT_EXTRA * k * (np.exp(-begin / JIT_SECONDS) - np.exp(-(begin + STEP) /
                                                                      JIT_SECONDS))


def noise_mean(noise: str) -> float:
    """E of the multiplicative noise on a pod's request CPU."""
    shared, own = NOISE[noise]
    return math.exp((shared * shared + own * own) / 2) * (1 + GC_MEAN)


def background_per_pod_step(cell: Cell) -> float:
    """A stable pod's background CPU seconds per step: `background` of its expected CPU."""
    return cell.background / (1 - cell.background) * cell.rps * STEP * COST * noise_mean(
        cell.noise)


def _inverse_count(mean: float, burst: str) -> float:
    """E[1/N | N > 0] of a side's requests in a step: the background's expected share."""
    dist = (stats.poisson(mean) if burst == "poisson" else
            stats.nbinom(BURST_SHAPE, BURST_SHAPE / (BURST_SHAPE + mean)))
    n = np.arange(1, int(dist.ppf(1 - 1e-13)) + 2)
    return float((dist.pmf(n) / n).sum() / dist.sf(0))


def expected_values(cell: Cell) -> tuple[np.ndarray, float]:
    """The canary's expected CPU per request at each judged step, and the stable's: a pod's
    (each side's value is its pods' mean)."""
    bg = background_per_pod_step(cell)
    per_request = COST * noise_mean(cell.noise)
    stable = bg * _inverse_count(cell.rps * STEP, cell.burst) + per_request
    canary_n = cell.load * cell.rps * STEP
    canary = cell.node * (bg * _inverse_count(canary_n, cell.burst)
                          + per_request * cell.regression * warmup_factors(cell.warmup))
    return canary, stable


def expected_excess(cell: Cell) -> dict[str, float]:
    """The canary's true expected relative excess over the stable as the polls judge it: the
    mean over the steps so far, at the first judgeable poll, the last, and the largest."""
    canary, stable = expected_values(cell)
    per_poll = np.cumsum(canary) / np.arange(1, MINUTES + 1) / stable - 1
    judged = per_poll[FIRST_JUDGED - 1:]
    return {"first_judged": round(float(judged[0]), 4), "final": round(float(judged[-1]), 4),
            "max": round(float(judged.max()), 4)}


def _ar1(rng: np.random.Generator, phi: float, sd: float, shape: tuple[int, ...]
         ) -> np.ndarray:
    """Stationary AR(1) series along the last axis, marginal sd `sd`."""
    x = rng.normal(0.0, sd, shape)
    x[..., 1:] *= math.sqrt(1 - phi * phi)
    for t in range(1, shape[-1]):
        x[..., t] += phi * x[..., t - 1]
    return x


def _cost_sums(rng: np.random.Generator, n: np.ndarray) -> np.ndarray:
    """Sums of n unit-mean lognormal request costs, per entry of n."""
    mu = -COST_SIGMA * COST_SIGMA / 2
    if n.mean() <= EXACT_MAX:
        flat = n.ravel()
        ends = np.cumsum(flat)
        running = np.concatenate(([0.0], np.cumsum(rng.lognormal(mu, COST_SIGMA,
                                                                 int(ends[-1])))))
        return (running[ends] - running[ends - flat]).reshape(n.shape)
    count = np.maximum(n, 1)
    s2 = np.log1p(math.expm1(COST_SIGMA * COST_SIGMA) / count)
    return np.where(n > 0, rng.lognormal(np.log(count) - s2 / 2, np.sqrt(s2)), 0.0)


def _side(rng: np.random.Generator, cell: Cell, pods: int, rate: float, cost: np.ndarray,
          shared: np.ndarray, burst: np.ndarray, node: float) -> np.ndarray:
    """CPU seconds per request of each pod of one side, per rollout, pod and step (NaN: no
    requests), as the query gives one series per instance."""
    rollouts, steps = shared.shape
    n = rng.poisson(rate * STEP * burst[:, None, :], size=(rollouts, pods, steps))
    own = np.exp(_ar1(rng, cell.phi, NOISE[cell.noise][1], (rollouts, pods, steps)))
    gc = 1 + rng.gamma(GC_SHAPE, GC_MEAN / GC_SHAPE, (rollouts, pods, steps))
    work = own * gc * _cost_sums(rng, n) * COST * cost * np.exp(shared)[:, None, :]
    cpu = node * (background_per_pod_step(cell) + work)
    return np.where(n > 0, cpu / np.maximum(n, 1), np.nan)


def simulate(rng: np.random.Generator, cell: Cell, rollouts: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per rollout: each canary pod's CPU per request over the 30 judged steps, and each
    stable pod's over the 60 steps before and the 30."""
    steps = HISTORY + MINUTES
    shared = _ar1(rng, cell.phi, NOISE[cell.noise][0], (rollouts, steps))
    burst = (np.ones((rollouts, steps)) if cell.burst == "poisson" else
             rng.gamma(BURST_SHAPE, 1 / BURST_SHAPE, (rollouts, steps)))
    stable = _side(rng, cell, STABLE_PODS, cell.rps, np.ones(steps), shared, burst, 1.0)
    cost = cell.regression * warmup_factors(cell.warmup)
    canary = _side(rng, cell, cell.canary_pods, cell.load * cell.rps, cost,
                   shared[:, HISTORY:], burst[:, HISTORY:], cell.node)
    return canary, stable



def _chunks(cell: Cell, rollouts: int) -> Iterator[int]:
    """Rollouts per simulation call, so that one-by-one request costs fit in memory."""
    per_pod_step = cell.rps * STEP * max(1.0, cell.load)
    draws = per_pod_step * (STABLE_PODS * (HISTORY + MINUTES) + cell.canary_pods * MINUTES)
    size = rollouts if per_pod_step > EXACT_MAX else max(1, int(DRAWS_PER_CHUNK // draws))
    for start in range(0, rollouts, size):
        yield min(size, rollouts - start)


# What a poll's answer does to the rollout, the other checks passing: `fail` aborts it,
# `held` (undecided, its estimate beyond the tolerance: `webhook.kinds.leans_beyond`) holds
# the verdict inconclusive, `through` (a pass, or undecided and listed: the check is
# `inconclusive_holds: false`) lets the verdict pass.
OUTCOMES = ("fail", "held", "through")
# Minutes at which the rollout's standing is reported: an analysis step's last poll (Argo's
# template: initialDelay 2m, count 5) and the end of a background analysis.
MARKS = (7, MINUTES)


def polls(canary_rows: np.ndarray, stable_rows: np.ndarray) -> tuple[int | None, list[str]]:
    """The minute of the first failing poll (None: none) and the outcomes (`OUTCOMES`) of
    the polls made, each judged as `kinds.series` judges a per-instance metric: the sides'
    instance means, the stable's history, and the instances themselves (the stable's over
    the history and the window so far, the canary's over the window)."""
    canary, stable = rows_mean(canary_rows), rows_mean(stable_rows)
    outcomes = []
    for minute in range(FIRST_POLL, MINUTES + 1):
        check = judge_series(
            "saturation", canary[:minute], stable[HISTORY:HISTORY + minute],
            stable_history=stable[:HISTORY], stable_instances=stable_rows[:, :HISTORY + minute],
            canary_instances=canary_rows[:, :minute], **SETTINGS)  # type: ignore[arg-type]
        if check.verdict == "fail":
            outcomes.append("fail")
            return minute, outcomes
        held = check.verdict == "inconclusive" and leans_beyond(check, "increase")
        outcomes.append("held" if held else "through")
    return None, outcomes


def _standing(outcomes: list[str], minute: int) -> str:
    """The rollout's standing at `minute`: failed by then, else that poll's outcome."""
    made = minute - FIRST_POLL + 1
    return "fail" if len(outcomes) < made or outcomes[made - 1] == "fail" else outcomes[made - 1]


def measure_cell(cell: Cell, rollouts: int, seed: int) -> tuple[dict, list[int]]:
    """The cell's report and its rollouts' first-fail minutes."""
    rng = np.random.default_rng(cell.seed(seed))
    first_fails: list[int] = []
    made = held = 0
    standing = {mark: dict.fromkeys(OUTCOMES, 0) for mark in MARKS}
    for size in _chunks(cell, rollouts):
        canary, stable = simulate(rng, cell, size)
        for i in range(size):
            first, outcomes = polls(canary[i], stable[i])
            made += len(outcomes)
            held += outcomes.count("held")
            for mark in MARKS:
                standing[mark][_standing(outcomes, mark)] += 1
            if first is not None:
                first_fails.append(first)
    excess = expected_excess(cell)
    report = {**asdict(cell), "healthy": cell.healthy, "expected_excess": excess,
              "beyond_tolerance": excess["max"] > TOLERANCE, "rollouts": rollouts,
              "failed_rollouts": len(first_fails),
              "failed": round(len(first_fails) / rollouts, 4), "polls": made,
              "held_polls": held, "poll_held_share": round(held / made, 4),
              **{f"at_minute_{mark}": {k: round(v / rollouts, 4) for k, v in counts.items()}
                 for mark, counts in standing.items()},
              "first_fail_minute_median": (statistics.median(first_fails) if first_fails
                                           else None)}
    return report, first_fails


def _key(cell: dict) -> str:
    """A cell's parameters in one short string, for the summary."""
    return (f"x{cell['regression']:g} rps={cell['rps']:g} bg={cell['background']:g} "
            f"load={cell['load']:g} warmup={cell['warmup']} node={cell['node']:g} "
            f"phi={cell['phi']:g} noise={cell['noise']} pods={cell['canary_pods']} "
            f"burst={cell['burst']}")


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4)


def summarise(cells: list[dict], first_fails: dict[int, list[int]]) -> dict:
    """False failures within the tolerance (worst cells, cells above alpha), failures beyond
    it, power and first-fail minutes per regression and traffic, inconclusive polls."""
    alpha = float(SETTINGS["alpha"])  # type: ignore[arg-type]
    within = [c for c in cells if c["healthy"] and not c["beyond_tolerance"]]
    beyond = [c for c in cells if c["healthy"] and c["beyond_tolerance"]]
    worst = sorted(within, key=lambda c: (-c["failed"], -c["expected_excess"]["max"]))
    out: dict = {
        "within_tolerance": {
            "cells": len(within),
            "failed_max": worst[0]["failed"] if worst else None,
            "failed_mean": _mean([c["failed"] for c in within]) if within else None,
            "cells_above_alpha": sum(c["failed"] > alpha for c in within),
            "worst": [{"cell": _key(c), "failed": c["failed"],
                       "expected_excess_max": c["expected_excess"]["max"]}
                      for c in worst[:5]],
            "failed_max_by_excess": _by_excess(within),
            # healthy rollouts the check holds (inconclusive verdict: Argo pauses after
            # inconclusiveLimit), at an analysis step's end and a background analysis' end
            **{f"held_at_minute_{mark}": {
                "mean": _mean([c[f"at_minute_{mark}"]["held"] for c in within]),
                "max": max(c[f"at_minute_{mark}"]["held"] for c in within)}
               for mark in MARKS if within}},
        "beyond_tolerance": {
            "cells": len(beyond),
            "failed_mean": _mean([c["failed"] for c in beyond]) if beyond else None,
            "by_case": _beyond_cases(beyond)},
        "power": {}, "held_poll_share": {}}
    for x in sorted({c["regression"] for c in cells if not c["healthy"]}):
        row = {}
        for rps in sorted({c["rps"] for c in cells}):
            indices = [i for i, c in enumerate(cells) if c["regression"] == x and c["rps"] == rps]
            if not indices:
                continue
            mine = [cells[i] for i in indices]
            minutes = [m for i in indices for m in first_fails[i]]
            row[f"{rps:g}"] = {
                "failed_mean": _mean([c["failed"] for c in mine]),
                "failed_min": min(c["failed"] for c in mine),
                "failed_by_background": {
                    f"{b:g}": _mean([c["failed"] for c in mine if c["background"] == b])
                    for b in sorted({c["background"] for c in mine})},
                "expected_excess_by_background": {
                    f"{b:g}": next(c["expected_excess"]["final"] for c in mine
                                   if c["background"] == b)
                    for b in sorted({c["background"] for c in mine})},
                "first_fail_minute_median": statistics.median(minutes) if minutes else None,
                # the regression let through (a pass) at an analysis step's end and at a
                # background analysis' end; held: the verdict inconclusive there
                **{f"at_minute_{mark}": {
                    "through_mean": _mean([c[f"at_minute_{mark}"]["through"] for c in mine]),
                    "through_max": max(c[f"at_minute_{mark}"]["through"] for c in mine),
                    "held_mean": _mean([c[f"at_minute_{mark}"]["held"] for c in mine])}
                   for mark in MARKS}}
        out["power"][f"x{x:g}"] = row
    groups = {"healthy": [c for c in cells if c["healthy"]],
              **{f"x{x:g}": [c for c in cells if c["regression"] == x]
                 for x in sorted({c["regression"] for c in cells if not c["healthy"]})}}
    for name, mine in groups.items():
        out["held_poll_share"][name] = {
            f"{rps:g}": {f"phi={phi:g}": _mean([c["poll_held_share"] for c in mine
                                                if c["rps"] == rps and c["phi"] == phi])
                         for phi in sorted({c["phi"] for c in mine})}
            for rps in sorted({c["rps"] for c in mine})}
    return out


def _by_excess(cells: list[dict]) -> dict[str, float]:
    """The largest false-failure rate within the tolerance, by the cells' true excess."""
    bands = ((-1.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, TOLERANCE))
    out = {}
    for low, high in bands:
        mine = [c["failed"] for c in cells if low < c["expected_excess"]["max"] <= high]
        if mine:
            out[f"{max(low, 0.0):g}-{high:g}" if low >= 0 else f"<={high:g}"] = max(mine)
    return out


def _beyond_cases(cells: list[dict]) -> list[dict]:
    """Failures of the healthy cells beyond the tolerance, grouped by what puts them there."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["warmup"], c["node"], c["load"], c["background"]), []).append(c)
    return [{"warmup": w, "node": node, "load": load, "background": b, "cells": len(mine),
             "expected_excess_max": max(c["expected_excess"]["max"] for c in mine),
             "expected_excess_final": max(c["expected_excess"]["final"] for c in mine),
             "failed_mean": _mean([c["failed"] for c in mine]),
             "failed_by_rps": {f"{r:g}": _mean([c["failed"] for c in mine if c["rps"] == r])
                               for r in sorted({c["rps"] for c in mine})}}
            for (w, node, load, b), mine in sorted(groups.items())]


def measure(rollouts: int, seed: int, tiny: bool = False) -> dict:
    cells, first_fails = [], {}
    for i, cell in enumerate(grid(tiny)):
        report, first_fails[i] = measure_cell(cell, rollouts, seed)
        cells.append(report)
    return {"cells": cells, "summary": summarise(cells, first_fails)}


def print_summary(summary: dict) -> None:
    """The figures a reader wants first, one line each."""
    within = summary["within_tolerance"]
    print(f"healthy within tolerance: {within['cells']} cells, failed mean "
          f"{within['failed_mean']}, max {within['failed_max']}, "
          f"{within['cells_above_alpha']} cells above alpha")
    for worst in within["worst"][:3]:
        print(f"  worst: {worst['failed']:.3f}  {worst['cell']} "
              f"(true excess {worst['expected_excess_max']:+.2f})")
    print(f"  max failed by true excess: {within['failed_max_by_excess']}")
    beyond = summary["beyond_tolerance"]
    print(f"healthy beyond tolerance: {beyond['cells']} cells, failed mean "
          f"{beyond['failed_mean']}")
    for case in beyond["by_case"]:
        print(f"  warmup={case['warmup']} node={case['node']:g} load={case['load']:g} "
              f"bg={case['background']:g}: excess max {case['expected_excess_max']:+.2f} "
              f"final {case['expected_excess_final']:+.2f}, failed {case['failed_by_rps']}")
    for x, row in summary["power"].items():
        print(f"{x}: " + "; ".join(
            f"rps {rps}: failed {v['failed_mean']:.3f} (min {v['failed_min']:.3f}), "
            f"first fail minute {v['first_fail_minute_median']}" for rps, v in row.items()))
    for mark in MARKS:
        print(f"healthy held at minute {mark}: "
              f"{json.dumps(within[f'held_at_minute_{mark}'])}; let through: " + "; ".join(
                  f"{x} " + json.dumps({rps: v[f"at_minute_{mark}"]["through_mean"]
                                        for rps, v in row.items()})
                  for x, row in summary["power"].items()))
    print("held poll share: " + json.dumps(summary["held_poll_share"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261215)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.tiny:
        args.rollouts = 40
    began = time.monotonic()
    report = {"command": "python bench/saturation.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "settings": SETTINGS, "minutes": MINUTES, "history_steps": HISTORY,
              "step_seconds": STEP, "first_poll": FIRST_POLL, "stable_pods": STABLE_PODS,
              "model": {"cost_sigma": COST_SIGMA, "gc_shape": GC_SHAPE, "gc_mean": GC_MEAN,
                        "burst_shape": BURST_SHAPE, "noise_log_sd": NOISE,
                        "jit": f"1 + {JIT_EXTRA:g} exp(-t/{JIT_SECONDS:g} s)",
                        "exact_max_requests": EXACT_MAX},
              "rollouts": args.rollouts, "seed": args.seed,
              **measure(args.rollouts, args.seed, args.tiny),
              "seconds": round(time.monotonic() - began, 1)}
    print_summary(report["summary"])
    if args.out:
        args.out.write_text(to_json(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
