"""bench/restarts.py runs end to end (real Prometheus, the served analysis) and its report is
well formed; on its tiny grid every crash loop fails the check and nothing healthy reads as a
restart, which the full run measures across restart periods, scrape phases and intervals,
and traffic."""

from __future__ import annotations

import json

from bench_runs import run_bench


def test_tiny_run_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "restarts.json"
    run = run_bench("bench/restarts.py", "--tiny", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert set(summary) == {"every_75s", "every_180s", "healthy"}
    for group, windows in summary.items():
        assert set(windows) == {"10m", "30m"}
        for part in windows.values():
            assert part["cases"] > 0 and part["inconclusive"] == 0
            if group == "healthy":
                assert part["seen"] == 0 and part["fail_share"] == 0
            else:
                assert 0 < part["seen"] <= part["true"] and part["fail_share"] == 1
    for case in report["cases"].values():
        assert {"every", "down", "phase", "rps", "scrape", "10m", "30m"} <= set(case)
