"""Kept-alive connections spread over the workers: a caller opening its connections one after
another (a controller starting its analyses) must not find them all served by one worker,
one interpreter lock, while the others idle (webhook/gunicorn_worker.py)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import urllib3

from webhook.lab.judge import served_judge

WORKERS, CONNECTIONS = 4, 8


def connections_per_worker(port: int) -> list[int]:
    """Established connections to `port` each serving gunicorn process holds, fullest first
    (the master holds none: it never accepts)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            established.add(fields[9])  # the socket's inode
    bind = b"CANARY_JUDGE_BIND=127.0.0.1:%d" % port
    counts = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if bind not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        counts.append(sum(1 for link in links
                          if (m := re.fullmatch(r"socket:\[(\d+)\]", link))
                          and m.group(1) in established))
    return sorted(counts, reverse=True)


def test_connections_opened_one_after_another_spread_over_the_workers(lab):
    fullest = []
    with served_judge(lab.url, workers=WORKERS) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(4):
            pools = []
            for _ in range(CONNECTIONS):
                pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
                assert pool.request("GET", "/healthz").status == 200
                pools.append(pool)
            time.sleep(0.2)
            counts = connections_per_worker(port)
            assert sum(counts) == CONNECTIONS, counts
            fullest.append(counts[0])
            for pool in pools:
                pool.close()
            time.sleep(0.3)
    # plain gthread: the worker that last ran took 4-6 of the 8 in each round measured
    assert min(fullest) <= CONNECTIONS // WORKERS + 1, fullest
