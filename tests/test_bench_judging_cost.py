"""bench/judging_cost.py runs end to end (real Prometheus, the app's request path) and its
report is well formed. Timings are not asserted: a benchmark on a shared machine is not a test."""

from __future__ import annotations

import json
import math

from bench_runs import run_bench


def test_short_run_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "judging.json"
    run = run_bench("bench/judging_cost.py", "--runs", "2", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["configs"]) == {"http", "trading", "healthcare"}
    for modes in report["configs"].values():
        assert set(modes) == {"sequential", "fixed"}
        for part in modes.values():
            assert part["checks"] > 0
            for key in ("judging_ms", "judging_ms_min", "analysis_cpu_ms"):
                assert isinstance(part[key], float) and math.isfinite(part[key])
            assert 0 <= part["judging_ms_min"] <= part["judging_ms"] <= part["analysis_cpu_ms"]
