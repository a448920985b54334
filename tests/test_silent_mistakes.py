"""Mistakes that used to be silent: each now gets an answer that names what to fix.

- an empty label value in a side's matchers (a mis-wired Argo arg) matched every series without
  that label: now 400 naming the label;
- a typo in Flagger metadata became an unused query var: now 412 naming the key;
- a window shorter than one step (a first poll with an explicit start) was a 400: it is a valid
  question with too little data yet, so 200 inconclusive saying when to ask again (it said
  "the window is 0s … ask again later"); one that stays shorter (start and
  end, a lookback) answered 200 inconclusive for ever: now 400 naming window.step;
- CANARY_JUDGE_DEFAULT_ALPHA never applied (the config's implicit default won);
- a config field that cannot be parsed (`step: "1 minute"`) loaded, then every analysis was a
  500: now a load error on /v1/configs and /readyz, and a 503 naming it for its requests.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest

from webhook.analysis import Policy, run_analysis
from webhook.app import create_app
from webhook.configs import load_registry
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash
from webhook.models import AnalysisRequest
from webhook.settings import load_settings
from webhook.timefmt import clock


def body(lab, version: str = "healthy", **extra):
    return {"config": "http",
            "canary": {"rollouts_pod_template_hash": argo_hash(version), "namespace": NAMESPACE},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE, "namespace": NAMESPACE},
            "window": lab.window(60), **extra}


@pytest.mark.parametrize(("side", "value"), [
    ("stable", {"rollouts_pod_template_hash": "", "namespace": NAMESPACE}),
    ("canary", {"rollouts_pod_template_hash": "", "namespace": NAMESPACE}),
    ("stable", f'namespace="{NAMESPACE}", rollouts_pod_template_hash=""'),
])
def test_an_empty_label_value_is_400_naming_the_field(client, lab, side, value):
    r = client.post("/v1/analyze", json={**body(lab), side: value})
    assert r.status_code == 400, r.json
    assert r.json["field"] == f"{side}.rollouts_pod_template_hash"
    assert "empty value" in r.json["message"]
    # the GET form, as a templated URL with an empty arg would send it
    r = client.get(f"/v1/analyze/http?canary.rollouts_pod_template_hash={argo_hash('healthy')}"
                   "&stable.rollouts_pod_template_hash=")
    assert r.status_code == 400 and r.json["field"] == "stable.rollouts_pod_template_hash"


def flagger(client, hook: str, target: str = "podinfo", **meta: str | None):
    metadata = {k: v for k, v in {"lookback": "60m", **meta}.items() if v is not None}
    payload = {"name": target, "namespace": NAMESPACE, "phase": "Progressing",
               "checksum": "abc123", "metadata": metadata}
    r = client.post(f"/v1/hooks/{hook}", json=payload)
    return r.status_code, r.get_data(as_text=True)


@pytest.mark.parametrize("hook", ["rollout", "confirm-promotion", "rollback", "confirm-rollout"])
def test_a_typo_in_flagger_metadata_is_412_naming_the_key(client, hook):
    status, text = flagger(client, hook, provder="istio")
    assert status == 412, text
    assert text.startswith("metadata.provder:") and "spelling" in text
    # Vars the config does read stay accepted, and options are options.
    status, _ = flagger(client, hook, requests_metric="http_requests_total", inconclusive="pass")
    assert status == (412 if hook == "rollback" else 200)
    # A var of the plain config that the mesh's section does not use is a mistake there too.
    status, text = flagger(client, "rollout", provider="istio", code_label="response_code")
    assert status == 412 and "metadata.code_label" in text and "provider istio" in text


def test_a_window_shorter_than_one_step_is_inconclusive_while_it_grows(client, lab):
    """A controller's first poll: an explicit start a moment ago, no end. "now" aligned down
    to the step may even lie before the start: a question asked too early, which time
    answers, so the answer says when to ask again."""
    start = time.time() - 5
    ready = math.ceil((start + 60) / 60) * 60  # the first whole (aligned) minute after it
    r = client.post("/v1/analyze", json={**body(lab), "window": {"start": start}})
    assert r.status_code == 200 and r.json["verdict"] == "inconclusive", r.json
    assert {c["verdict"] for c in r.json["checks"]} == {"inconclusive"}
    assert r.json["reason"] == (
        f"inconclusive: too little data yet: the first whole step after window.start "
        f"({clock(start)}) runs from {clock(ready - 60)} to {clock(ready)} (step 1m); ask "
        f"again after {clock(ready)}"), r.json["reason"]
    # Flagger's hooks: inconclusive is not a failed check, and the key is the Canary's.
    status, text = flagger(client, "rollout", start=str(start), lookback=None)
    assert status == 200 and text.startswith(
        f"inconclusive: too little data yet: the first whole step after metadata.start "
        f"({clock(start)}) runs from"), text
    assert f"ask again after {clock(ready)}" in text


@pytest.mark.parametrize(("ago", "step", "start", "runs"), [
    # "now" (12:00:20) aligned down to the step (12:00:00) lies before the start: the
    # window was "0s", and "ask again later" did not say when
    (5, "1m", "12:00:15Z", "from 12:01:00Z to 12:02:00Z (step 1m); ask again after 12:02:00Z"),
    (5, "5m", "12:00:15Z", "from 12:05:00Z to 12:10:00Z (step 5m); ask again after 12:10:00Z"),
    # a start up to five minutes ahead (clocks disagree) is a question asked early too
    (-100, "1m", "12:02:00Z", "from 12:02:00Z to 12:03:00Z (step 1m); ask again after "
     "12:03:00Z"),
    # the window is longer than nothing but shorter than a step (it was "20s")
    (40, "1m", "11:59:40Z", "from 12:00:00Z to 12:01:00Z (step 1m); ask again after 12:01:00Z"),
    (30, "30s", "11:59:50Z", "from 12:00:00Z to 12:00:30Z (step 30s); ask again after "
     "12:00:30Z"),
])
def test_a_window_too_short_yet_says_when_its_first_whole_step_ends(ago, step, start, runs):
    """The first poll of a window from a start to now answered "the window is 0s, shorter than
    one step (60s); ask again later" whenever the start lay after now aligned down to the step:
    a window of nothing, and no time. It names the first whole step, which the window's end
    (a multiple of the step) reaches, and when to ask again."""
    now = datetime(2026, 12, 3, 12, 0, 20, tzinfo=UTC).timestamp()
    request = AnalysisRequest.model_validate({
        "config": "http", "canary": {"app": "web"}, "stable": {"app": "web-primary"},
        "window": {"start": now - ago, "step": step}})
    # nothing is fetched: a source that is called fails the test
    result = run_analysis(request, load_registry(None), None,  # type: ignore[arg-type]
                          Policy(), now=now)
    assert result.verdict == "inconclusive" and result.query_count == 0
    assert result.reason == (f"inconclusive: too little data yet: the first whole step after "
                             f"window.start ({start}) runs {runs}"), result.reason


def test_a_window_that_stays_shorter_than_one_step_is_a_400_naming_step_and_fix(client, lab):
    """A window whose length is fixed (start and end, a lookback, the default one) holds no
    step now and never will: it answered 200 "too little data" at every poll until the
    controller gave up. It is now a 400 naming window.step, where the length came from and
    the fix."""
    end = lab.anchor - 300
    cases = (
        ({"start": end - 30, "end": end, "step": 60}, {},
         "window.step: 1m is longer than the window (30s: window.start to window.end)",
         "give a step of at most 30s or a longer window"),
        ({"start": end - 59.5, "end": end}, {}, "(59.5s: window.start to window.end)",
         "give a step of at most 59.5s or a longer window"),
        ({"start": end - 100, "lookback": 30}, {"mode": "fixed"},
         "(30s: window.lookback; bare numbers are seconds)", "at most 30s or a longer window"),
        ({"end": end, "start": end - 0.5}, {}, "(500ms: window.start to window.end)",
         "no step of it can be judged; give a longer window"),
        # a step longer than the window a request without start or lookback gets: it said
        # "ask again later" for ever once
        ({"step": "4h"}, {"mode": "fixed"}, "window.step: 4h is longer than the window (10m: "
         "CANARY_JUDGE_DEFAULT_LOOKBACK)", "give a step of at most 10m or a longer window"),
        ({"step": "4h"}, {}, "(3h: sequential mode's search for the rollout's start, "
         "CANARY_JUDGE_SEQUENTIAL_MAX_LOOKBACK)", "at most 3h or a longer window"),
    )
    for window, extra, named, fix in cases:
        r = client.post("/v1/analyze", json={**body(lab, "errors3x"), **extra,
                                             "window": window})
        assert r.status_code == 400, (window, r.json)
        assert r.json["field"] == "window.step", r.json
        assert named in r.json["message"] and r.json["message"].endswith(fix), r.json["message"]
    # `lookback=5` (5 s, where 5m was meant), in the GET form, in fixed and sequential mode
    for mode in ("fixed", "sequential"):
        r = client.get(f"/v1/analyze/http?canary.app=a&stable.app=b&lookback=5&mode={mode}")
        assert r.status_code == 400 and r.json["field"] == "window.step", r.json
        assert "(5s: window.lookback; bare numbers are seconds)" in r.json["message"]
    # An explicit end before the start stays its own mistake.
    r = client.post("/v1/analyze", json={**body(lab), "window": {"start": end, "end": end - 60}})
    assert r.status_code == 400 and r.json["field"] == "window.end"
    # Flagger's hooks: the same 400, with the message, not a silent inconclusive, naming the
    # keys as the Canary's metadata spells them
    status, text = flagger(client, "rollout", start=str(end - 30), end=str(end), lookback=None)
    assert status == 400 and text.startswith("metadata.step: 1m is longer than the window "
                                             "(30s: metadata.start to metadata.end)"), text


def error_ratio_level(client, payload) -> float:
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 200, r.json
    check = next(c for c in r.json["checks"] if c["name"] == "error_ratio")
    return check["interval"]["level"]


def test_alpha_precedence_request_metric_config_server(lab):
    """First set wins: request > metric > config (level, defaults) > CANARY_JUDGE_DEFAULT_ALPHA.
    The sequential ratio test reports its interval at level 1 - alpha."""
    app = create_app(load_settings(prometheus_url=lab.url, default_alpha=0.2, config_dir=None))
    client = app.test_client()
    assert error_ratio_level(client, body(lab)) == pytest.approx(0.8)  # the server's
    assert error_ratio_level(client, body(lab, alpha="0.1")) == pytest.approx(0.9)
    per_metric = {"metrics": {"error_ratio": {"alpha": 0.02}}}
    assert error_ratio_level(client, body(lab, **per_metric)) == pytest.approx(0.98)
    assert error_ratio_level(client, body(lab, alpha=0.1, **per_metric)) == pytest.approx(0.9)
    # A config that sets alpha (trading: 0.01) keeps it over the server's.
    registry = app.extensions["canary_judge"].registry
    assert registry.configs["trading"].defaults.alpha == 0.01
    assert registry.configs["http"].defaults.alpha is None


BAD_STEP = """
name: http
description: an operator's override of the built-in, with a typo
defaults: {step: 1 minute}
metrics:
  - {name: errors, kind: ratio, bad: 'sum(x{ {{selector}} })', total: 'sum(y{ {{selector}} })'}
"""


@pytest.mark.parametrize(("text", "field"), [
    (BAD_STEP, "defaults.step"),
    (BAD_STEP.replace("{step: 1 minute}", "{lookback: soon}"), "defaults.lookback"),
    (BAD_STEP.replace("{step: 1 minute}", "{step: 500ms}"), "defaults.step"),
    (BAD_STEP.replace("{step: 1 minute}", "{}\nvars: {m: 'up or vector(1)'}")
     .replace("sum(x{", "sum({{m}}{"), "errors.numerator"),
    (BAD_STEP.replace("{step: 1 minute}", "{}\nproviders: {istio: {metrics: {nope: {}}}}"),
     "providers.istio.metrics"),
    (BAD_STEP.replace("{step: 1 minute}", "{}\nproviders: {istio: {metrics: {errors: "
                      "{tolerance: {relative: -1}}}}}"), "providers.istio"),
    # pinned to each request's start, which the step cache moves from poll to poll
    (BAD_STEP.replace("{step: 1 minute}", "{}").replace("sum(x{ {{selector}} })",
                                                        "sum(x{ {{selector}} } @ start())"),
     "metric errors: `@ start()` resolves to the bounds of each request"),
])
def test_a_bad_config_field_is_reported_at_load_never_a_500(lab, tmp_path, text, field):
    (tmp_path / "http.yaml").write_text(text)
    client = create_app(load_settings(prometheus_url=lab.url,
                                      config_dir=str(tmp_path))).test_client()
    errors = client.get("/v1/configs").json["errors"]
    assert len(errors) == 1 and errors[0]["source"].endswith("http.yaml"), errors
    assert errors[0]["error"].startswith("config http: ") and field in errors[0]["error"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert any("http.yaml" in p and field in p for p in ready.json["problems"]), ready.json
    # The broken override is not silently replaced by the built-in of the same name.
    r = client.post("/v1/analyze", json=body(lab))
    assert r.status_code == 503 and r.json["field"] == "config", r.json
    assert field in r.json["message"]
    status, text = flagger(client, "rollout")
    assert status == 503
    # Other configs still work.
    r = client.post("/v1/analyze", json={**body(lab), "config": "trading",
                                         "vars": {"risk_tolerance": "low"}})
    assert r.status_code == 200
