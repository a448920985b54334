"""The analysis pipeline's own steps (webhook/rollout.py): where the judged window begins is
read off the data, from the queries each metric kind says measure the canary's traffic."""

from __future__ import annotations

import numpy as np

from webhook.configs import EventsMetric, RatioMetric, SeriesMetric
from webhook.rollout import canary_activity, current_start, rollout_start
from webhook.sources.base import QueryKey, QueryResult, RangeQuery, Series


def test_rollout_start_is_read_off_the_data():
    quiet, busy = [False] * 5, [True] * 4
    assert rollout_start(np.array(quiet), 3) is None
    # an earlier rollout, a long pause (scaled to zero), then the current one
    activity = np.array(busy + quiet + busy + [False, False] + busy)
    assert rollout_start(activity, max_gap=3) == 9  # a 2-step blip does not split a rollout
    assert rollout_start(activity, max_gap=1) == 15


def test_a_run_followed_by_a_longer_pause_than_max_gap_is_over():
    busy = [True] * 4
    assert current_start(np.array([False] * 5), 3) is None
    assert current_start(np.array(busy + [False] * 3), 3) == 0  # a blip: still the run
    assert current_start(np.array(busy + [False] * 4), 3) == 8  # over: nothing judged
    assert current_start(np.array(busy + [False] * 5 + busy + [False] * 2), 3) == 9


def _result(metric: str, side: str, role: str, values: list[float]) -> tuple[QueryKey,
                                                                             QueryResult]:
    key = QueryKey(metric, side, role)  # type: ignore[arg-type]
    query = RangeQuery(key, "x", 60.0, 60.0 * len(values), 60.0)
    return key, QueryResult(query, (Series({}, np.array(values, dtype=float)),))


def test_canary_traffic_is_what_each_kind_says_measures_it():
    nan = float("nan")
    specs = [
        RatioMetric(name="errors", kind="ratio", bad="b{ {{selector}} }",
                    total="t{ {{selector}} }"),
        SeriesMetric(name="cpu", kind="series", query="c{ {{selector}} }"),
        EventsMetric(name="incidents", kind="events", query="e{ {{selector}} }"),
    ]
    results = dict([
        # errors without requests, and events, say nothing of traffic
        _result("errors", "canary", "numerator", [3, 3, nan, nan, nan, nan]),
        _result("incidents", "canary", "events", [nan, 1, nan, nan, nan, nan]),
        # a counter's increase counts when above 0; a gauge's presence counts
        _result("errors", "canary", "total", [0, 0, 5, nan, nan, nan]),
        _result("cpu", "canary", "values", [nan, nan, nan, 0.0, nan, nan]),
        # the stable side is never the canary's traffic
        _result("errors", "stable", "total", [9, 9, 9, 9, 9, 9]),
    ])
    active = canary_activity(results, 6, specs)
    assert active.tolist() == [False, False, True, True, False, False]
