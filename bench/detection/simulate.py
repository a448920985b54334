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
  median `latency_median` (0.1 s unless the scenario says otherwise) and σ 0.6, in
  client_python's default buckets (5 ms … 10 s + Inf): where p95/p99 fall relative to the
  bucket edges is what the scenarios vary (80 ms: p99 and p99 × 1.25 both inside 0.25–0.5 s;
  115 ms: p99 × 1.25 straddles 0.5 s). A latency regression multiplies the canary's lognormal
  by `latency_scale` (every quantile, p99 included, grows by that factor); a tail regression
  makes a share `tail_share` of the canary's requests `tail_factor` times slower; optional
  per-step jitter multiplies the whole distribution by exp(N(0, jitter²));
- a CPU gauge sampled every GAUGE_STEP_SECONDS (the scrape interval: two points per query
  step, what a gauge's own `step` gives): AR(1) around LEVEL with lag-1 autocorrelation
  `gauge_phi` per point and marginal sd GAUGE_SD (started from the stationary law), the
  canary's level raised by `gauge_shift`;
- the stable's HISTORY_STEPS steps before the rollout, at full traffic with the same error
  process and the same gauge process (continuing into the rollout): what the service sees of
  the stable before the analysis start (its sequential lookback) and uses to calibrate how
  clumped errors are, where the tail-share bound lies, and how the gauge wanders.

The counts above are exact per step, as samples planted on the step grid give them. A scenario
with `scrape` set instead judges what Prometheus returns for a target scraped every `scrape`
seconds at its own random phase (one target per side, scrapes moved by up to `scrape_jitter`
s): each counter series (successes, errors, each cumulative bucket) sampled at those times,
the requests of a step spread uniformly over it, and each step's count what the http config's
queries make of that series (`counting`): the exact change of its last sample since the step
before's (`webhook.lab.scrapes.exact`; NaN where a step holds no sample), or, for a config
still counting with `increase(…[30s])`, Prometheus' extrapolation (`webhook.lab.scrapes.increase`,
Prometheus 2's closed range; NaN where a step holds fewer than two samples). The canary's
counters start at 0 at the analysis start (new pods); the stable's run on from its history.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import special

from webhook.configs import load_registry
from webhook.lab.scrapes import exact, increase

STEP_SECONDS = 30.0
POLL_SECONDS = 30.0
POLLS = 20
WEIGHTS: tuple[float, ...] = (0.05,) * 4 + (0.10,) * 4 + (0.25,) * 4 + (0.50,) * 8
# prometheus/client_python's default histogram buckets (Histogram.DEFAULT_BUCKETS).
CLIENT_PYTHON_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                         7.5, 10.0)
BOUNDS = np.array([*CLIENT_PYTHON_BUCKETS, math.inf])
LATENCY_MEDIAN_S = 0.1
LATENCY_SIGMA = 0.6
GAUGE_LEVEL = 50.0  # % CPU
GAUGE_SD = 2.5  # marginal sd: 5 % of the level
GAUGE_PHI = 0.8  # lag-1 autocorrelation per gauge point, unless the scenario says otherwise
GAUGE_TOLERANCE = 0.05  # the bench's gauge check tolerates +5 % of the level (1 sd)
GAUGE_STEP_SECONDS = 15.0
GAUGE_POINTS = int(STEP_SECONDS // GAUGE_STEP_SECONDS)  # gauge points per query step
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
    latency_median: float = LATENCY_MEDIAN_S
    tail_share: float = 0.0  # share of canary requests made `tail_factor` times slower
    tail_factor: float = 1.0
    gauge_phi: float = GAUGE_PHI
    scrape: float | None = None  # scrape interval (s) off the step grid; None: exact counts
    scrape_jitter: float = 0.0
    tags: tuple[str, ...] = field(default=())
    same_as: str | None = None  # draw the exact counts of this scenario id's rollouts

    def __post_init__(self) -> None:
        if self.scrape is not None and not 0 <= self.scrape_jitter < self.scrape / 2:
            raise ValueError("scrape_jitter must be in [0, scrape / 2)")

    @property
    def healthy(self) -> bool:
        return self.target == "none"

    def seed(self, rollout: int) -> list[int]:
        """Seed of one rollout: fixed per scenario id and index, independent of chunking."""
        return [BASE_SEED, zlib.crc32((self.same_as or self.id).encode()), rollout]


@dataclass(frozen=True)
class Side:
    """Per-step data of one side: index 0 is the first step after the analysis start."""

    requests: np.ndarray  # (steps,)
    errors: np.ndarray  # (steps,)
    buckets: np.ndarray  # (steps, len(BOUNDS)), per-bucket (non-cumulative) increments
    gauge: np.ndarray  # (steps × GAUGE_POINTS,), GAUGE_STEP_SECONDS apart
    history_gauge: np.ndarray = field(default_factory=lambda: np.zeros(0))
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

    @property
    def gauge_per_step(self) -> np.ndarray:
        """The gauge at the query step (the last sample of each step), as a range query at
        the window's step sees it."""
        return self.gauge[GAUGE_POINTS - 1::GAUGE_POINTS]


@dataclass(frozen=True)
class Rollout:
    canary: Side
    stable: Side
    gauge_only: bool = False  # a gauge scenario: only the gauge rows are judged


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


@lru_cache(maxsize=256)
def bucket_probabilities(scale: float, median: float = LATENCY_MEDIAN_S,
                         tail_share: float = 0.0, tail_factor: float = 1.0) -> np.ndarray:
    """Probability of each bucket (last = +Inf) under the lognormal latency × `scale`, with a
    share `tail_share` of requests `tail_factor` times slower still."""
    def probs(m: float) -> np.ndarray:
        z = (np.log(BOUNDS[:-1]) - math.log(m)) / LATENCY_SIGMA
        return np.diff(np.concatenate([[0.0], special.ndtr(z), [1.0]]))

    p = probs(median * scale)
    if tail_share > 0:
        p = (1 - tail_share) * p + tail_share * probs(median * scale * tail_factor)
    p = np.clip(p, 0.0, None)
    return p / p.sum()


def _gauge(rng: np.random.Generator, points: int, level: float, phi: float) -> np.ndarray:
    noise = np.empty(points)
    noise[0] = rng.normal(0.0, GAUGE_SD)
    innovations = rng.normal(0.0, GAUGE_SD * math.sqrt(1 - phi**2), size=points)
    for t in range(1, points):
        noise[t] = phi * noise[t - 1] + innovations[t]
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
                     canary: bool) -> np.ndarray:
    scale = sc.latency_scale if canary else 1.0
    tail = (sc.tail_share, sc.tail_factor) if canary else (0.0, 1.0)
    if sc.latency_jitter > 0:
        scales = scale * np.exp(rng.normal(0.0, sc.latency_jitter, size=requests.size))
        return np.stack([rng.multinomial(n, bucket_probabilities(float(s), sc.latency_median,
                                                                 *tail))
                         for n, s in zip(requests, scales, strict=True)]).reshape(
                             requests.size, BOUNDS.size)
    return rng.multinomial(requests, bucket_probabilities(scale, sc.latency_median, *tail)
                           ).reshape(requests.size, BOUNDS.size)


def _side(rng: np.random.Generator, sc: Scenario, weights: np.ndarray, canary: bool) -> Side:
    steps = weights.size
    mean_requests = sc.rps * STEP_SECONDS * weights
    if canary and sc.canary_rps is not None:
        mean_requests = np.full(steps, sc.canary_rps * STEP_SECONDS)
    requests = rng.poisson(mean_requests)
    p = sc.error_ratio * (sc.error_factor if canary else 1.0)
    errors = _error_counts(rng, sc, requests, p)
    buckets = _latency_buckets(rng, sc, requests, canary)
    level = GAUGE_LEVEL * (1 + (sc.gauge_shift if canary else 0.0))
    points = steps * GAUGE_POINTS
    if canary:
        return Side(requests=requests.astype(float), errors=errors.astype(float),
                    buckets=buckets.astype(float), gauge=_gauge(rng, points, level, sc.gauge_phi))
    # The stable's gauge runs on from its history into the rollout; drawn last, like the
    # rest of the history, so the rollout's other steps do not depend on it.
    history = rng.poisson(np.full(HISTORY_STEPS, sc.rps * STEP_SECONDS))
    history_errors = _error_counts(rng, sc, history, p).astype(float)
    history_buckets = _latency_buckets(rng, sc, history, False).astype(float)
    gauge = _gauge(rng, HISTORY_STEPS * GAUGE_POINTS + points, level, sc.gauge_phi)
    return Side(requests=requests.astype(float), errors=errors.astype(float),
                buckets=buckets.astype(float), gauge=gauge[-points:],
                history_gauge=gauge[:-points], history_requests=history.astype(float),
                history_errors=history_errors, history_buckets=history_buckets)


def simulate(sc: Scenario, rollout: int) -> Rollout:
    """The per-step data of one rollout of `sc` (deterministic in scenario id and index)."""
    rng = np.random.default_rng(sc.seed(rollout))
    w = np.array(WEIGHTS)
    canary = _side(rng, sc, w, canary=True)
    stable = _side(rng, sc, 1 - w, canary=False)
    if sc.scrape is not None:  # drawn after the exact counts, which stay the same
        canary = _scraped(rng, canary, sc.scrape, sc.scrape_jitter)
        stable = _scraped(rng, stable, sc.scrape, sc.scrape_jitter)
    return Rollout(canary=canary, stable=stable, gauge_only="gauge" in sc.tags)


SLOTS = int(STEP_SECONDS)  # 1 s resolution of when a step's requests happen


@lru_cache(maxsize=1)
def counting() -> Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]:
    """How the http config's queries count a counter per step, read off its request total:
    `increase` when it still extrapolates with increase(), else `exact`. The benchmark then
    measures the shipped queries, and a run of an older commit reproduces its figures."""
    quiet = logging.getLogger("webhook.configs")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # other built-in configs may be mid-edit; only http matters
    try:
        config = load_registry(None).get("http")
    finally:
        quiet.setLevel(level)
    total = next((getattr(spec, "total", "") for spec in (config.metrics if config else ())
                  if spec.name == "error_ratio"), "")
    return increase if "increase(" in total else exact


def _scraped(rng: np.random.Generator, side: Side, interval: float, jitter: float) -> Side:
    """`side` as Prometheus returns the http config's counts when the target is scraped off
    the grid (`counting`)."""
    h = side.history_requests.size
    requests = np.concatenate([side.history_requests, side.requests])
    errors = np.concatenate([side.history_errors, side.errors])
    buckets = np.vstack([side.history_buckets, side.buckets])
    steps, span = requests.size, STEP_SECONDS * requests.size
    # every series' increments spread over its steps' slots, then the counters over time
    counts = np.column_stack([requests - errors, errors, buckets]).astype(np.int64)
    per_slot = rng.multinomial(counts.ravel(), np.full(SLOTS, 1.0 / SLOTS))
    per_slot = per_slot.reshape(steps, counts.shape[1], SLOTS).transpose(0, 2, 1)
    per_slot = np.vstack([per_slot.reshape(-1, counts.shape[1]), np.zeros((1, counts.shape[1]),
                                                                         np.int64)])
    counters = np.vstack([np.zeros((1, counts.shape[1])), np.cumsum(per_slot[:-1], axis=0)])
    at = rng.uniform(0.0, interval) + np.arange(0.0, span, interval)
    at = np.clip(at + rng.uniform(-jitter, jitter, size=at.size), 0.0, span)
    # each counter when scraped: its slot's requests fall uniformly in it, before the scrape
    # or after it
    slot = np.floor(at).astype(int)
    values = counters[slot] + rng.binomial(per_slot[slot], (at - slot)[:, None])
    values[:, 2:] = np.cumsum(values[:, 2:], axis=1)  # buckets: ≤ le
    ends = STEP_SECONDS * np.arange(1, steps + 1, dtype=float)
    count = counting()
    seen = np.column_stack([count(at, values[:, j], ends, STEP_SECONDS)
                            for j in range(counts.shape[1])])
    total = seen[:, 0] + seen[:, 1]
    per_bucket = np.diff(np.column_stack([np.zeros(steps), seen[:, 2:]]), axis=1)
    return replace(side, requests=total[h:], errors=seen[h:, 1], buckets=per_bucket[h:],
                   history_requests=total[:h], history_errors=seen[:h, 1],
                   history_buckets=per_bucket[:h])


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
        # A low-traffic service: the canary serves 0.05-0.5 req/s, never the error check's
        # 200 requests in a 10-minute rollout, yet one failing 10 % or half of them is harmful.
        Scenario("err_x10_1rps", "errors ×10 at 1 rps", 1.0, regressions, target="error_ratio",
                 error_factor=10.0, tags=("low",)),
        Scenario("err_x50_1rps", "errors ×50 at 1 rps", 1.0, regressions, target="error_ratio",
                 error_factor=50.0, tags=("low",)),
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
    # Where quantiles fall against bucket edges: at an 80 ms median p99 (323 ms) and p99 × 1.25
    # (404 ms) share the 0.25–0.5 s bucket; at 115 ms (465 → 581 ms) they straddle 0.5 s.
    # Tail regressions: 3 % of requests ×4 (p99 +42 %, p50 +2 %; share over 500 ms 0.11 % →
    # 0.79 %), and 1 % ×4, just beyond the tail-share tolerance of +0.2 percentage points
    # (0.11 % → 0.34 %).
    c20 = dict(rps=200.0, canary_rps=20.0)
    out += [
        Scenario("aa_canary20_m80", "A/A canary 20 rps, median 80 ms", rollouts=levels,
                 latency_median=0.08, tags=("aa",), **c20),
        Scenario("aa_canary20_m115", "A/A canary 20 rps, median 115 ms", rollouts=others,
                 latency_median=0.115, tags=("aa",), **c20),
        Scenario("p99_+25pct_canary20_m80", "latency +25 %, p99 inside one bucket",
                 rollouts=targets, target="latency", latency_scale=1.25, latency_median=0.08,
                 tags=("beyond",), **c20),
        Scenario("p99_+25pct_canary20_m115", "latency +25 %, p99 straddles 0.5 s",
                 rollouts=regressions, target="latency", latency_scale=1.25,
                 latency_median=0.115, tags=("beyond",), **c20),
        Scenario("tail_3pct_x4_canary20_m80", "3 % of requests ×4", rollouts=targets,
                 target="latency", tail_share=0.03, tail_factor=4.0, latency_median=0.08,
                 **c20),
        Scenario("tail_1pct_x4_canary20_m80", "1 % of requests ×4 (tail share just beyond "
                 "tolerance)", rollouts=regressions, target="latency", tail_share=0.01,
                 tail_factor=4.0, latency_median=0.08, tags=("beyond",), **c20),
    ]
    # The same rollouts (`same_as`: the same requests) as a real Prometheus returns them for
    # targets scraped every 15 s at their own phase, 0.5 s jitter: each 30 s step sees one
    # scrape interval of two, doubled (`Scenario.scrape`).
    for base in ("aa_20rps", "aa_200rps", "aa_canary20", "aa_canary20_m80", "err_x2_canary20",
                 "p99_+25pct_canary20", "p99_+25pct_canary20_m80", "tail_3pct_x4_canary20_m80"):
        (like,) = [sc for sc in out if sc.id == base]
        out.append(replace(like, id=f"{base}_scrape15", title=f"{like.title}, scraped off-grid",
                           scrape=15.0, scrape_jitter=0.5, same_as=base,
                           tags=(*like.tags, "scrape")))
    # Gauges alone (the other checks are not judged in these): A/A at several φ per 15 s
    # point, a 5 sd shift, and a shift of 1.2 × the gauge check's tolerance.
    gauge = ("gauge",)
    for phi in (0.0, 0.5, 0.8, 0.95):
        out.append(Scenario(f"aa_gauge_phi{phi:g}", f"A/A gauge φ={phi:g}", 20.0, others,
                            gauge_phi=phi, tags=("aa", *gauge)))
    for phi in (0.0, 0.5, 0.8):
        out.append(Scenario(f"gauge_+5sd_phi{phi:g}", f"gauge +5 sd, φ={phi:g}", 20.0,
                            regressions, target="gauge", gauge_phi=phi,
                            gauge_shift=5 * GAUGE_SD / GAUGE_LEVEL, tags=gauge))
    out.append(Scenario("gauge_+1.2tol_phi0.5", "gauge 1.2 × tolerance, φ=0.5", 20.0,
                        regressions, target="gauge", gauge_phi=0.5,
                        gauge_shift=1.2 * GAUGE_TOLERANCE, tags=("beyond", *gauge)))
    return out
