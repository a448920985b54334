"""bench/report_cost.py runs end to end as the README gives it (`python bench/report_cost.py`:
real Prometheus, gunicorn, the page against the JSON answer) and its report is well formed.
Timings are not asserted: a benchmark on a shared machine is not a test."""

from __future__ import annotations

import json
import math

from bench_runs import run_bench


def test_the_documented_command_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "report_cost.json"
    run = run_bench("bench/report_cost.py", "--runs", "2", "--out", str(out))
    # 1 is the bench's own verdict (the page over 2x the JSON answer), not a crash
    assert run.returncode in (0, 1) and "Traceback" not in run.stderr, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["runs"] == 2
    for label in ("pass", "fail"):
        part = report[label]
        assert 0 < part["json"]["bytes"] < part["html"]["bytes"]
        for fmt in ("json", "html"):
            assert part[fmt]["n"] == 2 and math.isfinite(part[fmt]["p50_ms"])
        assert part["html_over_json_p50"] > 0
    assert report["in_process"]["html"]["n"] == 2
