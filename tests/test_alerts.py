"""The alerts of manifests/components/alerts, checked and unit-tested by Prometheus' own
`promtool` (Debian's prometheus package): every rule parses, each alert fires on the series a
real outage leaves and stays quiet on a healthy judge's, and every metric the rules read is one
the judge exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_files import MANIFESTS, load_docs

from webhook.app import create_app
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.settings import load_settings

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                "(apt-get install prometheus; bash scripts/setup.sh does it)")
COMPONENT = MANIFESTS / "components" / "alerts"


def rule_groups() -> list[dict[str, Any]]:
    (rule,) = load_docs(COMPONENT / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    return rule["spec"]["groups"]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,  # type: ignore[list-item]
                          timeout=60)


def test_the_component_ships_the_rule_and_the_overlay_uses_it() -> None:
    (component,) = load_docs(COMPONENT / "kustomization.yaml")
    assert component["kind"] == "Component" and component["resources"] == ["prometheusrule.yaml"]
    (overlay,) = load_docs(MANIFESTS / "overlays" / "with-servicemonitor" / "kustomization.yaml")
    assert "../../components/alerts" in overlay["components"]
    assert "../../components/servicemonitor" in overlay["components"]  # what feeds the rules


def test_the_rules_parse(tmp_path: Path) -> None:
    """`promtool check rules` parses each expression and each annotation's template."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    run = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in run.stdout
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def _counter(name: str, per_minute: float, minutes: int, labels: str = "") -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": f"0+{per_minute:g}x{minutes}"}


def _buckets(seconds_each: float, per_minute: float, minutes: int) -> list[dict[str, str]]:
    """The analysis-duration histogram of a judge whose every analysis takes `seconds_each`."""
    bounds = ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    return [_counter("canary_judge_analysis_duration_seconds_bucket",
                     per_minute if le == "+Inf" or float(le) >= seconds_each else 0, minutes,
                     f'caller="argo",le="{le}"') for le in bounds]


HEALTHY = [_counter("canary_judge_upstream_queries_total", 60, 40),
           _counter("canary_judge_analyses_total", 60, 40,
                    'config="http",caller="argo",verdict="pass"'),
           *_buckets(0.02, 60, 40)]


def _case(name: str, series: list[dict[str, str]],
          fires: dict[str, tuple[int, int]], by: dict[str, str] | None = None) -> dict:
    """One promtool test: `fires` maps each alert to the first and last minute at which it
    fires; it is checked quiet the minute before and after, every other alert quiet then too.
    `by`: the labels a firing alert keeps from its expression's `sum by`."""
    minutes = sorted({0, 39, *(m for first, last in fires.values()
                               for m in (first - 1, first, last, last + 1) if 0 <= m <= 39)})

    def firing(alert: str, minute: int) -> bool:
        first, last = fires.get(alert, (1, 0))
        return first <= minute <= last

    return {"name": name, "interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": f"{m}m", "alertname": alert,
         "exp_alerts": [{"exp_labels": {**alerts()[alert]["labels"], **(by or {})}}]
         if firing(alert, m) else []}
        for m in minutes for alert in alerts()]}


FIRST_UNMATCHED = 18  # polled from minute 5: 3 in 15 minutes at minute 8, then 10 minutes of it

CASES = [
    _case("a healthy judge", HEALTHY, {}),
    # no judge scraped at all: 5 minutes, then the alert
    _case("no judge scraped", [], {"CanaryJudgeAbsent": (5, 39)}),
    # Prometheus unreachable from minute 10 on: every analysis an error
    _case("metrics source down", [
        _counter("canary_judge_upstream_queries_total", 60, 40),
        {"series": 'canary_judge_analyses_total{config="http",caller="argo",verdict="pass"}',
         "values": "0+60x10 600x30"},
        {"series": 'canary_judge_upstream_errors_total{kind="unavailable"}',
         "values": "_x10 0+60x30"},
        *_buckets(0.02, 60, 40)], {"CanaryJudgeMetricsSourceFailing": (17, 39)}),
    # a judge whose every analysis failed since its start has no analyses_total series at all
    _case("metrics source down from the start", [
        _counter("canary_judge_upstream_queries_total", 60, 40),
        _counter("canary_judge_upstream_errors_total", 60, 40, 'kind="timeout"'),
        *_buckets(8, 60, 40)],
          {"CanaryJudgeMetricsSourceFailing": (6, 39), "CanaryJudgeSlow": (11, 39)}),
    # one failed analysis in a hundred is not an outage
    _case("a rare upstream error", [
        *HEALTHY, _counter("canary_judge_upstream_errors_total", 0.6, 40, 'kind="timeout"')],
          {}),
    # refused as busy for good, against one short burst of refusals
    _case("busy for good", [*HEALTHY, _counter("canary_judge_busy_refusals_total", 5, 40)],
          {"CanaryJudgeBusy": (11, 39)}),
    _case("one burst of busy", [*HEALTHY, {"series": "canary_judge_busy_refusals_total",
                                           "values": "0x10 30x30"}], {}),
    _case("slow analyses", [_counter("canary_judge_upstream_queries_total", 60, 40),
                            _counter("canary_judge_analyses_total", 60, 40,
                                     'config="http",caller="argo",verdict="pass"'),
                            *_buckets(7, 60, 40)], {"CanaryJudgeSlow": (11, 39)}),
    # one 500 pages (within the 10 minutes it counts), then the alert resolves
    _case("an internal error", [*HEALTHY, {"series": "canary_judge_internal_errors_total",
                                           "values": "0x20 1x20"}],
          {"CanaryJudgeInternalErrors": (21, 30)}),
    # a Flagger Canary whose label scheme matches no stable series, polled every minute from
    # minute 5 on, against one curl with a typo
    _case("a stable selector matching nothing", [*HEALTHY, {
        "series": 'canary_judge_unmatched_selectors_total{config="http",caller="flagger",'
                  'side="stable"}', "values": "_x5 0+1x35"}],
          {"CanaryJudgeSelectorMatchesNothing": (FIRST_UNMATCHED, 39)},
          by={"config": "http", "caller": "flagger", "side": "stable"}),
    _case("one typo", [*HEALTHY, {
        "series": 'canary_judge_unmatched_selectors_total{config="http",caller="api",'
                  'side="canary"}', "values": "_x5 0x5 1x30"}], {}),
]


def test_each_alert_fires_on_its_outage_and_only_then(tmp_path: Path) -> None:
    """promtool evaluates the rules (annotations left out: their texts are checked above) on
    the series each situation leaves, minute by minute."""
    groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                              for r in g["rules"]]} for g in rule_groups()]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": CASES}))
    run = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    every = {alert for case in CASES for test in case["alert_rule_test"]
             if test["exp_alerts"] for alert in [test["alertname"]]}
    assert every == set(alerts()), "an alert no case makes fire"


def test_every_metric_the_rules_read_is_exported(lab) -> None:
    """A renamed metric would leave its alert silent forever: every canary_judge_* name in the
    rules is in the judge's /metrics (its HELP line, present before the first sample)."""
    client = create_app(load_settings(prometheus_url=lab.url)).test_client()
    client.post("/v1/analyze", json={
        "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(30)})
    exported = set(re.findall(r"^# HELP (\w+)", client.get("/metrics").get_data(as_text=True),
                              re.M))
    read = {m.removesuffix("_bucket") for r in alerts().values()
            for m in re.findall(r"\bcanary_judge_\w+", r["expr"])}
    assert len(read) == 7 and read <= exported, read - exported
