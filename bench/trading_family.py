"""How often the trading config's whole verdict fails a healthy canary, passes a regressed one,
and how soon it catches it, over rollouts polled as Argo polls them.

    python bench/trading_family.py [--runs 200] [--regression-runs 100]
        [--alpha 0.01] [--alone] [--jobs 2] [--scenario NAME ...] [--out FILE.json]

Every check of the `trading` config is judged, together, through `judging.judge_metrics` and
`verdict.combine` as an analysis judges them (the pure core, fed the series its queries
return), every minute of a rollout (`verdict_family.poll_checks`: Argo's `interval: 1m`, the
first measurement after `initialDelay: 2m`). A rollout counts as failed at its first failing
poll; as passed if some poll passes before any fails (a pass is what promotes it).

The simulation (one rollout, one-minute window steps, the stable's HISTORY minutes before it):
- orders per instance per minute are Poisson around `rate` orders/s times a market activity
  shared by every instance: lognormal, AR(1) per minute, coefficient of variation `cv`
  (bursty at the open); stable runs `stable_pods`, the canary `canary_pods` at the same
  per-instance rate (Argo's canary without traffic routing splits by pod count);
- fills are binomial at a fill probability shared by both sides that moves per minute
  (logit-normal around 95 %); the latency histogram is the orders spread over Go's
  client_golang-like buckets (`webhook.lab.synth.DEFAULT_BUCKETS`) from a lognormal (median
  20 ms, sigma 0.5) whose scale moves with the market per minute;
- slippage (8 bps) and market impact (2 bps) are gauges each instance exports, scraped every
  `scrape` seconds: a market part shared by every instance plus the instance's own average
  of its last minute of orders (per-order sd 6 and 2 bps over the orders it had), both AR(1)
  with lag-one autocorrelation `phi` per scrape; the config reads them every 15 s (`step`),
  the latest scrape each time, per instance (`pod`), as it reads throughput;
- P&L impact is the canary's summed gauge (AR(1), sd $1,500 per instance), its largest |value|
  per minute (the config's max_over_time(abs(...)[step:5s]) sees every scrape); compliance
  violations are 0 on a healthy canary.
A regression (`Scenario.regression`) changes the canary from its first minute (slippage,
market impact, fill rate, latency, throughput) or at one scrape / one minute drawn in its
first ten minutes (a P&L excursion to -$12,000, one compliance violation).

risk_tolerance does not change the statistics (it decides only when the market-hours gate
lets a change start or be promoted: docs/profiles.md); every check runs at the config's alpha
(0.01) or a request's. The gate is left out here (a closed market, or `low`): it can hold a
verdict, never fail one. docs/profiles.md ("Measured: false failures, false passes,
detection") has the figures, tests/test_trading_family.py checks the headline bound on a few
runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # `python bench/trading_family.py`: only bench/ is on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.verdict_family import STEP, poll_checks, upper_bound
from webhook.configs import AnalysisConfig, MetricSpec, load_registry
from webhook.judge.verdict import combine
from webhook.lab.synth import DEFAULT_BUCKETS
from webhook.resolve import resolve_instance_labels
from webhook.sources.base import QueryKey, QueryResult, RangeQuery, Series

HISTORY = 60  # minutes of the stable before the rollout (the judges read an hour)
POLLS = 20
DELAY = 1  # Argo's initialDelay 2m: the first poll judges two minutes
GAUGE_STEP = 15.0
LATENCY_MEDIAN, LATENCY_SIGMA = 0.02, 0.5
FILL = 0.95
SLIPPAGE_BPS, SLIPPAGE_ORDER_SD, SLIPPAGE_MARKET_SD = 8.0, 6.0, 0.5
IMPACT_BPS, IMPACT_ORDER_SD, IMPACT_MARKET_SD = 2.0, 2.0, 0.3
PNL_SD = 1500.0
PNL_EXCURSION = -12_000.0
# The metric each regression is on (its checks: order_latency_p99 and order_latency_tail).
REGRESSED = {"slippage": "slippage_bps", "impact": "market_impact", "fills": "order_fill_rate",
             "latency": "order_latency", "throughput": "throughput", "pnl": "pnl_impact_usd",
             "compliance": "compliance_violations"}
ONE_OFF = ("pnl", "compliance")
# Each comparison's tolerance reached exactly: slippage +2 bps, market impact 1.5x, the fill
# rate 5 % down (unfilled 5 % -> 9.75 %, within its double + 0.5 points), throughput 90 %.
AT_LIMITS = {"slippage": 1.25, "impact": 1.5, "fills": 0.95, "throughput": 0.9}


@dataclass(frozen=True)
class Scenario:
    """One row of the measurement: the market, the scrapes and what the canary does."""

    name: str
    rate: float = 20.0  # orders per second per instance
    cv: float = 0.5  # market activity's coefficient of variation per minute
    phi: float = 0.7  # the gauges' lag-one autocorrelation per scrape
    scrape: float = 15.0
    stable_pods: int = 4
    canary_pods: int = 1
    # slippage | impact | fills | latency | throughput (a factor on the canary), or
    # pnl | compliance (one excursion / one violation)
    regression: str | None = None
    factor: float = 1.0
    # a healthy canary exactly at every comparison's tolerance at once (AT_LIMITS): where
    # alpha is spent, and the union bound over the checks could add up
    at_limits: bool = False

    def on_canary(self, what: str) -> float:
        """The canary's factor on `what` (1: as stable)."""
        if self.regression == what:
            return self.factor
        return AT_LIMITS.get(what, 1.0) if self.at_limits else 1.0


# What a healthy canary meets: market open (bursty, 20 orders/s an instance), a quiet session,
# a desk with few orders, each at phi 0.5 and 0.9 and scrapes of 15 s and 30 s; then the
# regressions the profile says it catches, at the open and in a quiet market.
SCENARIOS: tuple[Scenario, ...] = (
    *(Scenario(f"aa-{market}-phi{phi:g}-scrape{scrape:g}", rate=rate, cv=cv, phi=phi,
               scrape=scrape)
      for market, rate, cv in (("open", 20.0, 0.5), ("quiet", 0.5, 0.2), ("few", 0.05, 0.2))
      for phi in (0.5, 0.9) for scrape in (15.0, 30.0)),
    # a steady market at the open's volume: what a healthy canary needs to pass throughput
    Scenario("aa-steady-phi0.7-scrape15", rate=20.0, cv=0.05),
    # the canary's gauges averaged over one instance, the stable's over nine
    Scenario("aa-few-phi0.9-scrape15-stable9", rate=0.05, cv=0.2, phi=0.9, stable_pods=9),
    # healthy, but at every tolerance at once
    *(Scenario(f"limits-{market}-phi{phi:g}", rate=rate, cv=cv, phi=phi, at_limits=True)
      for market, rate, cv in (("open", 20.0, 0.5), ("quiet", 0.5, 0.2),
                               ("steady", 20.0, 0.05))
      for phi in (0.5, 0.9)),
    *(Scenario(f"{what}{factor:g}-{market}", rate=rate, cv=cv, regression=what, factor=factor)
      for market, rate, cv in (("open", 20.0, 0.5), ("quiet", 0.5, 0.2))
      for what, factor in (("slippage", 1.3), ("slippage", 1.5), ("impact", 1.6),
                           ("fills", 0.94), ("fills", 0.9), ("latency", 1.3), ("throughput", 0.8),
                           ("pnl", 1.0), ("compliance", 1.0))),
)


def trading_checks(config: AnalysisConfig | None = None) -> tuple[list[MetricSpec], float,
                                                                   dict[str, float]]:
    """The trading config's metrics as an analysis judges them (instance label resolved), its
    alpha and group weights."""
    config = config or load_registry(None).get("trading")
    assert config is not None and config.defaults.alpha is not None
    specs = resolve_instance_labels(list(config.metrics), config.vars)
    return specs, config.defaults.alpha, dict(config.group_weights or {})


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) paths along the last axis, marginal sd `sd`."""
    out = np.empty(shape)
    noise = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), shape)
    out[..., 0] = rng.normal(0.0, sd, shape[:-1])
    for i in range(1, shape[-1]):
        out[..., i] = phi * out[..., i - 1] + noise[..., i]
    return out


def _result(metric: str, side: str, role: str, series: list[Series],
            step: float = STEP) -> tuple[QueryKey, QueryResult]:
    key = QueryKey(metric, side, role)  # type: ignore[arg-type]
    return key, QueryResult(RangeQuery(key, "", 0.0, 0.0, step), tuple(series))


def _bucket_probs(scale: np.ndarray) -> np.ndarray:
    """Per minute, the share of orders in each bucket (the last: above the largest bound)."""
    from scipy.special import ndtr
    bounds = np.asarray(DEFAULT_BUCKETS)
    z = (np.log(bounds)[None, :] - np.log(LATENCY_MEDIAN * scale)[:, None]) / LATENCY_SIGMA
    cdf = np.concatenate([ndtr(z), np.ones((scale.size, 1))], axis=1)
    return np.diff(cdf, prepend=0.0, axis=1)


def simulate(rng: np.random.Generator, sc: Scenario, polls: int = POLLS
             ) -> dict[QueryKey, QueryResult]:
    """One rollout's fetched results over HISTORY + DELAY + polls minutes (every poll's
    window is a prefix of them)."""
    minutes = HISTORY + DELAY + polls
    quarters = minutes * int(STEP / GAUGE_STEP)
    canary_on = np.arange(minutes) >= HISTORY
    what = sc.regression
    onset = HISTORY + int(rng.integers(0, 10))  # a one-off event's minute
    # the market, shared by every instance and both sides
    activity = np.exp(_ar1(rng, (minutes,), 0.7, math.sqrt(math.log(1 + sc.cv ** 2)))
                      - math.log(1 + sc.cv ** 2) / 2)
    fill_p = 1 / (1 + np.exp(-(math.log(FILL / (1 - FILL)) + _ar1(rng, (minutes,), 0.7, 0.3))))
    latency_scale = np.exp(_ar1(rng, (minutes,), 0.7, 0.1))
    results: dict[QueryKey, QueryResult] = {}
    per_side: dict[str, dict[str, np.ndarray]] = {}
    for side, pods in (("stable", sc.stable_pods), ("canary", sc.canary_pods)):
        live = canary_on if side == "canary" else np.ones(minutes, dtype=bool)
        regressed = side == "canary"
        throughput = sc.on_canary("throughput") if regressed else 1.0
        orders = rng.poisson(sc.rate * STEP * throughput * activity * np.ones((pods, 1)))
        orders = orders.astype(float)
        total = orders.sum(axis=0)
        p = fill_p * (sc.on_canary("fills") if regressed else 1.0)
        fills = rng.binomial(total.astype(int), p).astype(float)
        scale = latency_scale * (sc.on_canary("latency") if regressed else 1.0)
        counts = np.array([rng.multinomial(int(n), pr) for n, pr in
                           zip(total, _bucket_probs(scale), strict=True)], dtype=float)
        cumulative = np.cumsum(counts, axis=1)
        nan = np.where(live, 1.0, np.nan)
        per_side[side] = dict(total=total * nan, fills=fills * nan)
        results.update([
            _result("order_fill_rate", side, "numerator", [Series({}, fills * nan)]),
            _result("order_fill_rate", side, "total", [Series({}, total * nan)]),
            _result("order_unfilled_rate", side, "numerator",
                    [Series({}, (total - fills) * nan)]),
            _result("order_unfilled_rate", side, "total", [Series({}, total * nan)]),
            _result("order_latency", side, "buckets",
                    [Series({"le": str(le)}, cumulative[:, i] * nan)
                     for i, le in enumerate((*DEFAULT_BUCKETS, "+Inf"))]),
            _result("throughput", side, "values",
                    [Series({"pod": f"{side}-{k}"}, orders[k] / STEP * nan)
                     for k in range(pods)]),
            # no process restarts in place here: every scenario's regression is elsewhere
            _result("restarts", side, "events", [Series({}, np.zeros(minutes) * nan)]),
        ])
    # gauges: each instance's own scrapes, read at every 15 s step (the latest scrape)
    scrapes = math.ceil(minutes * STEP / sc.scrape)
    at = np.floor(np.arange(quarters) * GAUGE_STEP / sc.scrape + 1e-9).astype(int)
    live_q = np.repeat(canary_on, int(STEP / GAUGE_STEP))
    for metric, level, order_sd, market_sd, kind in (
            ("slippage_bps", SLIPPAGE_BPS, SLIPPAGE_ORDER_SD, SLIPPAGE_MARKET_SD, "slippage"),
            ("market_impact", IMPACT_BPS, IMPACT_ORDER_SD, IMPACT_MARKET_SD, "impact")):
        market = _ar1(rng, (scrapes,), sc.phi, market_sd)
        own_sd = order_sd / math.sqrt(max(sc.rate * STEP, 1.0))
        for side, pods in (("stable", sc.stable_pods), ("canary", sc.canary_pods)):
            base = level * (sc.on_canary(kind) if side == "canary" else 1.0)
            own = _ar1(rng, (pods, scrapes), sc.phi, own_sd)
            gauges = (base + market + own)[:, at]
            if side == "canary":
                gauges = np.where(live_q, gauges, np.nan)
            results.update([_result(metric, side, "values",
                                    [Series({"pod": f"{side}-{k}"}, gauges[k])
                                     for k in range(pods)], GAUGE_STEP)])
    pnl = _ar1(rng, (sc.canary_pods, scrapes), sc.phi, PNL_SD).sum(axis=0)
    if what == "pnl":
        pnl[int((onset * STEP + rng.uniform(0, STEP)) // sc.scrape)] = PNL_EXCURSION
    per_minute = int(STEP / sc.scrape) if sc.scrape <= STEP else 1
    worst = np.abs(pnl[: minutes * per_minute]).reshape(minutes, per_minute).max(axis=1)
    results.update([_result("pnl_impact_usd", "canary", "values",
                            [Series({}, np.where(canary_on, worst, np.nan))])])
    breaches = np.zeros(minutes)
    if what == "compliance":
        breaches[onset] = 1.0
    for side in ("canary", "stable"):
        live = canary_on if side == "canary" else np.ones(minutes, dtype=bool)
        events = np.where(live, breaches if side == "canary" else 0.0, np.nan)
        results.update([
            _result("compliance_violations", side, "events", [Series({}, events)]),
            _result("compliance_violations", side, "total",
                    [Series({}, per_side[side]["total"])]),
        ])
    return results


@dataclass
class Rollouts:
    """What `runs` rollouts of one scenario came to."""

    scenario: Scenario
    alpha: float
    runs: int = 0
    failed: int = 0
    passed: int = 0  # a pass at some poll before any failure
    # the regressed metric's own checks passed at some poll before any failure: what would
    # promote it if every other check passed (a request may switch the others off)
    check_passed: int = 0
    first_fail: list[int] = field(default_factory=list)  # minutes since the canary began
    first_pass: list[int] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)  # failed rollouts each check failed

    def summary(self) -> dict[str, object]:
        def median(xs: list[int]) -> float | None:
            return float(np.median(xs)) if xs else None

        return {**asdict(self.scenario), "alpha": self.alpha, "runs": self.runs,
                "failed": self.failed, "failed_rate": self.failed / self.runs,
                "failed_upper_99": upper_bound(self.failed, self.runs),
                "passed": self.passed, "passed_rate": self.passed / self.runs,
                # a one-off event's check passes before the event: no false pass
                "check_passed": None if self.scenario.regression in ONE_OFF
                else self.check_passed,
                "median_first_fail_minute": median(self.first_fail),
                "max_first_fail_minute": max(self.first_fail, default=None),
                "median_first_pass_minute": median(self.first_pass),
                "checks_failing": dict(sorted(self.checks.items(), key=lambda kv: -kv[1]))}


def run(sc: Scenario, runs: int = 200, polls: int = POLLS, seed: int = 11,
        alpha: float | None = None, specs: Sequence[MetricSpec] | None = None) -> Rollouts:
    """`runs` rollouts of `sc`, the whole trading config judged at every poll."""
    own_specs, own_alpha, weights = trading_checks()
    specs = list(specs) if specs is not None else own_specs
    alpha = alpha if alpha is not None else own_alpha
    rng = np.random.default_rng([seed, zlib_crc(sc.name)])
    out = Rollouts(sc, alpha)
    for _ in range(runs):
        results = simulate(rng, sc, polls)
        out.runs += 1
        passed = own_passed = False
        for poll, checks in poll_checks(specs, alpha, results, polls, HISTORY, STEP, DELAY):
            verdict = combine(checks, weights).verdict
            own = [c for c in checks if c.name.startswith(REGRESSED.get(sc.regression or "", "-"))
                   and c.blocking]
            if own and all(c.verdict == "pass" for c in own) and not own_passed:
                own_passed = True
                out.check_passed += 1
            if verdict == "pass" and not passed:
                passed = True
                out.passed += 1
                out.first_pass.append(poll + DELAY)
            if verdict == "fail":
                out.failed += 1
                out.first_fail.append(poll + DELAY)
                for c in checks:
                    if c.verdict == "fail":
                        out.checks[c.name] = out.checks.get(c.name, 0) + 1
                break
    return out


def zlib_crc(text: str) -> int:
    """A stable seed per scenario name (Python's hash() is salted per process)."""
    import zlib
    return zlib.crc32(text.encode())


def _row(job: tuple[Scenario, int, int, float | None, bool]) -> dict[str, object]:
    sc, runs, polls, alpha, alone = job
    specs = None
    if alone and sc.regression:
        specs = [s for s in trading_checks()[0] if s.name == REGRESSED[sc.regression]]
    return {**run(sc, runs, polls, alpha=alpha, specs=specs).summary(),
            "alone": bool(specs)}


def _show(row: dict[str, object]) -> None:
    print(f"{row['name']}: failed {row['failed']}/{row['runs']} "
          f"(upper {row['failed_upper_99']:.3f}), passed {row['passed']} (its check "
          f"{row['check_passed']}), first fail "
          f"{row['median_first_fail_minute']}, first pass {row['median_first_pass_minute']}"
          f"; {row['checks_failing']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="rollouts per healthy row")
    parser.add_argument("--regression-runs", type=int, default=100,
                        help="rollouts per regression row")
    parser.add_argument("--jobs", type=int, default=1, help="scenarios judged at once")
    parser.add_argument("--alone", action="store_true",
                        help="judge only the regressed metric (as a config without the others)")
    parser.add_argument("--polls", type=int, default=POLLS)
    parser.add_argument("--alpha", type=float, default=None,
                        help="a request's alpha (default: the config's, 0.01)")
    parser.add_argument("--scenario", action="append", default=None,
                        help="a scenario name (repeatable; default all)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if (args.scenario is None or s.name in args.scenario)
              and (s.regression or not args.alone)]
    if not chosen:
        parser.error(f"no such scenario; known: {', '.join(s.name for s in SCENARIOS)}")
    began = time.monotonic()
    jobs = [(sc, args.runs if sc.regression is None else args.regression_runs, args.polls,
             args.alpha, args.alone) for sc in chosen]
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for row in pool.map(_row, jobs):
            rows.append(row)
            _show(row)
    if args.out:
        args.out.write_text(json.dumps({
            "command": "python bench/trading_family.py --runs "
                       f"{args.runs} --regression-runs {args.regression_runs} --polls "
                       f"{args.polls}"
                       + (f" --alpha {args.alpha:g}" if args.alpha else "")
                       + (" --alone" if args.alone else "")
                       + "".join(f" --scenario {name}" for name in args.scenario or ()),
            "history_minutes": HISTORY, "delay_minutes": DELAY, "polls": args.polls,
            "seconds": round(time.monotonic() - began, 1), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
