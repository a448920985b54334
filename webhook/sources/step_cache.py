"""A bounded per-process cache of step data in front of any `MetricsSource`.

Argo and Flagger ask the same question every poll over a window that only grows (or slides) by
a step or two; without a cache every poll re-reads the whole window and, in sequential mode,
hours of history to find the rollout's start: over a rollout the samples read grow with the
square of its length. Here a repeated query re-reads only what can have changed since it was
last read:

- every step after the last *settled* one: a step is settled once it is older than `settle`
  seconds at the time it was read (Prometheus' own lookback delta is 5 minutes; samples that
  arrive late, through remote write, federation or a slow scrape, land within it), and
- always the last `margin_steps` steps held, whatever their age.

Older steps are taken from the cache. This is correct without shared state: each replica
keeps its own cache, and a cold one simply reads everything, so two replicas answer the same.
The gunicorn workers of one pod also share what they read (`shared_steps`): a query this
process lacks, or holds with fewer settled steps, is taken from the pod's store when that holds
its first step, and an entry whose settled steps advanced is left there for the others. Counter
resets need nothing special: Prometheus evaluates each step on its own, from samples at or
before its time only (`increase()`/`rate()` the step's, the built-in configs' exact counts the
change since the last sample up to an hour before the step), so a step's value never depends
on steps read later. A late sample changes its own step and the next step holding a sample of
that series, which is later still: never a step settled before it.

One key (expression, step, grid phase) serves every window on that grid: Argo's sequential
poll and a fixed poll of the same question ask for windows that end together but start apart.
Storing one's answer used to evict the other's steps, so each missed in turn; an entry now
keeps the steps from the start of the previous query of its key too (`_kept`), so two
alternating windows both hit, and a window sliding by a step keeps one step more, not more
with every poll.

Every answer counts its samples (series × steps) in `canary_judge_step_cache_samples_total`,
by `read_from`: `cache` (this process' or the pod's) or `upstream`.

Memory is bounded by `max_points` (series × steps over all entries, 9 bytes each: a float
and a presence flag; 2,000,000 ≈ 18 MB), least recently used entries evicted first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import is_

import numpy as np

from webhook.observability import STEP_CACHE_SAMPLES
from webhook.sources.base import (
    MetricsSource,
    QueryResult,
    RangeQuery,
    Series,
    grid_size,
)
from webhook.sources.shared_steps import SharedSteps, StoredSteps

# Labels as Prometheus orders a matrix: sorted name/value pairs, compared pairwise.
LabelKey = tuple[tuple[str, str], ...]
Key = tuple[str, float, float]  # expression, step, grid phase

_FROM_CACHE = STEP_CACHE_SAMPLES.labels(read_from="cache")
_FROM_UPSTREAM = STEP_CACHE_SAMPLES.labels(read_from="upstream")


@dataclass(frozen=True)
class _Entry:
    """One query's steps from `start` on: a row of values and of presence per series, series
    ordered by their labels (as Prometheus orders a matrix)."""

    start: float
    step: float
    keys: tuple[LabelKey, ...]
    labels: tuple[Mapping[str, str], ...]  # each series' labels, in `keys`' order
    values: np.ndarray  # len(keys) × size
    present: np.ndarray  # len(keys) × size, bool
    size: int  # steps held
    final_end: float  # last step that will not be read again
    asked: float  # the start of the query whose answer this is (`_kept`)

    @property
    def points(self) -> int:
        return max(len(self.keys), 1) * self.size

    def stored(self) -> StoredSteps:
        return StoredSteps(self.start, self.step, self.labels, self.values, self.present,
                           self.size, self.final_end, self.asked)

    @classmethod
    def of(cls, stored: StoredSteps) -> _Entry:
        return cls(stored.start, stored.step, tuple(map(_label_key, stored.labels)),
                   stored.labels, stored.values, stored.present, stored.size,
                   stored.final_end, stored.asked)


@dataclass
class CacheStats:
    """What the cache saved: reported by the benchmark."""

    hits: int = 0  # queries answered (partly) from the cache
    misses: int = 0
    shared_hits: int = 0  # of the hits, those taken from the pod's store
    shared_writes: int = 0  # entries left in the pod's store
    steps_read: int = 0  # steps asked upstream, summed over queries
    steps_served: int = 0  # steps taken from the cache


class StepCache:
    """`MetricsSource` that reads only the new steps of a query it (or, with `shared`,
    another worker of its pod) has seen before."""

    def __init__(self, inner: MetricsSource, *, max_points: int = 2_000_000,
                 settle: float = 300.0, margin_steps: int = 3,
                 clock: Callable[[], float] = time.time,
                 shared: SharedSteps | None = None) -> None:
        if margin_steps < 1:
            raise ValueError("margin_steps must be at least 1")
        self.inner = inner
        self.max_points = max_points
        self.settle = settle
        self.margin_steps = margin_steps
        self._clock = clock
        self.shared = shared
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._points = 0
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def points(self) -> int:
        """Series × steps held now (the bounded quantity)."""
        return self._points

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        """Each query's steps up to the last settled one from the cache, the rest upstream,
        all missing parts in one call to the inner source (concurrent there)."""
        with self._lock:
            keys = [_key(q) for q in queries]
            entries = [self._usable(key, q) for key, q in zip(keys, queries, strict=True)]
        if self.shared is not None:  # the pod's store, where it holds more settled steps
            for i, (key, q, entry) in enumerate(zip(keys, queries, entries, strict=True)):
                better = self.shared.read_steps(key, q.start,
                                                None if entry is None else entry.final_end)
                if better is not None:
                    entries[i] = _Entry.of(better)
                    with self._lock:
                        self.stats.shared_hits += 1
        plans: list[tuple[RangeQuery, Key, _Entry | None, float]] = []
        upstream: list[RangeQuery] = []
        for q, key, entry in zip(queries, keys, entries, strict=True):
            fetch_from = q.start if entry is None else max(q.start, entry.final_end + q.step)
            plans.append((q, key, entry, fetch_from))
            if fetch_from <= q.end + 1e-9:
                upstream.append(RangeQuery(q.key, q.expr, fetch_from, q.end, q.step, q.metric))
        with self._lock:
            hits = sum(entry is not None for entry in entries)
            self.stats.hits += hits
            self.stats.misses += len(entries) - hits
        read_at = self._clock()
        fetched = iter(self.inner.query_range_many(upstream, deadline=deadline)
                       if upstream else [])
        out = []
        held_by_key = []
        from_cache = from_upstream = 0
        for q, key, entry, fetch_from in plans:
            fresh = next(fetched) if fetch_from <= q.end + 1e-9 else None
            # the steps this answer holds that no later poll needs to read again
            settled = math.floor((read_at - self.settle - q.start) / q.step) * q.step + q.start
            final_end = min(settled, q.end - self.margin_steps * q.step)
            result, held, cut = _merge(q, entry, fresh, final_end)
            self.stats.steps_served += cut if entry is not None else 0
            self.stats.steps_read += held.size - cut if fresh is not None else 0
            from_cache += len(result.series) * cut
            from_upstream += len(result.series) * (held.size - cut)
            out.append(result)
            held_by_key.append((key, held))
        _FROM_CACHE.inc(from_cache)
        _FROM_UPSTREAM.inc(from_upstream)
        kept = self._store(held_by_key)
        if self.shared is not None:
            written = sum(self.shared.write_steps(key, entry.stored()) for key, entry in kept)
            with self._lock:
                self.stats.shared_writes += written
        return out

    # -- internals -----------------------------------------------------------------------

    def _usable(self, key: Key, q: RangeQuery) -> _Entry | None:
        """The entry for q's expression and grid (`key`) if it holds q's first step."""
        entry = self._entries.get(key)
        if entry is None or entry.start > q.start + 1e-9:
            return None
        self._entries.move_to_end(key)
        return entry

    def _store(self, entries: Sequence[tuple[Key, _Entry]]) -> list[tuple[Key, _Entry]]:
        """Keep each entry under its key (one lock for a whole answer), with the steps of the
        key's previous query where it started earlier (`_kept`), least recently used evicted
        past `max_points`. Returns what was kept."""
        kept = []
        with self._lock:
            for key, entry in entries:
                old = self._entries.pop(key, None)
                if old is not None:
                    self._points -= old.points
                    entry = _kept(old, entry, self.max_points)
                if entry.points > self.max_points:
                    continue
                self._entries[key] = entry
                self._points += entry.points
                kept.append((key, entry))
            while self._points > self.max_points:
                _, evicted = self._entries.popitem(last=False)
                self._points -= evicted.points
        return kept


def with_step_cache(source: MetricsSource, max_points: int, settle: float = 300.0,
                    shared: SharedSteps | None = None) -> MetricsSource:
    """The source behind a step cache (sharing with the pod's other workers through `shared`,
    if given), or the source itself when `max_points` is 0."""
    if max_points <= 0:
        return source
    return StepCache(source, max_points=max_points, settle=settle, shared=shared)


def _key(q: RangeQuery) -> Key:
    return q.expr, q.step, round(math.fmod(q.start, q.step), 6)


def _label_key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _layout(old: _Entry | None, fresh: Sequence[Series]
            ) -> tuple[list[LabelKey], list[Mapping[str, str]], slice | list[int],
                       slice | list[int]]:
    """The merged answer's series ordered by labels, each one's labels (the fresh series' own
    where it has one), and each part's rows among them."""
    old_keys = old.keys if old is not None else ()
    new_keys = [_label_key(s.labels) for s in fresh]
    old_rows: slice | list[int] = slice(None)
    new_rows: slice | list[int] = slice(None)
    if not old_keys or tuple(new_keys) == old_keys or not new_keys:
        # the same series as last time, in the same order (or one side only)
        keys = list(old_keys or new_keys)
        if len(set(keys)) != len(keys) or keys != sorted(keys):
            keys, old_rows, new_rows = _rows(old_keys, new_keys)
    else:
        keys, old_rows, new_rows = _rows(old_keys, new_keys)
    by_key = dict(zip(new_keys, fresh, strict=True))
    labels = [by_key[k].labels if k in by_key else dict(k) for k in keys]
    return keys, labels, old_rows, new_rows


def _rows(old_keys: Sequence[LabelKey], new_keys: Sequence[LabelKey]
          ) -> tuple[list[LabelKey], list[int], list[int]]:
    """All series of both parts ordered by labels, and each part's rows among them."""
    keys = sorted(set(old_keys).union(new_keys))
    row = {key: i for i, key in enumerate(keys)}
    return keys, [row[k] for k in old_keys], [row[k] for k in new_keys]


def _placed(old: _Entry | None, fresh_series: Sequence[Series], rows: int, size: int,
            cut: int, offset: int, old_rows: slice | list[int], new_rows: slice | list[int]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Both parts placed at their rows on a grid of `size` steps: the entry's from its step
    `offset` for `cut` steps, then the fresh ones'; steps neither holds stay absent."""
    values = np.full((rows, size), np.nan)
    present = np.zeros((rows, size), dtype=bool)
    if old is not None and old.keys:
        part = old.values[:, offset: offset + cut]
        values[old_rows, : part.shape[1]] = part
        present[old_rows, : part.shape[1]] = old.present[:, offset: offset + cut]
    if fresh_series:
        # every series of an answer is on the answer's grid: one length for all
        n = min(fresh_series[0].values.size, size - cut)
        fresh_values = [s.values for s in fresh_series]
        fresh_present = [s.present if s.present is not None else np.isfinite(s.values)
                         for s in fresh_series]
        if n < fresh_series[0].values.size:
            fresh_values = [v[:n] for v in fresh_values]
            fresh_present = [p[:n] for p in fresh_present]
        values[new_rows, cut: cut + n] = fresh_values
        present[new_rows, cut: cut + n] = fresh_present
    return values, present


def _merge(q: RangeQuery, entry: _Entry | None, fresh: QueryResult | None,
           final_end: float) -> tuple[QueryResult, _Entry, int]:
    """q's answer on its grid: the entry's steps before the fresh part, then the fresh part;
    also the entry to keep and how many leading steps came from the old entry.

    A series seen on only one side is absent on the other; a series with no sample in q's
    window is dropped, and series are ordered by their labels, as Prometheus answers. All
    series of a query are merged as one matrix (a few numpy calls per query, not per series);
    the answer's arrays are rows of a copy, so nothing a judge does to them reaches the cache.
    """
    size = grid_size(q.start, q.end, q.step)
    cut = size if fresh is None else round((fresh.query.start - q.start) / q.step)
    old = entry if entry is not None and cut > 0 else None
    fresh_series = () if fresh is None else fresh.series
    fresh_labels = tuple([s.labels for s in fresh_series])
    appending = old is not None and bool(fresh_labels) and fresh_labels == old.labels
    if appending:
        # the usual poll: the same series as last time (label sets compared as dicts: equal
        # dicts have equal sorted items, so the order and the keys are the entry's)
        keys: Sequence[LabelKey] = old.keys
        labels: Sequence[Mapping[str, str]] = fresh_labels
        old_rows: slice | list[int] = slice(None)
        new_rows: slice | list[int] = slice(None)
    else:
        keys, labels, old_rows, new_rows = _layout(old, fresh_series)
    offset = round((q.start - old.start) / q.step) if old is not None else 0
    fresh_present = [s.present for s in fresh_series]
    if (appending and old is not None and offset >= 0 and offset + cut <= old.size
            # every series of an answer is on the answer's grid: one length for all
            and fresh_series[0].values.size == size - cut
            and not any(map(is_, fresh_present, repeat(None)))):
        # the usual poll, in one numpy call per matrix: the entry's steps, then every fresh
        # series' steps to the end of q's grid (numpy's C calls only: this runs per query
        # and poll, where numpy's Python wrappers would cost more than the arithmetic)
        rows = len(fresh_series)
        values = np.concatenate(
            (old.values[:, offset: offset + cut],
             np.concatenate([s.values for s in fresh_series]).reshape(rows, size - cut)),
            axis=1)
        present = np.concatenate(
            (old.present[:, offset: offset + cut],
             np.concatenate(fresh_present).reshape(rows, size - cut)),
            axis=1).astype(bool, copy=False)
    else:
        values, present = _placed(old, fresh_series, len(keys), size, cut, offset, old_rows,
                                  new_rows)
    live = np.logical_or.reduce(present, axis=1)
    if not np.logical_and.reduce(live):
        keys = [k for k, alive in zip(keys, live, strict=True) if alive]
        labels = [m for m, alive in zip(labels, live, strict=True) if alive]
        values, present = values[live], present[live]
    out_values, out_present = values.copy(), present.copy()
    series = tuple(map(Series, labels, out_values, out_present))
    held = _Entry(q.start, q.step, tuple(keys), tuple(labels), values, present, size,
                  final_end, q.start)
    return (QueryResult(q, series, fresh.seconds if fresh is not None else 0.0,
                        fresh.requests if fresh is not None else 0), held,
            cut if entry is not None else 0)


def _kept(old: _Entry, new: _Entry, max_points: int) -> _Entry:
    """`new`, preceded by `old`'s steps from the start of the query `old` answered, when
    that query started earlier and `old` holds those steps settled; else `new` itself.

    Only the previous query's start is kept, not the earliest ever: a window sliding by a step
    per poll keeps one step more than it asks, and two windows polled in turn (sequential and
    fixed) keep the longer one's steps.
    """
    begin, step = old.asked, new.step
    if begin >= new.start - 1e-9 or old.start > begin + 1e-9 or old.step != step:
        return new
    offset = round((begin - old.start) / step)
    n = round((new.start - begin) / step)
    if offset + n > old.size or new.start - step > old.final_end + 1e-9:
        return new  # old does not reach new's first step, or holds some of it unsettled
    if old.keys == new.keys:
        keys, labels = new.keys, new.labels
        values = np.concatenate((old.values[:, offset: offset + n], new.values), axis=1)
        present = np.concatenate((old.present[:, offset: offset + n], new.present), axis=1)
    else:
        merged, old_rows, new_rows = _rows(old.keys, new.keys)
        keys = tuple(merged)
        if len(keys) * (n + new.size) > max_points:
            return new
        by_key = dict(zip(old.keys, old.labels, strict=True))
        by_key.update(zip(new.keys, new.labels, strict=True))
        labels = tuple(by_key[k] for k in keys)
        values = np.full((len(keys), n + new.size), np.nan)
        present = np.zeros((len(keys), n + new.size), dtype=bool)
        values[old_rows, :n] = old.values[:, offset: offset + n]
        present[old_rows, :n] = old.present[:, offset: offset + n]
        values[new_rows, n:] = new.values
        present[new_rows, n:] = new.present
    if max(len(keys), 1) * (n + new.size) > max_points:
        return new
    return _Entry(begin, step, keys, labels, values, present, n + new.size, new.final_end,
                  new.asked)
