"""Stopping the child processes the lab starts (Prometheus, gunicorn, chromium, the demo)."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Ask `proc` to exit (SIGTERM), kill it if it is still running after `grace` seconds, and
    reap it, so no child outlives the test or demo that started it."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
