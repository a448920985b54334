"""Shared fixtures: one real Prometheus per test session, planted with known rollouts.

Data runs from two hours before the session's anchor time to ten minutes after it, so both
explicit past windows and "now" windows land on planted samples (webhook/lab/).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import (
    FUTURE_SECONDS,
    HISTORY_SECONDS,
    STOPPED_BEFORE,
    cpu_heavy_sides,
    extra_series,
    healthcare_series,
    restarting_sides,
    standard_sides,
    stopping_sides,
    trading_series,
)
from webhook.settings import load_settings


@dataclass(frozen=True)
class Lab:
    url: str
    anchor: float  # an instant inside the planted data, aligned to the minute

    def window(self, minutes: int = 60) -> dict[str, float]:
        """An explicit past window fully inside the planted data."""
        end = self.anchor - 300
        return {"start": end - minutes * 60, "end": end, "step": 60}


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus "
                    "(bash scripts/setup.sh does it)")
    anchor = math.floor(time.time() / 60) * 60
    trading_sides, trading_extra = trading_series()
    going_on, stopping = stopping_sides()
    # the restarting and stopping canaries last: each side's traffic is drawn from its place
    # in the list
    text = render_openmetrics([*standard_sides(), *trading_sides, *restarting_sides(),
                               *going_on, *cpu_heavy_sides()],
                              anchor - HISTORY_SECONDS,
                              anchor + FUTURE_SECONDS, scrape_interval=15.0, seed=7,
                              extra=[*extra_series(), *trading_extra, *healthcare_series()])
    # pods that stop serving before the end of the tests' explicit windows (`Lab.window`)
    stopped = render_openmetrics(stopping, anchor - HISTORY_SECONDS,
                                 anchor - 300 - STOPPED_BEFORE, scrape_interval=15.0, seed=8)
    with PrometheusLab() as prom:
        prom.plant(text)
        prom.plant(stopped)
        url = prom.start()
        yield Lab(url=url, anchor=anchor)


@pytest.fixture(scope="session")
def app(lab: Lab):
    return create_app(load_settings(prometheus_url=lab.url, allow_inline_queries=True,
                                    config_dir=None))


@pytest.fixture()
def client(app):
    return app.test_client()
