"""The Grafana dashboard: every query runs on a real Prometheus and names only real metrics.

A dashboard whose query names a metric nobody exports shows "No data" forever, and nobody
notices until the night it is needed; so each expression is sent to the lab Prometheus with
its template variables filled in, and its metric names are checked against what the service
exports (its /metrics) and what the `http` config queries.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from webhook.configs import load_registry
from webhook.lab.rollouts import ARGO_APP, ARGO_STABLE, NAMESPACE, argo_hash
from webhook.sources.prometheus import promql

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = ROOT / "manifests" / "components" / "grafana-dashboard"
DASHBOARD = COMPONENT / "canary-judge.json"
# Values the lab's planted Argo rollout answers to.
VARIABLES = {
    "__rate_interval": "2m", "__interval": "1m", "__range": "1h", "config": ".+",
    "namespace": NAMESPACE, "app": ARGO_APP, "canary": argo_hash("errors3x"),
    "stable": ARGO_STABLE,
}
# A metric name: an identifier followed by matchers, a range, or nothing (a bare selector).
SELECTOR_NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[|$)")


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"unknown template variable ${name} in {expr}"
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def expressions(dash: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target and query variable."""
    out = [(p["title"], t["expr"]) for p in panels(dash) for t in p["targets"]]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"]["query"])
            assert match, var["query"]
            out.append((f"variable {var['name']}", match.group(1)))
    return out


def exported_names(client) -> set[str]:
    """Sample names the service's /metrics can carry, labelled families included."""
    names = set()
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return {n for n in names if n.startswith("canary_judge_")}


def http_config_names() -> set[str]:
    config = load_registry(None).configs["http"]
    names = set()
    for metric in config.metrics:
        for template in metric.queries().values():
            expr = promql.render(template, config.vars,
                                 {"selector": 'app="x"', "step": "1m"}, field="test")
            names.update(SELECTOR_NAME.findall(expr))
    return names


def test_dashboard_shape():
    dash = dashboard()
    assert dash["uid"] == "canary-judge" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace", "app", "canary", "stable", "config"} <= variables
    for panel in panels(dash):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
    titles = " ".join(p["title"] for p in panels(dash)).lower()
    for topic in ("verdict", "config and caller", "latency", "upstream errors by kind",
                  "hook answers by type and code", "error ratio", "p95", "p99"):
        assert topic in titles, topic


def test_every_expression_parses_on_prometheus(lab):
    for title, expr in expressions(dashboard()):
        r = requests.get(f"{lab.url}/api/v1/query",
                         params={"query": substitute(expr), "time": lab.anchor - 300},
                         timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "success", (title, r.text)


def test_expressions_name_only_exported_or_http_config_metrics(client):
    client.get("/v1/analyze/http?canary.x=1&stable.x=2")  # count something; any answer will do
    known = exported_names(client) | http_config_names()
    assert {"canary_judge_analyses_total", "canary_judge_hook_responses_total",
            "http_requests_total", "http_request_duration_seconds_bucket"} <= known
    for title, expr in expressions(dashboard()):
        names = set(SELECTOR_NAME.findall(expr)) - {"by", "without"}
        assert names, f"{title}: no metric name found in {expr}"
        assert names <= known, (title, names - known)


def test_canary_vs_stable_panels_show_the_planted_regression(lab):
    """With the variables on the lab's 3x-errors rollout, the error-ratio panel shows it."""
    panel = next(p for p in panels(dashboard()) if p["title"].startswith("Error ratio"))
    values = {}
    for target in panel["targets"]:
        r = requests.get(f"{lab.url}/api/v1/query",
                         params={"query": substitute(target["expr"]),
                                 "time": lab.anchor - 300}, timeout=10).json()
        (sample,) = r["data"]["result"]
        values[target["legendFormat"].split()[0]] = float(sample["value"][1])
    assert values["canary"] == pytest.approx(0.03, abs=0.012)
    assert values["stable"] == pytest.approx(0.01, abs=0.006)


def test_kustomize_component_ships_the_same_json_with_the_sidecar_label():
    (doc,) = [d for d in yaml.safe_load_all((COMPONENT / "kustomization.yaml").read_text())]
    assert doc["kind"] == "Component"
    (generator,) = doc["configMapGenerator"]
    assert generator["files"] == [DASHBOARD.name]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    overlay = yaml.safe_load((ROOT / "manifests/overlays/with-servicemonitor/"
                              "kustomization.yaml").read_text())
    assert "../../components/grafana-dashboard" in overlay["components"]
