"""Service configuration, read once from `CANARY_JUDGE_*` environment variables.

Secrets (tokens, passwords) are `SecretStr` so that a stray `repr()` or log line never prints
them; only the Prometheus adapter and the auth check ever unwrap them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webhook.bounds import MIN_ALPHA
from webhook.shared_dir import DEFAULT_MB, MAX_MB


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob an operator can turn; the README lists them with the same names."""

    model_config = SettingsConfigDict(env_prefix="CANARY_JUDGE_", extra="ignore")

    metrics_source: Literal["prometheus"] = Field(
        "prometheus", description="Which backend answers the queries (webhook/sources/).")
    prometheus_url: str = Field(
        "http://localhost:9090",
        description="Base URL of the Prometheus-compatible API (Thanos, Mimir: include the "
        "path prefix, e.g. http://mimir/prometheus).",
    )
    prometheus_bearer_token: SecretStr | None = None
    prometheus_bearer_token_file: Path | None = Field(
        None, description="File holding the bearer token (a mounted Secret); re-read per call."
    )
    prometheus_username: str | None = None
    prometheus_password: SecretStr | None = None
    prometheus_org_id: str | None = Field(
        None, description="Sent as X-Scope-OrgID (Mimir, Cortex).")
    prometheus_headers: dict[str, str] = Field(
        default_factory=dict, description='Extra headers as JSON, e.g. {"X-Foo": "bar"}.'
    )
    prometheus_ca_file: Path | None = None
    prometheus_insecure_skip_verify: bool = False
    prometheus_timeout_seconds: float = Field(
        5.0, gt=0, description="Per socket operation (connect, each read); the analysis "
        "deadline bounds the whole."
    )
    prometheus_max_concurrency: int = Field(8, ge=1, le=64)
    prometheus_gzip: bool = Field(
        False, description="Ask Prometheus for gzip-compressed answers. Off: in a cluster the "
        "answers are small and compressing them costs Prometheus more time than the bytes "
        "saved (measured: six cached-poll queries 6 ms uncompressed, 13 ms gzip); turn it on "
        "for a Prometheus behind a slow link.")
    prometheus_combine_queries: bool = Field(
        True, description="Send an analysis' range queries that share start, end and step as "
        "one query (`label_replace(q0, \"__canary_judge_part__\", \"0\", \"\", \"\") or …`) "
        "and split the answer back: one round trip and one evaluation instead of several. Off "
        "for a backend that mishandles `or` or `label_replace`.")
    prometheus_union_requests: int = Field(
        2, ge=1, le=8, description="How many requests at once a combined query is cut "
        "into (each keeping at least 3 queries): Prometheus evaluates one request on one "
        "goroutine, so two halves sent at once answer sooner than their union (`http`'s "
        "ten queries on a repeated poll: ~1–1.5 ms less, `bench/latency.py`). 1 sends one "
        "union per grid.")
    prometheus_deny_partial: bool = Field(
        True, description="Ask a sharded backend to fail a query rather than answer from the "
        "shards that are up (`partial_response=false` for Thanos, `deny_partial_response=1` "
        "for VictoriaMetrics cluster; Prometheus ignores both): data missing a store's series "
        "is judged as if complete. An answer marked partial (`isPartial`) is refused either "
        "way. Off only for a proxy that refuses unknown query parameters.")
    analysis_deadline_seconds: float = Field(
        8.0, gt=0, le=60, description="One deadline per analysis for everything upstream: "
        "connecting, waiting and reading whole answers. Past it: 504. Keep it below the "
        "callers' own timeout (Argo and Flagger: 10 s).")
    readiness_deadline_seconds: float = Field(
        3.0, gt=0, le=60, description="/readyz's bound on its Prometheus probe (keep it "
        "below the readinessProbe's timeoutSeconds).")
    threads: int = Field(
        33, ge=1, le=256, description="gunicorn threads per worker (the same variable the "
        "gunicorn config reads); at most threads - 1 analyses are in a worker at once "
        "(running or waiting for a slot), so one thread is always free for /healthz, /readyz "
        "and /metrics. 33: 32 pollers on one keep-alive worker are never turned away.")

    step_cache_points: int = Field(
        2_000_000, ge=0, description="Per-process cache of step data (series × steps, ~9 "
        "bytes each; 0 turns it off): a repeated poll reads only the steps that are new or "
        "not yet settled.")
    shared_cache_mb: float = Field(
        DEFAULT_MB, ge=0, le=MAX_MB, description="Under gunicorn, the workers of one pod share the "
        "step data and rollout starts they read, as files in a private directory the master "
        "makes under the worker tmp dir (/tmp), at most this many MB (0 turns it off). Flagger "
        "opens a new connection per poll, which lands on any worker: without it most polls "
        "found a cold worker and re-read the whole window. On a memory-backed /tmp it counts "
        "against the pod's memory.")
    step_cache_settle_seconds: float = Field(
        300.0, ge=0, description="Steps younger than this when read are read again at the "
        "next poll (late samples: remote write, federation); Prometheus' lookback delta.")

    analysis_slots: int = Field(
        4, ge=1, le=255, description="Analyses running at once per worker (at most "
        "threads - 1): judging is CPU-bound under one GIL, so more at once only stretches "
        "each. Others wait for a slot, see slot_wait_seconds.")
    slot_wait_seconds: float = Field(
        4.0, ge=0, le=30, description="How long an analysis waits for a free slot before "
        "the answer is 503 busy (never more than half its deadline).")

    config_dir: Path | None = Field(None, description="Directory of analysis config YAML files.")
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens accepted on /v1/analyze and /v1/gates; "
        "empty = open.",
    )
    report_link_hours: float = Field(
        72, ge=0, le=24 * 90, description="With api_tokens set, how long the `report` link "
        "in an answer opens without the token (it is signed for that one report); 0: the link "
        "needs the token like any analysis.")
    allow_inline_queries: bool = Field(
        False, description="Let callers send their own PromQL in `metrics` (off: configs only)."
    )
    default_lookback: str = Field("10m", description="Window when a request names none.")
    default_step: str = Field("60s", description="Step when a request names none.")
    sequential_max_lookback: str = Field(
        "3h", description="Sequential mode: how far back to look for the start of the canary's "
        "traffic when a request gives no start.")
    default_alpha: float = Field(0.05, ge=MIN_ALPHA, lt=0.5)
    max_window_points: int = Field(2000, ge=10, le=11000)
    public_url: str | None = Field(
        None, description="Base URL people reach the judge at (e.g. an Ingress); prefixes the "
        "`report` link in answers, which is a path on this server otherwise.")
    log_level: str = "INFO"

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _tokens_from_csv(cls, value: object) -> object:
        return _split_csv(value)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
