"""bench.detection: the Kayenta baseline on inputs with known answers, and a --quick run.

Known answers follow the description of Kayenta's NetflixACAJudge (webhook/judge/kayenta.py):
identical inputs pass; a clear shift on independent points is High; new errors against an all-zero
control pass (most points tie at 0: the documented flaw).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

from webhook.judge import kayenta

ROOT = Path(__file__).resolve().parents[1]

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


def test_quick_run_writes_results(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.detection", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc) == {"meta", "scenarios", "methods", "results", "targets"}
    assert doc["meta"]["quick"] is True
    ids = [sc["id"] for sc in doc["scenarios"]]
    assert {"aa_20rps", "err_x2_20rps", "p99_+25pct_20rps", "gauge_+20pct_20rps",
            "aa_1rps"} <= set(ids)
    rows = {row for m in doc["methods"] for row in m["rows"]}
    assert {"kayenta", "thresholds", "cj_fixed_05", "cj_seq_05", "kayenta:gauge"} <= rows
    for sid in ids:
        for row in rows:
            cell = doc["results"][sid][row]
            if "status" in cell:
                assert cell["status"] in ("pending", "n/a")
                continue
            assert cell["n"] == 2
            assert 0.0 <= cell["fail_rate"] <= 1.0
            assert len(cell["fail_by_poll"]) == doc["meta"]["polls"]
    gauge = doc["results"]["gauge_+20pct_20rps"]["cj_seq_05:gauge"]
    try:  # canary-judge's gauge row needs its `series` judge; without one it reads "n/a"
        import webhook.judge.series  # noqa: F401
    except ImportError:
        assert gauge == {"status": "n/a"}
    else:
        assert "fail_rate" in gauge
    assert all({"target", "measured", "met"} <= set(t) for t in doc["targets"])
    assert "| method |" in proc.stdout


def test_issue_targets_hold_on_a_small_sample_of_the_benchmark() -> None:
    """The issue's targets at canary 20 req/s, on 40 of the benchmark's own rollouts each, so a
    statistics change that breaks them fails CI and not only the next bench run (which
    measures them on more): p99 +25 % against the http config's 20 % tolerance detected in
    ≥ 85 % (measured 97 %, by the tail share over 500 ms), ×5 errors at the first or second
    poll in all, no A/A failure; 3 % of requests ×4 failed within the 20 polls (10 minutes)
    in ≥ 90 % (measured 100 %); and with both p99 inside the 0.25–0.5 s bucket (median
    80 ms), latency +25 % never passes p95 or p99 at any poll."""
    from bench.detection.methods import FAIL, PASS, CanaryJudge
    from bench.detection.simulate import scenarios, simulate

    judge = CanaryJudge("sequential", 0.05)
    by_id = {sc.id: sc for sc in scenarios(40, 40, 40, 40)}
    codes: dict[str, list[dict[str, np.ndarray]]] = {}

    def rows(sid: str) -> list[dict[str, np.ndarray]]:
        if sid not in codes:
            codes[sid] = [judge.judge(simulate(by_id[sid], i)) for i in range(40)]
        return codes[sid]

    def first_fail(sid: str, row: str) -> list[int | None]:
        out = []
        for r in rows(sid):
            hit = np.nonzero(r[f"{judge.key}:{row}"] == FAIL)[0]
            out.append(int(hit[0]) + 1 if hit.size else None)
        return out

    latency = first_fail("p99_+25pct_canary20", "latency")
    assert sum(p is not None for p in latency) >= 34
    assert all(p is not None and p <= 2 for p in first_fail("err_x5_canary20", "error_ratio"))
    assert not any(first_fail("aa_canary20", "error_ratio"))
    assert not any(first_fail("aa_canary20", "latency"))
    tail = first_fail("tail_3pct_x4_canary20_m80", "latency")
    assert sum(p is not None for p in tail) >= 36
    for r in rows("p99_+25pct_canary20_m80"):
        for q in ("latency_p95", "latency_p99"):
            assert not (r[f"{judge.key}:{q}"] == PASS).any()
