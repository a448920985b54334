"""The judges under test, each giving one verdict per poll of a simulated rollout.

Every method returns, per row, an int8 array of POLLS verdict codes (PASS, INCONCLUSIVE, FAIL).
A row is either the method's combined verdict (row id = method key) or one metric's
(`key:error_ratio`, `key:latency`, `key:gauge`), so the report shows which check detects.
Once a check has failed, the controller aborts the rollout: later polls do not matter, and a
failed check is not re-judged (its fail is carried forward).

- canary-judge (`cj_seq_*`, `cj_fixed_*`): the service's own metric kinds (`webhook.kinds`,
  called through `judge_spec` as the analysis calls them) on the `http` config's metrics
  (loaded from webhook/configs/http.yaml like the service does), on the series the service's
  queries would return (`rollout_data`), combined by `webhook.judge.combine`. Each poll judges
  all steps since the analysis start; sequential mode also gets the stable's steps before the
  rollout, as the service does from its sequential lookback. The gauge row judges a `series`
  metric at the schema's defaults (`gauge_spec`, outside the combined verdict as the http
  config has no CPU metric).
- Kayenta (`kayenta`): webhook.judge.kayenta on the per-step points a range query gives:
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
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.detection.simulate import (
    BOUNDS,
    GAUGE_POINTS,
    GAUGE_STEP_SECONDS,
    GAUGE_TOLERANCE,
    HISTORY_STEPS,
    POLLS,
    STEP_SECONDS,
    Rollout,
)
from webhook.configs import MetricSpec, SeriesMetric, load_registry
from webhook.judge import CheckResult, combine, judge_quantile, judge_ratio, kayenta
from webhook.kinds import ArrayData, KindContext, judge_spec
from webhook.sources.base import Series

PASS, INCONCLUSIVE, FAIL = 0, 1, 2
CODE = {"pass": PASS, "inconclusive": INCONCLUSIVE, "fail": FAIL}
METRICS = ("error_ratio", "latency", "gauge")
FAMILIES = ("cj-seq", "cj-fixed", "kayenta", "thresholds")
RowStatus = Literal["ok", "pending", "n/a"]


def gauge_spec() -> SeriesMetric:
    """The CPU gauge as a `series` metric at the config schema's defaults (the http config has
    no CPU metric: direction increase, minimum points), with a tolerance of GAUGE_TOLERANCE of
    the level so that a healthy gauge can pass; judged on GAUGE_STEP_SECONDS points."""
    return SeriesMetric(name="cpu", kind="series", query="x{ {{selector}} }",
                        tolerance={"relative": GAUGE_TOLERANCE})


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


# The simulation has data for these kinds only; the row each reports in.
ROWS = {"ratio": "error_ratio", "histogram": "latency"}


def http_specs(config_name: str = "http") -> list[MetricSpec]:
    """The metrics the service judges for `config_name` (loaded like the service loads them),
    of the kinds the simulation has data for (all of `http`'s today)."""
    quiet = logging.getLogger("webhook.configs")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # other built-in configs may be mid-edit; only ours matters
    try:
        config = load_registry(None).get(config_name)
    finally:
        quiet.setLevel(level)
    if config is None:
        raise RuntimeError(f"built-in config {config_name!r} not found")
    return [spec for spec in config.metrics if spec.kind in ROWS]


def _one(values: np.ndarray, le: float | None = None) -> tuple[Series, ...]:
    return (Series({} if le is None else {"le": repr(le)}, values),)


def rollout_data(rollout: Rollout, polls: int, history: bool) -> tuple[ArrayData, int]:
    """The first `polls` steps of a rollout as the service's queries would return them, after
    the stable's steps before the rollout when `history` (sequential mode fetches them); and
    the index of the analysis start."""
    c, s = rollout.canary, rollout.stable
    h = s.history_requests.size if history else 0
    pad = np.full(h, np.nan)  # the canary had no series before the rollout

    def stable(before: np.ndarray, during: np.ndarray) -> np.ndarray:
        return np.concatenate([before[:h], during[:polls]])

    cum_c, cum_s = c.cumulative_buckets, s.cumulative_buckets
    cum_h = np.cumsum(s.history_buckets, axis=1)
    by_role: dict[tuple[str, str], tuple[Series, ...]] = {
        ("canary", "bad"): _one(np.concatenate([pad, c.errors[:polls]])),
        ("canary", "total"): _one(np.concatenate([pad, c.requests[:polls]])),
        ("stable", "bad"): _one(stable(s.history_errors, s.errors)),
        ("stable", "total"): _one(stable(s.history_requests, s.requests)),
        ("canary", "buckets"): tuple(
            _one(np.concatenate([pad, cum_c[:polls, j]]), float(le))[0]
            for j, le in enumerate(BOUNDS)),
        ("stable", "buckets"): tuple(
            _one(stable(cum_h[:, j], cum_s[:, j]), float(le))[0] for j, le in enumerate(BOUNDS)),
    }
    return ArrayData(by_role), h


@dataclass(frozen=True)
class _Good:
    """A ratio's `good` numerator (requests - errors) over the same data."""

    data: ArrayData

    def series(self, side: str, role: str) -> Sequence[Series]:
        if role != "numerator":
            return self.data.series(side, role)
        (total,), (bad,) = self.data.series(side, "total"), self.data.series(side, "bad")
        return (Series({}, total.values - bad.values),)


@dataclass(frozen=True)
class _Bad:
    data: ArrayData

    def series(self, side: str, role: str) -> Sequence[Series]:
        return self.data.series(side, "bad" if role == "numerator" else role)


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
        self.specs = http_specs(config_name)
        self.gauge = gauge_spec()

        # one row per latency check (`key:latency_p99`, `key:latency_tail`): which check
        # decides, and which never passes what it cannot show
        self.latency_checks = [c.name for spec in self.specs if ROWS[spec.kind] == "latency"
                               for c in judge_spec(spec, ArrayData({}), self._context(0, 0))]

    def rows(self) -> list[str]:
        return super().rows() + [f"{self.key}:{name}" for name in self.latency_checks]

    def _context(self, data_points: int, first: int,
                 step: float = STEP_SECONDS) -> KindContext:
        return KindContext(alpha=self.alpha, mode=self.mode, step=step, points=data_points,
                           first=first)

    def judge(self, rollout: Rollout) -> dict[str, np.ndarray]:
        """Every poll judged as the service judges it: the same kinds (`webhook.kinds`) on the
        data its queries would return."""
        out = {f"{self.key}:gauge": self._judge_gauge(rollout)}
        if rollout.gauge_only:
            return out
        rows = [self.key, f"{self.key}:error_ratio", f"{self.key}:latency",
                *(f"{self.key}:{name}" for name in self.latency_checks)]
        out.update({row: np.full(POLLS, INCONCLUSIVE, np.int8) for row in rows})
        failed: dict[str, CheckResult] = {}
        names: dict[str, list[str]] = {}  # check names per metric
        history = self.mode == "sequential"
        for k in range(POLLS if self.once else 1, POLLS + 1):
            data, first = rollout_data(rollout, k, history)
            ctx = self._context(first + k, first)
            results: list[CheckResult] = []
            rows: list[str] = []
            for spec in self.specs:
                seen = names.get(spec.name)
                if seen and all(n in failed for n in seen):  # a failed check is not re-judged
                    judged = [failed[n] for n in seen]
                else:
                    numerator = _Good(data) if getattr(spec, "good", None) else _Bad(data)
                    judged = judge_spec(spec, numerator, ctx)
                    names[spec.name] = [c.name for c in judged]
                for res in judged:
                    res = failed.get(res.name, res)  # a failed check is not re-judged
                    if res.verdict == "fail":
                        failed[res.name] = res
                    results.append(res)
                    rows.append(ROWS[spec.kind])
            out[self.key][k - 1] = CODE[combine(results).verdict]
            for row in ("error_ratio", "latency"):
                part = [r for r, r_row in zip(results, rows, strict=True) if r_row == row]
                out[f"{self.key}:{row}"][k - 1] = CODE[combine(part).verdict]
            for res, row in zip(results, rows, strict=True):
                if row == "latency":
                    out[f"{self.key}:{res.name}"][k - 1] = CODE[res.verdict]
            if len(failed) == len(results):
                out = {row: v if row.endswith(":gauge") else _carry_fail(v, k)
                       for row, v in out.items()}
                break
        return out

    def _judge_gauge(self, rollout: Rollout) -> np.ndarray:
        """The gauge on its own GAUGE_STEP_SECONDS grid (poll k sees k × GAUGE_POINTS points);
        sequential mode also gets the stable's last HISTORY_STEPS points before the rollout,
        as the service does from its lookback."""
        codes = np.full(POLLS, INCONCLUSIVE, np.int8)
        c, s = rollout.canary, rollout.stable
        before = s.history_gauge[-HISTORY_STEPS:] if self.mode == "sequential" else \
            s.history_gauge[:0]
        h = before.size
        for k in range(POLLS if self.once else 1, POLLS + 1):
            n = k * GAUGE_POINTS
            data = ArrayData({
                ("canary", "values"): _one(np.concatenate([np.full(h, np.nan), c.gauge[:n]])),
                ("stable", "values"): _one(np.concatenate([before, s.gauge[:n]]))})
            (res,) = judge_spec(self.gauge, data, self._context(h + n, h, GAUGE_STEP_SECONDS))
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
