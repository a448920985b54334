"""One pod's workers share what they read (webhook/sources/shared_steps.py), against a real
Prometheus: a poll landing on a worker whose own caches are cold reads only the new steps and
no start query; answers equal those without a store; a garbled, truncated or swapped file is
a miss that changes nothing; the byte bound holds; concurrent writers never give a torn read;
the gunicorn master makes and removes the directory; and, served with 4 workers and a new
connection per poll as Flagger polls, repeated polls stay at the one-worker level."""

from __future__ import annotations

import contextlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import urllib3

from webhook import shared_dir
from webhook.analysis import Policy, run_analysis
from webhook.api.answer import answer_body
from webhook.configs import load_registry
from webhook.fetching import START_METRIC, StartCache
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, FLAGGER_TARGETS, NAMESPACE, argo_hash
from webhook.models import AnalysisRequest
from webhook.settings import load_settings
from webhook.sources import make_source
from webhook.sources.base import QueryResult, RangeQuery
from webhook.sources.prometheus import PrometheusSource
from webhook.sources.shared_steps import (
    SharedSteps,
    StoredSteps,
    _decode_start,
    _decode_steps,
    _name,
    footprint,
    open_store,
)
from webhook.sources.step_cache import StepCache

STEP = 60.0
MB = 2**20


class Counting:
    """A source that counts what it is asked: round trips, queries, steps."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.queries: list[RangeQuery] = []

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        self.queries += queries
        return self.inner.query_range_many(queries, deadline)

    def ready(self) -> tuple[bool, str]:
        return self.inner.ready()

    @property
    def steps(self) -> int:
        return sum(round((q.end - q.start) / q.step) + 1 for q in self.queries)


class Worker:
    """One gunicorn worker's caches, sharing through `store` (a directory) or not."""

    def __init__(self, prom: str, store: Path | None) -> None:
        self.source = Counting(PrometheusSource(load_settings(prometheus_url=prom)))
        shared = SharedSteps(str(store), 16 * MB) if store is not None else None
        self.cache = StepCache(self.source, shared=shared)
        self.starts = StartCache(shared=shared)

    def poll(self, request: AnalysisRequest, now: float) -> dict:
        return _verdict(run_analysis(request, load_registry(None), self.cache, Policy(),
                                     now=now, starts=self.starts))


def _verdict(result) -> dict:
    body = answer_body(result)
    body.pop("analysis_id")
    return body


def _request(version: str, **extra) -> AnalysisRequest:
    return AnalysisRequest.model_validate({
        "config": "http", "mode": "sequential",
        "canary": {"rollouts_pod_template_hash": argo_hash(version)},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, **extra})


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir(mode=0o700)
    return path


def test_a_cold_worker_reads_only_new_steps_and_no_start_query(lab, store):
    """Polls go round three workers, as Flagger's new connections do: with the pod's store
    each poll after the first reads the window's 8 queries × (1 new step + 3 re-read) in one
    round trip, whichever worker takes it; without it the first poll on each worker re-reads
    the window, the stable's history and the start query over 3 h."""
    request = _request("slow")
    plain = PrometheusSource(load_settings(prometheus_url=lab.url))
    shared = [Worker(lab.url, store) for _ in range(3)]
    alone = [Worker(lab.url, None) for _ in range(3)]
    verdicts = set()
    for poll in range(9):
        now = lab.anchor - 3000 + poll * STEP + 7
        want = _verdict(run_analysis(request, load_registry(None), plain, Policy(), now=now,
                                     starts=StartCache()))
        verdicts.add(want["verdict"])
        for workers in (shared, alone):
            worker = workers[poll % 3]
            before, asked = worker.source.steps, len(worker.source.queries)
            assert worker.poll(request, now) == want
            read, sent = worker.source.steps - before, worker.source.queries[asked:]
            if workers is shared and poll:
                assert read == 10 * 4 and len(sent) == 10, (poll, read)
                assert START_METRIC not in {q.metric for q in sent}
            if workers is alone and poll in (1, 2):  # a cold worker: everything again
                assert read > 6 * 100 and START_METRIC in {q.metric for q in sent}
    assert "fail" in verdicts  # the answers compared are not trivial
    assert sum(w.cache.stats.shared_hits for w in shared) >= 2 * 10


@pytest.mark.parametrize("version", ["healthy", "errors3x", "slow"])
@pytest.mark.parametrize("window", [{}, {"window": {"lookback": "20m"}},
                                    {"mode": "fixed", "window": {"lookback": "30m"}}])
def test_answers_equal_with_a_cold_a_warm_and_no_store(lab, store, version, window):
    request = _request(version, **window)
    now = lab.anchor - 1200 + 7
    plain = PrometheusSource(load_settings(prometheus_url=lab.url))
    want = _verdict(run_analysis(request, load_registry(None), plain, Policy(), now=now,
                                 starts=StartCache()))
    writer = Worker(lab.url, store)
    assert writer.poll(request, now - STEP) == _verdict(run_analysis(
        request, load_registry(None), plain, Policy(), now=now - STEP, starts=StartCache()))
    assert writer.poll(request, now) == want  # in process and in the store
    assert Worker(lab.url, store).poll(request, now) == want  # warm store, cold worker
    assert Worker(lab.url, store).poll(request, now + STEP) == _verdict(run_analysis(
        request, load_registry(None), plain, Policy(), now=now + STEP, starts=StartCache()))
    empty = store.parent / "empty"
    empty.mkdir()
    assert Worker(lab.url, empty).poll(request, now) == want  # cold store
    assert Worker(lab.url, None).poll(request, now) == want  # no store
    assert want["checks"]  # values and reasons compared, not only a verdict


def _files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())}


def _valid(name: str, data: bytes) -> bool:
    """A file is whole, well formed and under the name of the key it carries."""
    header = json.loads(data.split(b"\n", 1)[0])
    key = tuple(header["key"])
    if name != _name(header["kind"], key):
        return False
    if header["kind"] == "start":
        return _decode_start(data, key)[0]
    return _decode_steps(data, key) is not None


def _garbled(files: dict[str, bytes]) -> list[tuple[str, dict[str, bytes]]]:
    """Each file of the store spoiled in one way, the others left alone."""
    start = next(n for n in files if n.endswith(".start"))
    start_expr = json.loads(files[start])["key"][0]
    # the window's queries (a poll with the start known does not send the start query)
    steps = [n for n in files if n.endswith(".steps")
             and json.loads(files[n].split(b"\n", 1)[0])["key"][0] != start_expr]
    a, b = steps[:2]
    cases = [("truncated", {a: files[a][: len(files[a]) // 2]}),
             ("one byte short", {a: files[a][:-1]}),
             ("empty", {a: b""}),
             ("garbage", {a: os.urandom(len(files[a]))}),
             ("header only", {a: files[a].split(b"\n")[0] + b"\n"}),
             ("another key's file", {a: files[b]}),
             ("flags not 0/1", {a: files[a][:-1] + b"\x07"}),
             ("bytes appended", {a: files[a] + b"\0" * 9}),
             ("nested json", {a: b"[" * 100_000 + b"\n"}),
             ("start garbage", {start: b"\xff\xfe{\n"}),
             ("start of another key", {start: files[start].replace(b'"key":["', b'"key":["x')})]
    head, body = files[a].split(b"\n", 1)
    header = json.loads(head)
    header["shape"][1] += 1
    header["size"] += 1
    cases.append(("shape says more", {a: json.dumps(header).encode() + b"\n" + body}))
    header = json.loads(head)
    header["final_end"] = header["start"] + header["size"] * header["step"]
    cases.append(("settled past its last step", {a: json.dumps(header).encode() + b"\n" + body}))
    header = json.loads(head)
    rows, size = header["shape"]
    values, flags = body[: 8 * rows * size], body[8 * rows * size:]
    header["shape"][0] = 2 * rows
    for case, labels in (("labels out of order", [{"z": "1"}] * rows + [{"a": "1"}] * rows),
                         ("labels twice", header["labels"] * 2)):
        header["labels"] = labels
        cases.append((case, {a: json.dumps(header).encode() + b"\n" + values * 2 + flags * 2}))
    return cases


def test_a_garbled_file_is_a_miss_that_changes_nothing(lab, store):
    request = _request("slow")
    now = lab.anchor - 1200 + 7
    writer = Worker(lab.url, store)
    want = writer.poll(request, now)
    files = _files(store)
    # the window's 10 queries, the start query's steps and the start found
    assert len(files) == 12 and all(_valid(n, d) for n, d in files.items())
    baseline = Worker(lab.url, store)
    assert baseline.poll(request, now) == want
    for case, spoiled in [("none", {}), *_garbled(files)]:
        shutil.rmtree(store)
        store.mkdir(mode=0o700)
        for name, data in {**files, **spoiled}.items():
            (store / name).write_bytes(data)
        reader = Worker(lab.url, store)
        assert reader.poll(request, now) == want, case
        if case == "none":
            assert reader.cache.stats.shared_hits == baseline.cache.stats.shared_hits > 0
        elif not case.startswith("start"):  # the spoiled file was a miss
            assert reader.cache.stats.shared_hits == baseline.cache.stats.shared_hits - 1, case
        # removed, then written whole by the reader (which read that query upstream)
        after = _files(store)
        assert all(_valid(n, d) for n, d in after.items()), case
        assert set(after) == set(files), case


def _stored(rows: int, size: int, seed: int, final_end: float = 0.0) -> StoredSteps:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, size))
    present = rng.random((rows, size)) > 0.1
    labels = tuple({"pod": f"p{seed}-{i:03d}"} for i in range(rows))
    return StoredSteps(1_000_020.0, 60.0, labels, values, present, size, final_end + seed,
                       1_000_020.0)


def _key(i: int) -> tuple[str, float, float]:
    return (f"sum(rate(x{i}[1m]))", 60.0, 0.0)


def _du(store: Path) -> int:
    """Bytes the directory's files take now (files pruned while it counts are gone)."""
    total = 0
    for item in os.scandir(store):
        with contextlib.suppress(FileNotFoundError):
            total += footprint(item.stat())
    return total


def test_the_byte_bound_holds_with_several_workers_writing(store):
    bound = 256 * 1024
    workers = [SharedSteps(str(store), bound) for _ in range(4)]
    peak = [0]
    errors: list[Exception] = []
    order: list[tuple[str, float, float]] = []  # keys as written

    def write(w: int) -> None:
        try:
            for i in range(60):
                key = _key(w * 1000 + i)
                assert workers[w].write_steps(key, _stored(4, 100 + i, w * 1000 + i))
                order.append(key)
                peak[0] = max(peak[0], _du(store))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 0 < peak[0] <= bound, peak
    assert bound // 2 < _du(store) <= bound  # pruned to the bound, not emptied
    # too large for the bound: not written at all
    assert not workers[0].write_steps(_key(-1), _stored(100, 1000, 1))
    # the oldest written went first: the last file written is there, the first gone
    left = {p.name for p in store.iterdir()}
    assert _name("steps", order[-1]) in left and _name("steps", order[0]) not in left


def test_concurrent_writers_of_one_key_never_give_a_torn_read(store):
    key = _key(7)
    versions = [_stored(40, 2000, seed) for seed in (1, 2)]  # ~720 KB each
    writers = [SharedSteps(str(store), 64 * MB) for _ in range(2)]
    reader = SharedSteps(str(store), 64 * MB)
    stop = time.monotonic() + 1.5
    reads, errors = [], []

    def write(w: int) -> None:
        n = 0
        while time.monotonic() < stop:
            v = versions[(w + n) % 2]
            n += 1
            # a later final_end each time, so the write rule lets every one through
            writers[w].write_steps(key, StoredSteps(
                v.start, v.step, v.labels, v.values, v.present, v.size, float(n), v.asked))

    def read() -> None:
        while time.monotonic() < stop:
            got = reader.read_steps(key, 1_000_020.0, None)
            if got is None:
                continue
            match = [v for v in versions if v.labels == got.labels]
            if len(match) != 1 or not (np.array_equal(match[0].values, got.values) and
                                       np.array_equal(match[0].present, got.present)):
                errors.append(got)
            reads.append(got)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(reads) > 10
    assert {r.labels[0]["pod"] for r in reads} == {"p1-000", "p2-000"}
    assert [p.name for p in store.iterdir()] == [_name("steps", key)]  # no temporaries left


def test_a_repeated_poll_within_a_step_writes_nothing(lab, store):
    request = _request("healthy")
    now = lab.anchor - 1200 + 7
    worker = Worker(lab.url, store)
    worker.poll(request, now)
    written = worker.cache.stats.shared_writes
    assert written == 11  # the window's 10 queries and the start query
    stamps = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    for _ in range(3):
        worker.poll(request, now + 1)
    assert worker.cache.stats.shared_writes == written
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()} == stamps
    # a step later, settled steps advanced: written again (the start is not asked again)
    worker.poll(request, now + STEP)
    assert worker.cache.stats.shared_writes == written + 10


def test_starts_and_rejections_found_by_one_worker_are_known_to_the_others(store):
    query = RangeQuery("rollout start", "count(up)", 1_000_020.0, 1_003_620.0, 60.0)
    other = RangeQuery("rollout start", "count(down)", 1_000_020.0, 1_003_620.0, 60.0)
    finder, later = (StartCache(shared=SharedSteps(str(store), MB)) for _ in range(2))
    assert later.get(query) == (False, None) and not later.rejected(other)
    finder.put(query, 1_001_000.0)
    finder.reject(other)
    cold = StartCache(shared=SharedSteps(str(store), MB))
    assert cold.get(query) == (True, 1_001_000.0) and cold.rejected(other)
    assert cold.get(other) == (False, None) and not cold.rejected(query)
    finder.put(query, None)  # the canary went quiet: no traffic seen
    assert StartCache(shared=SharedSteps(str(store), MB)).get(query) == (True, None)
    assert StartCache().get(query) == (False, None)  # no store: nothing shared


def test_outside_gunicorn_there_is_no_store(monkeypatch, store):
    monkeypatch.delenv(shared_dir.DIR_ENV, raising=False)
    assert open_store(16) is None
    monkeypatch.setenv(shared_dir.DIR_ENV, str(store))
    assert open_store(0) is None
    assert open_store(16) is open_store(16)
    assert open_store(16).max_bytes == 16 * MB
    monkeypatch.setenv(shared_dir.DIR_ENV, str(store / "gone"))
    assert open_store(16) is None


def test_make_source_shares_only_when_a_master_named_a_directory(monkeypatch, store):
    from webhook.fetching import STARTS

    monkeypatch.setattr(STARTS, "shared", None)
    monkeypatch.delenv(shared_dir.DIR_ENV, raising=False)
    assert make_source(load_settings()).shared is None
    monkeypatch.setenv(shared_dir.DIR_ENV, str(store))
    source = make_source(load_settings())
    assert source.shared is not None and STARTS.shared is source.shared
    assert source.shared.path == str(store)
    assert make_source(load_settings(shared_cache_mb=0)).shared is None


def _conf(monkeypatch) -> dict:
    """gunicorn_conf's hooks, run in this process: every variable they set is undone after
    the test (monkeypatch undoes a delenv only of a variable that was set)."""
    for name in (shared_dir.DIR_ENV, shared_dir.SIZE_ENV, "PROMETHEUS_MULTIPROC_DIR",
                 "CANARY_JUDGE_WORKER_BOOT_DIR", "CANARY_JUDGE_WORKER_BOOT_EXPECTED",
                 "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return runpy.run_path(__import__("webhook.gunicorn_conf", fromlist=["x"]).__file__)


@pytest.mark.parametrize("mb", [None, "0"])
def test_the_master_makes_and_removes_the_directory(monkeypatch, tmp_path, mb):
    conf = _conf(monkeypatch)
    if mb is not None:
        monkeypatch.setenv(shared_dir.SIZE_ENV, mb)
    server = SimpleNamespace(cfg=SimpleNamespace(workers=2, worker_tmp_dir=str(tmp_path)))
    conf["on_starting"](server)
    made = [p for p in tmp_path.iterdir() if p.name.startswith(shared_dir.PREFIX)]
    if mb == "0":
        assert made == [] and shared_dir.DIR_ENV not in os.environ
    else:
        assert [str(p) for p in made] == [os.environ[shared_dir.DIR_ENV]]
        assert made[0].stat().st_mode & 0o777 == 0o700
        (made[0] / "x.steps").write_bytes(b"written by a worker")
    conf["on_exit"](server)
    assert list(tmp_path.iterdir()) == []  # the boot directory went too
    assert shared_dir.DIR_ENV not in os.environ


# -- served: 4 workers, a new connection per poll --------------------------------------------

_SAMPLE = re.compile(r'^canary_judge_step_cache_samples_total\{read_from="(\w+)"\} (\S+)$')
_QUERIES = re.compile(r"^canary_judge_upstream_queries_total (\S+)$")


def _counters(metrics: urllib3.HTTPConnectionPool) -> tuple[float, float, float]:
    """Samples the step caches read upstream, requests sent, and samples the step caches took
    from the workers' own caches or the pod's store, over all workers."""
    text = metrics.request("GET", "/metrics").data.decode()
    found = {"upstream": 0.0, "cache": 0.0, "requests": 0.0}
    for line in text.splitlines():
        if m := _SAMPLE.match(line):
            found[m.group(1)] = float(m.group(2))
        elif m := _QUERIES.match(line):
            found["requests"] = float(m.group(1))
    return found["upstream"], found["requests"], found["cache"]


def served_polls(prom: str, polls: int, env: dict[str, str], tmp: Path,
                 spoil_at: int | None = None) -> list[tuple[float, float, float, int, float]]:
    """Flagger's `rollout` hook for podinfo, `polls` times, each on a new connection left
    open afterwards (Flagger's per-call client keeps it idle for 90 s), on 4 workers: per poll
    the upstream samples, requests and seconds, the status, and the samples from cache.
    Before poll `spoil_at`, every file of the store is overwritten with garbage."""
    payload = {"name": "podinfo", "namespace": NAMESPACE, "phase": "Progressing",
               "checksum": "abc123", "metadata": {"provider": "app"}}
    body = json.dumps(payload).encode()
    out = []
    tmp.mkdir()
    with served_judge(prom, workers=4, env={**env, "TMPDIR": str(tmp)}) as url:
        port = int(url.rsplit(":", 1)[1])
        made = [p for p in tmp.iterdir() if p.name.startswith(shared_dir.PREFIX)]
        assert len(made) == (0 if env.get(shared_dir.SIZE_ENV) == "0" else 1)
        metrics = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
        kept = []
        for poll in range(polls):
            if poll == spoil_at:
                for file in made[0].iterdir():
                    if not file.name.startswith("owner"):
                        file.write_bytes(os.urandom(file.stat().st_size))
            before = _counters(metrics)
            pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
            began = time.perf_counter()
            r = pool.request("POST", "/v1/hooks/rollout", body=body,
                             headers={"Content-Type": "application/json"})
            took = time.perf_counter() - began
            kept.append(pool)
            after = _counters(metrics)
            out.append((after[0] - before[0], after[1] - before[1], took, r.status,
                        after[2] - before[2]))
        for pool in [*kept, metrics]:
            pool.close()
    assert not [p for p in tmp.iterdir() if p.name.startswith(shared_dir.PREFIX)]
    return out


def test_served_repeated_polls_on_new_connections_read_what_one_worker_would(lab, tmp_path):
    """Without the store, the polls landing on the three other workers re-read the window,
    the history and the start (poll 1's cost); with it every repeated poll reads only its
    last steps, as one worker alone would."""
    assert FLAGGER_TARGETS["podinfo"] == {}  # a healthy canary: 200 at every poll
    # garbage in the store before poll 9 costs nothing more than a read (not a 5xx)
    on = served_polls(lab.url, 12, {}, tmp_path / "on", spoil_at=8)
    off = served_polls(lab.url, 12, {shared_dir.SIZE_ENV: "0"}, tmp_path / "off")
    for polls in (on, off):
        assert {status for _, _, _, status, _ in polls} == {200}
        assert polls[0][0] > 500  # poll 1 reads the window and the stable's history
    first = on[0][0]
    assert max(samples for samples, *_ in on[1:]) <= first / 5, on
    # the rest of each answer came from a cache: as much as poll 1 read, less what was re-read
    assert all(cached + samples >= first * 0.9 for samples, *_, cached in on[1:]), on
    assert max(requests_ for _, requests_, *_ in on[1:]) <= 2, on  # the two halves, at once
    # the polls on the other three workers' cold caches re-read the window (and the start)
    cold = [samples for samples, *_ in off[1:] if samples > first / 2]
    assert len(cold) >= 2, off
    assert sum(s for s, *_ in off[1:]) > 2 * sum(s for s, *_ in on[1:]), (on, off)
    for name, polls in (("store on ", on), ("store off", off)):  # shown with pytest -s
        print(f"{name}: poll 1 {polls[0][0]:.0f} samples, {polls[0][1]:.0f} requests; "
              f"polls 2-{len(polls)}: {np.mean([p[0] for p in polls[1:]]):.0f} samples and "
              f"{np.mean([p[1] for p in polls[1:]]):.2f} requests per poll, p50 "
              f"{np.median([p[2] for p in polls[1:]]) * 1000:.1f} ms")


@pytest.fixture(autouse=True)
def _no_inherited_store(monkeypatch):
    """Tests here set the store themselves: a directory in the environment would leak into
    other tests' sources."""
    monkeypatch.setenv(shared_dir.DIR_ENV, "")
    monkeypatch.delenv(shared_dir.DIR_ENV)


def test_a_killed_masters_directory_is_removed_by_the_next(monkeypatch, tmp_path):
    """A master killed outright leaves its directory on the pod's /tmp (an emptyDir outlives
    a container restart); the next master removes it, not one whose master still runs."""
    monkeypatch.setenv(shared_dir.DIR_ENV, "")
    alive = shared_dir.prepare(str(tmp_path))
    killed = subprocess.run(
        [sys.executable, "-c", "import sys; from webhook import shared_dir; "
         "print(shared_dir.prepare(sys.argv[1]))", str(tmp_path)],
        capture_output=True, text=True, check=True).stdout.strip()
    Path(killed, "x.steps").write_bytes(b"left behind")
    other = tmp_path / (shared_dir.PREFIX + "not-ours")  # no lock file: not ours to judge
    other.mkdir()
    newer = shared_dir.prepare(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(p).name for p in (alive, newer, other))
    for path in (alive, newer):
        shared_dir.remove(path)
    assert [p.name for p in tmp_path.iterdir()] == [other.name]
