"""/v1/analyze against a real Prometheus with planted rollouts: what Argo and curl see."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from webhook.lab.rollouts import ARGO_MISSING, ARGO_STABLE, argo_hash

TOP_LEVEL_TYPES = {
    "verdict": str, "pass": bool, "score": (int, float), "reason": str, "config": str,
    "mode": str, "window": dict, "analysis_id": str, "checks": list,
}


def body(lab, version_hash: str, **extra):
    return {
        "config": "http",
        "canary": {"rollouts_pod_template_hash": version_hash},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
        "window": lab.window(60),
        **extra,
    }


def assert_argo_typed(answer: dict) -> None:
    """Argo's condition language breaks when a key is missing or changes type."""
    for key, kind in TOP_LEVEL_TYPES.items():
        assert key in answer, key
        assert isinstance(answer[key], kind), (key, answer[key])
    assert not isinstance(answer["score"], bool)
    assert answer["verdict"] in ("pass", "fail", "inconclusive")
    assert answer["pass"] is (answer["verdict"] == "pass")
    assert 0 <= answer["score"] <= 100
    assert set(answer["window"]) == {"start", "end", "step", "note"}
    assert isinstance(answer["window"]["note"], str)


def test_healthy_canary_passes(client, lab):
    r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy")))
    assert r.status_code == 200, r.json
    assert r.json["verdict"] == "pass", r.json["reason"]
    assert r.json["pass"] is True and r.json["score"] == 100
    assert_argo_typed(r.json)
    names = {c["name"] for c in r.json["checks"]}
    assert names == {"error_ratio", "latency_p95", "latency_p99", "latency_tail", "restarts",
                     "traffic", "saturation"}
    tail = next(c for c in r.json["checks"] if c["name"] == "latency_tail")
    assert tail["verdict"] == "pass" and "requests over" in tail["reason"]
    ratio = next(c for c in r.json["checks"] if c["name"] == "error_ratio")
    assert ratio["canary"]["n"] > 50_000 and ratio["stable"]["n"] > 100_000
    assert ratio["canary"]["value"] == pytest.approx(0.01, abs=0.002)


def test_triple_error_ratio_fails_on_the_critical_check(client, lab):
    r = client.post("/v1/analyze", json=body(lab, argo_hash("errors3x")))
    assert r.status_code == 200
    answer = r.json
    assert_argo_typed(answer)
    assert answer["verdict"] == "fail" and answer["pass"] is False and answer["score"] < 50
    ratio = next(c for c in answer["checks"] if c["name"] == "error_ratio")
    assert ratio["verdict"] == "fail" and ratio["critical"] is True
    assert ratio["effect"] == pytest.approx(2.0, abs=0.3)
    assert ratio["p_value"] < 1e-6
    assert "error_ratio" in answer["reason"] and "[critical]" in answer["reason"]


def test_fifty_percent_slower_p99_fails(client, lab):
    r = client.post("/v1/analyze", json=body(lab, argo_hash("slow")))
    answer = r.json
    assert_argo_typed(answer)
    assert answer["verdict"] == "fail"
    p99 = next(c for c in answer["checks"] if c["name"] == "latency_p99")
    assert p99["verdict"] == "fail"
    assert p99["effect"] == pytest.approx(0.5, abs=0.12)
    # The interval holds wherever requests sit inside their buckets: it rules out "not slower"
    # but its lower end is a bucket edge; the failure rests on the exceedance counts.
    assert p99["interval"]["low"] >= 0 and "slower beyond" in p99["reason"]
    assert next(c for c in answer["checks"] if c["name"] == "error_ratio")["verdict"] == "pass"


def test_missing_canary_series_is_inconclusive_never_pass(client, lab):
    r = client.post("/v1/analyze", json=body(lab, ARGO_MISSING))
    assert r.status_code == 200
    answer = r.json
    assert_argo_typed(answer)
    assert answer["verdict"] == "inconclusive" and answer["pass"] is False
    assert 50 <= answer["score"] < 90  # Argo score conditions (>=90 / <50) pause, not pass/fail
    assert "too little data" in answer["reason"]
    for check in answer["checks"]:
        assert check["verdict"] == "inconclusive"
        assert check["canary"]["n"] == 0


def test_a_canary_without_series_reads_as_no_data_in_every_check(client, lab):
    """A typo in the canary's hash found no series: the latency checks said "cannot read the
    histogram: canary has a single bucket ... check the query keeps `le`", sending an operator
    to debug a query that was fine. Each check now says what is true: no data, and the
    stable's own figures stay in the table."""
    answer = client.post("/v1/analyze", json=body(lab, ARGO_MISSING)).json
    restarts = next(c for c in answer["checks"] if c["name"] == "restarts")
    assert restarts["verdict"] == "inconclusive"  # not "no restarts"
    assert "no series: canary queried" in restarts["reason"], restarts["reason"]
    for check in answer["checks"]:
        if check is restarts:
            continue
        # saturation, CPU per request per step: no step with both sides
        nothing = ("0 steps with both sides" if check["kind"] == "series"
                   else "canary has 0 requests")
        assert check["reason"].startswith(f"{check['name']}: too little data: {nothing}"), \
            check["reason"]
        assert "bucket" not in check["reason"].split(" (no series:")[0], check["reason"]
        assert "no series: canary queried" in check["reason"], check["reason"]
        assert check["stable"]["n"] > 0, check
    quantiles = [c for c in answer["checks"] if c["name"].startswith("latency_p")]
    assert quantiles and all(c["stable"]["value"] > 0.1 for c in quantiles), quantiles


def test_argo_string_scalars_are_accepted(client, lab):
    """Argo sends templated jsonBody leaves as strings."""
    w = lab.window(60)
    payload = body(lab, argo_hash("healthy"), alpha="0.01", mode="fixed")
    payload["window"] = {k: str(int(v)) for k, v in w.items()}
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 200, r.json
    assert r.json["verdict"] == "pass"


def test_rfc3339_window_and_get_route_with_query_parameters(client, lab):
    w = lab.window(60)
    iso = {k: datetime.fromtimestamp(w[k], UTC).isoformat().replace("+00:00", "Z")
           for k in ("start", "end")}
    url = (f"/v1/analyze/http?canary.rollouts_pod_template_hash={argo_hash('errors3x')}"
           f"&stable=rollouts_pod_template_hash=\"{ARGO_STABLE}\""
           f"&start={iso['start']}&end={iso['end']}&step=1m")
    r = client.get(url)
    assert r.status_code == 200, r.json
    assert r.json["verdict"] == "fail"
    assert r.json["window"]["start"] == iso["start"]


def test_an_unencoded_plus_in_a_query_time_offset_is_read_as_the_offset(client, lab):
    """`start=2026-12-03T10:00:00+00:00` pasted into a URL arrives as `10:00:00 00:00` (a `+`
    in a query string is a space): it was a 400 "is not a time", which the time plainly was."""
    w = lab.window(60)
    start = datetime.fromtimestamp(w["start"], UTC)
    end = datetime.fromtimestamp(w["end"], timezone(timedelta(hours=1)))
    url = (f"/v1/analyze/http?canary.rollouts_pod_template_hash={argo_hash('errors3x')}"
           f"&stable.rollouts_pod_template_hash={ARGO_STABLE}"
           f"&start={start:%Y-%m-%dT%H:%M:%S}+00:00&end={end:%Y-%m-%dT%H:%M:%S}+0100&step=1m")
    r = client.get(url)
    assert r.status_code == 200, r.json
    assert r.json["window"]["start"] == _iso(w["start"])
    assert r.json["window"]["end"] == _iso(w["end"])
    # a space that is no offset stays a 400, saying how to write the time in a URL
    bad = client.get(url.replace("+00:00&", "+5&"))
    assert bad.status_code == 400 and bad.json["field"] == "window.start"
    assert bad.json["message"] == (
        f"window.start: '{start:%Y-%m-%dT%H:%M:%S} 5' is not a time; in a URL write Z "
        "(2026-11-22T10:00:00Z) or encode + as %2B (a + in a query string arrives as a space)")


def test_same_answer_for_the_same_explicit_window(client, lab):
    a = client.post("/v1/analyze", json=body(lab, argo_hash("slow"))).json
    b = client.post("/v1/analyze", json=body(lab, argo_hash("slow"))).json
    assert a["analysis_id"] != b["analysis_id"]
    strip = lambda x: {k: v for k, v in x.items() if k != "analysis_id"}  # noqa: E731
    assert strip(a) == strip(b)


def test_text_format_is_a_table_for_people(client, lab):
    r = client.post("/v1/analyze?format=text", json=body(lab, argo_hash("errors3x")))
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert text.startswith("verdict: FAIL")
    assert re.search(r"^error_ratio \(critical\)\s+fail ", text, flags=re.M)
    r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy")),
                    headers={"Accept": "text/plain"})
    assert r.get_data(as_text=True).startswith("verdict: PASS")


def test_text_table_values_read_as_their_reasons_do(client, lab):
    """The table printed 0.03009 and 0.2705 under reasons that say 3.01% and 270.5ms (the
    report page's table says it that way too): a number without its unit, a second reading
    of the same value."""
    r = client.post("/v1/analyze?format=text", json=body(lab, argo_hash("errors3x")))
    answer = client.post("/v1/analyze", json=body(lab, argo_hash("errors3x"))).json
    rows = {line.split()[0]: line.split() for line in r.get_data(as_text=True).splitlines()
            if line.startswith(("error_ratio", "latency_p95"))}
    for name in ("error_ratio", "latency_p95"):
        check = next(c for c in answer["checks"] if c["name"] == name)
        said = re.search(r"canary (\S+?)(?: of [\d,]+)? vs stable (\S+?)(?: of [\d,]+)?[ :]",
                         check["reason"]).groups()
        cells = [c for c in rows[name][1:] if c != "(critical)"][1:]  # after the verdict
        assert tuple(cells[:2]) == said, (cells, check["reason"])
        assert cells[2] == f"{check['canary']['n']:,.0f}"


def test_default_sequential_window_starts_where_the_canary_traffic_began(client, lab):
    """Every poll of a rollout judges [canary's first traffic, now]: the start is read off the
    data, so every replica and every poll agree on it without shared state."""
    from webhook.lab.rollouts import HISTORY_SECONDS

    payload = body(lab, argo_hash("errors3x"))
    del payload["window"]
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 200
    assert r.json["mode"] == "sequential" and r.json["window"]["step"] == 60
    start = datetime.fromisoformat(r.json["window"]["start"].replace("Z", "+00:00")).timestamp()
    assert abs(start - (lab.anchor - HISTORY_SECONDS)) <= 120
    ratio = next(c for c in r.json["checks"] if c["name"] == "error_ratio")
    assert ratio["canary"]["n"] > 100_000  # two hours at 20 req/s, not just the last minutes
    assert r.json["verdict"] == "fail"


def test_warmup_is_left_out_of_the_judged_window(client, lab):
    payload = body(lab, argo_hash("healthy"))
    payload["window"] = {**payload["window"], "warmup": "20m"}
    r = client.post("/v1/analyze", json=payload)
    assert r.json["window"]["start"] == _iso(lab.window(60)["start"] + 1200)
    ratio = next(c for c in r.json["checks"] if c["name"] == "error_ratio")
    assert 40 * 60 * 20 * 0.9 < ratio["canary"]["n"] < 40 * 60 * 20 * 1.1


def test_a_warmup_that_covers_the_window_says_so_not_that_the_canary_sent_nothing(client, lab):
    """A warmup as long as the canary's traffic so far (Argo's first poll two minutes in,
    `warmup: 2m`) leaves no step to judge. Every check said "canary has 0 requests … and it
    has sent (almost) none; stable has 0 requests": a canary that served 2,400 requests read
    as one that sent nothing, and nothing named the warmup."""
    from webhook.lab.rollouts import HISTORY_SECONDS
    began = lab.anchor - HISTORY_SECONDS  # where the planted canary's traffic begins
    cases = (
        # sequential, the canary found two minutes in: the warmup ends with the window
        ({"end": began + 120, "warmup": "2m"}, {}, "from 00:00:00Z (where the canary's "
         "traffic began)", "give a later window.end or a shorter window.warmup"),
        # fixed: the warmup counts from the window's start and covers all ten minutes
        ({"end": began + 1800, "lookback": "10m", "warmup": "10m"}, {"mode": "fixed"},
         "from 00:20:00Z (the window's start)",
         "give a longer window or a shorter window.warmup"),
    )
    for window, extra, since, fix in cases:
        r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), window=window,
                                                 **extra))
        assert r.status_code == 200, r.json
        assert r.json["verdict"] == "inconclusive", r.json["reason"]
        assert "sent (almost) none" not in r.json["reason"], r.json["reason"]
        day = datetime.fromtimestamp(began, UTC)
        since = since.replace("00:00:00Z", f"{day:%H:%M:%S}Z").replace(
            "00:20:00Z", f"{datetime.fromtimestamp(began + 1200, UTC):%H:%M:%S}Z")
        for check in r.json["checks"]:
            assert f"window.warmup ({window['warmup']}) leaves out every step {since}" \
                in check["reason"], check["reason"]
            assert check["reason"].endswith(fix), check["reason"]
    # a canary that never served, searched for over the whole default window: its "no
    # series" stands, whatever the warmup
    r = client.post("/v1/analyze", json={**body(lab, ARGO_MISSING), "window": {
        "end": lab.anchor - 300, "warmup": "4h"}})
    assert r.status_code == 200 and r.json["verdict"] == "inconclusive", r.json
    assert "window.warmup" not in r.json["reason"], r.json["reason"]
    assert "no series: canary queried" in r.json["reason"], r.json["reason"]


def test_a_step_that_does_not_divide_the_window_still_judges_up_to_its_end(client, lab):
    """`start`/`end` 10 minutes apart with `step: 7m`: the steps were laid from the start, so
    the one judged was the first seven minutes and the last three, up to the `end` asked
    for, were never read, while the answer's window still said start..end. Three minutes
    into the canary's traffic that judged "canary has 0 requests" over a window holding
    3,600 of them. The steps now end at `end`, and the window says where they begin."""
    from webhook.lab.rollouts import HISTORY_SECONDS
    began = lab.anchor - HISTORY_SECONDS  # both sides' traffic begins here
    end = began + 180
    for step, judged in ((420, 420), ("4m", 480), (45, 585)):
        r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), mode="fixed",
                                                 window={"start": end - 600, "end": end,
                                                         "step": step}))
        assert r.status_code == 200, r.json
        ratio = next(c for c in r.json["checks"] if c["name"] == "error_ratio")
        assert 3_000 < ratio["canary"]["n"] < 4_200, (step, ratio["reason"])  # 3 min at 20/s
        assert r.json["window"]["end"] == _iso(end), r.json["window"]
        assert r.json["window"]["start"] == _iso(end - judged), r.json["window"]


def test_fixed_mode_default_window_is_the_last_lookback(client, lab):
    payload = body(lab, argo_hash("errors3x"), mode="fixed")
    del payload["window"]
    r = client.post("/v1/analyze", json=payload)
    assert r.json["mode"] == "fixed"
    ratio = next(c for c in r.json["checks"] if c["name"] == "error_ratio")
    assert 5_000 < ratio["canary"]["n"] < 20_000  # ten minutes at 20 req/s
    assert r.json["verdict"] == "fail"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def test_label_values_are_escaped_not_injected(client, lab):
    nasty = 'x"} or vector(1) or up{a="'
    r = client.post("/v1/analyze", json=body(lab, nasty))
    assert r.status_code == 200, r.json
    assert r.json["verdict"] == "inconclusive"  # matched nothing; the query shape held


def test_per_request_tolerance_override(client, lab):
    """A team may tolerate more latency: +50 % then passes only when allowed, for the
    quantiles and for the share of slow requests alike."""
    payload = body(lab, argo_hash("slow"), metrics=[
        {"name": "latency", "tolerance": {"relative": "1.0"},
         "tail": {"tolerance": {"relative": 20, "absolute": 0.05}}}])
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 200, r.json
    assert r.json["verdict"] == "pass"


def test_an_override_changes_only_the_fields_it_names(client, lab):
    """{"tolerance": {"relative": 0.1}} tightens the relative part and keeps the config's
    absolute floor of 0.2 points: it used to drop it to 0, so a stable at ~1 % errors let the
    canary 0.1 points more instead of 0.2."""
    tight = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), metrics=[
        {"name": "error_ratio", "tolerance": {"relative": 0.1}}]))
    assert tight.status_code == 200, tight.json
    ratio = next(c for c in tight.json["checks"] if c["name"] == "error_ratio")
    assert ratio["stable"]["value"] * 0.1 < 0.002
    assert ratio["allowed"] == pytest.approx(0.002)
    # naming the floor changes it too
    none = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), metrics=[
        {"name": "error_ratio", "tolerance": {"relative": 0.1, "absolute": 0}}]))
    ratio = next(c for c in none.json["checks"] if c["name"] == "error_ratio")
    assert ratio["allowed"] == pytest.approx(ratio["stable"]["value"] * 0.1)


def test_disabled_metric_is_left_out(client, lab):
    payload = body(lab, argo_hash("slow"), metrics={"latency": {"enabled": "false"}})
    r = client.post("/v1/analyze", json=payload)
    assert [c["name"] for c in r.json["checks"]] == ["error_ratio", "restarts", "traffic",
                                                        "saturation"]
    assert r.json["verdict"] == "pass"


def test_bad_promql_in_an_inline_metric_is_the_callers_400_naming_query_and_error(client, lab):
    """The caller wrote the query Prometheus cannot parse: it was 502 metrics_source_rejected
    (Argo: Error, counted against the source); now 400 naming the metric's query field, with
    Prometheus' own error text."""
    payload = body(lab, argo_hash("healthy"), metrics=[{
        "name": "broken", "kind": "ratio",
        "bad": "sum(rate(http_requests_total{ {{selector}} }[{{step}}])",
        "total": "sum(increase(http_requests_total{ {{selector}} }[{{step}}]))"}])
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 400, r.json
    assert r.json["field"] == "metrics.broken.bad"
    assert r.json["message"].startswith("metrics.broken.bad: the metrics source rejected")
    assert "bad_data" in r.json["message"] and "parse error" in r.json["message"]
    # the GET form reads the same `metrics` and answers the same
    r = client.get("/v1/analyze/http", query_string={
        "canary.rollouts_pod_template_hash": argo_hash("healthy"),
        "stable.rollouts_pod_template_hash": ARGO_STABLE, **lab.window(60),
        "metrics": json.dumps(payload["metrics"])})
    assert r.status_code == 400 and r.json["field"] == "metrics.broken.bad", r.json


def _unlocked_client(lab, bad_suffix: str = ""):
    """A client over the http config without its locks (an operator's own config), whose
    `error_ratio.bad` loses `bad_suffix` (a config query Prometheus cannot parse)."""
    from webhook.app import create_app
    from webhook.configs import AnalysisConfig, Locks, load_registry
    from webhook.settings import load_settings

    registry = load_registry(None)
    data = registry.configs["http"].model_dump()
    data["metrics"][0]["bad"] = data["metrics"][0]["bad"].removesuffix(bad_suffix)
    registry.configs["http"] = AnalysisConfig.model_validate(data).model_copy(
        update={"locks": Locks()})
    return create_app(load_settings(prometheus_url=lab.url, allow_inline_queries=True),
                      registry=registry).test_client()


def test_a_callers_query_replacing_a_config_ones_is_named_when_rejected(lab):
    """An override may replace one query of a config metric: the one replaced is named."""
    client = _unlocked_client(lab)
    r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), metrics={
        "error_ratio": {"total": "sum(increase(http_requests_total{ {{selector}} }[{{step}}])"}}))
    assert r.status_code == 400, r.json
    assert r.json["field"] == "metrics.error_ratio.total" and "parse error" in r.json["message"]


def test_a_config_query_prometheus_cannot_parse_stays_the_sources_502(lab):
    """The config's own query is the server's bug, even when the caller replaced another
    query of the same metric: 502, naming the metric and Prometheus' error."""
    client = _unlocked_client(lab, bad_suffix=")")
    r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), metrics={
        "error_ratio": {"total": "sum(increase(http_requests_total{ {{selector}} }[{{step}}]))"}}))
    assert r.status_code == 502, r.json
    assert r.json["error"] == "metrics_source_rejected" and "field" not in r.json
    assert "'error_ratio'" in r.json["message"] and "parse error" in r.json["message"]


@pytest.mark.parametrize("pin", ["@ start()", "@end()"])
def test_an_inline_query_pinned_to_the_request_range_is_a_400_naming_it(client, lab, pin):
    """`@ start()` resolves to each request's start, which is not the window's: the steps a
    poll reads from the cache and those it reads anew would be pinned to different times."""
    payload = body(lab, argo_hash("healthy"), metrics=[{
        "name": "pinned", "kind": "ratio",
        "bad": f'sum(increase(http_requests_total{{ {{{{selector}}}}, code=~"5.." }}[10m] {pin}))',
        "total": "sum(increase(http_requests_total{ {{selector}} }[{{step}}]))"}])
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 400, r.json
    assert r.json["field"] == "metrics.pinned"
    assert f"`{pin}` resolves to the bounds of each request" in r.json["message"]


def test_inline_queries_are_refused_when_disabled(lab):
    from webhook.app import create_app
    from webhook.settings import load_settings

    client = create_app(load_settings(prometheus_url=lab.url)).test_client()
    payload = body(lab, argo_hash("healthy"), metrics=[{
        "name": "error_ratio", "total": "sum(up{ {{selector}} })"}])
    r = client.post("/v1/analyze", json=payload)
    assert r.status_code == 403
    assert "inline queries are disabled" in r.json["message"]


def test_a_threshold_samples_query_is_an_inline_query_refused_when_disabled(lab):
    """`samples` (a threshold's count of scrapes) is PromQL like `query`: with inline queries
    off, an unlocked threshold's `samples` was replaced by the caller's without a word."""
    from webhook.app import create_app
    from webhook.configs import Locks, load_registry
    from webhook.settings import load_settings

    registry = load_registry(None)
    registry.configs["healthcare"] = registry.configs["healthcare"].model_copy(
        update={"locks": Locks()})
    client = create_app(load_settings(prometheus_url=lab.url),
                        registry=registry).test_client()
    r = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"), config="healthcare",
                                             metrics={"clinical_alerting": {
                                                 "samples": "vector(1) + 0*up{ {{selector}} }"}}))
    assert r.status_code == 403, r.json
    assert r.json["field"] == "metrics.clinical_alerting"
    assert "inline queries are disabled" in r.json["message"]


def test_every_query_of_every_kind_is_a_field_the_inline_gate_knows():
    """The gate above reads a fixed set of field names: a kind whose query lives in another
    field would let a caller replace it with inline queries off."""
    from webhook.configs import load_registry
    from webhook.kinds import queries
    from webhook.resolve import QUERY_FIELDS

    seen = 0
    for config in load_registry(None).configs.values():
        for spec in config.metrics:
            fields = spec.model_dump()
            for template in queries(spec).values():
                assert any(fields.get(f) == template for f in QUERY_FIELDS), (spec.name, template)
                seen += 1
    assert seen > 20


def test_not_before_bounds_the_judged_start_and_says_so(client, lab):
    """`window.not_before` (a Flagger hook's bound after a revision change, carried by its
    report link) judges only the steps that began after it; one before the window changes
    nothing."""
    window = lab.window(60)
    canary = argo_hash("errors3x")
    plain = client.post("/v1/analyze", json=body(lab, canary)).json
    assert plain["window"]["note"] == ""
    early = client.post("/v1/analyze", json=body(
        lab, canary, window={**window, "not_before": window["start"] - 600})).json
    assert early["window"] == plain["window"] and early["checks"] == plain["checks"]
    bound = window["end"] - 570  # inside a step: that step may hold another revision's data
    for answer in (
            client.post("/v1/analyze", json=body(lab, canary,
                                                 window={**window, "not_before": bound})).json,
            client.get("/v1/analyze/http", query_string={
                "canary.rollouts_pod_template_hash": canary,
                "stable.rollouts_pod_template_hash": ARGO_STABLE, "start": window["start"],
                "end": window["end"], "not_before": bound}).json):
        start = datetime.fromtimestamp(window["end"] - 540, UTC)
        assert answer["window"]["start"] == start.isoformat().replace("+00:00", "Z")
        assert answer["window"]["note"] == (
            f"judged from {start:%H:%M:%S}Z, not before "
            f"{datetime.fromtimestamp(bound, UTC):%H:%M:%S}Z (window.not_before)")
        ratio = next(c for c in answer["checks"] if c["name"] == "error_ratio")
        assert ratio["canary"]["n"] < 0.2 * next(
            c for c in plain["checks"] if c["name"] == "error_ratio")["canary"]["n"]
    # a bound inside the window's last step leaves no whole step: nothing judged, said so
    # (it read "the canary has 0 requests, and it has sent (almost) none", and the note
    # "judged from 13:25:00Z, not before 13:25:30Z"). The window's end is given (a decision
    # replayed): waiting never helps, and "ask again after the next step" said it would
    for bound in (window["end"] - 15, window["end"] + 30):
        answer = client.post("/v1/analyze", json=body(
            lab, canary, window={**window, "not_before": bound})).json
        assert answer["verdict"] == "inconclusive" and answer["window"]["note"] == ""
        want = (f"nothing to judge: no whole step after window.not_before ({_clock(bound)}, "
                "where a new revision's data begin) ends by the window's end at "
                f"{_clock(window['end'])}, which waiting will not move (set by window.end); "
                f"give a window.end of {_clock(bound + 60)} or later")
        assert answer["reason"] == f"inconclusive: {want}", answer["reason"]
        assert {check["reason"] for check in answer["checks"]} == {want}
    # a start and a lookback fix the end too; a third key is refused, so the lookback is named
    answer = client.post("/v1/analyze", json=body(lab, canary, window={
        "start": window["start"], "lookback": "60m", "not_before": window["end"] - 15})).json
    assert answer["reason"].endswith(
        "which waiting will not move (set by window.start and window.lookback); give a "
        "window.lookback of 1h45s or more"), answer["reason"]


def test_a_not_before_in_the_last_step_says_when_its_first_step_ends(client, lab):
    """A window ending now whose `not_before` (a new revision, seen this minute) leaves no
    whole step said "ask again after the next step": no time. It names the first whole step
    after the bound, as a first poll names the first after its start, and when to ask."""
    minute = math.floor(time.time() / 60) * 60
    bound = minute + 1  # this minute or, if it turns before the call, the last one's step
    answer = client.post("/v1/analyze", json=body(lab, argo_hash("errors3x"), window={
        "lookback": "10m", "step": "1m", "not_before": bound})).json
    assert answer["reason"] == (
        f"inconclusive: nothing to judge yet: the first whole step after window.not_before "
        f"({_clock(bound)}, where a new revision's data begin) runs from {_clock(minute + 60)} "
        f"to {_clock(minute + 120)} (step 1m); ask again after {_clock(minute + 120)}"
    ), answer["reason"]


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%SZ")


def test_a_get_of_the_post_route_says_what_to_do(client, lab):
    """`curl '…/v1/analyze?canary=…'` is the first thing a person tries: the 405 said only
    "GET is not allowed here", not that the analysis is a POST or a GET naming the config."""
    r = client.get("/v1/analyze?canary.rollouts_pod_template_hash=x")
    assert r.status_code == 405 and r.headers["Allow"] == "OPTIONS, POST"
    assert r.json["message"] == ("GET is not allowed here; use POST; or GET "
                                 "/v1/analyze/<config>?canary=…&stable=…")
    put = client.put("/v1/analyze/http")
    assert put.status_code == 405 and put.json["message"].startswith("PUT /v1/analyze/http: ")


def test_the_config_in_a_posts_path_or_a_wrong_path_says_which_call_to_make(client, lab):
    """`POST /v1/analyze/http` (the config in the path, as the GET has it) answered "POST is
    not allowed here; use GET or HEAD", and `/v1/analyze/http/x` "no such route": neither said
    that the POST takes the config in its body."""
    post = client.post("/v1/analyze/http", json=body(lab, argo_hash("healthy")))
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert post.json["message"] == (
        'POST /v1/analyze/http: the config goes in the body: POST /v1/analyze with '
        '{"config": "http", "canary": …, "stable": …}, or GET /v1/analyze/http?canary=…&stable=…')
    for path in ("/v1/analyze/http/x", "/v1/analyze/"):
        lost = client.post(path, json=body(lab, argo_hash("healthy")))
        assert lost.status_code == 404 and lost.mimetype == "application/json"
        assert lost.json["message"] == (
            f'POST {path}: no such route; use POST /v1/analyze with {{"config": …, '
            '"canary": …, "stable": …}, or GET /v1/analyze/<config>?canary=…&stable=…')
    # the config as a query parameter of the POST route names it in the GET form shown
    get = client.get("/v1/analyze?config=http&canary.rollouts_pod_template_hash=x")
    assert get.status_code == 405
    assert get.json["message"] == ("GET is not allowed here; use POST; or GET "
                                   "/v1/analyze/http?canary=…&stable=…")


def test_selectors_in_single_quotes_or_backticks_judge_as_double_quoted_ones(client, lab):
    """`stable: "rollouts_pod_template_hash='…'"` is PromQL Prometheus runs, copied from a
    dashboard; it was a 400 "expected label matchers". It now judges the same series."""
    answers = []
    for quote in ('"', "'", "`"):
        payload = body(lab, argo_hash("errors3x"),
                       stable=f"rollouts_pod_template_hash={quote}{ARGO_STABLE}{quote}")
        r = client.post("/v1/analyze", json=payload)
        assert r.status_code == 200, r.json
        answers.append({k: v for k, v in r.json.items() if k not in ("analysis_id", "report")})
    assert answers[0]["verdict"] == "fail"
    assert answers[1] == answers[0] and answers[2] == answers[0]


def test_an_answer_that_judged_nothing_names_only_checks_it_has(client, lab):
    """Warmup, window.not_before or a first poll leaving no step to judge: the answer listed a
    check `latency` and reasons "latency: nothing to judge …", a name no judged answer of the
    config has (its checks are latency_p95, latency_p99, latency_tail), and the same sentence
    once per metric. Now it lists the judged answer's checks, and the reason, which is about
    the whole window, names no metric and is said once."""
    from webhook.lab.rollouts import HISTORY_SECONDS
    began = lab.anchor - HISTORY_SECONDS
    past = lab.window(60)
    judged = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"))).json
    names = [c["name"] for c in judged["checks"]]
    for window, why in (
            ({"end": began + 120, "warmup": "2m"}, "nothing to judge: window.warmup (2m)"),
            ({**past, "not_before": past["end"] - 15},
             "nothing to judge: no whole step after window.not_before"),
            ({"start": time.time() - 5}, "too little data yet: the first whole step after")):
        answer = client.post("/v1/analyze", json=body(lab, argo_hash("healthy"),
                                                      window=window)).json
        assert answer["verdict"] == "inconclusive", answer
        assert [c["name"] for c in answer["checks"]] == names, answer["checks"]
        reasons = {c["reason"] for c in answer["checks"]}
        assert len(reasons) == 1 and reasons.pop().startswith(why), answer["checks"]
        assert answer["reason"] == f"inconclusive: {answer['checks'][0]['reason']}"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/analyze", 405), ("DELETE", "/v1/analyze", 405),
    ("POST", "/v1/analyze/http", 405), ("GET", "/v1/analyze/http/x", 404),
])
def test_a_wrong_route_under_analyze_answers_as_its_other_errors(client, method, path, status):
    """A 404 or 405 under /v1/analyze came from the app's own error handler: JSON to
    `?format=text`, without the `no-store` and `nosniff` every other answer of /v1/analyze
    carries (the README says every answer, errors too)."""
    r = client.open(f"{path}?format=text", method=method)
    text = r.get_data(as_text=True)
    assert r.status_code == status and r.mimetype == "text/plain", text
    kind = {404: "not_found", 405: "method_not_allowed"}[status]
    assert text.splitlines()[0] == f"error:   {status} {kind}", text
    assert f"message: {method} " in text, text
    plain = client.open(path, method=method)
    assert plain.is_json and plain.json["error"] == kind  # asked for nothing: JSON, as ever
    for answer in (r, plain):
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "Accept" in answer.headers["Vary"]
    # elsewhere the generic answer stays as it was
    assert client.get("/v1/analyzex?format=text").is_json
