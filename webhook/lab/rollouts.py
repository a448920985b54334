"""Planted rollouts with a known truth, shared by the test suite and the demo.

Each canary version differs from stable in exactly one planted way, so a verdict can be checked
against what is really there. Label schemes follow the two controllers: Argo Rollouts'
`rollouts_pod_template_hash`, and Flagger's `T` vs `T-primary` in the app, Istio, Linkerd and
pod-name schemes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from webhook.lab.synth import ExtraSeries, TrafficSide, since_restart

NAMESPACE = "shop"
# Planted data runs from this long before the session's anchor time to FUTURE_SECONDS after it.
HISTORY_SECONDS = 2 * 3600
FUTURE_SECONDS = 600
ARGO_APP = "checkout"

# Argo Rollouts: canary versions by pod-template hash, one stable.
ARGO_STABLE = "6d5f8b7c9"
ARGO_CANARIES = {
    "healthy": dict(),
    "errors3x": dict(error_ratio=0.03),
    "slow": dict(latency_scale=1.5),
}
# Canaries whose process restarts in place, healthy otherwise (`http`'s restarts check):
# pod-template hash -> (seconds between restarts, seconds down each time).
ARGO_RESTARTING = {"4e7a1c9d2": (180.0, 45.0), "9a3f6b2e8": (75.0, 45.0),
                   "2d8c5e1f7": (420.0, 15.0)}
# A Flagger target restarting in place every 3 minutes, down 45 s each time, healthy otherwise:
# the app's own counters fail only `restarts` (non-critical); the lab's mesh series reset with
# them, where a real sidecar would outlive the app and answer 503 instead.
FLAGGER_RESTARTING = "crashinfo"
# Canaries that stop serving: each pod's series end `STOPPED_BEFORE` seconds before the end of
# the tests' explicit windows (`Lab.window`, 300 s before the anchor), as a hung, crashed or
# unroutable pod's do while the stable's go on. `ARGO_STOPPED`: its only pod (fails
# `traffic`); `ARGO_HALF_STOPPED`: one of its two pods (its share halves: inside the
# tolerance).
ARGO_STOPPED = "8b3e6d1a4"
ARGO_HALF_STOPPED = "1f6a9c3e7"
STOPPED_BEFORE = 240.0
# The Argo sides' CPU (`http`'s saturation): 2 ms per request besides 0.02 cores idle, so the
# stable's 40 req/s show 2.5 ms per request and a canary's 20 req/s 3 ms (+20 %, inside the
# tolerance: the idle cost spread over fewer requests). `ARGO_CPU_HEAVY`, healthy otherwise,
# spends 5 ms per request (6 ms with its idle cost, +140 %).
ARGO_CPU = dict(cpu_per_request=0.002, cpu_idle=0.02)
ARGO_CPU_HEAVY = "6e2b7d4a1"
# A hash that is never planted: "the canary has no series".
ARGO_MISSING = "0000000000"

BASE = TrafficSide(labels={}, rps=20.0, error_ratio=0.01, latency_median_s=0.1)
STABLE_RPS = 40.0

# Flagger targets: name -> planted difference of the canary `T` from `T-primary`.
FLAGGER_TARGETS = {
    "podinfo": dict(),
    "badinfo": dict(error_ratio=0.03),  # critical check fails: rollback
    "slowinfo": dict(latency_scale=1.5),  # non-critical failure: no rollback
}
# A Flagger target whose primary exists but whose canary has not served yet.
FLAGGER_NEW = "newinfo"

# The meshes' own histogram buckets, in milliseconds: Istio's default
# istio_request_duration_milliseconds buckets and the Linkerd proxy's response_latency_ms ones.
ISTIO_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                    60000, 300000, 600000, 1800000, 3600000)
LINKERD_BUCKETS_MS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000,
                      3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000)


def _argo_labels(hash_: str) -> dict[str, str]:
    return {"app": ARGO_APP, "namespace": NAMESPACE, "rollouts_pod_template_hash": hash_}


def argo_hash(version: str) -> str:
    """Pod-template hash planted for a canary version name (healthy, errors3x, slow)."""
    return {"healthy": "7f9c4d2b1", "errors3x": "5b8e1a3c7", "slow": "3c2d9e8f4"}[version]


def flagger_sides(target: str, canary: dict[str, float] | None) -> list[TrafficSide]:
    """The same traffic under every label scheme Flagger users have (app, Istio, Linkerd, pod).

    Istio and Linkerd series carry the names, labels and units those meshes export:
    `istio_requests_total{reporter="destination", destination_workload, response_code}` and
    `istio_request_duration_milliseconds_bucket`; Linkerd's `response_total{direction=
    "inbound", deployment, classification="success"|"failure", status_code}` and
    `response_latency_ms_bucket`. `canary=None` plants only the primary (a canary that has not
    served yet).
    """
    out = []
    for version, diff in (("canary", canary), ("primary", {})):
        if diff is None:
            continue
        name = target if version == "canary" else f"{target}-primary"
        pod = f"{name}-5d8f7b6c4-x7k2p"
        side = replace(BASE, rps=BASE.rps if version == "canary" else STABLE_RPS, **diff)
        out.append(replace(side, labels={"app": name, "namespace": NAMESPACE}))
        out.append(
            replace(
                side,
                labels={"destination_workload": name, "destination_workload_namespace": NAMESPACE,
                        "reporter": "destination"},
                requests_metric="istio_requests_total",
                latency_metric="istio_request_duration_milliseconds",
                code_label="response_code",
                latency_unit=1000.0,
                buckets=ISTIO_BUCKETS_MS,
            )
        )
        out.append(
            replace(
                side,
                labels={"deployment": name, "namespace": NAMESPACE, "direction": "inbound"},
                requests_metric="response_total",
                latency_metric="response_latency_ms",
                code_label="status_code",
                ok_labels={"classification": "success"},
                error_labels={"classification": "failure"},
                latency_unit=1000.0,
                buckets=LINKERD_BUCKETS_MS,
            )
        )
        out.append(
            replace(
                side,
                labels={"pod": pod, "namespace": NAMESPACE},
                requests_metric="pod_http_requests_total",
                latency_metric="pod_http_request_duration_seconds",
            )
        )
    return out


def standard_sides() -> list[TrafficSide]:
    """Everything the test suite and the demo query."""
    sides = [replace(BASE, rps=STABLE_RPS, labels=_scraped(ARGO_STABLE, 0), **ARGO_CPU)]
    for n, (version, diff) in enumerate(ARGO_CANARIES.items(), start=1):
        sides.append(replace(BASE, labels=_scraped(argo_hash(version), n), **ARGO_CPU, **diff))
    for target, diff in FLAGGER_TARGETS.items():
        sides.extend(flagger_sides(target, diff))
    sides.extend(flagger_sides(FLAGGER_NEW, None))
    return sides


def _scraped(hash_: str, n: int) -> dict[str, str]:
    """An Argo side's labels with the `instance` Prometheus gives every scraped series (the
    sides carrying CPU: `http`'s saturation is judged per instance)."""
    return {**_argo_labels(hash_), "instance": f"10.1.0.{n}:8080"}


def cpu_heavy_sides() -> list[TrafficSide]:
    """`ARGO_CPU_HEAVY`, planted after every other side (as `restarting_sides`)."""
    return [replace(BASE, labels=_scraped(ARGO_CPU_HEAVY, 9),
                    **{**ARGO_CPU, "cpu_per_request": 0.005})]


def restarting_sides() -> list[TrafficSide]:
    """The canaries that restart in place (`ARGO_RESTARTING`, `FLAGGER_RESTARTING`), planted
    after every other side: each side draws its traffic from its place in the planted list,
    so adding these last leaves every other side's data as it was."""
    sides = [replace(BASE, labels=_argo_labels(hash_), restart_every=every, restart_down=down)
             for hash_, (every, down) in ARGO_RESTARTING.items()]
    return sides + flagger_sides(FLAGGER_RESTARTING,
                                 dict(restart_every=180.0, restart_down=45.0))


def stopping_sides() -> tuple[list[TrafficSide], list[TrafficSide]]:
    """The pods of `ARGO_STOPPED` and `ARGO_HALF_STOPPED`: those that go on serving (planted
    after every other side, as `restarting_sides`), and those whose series end early (planted
    apart, up to `STOPPED_BEFORE` before the windows' end)."""
    def pod(hash_: str, n: int, rps: float) -> TrafficSide:
        return replace(BASE, rps=rps, labels={**_argo_labels(hash_), "pod": f"{hash_}-{n}"})

    going_on = [pod(ARGO_HALF_STOPPED, 0, BASE.rps / 2)]
    stopping = [pod(ARGO_STOPPED, 0, BASE.rps), pod(ARGO_HALF_STOPPED, 1, BASE.rps / 2)]
    return going_on, stopping


# Per label scheme: the vars that point the `http` config at that scheme's metric names. Istio
# and Linkerd need none: `provider` selects the config's section for the mesh.
SCHEME_VARS = {
    "app": {},
    "istio": {},
    "linkerd": {},
    "pod": {
        "requests_metric": "pod_http_requests_total",
        "latency_metric": "pod_http_request_duration_seconds",
    },
}


def _ar1_gauge(level: float, seed: int, phi: float = 0.9, noise: float = 0.05):
    """A CPU-like gauge: AR(1) noise around `level`, so samples are autocorrelated."""
    def values(ts: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty(ts.size)
        x = 0.0
        for i in range(ts.size):
            x = phi * x + rng.normal(0, noise)
            out[i] = level * (1 + x)
        return out
    return values


def _events_at(times_from_start: tuple[float, ...]):
    """A counter that steps by one at each of the given offsets (seconds from its first sample)."""
    def values(ts: np.ndarray) -> np.ndarray:
        offsets = ts - ts[0]
        return np.array([sum(o >= t for t in times_from_start) for o in offsets], dtype=float)
    return values


def extra_series() -> list[ExtraSeries]:
    """Gauges and event counters beside the HTTP traffic, for the series/threshold/events kinds.

    `process_cpu_ratio`: AR(1) gauge, 0.5 on every version but `slow` (0.65, +30 %).
    `pnl_impact_usd`: a gauge near 0 on every version, -25,000 on `errors3x`.
    `adverse_events_total`: a counter at 0 everywhere, stepping to 2 on `errors3x`
    (initialised at 0, as a client library exports a counter without labels).
    """
    out = []
    versions = {"stable": ARGO_STABLE, **{v: argo_hash(v) for v in ARGO_CANARIES}}
    for seed, (version, hash_) in enumerate(versions.items()):
        labels = _argo_labels(hash_)
        level = 0.65 if version == "slow" else 0.5
        out.append(ExtraSeries("process_cpu_ratio", labels, "gauge",
                               _ar1_gauge(level, seed=100 + seed)))
        pnl = -25_000.0 if version == "errors3x" else 0.0
        out.append(ExtraSeries("pnl_impact_usd", labels, "gauge",
                               _ar1_gauge(1.0, seed=200 + seed, noise=200.0)
                               if pnl == 0 else (lambda ts, p=pnl: np.full(ts.size, p))))
        steps = (1800.0, 3600.0) if version == "errors3x" else ()
        out.append(ExtraSeries("adverse_events_total", labels, "counter", _events_at(steps)))
    return out


# --- trading and healthcare: the domain profiles' own series -------------------------------------

TRADING_APP = "orders"
TRADING_STABLE = "t0stable"
TRADING_CANARIES = {
    "healthy": {},
    "fills": {"fill": 0.95 * 0.94},  # fill rate 6 % below stable
    "slippage": {"slippage": 3.0},  # +3 bps
    # Two instances whose orders_total carries `instance` but no `pod` label.
    "nopod": {"pods": 2, "no_pod": True},
    # A rollout polled like Argo from TRADING_ROLLOUT_START on: 50 orders/s per instance,
    # judged against FAST_STABLE (two instances at 50/s); healthy, and +3 bps slippage.
    "fast": {"rate": 50.0},
    "fastslip": {"rate": 50.0, "slippage": 3.0},
}
# The stable of the "fast" canaries: two instances at 50 orders/s each.
FAST_STABLE = "tfstable"
# A healthy canary with one compliance breach, 15 s after a whole minute of the planted data:
# between two step points of a window whose steps are not on the scrapes' grid.
TRADING_BREACH_AT = 5415.0
# The "fast" rollouts begin this long before the session's anchor time (their polls end
# within ten minutes, inside the planted past).
TRADING_ROLLOUT_START = 1800
HEALTHCARE_APP = "ehr"
HEALTHCARE_STABLE = "h0stable"
HEALTHCARE_CANARIES = {
    "healthy": {},
    "adverse": {"adverse_at": 5400.0},  # one adverse event 90 min into the planted data
    "facility": {"admission_b": 0.90},  # admission success drops at facility B only
    # Medication ordering succeeds 98.5 % of the time instead of 99.6 % (failures x3.75).
    "medorder": {"workflow": ("medication_ordering", 0.985)},
    # Clinical alerting at 0 for one scrape (15 s), 90 min in plus 0/15/30/45 s: on, and
    # between, the 60 s step points.
    **{f"down{k}": {"alerting_down_at": 5400.0 + k} for k in (0, 15, 30, 45)},
    # One scrape of clinical alerting never arrived (up before and after).
    "gap30": {"alerting_gap_at": 5430.0},
    "gap0": {"alerting_gap_at": 5400.0},
    # Medication errors counted by a counter created at its first error (a labelled counter's
    # child, as client libraries create them): no series before, 1 from 90 min in on.
    "lazymed": {"medication_created_at": 5415.0},
    # Clinical alerting that reports nothing for the first 90 min of the canary's traffic
    # (a component that starts late), then 1.
    "latealert": {"alerting_from": 5400.0},
    # Workflow runs counted without the `facility` label (an application that does not set
    # it): a healthy canary, and a second version to stand as its stable.
    "nofac": {"no_facility": True},
    "nofacold": {"no_facility": True},
    # A new version that writes its workflow label in capitals (`ADMISSION`): the config's
    # `workflow="admission"` finds none of its runs.
    "wfupper": {"upper_workflows": True},
    # A canary that serves without exporting clinical_alerting_up at all.
    "noalert": {"no_alerting": True},
    # Medication ordering failing as often as "medorder", its failures exported under
    # `outcome="error"` (a new version that renamed its failure outcome).
    "wferror": {"workflow": ("medication_ordering", 0.985), "failure_outcome": "error"},
}
# Clinical workflows succeed 99.6 % of the time on stable and healthy canaries.
WORKFLOW_SUCCESS = 0.996
FACILITIES = ("A", "B", "C")
WORKFLOWS = ("admission", "medication_ordering", "lab_results", "discharge",
             "emergency_response")


def _counter(rate: float, seed: int, keep: float = 1.0):
    """Cumulative Poisson(rate·dt) counts; with `keep` < 1, the kept share of the same events
    (fills of the same orders, successes of the same runs): same seed, same underlying events."""
    def values(ts: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        dt = np.diff(ts, prepend=ts[0])
        events = rng.poisson(rate * dt)
        if keep < 1.0:
            events = np.random.default_rng(seed + 1).binomial(events, keep)
        return np.cumsum(events).astype(float)
    return values


def _restarting(counter, every: float | None):
    """`counter` as a process restarting in place every `every` seconds from the first sample
    reports it (from 0 again at each restart); `counter` itself when `every` is None."""
    if every is None:
        return counter

    return lambda ts: since_restart(counter(ts), ts - ts[0], every)


def _constant(value: float):
    return lambda ts: np.full(ts.size, value)


def trading_series() -> tuple[list[TrafficSide], list[ExtraSeries]]:
    """Orders, fills, order latency, slippage, P&L and market impact for each version.

    Stable runs two pods at 20 orders/s each, every canary one pod at 20/s, so per-instance
    throughput is equal. Order series and the slippage and market impact gauges are each
    instance's and carry `pod` and `instance` (as Kubernetes service discovery gives both),
    except on the `nopod` version, which has `instance` only.
    """
    sides, extra = [], []
    # `breach` after `fstable`: each version's seed is its place in this order
    versions = {"stable": {"pods": 2}, **TRADING_CANARIES, "fstable": {"pods": 2, "rate": 50.0},
                "breach": {"compliance_at": TRADING_BREACH_AT},
                # a healthy canary that no longer exports compliance_violations_total
                "nocomply": {"no_compliance": True},
                # a healthy canary whose P&L impact is -$12,000 for one scrape, between two
                # step points (15 s after a whole minute)
                "pnlspike": {"pnl_spike_at": TRADING_BREACH_AT},
                # a healthy canary that does not export pnl_impact_usd
                "nopnl": {"no_pnl": True},
                # a healthy canary behind a router's 10 % weight: Flagger runs as many canary
                # pods as primary ones (here 2), so each serves a ninth of a stable pod's orders
                "weighted": {"pods": 2, "rate": 20.0 / 9},
                # a canary whose process restarts in place every 4 minutes, its order and fill
                # counters from 0 again each time; otherwise healthy
                "restarting": {"restart_every": 240.0}}
    for seed, (version, diff) in enumerate(versions.items()):
        hash_ = trading_hash(version)
        labels = {"app": TRADING_APP, "namespace": NAMESPACE,
                  "rollouts_pod_template_hash": hash_}
        pods = int(diff.get("pods", 1))
        rate = float(diff.get("rate", 20.0))
        sides.append(TrafficSide(labels=labels, rps=rate * pods, error_ratio=0.0,
                                 requests_metric="order_requests_total",
                                 latency_metric="order_latency_seconds",
                                 latency_median_s=0.02, latency_sigma=0.5))
        for pod in range(pods):
            instance = {"instance": f"10.0.{seed}.{pod}:8080"}
            pod_labels = {**labels, **instance} if diff.get("no_pod") else \
                {**labels, **instance, "pod": f"{TRADING_APP}-{hash_}-{pod}"}
            s = 1000 + 10 * seed + pod
            every = diff.get("restart_every")
            extra.append(ExtraSeries("orders_total", pod_labels, "counter",
                                     _restarting(_counter(rate, s), every),
                                     restarts=every is not None))
            extra.append(ExtraSeries("orders_filled_total", pod_labels, "counter",
                                     _restarting(_counter(rate, s, keep=diff.get("fill", 0.95)),
                                                 every), restarts=every is not None))
            # each instance's own averages (the config judges them per instance); the first
            # instance keeps the seeds the versions had with one gauge each
            extra.append(ExtraSeries("order_slippage_bps", pod_labels, "gauge",
                                     _ar1_gauge(1.0 + diff.get("slippage", 0.0),
                                                seed=300 + seed if pod == 0 else 3000 + s,
                                                noise=0.3, phi=0.5)))
            extra.append(ExtraSeries("market_impact_bps", pod_labels, "gauge",
                                     _ar1_gauge(2.0, seed=500 + seed if pod == 0 else 5000 + s,
                                                noise=0.1, phi=0.5)))
        if not diff.get("no_pnl"):
            extra.append(ExtraSeries("pnl_impact_usd", labels, "gauge",
                                     _spike(_ar1_gauge(1.0, seed=400 + seed, noise=500.0),
                                            diff.get("pnl_spike_at"), -12_000.0)))
        breach = diff.get("compliance_at")
        if not diff.get("no_compliance"):
            extra.append(ExtraSeries("compliance_violations_total", labels, "counter",
                                     _constant(0.0) if breach is None else _events_at((breach,))))
    return sides, extra


def trading_hash(version: str) -> str:
    return {"stable": TRADING_STABLE, "fstable": FAST_STABLE}.get(version, f"t{version[:8]}")


def healthcare_hash(version: str) -> str:
    return HEALTHCARE_STABLE if version == "stable" else f"h{version[:8]}"


def _dip_at(offset: float):
    """A gauge at 1 with one sample at 0, `offset` seconds after its first sample."""
    def values(ts: np.ndarray) -> np.ndarray:
        return np.where(np.isclose(ts - ts[0], offset), 0.0, 1.0)
    return values


def healthcare_series() -> list[ExtraSeries]:
    """Safety counters, the alerting gauge and workflow runs per facility for each version."""
    extra = []
    versions = {"stable": {}, **HEALTHCARE_CANARIES}
    for seed, (version, diff) in enumerate(versions.items()):
        labels = {"app": HEALTHCARE_APP, "namespace": NAMESPACE,
                  "rollouts_pod_template_hash": healthcare_hash(version)}
        adverse = (diff["adverse_at"],) if "adverse_at" in diff else ()
        extra.append(ExtraSeries("adverse_events_total", labels, "counter", _events_at(adverse)))
        created = diff.get("medication_created_at")
        extra.append(ExtraSeries("medication_errors_total", labels, "counter", _constant(0.0))
                     if created is None else  # absent until its first error, then at 1
                     ExtraSeries("medication_errors_total", labels, "counter", _constant(1.0),
                                 gaps=_before(float(created))))  # type: ignore[arg-type]
        for name in ("data_integrity_errors_total", "phi_audit_write_failures_total"):
            extra.append(ExtraSeries(name, labels, "counter", _constant(0.0)))
        down = diff.get("alerting_down_at")
        gap = diff.get("alerting_gap_at")
        late = diff.get("alerting_from")
        if not diff.get("no_alerting"):
            extra.append(ExtraSeries(
                "clinical_alerting_up", labels, "gauge",
                _constant(1.0) if down is None else _dip_at(float(down)),  # type: ignore[arg-type]
                gaps=(() if gap is None else (float(gap),))  # type: ignore[arg-type]
                + (() if late is None else _before(float(late)))))  # type: ignore[arg-type]
        rate = 16.0 if version == "stable" else 8.0
        # without the label, one facility's runs (three would be the same series)
        for f, facility in enumerate(FACILITIES[:1] if diff.get("no_facility") else FACILITIES):
            for w, workflow in enumerate(WORKFLOWS):
                success = WORKFLOW_SUCCESS
                if workflow == "admission" and facility == "B":
                    success = diff.get("admission_b", success)  # type: ignore[assignment]
                changed = diff.get("workflow")
                if changed is not None and changed[0] == workflow:  # type: ignore[index]
                    success = changed[1]  # type: ignore[index]
                s = 2000 + 100 * seed + 10 * f + w
                named = workflow.upper() if diff.get("upper_workflows") else workflow
                base = {**labels, "workflow": named} if diff.get("no_facility") else \
                    {**labels, "facility": facility, "workflow": named}
                extra.append(ExtraSeries("clinical_workflow_total", {**base, "outcome": "success"},
                                         "counter", _counter(rate, s, keep=success)))
                failed = str(diff.get("failure_outcome", "failure"))
                extra.append(ExtraSeries("clinical_workflow_total", {**base, "outcome": failed},
                                         "counter", _failures(rate, s, success)))
    return extra


def _spike(values, offset: float | None, level: float):
    """`values` with the one sample `offset` seconds after the first at `level`."""
    if offset is None:
        return values
    return lambda ts: np.where(np.isclose(ts - ts[0], offset), level, values(ts))


def _before(offset: float, scrape: float = 15.0) -> tuple[float, ...]:
    """Every scrape offset before `offset`: a series that does not exist until then."""
    return tuple(float(t) for t in np.arange(0.0, offset, scrape))


def _failures(rate: float, seed: int, success: float):
    """The complement of `_counter(rate, seed, keep=success)`: the same runs' failures."""
    total, ok = _counter(rate, seed), _counter(rate, seed, keep=success)
    return lambda ts: total(ts) - ok(ts)
