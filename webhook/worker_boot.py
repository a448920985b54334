"""Readiness waits until every gunicorn worker has booted once (and, for `/readyz?source=once`,
until the metrics source has answered once).

Each worker answers /readyz by itself, and the first one to load the app answered it while
the others were still importing numpy and scipy (a second or two each on a busy node).
Kubernetes then sends traffic, and a controller's kept-alive connections stay with the worker
that accepted them for as long as it polls: connections made at that moment all sat on the
workers already up. Measured with the benchmark's 8 callers on 4 workers: 4/4 or 5/3 on two
workers for the whole run, and a 10-minute soak served 52,140 analyses one time and 91,080 the
next with the same code.

So the master gives its workers a directory (`prepare`); each worker leaves a file named by its
pid there once its app is loaded (`mark_booted`, gunicorn's post_worker_init, just before its
event loop starts); /readyz reports a problem until as many are there as the master starts
(`boot_problem`). Once they all were, it stays ready: a worker that crashes later and is
restarted must not take a serving pod out of its Service (one replica would mean an outage
while the others still answer), and the restarted worker takes new connections as they come.

The same directory remembers that the metrics source answered a readiness probe once
(`mark_source_answered`): the manifests' probe asks only that (`webhook/api/meta.py` says why),
and whichever worker answers the next probe must know it, not only the one that asked.

Outside gunicorn (the Flask test client, `flask run`) nothing is set and nothing is checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

# Set by the master for its workers (they inherit its environment when forked).
DIR_ENV = "CANARY_JUDGE_WORKER_BOOT_DIR"
EXPECTED_ENV = "CANARY_JUDGE_WORKER_BOOT_EXPECTED"
# Written once every worker the master started has booted: readiness stays from then on.
_ALL = "all-booted"
# Written once the metrics source has answered a readiness probe.
_SOURCE = "source-answered"

_seen_all = False  # this process has seen the marker: no more file system calls
_source_seen_in: str | None = None  # the directory whose source marker this process has seen


def prepare(workers: int, parent: str | None = None) -> str:
    """The master's part, before it forks: a fresh directory for `workers` workers' marks,
    named in the environment its workers inherit. Returns the directory (`remove` it at
    exit)."""
    path = tempfile.mkdtemp(prefix="canary-judge-boot-", dir=parent)
    os.environ[DIR_ENV] = path
    os.environ[EXPECTED_ENV] = str(workers)
    return path


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mark_booted(pid: int) -> None:
    """A worker's part, once its app is loaded."""
    path = os.environ.get(DIR_ENV)
    if path:
        with open(os.path.join(path, str(pid)), "w"):
            pass


def forget(pid: int) -> None:
    """The master's part when a worker exits: its mark goes (a restarted worker leaves its own)."""
    path = os.environ.get(DIR_ENV)
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, str(pid)))


def boot_problem() -> str | None:
    """None once every worker the master started has booted (or outside gunicorn), else what
    /readyz says while they are still starting."""
    global _seen_all
    path = os.environ.get(DIR_ENV)
    if _seen_all or not path:
        return None
    try:
        names = os.listdir(path)
    except OSError as err:  # removed under us (the master is exiting): not ready
        return f"workers starting: cannot read {path}: {err.strerror}"
    expected = int(os.environ.get(EXPECTED_ENV) or 1)
    booted = sum(1 for name in names if name.isdigit())
    if _ALL not in names:
        if booted < expected:
            return (f"workers starting: {booted} of {expected} have loaded the app; "
                    "ready once all have, so early connections do not all stay on the first")
        with open(os.path.join(path, _ALL), "w"):
            pass
    _seen_all = True
    return None


def mark_source_answered() -> None:
    """The metrics source answered a readiness probe: the pod's other workers will know
    (`source_answered_in_pod`). Outside gunicorn there is no pod: nothing to do."""
    global _source_seen_in
    path = os.environ.get(DIR_ENV)
    if not path or _source_seen_in == path:
        return
    try:
        with open(os.path.join(path, _SOURCE), "w"):
            pass
    except OSError:  # removed under us (the master is exiting): nothing to tell
        return
    _source_seen_in = path


def source_answered_in_pod() -> bool:
    """Whether the metrics source answered a readiness probe in any worker of this master;
    False outside gunicorn (the app remembers its own: `Service.source_answered`)."""
    global _source_seen_in
    path = os.environ.get(DIR_ENV)
    if not path:
        return False
    if _source_seen_in != path and os.path.exists(os.path.join(path, _SOURCE)):
        _source_seen_in = path
    return _source_seen_in == path
