"""A 5xx query that cannot count is not zero errors (`absent_numerator: missing`).

The `http` config's error_ratio read a bad-events query that matched no series as 0 bad events
on both sides. With `"vars": {"code_label": "status_code"}` (a value its lock allows) on an app
that labels codes `code`, the lab's 3 %-error canary passed with `error_ratio 0% 0%`, score 100,
and Flagger's confirm-promotion promoted it. Its `bad` query now ends with an explicit 0 wherever
the requests carry the code label, so "no series" means "could not count": inconclusive,
naming the side and the query. A healthy app with no 5xx series at all (client libraries create
`code="500"` at the first 500) still reads 0 errors and passes, with or without a mesh.
Planted in a real Prometheus and asked through the served API.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_flagger_hooks import hook
from webhook.app import create_app
from webhook.configs import RatioMetric, Tolerance
from webhook.kinds import judge_spec
from webhook.kinds.base import ArrayData, KindContext
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash
from webhook.settings import load_settings
from webhook.sources.base import Series

HASH = "rollouts_pod_template_hash"
END = 1_700_000_000.0 - 1_700_000_000.0 % 3600


def _errors_canary(client, lab, **extra) -> dict:
    r = client.post("/v1/analyze", json={
        "config": "http",
        "canary": {HASH: argo_hash("errors3x"), "namespace": NAMESPACE},
        "stable": {HASH: ARGO_STABLE, "namespace": NAMESPACE},
        "window": lab.window(60), **extra})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_a_code_label_the_series_lack_is_inconclusive_not_zero_errors(client, lab):
    answer = _errors_canary(client, lab, vars={"code_label": "status_code"})
    assert answer["verdict"] == "inconclusive", answer["reason"]
    check = next(c for c in answer["checks"] if c["name"] == "error_ratio")
    assert check["verdict"] == "inconclusive", check["reason"]
    reason = check["reason"]
    assert "the canary served" in reason and "the stable served" in reason, reason
    assert "requests, but its `bad` query" in reason, reason
    assert "found no series to count" in reason and "code_label" in reason, reason
    # the query's own matchers, so the label the series lack is there to see
    assert 'status_code=~"5.."' in reason, reason
    # The label they do carry: the same canary fails, as before.
    assert _errors_canary(client, lab)["verdict"] == "fail"


def test_flagger_does_not_promote_a_canary_whose_errors_cannot_be_counted(client):
    assert hook(client, "confirm-promotion", "badinfo", code_label="status_code"
                ).status_code == 412
    assert hook(client, "confirm-promotion", "podinfo").status_code == 200


def _side(hash_: str, **mesh) -> TrafficSide:
    """Healthy traffic whose only codes are 200 and (never incremented) 404: no 5xx series."""
    return TrafficSide(labels={"app": "quiet", "namespace": NAMESPACE, HASH: hash_, **mesh},
                       rps=20.0, error_ratio=0.0, error_code="404")


@pytest.fixture(scope="module")
def quiet():
    """A Prometheus holding one app without any 5xx series, as Argo and as Istio label it."""
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    sides = [_side("q-stable"), _side("q-canary")]
    for name in ("quiet", "quiet-primary"):
        sides.append(TrafficSide(
            labels={"destination_workload": name, "destination_workload_namespace": NAMESPACE,
                    "reporter": "destination"},
            rps=20.0, error_ratio=0.0, error_code="404", requests_metric="istio_requests_total",
            latency_metric="istio_request_duration_milliseconds", code_label="response_code",
            latency_unit=1000.0, buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)))
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics(sides, END - 3600, END + 600, seed=3))
        app = create_app(load_settings(prometheus_url=prom.start(), config_dir=None))
        yield app.test_client()


def _quiet(client, canary: dict, stable: dict, **extra) -> dict:
    r = client.post("/v1/analyze", json={
        "config": "http", "canary": canary, "stable": stable,
        "window": {"start": END - 1800, "end": END, "step": 60}, **extra})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_a_healthy_app_without_5xx_series_still_passes(quiet, mode):
    answer = _quiet(quiet, {HASH: "q-canary"}, {HASH: "q-stable"}, mode=mode)
    assert answer["verdict"] == "pass", answer["reason"]
    check = next(c for c in answer["checks"] if c["name"] == "error_ratio")
    assert check["verdict"] == "pass", check["reason"]
    assert check["canary"]["value"] == 0 and check["stable"]["value"] == 0
    assert check["canary"]["n"] > 10_000
    # and the same app asked with a code label it lacks cannot be judged
    blind = _quiet(quiet, {HASH: "q-canary"}, {HASH: "q-stable"}, mode=mode,
                   vars={"code_label": "response_code"})
    assert blind["verdict"] == "inconclusive", blind["reason"]


def test_a_healthy_istio_canary_without_5xx_series_still_passes(quiet):
    def side(name: str) -> dict[str, str]:
        return {"destination_workload": name, "destination_workload_namespace": NAMESPACE}
    answer = _quiet(quiet, side("quiet"), side("quiet-primary"), provider="istio")
    assert answer["verdict"] == "pass", answer["reason"]
    check = next(c for c in answer["checks"] if c["name"] == "error_ratio")
    assert check["verdict"] == "pass", check["reason"]
    assert check["canary"]["value"] == 0 and check["stable"]["value"] == 0


def _ratio(absent: str) -> RatioMetric:
    return RatioMetric(name="errors", kind="ratio", bad="b", total="t", max_ratio=0.01,
                       critical=True, tolerance=Tolerance(absolute=0.002),
                       absent_numerator=absent)


@pytest.mark.parametrize("mode", ["fixed", "sequential"])
def test_a_side_with_traffic_and_no_numerator_series_holds_both_checks(mode):
    """The kind itself: the ratio and its `_limit` are inconclusive with `missing`, judged as
    0 events with the default `zero`, and a side without traffic is not named."""
    ctx = KindContext(alpha=0.05, mode=mode, step=60.0, points=30)
    total = Series({}, np.full(30, 1000.0))
    zero = Series({}, np.zeros(30))
    data = ArrayData({("canary", "total"): [total], ("stable", "total"): [total],
                      ("stable", "numerator"): [zero]})
    checks = judge_spec(_ratio("missing"), data, ctx)
    assert [(c.name, c.verdict, c.critical) for c in checks] == [
        ("errors", "inconclusive", True), ("errors_limit", "inconclusive", True)]
    assert checks[0].reason.startswith("errors: the canary served 30,000 requests, but its "
                                       "`bad` query found no series"), checks[0].reason
    assert checks[1].reason.startswith("errors_limit: the canary served"), checks[1].reason
    assert checks[0].canary.n == 30_000 and checks[0].canary.value is None
    assert {c.verdict for c in judge_spec(_ratio("zero"), data, ctx)} == {"pass"}
    # no traffic on the canary side: too little data, as before, not this reason
    idle = ArrayData({("canary", "total"): [zero], ("stable", "total"): [total],
                      ("stable", "numerator"): [zero]})
    quiet = judge_spec(_ratio("missing"), idle, ctx)[0]
    assert quiet.verdict == "inconclusive" and "found no series" not in quiet.reason
