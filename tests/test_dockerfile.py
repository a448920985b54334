"""The Dockerfile and the Deployment agree with the service: entrypoint, port, user, health
check, and every environment variable is one the service (Settings, gunicorn) reads."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from typing import Any

from k8s_files import (
    ROOT,
    base_objects,
    container,
    env_literals,
    web_metrics,
)

from webhook.app import create_app
from webhook.cli import build_parser
from webhook.settings import Settings, load_settings


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
    probes = app.test_client()
    for probe, path in (("readinessProbe", "/readyz?source=once"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        adapter.match(get["path"].partition("?")[0], method="GET")
        assert probes.get(get["path"]).status_code != 400  # its query is understood
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
    assert settings.readiness_deadline_seconds < c["readinessProbe"]["timeoutSeconds"]
    for _, metric in web_metrics():
        assert settings.prometheus_timeout_seconds < metric["provider"]["web"]["timeoutSeconds"]
        assert settings.analysis_deadline_seconds < metric["provider"]["web"]["timeoutSeconds"]
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0
    graceful = int(literals.get("CANARY_JUDGE_GRACEFUL_TIMEOUT", "20"))
    assert pod["terminationGracePeriodSeconds"] > graceful + sleep
