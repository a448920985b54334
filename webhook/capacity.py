"""How many gunicorn workers this machine or pod can use, when the operator does not say.

The judge's rate follows the CPU its workers can use: one worker is one GIL, and a worker
whose analyses all wait on Prometheus leaves its CPU idle. `bench/latency.py` measured about
two workers per CPU as the knee (README "Capacity"), each costing ~130 MB resident. A pod's
CPU and memory are its cgroup's limits, not the node's: a container on a 64-core node limited
to 1 CPU must not start 128 workers, and four workers do not fit a 512 MiB limit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from webhook import shared_dir

WORKERS_PER_CPU = 2
MAX_DEFAULT_WORKERS = 4  # beyond this, an operator sizes the pod and sets CANARY_JUDGE_WORKERS
MEMORY_PER_WORKER = 160 * 2**20  # ~130 MB measured per worker, with room for a burst
MEMORY_RESERVE = 32 * 2**20  # the gunicorn master and the metrics files


def default_workers(root: Path = Path("/sys/fs/cgroup"),
                    environ: Mapping[str, str] | None = None) -> int:
    """Two workers per CPU this process may use, at most as many as its memory limit holds
    besides the reserve and the workers' shared store, between 1 and MAX_DEFAULT_WORKERS."""
    by_cpu = math.ceil(usable_cpus(root)) * WORKERS_PER_CPU
    memory = memory_limit(root)
    reserve = MEMORY_RESERVE + shared_store_bytes(environ)
    by_memory = (max((memory - reserve) // MEMORY_PER_WORKER, 1)
                 if memory is not None else by_cpu)
    return max(1, min(by_cpu, by_memory, MAX_DEFAULT_WORKERS))


def shared_store_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The most the workers' shared step store may hold (`webhook/shared_dir.py`): its files
    live under the worker tmp dir, which the manifests mount as a memory-backed emptyDir, so
    they count against the pod's memory limit as the workers' own memory does. A value the
    settings will refuse counts as the default: the workers then fail at start with the
    settings' own message."""
    if not shared_dir.wanted(environ):
        return 0
    mb = shared_dir.size_mb(environ)
    if not mb <= shared_dir.MAX_MB:  # more than the settings accept
        mb = shared_dir.DEFAULT_MB
    return int(mb * 2**20)


def usable_cpus(root: Path = Path("/sys/fs/cgroup")) -> float:
    """The CPUs this process may run on, reduced to its cgroup's CPU quota when it has one
    (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`)."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
    quota = _cpu_quota(root)
    return min(cpus, quota) if quota is not None else cpus


def memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The cgroup's memory limit in bytes, None when unlimited or unknown."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return int(v2) if v2.isdigit() else None
    v1 = _read(root / "memory" / "memory.limit_in_bytes")
    if v1 is not None and v1.isdigit() and int(v1) < 2**60:  # v1 says "no limit" with ~2**63
        return int(v1)
    return None


def _cpu_quota(root: Path) -> float | None:
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[1]):
            return int(parts[0]) / int(parts[1])
        return None
    quota, period = (_read(root / "cpu" / name) for name in ("cpu.cfs_quota_us",
                                                               "cpu.cfs_period_us"))
    if quota and period and quota.isdigit() and period.isdigit() and int(period):
        return int(quota) / int(period)  # "-1" (no quota) is not digits
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
