"""Edges only the real server shows: chunked bodies over the limit, and access-log lines that a
hostile path or User-Agent must not split or forge."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from gunicorn import glogging
from gunicorn.config import Config

from webhook.access_log import ACCESS_LOG_FORMAT, JsonAccessLogger
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


class _Resp:
    status = "404 NOT FOUND"
    sent = 87
    headers = [("Content-Type", "application/json"), ("Content-Length", "87")]


class _Req:
    headers = [("HOST", "judge:8080"), ("USER-AGENT", 'curl"}\\{"x":1'), ("X-EVIL", "\x1b")]


def _access_lines(logger_class: type, log_format: str) -> list[str]:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", log_format)
    logger = logger_class(cfg)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger.access_log.handlers = [Keep()]
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": "/x",
               "PATH_INFO": '/v1/configs/\n"}\x1b{"forged":1', "SERVER_PROTOCOL": "HTTP/1.1",
               "QUERY_STRING": "a=1", "HTTP_USER_AGENT": 'curl"}\\{"x":1'}
    logger.access(_Resp(), _Req(), environ, timedelta(seconds=1, microseconds=23_456))
    return lines


class _AllAtoms(JsonAccessLogger):
    """Our escaping over every atom gunicorn builds: the line as it was."""

    atoms = glogging.Logger.atoms


def test_the_access_line_reads_the_same_from_its_seven_atoms():
    ours = _access_lines(JsonAccessLogger, ACCESS_LOG_FORMAT)
    assert ours == _access_lines(_AllAtoms, ACCESS_LOG_FORMAT)
    entry = json.loads(ours[0])
    assert entry == {"event": "access", "remote": "10.0.0.7", "method": "GET",
                     "path": '/v1/configs/\n"}\x1b{"forged":1', "status": 404, "bytes": "87",
                     "duration_ms": 1023, "agent": 'curl"}\\{"x":1'}
    # an operator's own format still gets every atom gunicorn offers
    other = '{"line":"%(r)s","query":"%(q)s","host":"%({host}i)s"}'
    assert json.loads(_access_lines(JsonAccessLogger, other)[0]) == {
        "line": "GET /x HTTP/1.1", "query": "a=1", "host": "judge:8080"}

