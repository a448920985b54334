"""bench/share.py runs and its report is well formed; on its tiny grid (50 requests/s, the
canary at 0.2 of them, 60 s steps) no healthy rollout is failed and every canary that stops
with its requests spread per request is, within 3 minutes; the full run measures the grid."""

from __future__ import annotations

import json

from bench_runs import run_bench

HEALTHY = {"steady", "weight_steps", "stable_doubles", "stable_scrape_gap"}
FAULTY = {"stops", "vanishes", "tenth", "half"}


def test_tiny_run_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "share.json"
    run = run_bench("bench/share.py", "--tiny", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["alpha"] == 0.05 and report["max_drop"] == 0.8 and report["recent"] == "2m"
    assert set(report["summary"]) == HEALTHY | FAULTY
    cells = report["cells"]
    assert {c["scenario"] for c in cells} == HEALTHY | FAULTY
    for cell in cells:
        for window in ("sequential", "fixed"):
            part = cell[window]
            assert 0 <= part["failed"] <= 1 and 0 <= part["poll_pass_share"] <= 1
            if cell["healthy"] or cell["scenario"] == "half":
                assert part["failed"] == 0, cell
            assert part["failed_before_fault"] == 0, cell
            if cell["scenario"] in ("stops", "vanishes") and cell["spread"] == "requests":
                assert part["failed"] == 1, cell
                assert part["minutes_to_fail_median"] <= 3, cell
