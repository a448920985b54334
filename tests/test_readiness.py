"""The manifests' readiness probe (`/readyz?source=once`) through the real gunicorn entry point:
a Prometheus outage after the source has answered once leaves every worker of the pod ready
(and answering 503s that name the source), while plain `/readyz` reports the outage. Each probe
opens a new connection, so it lands on any worker, not only on the one that saw the source
answer."""

from __future__ import annotations

import requests

from webhook.lab import PrometheusLab
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, argo_hash

WORKERS = 3


def test_an_outage_after_the_first_answer_keeps_every_worker_ready() -> None:
    with PrometheusLab() as prometheus:
        url = prometheus.start()
        with served_judge(url, workers=WORKERS, threads=4) as judge:  # ready: the source answered
            prometheus.stop()
            probes = [requests.get(judge + "/readyz?source=once", timeout=10)
                      for _ in range(3 * WORKERS)]
            assert [r.status_code for r in probes] == [200] * len(probes), [
                r.text for r in probes]
            assert all("answered since the pod started" in r.json()["metrics_source"]
                       for r in probes)
            plain = requests.get(judge + "/readyz", timeout=10)
            assert plain.status_code == 503
            assert any(p.startswith("metrics source:") for p in plain.json()["problems"])
            # the pod stays in the Service and says what is wrong, instead of refusing
            # connections: a 5xx naming the source, never a verdict
            r = requests.post(judge + "/v1/analyze", timeout=10, json={
                "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
                "stable": {"rollouts_pod_template_hash": ARGO_STABLE}})
            assert r.status_code in (502, 503, 504) and "verdict" not in r.json()
            assert r.json()["error"].startswith("metrics_source_")
