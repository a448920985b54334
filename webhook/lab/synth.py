"""Synthetic canary/stable HTTP traffic rendered as OpenMetrics text for ``promtool``.

The canary judge is only as trustworthy as the data it has been tested on, and real clusters
cannot be told to produce "3x the errors" or "+50 % latency" on demand. This module draws such
traffic from explicit distributions so tests, demos and benchmarks know the ground truth.

Format decisions, checked against promtool/Prometheus 2.42 (``promtool tsdb dump``):

* Series names are stored exactly as the sample lines spell them; the ``# TYPE`` line is not
  used for naming. 2.42 accepts ``# TYPE http_requests_total counter`` as well as the
  OpenMetrics-correct ``# TYPE http_requests counter``; we write the latter (family = sample
  name minus ``_total``) and the samples as ``requests_metric``, so the queried name is exactly
  ``requests_metric``.
* ``le`` values are stored verbatim, so ``le="1"`` and ``le="1.0"`` would be two different
  series. We write them like Go's client_golang does (what podinfo exposes):
  ``0.005``, ``1``, ``10``, ``+Inf``.
* Timestamps are seconds; Prometheus keeps milliseconds, so we write at most three decimals.
* Samples of one series must be in ascending time: promtool silently drops a sample older than
  the previous one of its series, which is why duplicate series are rejected here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3,
    0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds of the latency histogram in seconds; ``+Inf`` is always added."""

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class TrafficSide:
    """One side of a rollout (canary or stable): its identifying labels and traffic shape.

    Latencies are lognormal because real request latencies are right-skewed; ``latency_scale``
    multiplies every latency, so 1.5 means +50 % at every quantile, which is exactly what a
    quantile-based judge should detect.
    """

    labels: Mapping[str, str]
    rps: float
    error_ratio: float = 0.01
    latency_median_s: float = 0.1
    latency_sigma: float = 0.6
    latency_scale: float = 1.0
    requests_metric: str = "http_requests_total"
    latency_metric: str = "http_request_duration_seconds"
    error_code: str = "500"
    ok_code: str = "200"
    code_label: str = "code"
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    # Exported latency unit per second: 1000 for a histogram in milliseconds (Istio's
    # istio_request_duration_milliseconds, Linkerd's response_latency_ms); `buckets` are then
    # in that unit too, while latency_median_s stays in seconds.
    latency_unit: float = 1.0
    # Extra labels of the successful and the failed requests' series, beside the code label
    # (Linkerd: classification="success" / "failure").
    ok_labels: Mapping[str, str] = field(default_factory=dict)
    error_labels: Mapping[str, str] = field(default_factory=dict)
    # Seconds after `start` of this target's first scrape. A real target is scraped at its own
    # phase, not on the judge's step grid: an `increase(…[step])` then sees one interval fewer
    # than the step holds and extrapolates the rest (see `webhook.lab.scrapes`).
    scrape_offset: float = 0.0
    # A process that restarts in place (a crash, an OOM kill, a failed liveness probe) every
    # `restart_every` seconds after its first scrape (0: never) and is down `restart_down`
    # seconds each time: not scraped, and the requests sent to it meanwhile are refused before
    # the app counts them. Its counters start again from 0 at each restart, as a new process'.
    restart_every: float = 0.0
    restart_down: float = 0.0
    # The process' CPU (`process_cpu_seconds_total`, every client library's default; 0: not
    # exported): `cpu_per_request` seconds per request served plus `cpu_idle` cores whatever the
    # load (GC, the runtime, scrapes), so a side serving less per process shows more CPU per
    # request. Drawn from nothing: adding it changes no other series.
    cpu_per_request: float = 0.0
    cpu_idle: float = 0.0

    def __post_init__(self) -> None:
        _check_labels(self.labels, reserved=(self.code_label, "le", *self.ok_labels,
                                             *self.error_labels))
        for name in (self.requests_metric, self.latency_metric):
            _check_name(name)
        if not _LABEL_RE.match(self.code_label):
            raise ValueError(f"invalid label name {self.code_label!r}")
        if not (self.rps >= 0 and math.isfinite(self.rps)):
            raise ValueError(f"rps must be finite and >= 0, got {self.rps}")
        if not 0 <= self.error_ratio <= 1:
            raise ValueError(f"error_ratio must be in [0, 1], got {self.error_ratio}")
        if set(self.ok_labels) != set(self.error_labels):
            raise ValueError("ok_labels and error_labels must name the same labels")
        if not (self.latency_unit > 0 and math.isfinite(self.latency_unit)):
            raise ValueError(f"latency_unit must be finite and > 0, got {self.latency_unit}")
        if not (self.scrape_offset >= 0 and math.isfinite(self.scrape_offset)):
            raise ValueError(f"scrape_offset must be finite and >= 0, got {self.scrape_offset}")
        if not (self.restart_every >= 0 and 0 <= self.restart_down < (self.restart_every or 1)
                and math.isfinite(self.restart_every)):
            raise ValueError("restart_every must be finite and >= 0, restart_down in "
                             "[0, restart_every)")
        if not (self.cpu_per_request >= 0 and self.cpu_idle >= 0
                and math.isfinite(self.cpu_per_request + self.cpu_idle)):
            raise ValueError("cpu_per_request and cpu_idle must be finite and >= 0")
        if not (self.latency_median_s > 0 and self.latency_sigma > 0 and self.latency_scale > 0):
            raise ValueError("latency_median_s, latency_sigma and latency_scale must be > 0")
        b = np.asarray(self.buckets, dtype=float)
        if b.size == 0 or not np.all(np.isfinite(b)) or b[0] <= 0 or np.any(np.diff(b) <= 0):
            raise ValueError("buckets must be finite, positive and strictly increasing")


@dataclass(frozen=True)
class ExtraSeries:
    """A series outside the HTTP traffic model (a gauge, an event counter, ...).

    ``values`` receives the sample timestamps in seconds and returns one value per timestamp,
    so later profiles can describe e.g. a restart counter that steps at a given time.
    Counters must be non-decreasing, as Prometheus would otherwise see a counter reset.
    """

    name: str
    labels: Mapping[str, str]
    kind: Literal["counter", "gauge"]
    values: Callable[[np.ndarray], np.ndarray] = field(compare=False)
    # Offsets (seconds from the first sample) of scrapes that never arrived: no sample at all,
    # which is what a missed scrape looks like to a range query.
    gaps: tuple[float, ...] = ()
    # A counter of a process that restarts in place: it may fall (to its count since the
    # restart). Any other counter must not, so a planted reset is never an accident.
    restarts: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_labels(self.labels, reserved=())
        if self.kind not in ("counter", "gauge"):
            raise ValueError(f"kind must be 'counter' or 'gauge', got {self.kind!r}")


def render_openmetrics(
    sides: Sequence[TrafficSide],
    start: float,
    end: float,
    scrape_interval: float = 15.0,
    seed: int = 0,
    extra: Sequence[ExtraSeries] = (),
    jitter: float = 0.0,
) -> str:
    """Render ``sides`` and ``extra`` sampled every ``scrape_interval`` from ``start`` to ``end``.

    Counters are 0 at ``start`` (a side's first scrape, ``start + scrape_offset``) so the final
    sample of a series is the planted total. Each side draws from its own child of ``seed``, so
    adding a side does not change the others' data. ``jitter`` moves each of a side's scrapes
    by up to that many seconds either way (uniform; ``extra`` series stay on the grid), as a
    loaded scraper does.
    """
    if not (scrape_interval > 0 and math.isfinite(scrape_interval)):
        raise ValueError(f"scrape_interval must be > 0, got {scrape_interval}")
    if not end >= start:
        raise ValueError(f"end ({end}) must not be before start ({start})")
    if not 0 <= jitter < scrape_interval / 2:
        raise ValueError(f"jitter must be in [0, scrape_interval / 2), got {jitter}")
    n = math.floor((end - start) / scrape_interval + 1e-9) + 1
    ts = start + np.arange(n, dtype=float) * scrape_interval
    ts_text = [_fmt_ts(t) for t in ts.tolist()]

    out = _Families()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(sides))]
    for side, rng in zip(sides, rngs, strict=True):
        if side.scrape_offset or jitter:
            own = math.floor((end - start - side.scrape_offset) / scrape_interval + 1e-9) + 1
            at = start + side.scrape_offset + np.arange(own, dtype=float) * scrape_interval
            if jitter:  # drawn after the side's traffic, so jitter does not change it
                at = at + np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0]).uniform(
                    -jitter, jitter, size=own)
                at = np.clip(at, start, end)
            _render_side(out, side, rng, own, [_fmt_ts(t) for t in at.tolist()],
                         scrape_interval)
            continue
        _render_side(out, side, rng, n, ts_text, scrape_interval)
    for ex in extra:
        _render_extra(out, ex, ts, ts_text)
    return out.text()


class _Families:
    """Collects lines per metric family so every family gets one TYPE line and stays grouped."""

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}
        self._lines: dict[str, list[str]] = {}
        self._series: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def add(
        self, family: str, kind: str, series: Iterable[tuple[str, Mapping[str, str]]]
    ) -> list[str]:
        """Register ``series`` (sample name, labels) under ``family``; return its line list."""
        if self._kinds.setdefault(family, kind) != kind:
            raise ValueError(f"metric family {family!r} used as {self._kinds[family]} and {kind}")
        for name, labels in series:
            key = (name, frozenset(labels.items()))
            if key in self._series:
                raise ValueError(f"duplicate series {name}{dict(labels)}")
            self._series.add(key)
        return self._lines.setdefault(family, [])

    def text(self) -> str:
        parts: list[str] = []
        for family, lines in self._lines.items():
            parts.append(f"# TYPE {family} {self._kinds[family]}")
            parts.extend(lines)
        parts.append("# EOF\n")
        return "\n".join(parts)


def _render_side(
    out: _Families,
    side: TrafficSide,
    rng: np.random.Generator,
    n: int,
    ts_text: list[str],
    interval: float,
) -> None:
    steps = n - 1
    requests = rng.poisson(side.rps * interval, size=steps)
    restarts = _Restarts(side, n, interval)
    requests[restarts.down[1:]] = 0  # refused while down: the app never counts them
    errors = rng.binomial(requests, side.error_ratio)

    mu = math.log(side.latency_median_s * side.latency_scale)
    cdf = [_lognormal_cdf(b / side.latency_unit, mu, side.latency_sigma) for b in side.buckets]
    pvals = np.diff(np.array([0.0, *cdf, 1.0]))
    per_bucket = rng.multinomial(requests, pvals)  # shape (steps, len(buckets) + 1)
    mean_latency = math.exp(mu + side.latency_sigma**2 / 2) * side.latency_unit

    # Cumulative over time (with a leading 0 at ``start``) and, for buckets, over ``le``.
    ok_total = _cumulative(requests - errors)
    err_total = _cumulative(errors)
    buckets_total = np.vstack([np.zeros((1, pvals.size), np.int64), per_bucket.cumsum(0)])
    buckets_total = buckets_total.cumsum(1)
    cpu_total = np.concatenate([[0.0], np.cumsum(side.cpu_idle * interval
                                                 + side.cpu_per_request * requests)])
    ok_total, err_total, buckets_total, cpu_total = (
        restarts.counted(c) for c in (ok_total, err_total, buckets_total, cpu_total))
    count_total = buckets_total[:, -1]
    sum_total = count_total * mean_latency
    ts_text = [t for t, up in zip(ts_text, restarts.scraped, strict=True) if up]

    name = side.requests_metric
    ok_labels = {**side.labels, **side.ok_labels, side.code_label: side.ok_code}
    err_labels = {**side.labels, **side.error_labels, side.code_label: side.error_code}
    lines = out.add(_counter_family(name), "counter", [(name, ok_labels), (name, err_labels)])
    for labels, values in ((ok_labels, ok_total), (err_labels, err_total)):
        prefix = f"{name}{_fmt_labels(labels)} "
        lines.extend(f"{prefix}{v} {t}" for v, t in zip(values.tolist(), ts_text, strict=True))

    if side.cpu_per_request:
        cpu = "process_cpu_seconds_total"
        lines = out.add(_counter_family(cpu), "counter", [(cpu, side.labels)])
        prefix = f"{cpu}{_fmt_labels(side.labels)} "
        lines.extend(f"{prefix}{_fmt_float(v)} {t}"
                     for v, t in zip(cpu_total.tolist(), ts_text, strict=True))

    h = side.latency_metric
    les = [_fmt_le(b) for b in side.buckets] + ["+Inf"]
    series = [(f"{h}_bucket", {**side.labels, "le": le}) for le in les]
    series += [(f"{h}_count", side.labels), (f"{h}_sum", side.labels)]
    lines = out.add(h, "histogram", series)
    # OpenMetrics wants one histogram point (all buckets, count, sum) per timestamp.
    prefixes = [f"{s}{_fmt_labels(lbl)} " for s, lbl in series]
    bucket_prefixes, count_prefix, sum_prefix = prefixes[:-2], prefixes[-2], prefixes[-1]
    for row, count, total, t in zip(
        buckets_total.tolist(), count_total.tolist(), sum_total.tolist(), ts_text, strict=True
    ):
        lines.extend(f"{p}{v} {t}" for p, v in zip(bucket_prefixes, row, strict=True))
        lines.append(f"{count_prefix}{count} {t}")
        lines.append(f"{sum_prefix}{_fmt_float(total)} {t}")


def since_restart(cumulative: np.ndarray, since_first: np.ndarray,
                  every: float) -> np.ndarray:
    """`cumulative` (a row per sample, taken `since_first` seconds after the first) as a
    process restarting in place every `every` seconds reports it: less what it had counted at
    its last restart (the sample at, or last before, that instant)."""
    epoch = np.floor(since_first / every + 1e-9).astype(np.int64)
    base = np.searchsorted(since_first, epoch * every + 1e-9) - 1
    restarted = (epoch > 0).reshape(-1, *[1] * (cumulative.ndim - 1))
    return cumulative - np.where(restarted, cumulative[np.maximum(base, 0)], 0)


class _Restarts:
    """A side's in-place restarts on its `n` scrapes `interval` apart (`TrafficSide.restart_every`):
    which scrapes find the process down, and each counter as the restarted processes report it."""

    def __init__(self, side: TrafficSide, n: int, interval: float) -> None:
        self._since_first = np.arange(n, dtype=float) * interval
        self._every = side.restart_every
        epoch = (np.floor(self._since_first / side.restart_every + 1e-9).astype(np.int64)
                 if side.restart_every else np.zeros(n, np.int64))
        up_for = self._since_first - epoch * side.restart_every
        self.down = (epoch > 0) & (up_for < side.restart_down)
        self.scraped = ~self.down

    def counted(self, cumulative: np.ndarray) -> np.ndarray:
        """`cumulative` (a row per scrape) as the process reports it at its scrapes: from 0 at
        each restart, the scrapes while it is down left out."""
        if not self._every:
            return cumulative
        return since_restart(cumulative, self._since_first, self._every)[self.scraped]


def _render_extra(out: _Families, ex: ExtraSeries, ts: np.ndarray, ts_text: list[str]) -> None:
    values = np.asarray(ex.values(ts.copy()), dtype=float)
    if values.shape != ts.shape:
        raise ValueError(f"{ex.name}: values() returned shape {values.shape}, want {ts.shape}")
    family = ex.name
    if ex.kind == "counter":
        if not (np.all(np.isfinite(values)) and (ex.restarts or np.all(np.diff(values) >= 0))):
            raise ValueError(f"counter {ex.name} must be finite and non-decreasing")
        family = _counter_family(ex.name)
    lines = out.add(family, ex.kind, [(ex.name, ex.labels)])
    prefix = f"{ex.name}{_fmt_labels(ex.labels)} "
    offsets = ts - ts[0] if ts.size else ts
    keep = ~np.isin(np.round(offsets, 3), np.round(np.asarray(ex.gaps, dtype=float), 3))
    lines.extend(
        f"{prefix}{_fmt_float(v)} {t}"
        for v, t, k in zip(values.tolist(), ts_text, keep.tolist(), strict=True) if k
    )


def _cumulative(increments: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(increments, dtype=np.int64)])


def _lognormal_cdf(x: float, mu: float, sigma: float) -> float:
    return 0.5 * (1.0 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2.0))))


def _counter_family(sample_name: str) -> str:
    """OpenMetrics names a counter family without the ``_total`` its samples carry."""
    return sample_name.removesuffix("_total") or sample_name


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid metric name {name!r}")


def _check_labels(labels: Mapping[str, str], reserved: Iterable[str]) -> None:
    for key in labels:
        if not _LABEL_RE.match(key) or key == "__name__":
            raise ValueError(f"invalid label name {key!r}")
        if key in reserved:
            raise ValueError(f"label {key!r} is set by the generator and cannot be given")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _fmt_ts(t: float) -> str:
    """Seconds with at most millisecond precision, integers without a decimal point."""
    return f"{t:.3f}".rstrip("0").rstrip(".")


def _fmt_le(bound: float) -> str:
    """Go client_golang style: ``1`` rather than ``1.0``, ``0.005`` stays as is."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _fmt_float(value: float) -> str:
    """Exact text for a value: integers without exponent or decimals, others round-tripping."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
