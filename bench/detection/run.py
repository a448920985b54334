"""Monte Carlo over scenarios × rollouts, in parallel, and the per-row statistics.

Each rollout's data depends only on (scenario id, rollout index) (see `Scenario.seed`), so the
results do not depend on how rollouts are split into chunks or on the number of processes.
Standard errors are binomial Monte Carlo errors, sqrt(p(1 − p)/n).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from bench.detection.methods import FAIL, INCONCLUSIVE, PASS, Method, build_methods
from bench.detection.simulate import POLLS, Scenario, simulate

_METHODS: dict[tuple[str, ...], list[Method]] = {}


def _methods(families: tuple[str, ...]) -> list[Method]:
    """Built once per process (loading the config and inspecting the judge)."""
    if families not in _METHODS:
        _METHODS[families] = build_methods(families)
    return _METHODS[families]


def run_chunk(sc: Scenario, start: int, stop: int, families: tuple[str, ...]
              ) -> tuple[str, int, dict[str, np.ndarray], float]:
    """Judge rollouts [start, stop) of `sc` with every method: codes per row, (n, POLLS)."""
    began = time.process_time()
    methods = _methods(families)
    rows: dict[str, list[np.ndarray]] = {}
    for i in range(start, stop):
        rollout = simulate(sc, i)
        for m in methods:
            for row, codes in m.judge(rollout).items():
                rows.setdefault(row, []).append(codes)
    stacked = {row: np.vstack(v) for row, v in rows.items()}
    return sc.id, start, stacked, time.process_time() - began


def run_all(scs: Sequence[Scenario], families: tuple[str, ...], processes: int,
            chunk: int = 10, verbose: bool = True
            ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Codes per scenario and row, and CPU seconds per scenario."""
    # Latency regressions first: their chunks are the slowest, so the pool ends evenly.
    ordered = sorted(scs, key=lambda sc: sc.target != "latency")
    tasks = [(sc, a, min(a + chunk, sc.rollouts)) for sc in ordered
             for a in range(0, sc.rollouts, chunk)]
    parts: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = {sc.id: {} for sc in scs}
    cpu: dict[str, float] = dict.fromkeys((sc.id for sc in scs), 0.0)
    remaining = {sc.id: math.ceil(sc.rollouts / chunk) for sc in scs}

    def collect(result: tuple[str, int, dict[str, np.ndarray], float]) -> None:
        sid, start, stacked, seconds = result
        cpu[sid] += seconds
        for row, codes in stacked.items():
            parts[sid].setdefault(row, []).append((start, codes))
        remaining[sid] -= 1
        if verbose and remaining[sid] == 0:
            print(f"  {sid}: done ({cpu[sid]:.1f} CPU s)", file=sys.stderr, flush=True)

    if processes <= 1:
        for sc, a, b in tasks:
            collect(run_chunk(sc, a, b, families))
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            futures = [pool.submit(run_chunk, sc, a, b, families) for sc, a, b in tasks]
            for fut in as_completed(futures):
                collect(fut.result())
    codes = {sid: {row: np.vstack([c for _, c in sorted(chunks, key=lambda p: p[0])])
                   for row, chunks in rows.items()} for sid, rows in parts.items()}
    return codes, cpu


def _rate(hits: int, n: int) -> tuple[float, float]:
    p = hits / n if n else math.nan
    return p, math.sqrt(p * (1 - p) / n) if n else math.nan


def summarize(codes: np.ndarray) -> dict[str, Any]:
    """Statistics of one row over the rollouts of one scenario.

    fail_rate: rollouts failed at any poll (false-failure rate in A/A, detection rate under a
    regression); fail_by_poll[k-1]: failed by poll k; polls_to_fail_*: first failing poll among
    the failed; final_*: verdict at the last poll of rollouts never failed (shares of all
    rollouts); ever_pass: rollouts passed at some poll before any failure (the false-pass rate
    under a regression); inconclusive_poll_share: inconclusive polls among those judged before
    the rollout ended (a fail ends it).
    """
    n = codes.shape[0]
    fail = codes == FAIL
    failed = fail.any(axis=1)
    first = np.where(failed, fail.argmax(axis=1) + 1, 0)
    rate, se = _rate(int(failed.sum()), n)
    by_poll = [float(np.mean((first > 0) & (first <= k))) for k in range(1, POLLS + 1)]
    within2, within2_se = _rate(int(np.sum((first > 0) & (first <= 2))), n)
    within10, within10_se = _rate(int(np.sum((first > 0) & (first <= 10))), n)
    last = codes[:, -1]
    final_inc, final_inc_se = _rate(int(np.sum(~failed & (last == INCONCLUSIVE))), n)
    final_pass, _ = _rate(int(np.sum(~failed & (last == PASS))), n)
    judged = np.where(failed, first, POLLS)
    polls = np.arange(1, POLLS + 1)[None, :]
    inconclusive = np.sum((codes == INCONCLUSIVE) & (polls <= judged[:, None]))
    detected = first[first > 0]
    # A pass at any poll before a failure: a controller may promote on it (Flagger's
    # confirm-promotion, an Argo step whose analysis ended), so under a regression beyond
    # tolerance this is the false-pass rate.
    passed = (codes == PASS) & (polls < np.where(failed, first, POLLS + 1)[:, None])
    ever_pass, ever_pass_se = _rate(int(passed.any(axis=1).sum()), n)
    return {
        "n": n,
        "fail_rate": rate, "fail_rate_se": se,
        "fail_by_poll": by_poll,
        "within_2_polls": within2, "within_2_polls_se": within2_se,
        "within_10_polls": within10, "within_10_polls_se": within10_se,
        "polls_to_fail_median": float(np.median(detected)) if detected.size else None,
        "polls_to_fail_mean": float(np.mean(detected)) if detected.size else None,
        "final_pass": final_pass,
        "ever_pass": ever_pass, "ever_pass_se": ever_pass_se,
        "final_inconclusive": final_inc, "final_inconclusive_se": final_inc_se,
        "inconclusive_poll_share": float(inconclusive / judged.sum()),
    }


def default_processes() -> int:
    return max(1, min(2, os.cpu_count() or 1))
