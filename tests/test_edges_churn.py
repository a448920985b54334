"""Normal Kubernetes and Prometheus life at the data's edges, asked as Argo asks (sequential
polls of the shipped http config): a healthy canary is never failed and a regressed one (3x the
errors, or 1.5x the latency) fails and never passes, through

- scrape lag: every series' newest sample 30 s before the poll's end, and a rule-evaluation
  lag of two minutes (the last steps empty on both sides);
- canary pods replaced mid-rollout (new pod names: old series end, new ones start from 0) and a
  pod restarting inside one step (its counters back to 0);
- a 45 s scrape outage of the canary across a step point, and of the stable;
- the canary's histogram gaining `le` bounds mid-rollout (a new pod with another layout);
- a canary whose new version dropped the bounds the stable's tail share is counted at (its
  automatic bound is then chosen among the bounds both sides have).

Planted in a real Prometheus; each poll is the served POST with the poll's time as the window's
`end` (how a past poll is re-judged exactly), so the sequence needs no clock of its own. With
lag, only the last poll sees the data as it would have been then (later samples exist for the
earlier ones), so lag is asserted on the last poll.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from webhook.app import create_app
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import BASE
from webhook.lab.synth import DEFAULT_BUCKETS
from webhook.models import parse_time
from webhook.settings import load_settings

MIN = 60.0
END = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # the last poll
BEGAN = END - 20 * MIN  # the canary's first traffic
POLLS = [END - m * MIN for m in (12, 8, 4, 0)]
HASH = "rollouts_pod_template_hash"
REGRESSIONS = {"healthy": {}, "errors": {"error_ratio": 0.03}, "slow": {"latency_scale": 1.5}}
MORE_BOUNDS = tuple(sorted({*DEFAULT_BUCKETS, 0.175, 0.35, 0.45}))
# the new version's layout without the bounds where the stable's slowest 1 % begin
FEWER_BOUNDS = tuple(b for b in DEFAULT_BUCKETS if b not in (0.4, 0.5))
EDGES = ("lag30", "lag120", "replaced", "restart", "canary_outage", "stable_outage",
         "relayout", "fewer_bounds")


def _side(hash_: str, rps: float, **diff):
    pod = diff.pop("pod", None)
    labels = {"app": "shop", HASH: hash_, **({"pod": pod} if pod else {})}
    return replace(BASE, rps=rps, labels=labels, **diff)


def _drop(text: str, hash_: str, first: float, last: float) -> str:
    """`text` without `hash_`'s samples from `first` to `last` (a scrape outage)."""
    def kept(line: str) -> bool:
        if line.startswith("#") or f'"{hash_}"' not in line:
            return True
        return not first <= float(line.rsplit(" ", 1)[1]) <= last
    return "\n".join(line for line in text.splitlines() if kept(line)) + "\n"


def _plants(edge: str, version: str, seed: int) -> list[str]:
    canary, stable = f"{edge}-{version}", f"{edge}-{version}-stable"
    diff = REGRESSIONS[version]
    until = {"lag30": END - 30, "lag120": END - 120}.get(edge, END + 10 * MIN)
    texts = [render_openmetrics([_side(stable, 40)], END - 3 * 3600, until, seed=seed)]
    cut = END - 10 * MIN - 20  # mid-step: pods swap, restart or stop being scraped here
    if edge == "replaced":  # surge: the new pod starts a minute before the old one stops
        texts += [render_openmetrics([_side(canary, 20, pod="a", **diff)], BEGAN, cut,
                                     seed=seed + 1),
                  render_openmetrics([_side(canary, 20, pod="b", **diff)], cut - MIN, until,
                                     seed=seed + 2)]
    elif edge == "restart":  # the same pod, counters back to 0 15 s later
        texts += [render_openmetrics([_side(canary, 20, pod="a", **diff)], BEGAN, cut,
                                     seed=seed + 1),
                  render_openmetrics([_side(canary, 20, pod="a", **diff)], cut + 15, until,
                                     seed=seed + 2)]
    elif edge == "relayout":
        texts += [render_openmetrics([_side(canary, 20, pod="a", **diff)], BEGAN, cut,
                                     seed=seed + 1),
                  render_openmetrics([_side(canary, 20, pod="b", buckets=MORE_BOUNDS, **diff)],
                                     cut - MIN, until, seed=seed + 2)]
    elif edge == "fewer_bounds":
        texts.append(render_openmetrics([_side(canary, 20, buckets=FEWER_BOUNDS, **diff)],
                                        BEGAN, until, seed=seed + 1))
    else:
        texts.append(render_openmetrics([_side(canary, 20, **diff)], BEGAN, until,
                                        seed=seed + 1))
    step_point = END - 10 * MIN
    if edge == "canary_outage":
        texts[-1] = _drop(texts[-1], canary, step_point - 15, step_point + 15)
    if edge == "stable_outage":
        texts[0] = _drop(texts[0], stable, step_point - 15, step_point + 15)
    return texts


@pytest.fixture(scope="module")
def client():
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    with PrometheusLab() as prom:
        for seed, edge in enumerate(EDGES):
            for offset, version in enumerate(REGRESSIONS):
                for text in _plants(edge, version, 100 * seed + 10 * offset):
                    prom.plant(text)
        app = create_app(load_settings(prometheus_url=prom.start(), config_dir=None))
        yield app.test_client()


def _polls(client, edge: str, version: str) -> list[dict]:
    answers = []
    for end in POLLS:
        r = client.post("/v1/analyze", json={
            "config": "http", "canary": {HASH: f"{edge}-{version}"},
            "stable": {HASH: f"{edge}-{version}-stable"}, "window": {"end": end}})
        assert r.status_code == 200, r.get_data(as_text=True)
        answers.append(r.json)
    return answers


@pytest.mark.parametrize("edge", EDGES)
def test_a_healthy_canary_is_not_failed_at_the_edges(client, edge):
    answers = _polls(client, edge, "healthy")
    for body in answers if not edge.startswith("lag") else answers[-1:]:
        assert body["verdict"] != "fail", body["reason"]
        assert abs(_start(body) - BEGAN) <= MIN, body["window"]  # judged from the rollout


@pytest.mark.parametrize("version", ["errors", "slow"])
@pytest.mark.parametrize("edge", EDGES)
def test_a_regression_fails_at_the_edges_and_never_passes(client, edge, version):
    answers = _polls(client, edge, version)
    assert all(body["verdict"] != "pass" for body in answers), [b["reason"] for b in answers]
    assert answers[-1]["verdict"] == "fail", answers[-1]["reason"]
    failed = {c["name"] for c in answers[-1]["checks"] if c["verdict"] == "fail"}
    assert failed & ({"error_ratio"} if version == "errors" else
                     {"latency_p95", "latency_p99", "latency_tail"}), answers[-1]["reason"]


def _start(body: dict) -> float:
    return parse_time(body["window"]["start"])


@pytest.mark.parametrize("version", ["healthy", "slow"])
def test_the_tail_share_is_counted_at_a_bound_both_layouts_have(client, version):
    """The stable's slowest 1 % begin at 500 ms, a bound the canary's new layout lacks: the
    tail share is judged at the smallest bound both sides have instead of staying
    inconclusive for the whole rollout."""
    tail = next(c for c in _polls(client, "fewer_bounds", version)[-1]["checks"]
                if c["name"] == "latency_tail")
    assert "not a finite bucket bound of both sides" not in tail["reason"], tail["reason"]
    assert "bound of both sides' buckets" in tail["reason"], tail["reason"]
    assert tail["verdict"] == ("pass" if version == "healthy" else "fail"), tail["reason"]
