"""Asking the session lab's `/v1/analyze` about an Argo canary against the planted stable, as
the http config's checks of one kind are tested (restarts, traffic)."""

from __future__ import annotations

from webhook.lab.rollouts import ARGO_STABLE


def analyze(client, canary: str, **extra) -> dict:
    """The JSON answer for the canary's pod-template hash, with `extra` request fields."""
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": {"rollouts_pod_template_hash": canary},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, **extra})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def check_named(answer: dict, name: str) -> dict:
    """The answer's check named `name`."""
    return next(c for c in answer["checks"] if c["name"] == name)
