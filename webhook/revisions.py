"""Which revision of each Flagger canary this pod saw last, and since when: the one thing
the data cannot tell.

Flagger restarts the analysis when a new revision arrives mid-rollout ("New revision
detected! Restarting analysis": failed checks reset, the canary's weight set to 0 for one
tick). The canary keeps its `app=T` labels, so the data show a one-tick pause in one run of
traffic, which `webhook.rollout` rightly reads as a blip, and the new revision would be judged
with the old one's requests. Every hook payload carries the Canary's `checksum` (a hash of its
last applied spec and tracked configs, Flagger's `canaryChecksum`): when it changes, the
rollout of the new checksum began. So this pod keeps, per Flagger canary (namespace, name),
the checksum it saw last and when it first saw it, and a hook whose checksum replaced the
recorded one is judged from that moment on (`window.not_before`).

Why the moment this pod first saw the new checksum, not the last sighting of the old one:
Flagger changes the checksum (`SyncStatus`) in the tick where it sets the canary's weight to
0, and calls no hook with the new one before the next tick, once the canary's pods are all of
the new revision (`IsCanaryReady`); its rollback hooks, then the pre-rollout hooks (weight 0,
iterations 0 after the reset) come first. So every request after a hook with the new checksum
went to the new revision. The old checksum's last hook here came at least a tick before the
weight went to 0 (or several, if other replicas took the calls in between), with the old
revision still serving: judging from then would keep its requests. A replica that missed the
new checksum's first hooks judges from a later one: a shorter window, never another
revision's data. (The first pre-rollout call is no sharper: it follows the rollback hooks in
the same tick.)

Shared by the gunicorn workers of one pod through the pod's store (`shared_steps`), which
Flagger's calls need: it builds a new HTTP client per call (`callWebhook`), so each call is a
new connection to any worker of any replica. Without the store (outside gunicorn, or the store
turned off) each process keeps its own. Replicas share nothing: a replica that never saw the
old checksum has no record and answers as before this existed (README, "Wiring Flagger").

Bounded: records not seen for `expire_after` (the sequential lookback: an older start is
outside any window judged) are forgotten, at most `size` kept per process (least recently
seen dropped first), and in the store they are files pruned with the step data. A caller can
only move the bound of the canary it names, and only later, never earlier.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from webhook.sources.shared_steps import SharedSteps

KIND = "revision"
_MAX_CHECKSUM = 128  # as much as an answer keeps of it (`hooks.analysis_request`)


@dataclass(frozen=True)
class Change:
    """This pod saw `new` replace `old` for a canary, first at `since` (unix seconds)."""

    old: str
    new: str
    since: float

    def note(self, judged_from: str) -> str:
        """What an on-call reads next to the verdict."""
        return (f"judged from {judged_from}, when this replica saw revision {short(self.new)} "
                f"replace {short(self.old)}")


def short(checksum: str) -> str:
    return checksum[:10]


@dataclass(frozen=True)
class _Seen:
    checksum: str
    since: float  # when this pod first saw `checksum` (after `replaced`)
    replaced: str  # the checksum it replaced here; "" if this pod saw no change
    seen: float  # when a hook last carried it


class Revisions:
    """The per-pod record of Flagger canaries' revisions (see the module docstring).

    `clock` says when a hook arrived (injectable: tests plant data at past times)."""

    def __init__(self, expire_after: float, size: int = 4096,
                 shared: SharedSteps | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.expire_after = expire_after
        self.size = size
        self.shared = shared
        self.clock = clock
        self._local: OrderedDict[tuple[str, str], _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, namespace: str, name: str, checksum: str) -> Change | None:
        """Record that a hook for canary `namespace`/`name` carried `checksum` now; the change
        its rollout is judged after, if this pod saw one (None: judge as the data say)."""
        if not checksum:
            return None
        checksum = checksum[:_MAX_CHECKSUM]
        key = (namespace, name)
        now = self.clock()
        with self._lock:  # one process' threads in order; workers race benignly
            before = self._read(key, now)
            if before is not None and before.checksum == checksum:
                seen = _Seen(checksum, before.since, before.replaced, now)
                self._touch(key, seen)
            else:
                seen = _Seen(checksum, now, before.checksum if before else "", now)
                self._write(key, seen)
        if not seen.replaced:
            return None
        return Change(seen.replaced, seen.checksum, seen.since)

    def _read(self, key: tuple[str, str], now: float) -> _Seen | None:
        if self.shared is None:
            seen = self._local.get(key)
        else:
            got = self.shared.read_record(KIND, key)
            seen = _decoded(*got) if got is not None else None
        if seen is None or now - seen.seen > self.expire_after:
            return None
        return seen

    def _touch(self, key: tuple[str, str], seen: _Seen) -> None:
        if self.shared is None:
            self._keep(key, seen)
        else:
            self.shared.touch_record(KIND, key, seen.seen)

    def _write(self, key: tuple[str, str], seen: _Seen) -> None:
        if self.shared is None:
            self._keep(key, seen)
        else:
            self.shared.write_record(KIND, key, {"checksum": seen.checksum, "since": seen.since,
                                                 "replaced": seen.replaced}, seen.seen)

    def _keep(self, key: tuple[str, str], seen: _Seen) -> None:
        self._local[key] = seen
        self._local.move_to_end(key)
        horizon = seen.seen - self.expire_after
        while self._local and (len(self._local) > self.size
                               or next(iter(self._local.values())).seen < horizon):
            self._local.popitem(last=False)


def _decoded(value: dict[str, object], touched: float) -> _Seen | None:
    """A stored record, or None if a field is missing or of the wrong type."""
    checksum, since, replaced = value.get("checksum"), value.get("since"), value.get("replaced")
    if not (isinstance(checksum, str) and isinstance(replaced, str) and checksum
            and isinstance(since, int | float) and not isinstance(since, bool)
            and math.isfinite(since)):
        return None
    return _Seen(checksum[:_MAX_CHECKSUM], float(since), replaced[:_MAX_CHECKSUM], touched)
