"""bench/judge_cpu.py runs end to end (real Prometheus, the analysis' own judging input) and
its report is well formed. Timings are not asserted: a benchmark on a shared machine is not a
test."""

from __future__ import annotations

import json
import math

from bench_runs import run_bench


def test_short_run_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "judge_cpu.json"
    run = run_bench("bench/judge_cpu.py", "--runs", "3", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    cases = report["cases"]
    assert set(cases) == {"sequential_healthy", "fixed_healthy", "sequential_errors3x",
                          "fixed_slow"}
    for name, case in cases.items():
        assert case["mode"] == name.split("_")[0]
        # the short window a rollout's polls judge: ~10 steps, and the stable's history
        # before it in sequential mode
        assert 8 <= case["judged_steps"] <= 12
        assert case["history_steps"] == (60 if case["mode"] == "sequential" else 0)
        assert case["checks"] == 7
        for key in ("judge_metrics_ms", "judge_metrics_ms_min"):
            assert isinstance(case[key], float) and math.isfinite(case[key])
        assert 0 <= case["judge_metrics_ms_min"] <= case["judge_metrics_ms"]
    # the planted canaries judged as they are: a healthy one never fails, a bad one does
    assert "fail" not in cases["sequential_healthy"]["verdicts"]
    assert "fail" not in cases["fixed_healthy"]["verdicts"]
    assert "fail" in cases["sequential_errors3x"]["verdicts"]
    assert "fail" in cases["fixed_slow"]["verdicts"]
