"""bench/saturation.py runs and its report is well formed; on its tiny grid (5 and 50 requests/s
per pod, background 0.2 of a stable pod's CPU, a 1-pod canary whose own noise dominates) no
healthy canary fails above alpha and most canaries at twice the CPU per request fail at 50
requests/s; the full run measures the grid."""

from __future__ import annotations

import json

from bench import saturation

# (regression, rps, load) of the tiny grid; the other parameters are fixed there
TINY = {(1.0, 5.0, 1.0), (1.0, 5.0, 0.7), (1.0, 50.0, 1.0), (1.0, 50.0, 0.7),
        (2.0, 5.0, 1.0), (2.0, 50.0, 1.0)}
POLLS = saturation.MINUTES - saturation.FIRST_POLL + 1  # per rollout never failed


def test_tiny_run_writes_a_well_formed_report(tmp_path, capsys):
    out = tmp_path / "saturation.json"
    assert saturation.main(["--tiny", "--out", str(out)]) == 0
    assert "healthy within tolerance" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["command"] == f"python bench/saturation.py --tiny --out {out}"
    assert report["settings"] == {"direction": "increase", "relative_tolerance": 0.5,
                                  "absolute_tolerance": 0.0, "alpha": 0.05, "min_points": 5,
                                  "mode": "sequential"}
    cells = report["cells"]
    assert len(cells) == len(TINY)
    assert {(c["regression"], c["rps"], c["load"]) for c in cells} == TINY
    rollouts = report["rollouts"]
    for c in cells:
        assert c["rollouts"] == rollouts > 0
        assert (c["background"], c["warmup"], c["node"], c["canary_pods"], c["burst"]) == (
            0.2, "none", 1.0, 1, "poisson")
        assert c["healthy"] == (c["regression"] == 1.0)
        failed = c["failed_rollouts"]
        assert 0 <= failed <= rollouts and c["failed"] == round(failed / rollouts, 4)
        # a rollout failed at minute m made m - 2 polls, one never failed all of them; the
        # polls at minutes 3 and 4 have fewer than min_points steps: listed, no fail before
        # minute 5, and never held (no estimate)
        assert (rollouts - failed) * POLLS + 3 * failed <= c["polls"] <= rollouts * POLLS
        assert 0 <= c["held_polls"] <= c["polls"] - failed - 2 * rollouts
        assert c["poll_held_share"] == round(c["held_polls"] / c["polls"], 4)
        for mark in (7, 30):
            standing = c[f"at_minute_{mark}"]
            assert set(standing) == {"fail", "held", "through"}
            assert all(0 <= v <= 1 for v in standing.values())
            assert abs(sum(standing.values()) - 1) < 1e-3
        assert c["at_minute_30"]["fail"] == c["failed"]
        assert c["at_minute_7"]["fail"] <= c["failed"]
        minute = c["first_fail_minute_median"]
        assert (minute is None) == (failed == 0)
        assert minute is None or 5 <= minute <= saturation.MINUTES
        excess = c["expected_excess"]
        assert c["beyond_tolerance"] == (excess["max"] > 0.5)
        # the idle cost spread over 0.7 of the load: 0.25 × (1/0.7 − 1) over 1.25, +8.6 %
        expected = {(1.0, 1.0): 0.0, (1.0, 0.7): 0.086, (2.0, 1.0): 0.8}[
            c["regression"], c["load"]]
        assert abs(excess["final"] - expected) < 0.005, c
    for c in cells:
        if c["healthy"]:
            assert not c["beyond_tolerance"] and c["failed"] <= 0.05, c
            assert c["at_minute_30"]["held"] <= 0.05, c  # a healthy rollout is rarely paused
        elif c["rps"] == 50.0:
            assert c["failed"] > 0.5 and c["first_fail_minute_median"] <= 15, c
        if not c["healthy"]:  # a regression seen beyond the tolerance is not let through
            assert c["at_minute_30"]["through"] <= 0.2, c
    summary = report["summary"]
    assert summary["within_tolerance"]["cells"] == 4
    assert summary["within_tolerance"]["failed_max"] <= 0.05
    assert summary["beyond_tolerance"]["cells"] == 0
    assert set(summary["power"]) == {"x2"} and set(summary["power"]["x2"]) == {"5", "50"}
    assert summary["power"]["x2"]["50"]["failed_mean"] > 0.5
