"""A bounded per-process memo of pure functions, keyed by the content of their arguments.

Why: in sequential mode every poll of a rollout hands the judges the stable's steps before the
analysis start (`stable_history`). The start is fixed for the rollout and those steps are
settled data, so every poll hands over the same numbers, and what the judges derive from them
alone (the dispersion priors, the tail share's bound) is the same at
every poll. Remembering those values makes a poll pay for what is new, not for the history.

Why content, not identity: each poll fetches (or copies out of the step cache) new arrays
holding the same numbers. The key is each array's dtype, shape, strides and bytes plus every
other argument, so equal keys mean equal inputs to the bit and the memoised value is exactly
what the function would return: the judges stay pure functions and every replica gives the
same answer with or without the memo. A history that changed in one step (late data, a new
rollout, another config) is another key and is computed afresh. The memoised functions take
only the history, never the whole window: keying and looking up a tail prior or a ratio prior
costs 0.1–0.15× computing it.

Values handed out are shared by every later caller with the same key, so they must be
immutable: floats, ints, strings, None and tuples of them. An array is refused (TypeError): a
judge writing into a shared one would change the next poll's answer.

Bound: the entries' bytes (their keys' array bytes + `ENTRY_OVERHEAD` each) stay ≤
`max_bytes`, least recently used evicted first; an entry above `max_entry_bytes` is computed and
not kept. Thread-safe: one lock around the table; the function runs outside it (two
threads missing the same key at once both compute it, and the values are equal).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

# Python's own cost per entry beyond the arrays' bytes (dict slot, key tuples, bytes headers),
# counted against the bound so that many tiny entries cannot outgrow it unseen.
ENTRY_OVERHEAD = 512


@dataclass(frozen=True)
class MemoStats:
    """What one memoised function's memo did since the process started (or `clear`)."""

    hits: int
    misses: int
    entries: int  # held now
    bytes: int  # held now, as counted against the bound


class ContentMemo:
    """A bounded LRU table shared by the functions it memoises (`memoise`): one memory bound
    for all of them."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}  # name -> [hits, misses, entries, bytes]

    @property
    def bytes(self) -> int:
        """Bytes held now (the bounded quantity)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry and count (tests start from an empty memo)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._counts = {name: [0, 0, 0, 0] for name in self._counts}

    def stats(self, name: str) -> MemoStats:
        """Counts of the function registered as `name` (its module and qualified name)."""
        with self._lock:
            return MemoStats(*self._counts[name])

    def memoise(self, fn: F) -> F:
        """`fn` (positional arguments only: arrays, floats, ints, bools, str, None and tuples
        of them) remembered by the content of its arguments."""
        name = f"{fn.__module__}.{fn.__qualname__}"
        with self._lock:
            self._counts.setdefault(name, [0, 0, 0, 0])

        @functools.wraps(fn)
        def remembered(*args: Any) -> Any:
            parts, size = _key(args)
            key = (name, parts)
            with self._lock:
                found = self._entries.get(key)
                counts = self._counts[name]
                if found is not None:
                    self._entries.move_to_end(key)
                    counts[0] += 1
                    return found[0]
                counts[1] += 1
            value = fn(*args)
            _check_immutable(value)
            size += ENTRY_OVERHEAD
            if size <= self.max_entry_bytes:
                self._store(key, name, value, size)
            return value

        remembered.stats = lambda: self.stats(name)  # type: ignore[attr-defined]
        remembered.memo = self  # type: ignore[attr-defined]
        return cast(F, remembered)

    def _store(self, key: tuple[Any, ...], name: str, value: Any, size: int) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:  # another thread computed it meanwhile: the same value
                self._forget(key[0], old[1])
            self._entries[key] = (value, size)
            self._bytes += size
            counts = self._counts[name]
            counts[2] += 1
            counts[3] += size
            while self._bytes > self.max_bytes and self._entries:
                evicted, (_, evicted_size) = self._entries.popitem(last=False)
                self._forget(evicted[0], evicted_size)

    def _forget(self, name: str, size: int) -> None:
        self._bytes -= size
        counts = self._counts[name]
        counts[2] -= 1
        counts[3] -= size


def _key(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], int]:
    """(hashable key of `args`, bytes of array data in it)."""
    parts = []
    size = 0
    for x in args:
        part, n = _part(x)
        parts.append(part)
        size += n
    return tuple(parts), size


def _part(x: Any) -> tuple[Any, int]:
    """One argument's key: arrays by dtype, shape, strides (a reduction's order, hence its last
    bit, can depend on the layout) and bytes; floats by their exact bits (0.0 and -0.0, or
    two NaNs, are not confused); the type of every scalar (True is not 1)."""
    if isinstance(x, np.ndarray):
        if x.dtype.hasobject:
            raise TypeError("object arrays have no content key")
        data = x.tobytes()
        return ("array", x.dtype, x.shape, x.strides, data), len(data)
    if isinstance(x, float):
        return (type(x), float(x).hex()), 0
    if x is None or isinstance(x, bool | int | str):
        return (type(x), x), 0
    if isinstance(x, np.generic) and not x.dtype.hasobject:  # numpy's scalars: their bits
        return (type(x), x.tobytes()), 0
    if type(x) is tuple:
        key, size = _key(x)
        return ("tuple", key), size
    raise TypeError(f"no content key for {type(x).__name__}")


def _check_immutable(value: Any) -> None:
    """Refuse a value that a later caller could change under the others (module docstring)."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if type(value) is tuple:
        for item in value:
            _check_immutable(item)
        return
    raise TypeError(f"cannot share a {type(value).__name__} between callers")


# The stable's history, per process: 8 MiB. The `http` config's sequential analysis (23
# buckets) counts ~28 kB per rollout against it (its keys: the history histogram's arrays for
# each quantile's tail prior, ~12 kB each, the bound's ~1 kB, two ratio priors' ~1.5 kB each):
# about 300 rollouts' histories at once. One entry may count up to 256 kB (60 steps of ~500
# buckets); larger ones are not kept.
HISTORY = ContentMemo(max_bytes=8 << 20, max_entry_bytes=256 << 10)
