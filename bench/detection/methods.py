"""The judges under test, each giving one verdict per poll of a simulated rollout.

Every method returns, per row, an int8 array of POLLS verdict codes (PASS, INCONCLUSIVE, FAIL).
A row is either the method's combined verdict (row id = method key) or one metric's
(`key:error_ratio`, `key:latency`, `key:gauge`), so the report shows which check detects.
Once a check has failed, the controller aborts the rollout: later polls do not matter, and a
failed check is not re-judged (its fail is carried forward).

- canary-judge (`cj_seq_*`, `cj_fixed_*`): the service's own judges with the `http` config's
  metrics and tolerances (loaded from webhook/configs/http.yaml like the service does), combined
  by `webhook.judge.combine`. Each poll judges all steps since the analysis start. Sequential
  mode passes `mode="sequential"` when the judge accepts it (otherwise its rows are
  "pending"), and the stable's steps before the rollout to the ratio and quantile checks, as
  the service does from its sequential lookback. The gauge row uses the `series` judge
  (schema-default settings, outside the combined verdict as the http config has no CPU
  metric), or reads "n/a" in a version without one.
- Kayenta (`kayenta`): bench.detection.kayenta on the per-step points a range query gives:
  per-step error ratio (errors/requests, NaN without requests) and per-step p99 from
  `histogram_quantile(0.99, …)` of that step's buckets, direction increase, default effect
  size, scored as a config of two equally weighted groups (errors, latency). The gauge is a
  separate one-metric config (`kayenta:gauge`), so the combined row compares the same metrics
  as canary-judge's. Argo's kayenta provider maps Pass/Marginal/Fail to our verdicts.
- Fixed thresholds of typical AnalysisTemplates (`thresholds`), on the poll's own window (the
  last 30 s step): success rate ≥ 0.95, p95 ≤ 2 s and canary/stable p95 ≤ 1.2; Argo's default
  failureLimit 0, so one failed measurement fails the rollout. A NaN result (no canary request
  in the window) is inconclusive, as with the usual `isNaN(result[0]) || …` guard. Gauge row:
  canary/stable CPU ≤ 1.2, by analogy with the latency ratio.
"""

from __future__ import annotations

import inspect
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bench.detection.simulate import (
    BOUNDS,
    GAUGE_POINTS,
    GAUGE_TOLERANCE,
    HISTORY_STEPS,
    POLLS,
    STEP_SECONDS,
    Rollout,
)
from webhook.configs import HistogramMetric, RatioMetric, load_registry
from webhook.judge import CheckResult, combine, judge_quantile, judge_ratio, kayenta
from webhook.judge.histogram import Histogram

PASS, INCONCLUSIVE, FAIL = 0, 1, 2
CODE = {"pass": PASS, "inconclusive": INCONCLUSIVE, "fail": FAIL}
METRICS = ("error_ratio", "latency", "gauge")
FAMILIES = ("cj-seq", "cj-fixed", "kayenta", "thresholds")
RowStatus = Literal["ok", "pending", "n/a"]


def _series_judge() -> Callable[..., CheckResult] | None:
    """canary-judge's `series` judge (webhook.judge.series.judge_series), if this version has it."""
    try:
        from webhook.judge.series import judge_series
    except ImportError:
        return None
    return judge_series


def series_defaults() -> dict[str, Any]:
    """Settings of a `series` metric at the config schema's defaults (the http config has no
    CPU metric: direction increase, minimum points), with a tolerance of GAUGE_TOLERANCE of the
    level so that a healthy gauge can pass; judged on GAUGE_STEP_SECONDS points (its `step`)."""
    try:
        from webhook.configs import SeriesMetric
    except ImportError:
        return {}
    spec = SeriesMetric(name="cpu", kind="series", query="x{ {{selector}} }")
    return dict(direction=spec.direction, relative_tolerance=GAUGE_TOLERANCE,
                absolute_tolerance=spec.tolerance.absolute, min_points=spec.min_points)


def sequential_supported() -> bool:
    """Whether the installed judge has the sequential mode (the `mode` keyword)."""
    return all("mode" in inspect.signature(f).parameters for f in (judge_ratio, judge_quantile))


def _worst(codes: Sequence[int]) -> int:
    """Combine per-condition codes like Argo and `combine`: any fail, else any inconclusive."""
    return max(codes) if codes else INCONCLUSIVE


class Method(ABC):
    key: str
    label: str
    family: str

    def rows(self) -> list[str]:
        return [self.key] + [f"{self.key}:{m}" for m in METRICS]

    def status(self) -> dict[str, RowStatus]:
        return dict.fromkeys(self.rows(), "ok")

    @abstractmethod
    def judge(self, rollout: Rollout) -> dict[str, np.ndarray]:
        """Verdict codes per poll for every row whose status is "ok"."""


@dataclass(frozen=True)
class _Check:
    name: str
    row: str  # "error_ratio" or "latency"
    quantile: float | None  # None for a ratio or tail-share check
    alpha: float | None  # per-metric override from the config
    good: bool  # ratio with a `good` numerator (requests - errors) instead of `bad`
    kwargs: dict[str, Any] = field(default_factory=dict)
    tail: bool = False  # the histogram's tail-share check


def _tail_judge() -> Callable[..., CheckResult] | None:
    """canary-judge's tail-share judge, if this version has it."""
    try:
        from webhook.judge.tailshare import judge_tail_share
    except ImportError:
        return None
    return judge_tail_share


def http_checks(config_name: str = "http") -> list[_Check]:
    """The checks the service runs for `config_name`, mirroring webhook.analysis.judge_metrics.

    Metric kinds the simulation has no data for (none in `http` today) are left out.
    """
    quiet = logging.getLogger("webhook.configs")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # other built-in configs may be mid-edit; only ours matters
    try:
        config = load_registry(None).get(config_name)
    finally:
        quiet.setLevel(level)
    if config is None:
        raise RuntimeError(f"built-in config {config_name!r} not found")
    checks: list[_Check] = []
    for spec in config.metrics:
        common = dict(direction=spec.direction, relative_tolerance=spec.tolerance.relative,
                      absolute_tolerance=spec.tolerance.absolute, min_total=spec.min_total,
                      critical=spec.critical)
        if isinstance(spec, RatioMetric):
            checks.append(_Check(spec.name, "error_ratio", None, spec.alpha,
                                 spec.good is not None,
                                 {**common, "weight": spec.weight, "step_seconds": STEP_SECONDS}))
        elif isinstance(spec, HistogramMetric):
            tail = getattr(spec, "tail", None)
            parts = len(spec.quantiles) + (1 if tail is not None else 0)
            decided = {"decided_by": f"{spec.name}_tail"} if tail is not None else {}
            for q in spec.quantiles:
                checks.append(_Check(f"{spec.name}_p{q * 100:g}", "latency", q, spec.alpha, False,
                                     {**common, "min_tail": spec.min_tail,
                                      "weight": spec.weight / parts, **decided}))
            if tail is not None:
                checks.append(_Check(f"{spec.name}_tail", "latency", None, spec.alpha, False, {
                    **common, "relative_tolerance": tail.tolerance.relative,
                    "absolute_tolerance": tail.tolerance.absolute, "weight": spec.weight / parts,
                    "bound": None if tail.bound == "auto" else float(tail.bound),
                    "max_share": tail.max_share, "step_seconds": STEP_SECONDS}, tail=True))
    return checks


def _histogram(cumulative: np.ndarray, polls: int) -> Histogram:
    """The window's histogram as the service builds it from per-step `_bucket` increments."""
    return Histogram.from_steps([(float(le), cumulative[:polls, j])
                                 for j, le in enumerate(BOUNDS)])


class CanaryJudge(Method):
    """canary-judge's http checks, judged at every poll on [analysis start, now].

    The gauge row uses the `series` judge when this version has one, with the schema's default
    settings (`series_defaults`), outside the combined verdict like the baselines' gauge rows.
    `once=True` judges only at the last poll: one fixed-horizon analysis of the whole rollout,
    the most power a single look at this alpha has (a reference, and a check that the fixed
    test is calibrated on the simulated data), not a way to poll.
    """

    def __init__(self, mode: Literal["fixed", "sequential"], alpha: float,
                 config_name: str = "http", once: bool = False) -> None:
        self.mode, self.alpha, self.once = mode, alpha, once
        kind = "once" if once else "seq" if mode == "sequential" else "fixed"
        self.key = f"cj_{kind}_{round(alpha * 100):02d}"
        self.label = f"canary-judge {mode} α={alpha:g}" + (", once at the end" if once else "")
        self.family = "cj-seq" if mode == "sequential" else "cj-fixed"
        self.checks = http_checks(config_name)
        self.tail_judge = _tail_judge()
        if self.tail_judge is None:
            self.checks = [c for c in self.checks if not c.tail]
        self.available = mode == "fixed" or sequential_supported()
        self.series = _series_judge()
        if self.series is not None and mode == "sequential" and \
                "mode" not in inspect.signature(self.series).parameters:
            self.series = None
        self.series_kwargs = series_defaults()

    def rows(self) -> list[str]:
        """The combined and per-metric rows, then one row per latency check (`key:latency_p99`,
        `key:latency_tail`): which check decides, and which never passes what it cannot show."""
        return super().rows() + [f"{self.key}:{c.name}" for c in self.checks
                                 if c.row == "latency"]

    def status(self) -> dict[str, RowStatus]:
        out: dict[str, RowStatus] = dict.fromkeys(self.rows(),
                                                  "ok" if self.available else "pending")
        if self.series is None or not self.available:
            out[f"{self.key}:gauge"] = "n/a" if self.available else "pending"
        return out

    def _mode_kwargs(self) -> dict[str, Any]:
        return {} if self.mode == "fixed" else {"mode": "sequential"}

    def judge(self, rollout: Rollout) -> dict[str, np.ndarray]:
        if not self.available:
            return {}
        c, s = rollout.canary, rollout.stable
        cum_c, cum_s = c.cumulative_buckets, s.cumulative_buckets
        per_check = [chk for chk in self.checks if chk.row == "latency"]
        out = {}
        if self.series is not None:
            out[f"{self.key}:gauge"] = self._judge_gauge(rollout)
        if rollout.gauge_only:
            return out
        rows = [self.key, f"{self.key}:error_ratio", f"{self.key}:latency",
                *(f"{self.key}:{chk.name}" for chk in per_check)]
        out.update({row: np.full(POLLS, INCONCLUSIVE, np.int8) for row in rows})
        failed: dict[str, CheckResult] = {}
        bucket_history: dict[str, Histogram] = {}
        if self.mode == "sequential":  # the stable's steps before the rollout, built once
            before = np.cumsum(s.history_buckets, axis=1)
            bucket_history["stable_history"] = Histogram.from_steps(
                [(float(le), before[:, j]) for j, le in enumerate(BOUNDS)])
        for k in range(POLLS if self.once else 1, POLLS + 1):
            results: list[CheckResult] = []
            hists: tuple[Histogram, Histogram] | None = None
            for chk in self.checks:
                if chk.name in failed:
                    results.append(failed[chk.name])
                    continue
                alpha = chk.alpha or self.alpha
                if chk.row == "latency" and hists is None:
                    hists = (_histogram(cum_c, k), _histogram(cum_s, k))
                if chk.tail:
                    assert self.tail_judge is not None and hists is not None
                    res = self.tail_judge(chk.name, hists[0], hists[1], alpha=alpha,
                                          **chk.kwargs, **self._mode_kwargs(), **bucket_history)
                elif chk.quantile is None:
                    num_c = c.requests[:k] - c.errors[:k] if chk.good else c.errors[:k]
                    num_s = s.requests[:k] - s.errors[:k] if chk.good else s.errors[:k]
                    history = {}
                    if self.mode == "sequential":  # the stable's steps before the rollout
                        bad_h = s.history_errors
                        history["stable_history"] = (
                            s.history_requests - bad_h if chk.good else bad_h, s.history_requests)
                    res = judge_ratio(chk.name, num_c, c.requests[:k], num_s, s.requests[:k],
                                      alpha=alpha, **chk.kwargs, **self._mode_kwargs(),
                                      **history)
                else:
                    assert hists is not None
                    res = judge_quantile(chk.name, hists[0], hists[1], chk.quantile, alpha=alpha,
                                         **chk.kwargs, **self._mode_kwargs(),
                                         **bucket_history)
                if res.verdict == "fail":
                    failed[chk.name] = res
                results.append(res)
            out[self.key][k - 1] = CODE[combine(results).verdict]
            for row in ("error_ratio", "latency"):
                part = [r for r, chk in zip(results, self.checks, strict=True) if chk.row == row]
                out[f"{self.key}:{row}"][k - 1] = CODE[combine(part).verdict]
            for r, chk in zip(results, self.checks, strict=True):
                if chk.row == "latency":
                    out[f"{self.key}:{chk.name}"][k - 1] = CODE[r.verdict]
            if len(failed) == len(self.checks):
                out = {row: v if row.endswith(":gauge") else _carry_fail(v, k)
                       for row, v in out.items()}
                break
        return out

    def _judge_gauge(self, rollout: Rollout) -> np.ndarray:
        """The gauge on its own GAUGE_STEP_SECONDS grid (poll k sees k × GAUGE_POINTS points);
        sequential mode also gets the stable's last HISTORY_STEPS points before the rollout,
        as the service does from its lookback."""
        assert self.series is not None
        codes = np.full(POLLS, INCONCLUSIVE, np.int8)
        extra: dict[str, Any] = {}
        if self.mode != "fixed":
            extra = {"mode": "sequential"}
            if "stable_history" in inspect.signature(self.series).parameters:
                extra["stable_history"] = rollout.stable.history_gauge[-HISTORY_STEPS:]
        for k in range(POLLS if self.once else 1, POLLS + 1):
            n = k * GAUGE_POINTS
            res = self.series("cpu", rollout.canary.gauge[:n], rollout.stable.gauge[:n],
                              alpha=self.alpha, **self.series_kwargs, **extra)
            codes[k - 1] = CODE[res.verdict]
            if res.verdict == "fail":
                return _carry_fail(codes, k)
        return codes


def _carry_fail(codes: np.ndarray, polls_done: int) -> np.ndarray:
    codes = codes.copy()
    codes[polls_done:] = FAIL
    return codes


KAYENTA_ERRORS = kayenta.KayentaMetric("error_ratio", "errors", direction="increase")
KAYENTA_P99 = kayenta.KayentaMetric("latency_p99", "latency", direction="increase")
KAYENTA_CPU = kayenta.KayentaMetric("cpu", "system", direction="increase")


class Kayenta(Method):
    key, label, family = "kayenta", "Kayenta NetflixACAJudge", "kayenta"
    configs: dict[str, list[kayenta.KayentaMetric]] = {
        "kayenta": [KAYENTA_ERRORS, KAYENTA_P99],
        "kayenta:error_ratio": [KAYENTA_ERRORS],
        "kayenta:latency": [KAYENTA_P99],
        "kayenta:gauge": [KAYENTA_CPU],
    }

    def judge(self, rollout: Rollout) -> dict[str, np.ndarray]:
        c, s = rollout.canary, rollout.stable
        series = {"error_ratio": (c.error_ratio, s.error_ratio),
                  "latency_p99": (c.quantile(0.99), s.quantile(0.99)),
                  "cpu": (c.gauge_per_step, s.gauge_per_step)}
        out = {row: np.empty(POLLS, np.int8) for row in self.configs}
        for k in range(1, POLLS + 1):
            judged = {m.name: (m, kayenta.classify(series[m.name][0][:k], series[m.name][1][:k],
                                                   m))
                      for m in (KAYENTA_ERRORS, KAYENTA_P99, KAYENTA_CPU)}
            for row, metrics in self.configs.items():
                summary = kayenta.score([judged[m.name] for m in metrics])
                out[row][k - 1] = CODE[kayenta.ARGO_KAYENTA[kayenta.verdict(summary)]]
        return out


class Thresholds(Method):
    key, label, family = "thresholds", "fixed thresholds (AnalysisTemplate)", "thresholds"
    MIN_SUCCESS, MAX_P95_S, MAX_P95_RATIO, MAX_CPU_RATIO = 0.95, 2.0, 1.2, 1.2

    def judge(self, rollout: Rollout) -> dict[str, np.ndarray]:
        c, s = rollout.canary, rollout.stable
        success = 1 - c.error_ratio
        p95_c, p95_s = c.quantile(0.95), s.quantile(0.95)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = p95_c / p95_s
            cpu_ratio = c.gauge_per_step / s.gauge_per_step

        def cond(ok: Callable[[float], bool], value: float) -> int:
            if math.isnan(value):
                return INCONCLUSIVE
            return PASS if ok(value) else FAIL

        out = {row: np.empty(POLLS, np.int8) for row in self.rows()}
        for k in range(POLLS):  # poll k+1 judges its own window: step k
            err = cond(lambda v: v >= self.MIN_SUCCESS, float(success[k]))
            lat = _worst([cond(lambda v: v <= self.MAX_P95_S, float(p95_c[k])),
                          cond(lambda v: v <= self.MAX_P95_RATIO, float(ratio[k]))])
            out[self.key][k] = _worst([err, lat])
            out[f"{self.key}:error_ratio"][k] = err
            out[f"{self.key}:latency"][k] = lat
            out[f"{self.key}:gauge"][k] = cond(lambda v: v <= self.MAX_CPU_RATIO,
                                               float(cpu_ratio[k]))
        return out


def build_methods(families: Sequence[str] = FAMILIES,
                  alphas: Sequence[float] = (0.05, 0.01)) -> list[Method]:
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    methods: list[Method] = []
    if "cj-seq" in families:
        methods += [CanaryJudge("sequential", a) for a in alphas]
    if "cj-fixed" in families:
        methods += [CanaryJudge("fixed", a) for a in alphas]
        methods.append(CanaryJudge("fixed", alphas[0], once=True))
    if "kayenta" in families:
        methods.append(Kayenta())
    if "thresholds" in families:
        methods.append(Thresholds())
    return methods
