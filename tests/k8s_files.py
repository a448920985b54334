"""Loading the repository's Kubernetes files (`manifests/`, `analysis_templates/`), shared by
the CRD, end-to-end template, manifest and Dockerfile tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
TEMPLATES = ROOT / "analysis_templates"
CONFIGS = MANIFESTS / "configs"
# Verbatim copies of the upstream CRDs; their README names repository, version, path and hash.
CRD_DIR = Path(__file__).resolve().parent / "data" / "crds"
KUSTOMIZATION = "kustomization.yaml"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
API_TOKEN = "test-token-for-argo"

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


def template_index() -> dict[tuple[str, str], dict[str, Any]]:
    index = {}
    for kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        for _, doc in objects_of(kind):
            key = (kind, doc["metadata"]["name"])
            assert key not in index, f"duplicate {key}"
            index[key] = doc
    return index


def web_metrics() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{t['kind']}/{t['metadata']['name']}/{m['name']}", m)
            for t in template_index().values() for m in t["spec"]["metrics"]
            if "web" in m["provider"]]
