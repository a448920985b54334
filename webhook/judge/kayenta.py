"""Kayenta's NetflixACAJudge, reimplemented from its public description (spinnaker/kayenta).

Used by the `series` kind's `test: kayenta` mode (teams migrating from Kayenta) and as the
baseline of bench/detection. No Kayenta code was used. Per metric, the inputs are the
per-step points of a Prometheus range query for canary (experiment) and control; the judge:

1. applies the NaN strategy (remove, default; or replace with 0) and optionally removes
   outliers outside the IQR fences [min(P1, Q1 − 3·IQR), max(P99, Q3 + 3·IQR)];
2. either side empty → Nodata (NodataFailMetric when mustHaveData and not critical);
3. identical sorted arrays, or one distinct value overall → Pass;
4. otherwise the two-sided 98 % Hodges–Lehmann confidence interval for the shift
   canary − control from the Mann–Whitney statistic with the normal approximation, tie
   correction of the variance and continuity correction (what R's
   `wilcox.test(x, y, conf.int=TRUE, conf.level=0.98, exact=FALSE, correct=TRUE)` computes;
   Hollander & Wolfe, "Nonparametric Statistical Methods", §4.3); tolerance band
   b = 0.25·|HL|; High when the direction allows it, CI lower > b and the effect size
   (meanRatio = mean(canary)/mean(control), default measure) is NaN or ≥ allowedIncrease;
   Low mirrors it; else Pass. Critical metrics fail the canary only if also beyond
   criticalIncrease/criticalDecrease.

Scoring: per group 100·Pass/(Pass+High+Low+NodataFail), Nodata and Error left out, a group
with nothing scorable = 100; any critical failure or ≥ 50 % Nodata → 0; summary = Σ group score
× weight/100 (equal weights by default). Verdict: ≥ pass (95) Pass, ≥ marginal (75) Marginal,
else Fail; Argo Rollouts' kayenta provider maps them to Successful / Inconclusive / Failed.

How the interval is computed here. The Mann–Whitney statistic of (x − d) against y,
centred: S(d) = #{x_i − y_j > d} + ½·#{x_i − y_j = d} − n_x·n_y/2, is a non-increasing step
function of d that only jumps at the pairwise differences D_ij = x_i − y_j. With the continuity
correction Z(d) = (S − ½·sign S)/σ(d), and σ² = n_x·n_y/12 · (N + 1 − Σ(t³ − t)/(N(N − 1))) over
the tie groups t of the pooled sample (N = n_x + n_y). Each end of the interval is the root of
Z(d) = ±z_{0.99}, searched within [min D, max D] like R's `uniroot`, and returned as that bound
when the root lies outside. The root of a step function is the jump where Z first falls to the
target, so it is found exactly among the sorted D_ij instead of by numeric root finding (R
returns a point within `uniroot`'s 1e-4 tolerance of the same jump). The point estimate is the
Hodges–Lehmann estimator, the median of the D_ij. Where the variance is 0 (each side constant,
the two constants different), R stops with "cannot compute confidence interval when all
observations are tied"; that metric is classified Error (left out of the score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Classification = Literal["Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"]
Direction = Literal["increase", "decrease", "either"]
KayentaVerdict = Literal["Pass", "Marginal", "Fail"]

CONFIDENCE = 0.98
EFFECT_BAND = 0.25  # b = 0.25·|HL|
PASS_SCORE = 95.0
MARGINAL_SCORE = 75.0
ARGO_KAYENTA = {"Pass": "pass", "Marginal": "inconclusive", "Fail": "fail"}
"""Argo Rollouts' kayenta provider: Successful / Inconclusive / Failed, as our verdicts."""


@dataclass(frozen=True)
class KayentaMetric:
    """One metric of a canary config, with Kayenta's defaults (effect size: meanRatio)."""

    name: str
    group: str
    direction: Direction = "either"
    nan_strategy: Literal["remove", "replace"] = "remove"
    remove_outliers: bool = False
    critical: bool = False
    must_have_data: bool = False
    allowed_increase: float = 1.0
    allowed_decrease: float = 1.0
    critical_increase: float = 1.0
    critical_decrease: float = 1.0


@dataclass(frozen=True)
class MetricJudgement:
    classification: Classification
    critical_failure: bool = False
    estimate: float = math.nan  # Hodges–Lehmann shift canary − control
    interval: tuple[float, float] = (math.nan, math.nan)
    mean_ratio: float = math.nan
    reason: str = ""


def _tie_term(counts: np.ndarray) -> float:
    return float(np.sum(counts.astype(float) ** 3 - counts))


def hodges_lehmann_interval(x: np.ndarray, y: np.ndarray, confidence: float = CONFIDENCE
                            ) -> tuple[float, float, float] | None:
    """(lower, upper, estimate) for the shift x − y, or None where the variance is 0.

    Normal approximation with tie and continuity correction, as in the module docstring.
    """
    x = np.sort(np.asarray(x, dtype=float))
    y = np.sort(np.asarray(y, dtype=float))
    nx, ny = x.size, y.size
    n = nx + ny
    pairs = nx * ny
    ux, cx = np.unique(x, return_counts=True)
    uy, cy = np.unique(y, return_counts=True)
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    udiffs, dcounts = np.unique(diffs, return_counts=True)
    base_ties = _tie_term(cx) + _tie_term(cy)
    unique_pair_diffs = ux[:, None] - uy[None, :]  # same float ops as `diffs`: equality exact

    def sigma(ties: float) -> float:
        return math.sqrt(max(nx * ny / 12.0 * ((n + 1) - ties / (n * (n - 1))), 0.0))

    def z_at(d: float) -> float | None:
        """Z at a point d, counting x − d tied with y (their groups merge)."""
        greater = float(np.count_nonzero(diffs > d))
        equal = float(np.count_nonzero(diffs == d))
        s = greater + 0.5 * equal - pairs / 2
        ties = base_ties
        for i, j in zip(*np.nonzero(unique_pair_diffs == d), strict=True):
            a, b = float(cx[i]), float(cy[j])
            ties += ((a + b) ** 3 - (a + b)) - (a**3 - a) - (b**3 - b)
        sd = sigma(ties)
        if sd <= 0:
            return None
        return (s - 0.5 * math.copysign(1.0, s) * (s != 0)) / sd

    sd0 = sigma(base_ties)  # > 0 for any n ≥ 2: within-sample ties alone never exhaust it
    s_after = pairs / 2 - np.cumsum(dcounts)  # S on the open interval right of each jump
    z_after = (s_after - 0.5 * np.sign(s_after)) / sd0
    lowest, highest = float(udiffs[0]), float(udiffs[-1])
    z_low, z_high = z_at(lowest), z_at(highest)
    if z_low is None or z_high is None:
        return None

    def root(target: float) -> float:
        if z_low - target <= 0:
            return lowest
        if z_high - target >= 0:
            return highest
        return float(udiffs[int(np.argmax(z_after <= target))])

    zq = float(stats.norm.isf((1 - confidence) / 2))
    return root(zq), root(-zq), float(np.median(diffs))


def _clean(values: np.ndarray, metric: KayentaMetric) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    v = np.nan_to_num(v, nan=0.0) if metric.nan_strategy == "replace" else v[~np.isnan(v)]
    if metric.remove_outliers and v.size:
        q1, q3 = np.percentile(v, [25, 75])
        p1, p99 = np.percentile(v, [1, 99])
        iqr = q3 - q1
        low, high = min(p1, q1 - 3 * iqr), max(p99, q3 + 3 * iqr)
        v = v[(v >= low) & (v <= high)]
    return v


def classify(experiment: np.ndarray, control: np.ndarray, metric: KayentaMetric
             ) -> MetricJudgement:
    """Classify one metric: Pass, High, Low, Nodata, NodataFailMetric or Error."""
    x, y = _clean(experiment, metric), _clean(control, metric)
    if x.size == 0 or y.size == 0:
        nodata: Classification = ("NodataFailMetric" if metric.must_have_data
                                  and not metric.critical else "Nodata")
        return MetricJudgement(nodata, reason="no data on "
                               + ("the canary" if x.size == 0 else "the control"))
    if (x.size == y.size and np.array_equal(np.sort(x), np.sort(y))) or \
            np.unique(np.concatenate([x, y])).size == 1:
        return MetricJudgement("Pass", estimate=0.0, interval=(0.0, 0.0), mean_ratio=1.0,
                               reason="identical values")
    ci = hodges_lehmann_interval(x, y)
    mx, my = float(np.mean(x)), float(np.mean(y))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ratio = float(np.float64(mx) / np.float64(my))
    if ci is None:
        return MetricJudgement("Error", mean_ratio=mean_ratio,
                               reason="all observations tied at the interval's ends")
    low, high, hl = ci
    band = EFFECT_BAND * abs(hl)
    up = (metric.direction in ("increase", "either") and low > band
          and (math.isnan(mean_ratio) or mean_ratio >= metric.allowed_increase))
    down = (metric.direction in ("decrease", "either") and high < -band
            and (math.isnan(mean_ratio) or mean_ratio <= metric.allowed_decrease))
    critical = metric.critical and (
        (up and (math.isnan(mean_ratio) or mean_ratio >= metric.critical_increase))
        or (down and (math.isnan(mean_ratio) or mean_ratio <= metric.critical_decrease)))
    label: Classification = "High" if up else "Low" if down else "Pass"
    return MetricJudgement(label, critical_failure=critical, estimate=hl, interval=(low, high),
                           mean_ratio=mean_ratio, reason=f"shift {hl:.4g} in [{low:.4g}, "
                           f"{high:.4g}], meanRatio {mean_ratio:.4g}")


def score(judged: Sequence[tuple[KayentaMetric, MetricJudgement]],
          group_weights: Mapping[str, float] | None = None) -> float:
    """Summary score 0–100 of one canary run."""
    if not judged:
        return 100.0
    if any(j.critical_failure for _, j in judged):
        return 0.0
    nodata = sum(j.classification in ("Nodata", "NodataFailMetric") for _, j in judged)
    if nodata / len(judged) >= 0.5:
        return 0.0
    groups = list(dict.fromkeys(m.group for m, _ in judged))
    weights = dict(group_weights) if group_weights else {g: 100.0 / len(groups) for g in groups}
    total = 0.0
    for g in groups:
        labels = [j.classification for m, j in judged if m.group == g]
        scorable = [c for c in labels if c in ("Pass", "High", "Low", "NodataFailMetric")]
        group_score = 100.0 * scorable.count("Pass") / len(scorable) if scorable else 100.0
        total += group_score * weights.get(g, 0.0) / 100.0
    return total


def verdict(summary: float, pass_score: float = PASS_SCORE,
            marginal_score: float = MARGINAL_SCORE) -> KayentaVerdict:
    if summary >= pass_score:
        return "Pass"
    return "Marginal" if summary >= marginal_score else "Fail"


def judge(metrics: Sequence[KayentaMetric], experiment: Mapping[str, np.ndarray],
          control: Mapping[str, np.ndarray]) -> tuple[KayentaVerdict, float,
                                                      list[MetricJudgement]]:
    """Judge a whole canary config: (verdict, score, per-metric judgements)."""
    judged = [(m, classify(experiment[m.name], control[m.name], m)) for m in metrics]
    s = score(judged)
    return verdict(s), s, [j for _, j in judged]
