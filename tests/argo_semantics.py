"""How Argo Rollouts turns our answers into a rollout decision, reimplemented for the tests.

Read from Argo Rollouts' source (master 9f8d111, v1.10.0-rc1-70; the same rules in v1.9.x):
- argument resolution: the metric is marshalled to JSON and `{{args.x}}` substituted as JSON
  string content; an unresolved arg is an error;
- one measurement of the `web` provider: non-2xx is an Error; the body's jsonPath value is
  compared with the conditions under expr-lang typing (analysis/ and metricproviders/webmetric);
- a metric's measurements → its phase (analysis/analysis.go: assessMetricStatus,
  assessMetricFailureInconclusiveOrError; pkg/apis/.../analysis_types.go: EffectiveCount;
  utils/defaults: consecutiveErrorLimit defaults to 4);
- `consecutiveSuccessLimit` (since v1.8.0, argoproj/argo-rollouts#3970): runMeasurements in
  analysis/analysis.go adds one to MetricResult.ConsecutiveSuccess per Successful measurement
  and zeroes it on a Failed, Inconclusive or Error one. assessMetricStatus checks the failure,
  inconclusive and error limits first, then ends the metric Successful as soon as the streak
  reaches the limit, before `count` is reached; at `count` without the streak the metric is
  Inconclusive (Failed when failureLimit is -1); a metric without a count ends only by the
  streak or a limit, or Successful when the run is terminated;
- which settings an AnalysisRun may have at all (utils/analysis/factory.go: ValidateMetric,
  called on the resolved metrics when a run starts): see validate_metric;
- a controller older than v1.8 has no such field: its CRD's structural schema drops it when
  the template is stored (or, with strict field validation, refuses the template), and its
  Metric type would ignore it anyway; MetricLimits.of(metric, argo=(1, 7)) reads it that way.

The templates' tests use this so that a template setting (count, failureLimit, ...) is judged
by what Argo would do with it, not by what its comment says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR, RUNNING = (
    "Successful", "Failed", "Inconclusive", "Error", "Running")
MEASUREMENT_PHASES = (SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR)
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4


class ArgoError(Exception):
    """What Argo records as a measurement Error."""


ARG = re.compile(r"\{\{\s*(args\.[^{}]+?)\s*\}\}")


def resolve_args(obj: Any, values: dict[str, str]) -> Any:
    """Argo marshals the metric to JSON and substitutes quoted args; unresolved is an error."""
    text = json.dumps(obj)

    def sub(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("args.")
        if name not in values:
            raise ArgoError(f"failed to resolve {{{{args.{name}}}}}")
        return json.dumps(values[name])[1:-1]

    return json.loads(ARG.sub(sub, text))


_JSONPATH = re.compile(r"^\{\s*\$?((?:\.[A-Za-z_][\w-]*|\[\d+\])*)\s*\}$")


def json_path(data: Any, expression: str) -> Any:
    """The subset of k8s JSONPath the templates use: `{$.a.b[0]}`; first match only."""
    match = _JSONPATH.match(expression or "{$}")
    if not match:
        raise AssertionError(f"jsonPath {expression!r}: extend tests/argo_semantics.py")
    for part in re.findall(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]", match.group(1)):
        key, index = part
        if key and isinstance(data, dict) and key in data:
            data = data[key]
        elif index and isinstance(data, list) and int(index) < len(data):
            data = data[int(index)]
        else:
            raise ArgoError(f"could not find JSONPath {expression} in body")
    return data


CONDITION = re.compile(r"^\s*result\s*(==|!=|>=|<=|>|<|startsWith)\s*(.+?)\s*$")


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def eval_condition(result: Any, condition: str) -> bool:
    """`result OP literal` with Argo's (expr-lang) typing: JSON true is a bool, numbers are
    float64, strings stay strings, and comparing across types is an error, not false."""
    match = CONDITION.match(condition)
    if not match:
        raise AssertionError(f"condition {condition!r}: extend tests/argo_semantics.py")
    op, text = match.groups()
    literal = json.loads(text)  # "pass", true, 90, 0.5
    if kind(result) != kind(literal) or kind(result) not in ("bool", "number", "string"):
        raise ArgoError(f"{condition}: cannot compare {kind(result)} with {kind(literal)}")
    if op in ("==", "!="):
        return (result == literal) == (op == "==")
    if op == "startsWith":
        if kind(result) != "string":
            raise ArgoError(f"{condition}: startsWith needs strings")
        return result.startswith(literal)
    if kind(result) != "number":
        raise ArgoError(f"{condition}: {op} needs numbers")
    return {">=": result >= literal, "<=": result <= literal, ">": result > literal,
            "<": result < literal}[op]


def argo_phase(metric: dict[str, Any], status: int, body: bytes) -> tuple[str, Any]:
    """The measurement phase Argo's web provider records for one answer."""
    if not 200 <= status < 300:
        return ERROR, f"non 2xx response {status}"
    # Argo would record a non-JSON 2xx as Successful without evaluating anything: never allowed.
    data = json.loads(body)
    try:
        value = json_path(data, metric["provider"]["web"].get("jsonPath", "{$}"))
        success = failure = None
        if metric.get("successCondition"):
            success = eval_condition(value, metric["successCondition"])
        if metric.get("failureCondition"):
            failure = eval_condition(value, metric["failureCondition"])
    except ArgoError as exc:
        return ERROR, str(exc)
    if success is None and failure is None:
        return SUCCESSFUL, value
    if failure is None:
        failure = not success
    if success is None:
        success = not failure
    if failure:
        return FAILED, value
    return (SUCCESSFUL if success else INCONCLUSIVE), value


def int_value(value: Any) -> int:
    """Go's intstr.IntOrString.IntValue(): an int, or a string through Atoi (0 if it fails)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise AssertionError(f"{value!r} is not an IntOrString")
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 10)
    except ValueError:
        return 0


# The Argo Rollouts release that reads `consecutiveSuccessLimit`; the newest we model.
CONSECUTIVE_SUCCESS_SINCE = (1, 8)
LATEST = (1, 10)
_LIMIT_KEYS = ("count", "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit",
               "consecutiveSuccessLimit")


def validate_metric(metric: dict[str, Any]) -> None:
    """Argo's ValidateMetric on a resolved metric: an AnalysisRun whose metric breaks one of
    these rules errors when it starts (and a Rollout whose step template does is InvalidSpec).
    Raises ArgoError with Argo's reason."""
    count = int_value(metric.get("count"))
    failure = int_value(metric.get("failureLimit"))
    success = int_value(metric.get("consecutiveSuccessLimit"))
    inconclusive = int_value(metric.get("inconclusiveLimit"))
    if success < 0:
        raise ArgoError("consecutiveSuccessLimit must be >= 0")
    if failure < -1:
        raise ArgoError("failureLimit must be >= 0, or -1 to be disabled")
    if success == 0 and failure == -1:
        raise ArgoError("failureLimit and consecutiveSuccessLimit cannot both be disabled")
    if inconclusive < 0:
        raise ArgoError("inconclusiveLimit must be >= 0")
    if metric.get("consecutiveErrorLimit") is not None and \
            int_value(metric["consecutiveErrorLimit"]) < 0:
        raise ArgoError("consecutiveErrorLimit must be >= 0")
    if count > 0:
        if failure >= 0 and count < failure + success:
            raise ArgoError(f"count ({count}) must be >= failureLimit + consecutiveSuccessLimit "
                            f"({failure} + {success}) if both >= 0")
        if failure < 0 and count < success:
            raise ArgoError("count must be >= consecutiveSuccessLimit")
        if count < inconclusive:
            raise ArgoError("count must be >= inconclusiveLimit")
    if count > 1 and not metric.get("interval"):
        raise ArgoError("interval must be specified when count > 1")


def with_arg_defaults(metric: dict[str, Any], args: list[dict[str, Any]],
                      **values: str) -> dict[str, Any]:
    """The metric with its limit settings resolved from the template's arg defaults and
    `values` (e.g. count="5"), the rest as written: a template read directly, as an analysis
    step that passes no such args runs it."""
    defaults = {a["name"]: str(a["value"]) for a in args if "value" in a} | values
    return {k: resolve_args(v, defaults) if k in _LIMIT_KEYS else v for k, v in metric.items()}


@dataclass(frozen=True)
class MetricLimits:
    """The settings of one metric that decide its phase, with Argo's defaults applied."""

    count: int | None  # None: measure until the rollout ends (background analysis)
    failure_limit: int  # < 0: failures never fail the metric
    inconclusive_limit: int
    consecutive_error_limit: int
    consecutive_success_limit: int  # 0: not used

    @classmethod
    def of(cls, metric: dict[str, Any], argo: tuple[int, int] = LATEST) -> MetricLimits:
        """From a metric whose args are resolved (count: "5", not "{{args.count}}"), as a
        controller of release `argo` (major, minor) reads it."""
        for key in _LIMIT_KEYS:
            if isinstance(metric.get(key), str) and ARG.search(metric[key]):
                raise AssertionError(f"{key}: resolve the args first (resolve_args)")
        if argo < CONSECUTIVE_SUCCESS_SINCE:
            metric = {k: v for k, v in metric.items() if k != "consecutiveSuccessLimit"}
        # EffectiveCount: count unset or 0 runs forever with an interval, once without one.
        count: int | None = int_value(metric.get("count"))
        if not count:
            count = None if metric.get("interval") else 1
        error_limit = metric.get("consecutiveErrorLimit")
        return cls(
            count=count,
            failure_limit=int_value(metric.get("failureLimit")),
            inconclusive_limit=int_value(metric.get("inconclusiveLimit")),
            consecutive_error_limit=(DEFAULT_CONSECUTIVE_ERROR_LIMIT if error_limit is None
                                     else int_value(error_limit)),
            consecutive_success_limit=int_value(metric.get("consecutiveSuccessLimit")),
        )


@dataclass
class MetricResult:
    """Argo's per-metric counters (v1alpha1.MetricResult), updated per measurement."""

    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0

    def record(self, phase: str) -> None:
        if phase not in MEASUREMENT_PHASES:
            raise AssertionError(f"unknown measurement phase {phase!r}")
        if phase == ERROR:
            # Errors do not consume `count`: Argo retries them.
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if phase == SUCCESSFUL:
            self.successful += 1
            self.consecutive_success += 1
        else:
            self.consecutive_success = 0
            if phase == FAILED:
                self.failed += 1
            else:
                self.inconclusive += 1


def assess_metric(limits: MetricLimits, result: MetricResult, terminating: bool = False) -> str:
    """The metric's phase after its latest completed measurement (assessMetricStatus)."""
    if result.count == 0 and result.error == 0:
        return SUCCESSFUL if terminating else "Pending"
    # assessMetricFailureInconclusiveOrError: each rule overwrites the previous one, so Error
    # beats Inconclusive beats Failed when several hold at once.
    phase = None
    if limits.failure_limit >= 0 and result.failed > limits.failure_limit:
        phase = FAILED
    if result.inconclusive > limits.inconclusive_limit:
        phase = INCONCLUSIVE
    if result.consecutive_error > limits.consecutive_error_limit:
        phase = ERROR
    if phase is not None:
        return phase
    success_applicable = limits.consecutive_success_limit > 0
    if success_applicable and result.consecutive_success >= limits.consecutive_success_limit:
        return SUCCESSFUL
    if limits.count is not None and result.count >= limits.count:
        if success_applicable:
            # The success streak was not reached: Inconclusive if a failure limit applies too.
            return INCONCLUSIVE if limits.failure_limit >= 0 else FAILED
        return SUCCESSFUL
    return SUCCESSFUL if terminating else RUNNING


def run_metric(metric: dict[str, Any] | MetricLimits, phases: Iterable[str],
               terminating: bool = False) -> tuple[str, int]:
    """Feed measurement phases in order until the metric completes.

    Returns (phase, measurements taken). A metric still running when the phases run out is
    RUNNING, or, with `terminating` (the rollout finished its steps while a background
    analysis ran), SUCCESSFUL, as Argo concludes it.
    """
    limits = metric if isinstance(metric, MetricLimits) else MetricLimits.of(metric)
    result = MetricResult()
    taken = 0
    for phase in phases:
        result.record(phase)
        taken += 1
        status = assess_metric(limits, result)
        if status not in (RUNNING, "Pending"):
            return status, taken
    return assess_metric(limits, result, terminating), taken


# What a rollout does with its analysis run's phase (rollout/analysis.go).
ROLLOUT_ACTION = {SUCCESSFUL: "continue", RUNNING: "continue", INCONCLUSIVE: "pause",
                  FAILED: "abort", ERROR: "abort"}
