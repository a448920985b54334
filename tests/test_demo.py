"""The README's demo command keeps working, with its output in a file, and cleans up after itself.

A newcomer runs `bash scripts/demo.sh > log 2>&1` or keeps the servers (`--keep`) and stops them
with Ctrl-C or SIGTERM: the log must be readable (a curl writing to `-o /dev/stdout` once
truncated it to NUL bytes), and Prometheus, gunicorn and their temporary directories must be
gone afterwards. Each run gets its own TMPDIR, so whatever a run leaves behind is seen.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from webhook.lab.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
# Under `bash scripts/test.sh` the tests run in the project's .venv: then the demo is started
# exactly as the README says (scripts/demo.sh finds everything installed and execs the demo).
IN_PROJECT_VENV = Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
DEMO = ["bash", "scripts/demo.sh"] if IN_PROJECT_VENV else [sys.executable, "-m",
                                                             "webhook.lab.demo"]


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir()
    return {**os.environ, "TMPDIR": str(tmp)}


def _check_log(data: bytes) -> str:
    assert b"\0" not in data, "NUL bytes in the demo's log"
    text = data.decode()
    assert "verdict: PASS" in text and "verdict: FAIL" in text, text
    assert "-> HTTP 200" in text and "-> HTTP 412" in text, text
    order = [text.index(s) for s in ("1. Planting", "verdict: PASS", "verdict: FAIL",
                                     "-> HTTP 200", "-> HTTP 412")]
    assert order == sorted(order), text
    return text


def test_demo_output_redirected_to_a_file_is_readable(tmp_path):
    tmp, log = tmp_path / "tmp", tmp_path / "demo.log"
    with log.open("wb") as out:
        run = subprocess.run(DEMO, cwd=ROOT, env=_env(tmp), stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
    text = _check_log(log.read_bytes())
    assert run.returncode == 0, text
    assert "Done: one pass and one fail" in text
    assert sorted(p.name for p in tmp.iterdir()) == []  # Prometheus', the judge's, metrics
    _check_readme_sample(text)


def _answer(lines: list[str], first: str) -> list[str]:
    """The text answer that begins with the line `first`, up to its `report:` line."""
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("report:"))
    return lines[start:end + 1]


def _check_readme_sample(log: str) -> None:
    """The README shows the demo's failing answer: the same request and, line for line, the
    answer the service gave it (the window's times, the analysis id and the report link's end
    differ from run to run). The demo plants its data relative to the minute it starts in, so
    its numbers are the README's when that minute has not passed before the judge answered;
    otherwise only the words are compared, the numbers masked."""
    readme = (ROOT / "README.md").read_text().split("\n## Two commands on a fresh machine\n")[1]
    sample = re.search(r"\n```\n(\$ curl .*?)```", readme.split("\n## ", 1)[0], re.S)
    assert sample, "README's demo sample not found"
    shown = sample.group(1).splitlines()
    answer_at = next(i for i, line in enumerate(shown) if line.startswith("verdict:"))
    command = " ".join(line.strip().rstrip("\\") for line in shown[:answer_at])
    sent = [line for line in log.splitlines() if line.startswith("$ curl") and "analyze" in line]
    bodies = [json.loads(re.search(r"-d '(.*?)'", line).group(1)) for line in sent]
    assert json.loads(re.search(r"-d '(.*?)'", command).group(1)) in bodies, (command, sent)

    got = _answer(log.splitlines(), "verdict: FAIL")
    want = _answer(shown, "verdict: FAIL")
    window = re.search(r"window:\s+(\S+) \.\. (\S+) ", got[1])
    assert window, got[1]
    span = [calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) for t in window.groups()]

    def masked(lines: list[str], digits: bool) -> list[str]:
        out = [re.sub(r"\d{4}-\d\d-\d\dT\S+Z", "<time>", line) for line in lines]
        out = [re.sub(r"(id: |end=)\w+", r"\1<x>", line) for line in out]
        if not digits:
            return out
        # numbers of another width move the table's columns: compare words and numbers' places
        return [" ".join(re.sub(r"[+-]?\d[\d.,]*(e[+-]?\d+)?", "#", line).split())
                for line in out]

    exact = span[1] - span[0] == 7200  # the demo plants two hours of the canary
    assert masked(got, not exact) == masked(want, not exact)


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc (ppid is the 4th field of /proc/PID/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_keep_mode_demo_and_everything_it_started(tmp_path, sig):
    tmp, log = tmp_path / "tmp", tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "webhook.lab.demo", "--keep"], cwd=ROOT,
                                env=_env(tmp), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while "Servers keep running" not in log.read_text(errors="replace"):
            assert demo.poll() is None, f"the demo exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the demo never got ready:\n{log.read_text()}"
            time.sleep(0.2)
        text = _check_log(log.read_bytes())
        urls = re.search(r"judge (http://\S+), Prometheus (http://\S+)\.", text)
        assert urls, text
        children = _children(demo.pid)
        names = [_name(p) for p in children]
        assert any("prometheus" in n.split(" ")[0] for n in names), names
        assert sum("gunicorn" in n for n in names) >= 2, names  # master and worker
        assert {p.name.split("-")[0] for p in tmp.iterdir()} >= {"prometheus", "canary"}

        demo.send_signal(sig)
        assert demo.wait(timeout=60) == 0, log.read_text()
    finally:
        if demo.poll() is None:  # only if the test failed: leave no process behind
            children |= _children(demo.pid)
            stop_process(demo, grace=60)
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert [_name(p) for p in children if _alive(p)] == []
    assert sorted(p.name for p in tmp.iterdir()) == []
    for url in urls.groups():
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
    assert "Both servers are stopped" in log.read_text()
