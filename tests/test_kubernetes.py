"""The install manifests (`manifests/`, kustomize): the analysis configs they ship, the
Deployment's hardening, the ServiceMonitor, and the kustomize build (when kubectl is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from k8s_files import (
    CONFIGS,
    KUSTOMIZATION,
    LOADER,
    MANIFESTS,
    ROOT,
    base_objects,
    configmap_files,
    container,
    env_literals,
    load_docs,
)

from webhook.configs import load_registry, parse_config

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


def test_the_shared_step_store_fits_the_tmp_volume_with_room_for_the_rest():
    """The workers' shared step store lives on the /tmp emptyDir beside the metrics files and
    gunicorn's heartbeats; a volume past its sizeLimit gets the pod evicted."""
    deployment = base_objects()["Deployment"]
    pod, c = deployment["spec"]["template"]["spec"], container(deployment)
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])["emptyDir"]
    limit = volume["sizeLimit"]
    assert limit.endswith("Mi")
    store = float(env_literals().get("CANARY_JUDGE_SHARED_CACHE_MB", "16"))
    assert 0 < store <= int(limit.removesuffix("Mi")) / 2
    # medium Memory: the store counts against the memory limit, well within it
    memory = c["resources"]["limits"]["memory"]
    assert memory.endswith("Mi") and store <= int(memory.removesuffix("Mi")) / 16


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
    assert ("PrometheusRule" in kinds) == directory.endswith("with-servicemonitor")
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
