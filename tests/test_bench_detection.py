"""bench.detection: a --quick run writes its results, and the issue's targets hold on a small
sample of the benchmark (the Kayenta baseline itself: tests/test_kayenta.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_runs import run_bench

# Benchmark runs: statistical simulations of whole rollouts.
pytestmark = pytest.mark.slow


def test_quick_run_writes_results(tmp_path: Path) -> None:
    proc = run_bench("-m", "bench.detection", "--quick", "--out", str(tmp_path))
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


def test_off_grid_scenarios_count_whole_requests_as_the_http_config_does() -> None:
    """The `*_scrape15` scenarios judge what the http config's queries return for targets
    scraped off the step grid: its exact per-step counts are whole requests and add up to the
    rollout's, but those after each counter's last scrape (at most the last step's; the
    stable's first step also counts the requests of its history after the last scrape before
    the rollout); the increase() it used to count with gave fractions that did not add up."""
    from bench.detection.simulate import scenarios, simulate

    scs = {sc.id: sc for sc in scenarios(1, 1, 1)}
    for rollout in range(3):
        on = simulate(scs["aa_canary20"], rollout)
        off = simulate(scs["aa_canary20_scrape15"], rollout)
        for got, planted, before in (
                (off.canary.requests, on.canary.requests, 0.0),
                (off.canary.errors, on.canary.errors, 0.0),
                (off.stable.requests, on.stable.requests, on.stable.history_requests[-1])):
            assert np.array_equal(got, np.round(got))
            assert -before <= planted.sum() - got.sum() <= planted[-1]
        assert not np.array_equal(off.canary.requests, on.canary.requests)  # spread otherwise
