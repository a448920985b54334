"""Prometheus HTTP API adapter (also Thanos, Mimir, Cortex, VictoriaMetrics).

One urllib3 pool per process, the requests of one analysis fanned out on a shared thread pool (the
first of them, the first half of a repeated poll's combined query, is sent from the calling thread),
one deadline per analysis bounding every connect and socket read. urllib3 directly, not a
`requests.Session`: a session spends ~1 ms of CPU per call merging settings, hooks, cookies and
environment lookups (measured: six small queries 11 ms of CPU through `requests`, 5 ms here), and
all of that runs under the worker's one GIL. What `requests` gave for free is kept by hand: basic
auth from the URL's userinfo, HTTP(S)_PROXY / NO_PROXY, and its CA bundle. An answer is placed on
the grid by `matrix`, all series at once. Writing and reading requests on kept connections by hand
instead of through urllib3 saved another ~0.25 ms of CPU per request and was not kept: a hand-made
HTTP/1.1 reader is ours to keep right (framing, encodings, errors) for 2-3 % of an analysis.

Connection failures are retried once by urllib3 (cheap, and they are the typical blip of a
Prometheus pod restart); read timeouts are not, because the caller's own deadline (Argo/Flagger:
10 s) is already running. Redirects are not followed: a 3xx is an error naming the fix, so no
header we send (tokens, tenant) ever reaches another host.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from base64 import b64encode
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from functools import lru_cache
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote_plus, unquote, urlencode

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util import Timeout, parse_url
from urllib3.util.retry import Retry

from webhook import __version__
from webhook.settings import Settings
from webhook.sources.base import (
    QueryRejected,
    QueryResult,
    RangeQuery,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)
from webhook.sources.prometheus import combine, matrix, promql

_MAX_ERROR_TEXT = 200
_READ_SIZE = 65536
_MAX_BODY = 64 * 2**20
# Prometheus' own errorType values (api/v1); anything else is not its envelope.
_ERROR_TYPES = {"timeout", "canceled", "execution", "bad_data", "internal", "unavailable",
                "not_found", "not_acceptable"}
_HEADER_WORDS = ("authorization", "bearer ", "x-scope-orgid", "cookie", "basic ")
_FORM = "application/x-www-form-urlencoded"
# Thanos' and VictoriaMetrics cluster's "fail rather than answer from the nodes that are up"
_DENY_PARTIAL = "&partial_response=false&deny_partial_response=1"
# headers whose values we choose (no credential), unless an operator's replace them
_OUR_HEADERS = frozenset(("accept", "accept-encoding", "user-agent"))
# the `stop` of a request sent from the caller's thread: nothing else can stop it
_NEVER = threading.Event()
_RETRY = Retry(total=1, connect=1, read=False, status=0, redirect=False, backoff_factor=0.05,
               allowed_methods=None, raise_on_status=False)


class PrometheusSource:
    """`MetricsSource` over the Prometheus `query_range` API."""

    def __init__(self, settings: Settings, executor: ThreadPoolExecutor | None = None) -> None:
        url = parse_url(settings.prometheus_url.rstrip("/"))
        username, password = settings.prometheus_username, (
            settings.prometheus_password.get_secret_value()
            if settings.prometheus_password else None)
        if url.auth and not username:  # http://user:pw@host, as requests read it
            user, _, pw = url.auth.partition(":")
            username, password = unquote(user), unquote(pw)
        self._base = url._replace(auth=None).url
        self._timeout = settings.prometheus_timeout_seconds
        self._token = settings.prometheus_bearer_token
        self._token_file = settings.prometheus_bearer_token_file
        self._http = _pool_manager(settings, self._base)
        # the host's own pool, called with the path alone: PoolManager.urlopen re-parses the
        # URL and looks its pool up on every call (~40 µs, under the GIL the judges share).
        # Through a proxy the manager must write the request line, so it is called instead.
        if isinstance(self._http, urllib3.ProxyManager):
            self._urlopen, self._target = self._http.urlopen, self._base
            self._open_options: dict[str, object] = {}
        else:
            self._urlopen = self._http.connection_from_url(self._base).urlopen
            self._target = (url.path or "").rstrip("/")
            self._open_options = {"assert_same_host": False}
        # sent with every call; the bearer token is added per call (its file is re-read)
        # (an operator's header replaces ours of the same name, in any case, as with requests)
        self._static_headers = _merged({
            "Accept": "application/json",
            "Accept-Encoding": "gzip" if settings.prometheus_gzip else "identity",
            "User-Agent": f"canary-judge/{__version__}"}, settings.prometheus_headers)
        if settings.prometheus_org_id:
            self._static_headers = _merged(self._static_headers,
                                           {"X-Scope-OrgID": settings.prometheus_org_id})
        # basic auth wins over a bearer token when both are set, as it did with requests
        self._basic = bool(username)
        if username:
            pair = f"{username}:{password or ''}".encode()
            self._static_headers = _merged(self._static_headers, {
                "Authorization": f"Basic {b64encode(pair).decode()}"})
        self._deadline = settings.analysis_deadline_seconds
        self._ready_deadline = settings.readiness_deadline_seconds
        # a Thanos store or a vmstorage node that is down must fail the analysis (5xx, Argo:
        # Error), not leave it the series the others hold, judged as if they were all
        self._form_tail = _DENY_PARTIAL if settings.prometheus_deny_partial else ""
        # every credential we send, so that no upstream text quoting one is passed on: each
        # header's value and its credential without the scheme word ("Basic <base64>" is
        # the password in all but name, and a gateway may quote the blob alone)
        self._secrets = [v for v in (
            self._token.get_secret_value() if self._token else None, password,
            settings.prometheus_org_id,
            *(part for name, value in self._static_headers.items()
              if name.lower() not in _OUR_HEADERS or name in settings.prometheus_headers
              for part in (value, value.split(" ", 1)[-1]))) if v]
        # sets of expressions whose union was rejected; None: never combine (the setting)
        self._memo = combine.RejectionMemo() if settings.prometheus_combine_queries else None
        self.max_points = combine.MAX_POINTS  # parts × steps per combined request
        self._spread = settings.prometheus_union_requests
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.prometheus_max_concurrency, thread_name_prefix="prom")
        # requests in flight, on the pool or on callers' threads: at most the pool's size
        self._slots = threading.BoundedSemaphore(settings.prometheus_max_concurrency)

    # -- MetricsSource -------------------------------------------------------------------

    def query_range_many(self, queries: Sequence[RangeQuery],
                         deadline: float | None = None) -> list[QueryResult]:
        """All queries on the shared bounded pool, within `deadline` (time.monotonic()), those
        on the same grid as a few unions sent at once (`combine`) unless the setting is off.

        The calling thread waits at most until the deadline and then answers; the requests
        still running are told to stop (each checks between reads of its body and closes its
        connection), queued ones are cancelled, so abandoned work ends within one socket
        timeout and can never pile up beyond the pool's size. A combined request the source
        rejects is followed by its parts sent separately (a second wave, not a retry: the
        first answer was a definite 4xx, so the wait cannot double).
        """
        if not queries:
            return []
        deadline = time.monotonic() + self._deadline if deadline is None else deadline
        out: list[QueryResult | None] = [None] * len(queries)
        batches = combine.plan(queries, self._memo, self.max_points, self._spread)
        wave: list[tuple[combine.Batch, QueryResult | None]] = [(b, None) for b in batches]
        refused: list[tuple[str, ...]] = []
        while wave:
            answers = self._run(queries, wave, deadline)
            again: list[tuple[combine.Batch, QueryResult | None]] = []
            for (batch, _), answer in zip(wave, answers, strict=True):
                if isinstance(answer, QueryResult):  # the union was rejected: its cost
                    refused.append(batch.exprs)
                    again += [(combine.Batch((i,), (queries[i].expr,)), answer if n == 0 else None)
                              for n, i in enumerate(batch.members)]
                    continue
                for i, result in zip(batch.members, answer, strict=True):
                    out[i] = result
            wave = again
        # remembered only once its parts were answered alone: a refusal of every query (a
        # Thanos store down, 422) says nothing about unions, and remembering it sent a
        # rollout's every later poll as separate requests
        if self._memo is not None:
            for exprs in refused:
                self._memo.add(exprs)
        return [r for r in out if r is not None]

    def _run(self, queries: Sequence[RangeQuery],
             wave: Sequence[tuple[combine.Batch, QueryResult | None]],
             deadline: float) -> list[list[QueryResult] | QueryResult]:
        """One request per batch, concurrently; each answer is the batch's results, or the
        rejected union's cost (a `QueryResult`) when its parts must be asked separately.

        The first request (a repeated poll's first half) is sent from the calling thread once the
        others are on the pool: handing it to the pool and waiting for it cost ~0.2 ms of wall time
        and CPU per analysis for nothing; its failure stops the others. Its every connect and socket
        read is bounded by what is left of the deadline when it starts (`_DeadlineTimeout`,
        `_read_body`), and an answer that ends past the deadline is the same timeout as one still
        pending there, so the caller sees what the pool would give it. Requests in flight, pooled or
        not, share the pool's size (`_slots`): a first request finding none free queues on the pool
        instead.
        """
        here = self._slots.acquire(blocking=False)
        stop = threading.Event()
        try:
            futures = [self._executor.submit(self._pooled, queries, batch, cost, deadline, stop)
                       for batch, cost in wave[1 if here else 0:]]
        except RuntimeError as exc:  # the pool was shut down (the worker is exiting)
            if here:
                self._slots.release()
            raise SourceUnavailable("the judge is shutting down") from exc
        first: list[list[QueryResult] | QueryResult] = []
        if here:  # the first batch on this thread while the pool sends the others
            try:
                first.append(self._here(queries, *wave[0], deadline))
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
            finally:
                self._slots.release()
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
            metric = next((queries[b.members[0]].metric for (b, _), f in zip(
                wave[len(first):], futures, strict=True) if f in pending), "")
            raise self._overdue(metric)
        return first + [f.result() for f in futures]

    def _pooled(self, queries: Sequence[RangeQuery], batch: combine.Batch,
                cost: QueryResult | None, deadline: float,
                stop: threading.Event) -> list[QueryResult] | QueryResult:
        """`_batch` on a pool thread, once a slot is free (callers' threads may hold some)."""
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise SourceTimeout("the metrics source did not answer within the deadline",
                                queries[batch.members[0]].metric)
        try:
            return self._batch(queries, batch, cost, deadline, stop)
        finally:
            self._slots.release()

    def _here(self, queries: Sequence[RangeQuery], batch: combine.Batch,
              cost: QueryResult | None, deadline: float) -> list[QueryResult] | QueryResult:
        """`_batch` on the calling thread, its failures reported as `_run` reports a pooled
        request's."""
        metric = queries[batch.members[0]].metric
        try:
            answer = self._batch(queries, batch, cost, deadline, _NEVER)
        except SourceError as exc:
            if time.monotonic() > deadline:
                raise self._overdue(metric) from exc
            raise
        except Exception as exc:  # as a pooled request's failure is reported
            if time.monotonic() > deadline:
                raise self._overdue(metric) from exc
            raise SourceUnavailable(f"reading the metrics source failed "
                                    f"({type(exc).__name__})") from exc
        if time.monotonic() > deadline:
            raise self._overdue(metric)
        return answer

    def _overdue(self, metric: str) -> SourceTimeout:
        return SourceTimeout(
            f"the metrics source did not answer all queries within the analysis deadline "
            f"of {self._deadline:g}s (CANARY_JUDGE_ANALYSIS_DEADLINE_SECONDS)", metric)

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

    def _batch(self, queries: Sequence[RangeQuery], batch: combine.Batch,
               cost: QueryResult | None, deadline: float,
               stop: threading.Event) -> list[QueryResult] | QueryResult:
        """The batch's results from one request; `cost`, a rejected union's, is added to the
        first. A rejected union answers its own cost instead, for the caller's second wave."""
        first = queries[batch.members[0]]
        if not batch.combined:
            result = self._query_range(first, deadline, stop)
            if cost is not None:
                result = replace(result, seconds=result.seconds + cost.seconds,
                                 requests=result.requests + cost.requests)
            return [result]
        began = time.perf_counter()
        union = RangeQuery(None, _tagged_union(batch.exprs),
                           first.start, first.end, first.step, first.metric)
        try:
            data = self._matrix(union, deadline, stop)
        except QueryRejected:
            return QueryResult(union, (), time.perf_counter() - began)
        parts = combine.split(*matrix.parse(data, union, combine.PART_LABEL), batch,
                              first.metric)
        seconds = time.perf_counter() - began
        return [QueryResult(queries[i], part, seconds if n == 0 else 0.0, int(n == 0))
                for n, (i, part) in enumerate(zip(batch.members, parts, strict=True))]

    def _query_range(self, query: RangeQuery, deadline: float,
                     stop: threading.Event) -> QueryResult:
        began = time.perf_counter()
        try:
            data = self._matrix(query, deadline, stop)
        except QueryRejected as exc:  # which query: the analysis tells the caller's apart
            exc.key = query.key
            raise
        series = tuple(matrix.parse(data, query)[1])
        return QueryResult(query, series, time.perf_counter() - began)

    def _matrix(self, query: RangeQuery, deadline: float, stop: threading.Event) -> object:
        """The `result` of a range query's answer, which must be a matrix."""
        # the times need no quoting: digits, '.', '-' (or "inf"/"nan"), as urlencode keeps them
        form = (f"query={_quoted(query.expr)}&start={_fmt_time(query.start)}"
                f"&end={_fmt_time(query.end)}&step={_fmt_time(query.step)}{self._form_tail}")
        payload = self._call("POST", "/api/v1/query_range", query.metric, deadline, stop,
                             body=form)
        if payload.get("isPartial") is True:  # VictoriaMetrics cluster, a node down
            raise SourceUnavailable(
                f"metric {query.metric!r}: the metrics source answered with partial data "
                "(isPartial: some of its storage nodes did not answer); judging the series "
                "that are left could pass a canary on the errors that are missing",
                query.metric)
        data = payload.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise SourceUnavailable(
                f"metric {query.metric!r}: Prometheus answered without a matrix result",
                query.metric)
        return data.get("result")

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

    def _get(self, path: str, params: dict[str, str], metric: str, deadline: float,
             stop: threading.Event) -> dict:
        return self._call("GET", f"{path}?{urlencode(params)}", metric, deadline, stop)

    def _call(self, method: str, path: str, metric: str, deadline: float,
              stop: threading.Event, body: str | None = None) -> dict:
        what = f"metric {metric!r}: " if metric else ""
        late = SourceTimeout(f"{what}the metrics source did not answer within the deadline",
                             metric)
        if deadline - time.monotonic() <= 0 or stop.is_set():
            raise late
        sent = {} if self._basic else self._headers()
        headers = _merged(self._static_headers, sent) if sent else dict(self._static_headers)
        data = None
        if body is not None:
            headers["Content-Type"] = _FORM
            data = body.encode()  # as urllib3 would encode it
        slow = f"{what}Prometheus did not answer within {self._timeout:g}s"
        try:
            response = self._urlopen(
                method, self._target + path, body=data, headers=headers,
                timeout=_DeadlineTimeout(self._timeout, deadline), retries=_RETRY,
                redirect=False, preload_content=False, **self._open_options)
        except MaxRetryError as exc:  # connecting failed twice
            reason = exc.reason
            if isinstance(reason, ConnectTimeoutError) and not isinstance(
                    reason, NewConnectionError):
                raise SourceTimeout(slow, metric) from exc
            raise SourceUnavailable(f"{what}Prometheus unreachable "
                                    f"({type(reason or exc).__name__})", metric) from exc
        except (ReadTimeoutError, TimeoutError) as exc:
            raise SourceTimeout(slow, metric) from exc
        except (HTTPError, OSError) as exc:
            raise SourceUnavailable(
                f"{what}Prometheus unreachable ({type(exc).__name__})", metric) from exc
        complete = False
        try:
            raw = _read_body(response, deadline, stop, late, self._timeout)
            complete = True
        except (ReadTimeoutError, TimeoutError) as exc:
            raise SourceTimeout(slow, metric) from exc
        except (HTTPError, OSError) as exc:
            raise SourceUnavailable(
                f"{what}Prometheus broke off its answer ({type(exc).__name__})", metric) from exc
        finally:
            if not complete:  # never hand a half-read connection back to the pool
                response.close()
            response.release_conn()
        payload = _json_or_none(raw)
        status = response.status
        if 200 <= status < 300 and isinstance(payload, dict) and payload.get(
                "status") == "success":
            return payload  # the usual answer: no error text to write
        error_text = _error_text(payload, status,
                                 [*self._secrets, *(v.split(" ", 1)[-1] for v in sent.values())])
        if 400 <= status < 500 and status not in (401, 403, 429):
            raise QueryRejected(
                f"{what}Prometheus rejected the query: {error_text}", metric,
                detail=error_text, malformed=status == 400 and isinstance(payload, dict)
                and payload.get("errorType") == "bad_data")
        if status in (401, 403):
            raise SourceUnavailable(
                f"{what}Prometheus refused our credentials (HTTP {status})", metric)
        timed_out = isinstance(payload, dict) and payload.get("errorType") == "timeout"
        if status == 503 and timed_out:
            raise SourceTimeout(f"{what}Prometheus query timed out: {error_text}", metric)
        if 300 <= status < 400:
            raise SourceUnavailable(
                f"{what}Prometheus answered HTTP {status}: {error_text} (redirects are not "
                "followed: point CANARY_JUDGE_PROMETHEUS_URL at the final address)", metric)
        if status >= 300 or status == 429:
            raise SourceUnavailable(
                f"{what}Prometheus answered HTTP {status}: {error_text}", metric)
        if not isinstance(payload, dict) or payload.get("status") != "success":
            raise SourceUnavailable(f"{what}Prometheus answered an unreadable body", metric)
        return payload


def _merged(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """`base` with `extra`'s headers replacing any of the same name, whatever its case."""
    replaced = {name.lower() for name in extra}
    return {**{k: v for k, v in base.items() if k.lower() not in replaced}, **extra}


def _pool_manager(settings: Settings, base: str) -> urllib3.PoolManager:
    """One connection pool per host, through the environment's proxy when one applies (as
    `requests` did: HTTP_PROXY, HTTPS_PROXY, NO_PROXY), verifying TLS against the configured CA
    file or requests' bundle."""
    url = parse_url(base)
    tls: dict[str, object] = {}
    if url.scheme == "https":
        if settings.prometheus_insecure_skip_verify:
            tls = {"cert_reqs": "CERT_NONE"}
        else:
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(
                settings.prometheus_ca_file or os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("CURL_CA_BUNDLE") or _default_ca_bundle())}
    size = settings.prometheus_max_concurrency
    proxy = urllib.request.getproxies().get(url.scheme or "http")
    if proxy and not urllib.request.proxy_bypass(url.host or ""):
        return urllib3.ProxyManager(proxy, num_pools=2, maxsize=size, **tls)  # type: ignore[arg-type]
    return urllib3.PoolManager(num_pools=2, maxsize=size, **tls)  # type: ignore[arg-type]


def _default_ca_bundle() -> str:
    import certifi  # requests' own CA bundle, installed with it

    return certifi.where()


class _DeadlineTimeout(Timeout):
    """urllib3's timeout for one request: each connect attempt (a retried one too) and the
    wait for the answer's head bounded by the per-operation timeout and by what is left of the
    analysis deadline when it starts."""

    def __init__(self, seconds: float, deadline: float) -> None:
        super().__init__(connect=seconds, read=seconds)
        self._seconds = seconds
        self._until = deadline

    def clone(self) -> _DeadlineTimeout:
        return _DeadlineTimeout(self._seconds, self._until)

    @property
    def connect_timeout(self) -> float:
        return _left(self._seconds, self._until)

    @property
    def read_timeout(self) -> float:
        return _left(self._seconds, self._until)


def _left(seconds: float, deadline: float) -> float:
    """A socket timeout: `seconds`, or what is left until `deadline` if less (never 0, which
    would make the socket non-blocking)."""
    return max(min(seconds, deadline - time.monotonic()), 0.001)


def _read_body(response: urllib3.BaseHTTPResponse, deadline: float, stop: threading.Event,
               late: SourceTimeout, seconds: float) -> bytes:
    """The whole body, read one socket read at a time with the deadline checked in between
    and each read bounded by what is left of it, so an upstream trickling a byte a second
    cannot hold a thread past the deadline."""
    chunks: list[bytes] = []
    size = 0
    sock = _socket_of(response)
    while True:
        if stop.is_set() or time.monotonic() > deadline:
            raise late
        if sock is not None:
            try:
                sock.settimeout(_left(seconds, deadline))
            except OSError:  # closed by http.client once it read the whole answer
                sock = None
        chunk = response.read1(_READ_SIZE)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > _MAX_BODY:
            raise SourceUnavailable(f"the metrics source answered more than "
                                    f"{_MAX_BODY // 2**20} MiB for one query", late.metric)
        chunks.append(chunk)


def _socket_of(response: urllib3.BaseHTTPResponse) -> socket.socket | None:
    """The socket an answer is read from: its connection's, or, when the server closes the
    connection after this answer (HTTP/1.0, `Connection: close`), the one http.client handed
    to the response's file."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is None:
        raw = getattr(getattr(getattr(response, "_fp", None), "fp", None), "raw", None)
        sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


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


@lru_cache(maxsize=256)
def _tagged_union(exprs: tuple[str, ...]) -> str:
    """A batch's combined query, once per set of queries (a poll asks the same ones again)."""
    return promql.tagged_union(exprs, combine.PART_LABEL)


@lru_cache(maxsize=512)
def _quoted(expr: str) -> str:
    """A query's text form-encoded, as `urlencode` writes it, once per text: a poll asks the
    same queries again, and encoding a combined one (~1.3 kB) costs ~85 µs each time."""
    return quote_plus(expr)


def _fmt_time(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")
