"""Kubernetes artifacts: `manifests/` (kustomize) and `analysis_templates/` (Argo, Flagger).

What is checked, and against what:
- every YAML parses; every Argo Rollouts and Flagger object validates against the upstream CRD
  schemas (openAPIV3Schema, made strict the way the API server's field validation is);
- the kustomize build (when kubectl is installed), the Deployment's hardening, and that the
  manifests agree with the Dockerfile, the CLI, the Flask routes and `Settings`;
- each AnalysisTemplate's web request, resolved the way Argo resolves it from the example
  Rollouts, is sent to the service against the lab Prometheus, and its jsonPath and conditions
  are evaluated with Argo's typing rules; each Flagger webhook is called as Flagger calls it.

A new config is new files under `analysis_templates/<config>/` and `manifests/configs/`, and
these tests pick them up. Only the expectation tables name configs: which planted versions a
config's templates and hooks are sent (ARGO_PLANTED, HOOK_VERSIONS), the answers expected for
them, and the gates of the trading and healthcare profiles (market hours, approval).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from argo_semantics import ARG as _ARG
from argo_semantics import CONDITION as _CONDITION
from argo_semantics import ArgoError, argo_phase, eval_condition, resolve_args
from argo_semantics import kind as _kind

from webhook.api.hooks import _METADATA_KEYS, HOOK_TYPES
from webhook.app import create_app
from webhook.cli import build_parser
from webhook.configs import load_registry, parse_config
from webhook.lab.rollouts import (
    ARGO_MISSING,
    ARGO_STABLE,
    FLAGGER_NEW,
    FLAGGER_TARGETS,
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
from webhook.settings import Settings, load_settings
from webhook.sources.prometheus.promql import placeholders

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
TEMPLATES = ROOT / "analysis_templates"
CONFIGS = MANIFESTS / "configs"
# Verbatim copies of the upstream CRDs; their README names repository, version, path and hash.
CRD_DIR = Path(__file__).resolve().parent / "data" / "crds"
KUSTOMIZATION = "kustomization.yaml"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
API_TOKEN = "test-token-for-argo"
# The lab plants data up to FUTURE_SECONDS after the session's anchor; a "now" window beyond
# that would judge missing data, so requests get an explicit end inside it when the run is late.


# -- loading ---------------------------------------------------------------------------------

def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_docs(path: Path) -> list[Any]:
    return [d for d in yaml.load_all(path.read_text(), Loader=LOADER) if d is not None]


def is_config_file(path: Path) -> bool:
    """An analysis config (manifests/configs/*.yaml), not a Kubernetes object."""
    return path.parent == CONFIGS and path.name != KUSTOMIZATION


def k8s_objects(root: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in yaml_files(root):
        if is_config_file(path):
            continue
        for doc in load_docs(path):
            out.append((str(path.relative_to(ROOT)), doc))
    return out


def objects_of(kind: str, root: Path = TEMPLATES) -> list[tuple[str, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_objects(root) if d.get("kind") == kind]


def base_objects() -> dict[str, dict[str, Any]]:
    """The base's resources by kind (one object per kind), read without kustomize."""
    kust = load_docs(MANIFESTS / "base" / KUSTOMIZATION)[0]
    out: dict[str, dict[str, Any]] = {}
    for name in kust["resources"]:
        for doc in load_docs(MANIFESTS / "base" / name):
            assert doc["kind"] not in out, f"two {doc['kind']} objects in the base"
            out[doc["kind"]] = doc
    return out


def generator(kust_path: Path, name: str) -> dict[str, Any]:
    kust = load_docs(kust_path)[0]
    return next(g for g in kust.get("configMapGenerator", []) if g["name"] == name)


def env_literals() -> dict[str, str]:
    lit = generator(MANIFESTS / "base" / KUSTOMIZATION, "canary-judge-env")["literals"]
    return dict(item.split("=", 1) for item in lit)


def configmap_files() -> dict[str, str]:
    """The data of ConfigMap canary-judge-configs, as kustomize generates it: key = file name."""
    files = generator(CONFIGS / KUSTOMIZATION, "canary-judge-configs").get("files") or []
    return {Path(f).name: (CONFIGS / f).read_text() for f in files}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# -- Argo's semantics (tests/argo_semantics.py): the evaluator itself ----------------------

@pytest.mark.parametrize(("result", "condition", "expected"), [
    ("pass", 'result == "pass"', True),
    ("inconclusive", 'result == "fail"', False),
    (True, "result == true", True),
    (95.0, "result >= 90", True),
    (12, "result < 50", True),
])
def test_condition_evaluator_follows_argo_typing(result, condition, expected):
    assert eval_condition(result, condition) is expected


@pytest.mark.parametrize(("result", "condition"), [
    (True, 'result == "true"'), ("95", "result >= 90"), ("pass", "result == true"),
    (None, 'result == "pass"'),
])
def test_condition_evaluator_rejects_type_mismatches(result, condition):
    with pytest.raises(ArgoError):
        eval_condition(result, condition)


# -- YAML and upstream CRD schemas -----------------------------------------------------------

ALL_YAML = yaml_files(MANIFESTS) + yaml_files(TEMPLATES)


def test_there_is_something_to_check():
    assert objects_of("AnalysisTemplate") and objects_of("ClusterAnalysisTemplate")
    assert objects_of("Rollout") and objects_of("Canary")
    assert [p for p in ALL_YAML if is_config_file(p)]
    assert {"podinfo", "badinfo"} <= set(FLAGGER_TARGETS)  # planted, see HOOK_EXPECTED


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path):
    docs = load_docs(path)
    assert docs, "empty file"
    if is_config_file(path):
        return  # test_manifest_configs_are_valid_analysis_configs
    for doc in docs:
        assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), doc
        if doc["kind"] not in ("Kustomization", "Component"):
            assert doc.get("metadata", {}).get("name"), "metadata.name missing"


def _strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it with strict field validation (kubectl's
    default): unknown fields are errors, int-or-string takes both, nullable allows null."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    out = {k: _strict(v) if k in ("items", "anyOf", "allOf", "oneOf", "not") else v
           for k, v in schema.items() if k not in ("properties", "additionalProperties")}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if schema.get("x-kubernetes-embedded-resource"):
            for key in ("apiVersion", "kind", "metadata"):
                out["properties"].setdefault(key, {})
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(schema["additionalProperties"])
    elif "additionalProperties" in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    elif "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(CRD_DIR.glob("*/*.yaml")):
        for doc in load_docs(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                jsonschema.Draft7Validator.check_schema(schema)
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def test_vendored_crds_are_the_upstream_files():
    """The schemas are only as good as their provenance: each file must be the upstream file
    its README row names (same SHA-256), and every file there must have a row."""
    rows = re.findall(r"^\| `([^`]+\.yaml)` \|.*\| `([0-9a-f]{64})` \|$",
                      (CRD_DIR / "README.md").read_text(), re.M)
    files = sorted(str(p.relative_to(CRD_DIR)) for p in CRD_DIR.glob("*/*.yaml"))
    assert files and sorted(name for name, _ in rows) == files
    for name, digest in rows:
        assert hashlib.sha256((CRD_DIR / name).read_bytes()).hexdigest() == digest, name


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = crd_validators().get((doc["apiVersion"], doc["kind"]))
    assert validator is not None, f"no upstream CRD for {doc['apiVersion']} {doc['kind']}"
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc),
                            key=lambda e: [str(p) for p in e.absolute_path])]


CRD_GROUPS = ("argoproj.io/", "flagger.app/")
CRD_OBJECTS = [(p, d) for p, d in k8s_objects(TEMPLATES) + k8s_objects(MANIFESTS)
               if str(d.get("apiVersion", "")).startswith(CRD_GROUPS)]


@pytest.mark.parametrize(("path", "doc"), CRD_OBJECTS,
                         ids=[f"{p}:{d['kind']}/{d['metadata']['name']}" for p, d in CRD_OBJECTS])
def test_argo_and_flagger_objects_validate_against_upstream_crds(path, doc):
    assert crd_errors(doc) == []


def _first(kind: str) -> dict[str, Any]:
    return copy.deepcopy(objects_of(kind)[0][1])


def test_crd_validation_catches_mistakes():
    """The strict schemas must reject what the API server would reject."""
    template = _first("AnalysisTemplate")
    assert crd_errors(template) == []
    web = template["spec"]["metrics"][0]["provider"]["web"]
    web["jsonpath"] = web.pop("jsonPath")  # misspelled field
    assert any("jsonpath" in e for e in crd_errors(template))
    template = _first("AnalysisTemplate")
    template["spec"]["metrics"][0]["provider"]["web"]["timeoutSeconds"] = "10s"
    assert any("timeoutSeconds" in e for e in crd_errors(template))
    template = _first("AnalysisTemplate")
    template["spec"]["metrics"][0]["count"] = 2.5  # int-or-string takes neither
    assert crd_errors(template)
    canary = _first("Canary")
    canary["spec"]["analysis"]["webhooks"][0]["type"] = "roll-back"
    assert any("roll-back" in e for e in crd_errors(canary))
    canary = _first("Canary")
    canary["spec"]["analysis"]["webhooks"][0]["metadata"] = {"alpha": 0.05}  # not a string
    assert crd_errors(canary)
    rollout = _first("Rollout")
    rollout["spec"]["strategy"]["canary"]["analysis"]["args"][0]["valueFrom"] = {
        "podTemplateHash": "Latest"}
    assert any("podTemplateHash" in e for e in crd_errors(rollout))


# -- Argo: templates, Rollouts, and the requests they make -----------------------------------

def template_index() -> dict[tuple[str, str], dict[str, Any]]:
    index = {}
    for kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        for _, doc in objects_of(kind):
            key = (kind, doc["metadata"]["name"])
            assert key not in index, f"duplicate {key}"
            index[key] = doc
    return index


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


def web_metrics() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{t['kind']}/{t['metadata']['name']}/{m['name']}", m)
            for t in template_index().values() for m in t["spec"]["metrics"]
            if "web" in m["provider"]]


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
                                                 pinned) if "web" in m["provider"]]
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
                                             stable_hash) if "web" in m["provider"]]
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
                     if "web" in m["provider"]]
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


def post_hook(client, kind: str, name: str, metadata: dict[str, str],
              checksum: str = "5d8f7b6c4"):
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
            payload.update(eventMessage="Advance podinfo.shop canary weight 10",
                           eventType="Normal", timestamp=str(int(time.time() * 1000)))
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
    if kind == "confirm-rollout":
        # Nothing is queried: the gate alone decides, at the instant given as `end`.
        for risk, answers in START_ALLOWED.items():
            for instant, state in GATE_INSTANTS.items():
                status, text = post_hook(client, kind, name,
                                         {**meta, "risk_tolerance": risk, "end": instant})
                assert (status == 200) == (answers[state] == PASS), (risk, instant, text)
                if risk in ("medium", "high") and state == "open":
                    assert status == 412 and "New York session open" in text, text
        approved = {**meta, "risk_tolerance": "critical", "approved_revision": "rev-7"}
        closed, opened = sorted(GATE_INSTANTS, key=lambda t: GATE_INSTANTS[t])
        assert post_hook(client, kind, name, {**approved, "end": closed}, "rev-7")[0] == 200
        assert post_hook(client, kind, name, {**approved, "end": opened}, "rev-7")[0] == 412
        assert post_hook(client, kind, name, {**approved, "end": closed}, "rev-8")[0] == 412
        return
    # confirm-promotion judges the metrics and the gate now: a healthy canary is promoted, or
    # held by the market-hours gate alone (412 naming it), whatever the hour of the test run.
    meta.update(planted_end(lab, meta), **planted_selectors("trading", "healthy"))
    for risk in ("medium", "high"):
        status, text = post_hook(client, kind, name, {**meta, "risk_tolerance": risk})
        assert status == 200 or (status == 412 and "market_hours" in text
                                 and "session open" in text), text
        assert status == 412 or text.startswith("promote"), text
    critical = {**meta, "risk_tolerance": "critical"}
    status, text = post_hook(client, kind, name, critical, "rev-7")
    assert status == 412 and "approved_revision" in text, text
    status, text = post_hook(client, kind, name, {**critical, "approved_revision": "rev-6"},
                             "rev-7")
    assert status == 412 and "approved_revision" in text, text
    status, text = post_hook(client, kind, name, {**critical, "approved_revision": "rev-7"},
                             "rev-7")
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
                                 "ehr-7")
        assert status == 412 and "approve revision ehr-7" in text, text
    status, text = post_hook(client, "confirm-promotion", name,
                             {**critical, "approved_revision": "ehr-7"}, "ehr-7")
    assert status == 200, text
    # An approval is no waiver: the adverse event still rolls the approved revision back.
    adverse = {**critical, **planted_selectors("healthcare", "adverse"),
               "approved_revision": "ehr-7"}
    assert post_hook(client, "confirm-promotion", name, adverse, "ehr-7")[0] == 412
    status, text = post_hook(client, "rollback", name, adverse, "ehr-7")
    assert status == 200 and "adverse_events" in text, text


# -- manifests -------------------------------------------------------------------------------

def test_manifest_configs_are_valid_analysis_configs():
    on_disk = {p.name for p in CONFIGS.iterdir() if p.suffix in (".yaml", ".yml")} - \
        {KUSTOMIZATION}
    listed = set(configmap_files())
    assert on_disk == listed, "every config file must be listed in configs/kustomization.yaml"
    for name, text in configmap_files().items():
        config = parse_config(yaml.safe_load(text), name)
        assert config.name == Path(name).stem, "name the file after the config"
    assert not load_registry(None).errors


def assert_hardened(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert not sc.get("privileged")
    assert sc.get("runAsUser", pod["securityContext"].get("runAsUser", 0)) != 0
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][bound])
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]], "gunicorn needs a writable /tmp"
    assert deployment["spec"]["replicas"] >= 2


def test_base_manifests_fit_together():
    objs = base_objects()
    assert {"Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "NetworkPolicy"} <= set(objs)
    assert "Secret" not in objs, "the example Secret must not be applied by the base"
    deployment = objs["Deployment"]
    assert_hardened(deployment)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(objs["Service"]["spec"]["selector"])
    assert selects(objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    assert selects(objs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"])
    (port,) = objs["Service"]["spec"]["ports"]
    assert port["port"] == 80 and port["name"] == "http" and port["targetPort"] in ports
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == \
        objs["ServiceAccount"]["metadata"]["name"]
    # Env from the generated ConfigMap, tokens from the (optional) Secret of the example.
    assert [e["configMapRef"]["name"] for e in c["envFrom"]] == ["canary-judge-env"]
    secret = load_docs(MANIFESTS / "secret.example.yaml")[0]
    for env in c["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["optional"] is True
            assert ref["key"] in secret["stringData"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == env["CANARY_JUDGE_CONFIG_DIR"])
    assert volumes[mount["name"]]["configMap"]["name"] == "canary-judge-configs"
    # NetworkPolicy: the controllers in, Prometheus and DNS out.
    policy = objs["NetworkPolicy"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    admitted = {v for rule in policy["ingress"] for peer in rule["from"]
                for expr in peer["namespaceSelector"].get("matchExpressions", [])
                for v in expr["values"]}
    assert {"argo-rollouts", "flagger-system"} <= admitted
    for rule in policy["ingress"]:
        assert all(p["port"] in ports or p["port"] in ports.values() for p in rule["ports"])
    egress = {(p["port"], p.get("protocol", "TCP")) for r in policy["egress"] for p in r["ports"]}
    assert {(53, "UDP"), (53, "TCP")} <= egress
    prom_port = urlsplit(env_literals()["CANARY_JUDGE_PROMETHEUS_URL"]).port
    assert (prom_port, "TCP") in egress, "egress must reach CANARY_JUDGE_PROMETHEUS_URL"


def test_servicemonitor_component_scrapes_the_service():
    comp = MANIFESTS / "components" / "servicemonitor"
    (monitor,) = [d for d in load_docs(comp / "servicemonitor.yaml")]
    service = base_objects()["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert all(e["port"] in port_names and e["path"] == "/metrics"
               for e in monitor["spec"]["endpoints"])


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed: kustomize build not run")
@pytest.mark.parametrize("directory", ["manifests", "manifests/overlays/with-servicemonitor"])
def test_kustomize_build(directory):
    run = subprocess.run([KUBECTL, "kustomize", str(ROOT / directory)],  # type: ignore[list-item]
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    docs = [d for d in yaml.load_all(run.stdout, Loader=LOADER) if d]
    kinds = [d["kind"] for d in docs]
    assert "Secret" not in kinds
    assert {"Namespace", "ServiceAccount", "Deployment", "Service", "ConfigMap",
            "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= set(kinds)
    assert ("ServiceMonitor" in kinds) == directory.endswith("with-servicemonitor")
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "canary-judge", doc["kind"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert_hardened(deployment)
    # Generated (hash-suffixed) ConfigMap names are what the Deployment refers to.
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    c = container(deployment)
    assert {e["configMapRef"]["name"] for e in c["envFrom"]} <= set(maps)
    (configs,) = [v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"]
                  ["volumes"] if "configMap" in v]
    assert maps[configs]["data"] == configmap_files()
    env_map = next(m for n, m in maps.items() if n.startswith("canary-judge-env-"))
    assert env_map["data"] == env_literals()


def dockerfile() -> dict[str, Any]:
    """The runtime stage's ENTRYPOINT, CMD, EXPOSE, USER, ENV and HEALTHCHECK."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stage: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage = {"ENV": {}}
        elif word in ("ENTRYPOINT", "CMD"):
            stage[word] = json.loads(rest)
        elif word == "ENV":
            stage["ENV"].update(item.split("=", 1) for item in shlex.split(rest))
        elif word in ("EXPOSE", "USER", "HEALTHCHECK"):
            stage[word] = rest.strip()
    return stage


def gunicorn_knobs() -> set[str]:
    source = (ROOT / "webhook" / "gunicorn_conf.py").read_text()
    return set(re.findall(r"os\.environ\.get\(\"(CANARY_JUDGE_\w+)\"", source))


def test_dockerfile_and_deployment_agree_with_the_service(monkeypatch):
    image = dockerfile()
    deployment = base_objects()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    # What the container runs: the Deployment's command/args over the image's ENTRYPOINT/CMD.
    command = c.get("command") or image["ENTRYPOINT"]
    args = c["args"] if "args" in c else ([] if "command" in c else image["CMD"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert image["ENTRYPOINT"] == ["canary-judge"] and command == image["ENTRYPOINT"]
    assert scripts["canary-judge"] == "webhook.cli:main"
    served = build_parser().parse_args([*command[1:], *args])
    assert served.command == "serve" and served.host == "0.0.0.0"
    assert build_parser().parse_args(image["CMD"]).port == served.port
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert served.port == int(image["EXPOSE"].split("/")[0]) == ports["http"]
    # Probes hit real GET routes on the served port.
    app = create_app(load_settings(prometheus_url="http://127.0.0.1:9", config_dir=None))
    adapter = app.url_map.bind("localhost")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        adapter.match(get["path"], method="GET")
        assert ports.get(get["port"], get["port"]) == served.port
    health = re.search(r"http://[\w.]+:(\d+)(/\w+)", image["HEALTHCHECK"])
    assert int(health.group(1)) == served.port
    adapter.match(health.group(2), method="GET")
    # The user the image runs as.
    uid, _, gid = image["USER"].partition(":")
    assert pod["securityContext"]["runAsUser"] == int(uid) == c["securityContext"]["runAsUser"]
    assert pod["securityContext"]["runAsGroup"] == int(gid or uid)
    # Paths the image and the Deployment share.
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["CANARY_JUDGE_CONFIG_DIR"] == image["ENV"]["CANARY_JUDGE_CONFIG_DIR"]
    assert env["PROMETHEUS_MULTIPROC_DIR"] == image["ENV"]["PROMETHEUS_MULTIPROC_DIR"]
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    # Every CANARY_JUDGE_* name is something the service reads.
    known = {f"CANARY_JUDGE_{name.upper()}" for name in Settings.model_fields} | gunicorn_knobs()
    assert {"CANARY_JUDGE_WORKERS", "CANARY_JUDGE_THREADS",
            "CANARY_JUDGE_GRACEFUL_TIMEOUT"} <= gunicorn_knobs()
    literals = env_literals()
    names = set(env) | set(literals) | set(image["ENV"])
    assert {n for n in names if n.startswith("CANARY_JUDGE_")} <= known
    # ... and the values parse the way the service parses them.
    for name, value in {**literals, **{k: v for k, v in env.items() if v}}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    for knob in gunicorn_knobs() & set(literals):
        if knob.endswith(("WORKERS", "THREADS", "TIMEOUT")):
            assert int(literals[knob]) > 0
    # Timing: Prometheus answers inside the probe's and the callers' timeouts, gunicorn's
    # graceful shutdown inside the pod's grace period.
    assert settings.prometheus_timeout_seconds < c["readinessProbe"]["timeoutSeconds"]
    for _, metric in web_metrics():
        assert settings.prometheus_timeout_seconds < metric["provider"]["web"]["timeoutSeconds"]
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0
    graceful = int(literals.get("CANARY_JUDGE_GRACEFUL_TIMEOUT", "20"))
    assert pod["terminationGracePeriodSeconds"] > graceful + sleep
