"""A `query_range` answer's `result` (a JSON matrix) placed on the query's grid.

Each series' points land on the grid (`values[i]` at `start + i*step`, NaN and not present
where Prometheus had no sample); values come as strings ("1.5", "NaN", "+Inf"), and anything
that is not a list of `{"metric": {...}, "values": [[timestamp, "value"], ...]}` is malformed.

Two ways to the same answer. The usual one, every series, label and point well formed and
the points in ascending time (as Prometheus sends them), handles all points of all series at
once: flat lists built by C-level `map`s, one `np.fromiter` each for timestamps and values,
one vectorised placement; no Python code runs per series or per point, so a repeated poll's
combined answer (54 series of 5 steps) costs ~10 µs instead of ~0.35 ms (a per-point loop,
250 `round` calls and as many list stores). Anything else (a label or value that is not a
string, a missing key, a point that is not a pair, a timestamp that is not finite or repeats
a step) goes the per-point way, which defines the answer and every error; the quick way only
takes inputs on which it provably gives the same arrays, so it can never turn garbage into data.
"""

from __future__ import annotations

import math
from itertools import chain, repeat
from operator import itemgetter

import numpy as np

from webhook.sources.base import RangeQuery, Series, SourceUnavailable, grid_size

_METRIC = itemgetter("metric")
_VALUES = itemgetter("values")


def parse(result: object, query: RangeQuery,
          tag: str | None = None) -> tuple[list[str | None], list[Series]]:
    """Every series of `result` on the query's grid, in Prometheus' order. With `tag`, that
    label is taken out of each series' labels and returned beside it (None if absent)."""
    if not isinstance(result, list):
        raise SourceUnavailable(f"metric {query.metric!r}: malformed matrix from Prometheus",
                                query.metric)
    size = grid_size(query.start, query.end, query.step)
    placed = _all_at_once(result, query.start, query.step, size)
    if placed is None:
        placed = _point_by_point(result, query, size)
    labels, matrix, presence = placed
    tags = list(map(dict.pop, labels, repeat(tag), repeat(None))) if tag is not None else (
        [None] * len(labels))
    return tags, list(map(Series, labels, matrix, presence))


def _all_at_once(result: list, start: float, step: float,
                 size: int) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray] | None:
    """The usual answer's arrays, or None when `_point_by_point` must decide. `result` is
    decoded JSON (its objects' keys are strings)."""
    rows = len(result)
    try:
        if rows and set(map(type, result)) != {dict}:
            return None
        metrics = list(map(_METRIC, result))
        points = list(map(_VALUES, result))
        if rows and (set(map(type, metrics)) != {dict} or set(map(type, points)) != {list}):
            return None
        # label values `str()` would change (a TypeError; JSON's keys are strings already)
        "".join(chain.from_iterable(map(dict.values, metrics)))
        pairs = list(chain.from_iterable(points))
        count = len(pairs)
        # each pair unpacked as the loop does (anything of exactly two items; else ValueError)
        times, raws = tuple(zip(*pairs, strict=True)) if count else ((), ())
        "".join(raws)  # values that are not strings: a TypeError (`float(str(True))` fails)
        values = np.fromiter(map(float, raws), float, count)
        if count == rows * size and times == _grid(start, step, size) * rows:
            # every series on every step, in order: nothing to place
            return (list(map(dict, metrics)), values.reshape(rows, size),
                    np.ones((rows, size), bool))
        stamps = np.fromiter(map(float, times), float, count)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    offsets = (stamps - start) / step
    if not np.isfinite(offsets).all():  # round() would raise: malformed
        return None
    index = np.rint(offsets)  # round half to even, as round()
    inside = (index >= 0) & (index < size)
    cells = (np.repeat(np.arange(rows), list(map(len, points)))[inside] * size
             + index[inside].astype(np.intp))
    if cells.size > 1 and not (cells[1:] > cells[:-1]).all():  # a repeated step: last wins
        return None
    matrix = np.full(rows * size, math.nan)
    matrix[cells] = values[inside]
    presence = np.zeros(rows * size, bool)
    presence[cells] = True
    labels = list(map(dict, metrics))  # ours to change (the tag is popped)
    return labels, matrix.reshape(rows, size), presence.reshape(rows, size)


def _grid(start: float, step: float, size: int) -> tuple[float, ...]:
    """The grid's timestamps, where they provably land on their own steps (else (), which
    no series of points equals)."""
    if (float(start).is_integer() and float(step).is_integer() and step > 0
            and abs(start) + size * step < 2**53):
        # whole seconds, as JSON gives them (ints): exact, and compared as fast as can be
        first, stride = int(start), int(step)
        return tuple(range(first, first + size * stride, stride))
    steps = np.arange(size)
    grid = start + steps * step
    if not (np.rint((grid - start) / step) == steps).all():
        return ()
    return tuple(grid.tolist())


def _point_by_point(result: list, query: RangeQuery,
                    size: int) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray]:
    """The definition: each series' points placed one by one (a later point at the same step
    replacing an earlier one), any malformed part an error."""
    start, step = query.start, query.step
    all_labels: list[dict[str, str]] = []
    all_values: list[list[float]] = []
    all_present: list[list[bool]] = []
    for item in result:
        values = [math.nan] * size
        present = [False] * size
        try:
            labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
            for ts, raw in item.get("values", []):
                index = round((float(ts) - start) / step)
                if 0 <= index < size:
                    values[index] = float(str(raw))
                    present[index] = True
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise SourceUnavailable(
                f"metric {query.metric!r}: malformed series from Prometheus", query.metric) from exc
        all_labels.append(labels)
        all_values.append(values)
        all_present.append(present)
    rows = len(all_labels)
    matrix = np.fromiter(chain.from_iterable(all_values), float, rows * size).reshape(rows, size)
    presence = np.fromiter(chain.from_iterable(all_present), bool, rows * size).reshape(
        rows, size)
    return all_labels, matrix, presence
