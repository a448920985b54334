"""Analysis slots: an analysis waits briefly for a slot instead of an immediate 503; beyond the
worker's admitted analyses (threads − 1) the answer is 503 at once, so a thread always stays
free for /healthz. The source is the lab's real Prometheus with a gate in front of it, to hold
an analysis in its slot for as long as the test wants."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from webhook.app import create_app
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.models import AnalysisRequest
from webhook.observability import BUSY_REFUSALS
from webhook.service import Busy
from webhook.settings import load_settings
from webhook.sources.base import QueryResult, RangeQuery
from webhook.sources.prometheus import PrometheusSource


class Gated:
    """The real source, but each call first waits for `gate` (a slow upstream)."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        self.entered.release()
        self.gate.wait(10)
        return self.inner.query_range_many(queries, deadline)

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()


@pytest.fixture()
def service(lab):
    settings = load_settings(prometheus_url=lab.url, threads=3, analysis_slots=1,
                             slot_wait_seconds=0.6)
    source = Gated(PrometheusSource(settings))
    app = create_app(settings, source=source)
    svc = app.extensions["canary_judge"]
    request = AnalysisRequest.model_validate({
        "config": "http", "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)})
    yield svc, source, request, app
    source.gate.set()


def _timed(svc, request):
    began = time.monotonic()
    try:
        return svc.analyze(request, "test", "/v1/analyze").verdict, \
            time.monotonic() - began
    except Busy as exc:
        return exc.kind, time.monotonic() - began


def test_an_analysis_waits_for_a_slot_that_frees_in_time(service):
    svc, source, request, _ = service
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_timed, svc, request)
        assert source.entered.acquire(timeout=5)  # the first holds the only slot
        second = pool.submit(_timed, svc, request)
        time.sleep(0.3)
        source.gate.set()  # the slot frees within the second's wait
        assert first.result()[0] == "pass"
        verdict, _ = second.result()
    assert verdict == "pass"  # it waited, it was not turned away


def test_busy_after_the_wait_and_at_once_beyond_the_admitted(service):
    svc, source, request, app = service
    refused = BUSY_REFUSALS._value.get()
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(_timed, svc, request)
        assert source.entered.acquire(timeout=5)
        second = pool.submit(_timed, svc, request)  # waits for the slot (admitted: 2 of 2)
        time.sleep(0.1)
        third = pool.submit(_timed, svc, request)  # the worker is full: at once
        kind, seconds = third.result()
        assert kind == "busy" and seconds < 0.3
        # /healthz never waits behind them
        began = time.monotonic()
        assert app.test_client().get("/healthz").status_code == 200
        assert time.monotonic() - began < 0.5
        kind, seconds = second.result()
        assert kind == "busy" and 0.5 < seconds < 1.5  # waited its 0.6 s, then 503
        source.gate.set()
        assert first.result()[0] == "pass"
    assert _timed(svc, request)[0] == "pass"  # every slot given back
    # both refusals counted, for the CanaryJudgeBusy alert (manifests/components/alerts)
    assert BUSY_REFUSALS._value.get() == refused + 2


def test_slots_go_to_the_longest_waiter_and_a_timed_out_waiter_takes_none():
    """A newcomer never takes a freed slot ahead of those already waiting: under a steady
    queue every analysis waits its turn, which keeps the latency's tail near its median."""
    from webhook.slots import FairSlots

    slots = FairSlots(1)
    assert slots.acquire(0)
    order: list[str] = []

    def waiter(name: str) -> None:
        assert slots.acquire(5)
        order.append(name)
        slots.release()

    threads = []
    for name in ("first", "second", "third"):
        queued = len(slots._waiting)
        thread = threading.Thread(target=waiter, args=(name,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while len(slots._waiting) == queued and time.monotonic() < deadline:
            time.sleep(0.001)
    assert not slots.acquire(0.05)  # gives up; its place in the queue is gone with it
    slots.release()
    assert not slots.acquire(0)  # freed a moment ago, but it is the first waiter's now
    for thread in threads:
        thread.join(5)
    assert order == ["first", "second", "third"]
    assert slots.acquire(0) and not slots.acquire(0)  # exactly one slot, none leaked
