"""What a repeated poll remembers between analyses, and that it changes no answer.

Argo and Flagger send the same body at every poll of a rollout: the request parsed from it, what
the analysis resolves from it (config, metrics, selectors, planned queries) and the report
link's text are kept per process; the step cache's usual merge and the traffic reductions take
shortcuts. Each shortcut is held against the plain computation here.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import numpy as np
import pytest
from pydantic import ValidationError

from webhook.analysis import Policy, _resolve, run_analysis
from webhook.api.analyze import analysis_request
from webhook.api.body import BodyError
from webhook.configs import ConfigRegistry, load_registry
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.models import AnalysisRequest
from webhook.report.query import query_params, report_url
from webhook.rollout import mark_traffic, rollout_start
from webhook.sources import query_language
from webhook.sources.base import QueryResult, RangeQuery, Series
from webhook.sources.step_cache import _merge

LANGUAGE = query_language()


def _body(lab, version_hash: str, **extra) -> dict:
    return {"config": "http", "canary": {"rollouts_pod_template_hash": version_hash},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60),
            **extra}


def _without_ids(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "analysis_id"}


def test_a_repeated_body_is_parsed_once_and_answered_the_same(client, lab):
    sent = _body(lab, argo_hash("errors3x"))
    raw = json.dumps(sent).encode()
    assert analysis_request(raw) is analysis_request(raw)  # remembered, not parsed again
    first = client.post("/v1/analyze", data=raw, content_type="application/json")
    again = client.post("/v1/analyze", data=raw, content_type="application/json")
    fresh = client.post("/v1/analyze", json={**sent, "vars": {}})  # other bytes, same question
    assert first.status_code == again.status_code == fresh.status_code == 200
    assert _without_ids(first.json) == _without_ids(again.json) == _without_ids(fresh.json)
    assert first.json["verdict"] == "fail"


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"config": "http", "canary": {"a": "b"}}', "stable"),
    (b'{"config": "http", "canary": {"a": "b"}, "stable": "x", "colour": 1}', "colour"),
    (b'{"config": "http", "canary": NaN}', "body"),
])
def test_a_refused_body_is_refused_at_every_poll(client, raw, field):
    for _ in range(2):  # a failure is never remembered as a request
        r = client.post("/v1/analyze", data=raw, content_type="application/json")
        assert r.status_code == 400 and r.json["field"] == field, r.json
    with pytest.raises((BodyError, ValidationError)):
        analysis_request(raw)


def test_a_remembered_request_cannot_change_and_its_copies_start_afresh():
    req = AnalysisRequest.model_validate({"canary": {"h": "a"}, "stable": {"h": "b"},
                                          "vars": {"latency_metric": "a_seconds"}})
    with pytest.raises(ValidationError):
        req.vars = {}  # type: ignore[misc]
    with pytest.raises(ValidationError):
        req.window.step = 30.0  # type: ignore[misc]
    registry = load_registry(None)
    policy = Policy()
    resolved = _resolve(req, registry, policy, LANGUAGE)
    assert _resolve(req, registry, policy, LANGUAGE) is resolved
    other = req.model_copy(update={"vars": {"latency_metric": "b_seconds"}})
    assert not other.derived
    assert _resolve(other, registry, policy, LANGUAGE).vars_["latency_metric"] == "b_seconds"
    assert resolved.vars_["latency_metric"] == "a_seconds"
    # equal whatever either has derived
    assert other == req.model_copy(update={"vars": {"latency_metric": "b_seconds"}})


def test_what_a_request_resolved_is_kept_per_registry_and_policy():
    req = AnalysisRequest.model_validate({"canary": {"h": "a"}, "stable": {"h": "b"}})
    full = load_registry(None)
    empty = ConfigRegistry()
    assert _resolve(req, full, Policy(), LANGUAGE).config.name == "http"
    with pytest.raises(Exception, match="unknown config"):
        _resolve(req, empty, Policy(), LANGUAGE)
    strict = Policy(default_alpha=0.01)
    assert _resolve(req, full, strict, LANGUAGE).alpha == 0.01
    assert _resolve(req, full, Policy(), LANGUAGE).alpha == 0.05


def test_run_analysis_twice_on_one_request_answers_the_same(lab):
    from webhook.settings import load_settings
    from webhook.sources import make_source

    req = AnalysisRequest.model_validate(_body(lab, argo_hash("healthy"), mode="fixed"))
    registry = load_registry(None)
    source = make_source(load_settings(prometheus_url=lab.url))
    a, b = (run_analysis(req, registry, source, Policy(), now=lab.anchor) for _ in range(2))
    assert (a.verdict, a.score, a.reason, a.start, a.end) == (b.verdict, b.score, b.reason,
                                                              b.start, b.end)
    assert [c.reason for c in a.checks] == [c.reason for c in b.checks]


REQUESTS = [
    {"canary": {"h": "a/b c"}, "stable": 'h="z"'},
    {"canary": {"h": "a"}, "stable": {"h": "b"}, "vars": {"x": "1&2"}, "mode": "fixed",
     "window": {"lookback": "15m", "step": 30, "warmup": "2m"}, "alpha": 0.01},
    {"canary": {"h": "a"}, "stable": {"h": "b"}, "window": {"start": 1_700_000_000,
                                                          "lookback": 600}},
    {"canary": {"h": "a"}, "stable": {"h": "b"}, "window": {"end": 1_700_000_600.5},
     "metrics": {"error_ratio": {"tolerance": {"relative": 0.1}}}, "revision": "r 1"},
    {"canary": {"h": "a"}, "stable": {"h": "b"}, "provider": "istio",
     "window": {"start": 1_700_000_000}},
]


@pytest.mark.parametrize("sent", REQUESTS)
def test_the_report_link_is_the_request_with_the_end_pinned(sent):
    req = AnalysisRequest.model_validate(sent)
    for end in (1_700_000_900.0, 1_700_000_960.25, 1_700_000_900.0):  # kept text, new ends
        for base, fmt in (("", "html"), ("https://judge.example/", "json")):
            plain = urlencode([*query_params(req, end), ("format", fmt)], quote_via=quote)
            expected = f"{base.rstrip('/')}/v1/analyze/{req.config}?{plain}"
            assert report_url(req, end, base, fmt) == expected


def _reference_start(activity: np.ndarray, max_gap: int) -> int | None:
    """The definition: back from the last active step while gaps are at most max_gap."""
    active = [i for i, a in enumerate(activity) if a]
    if not active:
        return None
    start = active[-1]
    for index in reversed(active[:-1]):
        if start - index > max_gap + 1:
            break
        start = index
    return start


def test_rollout_start_and_traffic_marks_match_their_definitions():
    rng = np.random.default_rng(5)
    for _ in range(400):
        activity = rng.random(int(rng.integers(0, 80))) < rng.random()
        gap = int(rng.integers(0, 8))
        assert rollout_start(activity, gap) == _reference_start(activity, gap)
        size = int(rng.integers(1, 40))
        lengths = [size] * 4 if rng.random() < 0.7 else list(rng.integers(0, 50, 4))
        series = [Series({}, rng.choice([np.nan, np.inf, -np.inf, 0.0, 2.0, -1.0], n))
                  for n in lengths[: int(rng.integers(0, 5))]]
        for counts in (True, False):
            got = np.zeros(int(rng.integers(0, 45)), dtype=bool)
            want = got.copy()
            mark_traffic(got, series, counts)
            for s in series:
                v = s.values[: want.size]
                seen = np.isfinite(v) & (v > 0) if counts else np.isfinite(v)
                want[: v.size] |= seen
            assert (got == want).all()


def test_the_usual_merge_is_the_entry_then_the_fresh_steps():
    rng = np.random.default_rng(3)
    labels = [{"le": b} for b in sorted(["+Inf", "0.1", "1"])]
    step, size = 60.0, 20
    first = RangeQuery("k", "e", 600.0, 600.0 + (size - 1) * step, step)
    old_values = rng.random((3, size))
    old_values[1, 4] = np.nan  # a sample whose value is NaN: present, not absent
    old_present = np.ones((3, size), dtype=bool)
    old_present[2, :6] = False
    fresh_first = QueryResult(first, tuple(map(Series, labels, old_values, old_present)))
    _, entry, _ = _merge(first, None, fresh_first, first.end - 3 * step)
    for moved in (0, 1, 4):  # the window moved by as many steps; the entry holds them all
        q = RangeQuery("k", "e", first.start + moved * step, first.end + moved * step, step)
        tail = RangeQuery("k", "e", q.end - 3 * step, q.end, step)
        new_values = rng.random((3, 4))
        new_present = rng.random((3, 4)) < 0.8
        fresh = QueryResult(tail, tuple(map(Series, [dict(x) for x in labels], new_values,
                                            new_present)))
        result, held, cut = _merge(q, entry, fresh, 0.0)
        want_values = np.concatenate((old_values[:, moved: moved + size - 4], new_values), 1)
        want_present = np.concatenate((old_present[:, moved: moved + size - 4], new_present),
                                      1)
        live = want_present.any(axis=1)
        kept = [m for m, alive in zip(labels, live, strict=True) if alive]
        assert [s.labels for s in result.series] == kept
        for s, v, p in zip(result.series, want_values[live], want_present[live], strict=True):
            assert np.array_equal(s.values, v, equal_nan=True) and (s.present == p).all()
            s.values[:] = -1.0  # a judge writing into its arrays cannot reach the cache
        assert cut == size - 4 and not (held.values == -1.0).any()
