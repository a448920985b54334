"""Edges only the real server shows: chunked bodies over the limit, and access-log lines that a
hostile path or User-Agent must not split or forge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from webhook.lab.prometheus import free_port


@pytest.fixture(scope="module")
def server(lab, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn") / "access.log"
    port = free_port()
    conf = Path(__file__).resolve().parents[1] / "webhook" / "gunicorn_conf.py"
    env = {**os.environ, "CANARY_JUDGE_PROMETHEUS_URL": lab.url, "CANARY_JUDGE_WORKERS": "1",
           "CANARY_JUDGE_THREADS": "2", "CANARY_JUDGE_BIND": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", str(conf),
                             "--access-logfile", str(log), "webhook.wsgi:app"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chunked_body_over_256_kib_is_413(server):
    url, _ = server
    chunk = b" " * 8192

    def body():
        yield b'{"canary": {"app": "a"}, "stable": {"app": "b"}, "x": "'
        for _ in range(40):  # 320 KiB, no Content-Length
            yield chunk
        yield b'"}'

    for route in ("/v1/analyze", "/v1/hooks/rollback"):
        r = requests.post(url + route, data=body(), timeout=10,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (route, r.text)


def test_access_log_lines_stay_one_json_object_each(server):
    url, log = server
    # gunicorn itself refuses control characters in headers; quotes and backslashes pass
    evil_agent = 'curl"}\\{"event":"forged'
    requests.get(url + "/v1/configs/%0a%22%7d%1b%0d%7b%22forged%22:1", timeout=5,
                 headers={"User-Agent": evil_agent})
    requests.get(url + "/healthz", timeout=5)
    time.sleep(0.5)
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses on its own
    assert all(e["event"] == "access" for e in entries)
    evil = [e for e in entries if e["agent"] == evil_agent]
    assert evil and evil[0]["path"] == '/v1/configs/\n"}\x1b\r{"forged":1'
    assert not any("forged" in e and e.get("forged") for e in entries)
