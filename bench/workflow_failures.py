"""Clinical workflow ratios near 100 % success: the old rule against the failure-rate rule.

    python bench/workflow_failures.py [--rollouts 200] [--rate 2] [--minutes 60]

Simulates rollouts polled every minute (Argo's interval) on [start, now], one workflow at one
facility: the canary runs `rate` workflows/s, stable twice that, failures binomial. Per rule it
reports how many rollouts ever fail over all polls (the false-failure rate in the A/A rows, the
power in the others) and the median minute of the first pass. Rules, at safety_level high:
- old: success ratio, a drop of more than 2 % of stable's rate or 1 point (x0.75) fails;
- new: failure ratio, more than double stable's and more than +0.5 points (x0.75) fails,
  plus the canary-only floor (failures never above 1 %, i.e. success never below 99 %).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from webhook.judge.limits import judge_proportion_limit
from webhook.judge.ratio import judge_ratio

HIGH = 0.75  # safety_level high's tolerance factor
CASES = (("A/A at 99.6 %", 0.004, 0.004), ("A/A at 99.2 %", 0.008, 0.008),
         ("98.5 % vs 99.6 % (x3.75)", 0.015, 0.004), ("99.2 % vs 99.6 % (x2)", 0.008, 0.004))


def old_rule(f_c, n_c, f_s, n_s) -> str:
    return judge_ratio("old", n_c - f_c, n_c, n_s - f_s, n_s, direction="decrease",
                       relative_tolerance=0.02 * HIGH, absolute_tolerance=0.01 * HIGH,
                       alpha=0.01, min_total=200, mode="sequential").verdict


def new_rule(f_c, n_c, f_s, n_s) -> str:
    verdicts = [
        judge_ratio("new", f_c, n_c, f_s, n_s, direction="increase",
                    relative_tolerance=1.0 * HIGH, absolute_tolerance=0.005 * HIGH, alpha=0.01,
                    min_total=200, mode="sequential").verdict,
        judge_proportion_limit("floor", f_c, n_c, maximum=0.01, alpha=0.01, min_total=200,
                               mode="sequential").verdict]
    if "fail" in verdicts:
        return "fail"
    return "pass" if all(v == "pass" for v in verdicts) else "inconclusive"


def simulate(rule, p_c: float, p_s: float, rollouts: int, rate: float, minutes: int,
             seed: int) -> tuple[int, list[int]]:
    rng = np.random.default_rng(seed)
    failed, first_pass = 0, []
    for _ in range(rollouts):
        n_c = rng.poisson(rate * 60, minutes).astype(float)
        n_s = rng.poisson(2 * rate * 60, minutes).astype(float)
        f_c = rng.binomial(n_c.astype(int), p_c).astype(float)
        f_s = rng.binomial(n_s.astype(int), p_s).astype(float)
        passed = None
        for t in range(1, minutes + 1):
            verdict = rule(f_c[:t], n_c[:t], f_s[:t], n_s[:t])
            if verdict == "fail":
                failed += 1
                break
            if verdict == "pass" and passed is None:
                passed = t
        if passed is not None:
            first_pass.append(passed)
    return failed, first_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="canary workflows per second")
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    print(f"{args.rollouts} rollouts per row, canary {args.rate:g}/s, stable {2 * args.rate:g}/s,"
          f" polled every minute for {args.minutes} min, alpha 0.01")
    for label, p_c, p_s in CASES:
        for name, rule in (("old", old_rule), ("new", new_rule)):
            failed, passes = simulate(rule, p_c, p_s, args.rollouts, args.rate, args.minutes,
                                      seed=sum(map(ord, label)))
            when = f"{statistics.median(passes):g} min" if passes else "-"
            print(f"{label:26s} {name}: ever failed {failed}/{args.rollouts} "
                  f"({failed / args.rollouts:.1%}); passed at some poll {len(passes)}, "
                  f"median first pass {when}", flush=True)


if __name__ == "__main__":
    main()
