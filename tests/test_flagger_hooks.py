"""Flagger webhooks: the status code is the whole answer (200/201/202 pass, all else fails)."""

from __future__ import annotations

import json
import math
import re
import time

import pytest

from webhook.lab.rollouts import (
    FLAGGER_NEW,
    NAMESPACE,
    SCHEME_VARS,
    TRADING_STABLE,
    trading_hash,
)

ANALYSIS_HOOKS = ("pre-rollout", "rollout", "confirm-traffic-increase")


def hook(client, kind: str, target: str, provider: str = "app", **meta):
    metadata = {"provider": provider, "lookback": "60m", **SCHEME_VARS[provider], **meta}
    payload = {"name": target, "namespace": NAMESPACE, "phase": "Progressing",
               "checksum": "abc123", "metadata": metadata}
    return client.post(f"/v1/hooks/{kind}", json=payload)


# (target, hook) -> status, per the README's "Wiring Flagger": healthy podinfo, critical-failing
# badinfo, non-critically failing slowinfo, and newinfo whose canary has no data yet.
EXPECTED = {
    "podinfo": {"pre-rollout": 200, "rollout": 200, "confirm-traffic-increase": 200,
                "confirm-promotion": 200, "rollback": 412},
    "badinfo": {"pre-rollout": 412, "rollout": 412, "confirm-traffic-increase": 412,
                "confirm-promotion": 412, "rollback": 200},
    "slowinfo": {"pre-rollout": 412, "rollout": 412, "confirm-traffic-increase": 412,
                 "confirm-promotion": 412, "rollback": 412},
    FLAGGER_NEW: {"pre-rollout": 200, "rollout": 200, "confirm-traffic-increase": 200,
                  "confirm-promotion": 412, "rollback": 412},
}


@pytest.mark.parametrize("provider", ["app", "istio", "linkerd", "pod"])
@pytest.mark.parametrize("target", list(EXPECTED))
def test_analysis_hooks_answer_per_contract(client, target, provider):
    for kind, status in EXPECTED[target].items():
        r = hook(client, kind, target, provider)
        assert r.status_code == status, (kind, r.get_data(as_text=True))
        text = r.get_data(as_text=True)
        assert r.mimetype == "text/plain" and text.count("\n") == 1  # one line for the Event


def test_fail_reason_is_one_line_naming_the_check(client):
    r = hook(client, "rollout", "badinfo")
    text = r.get_data(as_text=True)
    assert "error_ratio" in text and "[critical]" in text and "analysis" in text


def test_rollback_fires_only_on_critical_failure(client):
    assert hook(client, "rollback", "badinfo").status_code == 200
    assert "roll back" in hook(client, "rollback", "badinfo").get_data(as_text=True)
    # a latency regression fails the rollout check but is not a reason to roll back now
    assert hook(client, "rollback", "slowinfo").status_code == 412


def test_inconclusive_can_be_made_to_fail_the_rollout_check(client):
    assert hook(client, "rollout", FLAGGER_NEW).status_code == 200
    assert hook(client, "rollout", FLAGGER_NEW, inconclusive="fail").status_code == 412


@pytest.mark.parametrize("kind", ["post-rollout", "event"])
def test_notification_hooks_answer_200_at_once(client, kind):
    payload = {"name": "anything", "namespace": "x", "phase": "Succeeded", "checksum": "c1"}
    r = client.post(f"/v1/hooks/{kind}", json=payload)
    assert r.status_code == 200


def test_event_hook_records_the_event_flagger_sends_in_metadata(client, capsys):
    """Flagger's CallEventWebhook puts eventMessage, eventType and timestamp inside `metadata`,
    merged with the hook's own metadata: the audit line must carry the message from there."""
    payload = {"name": "podinfo", "namespace": NAMESPACE, "phase": "Progressing",
               "checksum": "c1",
               "metadata": {"eventMessage": "Advance podinfo.shop canary weight 10",
                            "eventType": "Normal", "timestamp": "1700000000000",
                            "config": "http"}}
    capsys.readouterr()
    assert client.post("/v1/hooks/event", json=payload).status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if '"flagger_event"' in line]
    assert len(lines) == 1
    assert lines[0]["message"] == "Advance podinfo.shop canary weight 10"
    assert lines[0]["event_type"] == "Normal"
    assert lines[0]["flagger_canary"] == f"{NAMESPACE}/podinfo"


def test_confirm_rollout_opens_without_gates(client):
    r = hook(client, "confirm-rollout", "podinfo")
    assert r.status_code == 200
    r = hook(client, "confirm-rollout", "podinfo", config="nope")
    assert r.status_code == 400 and "nope" in r.get_data(as_text=True)


def test_explicit_selectors_override_the_scheme(client):
    r = hook(client, "rollout", "whatever", canary_selector='app="badinfo"',
             stable_selector='app="badinfo-primary"')
    assert r.status_code == 412
    r = hook(client, "rollout", "whatever", canary_selector='app="badinfo"')
    assert r.status_code == 400


@pytest.mark.parametrize("payload", [{"namespace": "x"}, {"name": "", "namespace": "x"},
                                     {"name": "a", "namespace": "b", "metadata": "nope"}])
def test_bad_payload_is_400_never_200(client, payload):
    for kind in ("rollout", "rollback", "confirm-promotion"):
        r = client.post(f"/v1/hooks/{kind}", json=payload)
        assert r.status_code == 400, r.get_data(as_text=True)


def test_bad_metadata_is_400(client):
    r = hook(client, "rollback", "podinfo", provider="app", lookback="forever")
    assert r.status_code == 400 and "metadata.lookback" in r.get_data(as_text=True)
    r = client.post("/v1/hooks/rollout", json={"name": "podinfo", "namespace": NAMESPACE,
                                               "metadata": {"provider": "consul"}})
    assert r.status_code == 400 and "provider" in r.get_data(as_text=True)


def test_hook_type_comes_from_the_path_not_the_payload(client):
    """Flagger sends phase Progressing for most hook types; the path decides."""
    payload = {"name": "badinfo", "namespace": NAMESPACE, "phase": "Progressing",
               "metadata": {"lookback": "60m"}}
    assert client.post("/v1/hooks/rollback", json=payload).status_code == 200
    assert client.post("/v1/hooks/confirm-promotion", json=payload).status_code == 412


def test_a_hook_answer_shows_escape_sequences_and_does_not_obey_them(client):
    """Flagger copies the answer into the Canary's events and `kubectl describe` prints them to
    the on-call's terminal: ESC [2J from a selector (or a cohort's label value) cleared it."""
    payload = {"name": "podinfo", "namespace": NAMESPACE, "phase": "Progressing",
               "metadata": {"provider": "app", "lookback": "60m",
                            "canary_selector": 'app="x\x1b[2J\x9b1A"',
                            "stable_selector": 'app="podinfo-primary"'}}
    r = client.post("/v1/hooks/rollout", json=payload)
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and text.count("\n") == 1
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), repr(text)
    assert 'app="x\\x1b[2J\\x9b1A"' in text


@pytest.mark.parametrize("value", ["Fail", "true", "fail "])
def test_an_inconclusive_option_other_than_pass_or_fail_is_400_naming_it(client, value):
    """`inconclusive: Fail` (or `"true"`) was read as the default `pass`: a canary with no data
    kept answering 200 where the operator had asked for failed checks, and nothing said why."""
    r = hook(client, "rollout", FLAGGER_NEW, inconclusive=value)
    text = r.get_data(as_text=True)
    assert r.status_code == 400, text
    assert text.startswith("metadata.inconclusive:") and repr(value) in text
    assert "'pass' or 'fail'" in text
    # the two values it knows keep their meaning
    assert hook(client, "rollout", FLAGGER_NEW, inconclusive="fail").status_code == 412
    assert hook(client, "rollout", FLAGGER_NEW, inconclusive="pass").status_code == 200


@pytest.mark.parametrize("key", ["app_label", "namespace_label"])
def test_a_label_name_prometheus_cannot_hold_is_named_by_its_metadata_key(client, key):
    """`app_label: app.kubernetes.io/name` (the Kubernetes label as written on the pod) was
    answered `canary: 'app.kubernetes.io/name' is not a valid Prometheus label name`: no
    metadata key is called `canary`, and the name Prometheus stores was not given."""
    r = hook(client, "rollout", "podinfo", **{key: "app.kubernetes.io/name"})
    text = r.get_data(as_text=True)
    assert r.status_code == 400, text
    assert text.startswith(f"metadata.{key}: 'app.kubernetes.io/name'"), text
    assert "app_kubernetes_io_name" in text


@pytest.mark.parametrize(("kind", "meta", "status", "start"), [
    ("confirm-rollout", {"config": "trading", "risk_tolerance": "Low"}, 400,
     "metadata.risk_tolerance: 'Low' is not one of low, medium, high, critical"),
    ("rollout", {"requests_metric": "other_requests_total"}, 403,
     "metadata.requests_metric: locked by config 'http' (allowed: 'http_requests_total', "),
    ("rollout", {"error_codes": "5..|429"}, 403,
     "metadata.error_codes: locked by config 'http' (it is fixed; leave it out)"),
])
def test_a_refused_var_is_named_by_its_metadata_key(client, capsys, kind, meta, status, start):
    """A var set in the Canary's metadata was refused as `vars.risk_tolerance`, the Argo and
    POST spelling: no Canary has a `vars` key, and the operator searched its YAML for one."""
    capsys.readouterr()
    r = hook(client, kind, "orders", **meta)
    text = r.get_data(as_text=True)
    assert r.status_code == status and text.startswith(start), text
    assert "vars." not in text and "in Flagger metadata the key is" not in text
    # the audit line the operator is sent to says it the same way
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if f'"flagger_canary":"{NAMESPACE}/orders"' in line]
    assert [line["reason"][:len(start)] for line in lines] == [start]


@pytest.mark.parametrize(("kind", "meta", "status", "words"), [
    # the approver's typo: confirm-promotion stays closed, and Flagger drops its answer
    ("confirm-promotion", {"config": "trading", "risk_tolerance": "critical",
                           "aproved_revision": "abc123"}, 412, "metadata.aproved_revision"),
    ("confirm-rollout", {"config": "trading", "risk_tolerance": "Low"}, 400,
     "risk_tolerance"),
    ("confirm-rollout", {"config": "htp"}, 400, "unknown config 'htp'"),
    ("rollout", {"alpha": "high"}, 400, "metadata.alpha"),
])
def test_a_refused_hook_call_leaves_its_audit_line(client, capsys, kind, meta, status, words):
    """Flagger keeps no answer of a confirm-* hook (its event says only "waiting for
    approval"), and docs/kubernetes.md sends the operator to the audit log, "one line per hook
    call": a call refused for its metadata wrote none, so a held rollout had no reason
    anywhere."""
    capsys.readouterr()
    r = hook(client, kind, "orders", **meta)
    assert r.status_code == status, r.get_data(as_text=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if f'"flagger_canary":"{NAMESPACE}/orders"' in line]
    assert len(lines) == 1, lines
    assert lines[0]["hook"] == kind and lines[0]["checksum"] == "abc123"
    assert lines[0]["status"] == status and lines[0]["verdict"] == "error"
    assert words in lines[0]["reason"]



HOUR_AHEAD = "hour ahead"  # replaced by the time an hour from now when the test runs


@pytest.mark.parametrize(("kind", "meta", "start"), [
    ("rollout", {"lookback": "ten minutes"}, "metadata.lookback: 'ten minutes' is not a duration"),
    ("rollout", {"step": "0s"}, "metadata.step: duration must be positive"),
    ("confirm-rollout", {"warmup": "x"}, "metadata.warmup: 'x' is not a duration"),
    ("rollout", {"start": "yesterday"}, "metadata.start: 'yesterday' is not a time"),
    ("rollout", {"end": "nope"}, "metadata.end: 'nope' is not a time"),
    ("rollout", {"start": HOUR_AHEAD}, "metadata.start: "),
    ("rollout", {"end": HOUR_AHEAD}, "metadata.end: "),
    ("confirm-rollout", {"end": HOUR_AHEAD}, "metadata.end: "),
    ("rollout", {"start": "1700003600", "end": "1700000000", "lookback": ""},
     "metadata.end must be after metadata.start"),
    ("rollout", {"start": "1700000000", "end": "1700003600"},
     "metadata: give start and end, or lookback"),
    ("rollout", {"step": "1s", "lookback": "5h"}, "metadata.step: 1s over 5h is 18,000 steps"),
])
def test_a_bad_window_key_is_named_as_the_canary_writes_it(client, capsys, kind, meta, start):
    """`lookback: "ten minutes"` in a Canary's metadata was refused as
    `metadata.window.lookback` (`window.start` for a start in the future): the analysis'
    spelling, where the Canary has `metadata.lookback` and no `window` key to search for."""
    ahead = str(time.time() + 3600)
    meta = {k: ahead if v == HOUR_AHEAD else v for k, v in meta.items()}
    capsys.readouterr()
    r = hook(client, kind, "orders", **meta)
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and text.startswith(start), text
    assert not re.search(r"window[.:]", text), text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if f'"flagger_canary":"{NAMESPACE}/orders"' in line]
    assert [line["reason"][:len(start)] for line in lines] == [start]


@pytest.mark.parametrize(("canary", "stable", "start"), [
    ('app=="orders"', 'app="orders-primary"',
     "metadata.canary_selector, label app: use = (or =~), not ==, in a label matcher"),
    ('app="orders"', 'app=~"("',
     "metadata.stable_selector, label app: '(' is not a valid regular expression"),
    ('{app="orders"', 'app="orders-primary"',
     "metadata.canary_selector: expected label matchers like app=\"web\""),
    ('app="orders"', '1app="orders-primary"',
     "metadata.stable_selector: '1app' is not a valid Prometheus label name"),
    ('app="orders"', "app=" + "x" * 5000,
     "metadata.stable_selector: 5,004 characters of matchers; at most 4,096"),
])
def test_a_bad_raw_selector_is_named_by_its_metadata_key(client, capsys, canary, stable, start):
    """`canary_selector: app=="orders"` was refused as `canary.app: use = …`: the analysis'
    field, where the Canary's key is `canary_selector`, so the operator found nothing to fix."""
    capsys.readouterr()
    r = hook(client, "rollout", "orders", canary_selector=canary, stable_selector=stable)
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and text.startswith(start), text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if f'"flagger_canary":"{NAMESPACE}/orders"' in line]
    assert [line["reason"][:len(start)] for line in lines] == [start]


def test_a_missing_instance_label_names_the_canary_key_that_sets_it(client, lab):
    """A trading canary whose series lack `pod` was told to set `vars.instance_label`: the
    request's spelling, where a Canary sets it as `metadata.instance_label`."""
    window = lab.window(60)
    r = hook(client, "rollout", "orders", config="trading", risk_tolerance="low",
             canary_selector=f'rollouts_pod_template_hash="{trading_hash("nopod")}"',
             stable_selector=f'rollouts_pod_template_hash="{TRADING_STABLE}"',
             start=str(window["start"]), end=str(window["end"]), lookback="")
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and "carry no `pod` label" in text, text
    assert "metadata.instance_label" in text, text
    # the request's own spelling stays in /v1/analyze's answer, for Argo and curl
    r = client.post("/v1/analyze", json={
        "config": "trading", "canary": f'rollouts_pod_template_hash="{trading_hash("nopod")}"',
        "stable": f'rollouts_pod_template_hash="{TRADING_STABLE}"', "window": window,
        "vars": {"risk_tolerance": "low"}})
    (check,) = [c for c in r.json["checks"] if c["name"] == "throughput"]
    assert "vars.instance_label" in check["reason"], check["reason"]


@pytest.mark.parametrize(("meta", "start"), [
    ({"start": "1700003600", "end": "1700000000", "lookback": ""},
     "metadata.end must be after metadata.start"),
    ({"start": "1700000000", "end": "1700003600"},
     "metadata: give start and end, or lookback (with an optional end), not all three"),
    ({"step": "4h"}, "metadata.step: 4h is longer than the window (1h: metadata.lookback"),
    ({"lookback": "5"}, "metadata.step: 1m is longer than the window (5s: metadata.lookback"),
    ({"step": "1s", "lookback": "5h"}, "metadata.step: 1s over 5h is 18,000 steps per query"),
    ({"start": HOUR_AHEAD, "lookback": ""}, "metadata.start: "),
    ({"canary_selector": 'app="orders"', "stable_selector": 'app="orders"'},
     "metadata.stable_selector: canary and stable select the same series"),
    ({"canary_selector": 'app=="orders"', "stable_selector": 'app="orders-primary"'},
     "metadata.canary_selector, label app: use = (or =~), not =="),
])
def test_confirm_rollout_refuses_metadata_every_later_hook_refuses(client, capsys, meta, start):
    """confirm-rollout answered 200 "rollout may start" to window metadata or selectors the
    analysis refuses: Flagger scaled the canary up, moved traffic, and its first rollout hook
    failed with 400 at every tick, each a failed check towards a rollback. It now gives the
    rollout hook's own 400, so Flagger waits with the reason in its events and the audit log."""
    ahead = str(time.time() + 3600)
    meta = {k: ahead if v == HOUR_AHEAD else v for k, v in meta.items()}
    capsys.readouterr()
    r = hook(client, "confirm-rollout", "orders", **meta)
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and text.startswith(start), text
    assert not re.search(r"window[.:]", text), text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if f'"flagger_canary":"{NAMESPACE}/orders"' in line]
    assert [(line["hook"], line["reason"][:len(start)]) for line in lines] == \
        [("confirm-rollout", start)]
    # word for word what the rollout hook answers (the clock in a future start's aside)
    later = hook(client, "rollout", "orders", **meta)
    assert later.status_code == 400
    same = re.compile(r"it is now \S+")
    assert same.sub("", later.get_data(as_text=True)) == same.sub("", text)


def test_confirm_rollout_stays_data_free_for_metadata_an_analysis_takes(lab):
    """Checking the metadata reads nothing: with Prometheus unreachable, confirm-rollout
    still opens for metadata the rollout hooks take (a start a moment ago too: the first hook
    answers "too little data yet", a 200) and refuses the rest, where an analysis is a 5xx."""
    from webhook.app import create_app
    from webhook.settings import load_settings
    down = create_app(load_settings(prometheus_url="http://127.0.0.1:9",
                                    config_dir=None)).test_client()
    for meta in ({}, {"start": str(time.time() - 5), "lookback": ""},
                 {"step": "30s", "lookback": "10m", "warmup": "2m", "mode": "fixed"}):
        r = hook(down, "confirm-rollout", "podinfo", **meta)
        assert r.status_code == 200, (meta, r.get_data(as_text=True))
        assert r.get_data(as_text=True).startswith("rollout may start")
    r = hook(down, "confirm-rollout", "podinfo", step="4h")
    assert r.status_code == 400 and r.get_data(as_text=True).startswith("metadata.step: 4h")
    assert hook(down, "rollout", "podinfo").status_code >= 500


def test_a_warmup_that_covers_the_window_is_named_as_the_canary_sets_it(client, lab, capsys):
    """A warmup leaving no step to judge was told to a Flagger user as `window.warmup (10m)
    … give a longer window or a shorter window.warmup`: keys the Canary has no way to set
    (its metadata holds `warmup` and `end` flat). The hook's answer names `metadata.warmup`
    and `metadata.end`, and so does the audit line the operator greps next to the Canary's
    events; /v1/analyze keeps the request's spelling."""
    from webhook.lab.rollouts import HISTORY_SECONDS
    began = lab.anchor - HISTORY_SECONDS  # where the planted traffic begins
    cases = (  # (metadata, the fix the answer ends with)
        ({"end": str(began + 1800), "lookback": "10m", "warmup": "10m", "mode": "fixed"},
         "give a longer window or a shorter metadata.warmup"),
        ({"end": str(began + 1800), "lookback": "", "warmup": "40m"},
         "give a later metadata.end or a shorter metadata.warmup"),
    )
    for meta, fix in cases:
        want = f"nothing to judge: metadata.warmup ({meta['warmup']}) leaves out every step"
        capsys.readouterr()
        r = hook(client, "rollout", "podinfo", **meta)
        text = r.get_data(as_text=True)
        assert r.status_code == 200 and want in text and fix in text, text
        assert "window." not in text.partition(" [analysis")[0], text
        audited = [json.loads(line)["reason"] for line in capsys.readouterr().out.splitlines()
                   if '"hook":"rollout"' in line and '"verdict":"inconclusive"' in line]
        assert len(audited) == 1 and want in audited[0] and fix in audited[0], audited
        assert "window." not in audited[0], audited
        # a 412 is what Flagger writes into the Canary's events
        r = hook(client, "confirm-promotion", "podinfo", **meta)
        text = r.get_data(as_text=True)
        assert r.status_code == 412 and text.startswith(f"not promoting: inconclusive: {want}")
        assert fix in text and "window." not in text.partition(" [analysis")[0], text


def test_a_new_revision_with_no_whole_step_yet_is_told_in_the_canarys_terms(client,
                                                                           monkeypatch):
    """A hook in the minute this replica saw a new revision has nothing to judge. It read
    "no whole step has ended since 12:00:01Z (window.not_before, where a new revision's data
    begin); ask again after the next step": a key no Canary has (the hook sets it after a
    revision change) and no time. It names the change and when to ask again; with a given
    `end`, that waiting will not help and the `metadata.end` that would."""
    revisions = client.application.extensions["canary_judge"].revisions
    minute = math.floor(time.time() / 60) * 60
    seen = minute + 1  # this minute or, if it turns before the call, the last one's step

    def restarted(name: str, **meta: str) -> tuple[int, str]:
        """Hooks for Flagger canary `name` (judging podinfo) with revision aaa, then bbb."""
        for checksum, at in (("aaa1111111", seen - 600), ("bbb2222222", seen)):
            monkeypatch.setattr(revisions, "clock", lambda at=at: at)
            r = client.post("/v1/hooks/rollout", json={
                "name": name, "namespace": NAMESPACE, "phase": "Progressing",
                "checksum": checksum, "metadata": {"target": "podinfo", "lookback": "10m",
                                                   **SCHEME_VARS["app"], **meta}})
        return r.status_code, r.get_data(as_text=True)

    change = f"this replica saw revision bbb2222222 replace aaa1111111 at {_clock(seen)} "
    status, text = restarted("nb-now")
    assert status == 200 and text.startswith(
        f"inconclusive: nothing to judge yet: the first whole step after {change}(the new "
        f"revision's data begin then) runs from {_clock(minute + 60)} to "
        f"{_clock(minute + 120)} (step 1m); ask again after {_clock(minute + 120)} ["), text
    status, text = restarted("nb-end", end=str(seen - 30))
    assert status == 200 and text.startswith(
        f"inconclusive: nothing to judge: no whole step after {change}(the new revision's "
        f"data begin then) ends by the window's end at {_clock(seen - 30)}, which waiting "
        f"will not move (set by metadata.end); give a metadata.end of {_clock(seen + 60)} "
        "or later ["), text


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(ts))


@pytest.mark.parametrize("kind", ["confirm-rollout", "rollout"])
def test_an_end_in_the_future_reads_as_the_canary_writes_it(client, kind):
    """The refusal of a future end names the time it is and the fix, in the Canary's keys:
    `metadata.end`, never `window.end` (`metadata_spelling`); `leave end out` names the key
    the metadata holds flat. Confirm-rollout refuses it first (`check_request`)."""
    end = math.floor(time.time()) + 3600
    text = hook(client, kind, "orders", end=str(end)).get_data(as_text=True)
    assert re.fullmatch(
        rf"metadata\.end: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end))} is in the "
        r"future \(it is now \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\); give a time that has "
        r"passed \(a decision to replay\), or leave end out to judge up to now\n", text), text
    # a start and a lookback ending ahead name the lookback, not an end the Canary never set
    start = math.floor(time.time()) - 600
    text = hook(client, kind, "orders", start=str(start), lookback="1h").get_data(as_text=True)
    assert text.startswith("metadata.lookback: metadata.start (") and text.endswith(
        "; give a shorter lookback, or leave lookback out to judge up to now\n"), text
