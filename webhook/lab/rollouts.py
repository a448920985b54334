"""Planted rollouts with a known truth, shared by the test suite and the demo.

Each canary version differs from stable in exactly one planted way, so a verdict can be checked
against what is really there. Label schemes follow the two controllers: Argo Rollouts'
`rollouts_pod_template_hash`, and Flagger's `T` vs `T-primary` in the app, Istio, Linkerd and
pod-name schemes.
"""

from __future__ import annotations

from dataclasses import replace

from webhook.lab.synth import TrafficSide

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


def _argo_labels(hash_: str) -> dict[str, str]:
    return {"app": ARGO_APP, "namespace": NAMESPACE, "rollouts_pod_template_hash": hash_}


def argo_hash(version: str) -> str:
    """Pod-template hash planted for a canary version name (healthy, errors3x, slow)."""
    return {"healthy": "7f9c4d2b1", "errors3x": "5b8e1a3c7", "slow": "3c2d9e8f4"}[version]


def flagger_sides(target: str, canary: dict[str, float] | None) -> list[TrafficSide]:
    """The same traffic under every label scheme Flagger users have (app, Istio, Linkerd, pod).

    `canary=None` plants only the primary (a canary that has not served yet).
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
                labels={"destination_workload": name, "destination_workload_namespace": NAMESPACE},
                requests_metric="istio_requests_total",
                latency_metric="istio_request_duration_seconds",
                code_label="response_code",
            )
        )
        out.append(
            replace(
                side,
                labels={"deployment": name, "namespace": NAMESPACE},
                requests_metric="response_total",
                latency_metric="response_latency_seconds",
                code_label="status_code",
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
    sides = [replace(BASE, rps=STABLE_RPS, labels=_argo_labels(ARGO_STABLE))]
    for version, diff in ARGO_CANARIES.items():
        sides.append(replace(BASE, labels=_argo_labels(argo_hash(version)), **diff))
    for target, diff in FLAGGER_TARGETS.items():
        sides.extend(flagger_sides(target, diff))
    sides.extend(flagger_sides(FLAGGER_NEW, None))
    return sides


# Per label scheme: the vars that point the `http` config at that scheme's metric names.
SCHEME_VARS = {
    "app": {},
    "istio": {
        "requests_metric": "istio_requests_total",
        "latency_metric": "istio_request_duration_seconds",
        "code_label": "response_code",
    },
    "linkerd": {
        "requests_metric": "response_total",
        "latency_metric": "response_latency_seconds",
        "code_label": "status_code",
    },
    "pod": {
        "requests_metric": "pod_http_requests_total",
        "latency_metric": "pod_http_request_duration_seconds",
    },
}
