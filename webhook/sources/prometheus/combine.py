"""Fewer round trips: range queries on the same grid sent as one, answered as before.

The queries of one analysis (errors and totals, latency buckets, each for canary and stable)
mostly share their start, end and step. Each such group goes to Prometheus as one tagged union
(`promql.tagged_union`): one HTTP request, one JSON body, one query evaluation instead of
several (the `http` config's six queries over 11 steps against the lab Prometheus: p50 3.2 ms
combined vs 4.6 ms for the six sent concurrently). The answer is split back by the tag into
one `QueryResult` per query, the tag removed, so callers see what separate queries return.

The tag is the label `__canary_judge_part__`: names starting with `__` are reserved by
Prometheus for internal use and removed from scraped series after relabelling, so no real
series carries it and the tag cannot overwrite a label of the data.

One combined query is evaluated by one Prometheus goroutine where separate ones run in
parallel, and Prometheus evaluates the union step by step: combining pays for short grids only
(a repeated poll reads a few new steps; a first poll, the window and 60 steps of history), so a
group is cut into batches of at most `MAX_POINTS` parts × steps, and not combined at all when
fewer than `MIN_PARTS` parts would fit (figures at `MAX_POINTS`).

A union is evaluated and its answer encoded on one Prometheus goroutine, so a group is also
cut into `spread` near-equal runs of parts sent at once (`CANARY_JUDGE_PROMETHEUS_UNION_REQUESTS`,
default 2; each run keeps `MIN_PARTS`). Measured on 2026-12-03 against the lab Prometheus with
the `http` config's ten queries over a repeated poll's 6 steps (2 cores, 300 rounds
interleaved, p50 round trip / this client's CPU): one union 8.2 / 1.3 ms, two halves at once
6.4 / 2.0 ms, cut in three or four 6.2–6.8 / 2.5–3.1 ms, the ten alone at once 8.5 / 5.4 ms.
Served, with judging: a sequential analysis 13.7 → 12.4 ms and a fixed one 12.9 → 11.3 ms
(in three: 12.9 and 11.9 ms). An earlier measurement (six queries, two of them histograms,
2.9 ms of Prometheus CPU per union) found two halves slower than one union (4.7 against
3.5 ms): the halves pay once evaluating the union costs more than a request does, as `http`'s
ten queries (saturation's and the restarts' among them) now do. The halves keep the caller's
order, so a metric's canary and stable queries mostly travel together.

A batch Prometheus rejects (4xx: a part that is a scalar or a string, too many samples, a
backend without `label_replace`) is asked again part by part by the client, so
errors name the same metric as before; `RejectionMemo` remembers such sets of expressions so
that a config that cannot be combined does not pay two round trips on every poll.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from webhook.sources.base import RangeQuery, Series, SourceUnavailable, grid_size

PART_LABEL = "__canary_judge_part__"
# Parts × steps of one combined query, and the fewest parts a batch must be allowed to hold
# for combining to pay. Measured against the lab Prometheus (2.42) with the `http` config's six
# queries (two of them ~25 histogram buckets each), CPU of Prometheus and of this process
# summed, 60 rounds each: combined wins up to ~45 steps (11 steps: 3.9 vs 4.7 ms, p50 3.2 vs
# 4.6 ms), is even around 45–60 (triples a little ahead at 61), and loses beyond: at 91 steps
# 18.8 vs 13.2 ms, at 181 steps Prometheus alone spends 18.7 vs 8.7 ms, at 7,201 steps the
# answer takes 1.54 s vs 0.90 s and at 10,001 steps 2.09 s vs 1.62 s (Prometheus evaluates
# `label_replace` and every `or` step by step, hashing each series at each step, on one
# goroutine). Pairs lose at 91 and 151 steps too.
MAX_POINTS = 270
MIN_PARTS = 3
_MEMO_SIZE = 256


@dataclass(frozen=True)
class Batch:
    """Queries sent as one request: `members` are positions in the caller's list and
    `exprs[n]` the expression of `members[n]`, part n of the union."""

    members: tuple[int, ...]
    exprs: tuple[str, ...]

    @property
    def combined(self) -> bool:
        return len(self.members) > 1


class RejectionMemo:
    """Sets of expressions whose union the source rejected, remembered per process (bounded,
    least recently used first out): the next poll sends their parts separately at once."""

    def __init__(self, size: int = _MEMO_SIZE) -> None:
        self._size = size
        self._rejected: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, exprs: tuple[str, ...]) -> bool:
        with self._lock:
            if exprs in self._rejected:
                self._rejected.move_to_end(exprs)
                return True
            return False

    def add(self, exprs: tuple[str, ...]) -> None:
        with self._lock:
            self._rejected[exprs] = None
            self._rejected.move_to_end(exprs)
            while len(self._rejected) > self._size:
                self._rejected.popitem(last=False)


def plan(queries: Sequence[RangeQuery], memo: RejectionMemo | None,
         max_points: int = MAX_POINTS, spread: int = 1) -> list[Batch]:
    """Batches covering every query once: queries on the same grid together, at most
    `max_points` parts × steps each, a rejected set of expressions one query per batch.
    `memo=None`: no combining at all (the setting is off).

    A group is cut into near-equal runs of its parts (in the caller's order), as many as
    `max_points` needs and at least `spread` while each run keeps `MIN_PARTS` parts: sent at
    once, Prometheus evaluates and encodes them on as many goroutines (module docstring)."""
    if memo is None:
        return [Batch((i,), (q.expr,)) for i, q in enumerate(queries)]
    groups: dict[tuple[float, float, float], list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault((q.start, q.end, q.step), []).append(i)
    batches: list[Batch] = []
    for (start, end, step), members in groups.items():
        per_batch = max_points // max(grid_size(start, end, step), 1)
        if per_batch < MIN_PARTS:  # too long for combining to pay: one query per request
            batches += [Batch((i,), (queries[i].expr,)) for i in members]
            continue
        runs = max(-(-len(members) // per_batch), min(spread, len(members) // MIN_PARTS))
        for n in range(runs):
            chunk = tuple(members[n * len(members) // runs: (n + 1) * len(members) // runs])
            exprs = tuple(queries[i].expr for i in chunk)
            if len(chunk) > 1 and exprs in memo:
                batches += [Batch((i,), (queries[i].expr,)) for i in chunk]
            else:
                batches.append(Batch(chunk, exprs))
    return batches


def split(tags: Sequence[str | None], series: Sequence[Series], batch: Batch,
          metric: str) -> list[tuple[Series, ...]]:
    """The combined answer's series per part, in Prometheus' order (by labels, as a separate
    query's answer); a series without a known tag is garbage, never data.

    One stable sort of all series by (part, label order), its sort keys built by C-level
    `map`s: the same order as sorting each part's list, without a Python call per series (a
    repeated poll's answer has ~54)."""
    parts = list(map(_PARTS.get, tags))
    if None in parts or (parts and max(parts) >= len(batch.members)):  # type: ignore[type-var]
        raise SourceUnavailable(
            f"metric {metric!r}: Prometheus answered a combined query with a series not "
            f"tagged by one of its parts ({PART_LABEL}); set "
            "CANARY_JUDGE_PROMETHEUS_COMBINE_QUERIES=false for this backend", metric)
    keys = list(zip(parts, map(sorted, map(dict.items, map(_LABELS, series))), strict=True))
    ordered = list(map(series.__getitem__, sorted(range(len(keys)), key=keys.__getitem__)))
    out: list[tuple[Series, ...]] = []
    lo = 0
    for part in range(len(batch.members)):
        hi = lo + parts.count(part)
        out.append(tuple(ordered[lo:hi]))
        lo = hi
    return out


_LABELS = attrgetter("labels")
_PARTS: dict[str | None, int] = {str(i): i for i in range(4096)}
