"""Proportions judged on their counts (error ratio, fill rate, workflow success).

Method: the Newcombe hybrid score interval for a difference of two independent proportions
(Newcombe, "Interval estimation for the difference between independent proportions",
Statistics in Medicine 17, 1998, method 10), built from the Wilson score intervals of each side.
It keeps close to nominal coverage with few events and at proportions of 0, where the Wald
interval collapses; that matters because a canary's error count is often single digits.

Decision, one-sided at `alpha` in the harmful direction, with an equivalence margin `allowed`
(the tolerance):
- fail when the whole interval lies beyond the margin (significantly worse by more than
  tolerated);
- pass when the whole interval lies within the margin (shown not worse by more than tolerated);
- otherwise inconclusive: the data cannot yet tell, and more requests will.
So thin data can never pass: the interval is wide and straddles the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from webhook.judge import sequential as seq
from webhook.judge.corrupt import NEGATIVE_SLACK, corrupt_reason, first_corrupt, plain_counts
from webhook.judge.memo import HISTORY
from webhook.judge.tails import norm_isf, norm_sf
from webhook.judge.types import CheckResult, Summary, Trace, fmt_count, fmt_value, tri_state

TEST_NAME = "Newcombe hybrid score interval (difference of proportions)"
SEQUENTIAL_TEST_NAME = ("anytime-valid mixture martingale on the rate ratio of bad events "
                        "(Lindon & Malek 2022)")


def wilson_interval(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    return _wilson_of(successes, n)(z)


def newcombe_interval(x_c: float, n_c: float, x_s: float, n_s: float,
                      z: float) -> tuple[float, float]:
    """Interval for p_canary − p_stable (Newcombe 1998, method 10)."""
    return _newcombe_of(x_c, n_c, x_s, n_s)(z)


def _wilson_of(successes: float, n: float) -> Callable[[float], tuple[float, float]]:
    """`wilson_interval(successes, n, z)` as a function of z, what does not depend on z
    computed once: a p-value's bisection asks for the interval at sixty z."""
    if n <= 0:
        return lambda z: (0.0, 1.0)
    p = successes / n
    spread, twice, four_n2 = p * (1 - p) / n, 2 * n, 4 * n * n

    def interval(z: float) -> tuple[float, float]:
        z2 = z * z
        denom = 1 + z2 / n
        centre = (p + z2 / twice) / denom
        half = z * math.sqrt(max(spread + z2 / four_n2, 0.0)) / denom
        return max(0.0, centre - half), min(1.0, centre + half)
    return interval


def _newcombe_of(x_c: float, n_c: float, x_s: float,
                 n_s: float) -> Callable[[float], tuple[float, float]]:
    """`newcombe_interval(x_c, n_c, x_s, n_s, z)` as a function of z (`_wilson_of`)."""
    p_c, p_s = x_c / n_c, x_s / n_s
    d = p_c - p_s
    wilson_c, wilson_s = _wilson_of(x_c, n_c), _wilson_of(x_s, n_s)

    def interval(z: float) -> tuple[float, float]:
        l_c, u_c = wilson_c(z)
        l_s, u_s = wilson_s(z)
        return (d - math.sqrt((p_c - l_c) ** 2 + (u_s - p_s) ** 2),
                d + math.sqrt((u_c - p_c) ** 2 + (p_s - l_s) ** 2))
    return interval


def _one_sided_p(x_c: float, n_c: float, x_s: float, n_s: float, allowed: float,
                 worse_is_up: bool) -> float:
    """Smallest alpha at which the interval clears the margin: the test's p-value."""
    interval = _newcombe_of(x_c, n_c, x_s, n_s)

    def clears(z: float) -> bool:
        low, high = interval(z)
        return low > allowed if worse_is_up else high < -allowed

    if not clears(1e-9):
        return 1.0
    lo, hi = 1e-9, 40.0
    if clears(hi):
        return 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if clears(mid) else (lo, mid)
    return norm_sf(lo)


def _rate_per_second(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def judge_ratio(
    name: str,
    numerator_c: np.ndarray,
    total_c: np.ndarray,
    numerator_s: np.ndarray,
    total_s: np.ndarray,
    *,
    direction: str = "increase",
    relative_tolerance: float = 0.0,
    absolute_tolerance: float = 0.0,
    alpha: float = 0.05,
    min_total: float = 100,
    step_seconds: float = 60.0,
    critical: bool = False,
    weight: float = 1.0,
    mode: str = "fixed",
    stable_history: tuple[np.ndarray, np.ndarray] | None = None,
    total_name: str = "requests",
) -> CheckResult:
    """Judge canary vs stable proportions from per-step counts (NaN = no sample that step).
    `total_name` is what the totals count, as the reasons name it (orders, workflow runs).

    `mode="sequential"` judges the same steps with the anytime-valid test of `sequential.py`,
    so polling [start, now] again and again keeps the false-failure rate ≤ alpha.
    `stable_history` (numerator, total per step before the analysis start) tells the
    sequential test how clumped bad events are before the rollout's own steps can
    (`sequential.history_dispersion`).

    A missing numerator with a present total is zero events (Prometheus returns nothing for a
    5xx counter that never fired); a missing total is no data. A present but infinite or
    negative count is corrupt: inconclusive, naming the side (`corrupt.py`).
    """
    base = dict(name=name, kind="ratio", test=TEST_NAME, critical=critical, weight=weight)
    counts = (("canary", "numerator", numerator_c), ("canary", "total", total_c),
              ("stable", "numerator", numerator_s), ("stable", "total", total_s))
    arrays = [np.asarray(values, dtype=float) for _, _, values in counts]
    # no ±Inf and no negative count in any of them (the usual case): two reductions for all
    joined = np.concatenate(arrays) if all(x.ndim == 1 for x in arrays) else None
    clean = joined is not None and plain_counts(joined)
    for side, role, values in () if clean else counts:
        bad = first_corrupt(values)
        if bad is not None:
            return CheckResult(verdict="inconclusive", reason=corrupt_reason(
                name, side, role, bad[1], f"step {bad[0]}"), canary=Summary(0.0, None),
                stable=Summary(0.0, None), **base)
    # no ±Inf or negative count left (first_corrupt): NaN, an absent step, reads as 0
    if joined is not None and all(x.size == arrays[0].size for x in arrays):
        per_step, sides = _clean_sides(joined.reshape(2, 2, -1), step_seconds)
    else:
        sides = []
        per_step = []
        for numerator, total in ((numerator_c, total_c), (numerator_s, total_s)):
            totals, events = _clean_steps(numerator, total, plain=True)
            with np.errstate(over="ignore"):  # an infinite sum is judged below: not finite
                n, k = float(np.add.reduce(totals)), float(np.add.reduce(events))
            sides.append((k, n, np.count_nonzero(np.isfinite(np.asarray(total, dtype=float)))
                          * step_seconds))
            per_step.append((events, totals))
    (k_c, n_c, sec_c), (k_s, n_s, sec_s) = sides
    canary = Summary(n_c, k_c / n_c if n_c > 0 else None)
    stable = Summary(n_s, k_s / n_s if n_s > 0 else None)

    short = [(label, n, sec) for label, n, sec in (("canary", n_c, sec_c), ("stable", n_s, sec_s))
             if n < min_total]
    finite = all(math.isfinite(x) and x < seq.MAX_COUNT for x in (k_c, n_c, k_s, n_s))
    # a side short of one whole request has no traffic to judge (a denormal total's square
    # underflowed to 0 in the interval: a ZeroDivisionError)
    if mode == "sequential" and finite and (not short or (n_c >= 1 and n_s >= 1)):
        # short of `min_total`, only a failure is kept: no pass to look for
        judged = _judge_sequential(name, per_step, canary, stable, direction,
                                   relative_tolerance, absolute_tolerance, alpha, base,
                                   stable_history, (k_c, n_c, k_s, n_s), total_name,
                                   passing=not short)
        # `min_total` is what it takes to vouch for a pass. The anytime-valid test holds its
        # false-failure rate at any number of requests, so a canary failing most of a
        # low-traffic service's requests fails now, not when (if ever) it has served
        # `min_total` of them.
        if not short or judged.verdict == "fail":
            return judged
    if short:
        parts = []
        for label, n, sec in short:
            # Python floats: a rate of a denormal total overflows to inf without numpy's warning
            rate = float(_rate_per_second(n, sec))
            minutes = (float(min_total) - n) / rate / 60 if rate > 0 else math.inf
            wait = (f", about {math.ceil(minutes)} more min at its current rate"
                    if minutes < 1e6 else ", and it has sent (almost) none")
            parts.append(f"{label} has {fmt_count(n)} {total_name}, needs "
                         f"{fmt_count(min_total)}{wait}")
        return CheckResult(verdict="inconclusive", reason=f"{name}: too little data: "
                           + "; ".join(parts), canary=canary, stable=stable, **base)

    if not finite:
        return CheckResult(verdict="inconclusive", reason=f"{name}: counts are not finite or "
                           "implausibly large (overflowing or corrupt series)", canary=canary,
                           stable=stable, **base)
    p_c, p_s = k_c / n_c, k_s / n_s
    allowed = max(relative_tolerance * p_s, absolute_tolerance)
    effect = p_c / p_s - 1 if p_s > 0 else (0.0 if p_c == 0 else math.inf)
    two_sided = direction == "either"
    z = norm_isf(alpha / 2 if two_sided else alpha)
    low, high = newcombe_interval(k_c, n_c, k_s, n_s, z)
    up = direction in ("increase", "either") and low > allowed
    down = direction in ("decrease", "either") and high < -allowed
    # a one-sided check reports its own side's p-value: the other's bisection is skipped
    p_up = _one_sided_p(k_c, n_c, k_s, n_s, allowed, True) if direction != "decrease" else 1.0
    p_down = (_one_sided_p(k_c, n_c, k_s, n_s, allowed, False) if direction != "increase"
              else 1.0)
    p_value = {"increase": p_up, "decrease": p_down}.get(direction, min(1.0, 2 * min(p_up, p_down)))

    shown = (f"canary {fmt_value(p_c, '%')} of {fmt_count(n_c)} vs stable {fmt_value(p_s, '%')} "
             f"of {fmt_count(n_s)}")
    margin = f"tolerance ±{fmt_value(allowed, '%')}"
    within = {
        "increase": high <= allowed,
        "decrease": low >= -allowed,
        "either": -allowed <= low and high <= allowed,
    }[direction]
    verdict, why = tri_state(
        "higher" if up else "lower" if down else None, within, margin,
        f"difference between {fmt_value(low, '%')} and {fmt_value(high, '%')}", more=total_name)
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}", canary=canary, stable=stable,
        effect=effect, interval=(low, high), interval_of="canary - stable",
        interval_level=1 - alpha if two_sided else 1 - 2 * alpha, p_value=p_value,
        allowed=allowed, **base)


def _clean_sides(counts: np.ndarray, step_seconds: float
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[float, float, float]]]:
    """`_clean_steps(plain=True)` of both sides at once, `counts` being (canary, stable) ×
    (numerator, total) × steps: each side's per-step (events, totals) and its (events,
    requests, seconds with a total). The same numbers as side by side (a row's sum is the
    pairwise sum of its own steps), in a third of the numpy calls: on a short window their
    overhead is the cost."""
    cleaned = np.fmax(counts, 0.0)  # NaN, an absent step, reads as 0
    totals = cleaned[:, 1]
    events = np.minimum(cleaned[:, 0], totals)
    with np.errstate(over="ignore"):  # an infinite sum is judged by the caller: not finite
        n, k = np.add.reduce(totals, axis=1).tolist(), np.add.reduce(events, axis=1).tolist()
    finite = np.isfinite(counts[:, 1])  # count_nonzero along an axis costs more than two
    seen = [np.count_nonzero(finite[0]), np.count_nonzero(finite[1])]
    return ([(events[0], totals[0]), (events[1], totals[1])],
            [(k[0], n[0], seen[0] * step_seconds), (k[1], n[1], seen[1] * step_seconds)])


def _clean_steps(numerator: np.ndarray, total: np.ndarray,
                 plain: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-step (totals, events): absent (NaN) totals count as no traffic, absent events as
    zero, events never above totals. Infinite or negative counts never get here for the
    judged steps (`judge_ratio` turns them into an inconclusive check, and says so with
    `plain`); in the stable's history they are dropped rather than read as zero."""
    total = np.asarray(total, dtype=float)
    numerator = np.asarray(numerator, dtype=float)
    if numerator.shape != total.shape:  # a scalar or a shorter array (callers by hand)
        numerator = np.broadcast_to(numerator, total.shape)
    if plain or (plain_counts(total) and plain_counts(numerator)):  # NaN reads as 0
        totals = np.fmax(total, 0.0)
        return totals, np.minimum(np.fmax(numerator, 0.0), totals)
    with np.errstate(invalid="ignore"):
        dropped = (np.isinf(total) | (total < -NEGATIVE_SLACK) | np.isinf(numerator)
                   | (numerator < -NEGATIVE_SLACK))
    totals = np.where(np.isfinite(total) & ~dropped, np.clip(total, 0, None), 0.0)
    events = np.where(np.isfinite(numerator) & ~dropped, np.clip(numerator, 0, None), 0.0)
    return totals, np.minimum(events, totals)


def history_prior(numerator: np.ndarray, total: np.ndarray,
                  increase: bool) -> tuple[float, float] | None:
    """`sequential.history_dispersion` of the stable's harmful events (the numerator when
    `increase` is harm, else total − numerator) in its steps before the analysis start.

    Those steps are the same at every poll of a rollout (its start is fixed and they are
    settled data), so the value is remembered by their content (`memo.HISTORY`): a repeated
    poll pays a hash of 2 × 60 numbers instead of the cleaning and the Pearson moments.
    """
    return _history_prior(np.asarray(numerator, dtype=float), np.asarray(total, dtype=float),
                          increase)


@HISTORY.memoise
def _history_prior(numerator: np.ndarray, total: np.ndarray,
                   increase: bool) -> tuple[float, float] | None:
    totals, events = _clean_steps(numerator, total)
    return seq.history_dispersion(events if increase else totals - events, totals)


def _tolerated_ratio(allowed: float, harm_s: float, n_s: float, alpha: float) -> float:
    """The ratio of harmful-event rates (canary / stable) that a difference of `allowed` in
    the rates allows: 1 + allowed / (stable's harmful rate). For a good rate's tolerance, harm
    is its complement; for the harmful rate itself, it is what the absolute part allows.

    A fill rate may drop by 5 % of stable's (95 % -> 90.25 %): its unfilled orders may rise
    from 5 % to 9.75 %, a ratio of 1.95, not the 1.05 that `1 + relative tolerance` says of
    the unfilled rate itself. Tested against 1.05, a canary exactly at the tolerance had
    overwhelming evidence against the null, and only the observed difference (beyond the
    tolerance at some poll, half the time at each) held the failure back: 80 % of such
    rollouts failed at alpha 0.01, and canaries within the tolerance but near it failed too.
    A stable without any harmful event yet has its rate bounded by its confidence sequence's
    upper end, so the ratio stays finite."""
    rate = harm_s / n_s if n_s > 0 else 0.0
    if rate <= 0:
        rate = seq.proportion_cs(0.0, n_s, alpha)[1]
    return 1 + allowed / rate if rate > 0 else math.inf


def _judge_sequential(name: str, per_step: list[tuple[np.ndarray, np.ndarray]], canary: Summary,
                      stable: Summary, direction: str, rel: float, abs_: float, alpha: float,
                      base: dict,
                      history: tuple[np.ndarray, np.ndarray] | None = None,
                      sums: tuple[float, float, float, float] | None = None,
                      total_name: str = "requests", passing: bool = True) -> CheckResult:
    """Anytime-valid version: mixture martingales on the rate ratio of harmful events.

    Harmful events are the numerator when an increase is worse, and its complement (total −
    numerator) when a decrease is worse. Fail needs the evidence M ≥ 1/alpha against "not worse
    than the tolerance" (a rate ratio of 1 + relative tolerance of the harmful events
    themselves; of their complement, the ratio the good rate's tolerance allows:
    `_tolerated_ratio`) and an observed difference beyond the tolerance (a filter that can
    only lower the false-failure rate). Pass needs the mirrored evidence, or
    confidence sequences showing the difference is within the absolute tolerance.
    `sums` are the window's (canary events, canary total, stable events, stable total) when
    the caller has them. `passing=False`: the caller keeps the check only if it fails, so the
    mirrored evidence, which could only show a pass, is not computed.
    """
    (ev_c, n_c), (ev_s, n_s) = per_step
    if sums is None:
        sums = (float(np.add.reduce(ev_c)), float(np.add.reduce(n_c)),
                float(np.add.reduce(ev_s)), float(np.add.reduce(n_s)))
    sum_ev_c, sum_n_c, sum_ev_s, sum_n_s = sums
    p_c, p_s = float(canary.value or 0.0), float(stable.value or 0.0)
    # the harmful events of each test (the complement's arrays only where a decrease harms)
    signs = {"increase": (1.0,), "decrease": (-1.0,), "either": (1.0, -1.0)}[direction]
    tests = [(ev_c, ev_s, 1.0) if sign > 0 else (n_c - ev_c, n_s - ev_s, -1.0)
             for sign in signs]
    harm_sums = {1.0: (sum_ev_c, sum_ev_s)}
    a = alpha / len(tests)
    allowed = max(rel * p_s, abs_)
    fail_e, pass_all, sign_failed = 0.0, True, 0.0
    fail_path = np.zeros(n_c.size)
    for harm_c, harm_s, sign in tests:
        prior = (seq.DISPERSION_PRIOR, seq.DISPERSION_PRIOR_STEPS)
        if history is not None:  # the stable's own harmful events beforehand
            prior = history_prior(*history, sign > 0) or prior
        # Passing is not the guaranteed side: besides the mirrored evidence, the fixed-horizon
        # non-inferiority interval at this look may show the canary within tolerance; the
        # mirrored evidence is only computed when it can still decide.
        harm_sum_c, harm_sum_s = harm_sums.get(sign) or (float(np.add.reduce(harm_c)),
                                                         float(np.add.reduce(harm_s)))
        _, high = newcombe_interval(harm_sum_c, sum_n_c, harm_sum_s, sum_n_s, norm_isf(a))
        # once a test has failed the check, no pass is left to show
        need_pass = passing and pass_all and not sign_failed and not high <= allowed
        # the rate ratio the tolerance allows: when the absolute part decides (a stable at
        # 0.1 % errors may rise by 0.2 points: x3, not x1.2), testing 1 + relative held a
        # canary within tolerance to a stricter null, and only the observed difference (past
        # the tolerance at some poll) held its failure back
        rho0 = (max(1 + rel, _tolerated_ratio(allowed, sum_ev_s, sum_n_s, alpha)) if sign > 0
                else _tolerated_ratio(allowed, sum_n_s - sum_ev_s, sum_n_s, alpha))
        observed = sign * (p_c - p_s)

        def fails(path: np.ndarray, observed: float = observed) -> bool:
            return (float(path[-1]) if path.size else 0.0) >= math.log(1 / a) and (
                observed > allowed)

        # the mirrored evidence is not computed for a path that fails the check: the
        # verdict is a failure whatever it would show
        path, log_pass = seq.rate_ratio_log_evidence_both(
            harm_c, n_c, harm_s, n_s, rho0, dispersion_prior=prior,
            passing=(lambda path: not fails(path)) if need_pass else False)
        log_fail = float(path[-1]) if path.size else 0.0
        if path.size == fail_path.size:
            fail_path = np.maximum(fail_path, path)
        if fails(path):
            sign_failed = sign
        fail_e = max(fail_e, log_fail)
        if need_pass:
            pass_all = log_pass is not None and log_pass >= math.log(1 / a)
    lc, uc = seq.proportion_cs(sum_ev_c, sum_n_c, alpha / 2)
    ls, us = seq.proportion_cs(sum_ev_s, sum_n_s, alpha / 2)
    effect = p_c / p_s - 1 if p_s > 0 else (0.0 if p_c == 0 else math.inf)
    shown = (f"canary {fmt_value(p_c, '%')} of {fmt_count(canary.n)} vs stable "
             f"{fmt_value(p_s, '%')} of {fmt_count(stable.n)}")
    margin = f"tolerance ±{fmt_value(allowed, '%')}"
    verdict, why = tri_state(
        None if not sign_failed else "higher" if sign_failed > 0 else "lower", pass_all, margin,
        f"difference between {fmt_value(lc - us, '%')} and {fmt_value(uc - ls, '%')}",
        more=total_name)
    return CheckResult(
        verdict=verdict, reason=f"{name}: {shown}: {why}", canary=canary, stable=stable,
        effect=effect, interval=(lc - us, uc - ls), interval_of="canary - stable",
        interval_level=1 - alpha, p_value=min(1.0, math.exp(-fail_e)), allowed=allowed,
        trace=Trace(evidence=tuple(fail_path.tolist()), evidence_level=math.log(1 / a),
                    evidence_line="1/alpha" if a == alpha else "1/(alpha/2)"),
        **{**base, "test": SEQUENTIAL_TEST_NAME})
