"""Simulated rollouts, as the judge sees them through Prometheus range queries.

Time grid: one point per query step of STEP_SECONDS = 30 s, equal to the controller's poll
interval, so poll k (k = 1 … POLLS) sees exactly steps 0 … k−1 of [analysis start, now] and
`looks` (the sequential judges' number of steps in the window) equals the number of polls.
30 s is also a realistic range-query step: at least twice a 15 s scrape interval, so every
`increase(…[30s])` point is defined.

Per step and side (canary, stable):
- requests ~ Poisson(weight × total rate × 30 s); the canary weight follows WEIGHTS
  (5 % polls 1–4, 10 % 5–8, 25 % 9–12, 50 % 13–20), stable gets the rest;
- errors ~ Binomial(requests, p_t). p_t = p (healthy), or overdispersed: p_t ~ Beta(κp, κ(1−p))
  (beta-binomial; per-step heterogeneity such as a bad pod or a flaky dependency, Var of the
  count = n p (1−p) (1 + (n−1)/(κ+1))), and/or a burst step (probability `burst_prob`) with
  p_t = `burst_error_ratio`. Draws are independent per side: in an A/A test both sides share the
  distribution, not the realisation;
- latency bucket increments ~ Multinomial(requests, bucket probabilities) of a lognormal with
  median 0.1 s and σ 0.6 (webhook.lab.synth.DEFAULT_BUCKETS + Inf); a latency regression
  multiplies the canary's lognormal by `latency_scale` (every quantile, p99 included, grows by
  that factor); optional per-step jitter multiplies it by exp(N(0, jitter²));
- a CPU gauge: AR(1) around LEVEL with φ = GAUGE_PHI and marginal sd GAUGE_SD (started from
  the stationary law), the canary's level raised by `gauge_shift`;
- the stable's HISTORY_STEPS steps before the rollout, at full traffic with the same error
  process: what the service sees of the stable before the analysis start (its sequential
  lookback) and uses to calibrate how clumped errors are.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import special

from webhook.lab.synth import DEFAULT_BUCKETS

STEP_SECONDS = 30.0
POLL_SECONDS = 30.0
POLLS = 20
WEIGHTS: tuple[float, ...] = (0.05,) * 4 + (0.10,) * 4 + (0.25,) * 4 + (0.50,) * 8
BOUNDS = np.array([*DEFAULT_BUCKETS, math.inf])
LATENCY_MEDIAN_S = 0.1
LATENCY_SIGMA = 0.6
GAUGE_LEVEL = 50.0  # % CPU
GAUGE_SD = 2.5  # marginal sd: 5 % of the level
GAUGE_PHI = 0.8  # lag-1 autocorrelation per 30 s step
BASE_SEED = 20240611
HISTORY_STEPS = 60

Target = Literal["none", "error_ratio", "latency", "gauge"]


@dataclass(frozen=True)
class Scenario:
    """One simulated population of rollouts; `target` names the planted regression's metric."""

    id: str
    title: str
    rps: float  # total request rate; what the canary would get at 100 % weight
    rollouts: int
    canary_rps: float | None = None  # the canary gets this rate at every step, whatever its weight
    target: Target = "none"
    error_ratio: float = 0.01  # stable's (and a healthy canary's) error ratio
    error_factor: float = 1.0  # canary's error ratio = factor × stable's
    latency_scale: float = 1.0  # canary latency multiplier (1.25 = +25 % at every quantile)
    gauge_shift: float = 0.0  # relative shift of the canary's gauge level
    concentration: float | None = None  # κ of the Beta overdispersion; None = binomial
    burst_prob: float = 0.0
    burst_error_ratio: float = 0.0
    latency_jitter: float = 0.0  # sd of the per-step log latency multiplier
    tags: tuple[str, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return self.target == "none"

    def seed(self, rollout: int) -> list[int]:
        """Seed of one rollout: fixed per scenario id and index, independent of chunking."""
        return [BASE_SEED, zlib.crc32(self.id.encode()), rollout]


@dataclass(frozen=True)
class Side:
    """Per-step data of one side: index 0 is the first step after the analysis start."""

    requests: np.ndarray  # (steps,)
    errors: np.ndarray  # (steps,)
    buckets: np.ndarray  # (steps, len(BOUNDS)), per-bucket (non-cumulative) increments
    gauge: np.ndarray  # (steps,)
    history_requests: np.ndarray = field(default_factory=lambda: np.zeros(0))  # before start
    history_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    history_buckets: np.ndarray = field(default_factory=lambda: np.zeros((0, BOUNDS.size)))

    @property
    def cumulative_buckets(self) -> np.ndarray:
        """Counts ≤ le per step, as Prometheus' `_bucket` series give them."""
        return np.cumsum(self.buckets, axis=1)

    @property
    def error_ratio(self) -> np.ndarray:
        """Per-step errors / requests; NaN (0/0) for a step without requests, as PromQL gives."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.requests > 0, self.errors / np.maximum(self.requests, 1), np.nan)

    def quantile(self, q: float) -> np.ndarray:
        return histogram_quantile(q, self.cumulative_buckets)


@dataclass(frozen=True)
class Rollout:
    canary: Side
    stable: Side


def histogram_quantile(q: float, cumulative: np.ndarray, bounds: np.ndarray = BOUNDS) -> np.ndarray:
    """Prometheus' `histogram_quantile(q, …)` for each row of cumulative bucket counts.

    Same rules as Prometheus (promql/quantile.go): rank = q × count; the first bucket whose
    cumulative count reaches the rank; linear interpolation inside it (from 0 for the first
    bucket); a rank in the +Inf bucket returns the last finite bound; no observations → NaN.
    """
    cumulative = np.atleast_2d(np.asarray(cumulative, dtype=float))
    total = cumulative[:, -1]
    rank = q * total
    idx = np.argmax(cumulative >= rank[:, None], axis=1)
    idx = np.minimum(idx, bounds.size - 1)
    upper = bounds[idx]
    lower = np.where(idx > 0, bounds[np.maximum(idx - 1, 0)], 0.0)
    below = np.where(idx > 0, np.take_along_axis(
        cumulative, np.maximum(idx - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    inside = np.take_along_axis(cumulative, idx[:, None], axis=1)[:, 0] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower + (upper - lower) * (rank - below) / inside
    last_finite = bounds[-2] if math.isinf(bounds[-1]) else bounds[-1]
    value = np.where(np.isinf(upper), last_finite, value)
    return np.where(total > 0, value, np.nan)


@lru_cache(maxsize=64)
def bucket_probabilities(scale: float) -> np.ndarray:
    """Probability of each bucket (last = +Inf) under the lognormal latency × `scale`."""
    mu = math.log(LATENCY_MEDIAN_S * scale)
    z = (np.log(BOUNDS[:-1]) - mu) / LATENCY_SIGMA
    cdf = special.ndtr(z)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return np.clip(probs, 0.0, None) / probs.sum()


def _gauge(rng: np.random.Generator, steps: int, level: float) -> np.ndarray:
    noise = np.empty(steps)
    noise[0] = rng.normal(0.0, GAUGE_SD)
    innovations = rng.normal(0.0, GAUGE_SD * math.sqrt(1 - GAUGE_PHI**2), size=steps)
    for t in range(1, steps):
        noise[t] = GAUGE_PHI * noise[t - 1] + innovations[t]
    return level + noise


def _error_counts(rng: np.random.Generator, sc: Scenario, requests: np.ndarray,
                  p: float) -> np.ndarray:
    steps = requests.size
    if sc.concentration is not None and 0 < p < 1:
        p_t = rng.beta(sc.concentration * p, sc.concentration * (1 - p), size=steps)
    else:
        p_t = np.full(steps, p)
    if sc.burst_prob > 0:
        p_t = np.where(rng.random(steps) < sc.burst_prob, sc.burst_error_ratio, p_t)
    return rng.binomial(requests, np.clip(p_t, 0.0, 1.0))


def _latency_buckets(rng: np.random.Generator, sc: Scenario, requests: np.ndarray,
                     scale: float) -> np.ndarray:
    if sc.latency_jitter > 0:
        scales = scale * np.exp(rng.normal(0.0, sc.latency_jitter, size=requests.size))
        return np.stack([rng.multinomial(n, bucket_probabilities(float(s)))
                         for n, s in zip(requests, scales, strict=True)]).reshape(
                             requests.size, BOUNDS.size)
    return rng.multinomial(requests, bucket_probabilities(scale)).reshape(requests.size,
                                                                          BOUNDS.size)


def _side(rng: np.random.Generator, sc: Scenario, weights: np.ndarray, canary: bool) -> Side:
    steps = weights.size
    mean_requests = sc.rps * STEP_SECONDS * weights
    if canary and sc.canary_rps is not None:
        mean_requests = np.full(steps, sc.canary_rps * STEP_SECONDS)
    requests = rng.poisson(mean_requests)
    p = sc.error_ratio * (sc.error_factor if canary else 1.0)
    errors = _error_counts(rng, sc, requests, p)
    buckets = _latency_buckets(rng, sc, requests, sc.latency_scale if canary else 1.0)
    level = GAUGE_LEVEL * (1 + (sc.gauge_shift if canary else 0.0))
    gauge = _gauge(rng, steps, level)
    if canary:
        return Side(requests=requests.astype(float), errors=errors.astype(float),
                    buckets=buckets.astype(float), gauge=gauge)
    # Drawn last, so the rollout's own steps do not depend on the history.
    history = rng.poisson(np.full(HISTORY_STEPS, sc.rps * STEP_SECONDS))
    return Side(requests=requests.astype(float), errors=errors.astype(float),
                buckets=buckets.astype(float), gauge=gauge,
                history_requests=history.astype(float),
                history_errors=_error_counts(rng, sc, history, p).astype(float),
                history_buckets=_latency_buckets(rng, sc, history, 1.0).astype(float))


def simulate(sc: Scenario, rollout: int) -> Rollout:
    """The per-step data of one rollout of `sc` (deterministic in scenario id and index)."""
    rng = np.random.default_rng(sc.seed(rollout))
    w = np.array(WEIGHTS)
    canary = _side(rng, sc, w, canary=True)
    stable = _side(rng, sc, 1 - w, canary=False)
    return Rollout(canary=canary, stable=stable)


def scenarios(levels: int, others: int, regressions: int,
              targets: int | None = None) -> list[Scenario]:
    """The benchmark's scenarios with their numbers of rollouts: `levels` for A/A at the three
    traffic levels (compared with alpha = 0.01, so they need the most), `others` for the other
    healthy ones, `regressions` for planted regressions, `targets` (default 3 × regressions)
    for the regressions the issue sets targets on."""
    noisy = ("aa", "noisy")
    out = [
        Scenario("aa_2rps", "A/A 2 rps", 2.0, levels, tags=("aa",)),
        Scenario("aa_20rps", "A/A 20 rps", 20.0, levels, tags=("aa",)),
        Scenario("aa_200rps", "A/A 200 rps", 200.0, levels, tags=("aa",)),
        Scenario("aa_20rps_overdispersed", "A/A 20 rps overdispersed", 20.0, others,
                 concentration=100.0, latency_jitter=0.05, tags=noisy),
        Scenario("aa_200rps_overdispersed", "A/A 200 rps overdispersed", 200.0, others,
                 concentration=100.0, latency_jitter=0.05, tags=noisy),
        Scenario("aa_20rps_bursts", "A/A 20 rps bursts", 20.0, others, burst_prob=0.02,
                 burst_error_ratio=0.10, tags=noisy),
        Scenario("aa_1rps", "A/A 1 rps", 1.0, others, tags=("aa", "low")),
    ]
    for rps in (20.0, 200.0):
        r = f"{rps:g}rps"
        for factor in (1.5, 2.0, 5.0):
            out.append(Scenario(f"err_x{factor:g}_{r}", f"errors ×{factor:g}", rps, regressions,
                                target="error_ratio", error_factor=factor))
        for scale in (1.10, 1.25, 2.0):
            pct = round((scale - 1) * 100)
            out.append(Scenario(f"p99_+{pct}pct_{r}", f"latency +{pct} %", rps, regressions,
                                target="latency", latency_scale=scale))
    out.append(Scenario("gauge_+20pct_20rps", "CPU gauge +20 %", 20.0, regressions,
                        target="gauge", gauge_shift=0.20))
    # The targets: the canary itself receives 20 req/s at every poll (stable: the rest
    # of 200 req/s), 1 % stable errors.
    targets = 3 * regressions if targets is None else targets
    out.append(Scenario("aa_canary20", "A/A canary 20 rps", 200.0, levels, canary_rps=20.0,
                        tags=("aa",)))
    for factor in (2.0, 5.0):
        out.append(Scenario(f"err_x{factor:g}_canary20", f"errors ×{factor:g}", 200.0,
                            targets, canary_rps=20.0, target="error_ratio",
                            error_factor=factor))
    out.append(Scenario("p99_+25pct_canary20", "latency +25 %", 200.0, targets,
                        canary_rps=20.0, target="latency", latency_scale=1.25))
    return out
