"""The public request and response shapes (README "API (v1)"), validated by pydantic at the edge.

Argo Rollouts sends templated `jsonBody` leaves as strings ("0.05", "true"), so every scalar is
accepted as a string too (pydantic's lax mode). Responses are built from these models so that
every top-level key is always present with one JSON type: Argo's condition language fails on a
type that changes between answers.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from webhook.bounds import MAX_QUERY_POINTS, MIN_ALPHA
from webhook.configs import MAX_QUANTILES, Mode, Provider, Tolerance

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LATEST_TIME = 4102444800.0  # 2100-01-01: beyond it a time is a typo, and dates stop printing
_LONGEST_DURATION = 10 * 365 * 86400.0
# What one request may name: label values, vars and raw matchers are names, hashes and short
# regexes (a Kubernetes name is at most 253 characters).
MAX_VALUE_CHARS = 1024
MAX_LABELS = 32
MAX_MATCHERS_CHARS = 4096
# Overrides (and, where allowed, inline metrics) per request: each metric is two or more
# queries and a check per side; the built-in configs have at most 10 metrics.
MAX_METRIC_OVERRIDES = 32


def _as_float(value: float | int) -> float:
    """An int too large for a float (10**400) is out of range, not a crash."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def parse_duration(value: str | float | int) -> float:
    """`90`, `"90"`, `"90s"`, `"1h30m"` → seconds. Raises ValueError with the accepted forms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = _as_float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(a + b for a, b in parts) != text:
                raise ValueError(
                    f"{text!r} is not a duration; use e.g. 30s, 10m, 1h30m or seconds") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not (math.isfinite(seconds) and seconds <= _LONGEST_DURATION):
        raise ValueError(f"{str(value)[:40]!r} is not a duration up to 10 years; use e.g. "
                         "30s, 10m or seconds")
    if not seconds > 0:
        raise ValueError("duration must be positive")
    return seconds


def _too_long(where: str, size: int, limit: int, what: str, fix: str) -> PydanticCustomError:
    """A size refusal naming the exact field (`canary.pod`, not just `canary`), the size, the
    limit and the fix; `validation_message` reads `where`."""
    return PydanticCustomError("too_long", "{size} {what}; at most {limit} ({fix})",
                               {"where": where, "size": f"{size:,}", "limit": f"{limit:,}",
                                "what": what, "fix": fix})


def _finite_time(value: float, text: object) -> float:
    if not (math.isfinite(value) and 0 <= value < _LATEST_TIME):
        raise ValueError(f"{str(text)[:40]!r} is not a time between 1970 and 2100; use RFC 3339 "
                         "(2026-11-22T10:00:00Z) or unix seconds")
    return value


def parse_time(value: str | float | int) -> float:
    """RFC 3339 (`2026-11-22T10:00:00Z`) or unix seconds (also as a string) → unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite_time(_as_float(value), value)
    text = str(value).strip()
    try:
        number: float | None = float(text)
    except ValueError:
        number = None
    if number is not None:
        return _finite_time(number, text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; use RFC 3339 (2026-11-22T10:00:00Z) or unix seconds"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z or an offset like +01:00")
    return _finite_time(parsed.timestamp(), text)


# `+01:00` written unencoded in a URL's query string arrives as ` 01:00` (a `+` there means a
# space): only that shape, a space then HH:MM or HHMM ending an ISO date and time.
_OFFSET_AS_SPACE = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}:?\d{2})")


def query_time(text: str) -> str:
    """A time as a URL's query string delivered it, with the `+` of its offset put back.

    Argo's web provider and a person's curl paste `start=2026-12-03T10:00:00+00:00` into the
    URL unencoded, and the offset's `+` arrives as a space: that exact shape is read as the
    offset it was. Any other time with a space in it is a ValueError saying how to write a
    time in a URL, since "is not a time" alone sent people looking at a time that was fine."""
    if (match := _OFFSET_AS_SPACE.fullmatch(text)) is not None:
        return f"{match[1]}+{match[2]}"
    if " " in text.strip():
        try:
            parse_time(text)
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a time; in a URL write Z "
                             "(2026-11-22T10:00:00Z) or encode + as %2B (a + in a query "
                             "string arrives as a space)") from None
    return text


# What a window's times and durations accept, as /openapi.json shows them: the fields hold
# seconds once validated, but callers send `"10m"` and RFC 3339 times, and a client generated
# from a schema that said `number` refused every such request before sending it.
_TIME_SCHEMA = {"anyOf": [
    {"type": "string", "format": "date-time", "description": "RFC 3339, with a time zone"},
    {"type": "number", "minimum": 0, "description": "unix seconds"},
    {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "description": "unix seconds"},
    {"type": "null"}]}
_DURATION_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$|^[0-9]+(\.[0-9]+)?$",
     "description": "30s, 10m, 1h30m, or seconds"},
    {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
    {"type": "null"}]}
Time = Annotated[float | None, WithJsonSchema(_TIME_SCHEMA)]
Duration = Annotated[float | None, WithJsonSchema(_DURATION_SCHEMA)]


class Window(BaseModel):
    """The time range judged. All optional: the default ends now and looks back a while."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)
    start: Time = None
    end: Time = None
    lookback: Duration = None
    step: Duration = None
    warmup: Annotated[float | None, WithJsonSchema({"anyOf": [
        *_DURATION_SCHEMA["anyOf"][:2], {"const": 0}, {"type": "null"}]})] = None
    # A time the judged part may not begin before (Flagger's hooks set it when this pod saw a
    # new revision replace the one it judged: the data alone cannot tell that from a blip).
    not_before: Time = None

    @field_validator("start", "end", "not_before", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        return None if value in (None, "") else parse_time(value)

    @field_validator("lookback", "step", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value in (None, "") else parse_duration(value)

    @field_validator("warmup", mode="before")
    @classmethod
    def _warmup(cls, value: Any) -> Any:
        if value in (None, "", "0", 0):
            return 0.0 if value in ("0", 0) else None
        return parse_duration(value)


def _override_schema(schema: dict[str, Any]) -> None:
    """The bounded fields of an inline metric, for /openapi.json: a metric's kind (its config
    class) validates them when the request is resolved, not this model, which allows any."""
    schema["properties"].update({
        "quantiles": {
            "type": "array", "minItems": 1, "maxItems": MAX_QUANTILES, "uniqueItems": True,
            "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "description": "histogram: the quantiles judged, each a check (e.g. [0.95, 0.99])."},
        "step": {
            "type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$",
            "x-max-points-per-query": MAX_QUERY_POINTS,
            "description": "series: the metric's own query step (e.g. 15s); the "
            f"window over it at most {MAX_QUERY_POINTS:,} points per query (Prometheus' "
            "limit)."},
    })


class MetricOverride(BaseModel):
    """Per-request changes to a config metric (or, when allowed, a whole inline metric)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, allow_inf_nan=False,
                              frozen=True, json_schema_extra=_override_schema)
    name: str | None = None
    tolerance: Tolerance | None = None
    critical: bool | None = None
    weight: float | None = Field(None, ge=0)
    min_total: float | None = Field(None, ge=1)
    alpha: float | None = Field(None, ge=MIN_ALPHA, lt=0.5)
    direction: Literal["increase", "decrease", "either"] | None = None
    enabled: bool = True


Labels = dict[str, str]


def _labels_schema(schema: dict[str, Any]) -> None:
    """The bounds `AnalysisRequest._bounded` enforces (with its own messages, which name the
    fix), shown in /openapi.json: a label map's size and lengths, a matcher string's length."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["maxLength"] = MAX_MATCHERS_CHARS
        elif branch.get("type") == "object":
            branch.update(maxProperties=MAX_LABELS,
                          propertyNames={"maxLength": MAX_VALUE_CHARS},
                          additionalProperties={"type": "string", "maxLength": MAX_VALUE_CHARS})


def _metrics_schema(schema: dict[str, Any]) -> None:
    """`AnalysisRequest._few_metrics`' bound, shown in /openapi.json."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "array":
            branch["maxItems"] = MAX_METRIC_OVERRIDES
        elif branch.get("type") == "object":
            branch["maxProperties"] = MAX_METRIC_OVERRIDES


class Derived(dict[Any, Any]):
    """What was computed from one request (`AnalysisRequest.derived`): not part of the
    request's value, so two requests are equal whatever either has computed so far."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Derived)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


class AnalysisRequest(BaseModel):
    """One analysis: which config, which two sides, which window.

    Frozen, because one parsed request may serve many polls (`webhook.api.analyze` remembers
    the request parsed from each recent body); `derived` holds what the analysis computes
    from the request alone (and the server's fixed parts), so a remembered request computes it
    once."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False,
                              frozen=True)
    _derived: Derived = PrivateAttr(default_factory=Derived)
    config: str = Field("http", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    canary: Labels | str = Field(
        description='Label matchers: {"rollouts_pod_template_hash": "7d9f"} or \'app="web"\'.',
        json_schema_extra=_labels_schema)
    stable: Labels | str = Field(json_schema_extra=_labels_schema)
    vars: dict[str, str] = Field(default_factory=dict, json_schema_extra=_labels_schema)
    window: Window = Field(default_factory=Window)
    metrics: list[MetricOverride] | dict[str, MetricOverride] | None = Field(
        None, json_schema_extra=_metrics_schema)
    mode: Mode | None = None
    alpha: float | None = Field(None, ge=MIN_ALPHA, lt=0.5)
    provider: Provider | None = Field(
        None, description="Where the metrics come from (istio, linkerd: the mesh's own metric "
        "names and units, when the config has a section for it); Flagger: metadata.provider.")
    traffic_split: Literal["replicas", "weights"] | None = Field(
        None, description="How the controller splits traffic: `replicas` (default: one Service "
        "over every pod, Argo's canary without trafficRouting), so each instance takes an "
        "equal share; `weights` (a mesh or ingress sends the canary a weight, Argo "
        "trafficRouting; Flagger always), so a per-instance rate follows the weight and the "
        "checks that need equal load (`needs_equal_load`, trading's throughput) are listed, "
        "not judged.")
    revision: str | None = Field(
        None, max_length=128, description="The canary revision a person's approval must name "
        "(vars.approved_revision); default: the value the canary's selector (labels or raw "
        "matchers) gives rollouts_pod_template_hash with `=`.")

    @field_validator("window", mode="before")
    @classmethod
    def _window_none(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("metrics", mode="before")
    @classmethod
    def _few_metrics(cls, value: Any) -> Any:
        if isinstance(value, list | dict) and len(value) > MAX_METRIC_OVERRIDES:
            raise ValueError(f"{len(value):,} entries; at most {MAX_METRIC_OVERRIDES} (override "
                             "only the metrics you change)")
        return value

    @field_validator("canary", "stable", "vars")
    @classmethod
    def _bounded(cls, value: Labels | str, info: ValidationInfo) -> Labels | str:
        """Sides and vars reach every query, the audit line and the answer's reasons; a
        256 KiB label value made Prometheus, the judge's own text scans and every log line pay
        for it on each query. Real ones are names, hashes and short regexes."""
        side = str(info.field_name)
        if isinstance(value, str):
            if len(value) > MAX_MATCHERS_CHARS:
                raise _too_long(side, len(value), MAX_MATCHERS_CHARS, "characters of matchers",
                                "select by fewer or shorter values")
            return value
        if len(value) > MAX_LABELS:
            raise _too_long(side, len(value), MAX_LABELS, "entries", "send only what differs")
        for name, text in value.items():
            if len(name) > MAX_VALUE_CHARS or len(text) > MAX_VALUE_CHARS:
                raise _too_long(f"{side}.{name[:40]}", max(len(name), len(text)),
                                MAX_VALUE_CHARS, "characters", "use a shorter value or a regex")
        return value

    @property
    def derived(self) -> Derived:
        """Values computed from this request alone, by whoever computes them (keys name the
        computation and its other inputs); empty for a new request, and for every copy
        (`model_copy(update=...)` makes another request)."""
        # pydantic keeps private attributes here; `self._derived` finds them only after a
        # failed attribute lookup (several µs, on every use)
        return self.__pydantic_private__["_derived"]  # type: ignore[index,no-any-return]

    def __copy__(self) -> AnalysisRequest:
        copied = super().__copy__()
        copied._derived = Derived()
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> AnalysisRequest:
        copied = super().__deepcopy__(memo)
        copied._derived = Derived()
        return copied


class CheckModel(BaseModel):
    name: str
    kind: str
    verdict: Literal["pass", "fail", "inconclusive"]
    critical: bool
    weight: float
    group: str
    cohort: str
    blocking: bool = Field(True, description="False: informational; its inconclusive answer "
                           "does not hold the verdict (a quantile the buckets cannot resolve).")
    test: str
    effect: float | None = Field(description="Canary relative to stable: 0.5 = 50 % higher.")
    interval: dict[str, Any] = Field(description="low, high, of (what the bounds are), level.")
    p_value: float | None
    allowed: float | None = Field(description="Tolerated change, in the interval's units.")
    canary: dict[str, float | None]
    stable: dict[str, float | None]
    reason: str


class WindowModel(BaseModel):
    start: str
    end: str
    step: float
    note: str = Field("", description="Why the judged window starts where it does when the "
                      "data alone did not decide it (window.not_before; a Flagger hook: this "
                      "replica saw a new revision replace the one it judged); else empty.")


class VerdictModel(BaseModel):
    """Every 2xx answer of /v1/analyze. Keys are always present with these types."""

    verdict: Literal["pass", "fail", "inconclusive"]
    pass_: bool = Field(alias="pass", serialization_alias="pass")
    score: float
    reason: str
    config: str
    mode: str
    window: WindowModel
    analysis_id: str
    checks: list[CheckModel]
    report: str = Field("", description="URL of the report page for the same query (with its "
                        "end pinned): verdict, checks table and a chart per check.")

    model_config = ConfigDict(populate_by_name=True)


def now() -> float:
    return time.time()
