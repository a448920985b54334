"""The README's demo command keeps working: a pass and a fail from a real Prometheus."""

import subprocess
import sys


def test_demo_shows_a_pass_and_a_fail():
    out = subprocess.run([sys.executable, "-m", "webhook.lab.demo"], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verdict: PASS" in out.stdout and "verdict: FAIL" in out.stdout
    assert "-> HTTP 200" in out.stdout and "-> HTTP 412" in out.stdout
