"""/readyz waits until every gunicorn worker has loaded the app (webhook/worker_boot.py): a
controller connecting the moment the first worker answered kept its connections on the
workers already up for as long as it polled."""

from __future__ import annotations

import time

import pytest
import requests
import urllib3

from tests.test_worker_spread import connections_per_worker
from webhook import worker_boot
from webhook.lab.judge import served_judge


@pytest.fixture
def boot_dir(tmp_path, monkeypatch):
    """A master's directory for 3 workers, in this process's environment."""
    monkeypatch.setattr(worker_boot, "_seen_all", False)
    for name in (worker_boot.DIR_ENV, worker_boot.EXPECTED_ENV):
        # set first, so that monkeypatch restores the variable's absence after `prepare`
        # sets it (delenv of an unset variable records nothing to undo)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    path = worker_boot.prepare(3, str(tmp_path))
    yield path
    worker_boot.remove(path)


def test_not_ready_until_every_worker_has_booted(boot_dir):
    assert worker_boot.boot_problem() == (
        "workers starting: 0 of 3 have loaded the app; ready once all have, so early "
        "connections do not all stay on the first")
    worker_boot.mark_booted(101)
    worker_boot.mark_booted(102)
    assert "2 of 3" in worker_boot.boot_problem()
    worker_boot.mark_booted(103)
    assert worker_boot.boot_problem() is None


def test_a_worker_restarted_after_boot_keeps_the_pod_ready(boot_dir, monkeypatch):
    """A crash after boot must not take a serving pod out of its Service, in the worker that
    saw everyone boot or in the restarted one (a process that has not looked yet)."""
    for pid in (101, 102, 103):
        worker_boot.mark_booted(pid)
    assert worker_boot.boot_problem() is None
    worker_boot.forget(102)
    monkeypatch.setattr(worker_boot, "_seen_all", False)  # the restarted worker's first look
    assert worker_boot.boot_problem() is None


def test_a_worker_that_exits_before_all_booted_is_not_counted(boot_dir):
    worker_boot.mark_booted(101)
    worker_boot.mark_booted(102)
    worker_boot.forget(102)
    worker_boot.forget(999)  # never booted: nothing to remove
    worker_boot.mark_booted(103)
    assert "2 of 3" in worker_boot.boot_problem()


def test_outside_gunicorn_nothing_is_waited_for(monkeypatch):
    monkeypatch.setattr(worker_boot, "_seen_all", False)
    monkeypatch.delenv(worker_boot.DIR_ENV, raising=False)
    worker_boot.mark_booted(101)  # the Flask test client, `flask run`: no directory, no error
    assert worker_boot.boot_problem() is None


def test_connections_made_as_soon_as_ready_spread_over_all_workers(lab):
    """The first round, right after /readyz said ready: before, 8 callers connecting then sat
    on the one or two workers already up (tests/test_worker_spread.py had to skip that round)."""
    with served_judge(lab.url, workers=4) as url:
        port = int(url.rsplit(":", 1)[1])
        pools = []
        for _ in range(8):
            pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
            assert pool.request("GET", "/healthz").status == 200
            pools.append(pool)
        time.sleep(0.2)
        counts = connections_per_worker(port)
        ready = requests.get(url + "/readyz", timeout=5)
        for pool in pools:
            pool.close()
    assert sum(counts) == 8 and len(counts) == 5, counts  # four workers and the master
    assert counts[0] <= 3 and counts[3] >= 1, counts
    assert ready.status_code == 200 and ready.json()["problems"] == []
