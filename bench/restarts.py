"""How many of a canary's in-place restarts `http`'s `restarts` check sees, and that it sees
none where there are none: real Prometheus, planted counters, the served analysis.

    python bench/restarts.py [--out REPORT]      # ~1 minute
    python bench/restarts.py --tiny              # seconds: CI checks the report's shape

The check counts, per query step, the scrape targets whose requests counter ended the step below
where it ended the step before. What that hinges on, and what the grid varies:

- how often the process restarts (`every`) and how long it is down (`down`): a loop shorter
  than two steps often restarts twice between two step ends, and a new process that counts
  past the old one's last value within a step is not seen;
- where the scrapes fall against the step grid (`phase`, the target's first scrape after the
  minute), and two pods restarting out of phase (each its own `instance`);
- the traffic per pod (`rps`): the counters' values, hence whether a new process out-counts
  the old one before a step ends.

The healthy cases plant what must never read as a restart: scrapes jittered by a loaded
scraper, a pod replaced by a new one (a new series), a target not scraped for two minutes
(its counter carries on), 0.2 to 500 requests per second.

Each case is judged over 10 and 30 minutes (`mode: fixed`, explicit windows inside the planted
data) through POST /v1/analyze; `true` counts the restarts whose process was back (its first
scrape after the restart) inside the window, `seen` is the check's canary count, `fails`
whether the check failed (more than `allowed`, 1). Reported per case and summed per
restart period. No randomness decides a verdict here: the Poisson traffic only sets the counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import re
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from webhook.app import create_app
from webhook.lab import PrometheusLab, TrafficSide, render_openmetrics
from webhook.settings import load_settings

logging.getLogger("canary_judge.audit").setLevel(logging.WARNING)

STEP = 60
WINDOWS = (10, 30)  # minutes judged, each ending at the same instant
HISTORY = 15 * 60  # planted before the longest window: the step before its first one
ALLOWED = 1  # http.yaml's restarts.allowed
STABLE_HASH = "s0stable0"


@dataclass(frozen=True)
class Case:
    """One planted canary of two pods (each its own instance), restarting or healthy."""

    name: str
    every: float  # seconds between restarts of each pod (0: never)
    down: float
    phase: float  # the first pod's first scrape, seconds after the minute
    rps: float  # per pod
    scrape: float = 15.0  # seconds between scrapes
    jitter: float = 0.0
    replaced: bool = False  # pod 2 replaced by a new pod halfway
    gap: bool = False  # pod 2 not scraped for 2 minutes halfway, its counter carrying on

    @property
    def hash_(self) -> str:
        return f"r{zlib.crc32(self.name.encode()):010d}"


def grid(tiny: bool) -> list[Case]:
    everies = (75, 180) if tiny else (75, 120, 180, 300, 600)
    downs = (15,) if tiny else (15, 45)
    phases = (0.0,) if tiny else (0.0, 7.0, 23.0, 41.0)
    rates = (20.0,) if tiny else (0.2, 20.0, 500.0)
    # Prometheus' own default scrape interval is 1m; operators' ServiceMonitors set 30s or 15s
    scrapes = (15.0,) if tiny else (15.0, 30.0, 60.0)
    cases = [Case(f"loop{e}_down{d:g}_phase{p:g}_rps{r:g}_scrape{i:g}", e, d, p, r, i)
             for e, d, p, r, i in itertools.product(everies, downs, phases, rates, scrapes)
             if d < e]
    healthy = [Case(f"healthy_phase{p:g}_rps{r:g}_scrape{i:g}{tag}", 0, 0, p, r, i, **kw)
               for p, r, i in itertools.product(phases, rates, scrapes)
               for tag, kw in (("", {}), ("_jitter", {"jitter": min(3.0, i / 4)}),
                               ("_replaced", {"replaced": True}), ("_gap", {"gap": True}))]
    return cases + healthy


def pods(case: Case, begin: float, end: float) -> list[tuple[TrafficSide, float, float]]:
    """The case's pods as (side, first scrape, last scrape time)."""
    base = TrafficSide(labels={"app": "bench", "rollouts_pod_template_hash": case.hash_},
                       rps=case.rps, restart_every=case.every, restart_down=case.down,
                       buckets=(0.1, 1.0))  # the check reads the requests counter alone
    one = replace(base, labels={**base.labels, "instance": "10.0.0.1:8080"})
    two = replace(base, labels={**base.labels, "instance": "10.0.0.2:8080"})
    first = begin + case.phase
    # the second pod out of phase with the first: half a period (or 8 s) later
    second = first + (case.every / 2 if case.every else 8.0)
    middle = begin + (end - begin) / 2
    if case.replaced:
        new = replace(base, labels={**base.labels, "instance": "10.0.0.3:8080"})
        return [(one, first, end), (two, second, middle), (new, middle + 20.0, end)]
    if case.gap:
        return [(one, first, end), (two, second, middle), (two, middle + 120.0, end)]
    return [(one, first, end), (two, second, end)]


def planted(cases: Sequence[Case], begin: float, end: float) -> list[str]:
    """OpenMetrics texts of the cases' pods, one per scrape interval and jitter: every pod
    rendered from `begin` with its first scrape at its own offset (`scrape_offset`), so its
    restarts fall at its own phase, and its samples outside its spans (`pods`) left out: a
    pod replaced, or a scrape gap after which its counter carries on."""
    groups: dict[tuple[float, float], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.scrape, case.jitter), []).append(case)
    texts = []
    for n, ((scrape, jitter), members) in enumerate(groups.items()):
        sides: dict[tuple[str, str], TrafficSide] = {}
        spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for case in members:
            for side, first, last in pods(case, begin, end):
                key = (case.hash_, side.labels["instance"])
                sides.setdefault(key, replace(side, scrape_offset=first - begin))
                spans.setdefault(key, []).append((first, last))
        text = render_openmetrics(list(sides.values()), begin, end, scrape_interval=scrape,
                                  seed=n, jitter=jitter)
        texts.append("\n".join(line for line in text.split("\n")
                               if _within(line, spans)))
    return texts


_HASH = re.compile(r'rollouts_pod_template_hash="([^"]+)"')
_INSTANCE = re.compile(r'instance="([^"]+)"')


def _within(line: str, spans: dict[tuple[str, str], list[tuple[float, float]]]) -> bool:
    """Whether an OpenMetrics line stays: every line but a sample outside its pod's spans."""
    if line.startswith("#") or not line:
        return True
    hash_, instance = _HASH.search(line), _INSTANCE.search(line)
    assert hash_ is not None and instance is not None, line
    at = float(line.rsplit(" ", 1)[1])
    return any(first <= at <= last for first, last in spans[hash_[1], instance[1]])


def true_restarts(case: Case, begin: float, end: float, w0: float, w1: float) -> int:
    """Restarts whose process was back up (its first scrape after the restart) in (w0, w1]."""
    if not case.every:
        return 0
    count = 0
    for _side, first, last in pods(case, begin, end):
        k = 1
        while first + k * case.every <= last:
            back = first + k * case.every
            back += math.ceil(case.down / case.scrape - 1e-9) * case.scrape  # first scrape up
            count += w0 < back <= w1 and back <= last
            k += 1
    return count


def run(tiny: bool) -> dict:
    now = math.floor(time.time() / STEP) * STEP
    end = now  # the windows end here
    begin = end - max(WINDOWS) * 60 - HISTORY
    cases = grid(tiny)
    stable = TrafficSide(labels={"app": "bench", "rollouts_pod_template_hash": STABLE_HASH},
                         rps=20.0)
    out: dict = {"command": "python bench/restarts.py" + (" --tiny" if tiny else ""),
                 "step_seconds": STEP, "allowed": ALLOWED,
                 "windows_minutes": list(WINDOWS), "cases": {}}
    with PrometheusLab() as lab:
        lab.plant(render_openmetrics([stable], begin - 3600, end + 60, seed=1))
        for text in planted(cases, begin, end + 60):
            lab.plant(text)
        client = create_app(load_settings(prometheus_url=lab.start(),
                                          config_dir=None)).test_client()
        for case in cases:
            row = {}
            for minutes in WINDOWS:
                w0 = end - minutes * 60
                r = client.post("/v1/analyze", json={
                    "config": "http", "mode": "fixed",
                    "canary": {"rollouts_pod_template_hash": case.hash_},
                    "stable": {"rollouts_pod_template_hash": STABLE_HASH},
                    "window": {"start": w0, "end": end, "step": STEP}})
                assert r.status_code == 200, r.get_data(as_text=True)
                check = next(c for c in r.json["checks"] if c["name"] == "restarts")
                row[f"{minutes}m"] = {
                    "true": true_restarts(case, begin, end + 60, w0, end),
                    "seen": int(check["canary"]["value"] or 0), "fails": check["verdict"] == "fail",
                    "verdict": check["verdict"]}
            out["cases"][case.name] = {"every": case.every, "down": case.down,
                                       "phase": case.phase, "rps": case.rps,
                                       "scrape": case.scrape, **row}
    out["summary"] = summary(out["cases"])
    return out


def summary(cases: dict) -> dict:
    """Per restart period (and for the healthy cases): restarts seen of those there were, and
    the share of cases the check failed, per window."""
    groups: dict[str, list[dict]] = {}
    for name, row in cases.items():
        groups.setdefault("healthy" if name.startswith("healthy") else
                          f"every_{row['every']:g}s", []).append(row)
    out = {}
    for group, rows in groups.items():
        part = {}
        for minutes in WINDOWS:
            key = f"{minutes}m"
            true = sum(r[key]["true"] for r in rows)
            seen = sum(r[key]["seen"] for r in rows)
            part[key] = {"cases": len(rows), "true": true, "seen": seen,
                         "seen_share": round(seen / true, 3) if true else None,
                         "fail_share": round(sum(r[key]["fails"] for r in rows) / len(rows), 3),
                         "inconclusive": sum(r[key]["verdict"] == "inconclusive" for r in rows)}
        out[group] = part
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = run(args.tiny)
    text = json.dumps(report, indent=2)
    print(json.dumps(report["summary"], indent=2))
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
