"""The private directory a gunicorn master gives its workers for the shared step store.

One pod's workers each keep their own cache of step data and rollout starts, and Flagger opens
a new connection per poll, so most polls landed on a worker whose caches were cold
(`webhook/sources/shared_steps.py` says what is shared and how). The master makes a fresh
directory (mode 0700) in `on_starting`, before it forks, and names it in the environment its
workers inherit; it removes it in `on_exit`. The same pattern as `webhook/worker_boot.py`.

Kept free of numpy and of the `webhook.sources` package: the master imports this module, and
the workers import numpy after the fork (no preload).

A master killed outright (SIGKILL) never runs `on_exit`, and a pod's /tmp emptyDir outlives a
container restart: each such directory would stay behind, up to the store's bound, until the
volume passed its sizeLimit and the pod was evicted. So the master holds an exclusive `flock`
on a file in its directory for as long as it (or a worker it forked) lives, and `prepare`
removes the directories in the same parent whose lock it can take: their owner is gone.

Outside gunicorn (the CLI, the Flask test client, tests calling `run_analysis`) nothing is set
and there is no store, unless a caller sets `DIR_ENV` itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Mapping

# Set by the master for its workers (they inherit its environment when forked).
DIR_ENV = "CANARY_JUDGE_SHARED_STEPS_DIR"
# The operator's bound in MB (the setting `shared_cache_mb`); 0: no directory, no store.
SIZE_ENV = "CANARY_JUDGE_SHARED_CACHE_MB"
DEFAULT_MB = 16.0
MAX_MB = 4096.0  # the most the setting accepts
PREFIX = "canary-judge-steps-"


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator left the shared store on (`CANARY_JUDGE_SHARED_CACHE_MB` unset or
    above 0). A value the workers' settings will refuse still gets a directory: they fail at
    start with the settings' own message, which says more than the master could."""
    return size_mb(environ) > 0


def size_mb(environ: Mapping[str, str] | None = None) -> float:
    """The store's bound in MB as the master reads it, before the workers' settings check it:
    the operator's value, the default when it is not a number."""
    env = os.environ if environ is None else environ
    try:
        return float(env.get(SIZE_ENV) or DEFAULT_MB)
    except ValueError:
        return DEFAULT_MB


LOCK = "owner.lock"
_held: dict[str, int] = {}  # directory -> the locked file's descriptor, in the master


def prepare(parent: str | None = None) -> str:
    """The master's part, before it forks: a fresh private directory (mkdtemp makes it 0700),
    locked while this process lives and named in the environment its workers inherit; earlier
    masters' directories left behind are removed. Returns the directory (`remove` it at exit)."""
    parent = parent if parent is not None else tempfile.gettempdir()
    _remove_orphans(parent)
    path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    # locked before it takes its name: no other master can see it unlocked
    fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=path)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(tmp, os.path.join(path, LOCK))
    _held[path] = fd
    os.environ[DIR_ENV] = path
    return path


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)
    if os.environ.get(DIR_ENV) == path:
        del os.environ[DIR_ENV]


def _remove_orphans(parent: str) -> None:
    """Remove the directories in `parent` whose master is gone (their lock is free)."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        try:
            fd = os.open(os.path.join(path, LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # not one of ours, or not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its master (or a worker it forked) still holds it
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
