"""Detection benchmark: canary-judge against Kayenta and fixed thresholds on simulated rollouts.

    python -m bench.detection [--quick] [--out DIR] [--methods cj-seq,cj-fixed,kayenta,thresholds]

A rollout is simulated as a controller and the judge see it through Prometheus: one point per
30 s query step (requests, errors, latency histogram buckets, a CPU gauge, for canary and
stable), canary weight growing 5 → 10 → 25 → 50 %, and 20 polls 30 s apart, each judging
[analysis start, now]. Reported per method and scenario: the false-failure rate of whole healthy
rollouts (a rollout is falsely failed if any poll fails it), detection rate and polls to detect
for planted regressions, and how often the analysis is still inconclusive at the end.

Modules: `simulate` (traffic and scenarios), `methods` (the judges under test, one verdict per
poll; Kayenta's NetflixACAJudge, from its description, is `webhook.judge.kayenta`), `run`
(parallel Monte Carlo and aggregation), `report` (Markdown, JSON, figure), `cli` (the command).
"""
