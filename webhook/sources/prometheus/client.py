"""Prometheus HTTP API adapter (also Thanos, Mimir, Cortex, VictoriaMetrics).

One pooled `requests.Session` per process, queries of one analysis fanned out on a shared thread
pool, a timeout on every call. Connection failures are retried once by urllib3 (cheap, and they
are the typical blip of a Prometheus pod restart); read timeouts are not, because the caller's
own deadline (Argo/Flagger: 10 s) is already running.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from pathlib import Path

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError, ReadTimeoutError
from urllib3.util.retry import Retry

from webhook.settings import Settings
from webhook.sources.base import (
    QueryRejected,
    QueryResult,
    RangeQuery,
    Series,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
    grid,
)

_MAX_ERROR_TEXT = 200
_READ_SIZE = 65536
_MAX_BODY = 64 * 2**20
# Prometheus' own errorType values (api/v1); anything else is not its envelope.
_ERROR_TYPES = {"timeout", "canceled", "execution", "bad_data", "internal", "unavailable",
                "not_found", "not_acceptable"}
_HEADER_WORDS = ("authorization", "bearer ", "x-scope-orgid", "cookie", "basic ")


class PrometheusSource:
    """`MetricsSource` over the Prometheus `query_range` API."""

    def __init__(self, settings: Settings, executor: ThreadPoolExecutor | None = None) -> None:
        self._base = settings.prometheus_url.rstrip("/")
        self._timeout = settings.prometheus_timeout_seconds
        self._token = settings.prometheus_bearer_token
        self._token_file = settings.prometheus_bearer_token_file
        self._session = requests.Session()
        retry = Retry(total=1, connect=1, read=False, status=0, backoff_factor=0.05,
                      allowed_methods=None, raise_on_status=False)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=settings.prometheus_max_concurrency,
                              max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(settings.prometheus_headers)
        self._session.headers["Accept"] = "application/json"
        if settings.prometheus_org_id:
            self._session.headers["X-Scope-OrgID"] = settings.prometheus_org_id
        if settings.prometheus_username:
            password = settings.prometheus_password
            self._session.auth = (settings.prometheus_username,
                                  password.get_secret_value() if password else "")
        if settings.prometheus_insecure_skip_verify:
            self._session.verify = False
        elif settings.prometheus_ca_file:
            self._session.verify = str(settings.prometheus_ca_file)
        self._deadline = settings.analysis_deadline_seconds
        self._ready_deadline = settings.readiness_deadline_seconds
        # every credential we send, so that no upstream text quoting one is passed on
        self._secrets = [v for v in (
            self._token.get_secret_value() if self._token else None,
            settings.prometheus_password.get_secret_value()
            if settings.prometheus_password else None,
            settings.prometheus_org_id, *settings.prometheus_headers.values()) if v]
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.prometheus_max_concurrency, thread_name_prefix="prom")

    # -- MetricsSource -------------------------------------------------------------------

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        """All queries on the shared bounded pool, within `deadline` (time.monotonic()).

        The calling thread waits at most until the deadline and then answers; the queries
        still running are told to stop (each checks between reads of its body and closes its
        connection), queued ones are cancelled, so abandoned work ends within one socket
        timeout and can never pile up beyond the pool's size.
        """
        if not queries:
            return []
        deadline = time.monotonic() + self._deadline if deadline is None else deadline
        stop = threading.Event()
        try:
            futures = [self._executor.submit(self._query_range, q, deadline, stop)
                       for q in queries]
        except RuntimeError as exc:  # the pool was shut down (the worker is exiting)
            raise SourceUnavailable("the judge is shutting down") from exc
        done, pending = wait(futures, timeout=max(deadline - time.monotonic(), 0.0),
                             return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed or pending:
            stop.set()
            for future in pending:
                future.cancel()
        if failed:
            error = failed[0].exception()
            if isinstance(error, SourceError):
                raise error
            raise SourceUnavailable(f"reading the metrics source failed "
                                    f"({type(error).__name__})") from error
        if pending:
            metric = next((q.metric for q, f in zip(queries, futures, strict=True)
                           if f in pending), "")
            raise SourceTimeout(
                f"the metrics source did not answer all queries within the analysis deadline "
                f"of {self._deadline:g}s (CANARY_JUDGE_ANALYSIS_DEADLINE_SECONDS)",
                metric)
        return [f.result() for f in futures]

    def ready(self) -> tuple[bool, str]:
        """Bounded like an analysis, by the readiness deadline, on the same pool."""
        deadline = time.monotonic() + self._ready_deadline
        stop = threading.Event()
        try:
            future = self._executor.submit(self._get, "/api/v1/query", {"query": "vector(1)"},
                                           "", deadline, stop)
            future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except SourceError as exc:
            return False, exc.message
        except FutureTimeout:
            stop.set()
            future.cancel()
            return False, f"no answer within {self._ready_deadline:g}s"
        except RuntimeError:
            return False, "the judge is shutting down"
        return True, "ok"

    # -- internals -----------------------------------------------------------------------

    def _query_range(self, query: RangeQuery, deadline: float,
                     stop: threading.Event) -> QueryResult:
        began = time.perf_counter()
        payload = self._post("/api/v1/query_range", {
            "query": query.expr,
            "start": _fmt_time(query.start),
            "end": _fmt_time(query.end),
            "step": _fmt_time(query.step),
        }, query.metric, deadline, stop)
        data = payload.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise SourceUnavailable(
                f"metric {query.metric!r}: Prometheus answered without a matrix result",
                query.metric)
        series = _parse_matrix(data.get("result"), query)
        return QueryResult(query, series, time.perf_counter() - began)

    def _headers(self) -> dict[str, str]:
        token = None
        if self._token_file is not None:
            try:
                token = Path(self._token_file).read_text().strip()
            except OSError as exc:
                raise SourceUnavailable(
                    f"cannot read Prometheus token file: {exc.strerror}") from exc
        elif self._token is not None:
            token = self._token.get_secret_value()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _post(self, path: str, form: dict[str, str], metric: str, deadline: float,
              stop: threading.Event) -> dict:
        return self._call("POST", path, metric, deadline, stop, data=form)

    def _get(self, path: str, params: dict[str, str], metric: str, deadline: float,
             stop: threading.Event) -> dict:
        return self._call("GET", path, metric, deadline, stop, params=params)

    def _call(self, method: str, path: str, metric: str, deadline: float,
              stop: threading.Event, **kwargs: object) -> dict:
        what = f"metric {metric!r}: " if metric else ""
        late = SourceTimeout(f"{what}the metrics source did not answer within the deadline",
                             metric)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stop.is_set():
            raise late
        # connect and every socket read bounded by what is left of the deadline
        timeout = (min(self._timeout, remaining), min(self._timeout, remaining))
        headers = self._headers()
        try:
            response = self._session.request(method, self._base + path, headers=headers,
                                             timeout=timeout, stream=True,
                                             **kwargs)  # type: ignore[arg-type]
        except requests.Timeout as exc:
            raise SourceTimeout(
                f"{what}Prometheus did not answer within {self._timeout:g}s", metric) from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"{what}Prometheus unreachable ({type(exc).__name__})", metric) from exc
        try:
            raw = _read_body(response, deadline, stop, late)
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"{what}Prometheus broke off its answer ({type(exc).__name__})", metric) from exc
        except (OSError, HTTPError) as exc:
            if isinstance(exc, ReadTimeoutError | TimeoutError):
                raise SourceTimeout(f"{what}Prometheus did not answer within "
                                    f"{self._timeout:g}s", metric) from exc
            raise SourceUnavailable(
                f"{what}Prometheus broke off its answer ({type(exc).__name__})", metric) from exc
        finally:
            response.close()
        body = _json_or_none(raw)
        sent = [v.split(" ", 1)[-1] for v in headers.values()]
        error_text = _error_text(body, response.status_code, [*self._secrets, *sent])
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 429):
            raise QueryRejected(f"{what}Prometheus rejected the query: {error_text}", metric)
        if response.status_code in (401, 403):
            raise SourceUnavailable(
                f"{what}Prometheus refused our credentials (HTTP {response.status_code})", metric)
        timed_out = isinstance(body, dict) and body.get("errorType") == "timeout"
        if response.status_code == 503 and timed_out:
            raise SourceTimeout(f"{what}Prometheus query timed out: {error_text}", metric)
        if response.status_code >= 300 or response.status_code == 429:
            raise SourceUnavailable(
                f"{what}Prometheus answered HTTP {response.status_code}: {error_text}", metric)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise SourceUnavailable(f"{what}Prometheus answered an unreadable body", metric)
        return body


def _read_body(response: requests.Response, deadline: float, stop: threading.Event,
               late: SourceTimeout) -> bytes:
    """The whole body, read one socket read at a time with the deadline checked in between,
    so an upstream trickling a byte a second cannot hold a thread past the deadline."""
    chunks: list[bytes] = []
    size = 0
    raw = response.raw
    while True:
        if stop.is_set() or time.monotonic() > deadline:
            raise late
        chunk = raw.read1(_READ_SIZE, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > _MAX_BODY:
            raise SourceUnavailable(f"the metrics source answered more than "
                                    f"{_MAX_BODY // 2**20} MiB for one query", late.metric)
        chunks.append(chunk)


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _error_text(body: object, status: int, secrets: Sequence[str]) -> str:
    """Prometheus' own `error` field from its JSON error envelope, short, and nothing else.

    Raw bodies of proxies and gateways may echo our request headers (the bearer token,
    X-Scope-OrgID, custom headers): they never reach an answer or the audit log. The `error`
    field is scrubbed of every credential we send, too.
    """
    text = ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = " ".join(body["error"].split())
        lowered = text.lower()
        if any(len(secret) >= 4 and secret.lower() in lowered for secret in secrets) or any(
                word in lowered for word in _HEADER_WORDS):
            text = "(error text withheld: it quotes our request headers)"
        error_type = body.get("errorType")
        if isinstance(error_type, str) and error_type in _ERROR_TYPES and text:
            text = f"{error_type}: {text}"
    if not text:
        try:
            text = HTTPStatus(status).phrase
        except ValueError:
            text = f"HTTP {status}"
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT - 1] + "…"


def _fmt_time(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _parse_matrix(result: object, query: RangeQuery) -> tuple[Series, ...]:
    """Place each series' points on the query grid; absent points stay NaN."""
    if not isinstance(result, list):
        raise SourceUnavailable(f"metric {query.metric!r}: malformed matrix from Prometheus",
                                query.metric)
    times = grid(query.start, query.end, query.step)
    out: list[Series] = []
    for item in result:
        try:
            labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
            points = item.get("values", [])
            values = np.full(times.size, np.nan)
            present = np.zeros(times.size, dtype=bool)
            for ts, raw in points:
                index = round((float(ts) - query.start) / query.step)
                if 0 <= index < times.size:
                    values[index] = _parse_value(raw)
                    present[index] = True
        except (AttributeError, TypeError, ValueError) as exc:
            raise SourceUnavailable(
                f"metric {query.metric!r}: malformed series from Prometheus", query.metric) from exc
        out.append(Series(labels, values, present))
    return tuple(out)


def _parse_value(raw: object) -> float:
    value = float(str(raw))  # Prometheus sends strings: "1.5", "NaN", "+Inf"
    return value if not math.isnan(value) else math.nan
