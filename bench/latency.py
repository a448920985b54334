"""What the judge costs next to what Prometheus costs for the same questions, in one run.

    python bench/latency.py [--runs 200] [--soak 60] [--out REPORT]
    python bench/latency.py --soak 600          # the 10-minute memory soak
    python bench/latency.py --tiny              # seconds: CI checks the report's shape
    python bench/latency.py --table FILE.json   # print the README table of a report

Every figure is reported with its reference measured in the same run on the same machine,
against a real Prometheus with planted rollouts (webhook.lab) and `canary-judge serve`
(gunicorn, as deployed). The two sides do not move alike with the machine, so the report's
`machine` says what the run ran on and how busy other work kept it (`machine()`):

- single: one analysis as Argo asks it (`http` config, POST /v1/analyze), sequential without a
  window and fixed mode, vs the same window's range queries (ten, each distinct one once) sent
  by a perfect client (pooled connections, all concurrent) and by a sequential one (one after
  another). p50 ratios. The canary began ~10 minutes before the run (the stable long before),
  so the window the judge judges (read off its answer) is the ~10-minute window whose queries
  the perfect client sends. The judge's queries also cover the stable's history before that
  window (60 steps), and a worker's first poll of a question sends the start query first: that
  is its own work. Next to the references' ten requests, the judge's upstream HTTP requests per
  analysis (its own `canary_judge_upstream_queries_total`: queries on one grid go as two
  unions at once, `halves` below).
- concurrent: 8 and 32 callers, each polling its own rollout (a canary of its own, begun ~10
  minutes before the run) as Argo does, vs Prometheus answering the same judged windows'
  query sets directly with the same number of perfect clients: rate, p50, p99, errors; the
  two take turns in `SLICES` slices each, so drift on the machine falls on both.
- soak: resident memory of the gunicorn workers while 8 callers poll for `--soak` seconds.
- polls: samples read from Prometheus per poll at poll 1, 20 and 200 of a long rollout polled
  every minute from its start (sequential, no window: a 3 h lookback to find the start), with
  and without the step cache, the start query's own samples apart; and the same polls read the
  old way (`whole_lookback_*`: every query over the whole lookback, no start query).
- idle (only when named in `--only`): upstream requests per poll of 4 rollouts polled in turn
  through one kept-alive connection, idle 7 s between rounds, with the judge's keep-alive and
  with 5 s.
- flagger: 4 rollouts polled in turn, each poll on a new connection as Flagger's webhook client
  makes one per call, so it lands on whichever worker accepts it: samples read from Prometheus
  and from the step cache per repeated poll (the judge's own
  `canary_judge_step_cache_samples_total`), upstream requests and p50 per poll, with the
  workers' shared cache and with it off (`CANARY_JUDGE_SHARED_CACHE_MB=0`: each worker's own).
- halves: the judge as served (a poll's union cut in two halves sent at once) against the
  same judge sending one union (CANARY_JUDGE_PROMETHEUS_UNION_REQUESTS=1), two servers side by
  side, called in turn with the perfect client: p50 of each and their ratios to it.
- judges: CPU time of the sequential `ratio` and `quantile` judges on 1,375 … 11,000 steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import requests
import urllib3

from webhook.analysis import Policy, plan_queries, resolve_metrics, resolve_window, run_analysis
from webhook.configs import load_registry
from webhook.fetching import START_METRIC, StartCache
from webhook.judge import judge_quantile, judge_ratio
from webhook.judge.histogram import Histogram
from webhook.lab import DEFAULT_BUCKETS, PrometheusLab, render_openmetrics
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import (
    ARGO_APP,
    ARGO_CANARIES,
    ARGO_CPU,
    ARGO_STABLE,
    BASE,
    NAMESPACE,
    standard_sides,
)
from webhook.lab.synth import TrafficSide
from webhook.models import AnalysisRequest
from webhook.settings import load_settings
from webhook.sources.base import QueryResult, RangeQuery
from webhook.sources.prometheus import PrometheusSource, PromQL, combine, promql
from webhook.sources.step_cache import StepCache

STEP = 60
FRESH_MINUTES = 10  # how long before the run the canaries of `single` and `concurrent` began
FRESH = 32  # canaries begun FRESH_MINUTES ago: one per concurrent caller
LONG = "10a9b8c7d"  # the long rollout of `polls`, begun one step before its first poll


def fresh_hash(index: int) -> str:
    """Pod-template hash of the `index`-th canary begun FRESH_MINUTES before the run."""
    return f"f{index:08d}"


def planted_canaries(now: float, polls: int) -> list[tuple[list[TrafficSide], float]]:
    """The bench's own canaries and when they began: FRESH canaries (healthy, errors, slow in
    turn) FRESH_MINUTES before `now`, and the long rollout one step before the first of
    `polls` polls."""
    diffs = list(ARGO_CANARIES.values())
    fresh = [replace(BASE, labels=_labels(fresh_hash(i)), **ARGO_CPU, **diffs[i % len(diffs)])
             for i in range(FRESH)]
    return [(fresh, now - FRESH_MINUTES * 60),
            ([replace(BASE, labels=_labels(LONG), **ARGO_CPU)], now - polls * STEP)]


def _labels(hash_: str) -> dict[str, str]:
    return {"app": ARGO_APP, "namespace": NAMESPACE, "rollouts_pod_template_hash": hash_}


def summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, math.ceil(p * len(ms)) - 1)], 2)

    return {"n": len(ms), "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ms), 2)}


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def body(hash_: str, mode: str | None = None, window: dict | None = None) -> dict:
    """A rollout question: its canary (by pod-template hash), mode and window."""
    out: dict = {"config": "http", "canary": {"rollouts_pod_template_hash": hash_},
                 "stable": {"rollouts_pod_template_hash": ARGO_STABLE}}
    if mode:
        out["mode"] = mode
    if window:
        out["window"] = window
    return out


def judged_window(session: requests.Session, judge: str, request_body: dict) -> dict:
    """The window the judge judges for this question now, read off its answer: an explicit
    window for the perfect client's queries."""
    r = session.post(judge + "/v1/analyze", json=request_body, timeout=10)
    assert r.status_code == 200, r.text
    window = r.json()["window"]
    start, end = (datetime.fromisoformat(window[k].replace("Z", "+00:00")).timestamp()
                  for k in ("start", "end"))
    return {"start": start, "end": end}


def query_set(request_body: dict, now: float) -> list[RangeQuery]:
    """The range queries the judge sends for this question (the direct client's work): each
    distinct one once, as the judge sends a query several metrics read (http's `traffic`
    reads `error_ratio`'s total)."""
    request = AnalysisRequest.model_validate(request_body)
    registry, policy = load_registry(None), Policy()
    config = registry.get("http")
    assert config is not None
    selectors = {side: promql.render_selector(promql.matchers_from_labels(
        getattr(request, side), side)) for side in ("canary", "stable")}
    window = resolve_window(request, config, policy, now)
    planned = plan_queries(resolve_metrics(config, request, policy), selectors, config.vars,
                           window)
    return list({(q.expr, q.start, q.end, q.step): q for q in planned}.values())


class Direct:
    """A perfect client for Prometheus: one pooled urllib3 connection pool (lighter than a
    requests Session), uncompressed answers (compressing costs Prometheus more than loopback
    saves), a query set's queries at once (`concurrency` threads: six at a time answer
    `http`'s ten as soon as ten threads do, 6.62 against 6.75 ms p50 over 300 interleaved
    rounds on 2026-12-03, the client's parsing being bound by one GIL), and no work on an
    answer beyond parsing its JSON and checking its status. The judge's own upstream client
    is no lighter than this."""

    def __init__(self, url: str, concurrency: int = 6) -> None:
        parts = urllib3.util.parse_url(url)
        self.path = (parts.path or "").rstrip("/") + "/api/v1/query_range"
        self.pool = urllib3.HTTPConnectionPool(parts.host, parts.port, maxsize=64, block=False,
                                               timeout=urllib3.Timeout(10))
        self.threads = ThreadPoolExecutor(concurrency)

    def one(self, q: RangeQuery) -> None:
        self.answer(q)

    def answer(self, q: RangeQuery, stats: bool = False) -> dict:
        """The query's parsed answer; `stats`: with Prometheus' own timings (`stats=all`)."""
        fields = {"query": q.expr, "start": str(q.start), "end": str(q.end), "step": str(q.step)}
        if stats:
            fields["stats"] = "all"
        r = self.pool.request("POST", self.path, encode_multipart=False,
                              headers={"Accept-Encoding": "identity"}, fields=fields)
        answer = json.loads(r.data)
        if r.status != 200 or answer["status"] != "success":
            raise RuntimeError(r.data[:200].decode(errors="replace"))
        return answer

    def concurrent(self, queries: Sequence[RangeQuery]) -> None:
        list(self.threads.map(self.one, queries))

    def sequential(self, queries: Sequence[RangeQuery]) -> None:
        for q in queries:
            self.one(q)


class Caller:
    """The judge's caller as Argo's Go HTTP client is: one pooled keep-alive connection, no
    per-call session machinery (a requests Session spent ~1 ms per call here, which counted
    against the judge though Argo never pays it)."""

    def __init__(self, judge: str) -> None:
        parts = urllib3.util.parse_url(judge)
        self.pool = urllib3.HTTPConnectionPool(parts.host, parts.port, maxsize=4, block=False,
                                               timeout=urllib3.Timeout(10))

    def analyze(self, request_body: dict) -> tuple[int, bytes]:
        r = self.pool.request("POST", "/v1/analyze", body=json.dumps(request_body).encode(),
                              headers={"Content-Type": "application/json"})
        return r.status, r.data

    def answered(self, request_body: dict) -> None:
        """`analyze`, which must answer 200."""
        status, data = self.analyze(request_body)
        assert status == 200, data[:200]


UPSTREAM_QUERIES = "canary_judge_upstream_queries_total"


def judge_counters(judge: str, prefixes: Sequence[str]) -> list[float]:
    """For each prefix (a counter's name, optionally with labels), the sum of the served
    judge's samples whose line starts with it, over all workers (its /metrics aggregates
    them), from one read of /metrics."""
    lines = requests.get(judge + "/metrics", timeout=10).text.splitlines()
    return [sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))
            for prefix in prefixes]


def upstream_requests(judge: str) -> float:
    """HTTP requests the served judge has sent its metrics source so far."""
    return judge_counters(judge, [UPSTREAM_QUERIES])[0]


RATIO_BLOCKS = 5
IDLE_PROBE = 3.0  # seconds: how busy the machine is before the run (`machine`)


def question(judge: str, mode: str | None) -> tuple[dict, dict, list[RangeQuery]]:
    """The `single` and `halves` question in `mode`: its body, the window the judge judges for
    it now, and that window's queries (the perfect client's work)."""
    request_body = body(fresh_hash(0), mode)
    window = judged_window(requests.Session(), judge, request_body)
    return request_body, window, query_set(body(fresh_hash(0), mode, window), time.time())


def warm_up(ways: dict[str, Callable[[], object]], runs: int) -> None:
    """A tenth of `runs` calls of each way first: connections, the step cache."""
    for fn in ways.values():
        timed(fn, max(runs // 10, 3))


def interleaved(ways: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Each way's call times over `runs` rounds, one call of each per round in turn, so load on
    the machine falls on all alike."""
    took: dict[str, list[float]] = {key: [] for key in ways}
    for _ in range(runs):
        for key, fn in ways.items():
            took[key] += timed(fn, 1)
    return took


def single(prom: str, judge: str, runs: int) -> dict:
    """One analysis at a time vs the same window's queries from a perfect and a naive client."""
    out: dict = {}
    caller = Caller(judge)
    direct = Direct(prom)
    for name, mode in (("sequential_no_window", None), ("fixed", "fixed")):
        request_body, window, queries = question(judge, mode)

        def analysis(b: dict = request_body) -> None:
            caller.answered(b)

        ways: dict[str, Callable[[], object]] = {
            "judge": analysis, "perfect_client": lambda q=queries: direct.concurrent(q),
            "sequential_client": lambda q=queries: direct.sequential(q)}
        warm_up(ways, runs)
        sent = upstream_requests(judge)
        samples = interleaved(ways, runs)
        sent = upstream_requests(judge) - sent
        # CPU per analysis, each side alone (the rate under load is bound by their sum)
        servers = {"judge_service": judge_pids(judge), "prometheus": prometheus_pids(prom)}
        cpu = {"judge": cpu_per_call(analysis, runs, servers),
               "perfect_client": cpu_per_call(lambda q=queries: direct.concurrent(q), runs,
                                              servers)}
        part = {k: summary(v) for k, v in samples.items()}
        part["cpu_ms_per_call"] = cpu
        part["queries"] = len(queries)  # the references send each query as one request
        part["judge_upstream_requests_per_analysis"] = round(sent / runs, 2)
        part["judged_window_minutes"] = round((window["end"] - window["start"]) / 60, 2)
        part["ratio_to_perfect_client"] = round(
            part["judge"]["p50_ms"] / part["perfect_client"]["p50_ms"], 2)
        # the same ratio in each fifth of the run, in time order: how far it drifts with the
        # machine's state while the run lasts (runs a minute apart differed by up to 0.2×)
        cut = [len(samples["judge"]) * k // RATIO_BLOCKS for k in range(RATIO_BLOCKS + 1)]
        part["ratio_by_block"] = [round(
            statistics.median(samples["judge"][lo:hi])
            / statistics.median(samples["perfect_client"][lo:hi]), 2)
            for lo, hi in itertools.pairwise(cut) if hi > lo]
        part["ratio_to_sequential_client"] = round(
            part["judge"]["p50_ms"] / part["sequential_client"]["p50_ms"], 2)
        out[name] = part
    out["targets"] = {"sequential_no_window": 1.3, "fixed": 1.2}
    return out


@dataclass
class Driven:
    """What `drive` saw: each answered call's latency, the failed calls, the first few
    errors as they read, and the wall time."""

    latencies: list[float]
    errors: int
    shown: list[str]
    wall: float


def drive(callers: int, seconds: float, call: Callable[[int], None]) -> Driven:
    """`callers` threads each calling `call(i)` back to back for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    errors = [0] * callers
    shown: list[str] = []  # the first few errors, as they read
    stop = time.monotonic() + seconds

    def caller(i: int) -> None:
        while time.monotonic() < stop:
            began = time.perf_counter()
            try:
                call(i)
            except Exception as exc:  # counted; the run goes on
                errors[i] += 1
                if len(shown) < 5:
                    shown.append(str(exc)[:200])
                continue
            latencies[i].append(time.perf_counter() - began)

    began = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Driven([x for lat in latencies for x in lat], sum(errors), shown,
                  time.perf_counter() - began)


def summed(runs: Sequence[Driven]) -> dict:
    """Latency summary, rate (answers over the runs' summed wall time) and errors."""
    flat = [x for run in runs for x in run.latencies]
    out = {**summary(flat or [0.0]),
           "rate_per_s": round(len(flat) / sum(run.wall for run in runs), 1),
           "errors": sum(run.errors for run in runs)}
    shown = [text for run in runs for text in run.shown][:5]
    if shown:
        out["first_errors"] = shown
    return out


def load(callers: int, seconds: float, call: Callable[[int], None]) -> dict:
    """`callers` threads each calling `call(i)` back to back for `seconds`: `summed`."""
    return summed([drive(callers, seconds, call)])


# The judge's and Prometheus' turns in `concurrent` alternate in this many slices each, so a
# drift of the shared machine (another process, Prometheus' compactions and GC) falls on both
# alike, as `single` interleaves its calls; one turn each, judge first, left the ratio to
# whatever the machine did in the second half.
SLICES = 3


def concurrent(prom: str, judge: str, callers: int, seconds: float) -> dict:
    """`callers` rollouts polled at once: the judge vs Prometheus answering the same sets."""
    bodies = [body(fresh_hash(i)) for i in range(callers)]
    sessions = [requests.Session() for _ in range(callers)]
    sets = [query_set(body(fresh_hash(i), None, judged_window(sessions[i], judge, b)),
                      time.time()) for i, b in enumerate(bodies)]
    directs = [Direct(prom) for _ in range(callers)]
    callers_ = [Caller(judge) for _ in range(callers)]

    def judge_call(i: int) -> None:
        status, data = callers_[i].analyze(bodies[i])
        if status != 200:
            raise RuntimeError(f"{status} {data[:200].decode(errors='replace')}")

    def direct_call(i: int) -> None:
        directs[i].concurrent(sets[i])

    for call in (judge_call, direct_call):  # warm up: connections, caches, both sides
        load(callers, min(2.0, seconds / 4), call)
    turns: dict[str, list[Driven]] = {"judge": [], "prometheus_direct": []}
    sent = upstream_requests(judge)
    for _ in range(SLICES):
        for name, call in (("judge", judge_call), ("prometheus_direct", direct_call)):
            turns[name].append(drive(callers, seconds / SLICES, call))
    sent = upstream_requests(judge) - sent  # only the judge's turns send it anything
    result = {name: summed(runs) for name, runs in turns.items()}
    result["slices"] = SLICES
    j, p = result["judge"], result["prometheus_direct"]
    result["judge_upstream_requests_per_analysis"] = round(sent / max(j["n"], 1), 2)
    result["direct_requests_per_set"] = len(sets[0])
    result["rate_ratio"] = round(j["rate_per_s"] / max(p["rate_per_s"], 1e-9), 2)
    result["judge_p99_over_p50"] = round(j["p99_ms"] / max(j["p50_ms"], 1e-9), 2)
    # the reference's own tail on the same machine: the judge waits on this Prometheus too
    result["prometheus_p99_over_p50"] = round(p["p99_ms"] / max(p["p50_ms"], 1e-9), 2)
    return result


def cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (None elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), None)


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time by state since boot (/proc/stat's `cpu` line; None elsewhere)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(x) for x in first[1:9]] if first[0] == "cpu" else None


def shares(before: list[int] | None, after: list[int] | None) -> dict:
    """Shares of the machine's CPU time between two `cpu_ticks`: `busy` (all but idle and I/O
    wait) and `steal` (time the hypervisor gave another guest); empty off Linux."""
    if before is None or after is None:
        return {}
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent) or 1
    # the states in order: user, nice, system, idle, iowait, irq, softirq, steal
    idle, iowait, steal = spent[3], spent[4], spent[7]
    # one precision for both, so that steal (part of busy) never reads above busy
    return {"busy_share": round((total - idle - iowait) / total, 4),
            "steal_share": round(steal / total, 4)}


def machine(since: list[int] | None) -> dict:
    """The machine the run measures, and how busy other work kept it over the `IDLE_PROBE`
    seconds from `since` (`cpu_ticks` at the run's start). The `single` ratios move with the
    machine, and not the way load would suggest. On 2026-12-03 the same code read 1.37–1.51×
    sequential on one machine, where the judge's workers spent 4.6–6.4 ms of CPU per analysis,
    and 1.12–1.27× on another (3.9 ms), idle before each run; there, one of its two cores kept
    busy by a spinning process lowered the ratio to 1.02× (the perfect client's ten requests at
    once lost more to the taken core than the judge's two)."""
    time.sleep(IDLE_PROBE)
    other = shares(since, cpu_ticks())
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "load_avg": os.getloadavg(),
            **{f"{key}_before_run": value for key, value in other.items()}}


def _pids(match: Callable[[bytes, list[bytes]], bool]) -> list[int]:
    """Processes whose command line and environment `match`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if match(cmd, env):
            out.append(int(pid))
    return out


def judge_pids(judge: str) -> list[int]:
    """The gunicorn master and workers serving `judge` (http://127.0.0.1:PORT)."""
    bind = b"CANARY_JUDGE_BIND=127.0.0.1:" + judge.rsplit(":", 1)[1].encode()
    return _pids(lambda cmd, env: b"gunicorn" in cmd and bind in env)


def prometheus_pids(prom: str) -> list[int]:
    """The Prometheus serving `prom`."""
    flag = b"--web.listen-address=127.0.0.1:" + prom.rsplit(":", 1)[1].encode() + b"\0"
    return _pids(lambda cmd, env: cmd.startswith(b"prometheus\0") and flag in cmd)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU the processes have used so far (those that ended count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_per_call(fn: Callable[[], object], runs: int, servers: dict[str, list[int]]) -> dict:
    """CPU milliseconds per call of `fn`: this process's (the client's) and each server's."""
    before = {k: cpu_seconds(v) for k, v in servers.items()}
    began = time.process_time()
    for _ in range(runs):
        fn()
    out = {"client": round((time.process_time() - began) * 1000 / runs, 2)}
    out.update({k: round((cpu_seconds(v) - before[k]) * 1000 / runs, 2)
                for k, v in servers.items()})
    return out


def worker_rss_mb(port: int) -> float:
    """Resident memory of the gunicorn workers serving `port` (the master's children)."""
    pids = judge_pids(f"http://127.0.0.1:{port}")
    if not pids:
        return math.nan
    master = str(min(pids))
    children = subprocess.run(["ps", "-o", "rss=", "--ppid", master], capture_output=True,
                              text=True, check=False).stdout.split()
    return round(sum(int(x) for x in children) / 1024, 1)


def soak(judge: str, seconds: float, callers: int = 8) -> dict:
    """Memory of the workers while `callers` poll distinct questions for `seconds`."""
    port = int(judge.rsplit(":", 1)[1])
    bodies = [body(fresh_hash(i)) for i in range(callers)]
    sessions = [requests.Session() for _ in range(callers)]
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        began = time.monotonic()
        while not done.is_set():
            samples.append((time.monotonic() - began, worker_rss_mb(port)))
            done.wait(max(seconds / 30, 0.5))

    def call(i: int) -> None:
        r = sessions[i].post(judge + "/v1/analyze", json=bodies[i], timeout=10)
        if r.status_code != 200:
            raise RuntimeError(r.text[:200])

    sampler = threading.Thread(target=sample)
    sampler.start()
    traffic = load(callers, seconds, call)
    done.set()
    sampler.join()
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    half = mb[t >= t[-1] / 2] if t.size else mb
    slope = float(np.polyfit(t, mb, 1)[0]) * 60 if t.size > 2 else 0.0
    return {"seconds": seconds, "callers": callers, "analyses": int(traffic["rate_per_s"]
                                                                    * seconds),
            "errors": traffic["errors"], "rss_mb_first": float(mb[0]) if mb.size else None,
            "rss_mb_last": float(mb[-1]) if mb.size else None,
            "rss_mb_max": float(mb.max()) if mb.size else None,
            "rss_mb_second_half_spread": float(half.max() - half.min()) if half.size else None,
            "rss_mb_per_minute_slope": round(slope, 3)}


# `idle`: a controller polling a few rollouts in turn, idle between rounds for longer than the
# judge's old keep-alive (5 s) and shorter than Go's (90 s).
IDLE_PAUSE = 7.0
IDLE_ROLLOUTS = 4


def idle(prom: str, rounds: int, workers: int | None, threads: int | None) -> dict:
    """Upstream requests per poll when the caller's kept-alive connection sits idle between
    rounds of polls, with the judge's keep-alive and with the 5 s it had before.

    Argo's Go client keeps an idle connection 90 s and reuses the most recent one (urllib3's
    pool is LIFO too). A judge closing it sooner makes every round reconnect, to
    whichever worker (or, behind a Service, replica) accepts first, whose per-process caches
    of the rollout's start and steps may be cold: a cold poll sends the start query and the
    whole window (2-3 requests, ~1,500 samples) instead of one request for the new steps."""
    out: dict = {"pause_seconds": IDLE_PAUSE, "rollouts": IDLE_ROLLOUTS, "rounds": rounds}
    bodies = [body(fresh_hash(i)) for i in range(IDLE_ROLLOUTS)]
    for name, env in (("keepalive_default", None),
                      ("keepalive_5s", {"CANARY_JUDGE_KEEPALIVE_SECONDS": "5"})):
        with served_judge(prom, workers=workers, threads=threads, env=env) as judge:
            caller = Caller(judge)
            per_poll: list[float] = []
            for round_ in range(rounds + 1):
                for request_body in bodies:
                    before = upstream_requests(judge)
                    status, text = caller.analyze(request_body)
                    if status != 200:
                        raise RuntimeError(text[:200].decode(errors="replace"))
                    if round_:  # the first round is every worker's first poll anyway
                        per_poll.append(upstream_requests(judge) - before)
                if round_ < rounds:
                    time.sleep(IDLE_PAUSE)
        out[name] = {"upstream_requests_per_poll": round(statistics.fmean(per_poll), 2),
                     "polls": len(per_poll)}
    return out


# `flagger`: Flagger's webhook client is built anew for each call (a new connection each time).
FLAGGER_ROLLOUTS = 4
CACHE_SAMPLES = "canary_judge_step_cache_samples_total"


def flagger(prom: str, rounds: int, workers: int | None, threads: int | None) -> dict:
    """Per repeated poll, when every poll comes on a new connection (Flagger's way): samples
    read from Prometheus and served from the step cache, upstream requests, and the poll's
    p50, with the workers' shared cache and with each worker's own alone.

    A new connection goes to whichever worker accepts it, so without sharing about (W − 1)/W of
    the polls meet a worker that has not seen the rollout, or saw it several polls ago, and
    reread its window and history. Rounds follow each other without a pause: the polls of a
    round come faster than Flagger's, which makes a step settle between a worker's polls less
    often and so favours the workers' own caches, not the shared one."""
    out: dict = {"rollouts": FLAGGER_ROLLOUTS, "rounds": rounds}
    bodies = [body(fresh_hash(10 + i)) for i in range(FLAGGER_ROLLOUTS)]
    for name, env in (("shared_cache", None),
                      ("per_worker_cache", {"CANARY_JUDGE_SHARED_CACHE_MB": "0"})):
        with served_judge(prom, workers=workers, threads=threads, env=env) as judge:
            parts = urllib3.util.parse_url(judge)
            samples: dict[str, list[float]] = {"upstream": [], "cache": []}
            sent: list[float] = []
            latency: list[float] = []
            counters = [*(f'{CACHE_SAMPLES}{{read_from="{k}"}}' for k in samples),
                        UPSTREAM_QUERIES]
            for round_ in range(rounds + 1):
                for request_body in bodies:
                    before = judge_counters(judge, counters)
                    pool = urllib3.HTTPConnectionPool(parts.host, parts.port, maxsize=1,
                                                      timeout=urllib3.Timeout(10))
                    began = time.perf_counter()
                    r = pool.request("POST", "/v1/analyze",
                                     body=json.dumps(request_body).encode(),
                                     headers={"Content-Type": "application/json"})
                    took = time.perf_counter() - began
                    pool.close()
                    if r.status != 200:
                        raise RuntimeError(r.data[:200].decode(errors="replace"))
                    if round_:  # the first round is the rollouts' first poll on the pod
                        latency.append(took)
                        after = judge_counters(judge, counters)
                        for k, was, now in zip(samples, before, after, strict=False):
                            samples[k].append(now - was)
                        sent.append(after[-1] - before[-1])
        out[name] = {"samples_upstream_per_poll": round(statistics.fmean(samples["upstream"]),
                                                        1),
                     "samples_cached_per_poll": round(statistics.fmean(samples["cache"]), 1),
                     "upstream_requests_per_poll": round(statistics.fmean(sent), 2),
                     "p50_ms": summary(latency)["p50_ms"],
                     "mean_ms": summary(latency)["mean_ms"],  # the cold polls show here
                     "polls": len(latency)}
    return out


class Counting:
    """Counts the samples (series × steps) a source reads from Prometheus, the start query's
    apart."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.samples = 0
        self.start_samples = 0

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        results = self.inner.query_range_many(queries, deadline)
        for r in results:
            n = sum(int(s.present.sum()) if s.present is not None else s.values.size
                    for s in r.series)
            self.samples += n
            self.start_samples += n if r.query.metric == START_METRIC else 0
        return results

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()


class WholeLookback(PromQL):
    """PromQL that cannot write the start query: the analysis reads every query over the
    whole lookback and the start off their data, as before the start query existed."""

    def activity(self, parts: Sequence[tuple[str, bool]]) -> str | None:
        return None


UNION_STEPS = 6  # a repeated poll's unsettled steps: what its combined requests cover


def union(prom: str, runs: int) -> dict:
    """What Prometheus alone spends on one poll's queries (the `http` config's ten over
    `UNION_STEPS` steps), sent the three ways a client can: one tagged union (the judge with
    CANARY_JUDGE_PROMETHEUS_UNION_REQUESTS=1), the ten at once (the perfect client), and two unions
    at once (the judge's default: the halves `combine.plan` cuts). Round trip p50 and this client's
    CPU per call, interleaved; evaluation time from Prometheus' own `stats=all`. The Prometheus part
    of the floor under any analysis of these queries (README Capacity), with no judge in the way."""
    queries = query_set(body(fresh_hash(0)), time.time())
    end, step = queries[0].end, queries[0].step
    start = end - (UNION_STEPS - 1) * step

    def over_the_poll(exprs: Sequence[str]) -> RangeQuery:
        expr = exprs[0] if len(exprs) == 1 else promql.tagged_union(exprs, combine.PART_LABEL)
        return RangeQuery(None, expr, start, end, step, "union")

    parts = [over_the_poll([q.expr]) for q in queries]
    one = over_the_poll([q.expr for q in queries])
    halves = [over_the_poll(batch.exprs) for batch in combine.plan(
        [replace(q, start=start) for q in queries], combine.RejectionMemo(), spread=2)]
    assert len(halves) == 2
    direct = Direct(prom, concurrency=len(parts))
    ways: dict[str, Callable[[], object]] = {
        "one_union": lambda: direct.one(one),
        "six_at_once": lambda: direct.concurrent(parts),
        "two_unions_at_once": lambda: direct.concurrent(halves),
    }
    for fn in ways.values():
        timed(fn, max(runs // 10, 3))  # warm up
    took: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, fn in ways.items():
            began, cpu = time.perf_counter(), time.process_time()
            fn()
            took[name].append((time.perf_counter() - began, time.process_time() - cpu))

    def evaluation(q: RangeQuery) -> float:
        """Median of Prometheus' evalTotalTime over a few asks, in ms."""
        seen = [direct.answer(q, stats=True)["data"]["stats"]["timings"]["evalTotalTime"]
                for _ in range(max(runs // 10, 3))]
        return round(statistics.median(seen) * 1000, 3)

    out: dict = {"steps": UNION_STEPS, "queries": len(parts)}
    for name, samples in took.items():
        out[name] = {"p50_ms": round(statistics.median(t for t, _ in samples) * 1000, 2),
                     "client_cpu_ms": round(statistics.mean(c for _, c in samples) * 1000, 2)}
    out["one_union"]["evaluation_ms"] = evaluation(one)
    out["six_at_once"]["evaluation_ms_summed"] = round(sum(map(evaluation, parts)), 3)
    empty = over_the_poll(["vector(1)"])
    out["empty_query_p50_ms"] = round(statistics.median(
        timed(lambda: direct.one(empty), runs)) * 1000, 2)
    direct.threads.shutdown()
    return out


def polls(prom: str, now: float, marks: Sequence[int]) -> dict:
    """Samples read per poll of one long rollout, polled every minute from its start as Argo
    does (sequential, no window), with and without the step cache; the cache's clock is the
    poll's time. `start_query` holds the start query's own samples (in the totals too)."""
    settings = load_settings(prometheus_url=prom)
    registry, policy = load_registry(None), Policy()
    request = AnalysisRequest.model_validate(body(LONG))
    out: dict = {}
    last = max(marks)
    for name in ("uncached", "cached", "whole_lookback_uncached", "whole_lookback_cached"):
        counting = Counting(PrometheusSource(settings))
        clock = [0.0]
        source = (StepCache(counting, clock=lambda c=clock: c[0]) if name.endswith("_cached")
                  or name == "cached" else counting)
        language = WholeLookback() if name.startswith("whole") else None
        starts = StartCache()  # this replica's, cold at poll 1
        per_poll: dict[str, int] = {}
        start_query: dict[str, int] = {}
        total = 0
        for poll in range(1, last + 1):
            at = now - (last - poll) * STEP
            clock[0] = at
            before, before_start = counting.samples, counting.start_samples
            verdict = run_analysis(request, registry, source, policy, now=at,
                                   language=language, starts=starts).verdict
            assert verdict in ("pass", "inconclusive"), verdict
            total += counting.samples - before
            if poll in marks:
                per_poll[f"poll_{poll}"] = counting.samples - before
                start_query[f"poll_{poll}"] = counting.start_samples - before_start
        out[name] = {**per_poll, "total": total}
        if not name.startswith("whole"):
            out[name]["start_query"] = start_query
    out["polls"] = last
    return out


def halves(prom: str, runs: int, workers: int | None, threads: int | None) -> dict:
    """A poll's union sent as two halves at once (the default) against one union, each judge
    served with the same settings otherwise, interleaved with the perfect client so that load
    on the machine falls on all three alike: the halves' gain measured, not assumed."""
    out: dict = {}
    one_union = {"CANARY_JUDGE_PROMETHEUS_UNION_REQUESTS": "1"}
    with served_judge(prom, workers=workers, threads=threads) as split_judge, \
            served_judge(prom, workers=workers, threads=threads, env=one_union) as one_judge:
        direct = Direct(prom)
        callers = {"halves": Caller(split_judge), "one_union": Caller(one_judge)}
        for name, mode in (("sequential_no_window", None), ("fixed", "fixed")):
            request_body, _, queries = question(split_judge, mode)
            ways: dict[str, Callable[[], object]] = {
                key: (lambda c=c, b=request_body: c.answered(b)) for key, c in callers.items()}
            ways["perfect_client"] = lambda q=queries: direct.concurrent(q)
            warm_up(ways, runs)
            took = interleaved(ways, runs)
            p50 = {key: round(statistics.median(v) * 1000, 2) for key, v in took.items()}
            out[name] = {"p50_ms": p50, "ratio_to_perfect_client": {
                key: round(p50[key] / p50["perfect_client"], 2)
                for key in ("halves", "one_union")}}
        direct.threads.shutdown()
    return out


def _histogram(rng: np.random.Generator, steps: int) -> Histogram:
    bounds = np.asarray(DEFAULT_BUCKETS, float)
    cdf = np.array([0.5 * (1 + math.erf((math.log(b) - math.log(0.1)) / (0.6 * math.sqrt(2))))
                    for b in bounds])
    counts = rng.multinomial(200, np.diff(np.concatenate([[0.0], cdf, [1.0]])), size=steps)
    rows = np.cumsum(counts, axis=1).astype(float)  # the last column is the +Inf bucket
    edges = [*bounds.tolist(), math.inf]
    return Histogram.from_steps([(float(le), rows[:, i]) for i, le in enumerate(edges)])


def judges(sizes: Sequence[int], runs: int) -> dict:
    """CPU milliseconds (median) of the sequential judges on `sizes` steps, healthy inputs."""
    rng = np.random.default_rng(7)
    out: dict = {}
    for steps in sizes:
        n_c = rng.poisson(1200, steps).astype(float)
        n_s = rng.poisson(2400, steps).astype(float)
        k_c = rng.binomial(n_c.astype(int), 0.01).astype(float)
        k_s = rng.binomial(n_s.astype(int), 0.01).astype(float)
        hc, hs = _histogram(rng, steps), _histogram(rng, steps)
        counts = (k_c, n_c, k_s, n_s)
        cases = {
            "ratio": lambda c=counts: judge_ratio("errors", *c, relative_tolerance=0.2,
                                                  mode="sequential"),
            "quantile": lambda h=(hc, hs): judge_quantile("p99", *h, 0.99,
                                                          relative_tolerance=0.2,
                                                          mode="sequential"),
        }
        for name, fn in cases.items():
            probe = fn()
            # a judge that returns early on unreadable input would time nothing
            assert probe.p_value is not None or probe.interval is not None, probe.reason
            cpu = []
            for _ in range(runs):
                began = time.process_time()
                fn()
                cpu.append(time.process_time() - began)
            out.setdefault(name, {})[str(steps)] = round(statistics.median(cpu) * 1000, 2)
    for name in ("ratio", "quantile"):
        per = {k: round(v / int(k) * 1000, 2) for k, v in out[name].items()}
        out[name + "_us_per_step"] = per
    out["target_ms_at_11000"] = 20
    return out


def table(report: dict) -> str:
    """The README table, generated from the report."""
    rows = ["| measured in one run | judge | reference | ratio (target) |", "|---|---|---|---|"]
    s = report["single"]
    for name, label in (("sequential_no_window", "one analysis, sequential, no window"),
                        ("fixed", "one analysis, fixed mode")):
        part = s[name]
        requests = part["judge_upstream_requests_per_analysis"]
        rows.append(f"| {label} (p50) | {part['judge']['p50_ms']} ms, "
                    f"upstream requests per analysis {requests:g} | "
                    f"perfect client {part['perfect_client']['p50_ms']} ms ({part['queries']} "
                    f"queries); sequential client "
                    f"{part['sequential_client']['p50_ms']} ms | "
                    f"{part['ratio_to_perfect_client']}× ({s['targets'][name]}×)"
                    + (f"; by fifth of the run {min(part['ratio_by_block'])}–"
                       f"{max(part['ratio_by_block'])}×" if part.get("ratio_by_block") else "")
                    + " |")
    for key, part in report["concurrent"].items():
        j, p = part["judge"], part["prometheus_direct"]
        rows.append(f"| {key} callers: rate, p50/p99, errors | {j['rate_per_s']}/s, "
                    f"{j['p50_ms']}/{j['p99_ms']} ms, {j['errors']} | Prometheus direct "
                    f"{p['rate_per_s']}/s, {p['p50_ms']}/{p['p99_ms']} ms, {p['errors']} | "
                    f"{part['rate_ratio']}× (≥ 0.8×); p99/p50 {part['judge_p99_over_p50']} "
                    f"(≤ 3; Prometheus direct {part['prometheus_p99_over_p50']}) |")
    k = report["soak"]
    rows.append(f"| memory over a {k['seconds']:g} s soak, {k['callers']} callers | "
                f"{k['rss_mb_first']} → {k['rss_mb_last']} MB (max {k['rss_mb_max']}) | "
                f"slope {k['rss_mb_per_minute_slope']} MB/min | flat |")
    p = report["polls"]
    marks = [m for m in p["cached"] if m.startswith("poll_")]

    def per_poll(name: str) -> str:
        return " / ".join(str(p[name][m]) for m in marks)

    rows.append("| samples read per poll (" + ", ".join(m.replace("_", " ") for m in marks)
                + f" of a rollout polled every minute) | cached {per_poll('cached')} (start "
                + "query " + " / ".join(str(p["cached"]["start_query"][m]) for m in marks)
                + f"); uncached {per_poll('uncached')} | every query over the 3 h lookback: "
                + f"cached {per_poll('whole_lookback_cached')}; uncached "
                + f"{per_poll('whole_lookback_uncached')} | independent of the rollout's age |")
    f = report["flagger"]
    rows.append(f"| a new connection per poll (Flagger), {f['rollouts']} rollouts × "
                f"{f['rounds']} repeated polls: samples read upstream / from the cache, "
                f"upstream requests, p50/mean | workers' shared cache: "
                f"{f['shared_cache']['samples_upstream_per_poll']:g} / "
                f"{f['shared_cache']['samples_cached_per_poll']:g}, "
                f"{f['shared_cache']['upstream_requests_per_poll']:g}, "
                f"{f['shared_cache']['p50_ms']}/{f['shared_cache']['mean_ms']} ms | each "
                f"worker's own: {f['per_worker_cache']['samples_upstream_per_poll']:g} / "
                f"{f['per_worker_cache']['samples_cached_per_poll']:g}, "
                f"{f['per_worker_cache']['upstream_requests_per_poll']:g}, "
                f"{f['per_worker_cache']['p50_ms']}/{f['per_worker_cache']['mean_ms']} ms | "
                "per replica, not per worker |")
    u = report.get("union")  # reports before the part had none
    if u:
        rows.append(f"| Prometheus alone: one poll's {u['queries']} queries over {u['steps']} "
                    f"steps, no judge (p50; client CPU) | one union "
                    f"{u['one_union']['p50_ms']} ms ({u['one_union']['client_cpu_ms']} ms), "
                    f"evaluated in {u['one_union']['evaluation_ms']} ms (the parts alone "
                    f"{u['six_at_once']['evaluation_ms_summed']} ms) | all at once "
                    f"{u['six_at_once']['p50_ms']} ms ({u['six_at_once']['client_cpu_ms']} "
                    f"ms); two unions at once {u['two_unions_at_once']['p50_ms']} ms "
                    f"({u['two_unions_at_once']['client_cpu_ms']} ms); `vector(1)` "
                    f"{u['empty_query_p50_ms']} ms | the floor under one analysis |")
    h = report.get("halves")  # reports before the part had none
    if h:
        rows.append("| a poll's union as two halves at once (the default) against one union, "
                    "interleaved (p50) | halves: " + "; ".join(
                        f"{mode.split('_')[0]} {h[mode]['p50_ms']['halves']} ms "
                        f"({h[mode]['ratio_to_perfect_client']['halves']}×)" for mode in h)
                    + " | one union: " + "; ".join(
                        f"{mode.split('_')[0]} {h[mode]['p50_ms']['one_union']} ms "
                        f"({h[mode]['ratio_to_perfect_client']['one_union']}×)" for mode in h)
                    + " (perfect client " + " and ".join(
                        f"{h[mode]['p50_ms']['perfect_client']}" for mode in h)
                    + " ms) | the halves' gain |")
    j = report["judges"]
    top = str(max(int(x) for x in j["ratio"]))
    rows.append(f"| sequential judges on {top} steps (CPU) | ratio {j['ratio'][top]} ms, "
                f"quantile {j['quantile'][top]} ms | µs per step: ratio "
                f"{list(j['ratio_us_per_step'].values())}, quantile "
                f"{list(j['quantile_us_per_step'].values())} | ≤ 20 ms, linear |")
    return "\n".join(rows)


# The report the README "Capacity" table is generated from, and the parts that table needs.
FULL_REPORT = "bench/results/latency.json"
TABLE_PARTS = frozenset({"single", "concurrent", "soak", "polls", "flagger", "judges"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="length of each concurrent measurement")
    parser.add_argument("--soak", type=float, default=60.0, help="soak length in seconds")
    parser.add_argument("--tiny", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help=f"where to write the report (default: {FULL_REPORT} "
                        "for a full run; a partial or --tiny run only prints its report)")
    parser.add_argument("--only",
                        default="single,concurrent,soak,polls,flagger,union,halves,judges",
                        help="comma-separated parts to run (the table needs all but union; "
                        "`idle`, ~2 min, runs only when named)")
    parser.add_argument("--table", metavar="REPORT", help="print the table of a report and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    if args.tiny:
        args.runs, args.seconds, args.soak = 5, 1.0, 2.0
    parts = set(args.only.split(","))
    callers = (2,) if args.tiny else (8, 32)
    marks = (1, 2, 3) if args.tiny else (1, 20, 200)
    sizes = (100, 200) if args.tiny else (1375, 2750, 5500, 11000)

    now = math.floor(time.time() / STEP) * STEP
    ticks = cpu_ticks()
    report: dict = {"machine": machine(ticks),
                    "command": "python bench/latency.py " + " ".join(sys.argv[1:] if argv is None
                                                                     else argv)}
    with PrometheusLab() as lab:
        history = 3 * 3600 + (max(marks) + 10) * STEP  # the lookback behind the last poll
        lab.plant(render_openmetrics(standard_sides(), now - history, now + 600, seed=7))
        for i, (sides, began) in enumerate(planted_canaries(now, max(marks))):
            lab.plant(render_openmetrics(sides, began, now + 3600, seed=100 + i))
        prom = lab.start()
        with served_judge(prom, workers=args.workers, threads=args.threads) as judge:
            report["server"] = {"workers": args.workers or "default",
                                "threads": args.threads or "default"}
            if "single" in parts:
                report["single"] = single(prom, judge, args.runs)
            if "concurrent" in parts:
                report["concurrent"] = {str(c): concurrent(prom, judge, c, args.seconds)
                                        for c in callers}
            if "soak" in parts:
                report["soak"] = soak(judge, args.soak)
        if "polls" in parts:
            report["polls"] = polls(prom, now, marks)
        if "union" in parts:
            report["union"] = union(prom, args.runs)
        if "flagger" in parts:
            report["flagger"] = flagger(prom, 1 if args.tiny else 10, args.workers,
                                        args.threads)
        if "halves" in parts:
            report["halves"] = halves(prom, args.runs, args.workers, args.threads)
        if "idle" in parts:  # not in the default set: ~2 minutes of waiting
            report["idle"] = idle(prom, 1 if args.tiny else 5, args.workers, args.threads)
    if "judges" in parts:
        report["judges"] = judges(sizes, 3 if args.tiny else 9)
    # time the hypervisor gave other guests while the run lasted (a share of the machine's CPU)
    report["machine"]["steal_share_over_run"] = shares(ticks, cpu_ticks()).get("steal_share")
    full = parts >= TABLE_PARTS
    out = args.out or (FULL_REPORT if full and not args.tiny else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if full:
        print(table(report))
    if not out:  # the committed report is the README table's source: a part does not replace it
        print(f"not written: a partial or --tiny run writes only with --out (a full run: "
              f"{FULL_REPORT})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
