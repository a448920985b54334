"""A benchmark run as the README gives it: this interpreter, from the repository's root, its
output kept for the assertions (the benchmarks' tests check that they run and that their
report is well formed, never their timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the repository's root; its exit code is the caller's to judge."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
