"""The record of Flagger canaries' revisions a pod keeps (webhook/revisions.py): a change of
checksum is seen from the moment this pod first saw the new one; the same checksum, a first
sighting, another canary or a forgotten record change nothing; what a caller sends can only
move the bound of the canary it names, and only later; the record stays bounded; and a
record garbled in the pod's store is a miss, never a crash. The judging side (real
Prometheus, the hooks' answers) is in tests/test_edges_rollouts.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from webhook.revisions import Revisions
from webhook.sources.shared_steps import SharedSteps

HOUR = 3600.0


class Clock:
    def __init__(self, now: float = 1_796_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["process", "store"])
def make(request, tmp_path: Path):
    """Revisions kept in the process, or in a pod's store (a new view per call: a worker)."""
    def build(clock: Clock, **kw) -> Revisions:
        shared = (SharedSteps(str(tmp_path), 16 * 2**20) if request.param == "store"
                  else None)
        return Revisions(3 * HOUR, shared=shared, clock=clock, **kw)
    return build


def test_a_new_checksum_is_seen_from_when_it_first_arrived(make):
    clock = Clock()
    revisions = make(clock)
    assert revisions.observe("shop", "web", "aaa") is None  # a first sighting: no bound
    clock.now += 600
    assert revisions.observe("shop", "web", "aaa") is None  # the same revision
    clock.now += 60
    change = revisions.observe("shop", "web", "bbb")
    assert (change.old, change.new, change.since) == ("aaa", "bbb", clock.now)
    restart = clock.now
    clock.now += 900
    assert revisions.observe("shop", "web", "bbb").since == restart  # later hooks: same bound
    assert revisions.observe("shop", "web", "") is None  # no checksum: nothing to tell


def test_another_canary_is_not_moved_and_a_bound_only_moves_later(make):
    clock = Clock()
    revisions = make(clock)
    for ns, name in (("shop", "web"), ("shop", "api"), ("bank", "web")):
        revisions.observe(ns, name, "aaa")
    clock.now += 60
    restart = revisions.observe("shop", "web", "bbb").since
    clock.now += 60
    assert revisions.observe("shop", "api", "aaa") is None
    assert revisions.observe("bank", "web", "aaa") is None
    assert revisions.observe("shop", "web", "bbb").since == restart
    clock.now += 60  # anyone naming shop/web with another checksum: a later bound, not earlier
    assert revisions.observe("shop", "web", "forged").since > restart
    clock.now += 60
    assert revisions.observe("shop", "web", "bbb").since > restart


def test_records_expire_after_the_lookback(make):
    clock = Clock()
    revisions = make(clock)
    revisions.observe("shop", "web", "aaa")
    clock.now += 3 * HOUR + 1  # no hook for longer than any window reaches back
    assert revisions.observe("shop", "web", "bbb") is None  # forgotten: judged as before


def test_the_record_is_bounded():
    """A flood of names keeps `size` canaries; the dropped ones answer as before."""
    clock = Clock()
    revisions = Revisions(3 * HOUR, size=100, clock=clock)
    revisions.observe("shop", "web", "aaa")
    for i in range(10_000):
        revisions.observe("flood", f"n{i}", "x" * 5000)
    assert len(revisions._local) == 100
    assert all(len(seen.checksum) <= 128 for seen in revisions._local.values())
    assert revisions.observe("shop", "web", "bbb") is None


def test_a_garbled_record_in_the_store_is_a_miss(tmp_path: Path):
    clock = Clock()
    revisions = Revisions(3 * HOUR, shared=SharedSteps(str(tmp_path), 2**20), clock=clock)
    revisions.observe("shop", "web", "aaa")
    [path] = [p for p in tmp_path.iterdir() if p.name.endswith(".revision")]
    for garbage in (b"", b"{not json\n", b'{"v":1,"kind":"revision","key":["shop","x"],'
                    b'"value":{"checksum":"aaa","since":1,"replaced":""}}\n',
                    b'{"v":1,"kind":"revision","key":["shop","web"],'
                    b'"value":{"checksum":"aaa","since":NaN,"replaced":""}}\n'):
        path.write_bytes(garbage)
        os.utime(path, (clock.now, clock.now))
        clock.now += 60
        assert revisions.observe("shop", "web", "bbb") is None  # no record: as before
        assert revisions.observe("shop", "web", "aaa").old == "bbb"  # written anew
        path = next(p for p in tmp_path.iterdir() if p.name.endswith(".revision"))
