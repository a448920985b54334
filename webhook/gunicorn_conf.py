"""Gunicorn settings for canary-judge, shipped in the package and the image.

Threads, not many processes: an analysis mostly waits on Prometheus, and threads share one
connection pool. Every knob is an environment variable so the Deployment can tune it.
"""

import gc
import os
import shutil
import tempfile

from webhook import shared_dir, worker_boot
from webhook.access_log import ACCESS_LOG_FORMAT
from webhook.capacity import default_workers

# One OpenBLAS thread per worker (an operator's value wins). numpy and scipy each start a
# thread per CPU of the node (not of the pod's quota) when imported: 2 idle threads per worker
# here, 126 on a 64-core node. Under load from 8 and 32 callers they used ~0 CPU (the
# judges' products are too short for BLAS to split, sequential._dot), so one thread costs
# nothing and spares the threads. Set here, read by each worker when it imports the app
# (no preload: workers import it after the fork, with this environment).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

bind = os.environ.get("CANARY_JUDGE_BIND", "0.0.0.0:8080")
# Unset: two per CPU this pod may use, as many as its memory limit holds, at most 4
# (webhook/capacity.py; measured in bench/latency.py, README "Capacity").
workers = int(os.environ.get("CANARY_JUDGE_WORKERS") or default_workers())
# 33 threads: up to 32 analyses admitted per worker (4 judged at once, the rest waiting
# briefly for a slot; CANARY_JUDGE_ANALYSIS_SLOTS) and one thread always free for the probes.
# Measured choice: bench/latency.py, README "Capacity".
threads = int(os.environ.get("CANARY_JUDGE_THREADS", "33"))
# gthread, a new connection going to the worker holding fewest: kept-alive callers that connect
# one after another otherwise sat mostly on one worker (webhook/gunicorn_worker.py).
worker_class = "webhook.gunicorn_worker.SpreadingThreadWorker"
# Argo and Flagger give up after 10 s by default; a worker stuck far longer is broken.
timeout = int(os.environ.get("CANARY_JUDGE_WORKER_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("CANARY_JUDGE_GRACEFUL_TIMEOUT", "20"))
# Seconds an idle kept-alive connection stays open. Argo's Go client keeps one idle 90 s and
# reuses the most recent; closed sooner, a controller polling every minute reconnected every
# time, to whichever worker (or replica) accepted first, whose caches of the rollout's start
# and steps were often cold: 1.8 upstream requests per poll instead of 1.0 (`python
# bench/latency.py --only idle`). Longer than Go's 90 s, so the client always closes first and
# never sends on a connection the judge is closing. An idle connection costs a socket in its
# worker's poller, not a thread; Flagger opens a new client per webhook call, whose connection
# its transport closes after the same 90 s idle.
keepalive = int(os.environ.get("CANARY_JUDGE_KEEPALIVE_SECONDS", "120"))
accesslog = "-" if os.environ.get("CANARY_JUDGE_ACCESS_LOG", "true").lower() != "false" else None
errorlog = "-"
loglevel = os.environ.get("CANARY_JUDGE_LOG_LEVEL", "info").lower()
# Values are JSON-escaped by this logger class, so each access line stays one JSON object.
logger_class = "webhook.access_log.JsonAccessLogger"
access_log_format = ACCESS_LOG_FORMAT
# /tmp may be the only writable place (read-only root filesystem in Kubernetes).
worker_tmp_dir = os.environ.get("CANARY_JUDGE_WORKER_TMP_DIR", tempfile.gettempdir())


# The metrics directory this master created (removed on exit), None when the operator set it.
_created_metrics_dir = None
# Where the workers mark that they booted (webhook/worker_boot.py).
_boot_dir = None
# Where the workers share the step data and rollout starts they read
# (webhook/sources/shared_steps.py); None when CANARY_JUDGE_SHARED_CACHE_MB is 0.
_steps_dir = None


def on_starting(server):
    """Let /metrics aggregate the counters of every worker process, /readyz wait for all
    workers to boot (webhook/worker_boot.py), and the workers share what they read from the
    metrics source (webhook/shared_dir.py)."""
    global _created_metrics_dir, _boot_dir, _steps_dir
    _boot_dir = worker_boot.prepare(server.cfg.workers, server.cfg.worker_tmp_dir)
    if shared_dir.wanted():
        _steps_dir = shared_dir.prepare(server.cfg.worker_tmp_dir)
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        _created_metrics_dir = tempfile.mkdtemp(prefix="canary-judge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created_metrics_dir
    else:
        path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def on_exit(server):
    """A directory we made is ours to remove: every start would otherwise leave one in /tmp.
    One the operator named (PROMETHEUS_MULTIPROC_DIR) is left for them, and wiped at start."""
    if _created_metrics_dir is not None:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
    if _boot_dir is not None:
        worker_boot.remove(_boot_dir)
    if _steps_dir is not None:
        shared_dir.remove(_steps_dir)


def post_worker_init(worker):
    """Move everything the worker holds once its app is loaded (~100,000 objects: numpy,
    scipy, pydantic, flask, the configs) out of the garbage collector's reach. A full
    collection otherwise walks them all, ~30 ms with the GIL held (every analysis of the worker
    waits), each time the caches' growth triggers one; frozen, it walks only what analyses
    left behind. Measured in process: a full collection 31-37 ms before, < 0.1 ms after."""
    gc.collect()
    gc.freeze()
    worker_boot.mark_booted(os.getpid())


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    worker_boot.forget(worker.pid)

# gunicorn's control socket would be written under $HOME, which is read-only in our pods and
# unused by us: no runtime admin commands are needed.
control_socket_disable = True
