"""The newcomer's demo: plant a rollout, start Prometheus and the judge, curl a pass and a fail.

Run with `bash scripts/demo.sh` (installs what is missing) or `python -m webhook.lab.demo`.
`--keep` leaves both servers running so you can try your own curl commands.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
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
    # Quoted as a shell needs it pasted: `?` alone is a glob (zsh refuses the unquoted URL).
    shown = " ".join(f"'{a}'" if any(c in a for c in ' {}"\n?&*[$') else a
                     for a in (arg.replace("\n", "\\n") for arg in args))
    print(f"$ curl {shown}", flush=True)
    if shutil.which("curl"):
        return subprocess.run(["curl", *args], check=False).returncode
    method, data, url, write_out = "GET", None, "", ""
    for i, arg in enumerate(args):
        if arg == "-d":
            method, data = "POST", args[i + 1]
        elif arg == "-w":
            write_out = args[i + 1]
        elif arg.startswith("http"):
            url = arg
    response = requests.request(method, url, data=data, timeout=15,
                                 headers={"Content-Type": "application/json"})
    print(response.text + write_out.replace("%{http_code}", str(response.status_code)),
          end="", flush=True)
    return 0


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM (or SIGINT) unwinds the `with` blocks, which stop Prometheus and gunicorn and
    remove their directories; Python's default for SIGTERM would exit and orphan both."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    print(f"\n{signal.Signals(signum).name}: stopping the judge and Prometheus", flush=True)
    raise _Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep servers running until Ctrl-C")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_on_signal)
    try:
        return _run(args.keep)
    except _Stopped as stop:  # before the demo had shown its answers
        return 128 + stop.signum


def _run(keep: bool) -> int:
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
                # The body goes to curl's stdout as is: `-o /dev/stdout` would reopen (and
                # truncate) a log file the demo's output is redirected to.
                _curl(["-s", "-w", "   -> HTTP %{http_code}\n", "-X", "POST",
                       f"{judge}/v1/hooks/rollback", "-H", "Content-Type: application/json",
                       "-d", payload])
            if keep:
                _say(f"Servers keep running: judge {judge}, Prometheus {prom_url}. "
                     "Ctrl-C (or SIGTERM) stops both.")
                try:
                    while True:
                        time.sleep(3600)
                except _Stopped:
                    pass  # the way out of keep mode: leaving the `with` blocks stops both
    _say("Done: one pass and one fail, judged from a real Prometheus."
         + (" Both servers are stopped and their directories removed." if keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
