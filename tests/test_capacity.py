"""The default worker count follows the pod's CPU and memory limits, not the node's size; a
worker spends its CPU on analyses, not on idle BLAS threads or on walking the app's objects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webhook.capacity import default_workers, memory_limit, usable_cpus

MiB = 2**20


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return tmp_path


def machine_cpus() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("files", "cpus"), [
    ({"cpu.max": "100000 100000"}, 1.0),       # v2, limits.cpu: 1
    ({"cpu.max": "50000 100000"}, 0.5),        # v2, limits.cpu: 500m
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1.0),  # v1
])
def test_a_cpu_quota_bounds_the_cpus(tmp_path: Path, files: dict[str, str], cpus: float) -> None:
    assert usable_cpus(cgroup(tmp_path, files)) == min(cpus, machine_cpus())


@pytest.mark.parametrize("files", [
    {"cpu.max": "max 100000"},                                                  # v2, no limit
    {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},           # v1, no limit
    {"cpu.max": "garbage"},
    {},                                                                          # no cgroup
])
def test_without_a_quota_every_cpu_of_the_affinity_counts(tmp_path: Path,
                                                          files: dict[str, str]) -> None:
    assert usable_cpus(cgroup(tmp_path, files)) == machine_cpus()


def test_memory_limits_are_read_from_v2_and_v1(tmp_path: Path) -> None:
    assert memory_limit(cgroup(tmp_path / "a", {"memory.max": str(512 * MiB)})) == 512 * MiB
    assert memory_limit(cgroup(tmp_path / "b", {"memory.max": "max"})) is None
    assert memory_limit(cgroup(tmp_path / "c", {"memory/memory.limit_in_bytes":
                                                str(256 * MiB)})) == 256 * MiB
    assert memory_limit(cgroup(tmp_path / "d", {"memory/memory.limit_in_bytes":
                                                "9223372036854771712"})) is None


def test_the_manifests_pod_gets_two_workers(tmp_path: Path) -> None:
    """1 CPU and 512 MiB (manifests/base): two workers, as the manifests also pin."""
    root = cgroup(tmp_path, {"cpu.max": "100000 100000", "memory.max": str(512 * MiB)})
    assert default_workers(root) == 2


def test_memory_caps_the_workers_a_large_cpu_quota_would_give(tmp_path: Path) -> None:
    if machine_cpus() < 2:
        pytest.skip("needs 2 CPUs in the affinity mask")
    root = cgroup(tmp_path, {"cpu.max": "200000 100000", "memory.max": str(688 * MiB)})
    assert default_workers(root, {}) == 4  # 4 by CPU, (688 - 32 - 16) / 160 by memory
    tiny = cgroup(tmp_path / "tiny", {"cpu.max": "200000 100000", "memory.max": str(128 * MiB)})
    assert default_workers(tiny, {}) == 1  # never 0


def test_the_shared_store_counts_against_the_memory_limit(tmp_path: Path) -> None:
    """The workers' shared store lives on the memory-backed /tmp: 512 MiB holds three workers
    of 160 MiB beside the master's 32 MiB, not beside the store's 16 MB as well."""
    if machine_cpus() < 2:
        pytest.skip("needs 2 CPUs in the affinity mask")
    root = cgroup(tmp_path, {"cpu.max": "200000 100000", "memory.max": str(512 * MiB)})
    assert default_workers(root, {}) == 2  # (512 - 32 - 16) / 160
    assert default_workers(root, {"CANARY_JUDGE_SHARED_CACHE_MB": "0"}) == 3  # store off
    assert default_workers(root, {"CANARY_JUDGE_SHARED_CACHE_MB": "200"}) == 1
    # a value the settings refuse counts as the default (the workers then fail with its reason)
    for refused in ("lots", "1e9"):
        assert default_workers(root, {"CANARY_JUDGE_SHARED_CACHE_MB": refused}) == 2, refused


def test_an_unlimited_big_node_gets_at_most_four(tmp_path: Path) -> None:
    assert 1 <= default_workers(cgroup(tmp_path, {})) <= 4
    assert default_workers(cgroup(tmp_path, {})) == min(2 * machine_cpus(), 4)


def test_gunicorn_reads_the_default_unless_the_operator_sets_it() -> None:
    read = ("import runpy; print(runpy.run_path(__import__('webhook.gunicorn_conf', "
            "fromlist=['x']).__file__)['workers'])")
    env = {k: v for k, v in os.environ.items() if k != "CANARY_JUDGE_WORKERS"}
    unset = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True,
                           text=True, check=True)
    assert int(unset.stdout) == default_workers()
    pinned = subprocess.run([sys.executable, "-c", read], env={**env, "CANARY_JUDGE_WORKERS": "3"},
                            capture_output=True, text=True, check=True)
    assert int(pinned.stdout) == 3


# A worker as gunicorn makes it: our config read first, then the app imported, then the
# post_worker_init hook.
WORKER = """
import gc, os, runpy
conf = runpy.run_path(__import__("webhook.gunicorn_conf", fromlist=["x"]).__file__)
import webhook.wsgi
conf["post_worker_init"](None)
print(len(os.listdir("/proc/self/task")), gc.get_freeze_count(), len(gc.get_objects()),
      os.environ["OPENBLAS_NUM_THREADS"])
"""


def _worker(extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update({"CANARY_JUDGE_PROMETHEUS_URL": "http://127.0.0.1:9", **extra})
    return subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True,
                          text=True, check=True).stdout.split()


def test_a_worker_runs_no_blas_threads_and_keeps_the_app_out_of_the_collector() -> None:
    threads, frozen, tracked, blas = _worker({})
    # numpy's and scipy's OpenBLAS would each start a thread per CPU of the node
    assert blas == "1" and int(threads) == 1
    # the loaded app (~100,000 objects) is frozen: a full collection no longer walks it
    assert int(frozen) > 50_000 and int(tracked) < 1_000


def test_the_operator_sets_blas_threads() -> None:
    threads, _, _, blas = _worker({"OPENBLAS_NUM_THREADS": "2"})
    assert blas == "2"
    if machine_cpus() >= 2:
        assert int(threads) > 1
