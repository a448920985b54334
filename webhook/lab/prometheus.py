"""A throw-away real Prometheus serving planted series, on a free 127.0.0.1 port.

Mocking the Prometheus HTTP API would only test our own idea of PromQL (``rate`` edges,
``histogram_quantile`` interpolation, empty results for absent series). Planting data with
``promtool`` and asking a real server costs well under a second, so tests use the real thing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from webhook.lab.processes import stop_process

_INSTALL_HINT = (
    "the 'prometheus' and 'promtool' binaries are not on PATH; on Debian/Ubuntu install them "
    "with: apt-get install prometheus"
)
_CONFIG = "global:\n  scrape_interval: 15s\nscrape_configs: []\n"


class PrometheusLab:
    """Plant OpenMetrics text with promtool, then serve it with a real Prometheus.

    Plant everything before ``start()``: blocks added to a running server only show up after
    about a minute. Retention is set to 100 years because Prometheus measures it back from the
    newest block, so old planted blocks would otherwise be deleted at start-up.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self._owns_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="prometheus-lab-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        self.url: str | None = None
        self._plants = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """Whether both ``prometheus`` and ``promtool`` are on PATH (tests skip otherwise)."""
        return shutil.which("prometheus") is not None and shutil.which("promtool") is not None

    def plant(self, openmetrics: str) -> None:
        """Write ``openmetrics`` to a file and turn it into TSDB blocks in the data directory."""
        self._require_binaries()
        if self._proc is not None:
            raise RuntimeError("plant() before start(): a running Prometheus ignores new blocks")
        self._plants += 1
        path = self.workdir / f"plant-{self._plants}.om"
        path.write_text(openmetrics, encoding="utf-8")
        cmd = [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(path),
            str(self.data_dir),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"promtool could not plant {path} (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def start(self, timeout: float = 30) -> str:
        """Start Prometheus on a free loopback port and wait until ``/-/ready`` answers 200.

        The port is picked by binding port 0 and releasing it, so another process can take it
        in between; that case is retried with a new port.
        """
        self._require_binaries()
        if self._proc is not None:
            raise RuntimeError(f"Prometheus is already running at {self.url}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(_CONFIG, encoding="utf-8")
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            url = self._launch(config, free_port(), deadline)
            if url is not None:
                self.url = url
                return url
            if "address already in use" not in self._tail() or attempt == 2:
                break
        raise RuntimeError(f"Prometheus did not become ready within {timeout} s:\n{self._tail()}")

    def _launch(self, config: Path, port: int, deadline: float) -> str | None:
        """Run Prometheus on ``port``; return its URL once ready, or None after stopping it."""
        url = f"http://127.0.0.1:{port}"
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=100y",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        with requests.Session() as session:
            while self._proc.poll() is None and time.monotonic() < deadline:
                try:
                    if session.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        return url
                except (requests.ConnectionError, requests.Timeout):
                    pass  # not listening yet; a 503 means still loading blocks
                time.sleep(0.05)
        self.stop()
        return None

    def stop(self) -> None:
        """Terminate Prometheus (kill it if it has not exited after 10 s); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, grace=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.url = None

    def __enter__(self) -> PrometheusLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _require_binaries(self) -> None:
        if not self.available():
            raise RuntimeError(_INSTALL_HINT)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def free_port() -> int:
    """Ask the kernel for a free loopback port (racy in theory, fine for one test session)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
