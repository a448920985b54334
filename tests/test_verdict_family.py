"""The verdict fails if any check fails: a metric judged per facility is a family of checks,
and the chance that any of them ever fails a healthy canary must stay at the metric's alpha,
however many facilities there are (bench/verdict_family.py simulates the rollouts)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import verdict_family as vf
from webhook.judging import judge_metrics
from webhook.kinds import KindContext

pytestmark = pytest.mark.slow


def _admission(level: str = "low"):
    specs, alpha = vf.healthcare_workflows(level)
    return [s for s in specs if s.name == "admission_failures"], alpha


def test_twenty_facilities_at_the_floor_fail_a_rollout_no_more_often_than_alpha():
    # Every facility's canary exactly at the 99 % success floor: each facility's floor check
    # alone fails it at most alpha of the time, over all polls. At alpha 0.2 (a request's,
    # so that 40 rollouts tell) twenty facilities judged at the full alpha each failed 16
    # of 40 rollouts; with alpha split across the facilities, none.
    specs, _ = _admission()
    out = vf.run(facilities=20, failure_rate=0.01, runs=40, polls=10, specs=specs, alpha=0.2,
                 equal=True, seed=2)
    assert out.failed <= 0.2 * out.runs, out.checks


def test_the_split_is_named_in_each_cohort_check_and_one_cohort_keeps_all_of_alpha():
    specs, alpha = _admission()
    ctx = KindContext(alpha=alpha, mode="sequential", step=vf.STEP, points=vf.HISTORY + 5,
                      first=vf.HISTORY)
    for facilities, note in ((4, f"(alpha {alpha / 4:.3g} = {alpha:g} / 4 facility cohorts)"),
                             (1, None)):
        results = vf.simulate(np.random.default_rng(1), specs, facilities,
                              2.0, 0.2, 0.005, 0.0, 5)
        checks = judge_metrics(specs, results, ctx)
        assert len(checks) == 2 * facilities
        for check in checks:
            if note is None:
                assert "cohorts)" not in check.test
            else:
                assert check.test.endswith(note), check.test


def test_one_facility_whose_admissions_fail_ten_times_as_often_is_still_caught():
    # The documented case (admissions at one hospital from 99.5 % to 90 % success) at the
    # default level among three facilities: every rollout fails as soon as that facility has
    # its 200 canary runs (poll 8 to 10 at 24 admissions a minute), naming only it. The
    # split costs a little evidence per cohort (log(3 / alpha) instead of log(1 / alpha)),
    # not the catch: the same polls as at the full alpha.
    specs, alpha = vf.healthcare_workflows("high")
    out = vf.run(level="high", facilities=3, runs=30, specs=specs, alpha=alpha,
                 regression=vf.Regression("admission", 0, 0.1), seed=3)
    assert out.failed == out.runs
    assert max(out.first_polls) <= 12, out.first_polls
    assert all(name.endswith("[facility=F0]") for name in out.checks), out.checks
