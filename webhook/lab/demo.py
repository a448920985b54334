"""The newcomer's demo: plant a rollout, start Prometheus and the judge, curl a pass and a fail.

Run with `bash scripts/demo.sh` (installs what is missing) or `python -m webhook.lab.demo`.
`--keep` leaves both servers running so you can try your own curl commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import time

import requests

from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, argo_hash, standard_sides


def _say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m" if sys.stdout.isatty() else f"\n{text}", flush=True)


def _curl(args: list[str]) -> int:
    """Run (and show) a real curl when there is one; otherwise do the same with requests."""
    shown = " ".join(f"'{a}'" if any(c in a for c in ' {}"\n') else a
                     for a in (arg.replace("\n", "\\n") for arg in args))
    print(f"$ curl {shown}", flush=True)
    if shutil.which("curl"):
        return subprocess.run(["curl", *args], check=False).returncode
    method, data, url = "GET", None, ""
    for i, arg in enumerate(args):
        if arg == "-d":
            method, data = "POST", args[i + 1]
        elif arg.startswith("http"):
            url = arg
    response = requests.request(method, url, data=data, timeout=15,
                                 headers={"Content-Type": "application/json"})
    print(response.text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep servers running until Ctrl-C")
    args = parser.parse_args(argv)

    now = math.floor(time.time() / 60) * 60
    _say("1. Planting two hours of a rollout into a fresh Prometheus (promtool)")
    print(f"   stable  rollouts_pod_template_hash={ARGO_STABLE}: 40 req/s, 1 % errors, "
          "p99 ~0.4 s")
    print(f"   canary  {argo_hash('healthy')} (healthy): 20 req/s, same behaviour")
    print(f"   canary  {argo_hash('errors3x')} (errors3x): 20 req/s, 3 % errors")
    print("   Flagger: podinfo vs podinfo-primary (healthy), "
          "badinfo vs badinfo-primary (3x errors)")
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics(standard_sides(), now - 7200, now + 900, seed=7))
        prom_url = prom.start()
        print(f"   Prometheus ready at {prom_url}")

        _say("2. Serving canary-judge under gunicorn")
        with served_judge(prom_url, workers=1) as judge:
            print(f"   judge ready at {judge}")
            for label, version, expect in (("PASS", "healthy", "pass"),
                                           ("FAIL", "errors3x", "fail")):
                _say(f"3. What Argo Rollouts sends for the {version} canary (expect {label})")
                body = json.dumps({"config": "http",
                                   "canary": {"rollouts_pod_template_hash": argo_hash(version)},
                                   "stable": {"rollouts_pod_template_hash": ARGO_STABLE}})
                _curl(["-s", "-X", "POST", f"{judge}/v1/analyze?format=text",
                       "-H", "Content-Type: application/json", "-d", body])
                verdict = requests.post(f"{judge}/v1/analyze", data=body, timeout=15,
                                        headers={"Content-Type": "application/json"}).json()
                print(f"   -> JSON verdict={verdict['verdict']!r} pass={verdict['pass']} "
                      f"score={verdict['score']}  (Argo jsonPath {{$.verdict}})")
                if verdict["verdict"] != expect:
                    print(f"   unexpected: wanted {expect}", file=sys.stderr)
                    return 1
            _say("4. Flagger's rollback hook: 200 = roll back now (critical failure), else 412")
            for target in ("badinfo", "podinfo"):
                payload = json.dumps({"name": target, "namespace": NAMESPACE,
                                      "phase": "Progressing", "metadata": {"config": "http"}})
                _curl(["-s", "-o", "/dev/stdout", "-w", "   -> HTTP %{http_code}\n", "-X",
                       "POST", f"{judge}/v1/hooks/rollback", "-H",
                       "Content-Type: application/json", "-d", payload])
            if args.keep:
                _say(f"Servers keep running: judge {judge}, Prometheus {prom_url}. Ctrl-C stops.")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
    _say("Done: one pass and one fail, judged from a real Prometheus.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
