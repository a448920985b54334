"""`canary-judge serve` as a child process on a free loopback port, for the demo, the tests
and the benchmarks: the real gunicorn entry point, not the Flask test client."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

from webhook.lab.processes import stop_process
from webhook.lab.prometheus import free_port


@contextmanager
def served_judge(prometheus_url: str, *, workers: int | None = None,
                 threads: int | None = None, quiet: bool = True,
                 timeout: float = 30, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Serve the judge against `prometheus_url`; yield its URL once /readyz answers 200.

    Its output goes to a log file (a pipe nobody reads would fill up and stall gunicorn);
    the tail of that log is in the error when the judge exits or never becomes ready.
    `quiet` turns off the access log and info lines, as the demo and benchmarks want; `env`
    adds environment variables (e.g. TMPDIR, to see what the server leaves behind).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child_env = {**os.environ, **(env or {}), "CANARY_JUDGE_PROMETHEUS_URL": prometheus_url}
    if quiet:
        child_env.update(CANARY_JUDGE_ACCESS_LOG="false", CANARY_JUDGE_LOG_LEVEL="warning")
    argv = [sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers:
        argv += ["--workers", str(workers)]
    if threads:
        argv += ["--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="canary-judge-") as tmp:
        log_path = Path(tmp) / "judge.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=child_env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                _wait_ready(url, proc, timeout, log_path)
                yield url
            finally:
                stop_process(proc, grace=30)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the judge exited (code {proc.returncode}) before it became "
                               f"ready:\n{_tail(log)}")
        try:
            # 200 once every worker has loaded the app (webhook/worker_boot.py)
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the judge did not become ready at {url} within {timeout:g}s:\n"
                       f"{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
