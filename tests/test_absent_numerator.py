"""A numerator query that cannot count is not zero events (`absent_numerator: missing`).

A ratio read a numerator query without series as 0 bad events on both sides, so a query whose
labels the series lack judged any canary 0 % bad. With `absent_numerator: missing` the query
answers an explicit 0 wherever it can count, and a side with traffic but no numerator series is
inconclusive, naming the side.
"""

from __future__ import annotations

import numpy as np
import pytest

from webhook.configs import RatioMetric, Tolerance
from webhook.kinds import judge_spec
from webhook.kinds.base import ArrayData, KindContext
from webhook.sources.base import Series


def _ratio(absent: str) -> RatioMetric:
    return RatioMetric(name="errors", kind="ratio", bad="b", total="t", max_ratio=0.01,
                       critical=True, tolerance=Tolerance(absolute=0.002),
                       absent_numerator=absent)


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_a_side_with_traffic_and_no_numerator_series_holds_both_checks(mode):
    """The kind itself: the ratio and its `_limit` are inconclusive with `missing`, judged as
    0 events with the default `zero`, and a side without traffic is not named."""
    ctx = KindContext(alpha=0.05, mode=mode, step=60.0, points=30)
    total = Series({}, np.full(30, 1000.0))
    zero = Series({}, np.zeros(30))
    data = ArrayData({("canary", "total"): [total], ("stable", "total"): [total],
                      ("stable", "numerator"): [zero]})
    checks = judge_spec(_ratio("missing"), data, ctx)
    assert [(c.name, c.verdict, c.critical) for c in checks] == [
        ("errors", "inconclusive", True), ("errors_limit", "inconclusive", True)]
    assert checks[0].reason.startswith("errors: the canary served 30,000 requests, but its "
                                       "`bad` query found no series"), checks[0].reason
    assert checks[1].reason.startswith("errors_limit: the canary served"), checks[1].reason
    assert checks[0].canary.n == 30_000 and checks[0].canary.value is None
    assert {c.verdict for c in judge_spec(_ratio("zero"), data, ctx)} == {"pass"}
    # no traffic on the canary side: too little data, as before, not this reason
    idle = ArrayData({("canary", "total"): [zero], ("stable", "total"): [total],
                      ("stable", "numerator"): [zero]})
    quiet = judge_spec(_ratio("missing"), idle, ctx)[0]
    assert quiet.verdict == "inconclusive" and "found no series" not in quiet.reason
