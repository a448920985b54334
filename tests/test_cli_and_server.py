"""The shipped entry points: `canary-judge serve` (gunicorn) and `canary-judge analyze`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests

from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash


@pytest.fixture(scope="module")
def server(lab):
    with served_judge(lab.url, workers=2, threads=4, quiet=False) as url:
        yield url


def test_gunicorn_serves_argo_and_flagger(server, lab):
    body = {"canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
            "window": {k: str(v) for k, v in lab.window(60).items()}}
    r = requests.post(server + "/v1/analyze", json=body, timeout=10)
    assert r.status_code == 200 and r.json()["verdict"] == "fail"
    r = requests.post(server + "/v1/hooks/rollback", timeout=10, json={
        "name": "badinfo", "namespace": NAMESPACE, "metadata": {"lookback": "60m"}})
    assert r.status_code == 200
    r = requests.post(server + "/v1/hooks/rollback", timeout=10, json={
        "name": "podinfo", "namespace": NAMESPACE, "metadata": {"lookback": "60m"}})
    assert r.status_code == 412


def test_metrics_aggregate_across_gunicorn_workers(server, lab):
    body = {"canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60)}
    for _ in range(6):
        assert requests.post(server + "/v1/analyze", json=body, timeout=10).status_code == 200
    text = requests.get(server + "/metrics", timeout=5).text
    line = next(x for x in text.splitlines()
                if x.startswith('canary_judge_analyses_total{caller="api"')
                and 'verdict="pass"' in x)
    assert float(line.split()[-1]) >= 6


def test_a_stopped_server_leaves_no_metrics_directory(lab, tmp_path):
    """gunicorn makes a PROMETHEUS_MULTIPROC_DIR under TMPDIR for the workers' counters; every
    start used to leave one behind in /tmp."""
    body = {"canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
            "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "window": lab.window(60)}
    with served_judge(lab.url, workers=2, env={"TMPDIR": str(tmp_path)}) as url:
        assert requests.post(url + "/v1/analyze", json=body, timeout=10).status_code == 200
        made = [p for p in tmp_path.iterdir() if p.name.startswith("canary-judge-metrics-")]
        assert len(made) == 1 and any(made[0].iterdir())  # the workers' counter files
    assert list(tmp_path.iterdir()) == []


def test_a_metrics_directory_the_operator_names_is_kept(lab, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR set by the operator (the Deployment does) is theirs: wiped at
    start so stale counters do not add up, but not removed at exit."""
    named = tmp_path / "metrics"
    (named / "stale.db").parent.mkdir()
    (named / "stale.db").write_bytes(b"old")
    with served_judge(lab.url, workers=1, env={"TMPDIR": str(tmp_path),
                                               "PROMETHEUS_MULTIPROC_DIR": str(named)}):
        assert not (named / "stale.db").exists()
    assert named.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["metrics"]


def run_cli(lab, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    w = lab.window(60)
    return subprocess.run(
        [sys.executable, "-m", "webhook", "analyze", "--prometheus-url", lab.url,
         "--canary", f'rollouts_pod_template_hash="{argo_hash(version)}"',
         "--stable", f'{{"rollouts_pod_template_hash": "{ARGO_STABLE}"}}',
         "--start", str(w["start"]), "--end", str(w["end"]), *extra],
        capture_output=True, text=True, timeout=60)


def test_cli_analyze_exit_codes_follow_the_verdict(lab):
    ok = run_cli(lab, "healthy")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("verdict: PASS")
    # the table's values carry their units, as the reasons under it do
    assert re.search(r"^error_ratio \(critical\)\s+pass\s+[\d.]+%\s+[\d.]+%\s+[\d,]+ ",
                     ok.stdout, flags=re.M), ok.stdout
    # and name what was compared, as the report page does
    assert (f'canary:  {{rollouts_pod_template_hash="{argo_hash("healthy")}"}}   '
            f'stable: {{rollouts_pod_template_hash="{ARGO_STABLE}"}}') in ok.stdout.splitlines()
    bad = run_cli(lab, "slow", "--json")
    assert bad.returncode == 1
    assert '"verdict": "fail"' in bad.stdout
    broken = run_cli(lab, "healthy", "--step", "never")
    assert broken.returncode == 3 and "step" in broken.stderr


def test_cli_a_command_line_it_cannot_read_is_could_not_judge(lab):
    """A CI job gates on the exit code: 2 is "inconclusive" and 1 "fail", so a missing flag
    (argparse's own 2) or a --var without "=" (a traceback's 1) read as judged."""
    missing = subprocess.run([sys.executable, "-m", "webhook", "analyze", "--canary", "a=\"b\""],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 3 and "--stable" in missing.stderr
    no_value = run_cli(lab, "healthy", "--var", "namespace")
    assert no_value.returncode == 3
    assert "--var: 'namespace' is not NAME=VALUE" in no_value.stderr
    assert "Traceback" not in no_value.stderr
    assert run_cli(lab, "healthy", "--var", "namespace=shop").returncode == 0


def test_cli_errors_name_the_flag_and_the_fix(lab):
    """The HTTP API says `window.step: 'never' is not a duration; use e.g. 30s …`; the CLI
    printed pydantic's `('window', 'step'): Value error, …`. It names the flag typed too."""
    step = run_cli(lab, "healthy", "--step", "never")
    assert step.returncode == 3
    assert step.stderr.strip().splitlines()[-1] == (
        "error: --step: window.step: 'never' is not a duration; use e.g. 30s, 10m, 1h30m or "
        "seconds")
    alpha = run_cli(lab, "healthy", "--alpha", "2")
    assert alpha.returncode == 3 and "error: --alpha: alpha: " in alpha.stderr


def test_cli_an_unreachable_prometheus_names_where_it_looked(lab):
    """From a terminal the fix is nearly always the URL: the message said "Prometheus
    unreachable" without which one (the default is localhost:9090), nor how to give another.
    Credentials in the URL are not printed."""
    run = subprocess.run(
        [sys.executable, "-m", "webhook", "analyze", "--prometheus-url",
         "http://judge:s3cret@127.0.0.1:9/prometheus", "--canary", 'a="b"', "--stable", 'a="c"'],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 3
    assert "unreachable" in run.stderr and "at http://127.0.0.1:9/prometheus;" in run.stderr
    assert "--prometheus-url or CANARY_JUDGE_PROMETHEUS_URL" in run.stderr
    assert "s3cret" not in run.stderr


def test_cli_asks_what_a_report_link_asks(lab):
    """A report link can name a mesh (provider=istio) and a warm-up; the CLI had neither, so
    a Flagger rollout on Istio could not be re-judged from a terminal: the plain metric names
    found no series and the answer was inconclusive instead of the link's fail."""
    w = lab.window(60)
    base = [sys.executable, "-m", "webhook", "analyze", "--prometheus-url", lab.url,
            "--canary", 'destination_workload="badinfo"',
            "--stable", 'destination_workload="badinfo-primary"',
            "--start", str(w["start"]), "--end", str(w["end"])]
    run = subprocess.run([*base, "--provider", "istio", "--warmup", "2m"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr  # fail: 3x the errors
    assert run.stdout.startswith("verdict: FAIL") and "error_ratio" in run.stdout
    bad = subprocess.run([*base, "--warmup", "soon"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "--warmup: window.warmup: " in bad.stderr
