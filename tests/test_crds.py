"""Every YAML file parses, and every Argo Rollouts and Flagger object in `manifests/` and
`analysis_templates/` validates against the upstream CRD schemas vendored under tests/data/crds
(openAPIV3Schema, made strict the way the API server's field validation is)."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from typing import Any

import jsonschema
import pytest
from k8s_files import (
    CRD_DIR,
    MANIFESTS,
    ROOT,
    TEMPLATES,
    is_config_file,
    k8s_objects,
    load_docs,
    objects_of,
    yaml_files,
)

from webhook.lab.rollouts import (
    FLAGGER_TARGETS,
)

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


def test_before_argo_1_8_the_templates_streak_is_refused_or_dropped():
    """docs/kubernetes.md: on an Argo Rollouts CRD from before 1.8 (its metric schema has no
    `consecutiveSuccessLimit`; v1.7.2's, structural, keeps no unknown fields there) kubectl's
    strict field validation refuses the shipped templates naming the field, and with
    --validate=warn the API server drops it and stores an object that validates."""
    schema = copy.deepcopy(_template_crd_schema())
    metric = schema["properties"]["spec"]["properties"]["metrics"]["items"]
    assert metric["properties"].pop("consecutiveSuccessLimit")
    old = jsonschema.Draft7Validator(_strict(schema))
    templates = objects_of("AnalysisTemplate") + objects_of("ClusterAnalysisTemplate")
    assert templates
    for path, doc in templates:
        doc = copy.deepcopy(doc)
        refused = [e.message for e in old.iter_errors(doc)]
        assert any("consecutiveSuccessLimit" in m for m in refused), path
        for m in doc["spec"]["metrics"]:
            m.pop("consecutiveSuccessLimit", None)
        assert not list(old.iter_errors(doc)), path


def _template_crd_schema() -> dict[str, Any]:
    (crd,) = load_docs(CRD_DIR / "argo-rollouts" / "analysis-template-crd.yaml")
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]
