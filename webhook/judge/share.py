"""Is the canary still serving? Its share of both sides' requests lately, against before.

Why: a canary that stops serving (hung, its pods unready or gone, its Service or route broken)
stops counting. Its error ratio and latency are then judged on what it served before, and they
stay healthy: a canary not scraped for its last 4 minutes, or counting no request for them,
passed `http` with score 100 in both modes. What tells it is the canary's share of the two
sides' requests falling while the stable goes on serving.

The share is compared, not the rate: both sides see the same waves of load (a router or a
Service splits one stream), so their ratio is steady while each rate is not, and a weight that
grows (Flagger's steps, Argo's setWeight) raises the share, never lowers it. What lowers it
without a fault is the stable growing (a HorizontalPodAutoscaler doubling it halves the
canary's share under a replica split) or a canary pod leaving the endpoints while the others
serve: a fall of half or less. So only a fall by more than `max_drop` (default 80 %: less than
a fifth of the share before) fails, and only on evidence.

Statistics. Steps where the stable has no sample are left out (no reference; a metrics source
lagging at the end); a step where the stable has one and the canary none counts as zero canary
requests: a canary that does not report is no evidence that it serves. With n₁ of T₁ requests
the canary's before and n₂ of T₂ in the last `recent_steps` steps, the odds ratio
ψ = odds(share₂) / odds(share₁) is tested against r = 1 − max_drop:

- the share before, π₁, gets an exact Clopper–Pearson interval (Clopper & Pearson, Biometrika
  26, 1934) at α/4 on each side; a share lately of ψ = r times π₁'s odds is π₀(π₁) = rπ₁ /
  (1 − π₁ + rπ₁), increasing in π₁;
- fail when n₂ is below what π₀ at the interval's lower end allows, P(X ≤ n₂ | T₂, π₀(lo)) ≤ α/4;
  pass when it is above what π₀ at its upper end allows, P(X ≥ n₂ | T₂, π₀(hi)) ≤ α/4; else
  inconclusive;
- requests come in bursts and over kept-alive connections, so the steps' shares scatter more
  than a binomial's: every count is divided by an upper bound (wrong with probability α/2) for
  the dispersion φ of the steps before (`dispersion_bound`: the quasi-binomial model, McCullagh
  & Nelder, "Generalized Linear Models", 1989, §4.5), and the binomial tail is read at
  non-integer counts through the regularised incomplete beta. A few long-lived connections
  (gRPC) make the share jump step to step: φ is then large and a quiet canary inconclusive,
  not failed. Fewer than three steps before cannot bound φ: not judged (listed, not holding
  the verdict).
- undecided holds the verdict only when the canary served nothing lately; a canary that
  served, whose share is too thin or too uneven to rule out a fall, is listed and does not
  hold it (a few long-lived connections would hold every poll of a healthy rollout).

Either wrong answer needs the φ bound, the interval or the binomial test to err: ≤ α per poll
by Bonferroni, with φ and π₁ nuisance parameters maximised over confidence sets (Berger & Boos,
JASA 89, 1994).

A canary that served nothing for longer than the recent steps is judged over its whole
silence: at 0.5 requests/s two silent minutes prove nothing, ten do. The silence's length is
read off the data, and that is still a test at α: "silent for at least L steps" is the event
"no request in the last L steps", whose probability is what the test computes for a span of
L steps fixed beforehand.

The test is a sliding window, asked again at every poll. Its false failures come from real
falls of the share, not from sampling: a canary at its usual share falls below a fifth of it
with a probability far below α at any traffic where a fall could be shown at all. `bench/share.py`
measures both on simulated polls (false failures over whole rollouts, and how soon a stop is
seen).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import betainc, betaincinv, chdtri

from webhook.judge.types import CheckResult, Outcome, Summary, fmt_count, fmt_value

TEST_NAME = "canary's share of requests, lately vs before (exact binomial, quasi-binomial)"
# The `test` of the check when there is nothing before the recent steps to compare with: it
# is listed, and does not hold the verdict.
TOO_EARLY_TEST = "not judged: nothing before the recent steps to compare the share with"
_TOO_EARLY = "not judged before the window is longer than its recent steps"


def recent_steps_of(recent_seconds: float, step: float) -> int:
    """The steps that cover `recent_seconds` (at least one)."""
    return max(1, math.ceil(recent_seconds / step - 1e-9))


def _at_most(k: float, n: float, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), continuous in k and n (regularised incomplete beta)."""
    if k >= n:
        return 1.0
    if k < 0:
        return 0.0
    return float(betainc(n - k, k + 1.0, 1.0 - p))


def _at_least(k: float, n: float, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), continuous in k and n."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(betainc(k, n - k + 1.0, p))


def _share_interval(n: float, total: float, alpha: float) -> tuple[float, float]:
    """Clopper–Pearson bounds, each wrong with probability ≤ `alpha`, for a share of n in total."""
    low = 0.0 if n <= 0 else float(betaincinv(n, total - n + 1.0, alpha))
    high = 1.0 if n >= total else float(betaincinv(n + 1.0, total - n, 1.0 - alpha))
    return low, high


def _fallen(share: float, ratio: float) -> float:
    """The share whose odds are `ratio` times those of `share`."""
    return ratio * share / (1.0 - share + ratio * share)


def dispersion_bound(canary: np.ndarray, stable: np.ndarray, miss: float) -> float | None:
    """An upper bound, wrong with probability about `miss`, for how much more the canary's
    per-step counts scatter around its share than a binomial's (at least 1); None with fewer
    than three steps that served, which cannot bound it.

    Robust to a fall inside a quarter of these steps: the residuals are taken around the
    steps' median share, and their scale read off their squares' upper quartile (the m-th
    smallest, m = ⌈3k/4⌉: a bound about twice as tight as the median's on a dozen steps).
    Around the pooled share and with their mean (Pearson's X² / (k − 1)), a canary that went
    quiet two steps before the recent ones made every step's residual large, the fall itself
    read as scatter (φ ≈ 100), and the fall could not be shown. The bound, not the estimate:
    a quartile of a handful of steps is often far below the scatter, and an underestimate
    fails a healthy canary whose share jumps step to step. The m-th smallest of k squared
    residuals, φ·χ²₁ each, is below φ·F⁻¹(B), B the m-th smallest of k uniforms,
    Beta(m, k − m + 1): its `miss` quantile bounds φ from above."""
    totals = canary + stable
    served = totals > 0
    k = int(served.sum())
    if k < 3:
        return None
    c, t = canary[served], totals[served]
    ordered = np.sort(c / t)  # the median, without np.median's cost per call on a dozen steps
    share = float(ordered[(k - 1) // 2] + ordered[k // 2]) / 2
    if not 0.0 < share < 1.0:
        share = float(c.sum() / t.sum())
        if not 0.0 < share < 1.0:
            return 1.0
    squared = (c - t * share) ** 2 / (t * share * (1.0 - share))
    m = math.ceil(0.75 * k)
    upper_quartile = float(np.partition(squared, m - 1)[m - 1])
    return max(1.0, upper_quartile / _chi2_1_quantile_of_order(m, k, miss))


@functools.lru_cache(maxsize=256)
def _chi2_1_quantile_of_order(m: int, k: int, miss: float) -> float:
    """The `miss` quantile of the m-th smallest of k χ²₁ variables."""
    return float(chdtri(1.0, 1.0 - betaincinv(m, k - m + 1.0, miss)))


def _on_stable_steps(canary: np.ndarray, stable: np.ndarray,
                     known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The canary's counts of steps where the stable has no sample added to the next step
    where it has one, as Prometheus adds the stable's own to it (its first sample after a
    scrape gap counts the whole gap); those at the end, with no such step yet, are left out.

    Dropping them instead set one step's canary count against several of the stable's: a
    stable not scraped for 2 minutes, after a burst, read as the canary's share falling."""
    if known.all():
        return canary, stable
    if not known.any():
        return canary[:0], stable[:0]
    group = np.cumsum(known[::-1])[::-1]  # steps up to and including the next known one
    last_known = int(np.flatnonzero(known)[-1])
    sums = np.bincount(group[:last_known + 1], weights=canary[:last_known + 1])
    c = np.zeros_like(canary)
    c[known] = sums[group[known]]
    return c, stable


def _trailing_silence(canary: np.ndarray) -> int:
    """How many of the last steps have no canary request."""
    served = np.flatnonzero(canary > 0)
    return len(canary) if served.size == 0 else len(canary) - 1 - int(served[-1])


def _span_text(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if minutes and rest else f"{minutes}m" if minutes else f"{rest}s"


def judge_share(
    name: str,
    canary: np.ndarray,
    stable: np.ndarray,
    *,
    recent_steps: int,
    recent_text: str,
    max_drop: float = 0.8,
    alpha: float = 0.05,
    total_name: str = "requests",
    step: float = 60.0,
) -> CheckResult:
    """Whether the canary's share of requests in the last `recent_steps` steps fell by more
    than `max_drop` of its share before (fail), is shown not to have (pass), or cannot tell.

    `canary` and `stable` are per-step counts over the judged window (NaN: no sample), `step`
    seconds apart; `recent_text` names the recent span in reasons ("2m"). A canary that served
    nothing for longer than the recent steps is judged over that whole silence."""
    canary = np.asarray(canary, dtype=float)
    stable = np.asarray(stable, dtype=float)
    known = np.isfinite(stable)
    unreported = known & ~np.isfinite(canary)
    c, s = _on_stable_steps(np.where(np.isfinite(canary), np.clip(canary, 0.0, None), 0.0),
                            np.where(known, np.clip(stable, 0.0, None), 0.0), known)
    split = max(len(c) - recent_steps, 0)
    silence = _trailing_silence(c)
    if split > 0 and silence > recent_steps:
        # the canary served nothing for longer than the recent steps: that whole silence is
        # the recent span (a stop at 0.5 requests/s shows over minutes, not in two)
        split = max(len(c) - silence, 0)
        recent_text = _span_text(silence * step)
    n1, m1 = float(c[:split].sum()), float(s[:split].sum())
    n2, m2 = float(c[split:].sum()), float(s[split:].sum())
    ratio = 1.0 - max_drop
    # each side's requests lately and its share of them; the share before is in the reason,
    # the change from it in `effect`
    base: dict = dict(name=name, kind="share", test=TEST_NAME,
                      canary=Summary(n2, n2 / (n2 + m2) if n2 + m2 > 0 else None),
                      stable=Summary(m2, m2 / (n2 + m2) if n2 + m2 > 0 else None),
                      allowed=ratio)
    if n1 + n2 <= 0:
        return CheckResult(verdict="inconclusive", **base, reason=(
            f"{name}: too little data: canary has 0 {total_name} in the window"))

    def aside(informational: str, test: str, reason: str) -> CheckResult:
        """Listed, inconclusive, not holding the verdict; `informational` in a pass's reason."""
        return CheckResult(verdict="inconclusive", blocking=False, informational=informational,
                           **{**base, "test": test}, reason=f"{name}: {reason}")

    if split == 0 or n1 <= 0 or m1 <= 0:
        return aside(_TOO_EARLY, TOO_EARLY_TEST, f"not judged: no {total_name} on both sides "
                     f"before the last {recent_text} to compare the canary's share with")
    before = n1 / (n1 + m1)
    if n2 + m2 <= 0:  # nothing the canary alone lacks: the other checks judged before
        return aside(f"no {total_name} on either side lately", TEST_NAME,
                     f"no {total_name} on either side in the last {recent_text}: nothing says "
                     "whether the canary still serves")
    phi = dispersion_bound(c[:split], s[:split], alpha / 2)
    if phi is None:
        return aside(_TOO_EARLY, TOO_EARLY_TEST, f"not judged: fewer than 3 steps with "
                     f"{total_name} before the last {recent_text} to tell how much the "
                     "canary's share varies")
    low, high = _share_interval(n1 / phi, (n1 + m1) / phi, alpha / 4)
    fail_p = _at_most(n2 / phi, (n2 + m2) / phi, _fallen(low, ratio))
    pass_p = _at_least(n2 / phi, (n2 + m2) / phi, _fallen(high, ratio))
    lately = n2 / (n2 + m2)
    effect = lately / before - 1  # the canary's share lately against before: -100 % stopped
    outcome: Outcome = ("fail" if fail_p <= alpha / 4 else
                        "pass" if pass_p <= alpha / 4 else "inconclusive")
    shares = (f"the canary served {fmt_count(n2)} of the last {recent_text}'s "
              f"{fmt_count(n2 + m2)} {total_name} ({fmt_value(lately, '%')}), against "
              f"{fmt_value(before, '%')} of {fmt_count(n1 + m1)} before")
    fall = f"fall of its share beyond the {max_drop:.0%} tolerated"
    if outcome == "fail":
        # not reporting: no sample at any of the last `recent_steps` steps the stable had one
        # at (its last sample's step, inside a longer silence, counts 0 but was reported)
        last = slice(max(len(c) - recent_steps, 0), None)
        silent = bool(known[last].any() and unreported[last][known[last]].all())
        why = ("it has not reported since, while the stable did: hung, crashed or not "
               "scraped" if silent else "it has stopped serving its share (its pods unready "
               "or gone, or its route broken) or is not scraped")
        reason = f"{name}: {shares}: a {fall}; {why}"
    elif outcome == "pass":
        reason = f"{name}: {shares}: no {fall}"
    else:
        reason = (f"{name}: {shares}: too few {total_name} lately, or too uneven a share "
                  f"step to step, to rule out a {fall}; more {total_name} will decide")
    # Undecided holds the verdict only when the canary served nothing lately: a canary that
    # served is alive, and a share too thin or too uneven to rule out a fall (a few long-lived
    # connections) would otherwise hold every poll of a healthy rollout; one that served
    # nothing while the stable served must not pass.
    holds = outcome != "inconclusive" or n2 <= 0
    return CheckResult(verdict=outcome, effect=effect, p_value=min(fail_p, 1.0), blocking=holds,
                       informational="" if holds else "served lately, a fall of its share "
                       "not ruled out", **base, reason=reason)
