"""bench/latency.py in its tiny mode: it runs end to end (real Prometheus, gunicorn) and its
report has every figure next to its reference, well formed. Timings are not asserted: a
benchmark on a shared machine is not a test (the issue's targets are read off the report)."""

from __future__ import annotations

import json
import math

from bench_runs import ROOT, run_bench


def _number(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_tiny_run_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "latency.json"
    run = run_bench("bench/latency.py", "--tiny", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())

    # what the run ran on and how busy other work kept it: the ratios move with both
    machine = report["machine"]
    assert machine["cpus"] >= 1 and len(machine["load_avg"]) == 3
    assert 0 <= machine["busy_share_before_run"] <= 1
    assert 0 <= machine["steal_share_before_run"] <= machine["busy_share_before_run"]
    assert 0 <= machine["steal_share_over_run"] <= 1
    for mode in ("sequential_no_window", "fixed"):
        part = report["single"][mode]
        for side in ("judge", "perfect_client", "sequential_client"):
            assert part[side]["n"] == 5 and _number(part[side]["p50_ms"])
            assert part[side]["p50_ms"] <= part[side]["p99_ms"]
        assert part["queries"] == 10
        # queries on one grid go as one request: fewer than the references' ten
        assert 0 < part["judge_upstream_requests_per_analysis"] < 6
        cpu = part["cpu_ms_per_call"]  # each side's CPU per analysis, Prometheus' included
        for side in ("judge", "perfect_client"):
            assert all(_number(cpu[side][k]) for k in ("client", "judge_service", "prometheus"))
        assert cpu["judge"]["judge_service"] > 0  # 5 analyses: several clock ticks
        assert 9 <= part["judged_window_minutes"] <= 16  # the canary began ~10 minutes ago
        assert _number(part["ratio_to_perfect_client"]) and part["ratio_to_perfect_client"] > 0
        blocks = part["ratio_by_block"]  # the ratio in each fifth of the run
        assert len(blocks) == 5 and all(_number(b) and b > 0 for b in blocks)
    for part in report["concurrent"].values():
        for side in ("judge", "prometheus_direct"):
            assert _number(part[side]["rate_per_s"]) and part[side]["rate_per_s"] > 0
            assert part[side]["errors"] == 0
        assert _number(part["rate_ratio"]) and _number(part["judge_p99_over_p50"])
        assert part["prometheus_p99_over_p50"] >= 1  # the reference's own tail, beside ours
        assert 0 < part["judge_upstream_requests_per_analysis"] < part["direct_requests_per_set"]
        assert part["slices"] == 3  # the judge's and Prometheus' turns alternate
    soak = report["soak"]
    assert soak["errors"] == 0 and soak["rss_mb_first"] > 10 and _number(soak["rss_mb_max"])
    polls = report["polls"]
    for name in ("cached", "uncached", "whole_lookback_cached", "whole_lookback_uncached"):
        assert all(polls[name][f"poll_{i}"] > 0 for i in (1, 2, 3))
    for name in ("cached", "uncached"):  # the start query is one series, counted apart
        start = polls[name]["start_query"]
        assert 0 < start["poll_1"] < polls[name]["poll_1"]
        # later polls read the start off the window's own data: no start query
        assert start["poll_2"] == start["poll_3"] == 0
    # the behaviour the cache exists for: later polls read far less than the first
    assert polls["cached"]["poll_3"] * 5 < polls["cached"]["poll_1"]
    # a young rollout's poll reads its age and the stable's history, not the whole lookback
    assert polls["uncached"]["poll_1"] * 2 < polls["whole_lookback_uncached"]["poll_1"]
    flagger = report["flagger"]  # a new connection per poll, shared cache on and off
    for name in ("shared_cache", "per_worker_cache"):
        part = flagger[name]
        assert part["polls"] == flagger["rollouts"] * flagger["rounds"]
        assert _number(part["p50_ms"]) and _number(part["mean_ms"])
        assert part["upstream_requests_per_poll"] >= 1
        # every poll's answers hold the window's samples, read upstream or from a cache
        assert part["samples_upstream_per_poll"] > 0
        assert part["samples_upstream_per_poll"] + part["samples_cached_per_poll"] > 100
    union = report["union"]  # Prometheus alone on one poll's queries, three ways
    assert union["queries"] == 10 and union["steps"] >= 2
    for way in ("one_union", "six_at_once", "two_unions_at_once"):
        assert _number(union[way]["p50_ms"]) and union[way]["p50_ms"] > 0
        assert _number(union[way]["client_cpu_ms"])
    assert union["one_union"]["evaluation_ms"] > 0
    assert union["six_at_once"]["evaluation_ms_summed"] > 0
    assert union["empty_query_p50_ms"] > 0
    halves = report["halves"]  # the default split against one union, side by side
    for mode in ("sequential_no_window", "fixed"):
        p50 = halves[mode]["p50_ms"]
        assert set(p50) == {"halves", "one_union", "perfect_client"}
        assert all(_number(v) and v > 0 for v in p50.values())
        assert set(halves[mode]["ratio_to_perfect_client"]) == {"halves", "one_union"}
    judges = report["judges"]
    for name in ("ratio", "quantile"):
        assert set(judges[name]) == {"100", "200"}
        assert all(_number(v) for v in judges[name].values())
    # the README table is generated from the report
    assert "| one analysis, sequential, no window" in run.stdout
    table = run_bench("bench/latency.py", "--table", str(out), timeout=60)
    assert table.returncode == 0, table.stderr[-2000:]
    assert table.stdout.count("\n") >= 8 and "samples read per poll" in table.stdout
    assert "a new connection per poll (Flagger)" in table.stdout
    assert "Prometheus alone: one poll's 10 queries" in table.stdout
    assert "two halves at once (the default) against one union" in table.stdout


def test_a_partial_run_leaves_the_committed_report_alone():
    """`--only judges` (or --tiny) without --out used to overwrite bench/results/latency.json,
    the README table's source, with a report missing most of its parts."""
    committed = ROOT / "bench" / "results" / "latency.json"
    before = committed.read_bytes()
    run = run_bench("bench/latency.py", "--tiny", "--only", "judges")
    assert run.returncode == 0, run.stderr[-2000:]
    assert committed.read_bytes() == before
    assert "judges" in json.loads(run.stdout)  # the report is printed all the same
    assert "not written" in run.stderr and "--out" in run.stderr
