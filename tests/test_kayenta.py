"""The Kayenta baseline (webhook/judge/kayenta.py) on inputs with known answers.

Known answers follow the description of Kayenta's NetflixACAJudge in webhook/judge/kayenta.py:
identical inputs pass; a clear shift on independent points is High; new errors against an all-zero
control pass (most points tie at 0: the documented flaw).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from webhook.judge import kayenta

ERRORS = kayenta.KayentaMetric("error_ratio", "errors", direction="increase")
LATENCY = kayenta.KayentaMetric("latency_p99", "latency", direction="increase")


def test_identical_arrays_pass() -> None:
    x = np.random.default_rng(1).lognormal(-1.0, 0.3, size=40)
    verdict, score, [judged] = kayenta.judge([LATENCY], {"latency_p99": x},
                                             {"latency_p99": x[::-1].copy()})
    assert judged.classification == "Pass"
    assert (verdict, score) == ("Pass", 100.0)


def test_clear_increase_on_independent_points_is_high() -> None:
    rng = np.random.default_rng(2)
    control = rng.normal(0.3, 0.03, size=100)
    canary = 1.5 * rng.normal(0.3, 0.03, size=100)  # +50 %, independent draws
    judged = kayenta.classify(canary, control, LATENCY)
    assert judged.classification == "High"
    low, high = judged.interval
    assert 0.12 < low < judged.estimate < high < 0.18
    assert kayenta.judge([LATENCY], {"latency_p99": canary}, {"latency_p99": control})[0] == "Fail"
    # The same shift downwards is not High for direction "increase".
    assert kayenta.classify(control, canary, LATENCY).classification == "Pass"


def test_new_errors_against_all_zero_control_pass() -> None:
    control = np.zeros(20)
    canary = np.zeros(20)
    canary[:12] = 0.05  # errors in 12 of 20 steps, none ever on the control
    judged = kayenta.classify(canary, control, ERRORS)
    assert judged.classification == "Pass"
    assert judged.estimate == pytest.approx(0.05)  # the shift is seen, yet the CI touches 0
    assert judged.interval[0] == 0.0


def test_nan_removed_and_nodata_scoring() -> None:
    nan = np.full(3, np.nan)
    judged = kayenta.classify(nan, np.ones(3), ERRORS)
    assert judged.classification == "Nodata"
    assert kayenta.classify(np.array([np.nan, 1.0]), np.array([1.0, np.nan]),
                            ERRORS).classification == "Pass"
    # One of two metrics without data: >= 50 % Nodata scores 0 (Argo: Failed).
    verdict, score, _ = kayenta.judge([ERRORS, LATENCY], {"error_ratio": nan,
                                                          "latency_p99": np.ones(3)},
                                      {"error_ratio": np.ones(3), "latency_p99": np.ones(3)})
    assert (verdict, score) == ("Fail", 0.0)
    # One High of two equally weighted groups: 50, below marginal.
    high = kayenta.MetricJudgement("High")
    passed = kayenta.MetricJudgement("Pass")
    assert kayenta.score([(ERRORS, high), (LATENCY, passed)]) == 50.0
    assert kayenta.verdict(80.0) == "Marginal"
    assert kayenta.ARGO_KAYENTA["Marginal"] == "inconclusive"


def _rank_based_interval(x: np.ndarray, y: np.ndarray, conf: float = 0.98
                         ) -> tuple[float, float]:
    """The textbook procedure, literally: ranks of (x - d, y), tie- and continuity-corrected
    normal statistic, roots in d by bisection within [min D, max D]."""
    nx, ny = x.size, y.size
    lo, hi = x.min() - y.max(), x.max() - y.min()

    def excess(d: float, zq: float) -> float:
        pooled = np.concatenate([x - d, y])
        ranks = stats.rankdata(pooled)
        ties = np.unique(pooled, return_counts=True)[1]
        w = ranks[:nx].sum() - nx * (nx + 1) / 2 - nx * ny / 2
        sd = math.sqrt(nx * ny / 12 * ((nx + ny + 1) - np.sum(ties**3 - ties)
                                       / ((nx + ny) * (nx + ny - 1))))
        return (w - 0.5 * np.sign(w)) / sd - zq

    def root(zq: float) -> float:
        if excess(lo, zq) <= 0:
            return lo
        if excess(hi, zq) >= 0:
            return hi
        return optimize.brentq(excess, lo, hi, args=(zq,), xtol=1e-13)

    z = stats.norm.isf((1 - conf) / 2)
    return root(z), root(-z)


@pytest.mark.slow
def test_interval_matches_rank_based_root_finding() -> None:
    rng = np.random.default_rng(3)
    for i in range(60):
        nx, ny = rng.integers(2, 30, size=2)
        if i % 2:  # many ties, like per-step error ratios
            x, y = rng.poisson(1.0, nx) / 30, rng.poisson(1.3, ny) / 30
        else:
            x, y = rng.normal(0.2, 1, nx), rng.normal(0, 1, ny)
        if np.unique(x).size == 1 and np.unique(y).size == 1:
            continue
        got = kayenta.hodges_lehmann_interval(x, y)
        assert got is not None
        want = _rank_based_interval(x, y)
        assert got[0] == pytest.approx(want[0], abs=1e-9)
        assert got[1] == pytest.approx(want[1], abs=1e-9)
