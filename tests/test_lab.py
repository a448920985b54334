"""The Prometheus lab: planted traffic must come back from a real Prometheus as designed.

Other tests trust the lab's ground truth ("canary has 3x the errors"), so these check it end to
end through PromQL, plus the text format promtool relies on.
"""

from __future__ import annotations

import re
import socket
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import requests

from webhook.lab import (
    DEFAULT_BUCKETS,
    ExtraSeries,
    PrometheusLab,
    TrafficSide,
    render_openmetrics,
)
from webhook.lab.scrapes import exact, increase

needs_prometheus = pytest.mark.skipif(
    not PrometheusLab.available(),
    reason="prometheus/promtool not on PATH (apt-get install prometheus)",
)

START = 1_699_999_200  # a whole hour, far in the past: retention must keep it
END = START + 3600
STABLE = TrafficSide({"app": "x", "rollouts_pod_template_hash": "stable"}, rps=40)
CANARY = TrafficSide(
    {"app": "x", "rollouts_pod_template_hash": "canary"},
    rps=40,
    error_ratio=0.03,
    latency_scale=1.5,
)
REQ = "http_requests_total"
BUCKET = "http_request_duration_seconds_bucket"


def final_values(text: str) -> dict[str, float]:
    """Last value of every series in OpenMetrics text; counters start at 0, so: the totals."""
    last: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            series, value, _ts = line.rsplit(" ", 2)
            last[series] = float(value)
    return last


def samples(text: str) -> dict[str, list[tuple[float, str]]]:
    """(timestamp, value text) per series, in file order."""
    out: dict[str, list[tuple[float, str]]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            series, value, ts = line.rsplit(" ", 2)
            out.setdefault(series, []).append((float(ts), value))
    return out


def planted_requests(text: str, hash_: str, code: str | None = None) -> float:
    return sum(
        v
        for s, v in final_values(text).items()
        if s.startswith(REQ + "{")
        and f'rollouts_pod_template_hash="{hash_}"' in s
        and (code is None or f'code="{code}"' in s)
    )


# --- the text format, no Prometheus needed -------------------------------------------------


def test_render_is_valid_openmetrics() -> None:
    weird = TrafficSide({"app": 'say "hi" \\ bye\nnow'}, rps=5, error_ratio=0.0)
    text = render_openmetrics([STABLE, weird], START, START + 300, seed=1)
    lines = text.split("\n")
    assert lines[-2:] == ["# EOF", ""]
    assert "" not in lines[:-1]
    assert [ln for ln in lines if ln.startswith("# TYPE")] == [
        "# TYPE http_requests counter",
        "# TYPE http_request_duration_seconds histogram",
    ]
    assert r'app="say \"hi\" \\ bye\nnow"' in text

    series = samples(text)
    for name, points in series.items():
        times = [t for t, _ in points]
        assert times == sorted(set(times)), name
        assert times[0] == START and times[-1] == START + 300
        if "_sum{" not in name:
            assert all(re.fullmatch(r"\d+", v) for _, v in points), name
            values = [int(v) for _, v in points]
            assert values[0] == 0 and values == sorted(values), name
    assert all(re.fullmatch(r"\d+", ts) for ts in re.findall(r"^[^#].* (\S+)$", text, re.M))

    # Error series exists even with error_ratio=0; histogram count == +Inf == all requests.
    last = final_values(text)
    app = r'app="say \"hi\" \\ bye\nnow"'
    assert last[f'{REQ}{{{app},code="500"}}'] == 0
    total = last[f'{REQ}{{{app},code="200"}}']
    assert total > 0
    assert last[f'{BUCKET}{{{app},le="+Inf"}}'] == total
    assert last[f"http_request_duration_seconds_count{{{app}}}"] == total


def test_le_values_and_determinism() -> None:
    text = render_openmetrics([STABLE], START, START + 60, seed=3)
    les = re.findall(r'le="([^"]+)"', text)
    assert les[: len(DEFAULT_BUCKETS) + 1] == [
        "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.125", "0.15", "0.2", "0.25",
        "0.3", "0.4", "0.5", "0.6", "0.75", "1", "1.25", "1.5", "2", "2.5", "5", "10", "+Inf",
    ]  # fmt: skip
    assert text == render_openmetrics([STABLE], START, START + 60, seed=3)
    assert text != render_openmetrics([STABLE], START, START + 60, seed=4)
    # A side's data depends on the seed and its position, not on sides after it.
    with_more = render_openmetrics([STABLE, CANARY], START, START + 60, seed=3)
    assert set(text.splitlines()[1:-1]) <= set(with_more.splitlines())


def test_extra_series_and_validation() -> None:
    restarts = ExtraSeries(
        "kube_pod_container_status_restarts_total",
        {"pod": "canary-0"},
        "counter",
        lambda ts: (ts >= START + 30).astype(float) * 2,
    )
    temp = ExtraSeries("cpu_ratio", {}, "gauge", lambda ts: np.full(ts.shape, 0.25))
    text = render_openmetrics([], START, START + 45, extra=[restarts, temp])
    assert text.splitlines() == [
        "# TYPE kube_pod_container_status_restarts counter",
        'kube_pod_container_status_restarts_total{pod="canary-0"} 0 1699999200',
        'kube_pod_container_status_restarts_total{pod="canary-0"} 0 1699999215',
        'kube_pod_container_status_restarts_total{pod="canary-0"} 2 1699999230',
        'kube_pod_container_status_restarts_total{pod="canary-0"} 2 1699999245',
        "# TYPE cpu_ratio gauge",
        "cpu_ratio 0.25 1699999200",
        "cpu_ratio 0.25 1699999215",
        "cpu_ratio 0.25 1699999230",
        "cpu_ratio 0.25 1699999245",
        "# EOF",
    ]
    falling = ExtraSeries("x_total", {}, "counter", lambda ts: -ts)
    with pytest.raises(ValueError, match="non-decreasing"):
        render_openmetrics([], START, START + 45, extra=[falling])
    with pytest.raises(ValueError, match="duplicate series"):
        render_openmetrics([STABLE, STABLE], START, START + 45)
    with pytest.raises(ValueError, match="set by the generator"):
        TrafficSide({"le": "1"}, rps=1)


# --- planted into a real Prometheus ----------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    url: str
    text: str
    session: requests.Session

    def query(self, promql: str, time: float = END) -> list[dict]:
        r = self.session.get(f"{self.url}/api/v1/query", params={"query": promql, "time": time})
        r.raise_for_status()
        return r.json()["data"]["result"]

    def query_range(self, promql: str, step: float = 300) -> list[float]:
        """Values of a single-series result from START + 5 min to END (inside the data)."""
        params = {"query": promql, "start": START + 300, "end": END, "step": step}
        r = self.session.get(f"{self.url}/api/v1/query_range", params=params)
        r.raise_for_status()
        result = r.json()["data"]["result"]
        assert len(result) == 1, result
        return [float(v) for _, v in result[0]["values"]]


@pytest.fixture(scope="module")
def planted() -> Iterator[Planted]:
    if not PrometheusLab.available():
        pytest.skip("prometheus/promtool not on PATH (apt-get install prometheus)")
    text = render_openmetrics([STABLE, CANARY], START, END, scrape_interval=15, seed=11)
    marker = ExtraSeries("lab_marker", {"plant": "second"}, "gauge", lambda ts: ts * 0 + 7)
    with PrometheusLab() as lab, requests.Session() as session:
        lab.plant(text)
        lab.plant(render_openmetrics([], START, END, extra=[marker]))  # several plants work
        yield Planted(lab.start(), text, session)


@needs_prometheus
def test_request_totals_match_plant(planted: Planted) -> None:
    for hash_ in ("stable", "canary"):
        q = f'sum(increase({REQ}{{rollouts_pod_template_hash="{hash_}"}}[5m]))'
        served = sum(planted.query_range(q))
        truth = planted_requests(planted.text, hash_)
        assert truth == pytest.approx(40 * 3600, rel=0.02)
        assert served == pytest.approx(truth, rel=0.01)
    app_total = sum(planted.query_range(f'sum(increase({REQ}{{app="x"}}[5m]))'))
    both = planted_requests(planted.text, "stable") + planted_requests(planted.text, "canary")
    assert app_total == pytest.approx(both, rel=0.01)
    assert planted.query('lab_marker{plant="second"}')[0]["value"][1] == "7"


@needs_prometheus
def test_canary_error_ratio_is_three_times_stable(planted: Planted) -> None:
    ratios = {}
    for hash_ in ("stable", "canary"):
        sel = f'rollouts_pod_template_hash="{hash_}"'
        q = f'sum(increase({REQ}{{{sel},code="500"}}[1h])) / sum(increase({REQ}{{{sel}}}[1h]))'
        ratios[hash_] = float(planted.query(q)[0]["value"][1])
        truth = planted_requests(planted.text, hash_, "500") / planted_requests(planted.text, hash_)
        assert ratios[hash_] == pytest.approx(truth, rel=1e-6)
    assert ratios["stable"] == pytest.approx(0.01, rel=0.15)
    assert ratios["canary"] / ratios["stable"] == pytest.approx(3, rel=0.15)


@needs_prometheus
def test_canary_p99_latency_is_one_and_a_half_times_stable(planted: Planted) -> None:
    p99 = {}
    for hash_ in ("stable", "canary"):
        sel = f'rollouts_pod_template_hash="{hash_}"'
        q = f"histogram_quantile(0.99, sum by (le) (rate({BUCKET}{{{sel}}}[5m])))"
        p99[hash_] = statistics.median(planted.query_range(q, step=60))
    # lognormal(median 0.1, sigma 0.6): p99 = 0.404 s, interpolated in the 0.4..0.5 bucket.
    assert p99["stable"] == pytest.approx(0.404, rel=0.1)
    assert p99["canary"] / p99["stable"] == pytest.approx(1.5, rel=0.1)


@needs_prometheus
def test_absent_series_gives_empty_result(planted: Planted) -> None:
    assert planted.query(f'{REQ}{{app="not-planted"}}') == []
    assert planted.query("sum(rate(no_such_metric_total[5m]))") == []


@needs_prometheus
def test_stop_closes_port_and_exit_removes_workdir() -> None:
    with PrometheusLab() as lab:
        workdir = lab.workdir
        url = lab.start()
        assert requests.get(f"{url}/-/ready", timeout=5).status_code == 200
        lab.stop()
        assert lab.url is None
        port = urlparse(url).port
        assert urlparse(url).hostname == "127.0.0.1" and port
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass
    assert not workdir.exists()


@needs_prometheus
def test_plant_reports_promtool_error(tmp_path: Path) -> None:
    with PrometheusLab(tmp_path) as lab, pytest.raises(RuntimeError, match=r"could not plant.*EOF"):
        lab.plant("# TYPE x gauge\nx 1 1700000000\n")  # no final "# EOF"
    assert (tmp_path / "plant-1.om").exists()  # a workdir the caller gave is left alone


def _offgrid_counter() -> tuple[str, str, np.ndarray, np.ndarray]:
    """One target scraped every 15 s at its own phase (7.3 s, 0.4 s jitter): its planted
    text, its 200s counter's series and that counter's sample times and values."""
    side = TrafficSide({"app": "x", "rollouts_pod_template_hash": "offgrid"}, rps=40,
                       scrape_offset=7.3)
    text = render_openmetrics([side], START, END, scrape_interval=15, seed=5, jitter=0.4)
    planted = samples(text)
    ok = next(s for s in planted if s.startswith(REQ + "{") and 'code="200"' in s)
    return (text, ok, np.array([t for t, _ in planted[ok]]),
            np.array([float(v) for _, v in planted[ok]]))


@needs_prometheus
@pytest.mark.parametrize("width", [60, 30])
def test_off_grid_scrapes_and_their_increase_model(width: int) -> None:
    """A target scraped at its own phase, with jitter: Prometheus' `increase(…[step])` sees
    the intervals inside each step only and extrapolates them, and `webhook.lab.scrapes`
    (which the detection benchmark judges off-grid counts with) gives the same numbers."""
    text, ok, ts, values = _offgrid_counter()
    assert ts[0] == pytest.approx(START + 7.3, abs=0.4)
    assert np.all(np.diff(ts) > 14) and not np.allclose((ts - START) % 15, 0, atol=0.01)
    with PrometheusLab() as lab, requests.Session() as session:
        lab.plant(text)
        url = lab.start()
        r = session.get(f"{url}/api/v1/query_range", params={
            "query": f"increase({ok}[{width}s])", "start": START + 300, "end": END,
            "step": width})
        got = np.array([[float(t), float(v)] for t, v in r.json()["data"]["result"][0]["values"]])
    model = increase(ts, values, got[:, 0], width)
    assert model == pytest.approx(got[:, 1], rel=1e-6)  # timestamps: float s vs int ms
    # each step misses the interval between its first scrape and the step before's last one,
    # and scales up the rest: not whole requests, yet the window's total is about right
    assert not np.allclose(got[:, 1], np.round(got[:, 1]))
    truth = np.interp(got[-1, 0], ts, values) - np.interp(got[0, 0] - width, ts, values)
    assert got[:, 1].sum() == pytest.approx(truth, rel=0.03)


@needs_prometheus
@pytest.mark.parametrize("width", [60, 20, 5])
def test_exact_counts_and_their_model(width: int) -> None:
    """The built-in configs' per-step count, the change of the last sample since the step
    before's, in a real Prometheus: `webhook.lab.scrapes.exact` (the detection benchmark's
    model of it) gives the same numbers, whole requests, and the steps add up to the planted
    total over the range, at steps longer and shorter than the scrape interval."""
    text, ok, ts, values = _offgrid_counter()
    query = (f"((last_over_time({ok}[{width}s]) - last_over_time({ok}[1h] offset {width}s))"
             f" >= 0) or last_over_time({ok}[{width}s])")
    with PrometheusLab() as lab, requests.Session() as session:
        lab.plant(text)
        url = lab.start()
        r = session.get(f"{url}/api/v1/query_range", params={
            "query": query, "start": START + 300, "end": END, "step": width})
        got = np.array([[float(t), float(v)] for t, v in r.json()["data"]["result"][0]["values"]])
    ends = START + 300 + width * np.arange(round((END - START - 300) / width) + 1)
    model = exact(ts, values, ends, width)
    assert np.array_equal(ends[np.isfinite(model)], got[:, 0])  # the steps with a sample
    assert model[np.isfinite(model)] == pytest.approx(got[:, 1], abs=1e-9)
    assert np.array_equal(got[:, 1], np.round(got[:, 1]))
    truth = values[ts <= END][-1] - values[ts <= START + 300 - width][-1]
    assert got[:, 1].sum() == truth


def _without(text: str, holes: list[tuple[float, float]]) -> str:
    """`text` without the samples whose time falls in one of `holes` ([since, until)): a
    target not scraped then, or a Prometheus that was down."""
    def kept(line: str) -> bool:
        if line.startswith("#"):
            return True
        t = float(line.rsplit(" ", 1)[1])
        return not any(since <= t < until for since, until in holes)
    return "\n".join(line for line in text.splitlines() if kept(line)) + "\n"


@needs_prometheus
def test_exact_counts_after_scrape_gaps_and_their_model() -> None:
    """A target not scraped for 6, 40 and 70 minutes (unreachable, or Prometheus down): with
    the built-in configs' hour-long lookback the step after a gap counts the gap's increments
    once, so the steps still add up to the planted total (with the 5-minute lookback they
    had before, the 6- and 40-minute gaps counted the whole value again); after a gap longer
    than the hour, the series has no earlier sample and counts its whole value again. In a
    real Prometheus and in `exact` alike."""
    span = 4 * 3600
    side = TrafficSide({"app": "x", "rollouts_pod_template_hash": "gaps"}, rps=40,
                       scrape_offset=7.3)
    full = render_openmetrics([side], START, START + span, scrape_interval=15, seed=5,
                              jitter=0.4)
    holes = [(START + 1800, START + 1800 + 360), (START + 3600, START + 3600 + 2400),
             (START + 7800, START + 7800 + 4200)]
    text = _without(full, holes)
    planted = samples(text)
    ok = next(s for s in planted if s.startswith(REQ + "{") and 'code="200"' in s)
    ts = np.array([t for t, _ in planted[ok]])
    values = np.array([float(v) for _, v in planted[ok]])
    assert len(planted[ok]) < len(samples(full)[ok])
    query = (f"sum(((last_over_time({ok}[60s]) - last_over_time({ok}[1h] offset 60s))"
             f" >= 0) or last_over_time({ok}[60s]))")  # as the configs sum their series
    first = START + 600
    with PrometheusLab() as lab, requests.Session() as session:
        lab.plant(text)
        url = lab.start()
        r = session.get(f"{url}/api/v1/query_range", params={
            "query": query, "start": first, "end": START + span, "step": 60})
        got = np.array([[float(t), float(v)] for t, v in r.json()["data"]["result"][0]["values"]])
    ends = first + 60 * np.arange(round((span - 600) / 60) + 1)
    model = exact(ts, values, ends, 60)
    assert np.array_equal(ends[np.isfinite(model)], got[:, 0])
    assert model[np.isfinite(model)] == pytest.approx(got[:, 1], abs=1e-9)
    truth = values[-1] - values[ts <= first - 60][-1]
    before_long_gap = values[ts < holes[2][0]][-1]  # what the series had counted by then
    assert got[:, 1].sum() == truth + before_long_gap
    # the 6- and 40-minute gaps alone: every step up to the long gap adds up exactly
    upto = got[:, 0] < holes[2][0]
    last = got[upto, 0][-1]
    assert got[upto, 1].sum() == values[ts <= last][-1] - values[ts <= first - 60][-1]
