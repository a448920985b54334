"""Prometheus HTTP API adapter (also Thanos, Mimir, Cortex, VictoriaMetrics).

One pooled `requests.Session` per process, queries of one analysis fanned out on a shared thread
pool, a timeout on every call. Connection failures are retried once by urllib3 (cheap, and they
are the typical blip of a Prometheus pod restart); read timeouts are not, because the caller's
own deadline (Argo/Flagger: 10 s) is already running.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from requests.adapters import HTTPAdapter
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

_MAX_ERROR_TEXT = 300


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
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.prometheus_max_concurrency, thread_name_prefix="prom")

    # -- MetricsSource -------------------------------------------------------------------

    def query_range_many(self, queries: Sequence[RangeQuery]) -> list[QueryResult]:
        if not queries:
            return []
        if len(queries) == 1:
            return [self._query_range(queries[0])]
        futures = [self._executor.submit(self._query_range, q) for q in queries]
        results: list[QueryResult] = []
        first_error: SourceError | None = None
        for future in futures:
            try:
                results.append(future.result())
            except SourceError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return results

    def ready(self) -> tuple[bool, str]:
        try:
            self._get("/api/v1/query", {"query": "vector(1)"}, metric="readiness")
        except SourceError as exc:
            return False, exc.message
        return True, "ok"

    # -- internals -----------------------------------------------------------------------

    def _query_range(self, query: RangeQuery) -> QueryResult:
        began = time.perf_counter()
        payload = self._post("/api/v1/query_range", {
            "query": query.expr,
            "start": _fmt_time(query.start),
            "end": _fmt_time(query.end),
            "step": _fmt_time(query.step),
        }, metric=query.metric)
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

    def _post(self, path: str, form: dict[str, str], metric: str) -> dict:
        return self._call("POST", path, metric, data=form)

    def _get(self, path: str, params: dict[str, str], metric: str) -> dict:
        return self._call("GET", path, metric, params=params)

    def _call(self, method: str, path: str, metric: str, **kwargs: object) -> dict:
        what = f"metric {metric!r}: " if metric else ""
        try:
            response = self._session.request(method, self._base + path, headers=self._headers(),
                                             timeout=self._timeout, **kwargs)  # type: ignore[arg-type]
        except requests.Timeout as exc:
            raise SourceTimeout(
                f"{what}Prometheus did not answer within {self._timeout:g}s", metric) from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"{what}Prometheus unreachable ({type(exc).__name__})", metric) from exc
        body = _json_or_none(response)
        error_text = _error_text(body, response)
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


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(body: object, response: requests.Response) -> str:
    """Prometheus' own error message, trimmed; it is what an operator needs to fix a config."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = f"{body.get('errorType', 'error')}: {body['error']}"
    else:
        text = (response.text or response.reason or "").strip()
    text = " ".join(text.split())
    return text[:_MAX_ERROR_TEXT] or f"HTTP {response.status_code}"


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
