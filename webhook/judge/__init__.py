"""The judge: pure functions from numbers to verdicts.

Nothing here knows about HTTP, Flask or Prometheus; inputs are numpy arrays and plain values, so
every test can be run and measured on simulated data (see tests/ and bench/).
"""

from webhook.judge.histogram import judge_quantile
from webhook.judge.ratio import judge_ratio
from webhook.judge.types import CheckResult, Outcome, Summary
from webhook.judge.verdict import Verdict, combine

__all__ = [
    "CheckResult",
    "Outcome",
    "Summary",
    "Verdict",
    "combine",
    "judge_quantile",
    "judge_ratio",
]
