"""Anytime-valid tests: the chance of ever failing a healthy canary over all polls stays ≤ alpha.

Controllers poll the same rollout again and again (Argo `interval`+`count`, Flagger every tick),
each time over [analysis start, now]. A fixed-horizon test re-run at every poll fails healthy
canaries far more often than alpha (JUDGES.md: ~33 % at 100 looks). The statistics here are
test supermartingales, so by Ville's inequality P(sup_t M_t ≥ 1/alpha) ≤ alpha whatever the
number and timing of polls. They hold no state: each poll recomputes M from all steps since the
analysis start, which is the same number any replica would compute.

Counts (`ratio`): following Lindon & Malek, "Anytime-Valid Inference for Multinomial Count
Data", NeurIPS 2022 (arXiv:2011.03567), bad events of each side are treated as Poisson processes
whose intensity is the side's traffic times its bad-event rate. Given the number of bad events in
a step, the canary's share of them is Binomial(K_t, π_t(ρ)) with
π_t(ρ) = ρ·w_t / (ρ·w_t + 1 − w_t), w_t the canary's share of the step's requests and ρ the ratio
of the two sides' bad-event rates. For ρ1 > ρ0 the likelihood ratio of ρ1 against ρ0 is a
supermartingale whenever the true ρ ≤ ρ0 (monotone likelihood ratio); a mixture over ρ1 (a
half-normal prior on log ρ1/ρ0) is one too. Testing against ρ0 = 1 + relative tolerance keeps
the equivalence margin.

Confidence sequence for one proportion: Robbins' beta-binomial mixture (Robbins, "Statistical
methods related to the law of the iterated logarithm", 1970; Howard et al., "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021, §3).

Quantiles (`histogram`): the fixed-horizon order-statistic test of `histogram.py`, allowed to
fail only at geometric checkpoints of the window (steps 1, 2, 4, 8, …) at the level
alpha/(k(k+1)) spent on the k-th: the levels sum to alpha over all checkpoints, so the union
bound gives the same guarantee, and a long rollout shares alpha among log2(t) looks rather than
t. Conservative, but valid for any dependence between looks (Howard & Ramdas' quantile
confidence sequences, arXiv:1906.09712, are the sharper tool and the next step).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

# Mixture over θ = log(ρ1/ρ0): half-normal with this scale, discretised on a grid. 0.75 puts
# most weight on rate ratios between ~1.1 and ~4 times the tolerated one: the regressions that
# matter, while keeping power against x5 outages.
MIXTURE_SCALE = 0.75
# Dispersion assumed before the data can estimate it, worth this many steps of evidence.
DISPERSION_PRIOR = 2.0
DISPERSION_PRIOR_STEPS = 5
_GRID = np.linspace(0.01, 4.0, 160)
_LOG_PRIOR = stats.halfnorm.logpdf(_GRID, scale=MIXTURE_SCALE) + math.log(_GRID[1] - _GRID[0])


def rate_ratio_log_evidence(bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray,
                            n_s: np.ndarray, rho0: float, worse: bool) -> float:
    """log M for H0: ρ ≤ ρ0 (worse=True: evidence the canary is worse than tolerated) or
    H0: ρ ≥ ρ0 (worse=False: evidence it is not). Steps without bad events add nothing."""
    bad_c, bad_s = np.asarray(bad_c, float), np.asarray(bad_s, float)
    n_c, n_s = np.asarray(n_c, float), np.asarray(n_s, float)
    use = (n_c > 0) & (n_s > 0) & ((bad_c + bad_s) > 0)
    if not use.any():
        return 0.0
    k_c, k_s = bad_c[use], bad_s[use]
    w = n_c[use] / (n_c[use] + n_s[use])
    thetas = _GRID if worse else -_GRID
    rho1 = rho0 * np.exp(thetas)[:, None]

    def share(rho: np.ndarray | float) -> np.ndarray:
        return rho * w / (rho * w + 1 - w)

    pi0, pi1 = share(rho0), share(rho1)
    loglik = (k_c * (np.log(pi1) - np.log(pi0))
              + k_s * (np.log1p(-pi1) - np.log1p(-pi0))).sum(axis=1)
    return float(special.logsumexp(loglik / overdispersion(k_c, k_s, w) + _LOG_PRIOR))


def share_at(rho: float, w: np.ndarray) -> np.ndarray:
    """The canary's expected share of bad events per step at rate ratio ρ."""
    return rho * w / (rho * w + 1 - w)


def mle_rate_ratio(k_c: np.ndarray, total: np.ndarray, w: np.ndarray) -> float:
    """Maximum-likelihood ρ of the conditional binomial model: the root of the score
    Σ k_c − K·π_t(ρ), which falls monotonically in ρ. Half an event is added to each side so
    that all-canary or all-stable counts give a finite estimate."""
    k_c, total = np.asarray(k_c, float), np.asarray(total, float)
    observed = float(k_c.sum()) + 0.5

    def score(log_rho: float) -> float:
        shares = share_at(math.exp(log_rho), w)
        return observed - float((total * shares).sum()) - float(shares.mean())

    low, high = -20.0, 20.0
    if score(low) <= 0:
        return math.exp(low)
    if score(high) >= 0:
        return math.exp(high)
    return math.exp(optimize.brentq(score, low, high, xtol=1e-6))


def overdispersion(k_c: np.ndarray, k_s: np.ndarray, w: np.ndarray) -> float:
    """Pearson estimate of how much burstier bad events are than Poisson (≥ 1).

    Production errors come in clumps (a bad node, a retry storm), so the canary's share of a
    step's errors varies more between steps than a binomial allows, and an untempered
    likelihood ratio would read that noise as evidence. Dividing the log-likelihood by the
    dispersion φ is the quasi-likelihood correction (McCullagh & Nelder, "Generalized Linear
    Models", 1989, §4.5; Wedderburn 1974); by Jensen's inequality a tempered ratio LR^(1/φ) of a
    supermartingale step is still one. φ is estimated from the steps themselves around the pooled
    share, and only once there are enough steps with events to estimate it.
    """
    total = k_c + k_s
    pi = share_at(mle_rate_ratio(k_c, total, w), w)
    variance = total * pi * (1 - pi)
    ok = variance > 0
    m = int(ok.sum())
    chi2 = float((((k_c - total * pi) ** 2)[ok] / variance[ok]).sum()) if m > 1 else 0.0
    # Few steps cannot tell clumped from clean: shrink towards a cautious prior dispersion.
    phi = (chi2 + DISPERSION_PRIOR * DISPERSION_PRIOR_STEPS) / (
        max(m - 1, 0) + DISPERSION_PRIOR_STEPS)
    return max(1.0, phi)


def proportion_cs(k: float, n: float, alpha: float, a: float = 0.5,
                  b: float = 0.5) -> tuple[float, float]:
    """Time-uniform (1 − alpha) confidence sequence for a binomial proportion at (k, n).

    The set of p where the beta(a, b)-mixture likelihood ratio against p stays below 1/alpha.
    """
    if n <= 0:
        return 0.0, 1.0
    log_mix = special.betaln(a + k, b + n - k) - special.betaln(a, b)
    bound = math.log(1 / alpha)

    def excess(p: float) -> float:
        return log_mix - (special.xlogy(k, p) + special.xlog1py(n - k, -p)) - bound

    tiny = 1e-300
    mle = min(max(k / n, tiny), 1 - 1e-15)
    if not excess(mle) < 0:  # huge counts: the sequence has shrunk to the estimate itself
        return mle, mle
    low = optimize.brentq(excess, tiny, mle) if k > 0 and excess(tiny) > 0 else 0.0
    high = (optimize.brentq(excess, mle, 1 - 1e-15)
            if k < n and excess(1 - 1e-15) > 0 else 1.0)
    return low, high


# Steps at which the quantile test may declare a failure: a geometric grid, so that the number of
# looks that share alpha grows with the log of the rollout's length, not with every poll.
CHECKPOINT_GROWTH = 2.0


def checkpoint_index(step: int, growth: float = CHECKPOINT_GROWTH) -> int | None:
    """1-based index of `step` in the grid 1, ⌈g⌉, ⌈g²⌉, … (duplicates dropped), or None."""
    seen: list[int] = []
    k, value = 0, 1.0
    while True:
        point = math.ceil(value - 1e-9)
        if not seen or point > seen[-1]:
            seen.append(point)
            if point == step:
                return len(seen)
            if point > step:
                return None
        k += 1
        value = growth ** k


def checkpoints_until(step: int, growth: float = CHECKPOINT_GROWTH) -> list[int]:
    """Every checkpoint step ≤ `step`."""
    return [c for c in range(1, step + 1) if checkpoint_index(c, growth) is not None]


def spent_alpha(alpha: float, looks: int) -> float:
    """Level for the `looks`-th look so that the levels of all looks sum to alpha."""
    t = max(int(looks), 1)
    return alpha / (t * (t + 1))
