"""The templates end to end: each AnalysisTemplate's web request, resolved the way Argo
resolves it from the example Rollouts, is sent to the service against the lab Prometheus, and its
jsonPath and conditions are evaluated with Argo's typing rules (tests/argo_semantics.py); each
Flagger webhook is called as Flagger calls it.

A new config is new files under `analysis_templates/<config>/` and `manifests/configs/`, and
these tests pick them up. Only the expectation tables name configs: which planted versions a
config's templates and hooks are sent (ARGO_PLANTED, HOOK_VERSIONS), the answers expected for
them, and the gates of the trading and healthcare profiles (market hours, approval)."""

from __future__ import annotations

import copy
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from argo_semantics import ARG as _ARG
from argo_semantics import CONDITION as _CONDITION
from argo_semantics import argo_phase, resolve_args
from argo_semantics import kind as _kind
from k8s_files import (
    KUSTOMIZATION,
    MANIFESTS,
    base_objects,
    configmap_files,
    load_docs,
    objects_of,
    template_index,
    web_metrics,
)

from webhook.api.hooks import _METADATA_KEYS, HOOK_TYPES
from webhook.app import create_app
from webhook.lab.rollouts import (
    ARGO_MISSING,
    ARGO_STABLE,
    FLAGGER_NEW,
    FUTURE_SECONDS,
    HEALTHCARE_APP,
    HEALTHCARE_STABLE,
    NAMESPACE,
    TRADING_APP,
    TRADING_STABLE,
    argo_hash,
    healthcare_hash,
    trading_hash,
)
from webhook.settings import load_settings
from webhook.sources.prometheus.promql import placeholders

API_TOKEN = "test-token-for-argo"
# The lab plants data up to FUTURE_SECONDS after the session's anchor; a "now" window beyond
# that would judge missing data, so requests get an explicit end inside it when the run is late.


# -- Argo: templates, Rollouts, and the requests they make -----------------------------------

def rollout_references() -> list[tuple[str, dict[str, Any], dict[str, Any], list[dict]]]:
    """(label, rollout, template, args) for every analysis a Rollout runs."""
    index = template_index()
    refs = []
    for path, rollout in objects_of("Rollout"):
        strategy = rollout["spec"]["strategy"]
        analyses = []
        canary = strategy.get("canary", {})
        if "analysis" in canary:
            analyses.append(("background", canary["analysis"]))
        for i, step in enumerate(canary.get("steps", [])):
            if "analysis" in step:
                analyses.append((f"step{i}", step["analysis"]))
        for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
            if key in strategy.get("blueGreen", {}):
                analyses.append((key, strategy["blueGreen"][key]))
        for where, analysis in analyses:
            for ref in analysis["templates"]:
                kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
                template = index.get((kind, ref["templateName"]))
                assert template is not None, f"{path} {where}: no {kind} {ref['templateName']}"
                label = f"{Path(path).parent.name}/{rollout['metadata']['name']}/{where}/{kind}"
                refs.append((label, rollout, template, analysis.get("args", [])))
    return refs


REFERENCES = rollout_references()


def test_every_template_is_used_by_an_example_rollout():
    used = {(t["kind"], t["metadata"]["name"]) for _, _, t, _ in REFERENCES}
    assert set(template_index()) <= used


def test_cluster_templates_mirror_the_namespaced_ones():
    index = template_index()
    names = {name for _, name in index}
    for name in names:
        namespaced = index.get(("AnalysisTemplate", name))
        cluster = index.get(("ClusterAnalysisTemplate", name))
        assert namespaced and cluster, f"{name}: ship both an AnalysisTemplate and a cluster one"
        assert namespaced["spec"] == cluster["spec"], name


def _arg_value(arg: dict[str, Any], rollout: dict[str, Any], canary_hash: str,
               stable_hash: str = ARGO_STABLE) -> str | None:
    if "value" in arg:
        return str(arg["value"])
    source = arg.get("valueFrom")
    if source is None:
        return None
    if "secretKeyRef" in source:
        return API_TOKEN
    if "podTemplateHashValue" in source:
        return {"Latest": canary_hash, "Stable": stable_hash}[source["podTemplateHashValue"]]
    field = source["fieldRef"]["fieldPath"]
    if field == "metadata.namespace":
        return NAMESPACE
    if field == "metadata.name":
        return rollout["metadata"]["name"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field)
    assert match, f"fieldRef {field}: extend this test"
    # k8s.io/kubernetes/pkg/fieldpath (what Argo calls): an absent key resolves to "".
    return rollout["metadata"].get(match.group(1), {}).get(match.group(2), "")


def resolved_metrics(rollout, template, rollout_args, canary_hash, stable_hash=ARGO_STABLE,
                     pinned=None) -> list[dict[str, Any]]:
    """The template's metrics with args resolved as the AnalysisRun would have them.

    `pinned` replaces arg values after the Rollout's (what a user would set for one release).
    """
    values = {a["name"]: _arg_value(a, rollout, canary_hash, stable_hash)
              for a in template["spec"]["args"]}
    for arg in rollout_args:
        assert arg["name"] in values, f"Rollout passes arg {arg['name']} the template lacks"
        values[arg["name"]] = _arg_value(arg, rollout, canary_hash, stable_hash)
    for name, value in (pinned or {}).items():
        assert name in values, f"template has no arg {name}"
        values[name] = value
    missing = sorted(name for name, value in values.items() if value is None)
    assert not missing, f"argument(s) {missing} not supplied"
    return [resolve_args(m, values) for m in template["spec"]["metrics"]]


def service_host_and_port() -> tuple[set[str], int]:
    objs = base_objects()
    name = objs["Service"]["metadata"]["name"]
    namespace = load_docs(MANIFESTS / "base" / KUSTOMIZATION)[0]["namespace"]
    hosts = {f"{name}.{namespace}", f"{name}.{namespace}.svc",
             f"{name}.{namespace}.svc.cluster.local"}
    ports = [p["port"] for p in objs["Service"]["spec"]["ports"]]
    assert len(ports) == 1
    return hosts, ports[0]


def check_url(url: str) -> str:
    """The URL must reach the Service of manifests/; returns path?query."""
    hosts, port = service_host_and_port()
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.hostname in hosts, url
    assert (parts.port or 80) == port, url
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize(("label", "metric"), web_metrics(), ids=[m[0] for m in web_metrics()])
def test_web_metrics_follow_the_contract(label, metric):
    web = metric["provider"]["web"]
    check_url(web["url"])
    assert web.get("method") == "POST" and "jsonBody" in web and "body" not in web
    assert 1 <= web.get("timeoutSeconds", 0) <= 10, "set timeoutSeconds (Argo's limit is 10 s)"
    assert web.get("jsonPath"), "without jsonPath Argo stores the whole body in the run status"
    assert metric.get("successCondition") and metric.get("failureCondition"), \
        "both conditions: an inconclusive verdict must be Inconclusive, not Failed"
    headers = {h["key"].lower(): h["value"] for h in web.get("headers", [])}
    assert re.fullmatch(r"Bearer \{\{\s*args\.[\w-]+\s*\}\}", headers.get("authorization", ""))
    token_arg = re.search(r"args\.([\w-]+)", headers["authorization"]).group(1)
    template = next(t for t in template_index().values() if metric in t["spec"]["metrics"])
    arg = next(a for a in template["spec"]["args"] if a["name"] == token_arg)
    assert "secretKeyRef" in arg.get("valueFrom", {}), "the token must come from a Secret"
    assert {"config", "canary", "stable"} <= set(web["jsonBody"])


@pytest.fixture(scope="module")
def judge(lab, tmp_path_factory):
    """The service as deployed: API tokens on, the ConfigMap's configs in the config dir."""
    config_dir = tmp_path_factory.mktemp("configmap")
    for name, text in configmap_files().items():
        (config_dir / name).write_text(text)
    app = create_app(load_settings(prometheus_url=lab.url, api_tokens=API_TOKEN,
                                   config_dir=config_dir))
    registry = app.extensions["canary_judge"].registry
    assert not registry.errors, registry.errors
    return app


def planted_end(lab, window: dict[str, Any]) -> dict[str, str]:
    """`{"end": …}` inside the planted data when a "now" window is about to leave it."""
    if "start" in window or "end" in window or time.time() < lab.anchor + FUTURE_SECONDS - 60:
        return {}
    return {"end": str(lab.anchor + FUTURE_SECONDS - 60)}


# Planted Argo versions (webhook/lab/rollouts.py) and what Argo must conclude for them.
ARGO_VERSIONS = {"healthy": argo_hash("healthy"), "errors3x": argo_hash("errors3x"),
                 "missing": ARGO_MISSING}
# Per config: the stable hash and the canary versions the lab plants for it (each differs from
# stable in one known way). A config without an entry is sent the http versions.
ARGO_PLANTED = {
    "http": (ARGO_STABLE, ARGO_VERSIONS),
    "trading": (TRADING_STABLE, {"healthy": trading_hash("healthy"),
                                 "fills": trading_hash("fills"),  # fill rate -6 %: critical
                                 "slippage": trading_hash("slippage"),  # +3 bps
                                 "missing": ARGO_MISSING}),
    "healthcare": (HEALTHCARE_STABLE, {"healthy": healthcare_hash("healthy"),
                                       "adverse": healthcare_hash("adverse"),  # one event
                                       "facility": healthcare_hash("facility"),  # B admissions
                                       "missing": ARGO_MISSING}),
}
EXPECTED_PHASE = {"http": {"healthy": "Successful", "errors3x": "Failed",
                           "missing": "Inconclusive"},
                  "trading": {"healthy": "Successful", "fills": "Failed", "slippage": "Failed",
                              "missing": "Inconclusive"},
                  "healthcare": {"healthy": "Successful", "adverse": "Failed",
                                 "facility": "Failed", "missing": "Inconclusive"}}
# Query vars pinned for the phases above, by config: the market-hours gate is evaluated at the
# time of the request, and only risk_tolerance low passes it at any hour. What the templates'
# own risk tolerance gets is checked in test_market_hours_gate_in_argo_templates.
PINNED_VARS = {"trading": {"risk_tolerance": "low"}}


def template_config(template: dict[str, Any]) -> str:
    configs = {m["provider"]["web"]["jsonBody"].get("config", "http")
               for m in template["spec"]["metrics"] if "web" in m["provider"]}
    assert len(configs) == 1, f"{template['metadata']['name']}: one config per template"
    return configs.pop()


def var_args(template: dict[str, Any], names) -> dict[str, str]:
    """The template args that feed the given query vars (`vars.x: "{{args.y}}"`), x -> y."""
    found = {}
    for metric in template["spec"]["metrics"]:
        if "web" not in metric["provider"]:
            continue
        vars_ = metric["provider"]["web"]["jsonBody"].get("vars") or {}
        for name in names:
            match = _ARG.fullmatch(str(vars_.get(name, "")))
            assert match, f"{template['metadata']['name']}: pass vars.{name} from an arg"
            found[name] = match.group(1).removeprefix("args.")
    return found


def planted(config: str) -> tuple[str, dict[str, str]]:
    return ARGO_PLANTED.get(config, ARGO_PLANTED["http"])


ARGO_CASES = [(*ref, version) for ref in REFERENCES
              for version in planted(template_config(ref[2]))[1]]


def verdict_metric(metric: dict[str, Any]) -> bool:
    """A metric that reads the analysis verdict; the trading and healthcare templates also have
    a `gates` metric reading POST /v1/gates (tests/test_gates_metric.py)."""
    web = metric["provider"].get("web")
    return web is not None and not urlsplit(web["url"]).path.endswith("/v1/gates")


def web_request(lab, metric: dict[str, Any]) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """(path, method, headers, body) of one resolved metric's request, as Argo sends it."""
    web = metric["provider"]["web"]
    headers = {h["key"]: h["value"] for h in web.get("headers", [])}
    body = copy.deepcopy(web["jsonBody"])
    if end := planted_end(lab, body.get("window") or {}):
        body["window"] = {**(body.get("window") or {}), **end}
    return check_url(web["url"]), web["method"], headers, body


def send_web(client, lab, metric: dict[str, Any]) -> tuple[Any, str, Any]:
    """POST one resolved metric's request as Argo would: (response, phase, jsonPath value)."""
    path, method, headers, body = web_request(lab, metric)
    r = client.open(path, method=method, headers=headers, json=body)
    phase, value = argo_phase(metric, r.status_code, r.get_data())
    assert phase != "Error", (value, r.get_data(as_text=True)[:500])
    return r, phase, value


@pytest.mark.parametrize(("label", "rollout", "template", "args", "version"), ARGO_CASES,
                         ids=[f"{c[0]}-{c[4]}" for c in ARGO_CASES])
def test_template_requests_get_typed_verdicts_from_the_service(judge, lab, label, rollout,
                                                               template, args, version):
    client = judge.test_client()
    config = template_config(template)
    stable_hash, versions = planted(config)
    pinned_vars = PINNED_VARS.get(config, {})
    pinned = {arg: pinned_vars[var] for var, arg in var_args(template, pinned_vars).items()}
    for metric in resolved_metrics(rollout, template, args, versions[version], stable_hash,
                                   pinned):
        if metric["provider"].get("web") is None:
            continue
        r, phase, value = send_web(client, lab, metric)
        if not verdict_metric(metric):  # the gates metric (tests/test_gates_metric.py)
            assert phase in ("Successful", "Inconclusive") and value in ("open", "closed")
            continue
        path, method, headers, body = web_request(lab, metric)
        # The jsonPath value has the JSON type every literal in the conditions has.
        for condition in (metric.get("successCondition"), metric.get("failureCondition")):
            if condition:
                literal = json.loads(_CONDITION.match(condition).group(2))
                assert _kind(value) == _kind(literal), (condition, value)
        expected = EXPECTED_PHASE.get(body.get("config", "http"), {}).get(version)
        if expected:
            assert phase == expected, (value, r.json["reason"])
        if version == "missing":
            assert phase != "Successful", "no data must never pass"
        # Without the token the judge refuses, which Argo records as Error: never a pass.
        headers.pop("Authorization")
        r = client.open(path, method=method, headers=headers, json=body)
        assert r.status_code == 401


@pytest.mark.parametrize(("label", "rollout", "template", "args"), REFERENCES,
                         ids=[r[0] for r in REFERENCES])
def test_templates_work_with_no_tokens_and_an_empty_client_secret(lab, label, rollout, template,
                                                                  args):
    """Argo's secretKeyRef cannot be optional, so with no CANARY_JUDGE_API_TOKENS the client
    Secret holds an empty api-token: the header is then `Bearer ` and must not be refused."""
    app = create_app(load_settings(prometheus_url=lab.url, config_dir=None))
    client = app.test_client()
    config = template_config(template)
    stable_hash, versions = planted(config)
    pinned_vars = PINNED_VARS.get(config, {})
    pinned = {arg: pinned_vars[var] for var, arg in var_args(template, pinned_vars).items()}
    secret_args = [a["name"] for a in template["spec"]["args"]
                   if "secretKeyRef" in a.get("valueFrom", {})]
    assert secret_args, "the token arg reads the client Secret"
    pinned.update({name: "" for name in secret_args})
    for metric in resolved_metrics(rollout, template, args, versions["healthy"], stable_hash,
                                   pinned):
        if metric["provider"].get("web") is None:
            continue
        path, method, headers, body = web_request(lab, metric)
        assert headers["Authorization"] == "Bearer "
        r = client.open(path, method=method, headers=headers, json=body)
        assert r.status_code == 200, r.get_data(as_text=True)[:300]


def checks_by_name(response) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in response.json["checks"]}


def assert_gate_holds_or_passes(r, phase: str) -> None:
    """A healthy canary under a timing gate: Successful now, or Inconclusive (the rollout
    pauses) naming only the gate; never Failed, which would abort it mid-session."""
    checks = checks_by_name(r)
    assert phase in ("Successful", "Inconclusive"), (phase, r.json["reason"])
    # (an order-latency quantile the buckets cannot resolve is informational: not blocking)
    assert {c["verdict"] for n, c in checks.items()
            if n != "market_hours" and c["blocking"]} == {"pass"}
    gate = checks["market_hours"]
    assert gate["critical"] is False, "a closed market must never count as a critical failure"
    if phase == "Inconclusive":
        assert gate["verdict"] == "inconclusive" and "market_hours" in r.json["reason"], \
            r.json["reason"]
        assert "session open" in gate["reason"]
    else:
        assert gate["verdict"] == "pass", gate["reason"]


GATED_REFERENCES = [ref for ref in REFERENCES if template_config(ref[2]) == "trading"]


@pytest.mark.parametrize(("label", "rollout", "template", "args"), GATED_REFERENCES,
                         ids=[r[0] for r in GATED_REFERENCES])
def test_market_hours_gate_in_argo_templates(judge, lab, label, rollout, template, args):
    """With the Rollout's own risk tolerance the answer depends on the clock, but is never an
    Error or a verdict on anything but the gate; critical waits for a person's approval."""
    client = judge.test_client()
    stable_hash, versions = planted("trading")
    canary = versions["healthy"]
    arg = var_args(template, ["risk_tolerance", "approved_revision"])
    risk_arg, approval_arg = arg["risk_tolerance"], arg["approved_revision"]

    def phase_for(**pinned: str):
        (metric,) = [m for m in resolved_metrics(rollout, template, args, canary, stable_hash,
                                                 pinned) if verdict_metric(m)]
        r, phase, _ = send_web(client, lab, metric)
        return r, phase, metric["provider"]["web"]["jsonBody"]["vars"]

    r, phase, vars_ = phase_for()
    assert vars_["risk_tolerance"] == "medium", "the examples document risk tolerance medium"
    assert vars_["approved_revision"] == "", "no approval unless a person annotates the Rollout"
    assert_gate_holds_or_passes(r, phase)
    r, phase, _ = phase_for(**{risk_arg: "high"})
    assert_gate_holds_or_passes(r, phase)
    # Critical: inconclusive (the rollout pauses) until a person approves this very revision.
    for approval in ("", versions["fills"]):
        r, phase, _ = phase_for(**{risk_arg: "critical", approval_arg: approval})
        assert phase == "Inconclusive", r.json["reason"]
        assert checks_by_name(r)["market_hours"]["verdict"] == "inconclusive"
        assert "approved_revision" in r.json["reason"]
    r, phase, _ = phase_for(**{risk_arg: "critical", approval_arg: canary})
    assert_gate_holds_or_passes(r, phase)
    # A failing canary fails whatever the gate says.
    (metric,) = [m for m in resolved_metrics(rollout, template, args, versions["fills"],
                                             stable_hash) if verdict_metric(m)]
    r, phase, _ = send_web(client, lab, metric)
    assert phase == "Failed" and checks_by_name(r)["order_fill_rate"]["verdict"] == "fail"


APPROVAL_REFERENCES = [ref for ref in REFERENCES if template_config(ref[2]) == "healthcare"]


@pytest.mark.parametrize(("label", "rollout", "template", "args"), APPROVAL_REFERENCES,
                         ids=[r[0] for r in APPROVAL_REFERENCES])
def test_safety_level_critical_needs_approval_in_argo_templates(judge, lab, label, rollout,
                                                                template, args):
    client = judge.test_client()
    stable_hash, versions = planted("healthcare")
    canary = versions["healthy"]
    arg = var_args(template, ["safety_level", "approved_revision"])
    level_arg, approval_arg = arg["safety_level"], arg["approved_revision"]

    def answer(version: str = "healthy", **pinned: str):
        (metric,) = [m for m in resolved_metrics(rollout, template, args, versions[version],
                                                 stable_hash, pinned)
                     if verdict_metric(m)]
        r, phase, _ = send_web(client, lab, metric)
        return r, phase, metric["provider"]["web"]["jsonBody"]["vars"]

    r, phase, vars_ = answer()
    assert vars_["safety_level"] == "high", "the examples document the default, high"
    assert phase == "Successful" and "approval" not in checks_by_name(r), r.json["reason"]
    for approval in ("", versions["adverse"]):  # none, or another revision's
        r, phase, _ = answer(**{level_arg: "critical", approval_arg: approval})
        assert phase == "Inconclusive", r.json["reason"]
        assert checks_by_name(r)["approval"]["verdict"] == "inconclusive"
        assert f"approve revision {canary}" in r.json["reason"]
    r, phase, _ = answer(**{level_arg: "critical", approval_arg: canary})
    assert phase == "Successful", r.json["reason"]
    assert checks_by_name(r)["approval"]["verdict"] == "pass"
    # An approval is no waiver: the adverse event still fails an approved revision.
    r, phase, _ = answer("adverse", **{level_arg: "critical",
                                       approval_arg: versions["adverse"]})
    assert phase == "Failed" and checks_by_name(r)["adverse_events"]["verdict"] == "fail"


# -- Flagger ---------------------------------------------------------------------------------

PASS, REJECT = "pass", "reject"
# Per planted Flagger target, the status class each hook type must answer (README "Wiring Flagger").
HOOK_EXPECTED = {
    "podinfo": {"pre-rollout": PASS, "rollout": PASS, "confirm-traffic-increase": PASS,
                "confirm-promotion": PASS, "rollback": REJECT},
    "badinfo": {"pre-rollout": REJECT, "rollout": REJECT, "confirm-traffic-increase": REJECT,
                "confirm-promotion": REJECT, "rollback": PASS},
    FLAGGER_NEW: {"pre-rollout": PASS, "rollout": PASS, "confirm-traffic-increase": PASS,
                  "confirm-promotion": REJECT, "rollback": REJECT},
}
_HEALTHY = {"pre-rollout": PASS, "rollout": PASS, "confirm-traffic-increase": PASS,
            "confirm-promotion": PASS, "rollback": REJECT}
_CRITICAL = {"pre-rollout": REJECT, "rollout": REJECT, "confirm-traffic-increase": REJECT,
             "confirm-promotion": REJECT, "rollback": PASS}
_NON_CRITICAL = {**_CRITICAL, "rollback": REJECT}  # fails, but does not roll back
# The lab plants Flagger's `T` / `T-primary` series for the http config only; the trading and
# healthcare series are Argo-style versions (webhook/lab/rollouts.py). So the hooks of Canaries
# for those configs keep their metadata (config, risk/safety level, vars) and are pointed at
# each planted version with explicit selectors, as a user would to debug a Canary with curl.
HOOK_VERSIONS = {
    "trading": (TRADING_APP, {"healthy": _HEALTHY, "fills": _CRITICAL,
                              "slippage": _NON_CRITICAL, "missing": HOOK_EXPECTED[FLAGGER_NEW]}),
    "healthcare": (HEALTHCARE_APP, {"healthy": _HEALTHY, "adverse": _CRITICAL,
                                    "facility": _NON_CRITICAL,
                                    "missing": HOOK_EXPECTED[FLAGGER_NEW]}),
}
NO_DATA_TARGETS = (FLAGGER_NEW, "missing")
WEBHOOKS = [(f"{Path(p).parent.name}/{c['metadata']['name']}/{w['name']}", c, w)
            for p, c in objects_of("Canary") for w in c["spec"]["analysis"].get("webhooks", [])]


def planted_selectors(config: str, version: str) -> dict[str, str]:
    app = HOOK_VERSIONS[config][0]
    stable, versions = planted(config)

    def side(hash_: str) -> str:
        return f'app="{app}", namespace="{NAMESPACE}", rollouts_pod_template_hash="{hash_}"'

    return {"canary_selector": side(versions[version]), "stable_selector": side(stable)}


def hook_targets(config: str, canary: dict[str, Any], meta: dict[str, str]):
    """(target, payload name, expected answers, metadata to add) for one Canary's hooks."""
    if config not in HOOK_VERSIONS:
        for target, expected in HOOK_EXPECTED.items():
            yield target, target, expected, ({"target": target} if "target" in meta else {})
        return
    for version, expected in HOOK_VERSIONS[config][1].items():
        yield (version, canary["metadata"]["name"], expected,
               {**planted_selectors(config, version), **PINNED_VARS.get(config, {})})


def config_vars(config) -> set[str]:
    """Query vars a config reads: its vars, its queries' placeholders, its level and gate vars."""
    known = set(config.vars) | {"namespace", "name", "target"}
    for metric in config.metrics:
        for query in metric.queries().values():
            known |= placeholders(query)
    if config.levels is not None:
        known.add(config.levels.var)
    if config.gates.market_hours is not None:
        known.add(config.gates.risk_var)
    if config.gates.market_hours is not None or (config.levels is not None and any(
            level.promotion_needs_approval for level in config.levels.values.values())):
        known.add("approved_revision")
    return known


# The Canary's checksum in every hook of these tests: one revision throughout (a hook with
# another checksum for the same canary is a new revision, judged from when it arrived).
REVISION = "5d8f7b6c4"


def post_hook(client, kind: str, name: str, metadata: dict[str, str],
              checksum: str = REVISION):
    payload = {"name": name, "namespace": NAMESPACE, "phase": "Progressing",
               "checksum": checksum, "metadata": metadata}
    # Flagger sends only Content-Type: no token, no other header.
    r = client.post(f"/v1/hooks/{kind}", data=json.dumps(payload),
                    headers={"Content-Type": "application/json"})
    text = r.get_data(as_text=True)
    assert r.status_code < 500 and r.status_code not in (400, 401, 404), text
    assert text.count("\n") <= 1, "one line: it becomes the Kubernetes Event's reason"
    return r.status_code, text


@pytest.mark.parametrize(("label", "canary", "webhook"), WEBHOOKS, ids=[w[0] for w in WEBHOOKS])
def test_flagger_webhooks_answer_per_contract(judge, lab, label, canary, webhook):
    kind = webhook.get("type") or "rollout"
    assert kind in HOOK_TYPES
    # The service knows the hook type from the path only (Flagger does not send it).
    assert check_url(webhook["url"]) == f"/v1/hooks/{kind}"
    assert re.fullmatch(r"\d+s", webhook.get("timeout", "")) and \
        int(webhook["timeout"][:-1]) <= 10, "set a timeout of at most 10s"
    meta = dict(webhook.get("metadata") or {})
    registry = judge.extensions["canary_judge"].registry
    config = registry.get(meta.get("config", "http"))
    assert config is not None, f"unknown config {meta.get('config')}"
    known_vars = config_vars(config)
    unknown = set(meta) - _METADATA_KEYS - known_vars
    assert not unknown, f"metadata keys {unknown} are neither settings nor vars of the config"
    meta.update(planted_end(lab, meta))
    client = judge.test_client()
    explicit = "canary_selector" in meta
    for target, name, expected, extra in hook_targets(config.name, canary, meta):
        payload: dict[str, Any] = {"name": name, "namespace": NAMESPACE,
                                   "phase": "Progressing", "checksum": "5d8f7b6c4"}
        if meta or extra:
            payload["metadata"] = {**meta, **extra}
        if kind == "event":
            # Flagger sends an event's fields inside metadata, merged with the hook's own.
            payload["metadata"] = {"eventMessage": "Advance podinfo.shop canary weight 10",
                                   "eventType": "Normal",
                                   "timestamp": str(int(time.time() * 1000)), **meta}
        # Flagger sends only Content-Type: no token, no other header.
        r = client.post(f"/v1/hooks/{kind}", data=json.dumps(payload),
                        headers={"Content-Type": "application/json"})
        text = r.get_data(as_text=True)
        assert r.status_code < 500 and r.status_code not in (400, 401, 404), (target, text)
        assert text.count("\n") <= 1, "one line: it becomes the Kubernetes Event's reason"
        if kind in ("post-rollout", "event"):
            assert r.status_code == 200
            continue
        want = expected.get(kind)
        if target in NO_DATA_TARGETS and meta.get("inconclusive") == "fail" and kind in (
                "pre-rollout", "rollout", "confirm-traffic-increase"):
            want = REJECT  # too little data fails the check when the Canary asks for that
        if want is None or (explicit and "canary_selector" not in extra):
            continue  # confirm-rollout: gates depend on the clock; explicit selectors
        if want == PASS:
            assert r.status_code in (200, 201, 202), (target, text)
        else:
            assert 400 <= r.status_code < 500, (target, text)


# confirm-rollout evaluates the gates at `end` when the hook's metadata sets one: two instants
# whose answer is known (tests/test_market_hours.py covers the calendar itself).
GATE_INSTANTS = {
    "2026-03-10T19:45:00Z": "open",  # Tuesday 15:45 in New York (EDT since 03-08)
    "2026-03-14T15:00:00Z": "closed",  # Saturday
}
START_ALLOWED = {"low": {"open": PASS, "closed": PASS},
                 "medium": {"open": REJECT, "closed": PASS},
                 "high": {"open": REJECT, "closed": PASS},
                 "critical": {"open": REJECT, "closed": REJECT}}  # without approval
GATED_HOOKS = [w for w in WEBHOOKS if (w[2].get("metadata") or {}).get("config") == "trading"
               and w[2].get("type") in ("confirm-rollout", "confirm-promotion")]


@pytest.mark.parametrize(("label", "canary", "webhook"), GATED_HOOKS,
                         ids=[w[0] for w in GATED_HOOKS])
def test_flagger_market_hours_gate(judge, lab, label, canary, webhook):
    """The trading Canary's gated hooks with its own risk tolerance, and the approval path."""
    kind = webhook["type"]
    meta = dict(webhook["metadata"])
    assert meta["risk_tolerance"] == "medium", "the examples document risk tolerance medium"
    assert "approved_revision" not in meta, "approvals are per revision, never in the manifest"
    client = judge.test_client()
    name = canary["metadata"]["name"]
    service = judge.extensions["canary_judge"]

    def at(instant: str, hook_meta: dict[str, str], checksum: str = REVISION):
        """The hook's answer with the server's clock at `instant`: a hook's gates read it,
        and its metadata cannot set it."""
        service.clock = lambda: datetime.fromisoformat(instant).timestamp()
        try:
            return post_hook(client, kind, name, hook_meta, checksum)
        finally:
            service.clock = time.time

    if kind == "confirm-rollout":
        # Nothing is queried: the gate alone decides.
        for risk, answers in START_ALLOWED.items():
            for instant, state in GATE_INSTANTS.items():
                status, text = at(instant, {**meta, "risk_tolerance": risk})
                assert (status == 200) == (answers[state] == PASS), (risk, instant, text)
                if risk in ("medium", "high") and state == "open":
                    assert status == 412 and "New York session open" in text, text
        approved = {**meta, "risk_tolerance": "critical", "approved_revision": "rev-7"}
        closed, opened = sorted(GATE_INSTANTS, key=lambda t: GATE_INSTANTS[t])
        assert at(closed, approved, "rev-7")[0] == 200
        assert at(opened, approved, "rev-7")[0] == 412
        assert at(closed, approved, "rev-8")[0] == 412
        # a past end in the metadata (a closed Saturday) does not move the gate's clock
        assert at(opened, {**meta, "risk_tolerance": "medium", "end": closed})[0] == 412
        return
    # confirm-promotion judges the metrics and the gate now: a healthy canary is promoted, or
    # held by the market-hours gate alone (412 naming it), whatever the hour of the test run.
    meta.update(planted_end(lab, meta), **planted_selectors("trading", "healthy"))
    for risk in ("medium", "high"):
        for instant, state in GATE_INSTANTS.items():
            status, text = at(instant, {**meta, "risk_tolerance": risk})
            if state == "open":
                assert status == 412 and "market_hours" in text and "session open" in text, text
            else:
                assert status == 200 and text.startswith("promote"), text
    critical = {**meta, "risk_tolerance": "critical"}
    status, text = post_hook(client, kind, name, critical, REVISION)
    assert status == 412 and "approved_revision" in text, text
    status, text = post_hook(client, kind, name, {**critical, "approved_revision": "rev-6"},
                             REVISION)
    assert status == 412 and "approved_revision" in text, text
    status, text = post_hook(client, kind, name, {**critical, "approved_revision": REVISION},
                             REVISION)
    assert status == 200 or (status == 412 and "session open" in text), text


APPROVAL_HOOKS = [w for w in WEBHOOKS if (w[2].get("metadata") or {}).get("config")
                  == "healthcare" and w[2].get("type") == "confirm-promotion"]


@pytest.mark.parametrize(("label", "canary", "webhook"), APPROVAL_HOOKS,
                         ids=[w[0] for w in APPROVAL_HOOKS])
def test_flagger_safety_level_critical_needs_approval(judge, lab, label, canary, webhook):
    meta = dict(webhook["metadata"])
    assert meta["safety_level"] == "high", "the examples document the default, high"
    assert "approved_revision" not in meta, "approvals are per revision, never in the manifest"
    meta.update(planted_end(lab, meta), **planted_selectors("healthcare", "healthy"))
    client = judge.test_client()
    name = canary["metadata"]["name"]
    critical = {**meta, "safety_level": "critical"}
    for approval in ({}, {"approved_revision": "ehr-6"}):  # none, or the previous revision's
        status, text = post_hook(client, "confirm-promotion", name, {**critical, **approval},
                                 REVISION)
        assert status == 412 and f"approve revision {REVISION}" in text, text
    status, text = post_hook(client, "confirm-promotion", name,
                             {**critical, "approved_revision": REVISION}, REVISION)
    assert status == 200, text
    # An approval is no waiver: the adverse event still rolls the approved revision back.
    adverse = {**critical, **planted_selectors("healthcare", "adverse"),
               "approved_revision": REVISION}
    assert post_hook(client, "confirm-promotion", name, adverse, REVISION)[0] == 412
    status, text = post_hook(client, "rollback", name, adverse, REVISION)
    assert status == 200 and "adverse_events" in text, text
