"""Step data and rollout starts shared by the gunicorn workers of one pod, as files.

Each worker caches what it read (`step_cache.StepCache`, `fetching.StartCache`), but a poll
lands on whichever worker accepts its connection: Flagger builds a new HTTP client per webhook
call, so about (W-1)/W of its polls on W workers found a cold or stale cache and re-read the
whole window, the stable's history and the start query over the whole lookback. Here every
worker of a pod also leaves what it read in a directory the master made
(`webhook/shared_dir.py`), and a worker whose own cache lacks a query looks there first.

- One file per step-cache key (expression, step, grid phase) and per start-cache key (start
  query, step), named by a hash of the key; the file carries the key too, checked on read.
  Small JSON records (`read_record`: the Flagger canaries' revisions, `webhook.revisions`)
  live beside them, one file per key, pruned with them.
- No pickle: a file is one line of JSON (key, start, step, size, final_end, label sets,
  dtype and shape), then the raw bytes of `values` (float64) and `present` (one byte each).
  A file that is short, garbled or holds another key is a miss and is removed: it can cost a
  read upstream, never crash a worker or change an answer.
- Written whole to a temporary file in the same directory, then `os.replace`d: a reader opens
  either the old file or the new one, never a torn one; two workers writing one key at once
  both leave a valid file, the last one wins.
- Cheap when nothing changed: a lookup is one `os.stat`; a file whose (mtime, size, inode) is
  the one this process last read or wrote is not read again, its start and settled end are
  remembered. Only a file another worker rewrote is read and decoded.
- Written only when a key's settled steps advanced (or the key is new here): a repeated poll
  within the same step writes nothing.
- Bounded: each process counts the bytes it wrote and, every 1/32 of the bound, scans the
  directory and removes the oldest-written files until they take 3/4 of it; one file holds at
  most 1/32 of the bound. So with up to 8 workers the directory stays within the bound.

Semantics are the in-process caches': only settled steps are trusted, later ones re-read;
pods (replicas) share nothing, and a cold pod answers the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from webhook.shared_dir import DIR_ENV

StepKey = tuple[str, float, float]  # expression, step, grid phase (`step_cache._key`)
StartKey = tuple[str, float]  # start query's expression, step (`fetching.StartCache`)
Signature = tuple[int, int, int]  # mtime_ns, size, inode of a file as last read or written

_VERSION = 1
# `fetching.StartCache`'s marker: the source refused this start query, don't send it again
REJECTED = "rejected"
_REMEMBERED = 65_536  # files whose signature a process remembers (a few MB at most)
_STALE_TEMP_NS = 60 * 10**9  # a temporary file this old was left by a killed writer
_EPS = 1e-9


@dataclass(frozen=True)
class StoredSteps:
    """A step-cache entry as stored: `StepCache` turns it into its own `_Entry`."""

    start: float
    step: float
    labels: tuple[Mapping[str, str], ...]  # each series' labels, sorted by their items
    values: np.ndarray  # len(labels) × size, float64 (read-only when decoded)
    present: np.ndarray  # len(labels) × size, bool
    size: int
    final_end: float  # last step that will not be read again
    asked: float  # the start of the query that produced it


class SharedSteps:
    """The files of one pod's shared store, as one worker process sees them."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_file = max(max_bytes // 32, 4096)
        self.prune_every = max(max_bytes // 32, 1)
        self.prune_to = max_bytes * 3 // 4
        # per file name: its signature as last read or written here, its start and final_end
        self._seen: OrderedDict[str, tuple[Signature, float, float]] = OrderedDict()
        self._written = 0  # bytes written since this process last scanned the directory
        self._lock = threading.Lock()
        self._pruning = threading.Lock()

    # -- step data -----------------------------------------------------------------------

    def read_steps(self, key: StepKey, holds: float, final_end: float | None
                   ) -> StoredSteps | None:
        """The stored steps of `key` if they hold step `holds` and settle more steps than the
        caller's own entry (its `final_end`, None: it has none); else None."""
        name = _name("steps", key)
        path = os.path.join(self.path, name)
        try:
            st = os.stat(path)
        except OSError:
            self._forget(name)
            return None
        with self._lock:
            seen = self._seen.get(name)
        if seen is not None and seen[0] == _signature(st) and not _better(
                seen[1], seen[2], holds, final_end):
            return None  # unchanged since this process read or wrote it, and no better
        got = self._read(path)
        if got is None:
            return None
        data, sig = got
        stored = _decode_steps(data, key)
        if stored is None:
            self._discard(name, path, sig)
            return None
        self._remember(name, sig, stored.start, stored.final_end)
        return stored if _better(stored.start, stored.final_end, holds, final_end) else None

    def write_steps(self, key: StepKey, stored: StoredSteps) -> bool:
        """Leave `stored` for the other workers if its settled steps advanced past the file's
        as this process last saw it (or there is none); whether it was written."""
        name = _name("steps", key)
        with self._lock:
            seen = self._seen.get(name)
        if seen is not None and seen[2] >= stored.final_end - _EPS:
            return False
        if 9 * len(stored.labels) * stored.size > self.max_file:
            return False  # too large for this bound: not even encoded
        try:
            blob = _encode_steps(key, stored)
        except ValueError:  # a time that is not finite (JSON has no NaN): keep it to itself
            return False
        return self._write(name, blob, stored.start, stored.final_end)

    # -- rollout starts ------------------------------------------------------------------

    def read_start(self, key: StartKey) -> tuple[bool, float | str | None]:
        """Whether a worker stored a start for `key`, and its value (a time, None: no traffic
        seen, or the start cache's rejection marker)."""
        name = _name("start", key)
        path = os.path.join(self.path, name)
        got = self._read(path)
        if got is None:
            return False, None
        data, sig = got
        found, value = _decode_start(data, key)
        if not found:
            self._discard(name, path, sig)
        return found, value

    def write_start(self, key: StartKey, value: float | str | None) -> bool:
        header = {"v": _VERSION, "kind": "start", "key": list(key), "value": value}
        try:
            blob = json.dumps(header, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        except ValueError:
            return False
        return self._write(_name("start", key), blob, math.nan, math.nan)

    # -- small records (`webhook.revisions`) ------------------------------------------------

    def read_record(self, kind: str, key: Sequence[str]) -> tuple[dict[str, object], float] | None:
        """The record a worker left for `key` (a JSON object) and when it was last written or
        `touch`ed (the file's mtime), or None. A garbled file or one of another key is a miss
        and is removed."""
        name = _name(kind, key)
        path = os.path.join(self.path, name)
        got = self._read(path)
        if got is None:
            return None
        data, sig = got
        value = _decode_record(data, kind, key)
        if value is None:
            self._discard(name, path, sig)
            return None
        return value, sig[0] / 1e9

    def write_record(self, kind: str, key: Sequence[str], value: Mapping[str, object],
                     at: float) -> bool:
        """Leave `value` for `key` (replacing any), stamped `at` (the writer's clock)."""
        header = {"v": _VERSION, "kind": kind, "key": list(key), "value": dict(value)}
        try:
            blob = json.dumps(header, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        except (ValueError, TypeError):
            return False
        name = _name(kind, key)
        if not self._write(name, blob, math.nan, math.nan):
            return False
        self.touch_record(kind, key, at)
        return True

    def touch_record(self, kind: str, key: Sequence[str], at: float) -> None:
        """Mark `key`'s record as used `at`: pruning removes the oldest-written files first,
        and a record in use must outlive step data nobody asks for any more."""
        with contextlib.suppress(OSError, ValueError, OverflowError):
            os.utime(os.path.join(self.path, _name(kind, key)), ns=(int(at * 1e9),) * 2)

    # -- files ---------------------------------------------------------------------------

    def _read(self, path: str) -> tuple[bytes, Signature] | None:
        try:
            with open(path, "rb") as f:
                sig = _signature(os.fstat(f.fileno()))
                if sig[1] > self.max_file + 4096:
                    return b"", sig  # larger than any file this store writes: garbled
                return f.read(), sig
        except OSError:
            return None

    def _write(self, name: str, blob: bytes, start: float, final_end: float) -> bool:
        if len(blob) > self.max_file:
            return False
        cost = _pages(len(blob))
        with self._lock:
            scan = self._written + cost > self.prune_every
            self._written = 0 if scan else self._written + cost
        if scan:
            self._prune()
            with self._lock:
                self._written += cost
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path)
        except OSError:  # the directory is gone (the master is exiting) or full
            return False
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view):]
                sig = _signature(os.fstat(fd))
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(self.path, name))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        if not math.isnan(final_end):
            self._remember(name, sig, start, final_end)
        return True

    def _prune(self) -> None:
        """Remove the oldest-written files until those left take `prune_to` bytes."""
        if not self._pruning.acquire(blocking=False):
            return  # another thread of this process is at it
        try:
            files = []
            total = 0
            now = time.time_ns()  # the clock tmpfs stamps files with (coarser, never ahead)
            with os.scandir(self.path) as it:
                for item in it:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    temporary = item.name.startswith(".tmp-")
                    if temporary and now - st.st_mtime_ns > _STALE_TEMP_NS:
                        with contextlib.suppress(OSError):
                            os.unlink(item.path)
                        continue
                    if temporary or item.name.endswith((".steps", ".start", ".revision")):
                        files.append((st.st_mtime_ns, footprint(st), item.path))
                        total += files[-1][1]
            if total <= self.prune_to:
                return
            files.sort()
            for _, size, path in files:
                if total <= self.prune_to:
                    break
                if not os.path.basename(path).startswith("."):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    total -= size
        except OSError:
            return
        finally:
            self._pruning.release()

    def _remember(self, name: str, sig: Signature, start: float, final_end: float) -> None:
        with self._lock:
            self._seen[name] = (sig, start, final_end)
            self._seen.move_to_end(name)
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._seen.pop(name, None)

    def _discard(self, name: str, path: str, sig: Signature) -> None:
        """Remove a garbled file, unless a writer has replaced it since it was read."""
        self._forget(name)
        with contextlib.suppress(OSError):
            if _signature(os.stat(path)) == sig:
                os.unlink(path)


_stores: dict[tuple[str, int], SharedSteps] = {}
_stores_lock = threading.Lock()


def open_store(max_mb: float) -> SharedSteps | None:
    """This process' view of the store its gunicorn master made (`webhook/shared_dir.py`), one
    per directory and bound; None outside gunicorn (no directory named) or with a bound of 0."""
    path = os.environ.get(DIR_ENV)
    max_bytes = int(max_mb * 2**20)
    if not path or max_bytes <= 0 or not os.path.isdir(path):
        return None
    with _stores_lock:
        store = _stores.get((path, max_bytes))
        if store is None:
            store = _stores[(path, max_bytes)] = SharedSteps(path, max_bytes)
        return store


# -- format ------------------------------------------------------------------------------

_names: dict[tuple[str, tuple[object, ...]], str] = {}


def _name(kind: str, key: Sequence[object]) -> str:
    """The file name of a key: a hash of its JSON (remembered: half a lookup's cost)."""
    memo = (kind, tuple(key))
    name = _names.get(memo)
    if name is None:
        if len(_names) >= _REMEMBERED:
            _names.clear()
        text = json.dumps([kind, *key], separators=(",", ":"))
        name = _names[memo] = hashlib.sha256(text.encode()).hexdigest()[:40] + "." + kind
    return name


def _signature(st: os.stat_result) -> Signature:
    return st.st_mtime_ns, st.st_size, st.st_ino


def _better(start: float, final_end: float, holds: float, own_final_end: float | None) -> bool:
    return start <= holds + _EPS and (own_final_end is None or final_end > own_final_end + _EPS)


def footprint(st: os.stat_result) -> int:
    """Bytes a file takes: its size, or the pages holding it where more (tmpfs allocates
    whole pages: a 300-byte start file takes 4 KiB of the pod's memory)."""
    return max(st.st_size, getattr(st, "st_blocks", 0) * 512)


def _pages(size: int) -> int:
    return -(-size // 4096) * 4096


def _encode_steps(key: StepKey, stored: StoredSteps) -> bytes:
    rows = len(stored.labels)
    header = {"v": _VERSION, "kind": "steps", "key": list(key), "start": stored.start,
              "step": stored.step, "size": stored.size, "final_end": stored.final_end,
              "asked": stored.asked, "labels": [dict(m) for m in stored.labels],
              "dtype": "<f8", "shape": [rows, stored.size]}
    # json.dumps escapes newlines inside strings: the header is exactly one line
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    values = np.ascontiguousarray(stored.values, dtype="<f8").reshape(rows, stored.size)
    present = np.ascontiguousarray(stored.present, dtype=np.uint8).reshape(rows, stored.size)
    return b"".join((head, b"\n", values.tobytes(), present.tobytes()))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value)


def _decode_steps(data: bytes, key: StepKey) -> StoredSteps | None:
    """The steps a file holds, or None if it is not a whole, well-formed file of `key`."""
    try:
        cut = data.find(b"\n")
        if cut < 0:
            return None
        header = json.loads(data[:cut])
        if not isinstance(header, dict) or header.get("v") != _VERSION or \
                header.get("kind") != "steps" or header.get("key") != list(key) or \
                header.get("dtype") != "<f8":
            return None
        start, step, final_end, asked = (header.get(f) for f in ("start", "step", "final_end",
                                                                  "asked"))
        size, shape, labels = header.get("size"), header.get("shape"), header.get("labels")
        if not all(map(_finite, (start, step, final_end, asked))) or step != key[1] or \
                not isinstance(size, int) or isinstance(size, bool) or size < 1 or \
                not isinstance(labels, list) or shape != [len(labels), size]:
            return None
        if round(math.fmod(start, step), 6) != key[2] or asked < start or \
                final_end > start + (size - 1) * step + 1e-6:
            return None  # off the key's grid, or settled past its own last step
        if not all(isinstance(m, dict) and all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in m.items()) for m in labels):
            return None
        keys = [tuple(sorted(m.items())) for m in labels]
        if keys != sorted(set(keys)):
            return None  # series are held sorted by their labels, each once
        count = len(labels) * size
        if len(data) - cut - 1 != 9 * count:
            return None
        values = np.frombuffer(data, dtype="<f8", count=count, offset=cut + 1)
        flags = np.frombuffer(data, dtype=np.uint8, count=count, offset=cut + 1 + 8 * count)
        if count and int(flags.max()) > 1:
            return None
        return StoredSteps(float(start), float(step), tuple(labels),
                           values.reshape(len(labels), size),
                           flags.view(bool).reshape(len(labels), size), size,
                           float(final_end), float(asked))
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None


def _decode_start(data: bytes, key: StartKey) -> tuple[bool, float | str | None]:
    try:
        header = json.loads(data) if data.endswith(b"\n") else None
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(header, dict) or header.get("v") != _VERSION or \
            header.get("kind") != "start" or header.get("key") != list(key):
        return False, None
    value = header.get("value")
    if value is None or value == REJECTED or _finite(value):
        return True, float(value) if _finite(value) else value
    return False, None


def _decode_record(data: bytes, kind: str, key: Sequence[str]) -> dict[str, object] | None:
    try:
        header = json.loads(data) if data.endswith(b"\n") else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(header, dict) or header.get("v") != _VERSION or \
            header.get("kind") != kind or header.get("key") != list(key):
        return None
    value = header.get("value")
    return value if isinstance(value, dict) else None
