"""A range answer placed on the grid all at once gives what placing it point by point gives,
errors included, and the combined answer splits into parts ordered as Prometheus orders a
separate query's series. Pure functions on hand-written answers: the odd shapes here are the
ones Prometheus never sends (the lab's real answers are in test_combined_queries).
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest

from webhook.sources.base import RangeQuery, Series, SourceUnavailable
from webhook.sources.prometheus import combine, matrix

QUERY = RangeQuery(None, "x", 100.0, 400.0, 60.0, "m")  # 6 steps: 100, 160, …, 400
SIZE = 6
DENSE = [{"metric": {"a": "b"}, "values": [[100 + 60 * i, str(i)] for i in range(SIZE)]}]

ANSWERS = {
    "nothing": [],
    "a series without points": [{"metric": {}, "values": []}],
    "dense": DENSE,
    "dense, float timestamps": [{"metric": {"a": "b"},
                                 "values": [[100.0 + 60 * i, "1"] for i in range(SIZE)]}],
    "a step twice (the last wins)": [{"metric": {"a": "b"}, "values": [[100, "1"], [100, "2"]]}],
    "steps backwards": [{"metric": {"a": "b"}, "values": [[160, "1"], [100, "2"]]}],
    "a pair that is a string": [{"metric": {"a": "b"}, "values": ["12"]}],
    "a pair of three": [{"metric": {"a": "b"}, "values": [[100, "1", 3]]}],
    "pairs of two and three": [{"metric": {"a": "b"}, "values": [[100, "1"], [160, "2", 3]]}],
    "a label that is a number": [{"metric": {"a": 1}, "values": [[100, "1"]]}],
    "a value that is true": [{"metric": {"a": "b"}, "values": [[100, True]]}],
    "a value that is a number": [{"metric": {"a": "b"}, "values": [[100, 1]]}],
    "a timestamp that is true": [{"metric": {"a": "b"}, "values": [[True, "1"]]}],
    "a timestamp that is a string": [{"metric": {"a": "b"}, "values": [["100", "1"]]}],
    "a NaN timestamp": [{"metric": {"a": "b"}, "values": [[float("nan"), "1"]]}],
    "an infinite timestamp": [{"metric": {"a": "b"}, "values": [[1e400, "1"]]}],
    "a huge integer timestamp": [{"metric": {"a": "b"}, "values": [[10**400, "1"]]}],
    "garbage off the grid": [{"metric": {"a": "b"}, "values": [[90, "x"], [100, "1"]]}],
    "off-grid, NaN and Inf": [{"metric": {"a": "b"}, "values": [
        [130, "1"], [190.0, "NaN"], [250, "+Inf"], [9999, "1"]]}],
    "no metric key": [{"metric": {"a": "b"}, "values": [[100, "1"]]}, {"values": [[100, "1"]]}],
    "no values key": [{"metric": {"a": "b"}}],
    "values that are a string": [{"metric": {"a": "b"}, "values": ""}],
    "a pair that is an object": [{"metric": {"a": "b"}, "values": [{"100": 1, "2": 2}]}],
    "a series that is a list": [[1, 2]],
    "a series that is a string": ["x"],
    "a series that is null": [None],
    "a metric that is null": [{"metric": None, "values": []}],
    "values Python reads loosely": [{"metric": {"a": "b"}, "values": [[100, "1_0"],
                                                                      [160, " 2 "]]}],
}


def outcome(run):
    try:
        tags, series = run()
    except SourceUnavailable as exc:
        return ("error", exc.message)
    return [(tag, dict(s.labels), list(s.labels), s.values.tolist(), s.present.tolist())
            for tag, s in zip(tags, series, strict=True)]


def by_points(result: object, tag: str | None = None):
    labels, values, present = matrix._point_by_point(result, QUERY, SIZE)  # type: ignore[arg-type]
    tags = [d.pop(tag, None) for d in labels] if tag else [None] * len(labels)
    return tags, list(map(Series, labels, values, present))


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_all_at_once_is_point_by_point(name: str) -> None:
    answer = ANSWERS[name]
    assert str(outcome(lambda: matrix.parse(copy.deepcopy(answer), QUERY))) == str(
        outcome(lambda: by_points(copy.deepcopy(answer))))


def test_the_usual_answer_is_placed_all_at_once() -> None:
    """Dense, sparse and tagged answers as Prometheus sends them take the quick way."""
    sparse = [{"metric": {"a": "b"}, "values": [[160, "1"], [340, "NaN"]]}]
    jittered = [{"metric": {"a": "b"}, "values": [[101, "1"], [222, "+Inf"], [9999, "1"]]}]
    for answer in (DENSE, sparse, jittered):
        assert matrix._all_at_once(copy.deepcopy(answer), 100.0, 60.0, SIZE) is not None
    tagged = [{"metric": {combine.PART_LABEL: "1", "le": "0.5"}, "values": DENSE[0]["values"]}]
    tags, series = matrix.parse(tagged, QUERY, combine.PART_LABEL)
    assert tags == ["1"] and dict(series[0].labels) == {"le": "0.5"}
    assert series[0].values.tolist() == [0, 1, 2, 3, 4, 5] and series[0].present.all()


def test_split_orders_each_part_by_its_labels_as_a_separate_query() -> None:
    """Random label sets in random order: each part's series come out sorted by their label
    sets (name, then value, label by label), the tag no longer among them."""
    rng = random.Random(7)
    names = ["A", "__a", "__name__", "code", "le", "zone"]
    tags, series, expected = [], [], {p: [] for p in range(3)}
    for _ in range(60):
        part = rng.randrange(3)
        labels = {n: rng.choice(["0.1", "1", "10", "+Inf", "x"]) for n in rng.sample(names, 3)}
        s = Series(labels, np.zeros(SIZE), np.ones(SIZE, bool))
        tags.append(str(part))
        series.append(s)
        expected[part].append(s)
    for part in expected.values():
        part.sort(key=lambda s: sorted(s.labels.items()))
    got = combine.split(tags, series, combine.Batch((0, 1, 2), ("a", "b", "c")), "m")
    assert [[id(s) for s in part] for part in got] == [
        [id(s) for s in expected[p]] for p in range(3)]


@pytest.mark.parametrize("tag", [None, "7", "x"])
def test_a_series_without_a_known_part_is_garbage(tag: str | None) -> None:
    s = Series({}, np.zeros(SIZE), np.ones(SIZE, bool))
    with pytest.raises(SourceUnavailable, match="not tagged by one of its parts"):
        combine.split(["0", tag], [s, s], combine.Batch((0, 1), ("a", "b")), "m")
