"""Named analysis configs: which metrics to judge, how, and with which defaults.

Configs are YAML files (built-ins ship in `webhook/configs/`, operators add or override them in
`CANARY_JUDGE_CONFIG_DIR`, typically a mounted ConfigMap). A file that does not validate is
reported by /readyz and /v1/configs instead of taking the whole service down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from webhook.bounds import MIN_ALPHA
from webhook.gates.market_hours import MarketHoursConfig
from webhook.sources import QueryLanguageError, query_language

# Configs' query templates are written in the metrics source's query language (PromQL, for the
# one source so far); they are checked in it when a config loads.
_LANGUAGE = query_language()

log = logging.getLogger(__name__)

Direction = Literal["increase", "decrease", "either"]
Mode = Literal["fixed", "sequential"]
# How the canary and stable are told apart, and so which metrics exist: Flagger's
# `metadata.provider`, or `provider` in a request. A mesh exports its own metric names.
Provider = Literal["app", "istio", "linkerd", "pod"]
PROVIDERS: tuple[str, ...] = get_args(Provider)


MAX_QUANTILES = 10


class Tolerance(BaseModel):
    """A change smaller than this does not matter in practice, however significant it is.

    The allowed change is the larger of `relative` × the stable value and `absolute` (in the
    metric's own unit), so a zero-error stable side still has a meaningful bound.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    relative: float = Field(0.0, ge=0)
    absolute: float = Field(0.0, ge=0)


class _MetricBase(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)
    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,62}$")
    description: str = ""
    direction: Direction = "increase"
    tolerance: Tolerance = Field(default_factory=Tolerance)
    critical: bool = False
    weight: float = Field(1.0, ge=0)
    group: str = Field("default", description="Checks are scored per group, groups by weight.")
    cohort_label: str | None = Field(
        None, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description="Judge each value of this label separately (facility, region, …); the "
        "queries must keep it, e.g. `sum by (facility) (…)`.")
    min_total: float = Field(100, ge=1, description="Fewer requests than this on either side: "
                             "inconclusive.")
    alpha: float | None = Field(None, ge=MIN_ALPHA, lt=0.5)
    needs_equal_load: bool = Field(
        False, description="Its value per instance follows the traffic each instance is sent "
        "(orders per second per pod), so canary and stable compare only when every instance "
        "takes an equal share: `traffic_split: replicas` (Argo's canary without "
        "trafficRouting, queue consumers). Split by a router's weights (Flagger, Argo "
        "trafficRouting) the check is listed, informational, not judged. Not on a locked "
        "check: a request could switch it off by naming the split.")
    inconclusive_holds: bool = Field(
        True, description="Whether the check's inconclusive answer (too little data, a side "
        "without the series) holds the verdict. false: a secondary check (http's saturation) "
        "that needs more steps than a short analysis has, or a series some apps do not "
        "export: listed, informational, while its fail still fails. An estimate beyond the "
        "tolerance not yet shown, and corrupt data, hold it all the same. Not on a locked "
        "check.")


# What a metric's totals count, plural, as the reasons asking for more data name it: a trading
# canary short of data has too few orders, not requests.
TotalName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z ]*$",
                                 description="What the totals count, plural, as reasons name "
                                 "it (requests, orders, workflow runs).")]


# A metric's own duration (a series' `step`, a share's `recent`), as a config or a request's
# override writes it.
_SPAN = r"^[0-9]+(ms|s|m|h)$"


def _read_span(value: str | None) -> str | None:
    """Read as every analysis reads it: `0s` or `99999999999h` (a request's override) was a
    500 on every analysis instead of a 400 naming it."""
    if value is not None:
        from webhook.models import parse_duration  # models imports this module

        parse_duration(value)
    return value


class RatioMetric(_MetricBase):
    """Two counters, judged as a proportion of requests (error ratio, fill rate)."""

    kind: Literal["ratio"]
    bad: str | None = Field(None, description="PromQL: per-step count of bad events.")
    good: str | None = Field(None, description="PromQL: per-step count of good events.")
    total: str = Field(description="PromQL: per-step count of all events.")
    total_name: TotalName = "requests"
    max_ratio: float | None = Field(
        None, gt=0, lt=1, description="Canary-only limit on the ratio itself (numerator / "
        "total), judged on the window's counts, as the extra check `<name>_limit`: e.g. 0.01 "
        "on failures = a 99 % success floor, whatever stable does.")
    min_ratio: float | None = Field(
        None, gt=0, lt=1, description="Canary-only lower limit on the ratio (e.g. 0.99 on "
        "successes); see max_ratio.")
    absent_numerator: Literal["zero", "missing"] = Field(
        "zero", description="What a step without a numerator sample means. zero (default): "
        "0 events (a counter of bad events appears only once one happens). missing: the "
        "numerator query answers an explicit 0 wherever it can count (e.g. `… or (0 * sum("
        "<the counter with the counted label present>))`), so a side whose numerator query "
        "returns no series at all while its total shows traffic cannot count its events: "
        "the check is inconclusive, naming the side and the query, instead of reading zero "
        "(a label the series do not carry).")
    absent_hint: str = Field(
        "", max_length=300, description="With absent_numerator: missing, what to check when "
        "the numerator finds no series, said in the reason (the config knows which of its "
        "vars names the label counted by; the judge does not).")

    @model_validator(mode="after")
    def _one_numerator(self) -> RatioMetric:
        if (self.bad is None) == (self.good is None):
            raise ValueError("a ratio metric needs exactly one of `bad` or `good`")
        if (self.min_ratio is not None and self.max_ratio is not None
                and self.min_ratio >= self.max_ratio):
            raise ValueError("min_ratio must be below max_ratio")
        return self

    def queries(self) -> dict[str, str]:
        numerator = self.bad if self.bad is not None else self.good
        assert numerator is not None
        return {"numerator": numerator, "total": self.total}


class TailShare(BaseModel):
    """The share of requests slower than a bucket bound, judged like a `ratio`
    (webhook/judge/tailshare.py): what histogram buckets can always decide."""

    model_config = ConfigDict(extra="forbid")
    bound: float | Literal["auto"] = Field(
        "auto", description="One of the histogram's bucket bounds, in its unit (seconds, or "
        "milliseconds with `unit: ms`); auto: the smallest "
        "bound the stable exceeded in at most `max_share` of its requests before the rollout.")
    max_share: float = Field(0.01, gt=0, lt=0.5)
    tolerance: Tolerance = Field(
        default_factory=lambda: Tolerance(relative=0.5, absolute=0.002),
        description="Allowed rise of the share: relative to the stable's share, or absolute "
        "(0.002 = 0.2 percentage points).")

    @model_validator(mode="after")
    def _positive_bound(self) -> TailShare:
        if self.bound != "auto" and not (isinstance(self.bound, float) and self.bound > 0
                                         and self.bound != float("inf")):
            raise ValueError("tail.bound must be a finite bucket bound in seconds, or auto")
        return self


class HistogramMetric(_MetricBase):
    """Prometheus histogram buckets; the query must return one series per `le`."""

    kind: Literal["histogram"]
    query: str = Field(description="PromQL: per-step bucket increments, `sum by (le) (…)`.")
    quantiles: list[float] = Field(default_factory=lambda: [0.95, 0.99], min_length=1)
    unit: Literal["s", "ms"] = Field(
        "s", description="Unit of the bucket bounds (`le`), and so of tolerance.absolute: "
        "Istio's and Linkerd's histograms are in milliseconds.")
    min_tail: float = Field(
        10, ge=1, description="Expected requests above the quantile needed on each side.")
    tail: TailShare | None = Field(
        None, description="Also judge the share of requests above a bucket bound (check "
        "`<name>_tail`). With it, a quantile the bucket layout cannot resolve is reported as "
        "informational instead of holding the verdict.")
    total_name: TotalName = "requests"

    @model_validator(mode="after")
    def _quantiles_in_range(self) -> HistogramMetric:
        if any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must be strictly between 0 and 1, e.g. 0.99")
        return self

    @field_validator("quantiles")
    @classmethod
    def _few_quantiles(cls, quantiles: list[float]) -> list[float]:
        """Each quantile is a check with its own sequential tests over every step: 20,000 of
        them (a request's override) held a worker 85 s and 2.3 GB; a repeated one is the same
        check twice."""
        if len(quantiles) > MAX_QUANTILES:
            raise ValueError(f"{len(quantiles):,} quantiles; at most {MAX_QUANTILES} per "
                             "metric (judge the ones you act on, e.g. [0.95, 0.99])")
        if len(set(quantiles)) < len(quantiles):
            raise ValueError("each quantile at most once")
        return quantiles

    def queries(self) -> dict[str, str]:
        return {"buckets": self.query}


class SeriesMetric(_MetricBase):
    """Any PromQL with one value per step (gauge, rate, quantile), canary vs stable."""

    kind: Literal["series"]
    query: str = Field(description="PromQL: one value per step for the side in {{selector}}.")
    test: Literal["paired", "kayenta"] = Field(
        "paired", description="paired: autocorrelation-aware (default); kayenta: Kayenta's "
        "Mann-Whitney classification, for migrating configs (no false-failure guarantee).")
    min_points: int = Field(
        10, ge=2, description="Steps with both sides needed before the series is judged.")
    instance_label: str | None = Field(
        None, pattern=r"^([a-zA-Z_][a-zA-Z0-9_]*|\{\{\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\}\})$",
        description="Per-instance values: the query returns one series per instance, keyed by "
        "this label (a name, or a {{var}} holding one, e.g. {{instance_label}}), and the step's "
        "value is their mean. A side whose series lack the label is inconclusive, naming it.")
    step: str | None = Field(
        None, pattern=_SPAN, description="Query step for this metric alone "
        "(e.g. the scrape interval, 15s), so a gauge gets more points than the window's step "
        "gives; default: the window's step.")
    unit: Literal["", "s", "ms", "%"] = Field(
        "", description="How the values are shown (reasons, the text table, the report "
        "page): s or ms as a duration (CPU seconds per request read 2.5ms), % for a "
        "fraction; tolerance.absolute is in the values' own unit all the same.")
    label: str = Field(
        "", max_length=40, pattern=r"^[A-Za-z0-9 %/._-]*$", description="What one value is, "
        "as reasons and the report page name it (`CPU per request`); default: none.")

    @field_validator("step")
    @classmethod
    def _a_step(cls, value: str | None) -> str | None:
        return _read_span(value)

    def queries(self) -> dict[str, str]:
        return {"values": self.query}


class ThresholdMetric(_MetricBase):
    """A bound on the canary alone (P&L impact, saturation): no comparison with stable."""

    kind: Literal["threshold"]
    query: str = Field(description="PromQL: one value per step for the canary.")
    min: float | None = None
    max: float | None = None
    aggregate: Literal["max", "min", "mean", "last", "p95", "p99"] = "max"
    absolute: bool = Field(False, description="Bound |value| (losses and gains alike).")
    min_points: int = Field(1, ge=1)
    max_missing: int | None = Field(
        None, ge=0, description="Steps without a canary sample, or with a missed scrape, "
        "tolerated once it has reported (0: must report every scrape, e.g. an availability "
        "gauge). Needs `samples`, and a `query` reading every sample of the step.")
    samples: str | None = Field(
        None, description="PromQL: samples per series and step, `count_over_time(…[{{step}}])` "
        "without aggregation; a step with fewer than the series' usual count missed a scrape.")

    @model_validator(mode="after")
    def _a_bound(self) -> ThresholdMetric:
        if self.min is None and self.max is None:
            raise ValueError("a threshold metric needs `min`, `max` or both")
        if self.max_missing is not None:
            # "Must hold the whole window" is about every sample: a value read at step points
            # only misses whatever happened between two of them.
            over_time = "min_over_time" if self.max is None else "max_over_time"
            if "step" not in _LANGUAGE.placeholders(self.query) or "_over_time" not in self.query:
                raise ValueError(
                    f"metric {self.name}: with max_missing, `query` must read every sample of "
                    f"each step, e.g. min({over_time}(gauge{{ {{{{selector}}}} }}[{{{{step}}}}]))")
            if self.samples is None:
                raise ValueError(
                    f"metric {self.name}: with max_missing, give `samples`, e.g. "
                    "count_over_time(gauge{ {{selector}} }[{{step}}]), so that a missed scrape "
                    "counts as missing, not as up")
        return self

    def queries(self) -> dict[str, str]:
        if self.samples is not None:
            return {"values": self.query, "samples": self.samples}
        return {"values": self.query}


class EventsMetric(_MetricBase):
    """A zero-tolerance counter (adverse events, compliance violations): per-step counts."""

    kind: Literal["events"]
    query: str = Field(description="PromQL: per-step count of events, each counted once: the "
                       "change of the counter's last sample since the step before, as the "
                       "built-in configs write it; `increase(…[{{step}}])` misses what changed "
                       "between the last scrape of one step and the first of the next.")
    total: str | None = Field(None, description="PromQL: per-step requests, so that zero "
                              "events on zero traffic stays inconclusive.")
    total_name: TotalName = "requests"
    allowed: float = Field(0, ge=0)
    critical: bool = True
    min_total: float = Field(0, ge=0)

    def queries(self) -> dict[str, str]:
        out = {"events": self.query}
        if self.total:
            out["total"] = self.total
        return out


class ShareMetric(_MetricBase):
    """The canary's share of both sides' requests lately against before: is it still serving
    (request-rate sanity)? See `webhook.judge.share`."""

    kind: Literal["share"]
    total: str = Field(description="PromQL: per-step count of requests on the side in "
                       "{{selector}} (the error ratio's `total`: the same query is sent once).")
    total_name: TotalName = "requests"
    recent: str = Field(
        "2m", pattern=_SPAN, description="How far back \"lately\" reaches: "
        "the canary's share over the window's last steps covering this span is compared with "
        "its share before them (at least one step).")
    direction: Literal["decrease"] = "decrease"
    tolerance: Tolerance = Field(
        default_factory=lambda: Tolerance(relative=0.8), description="`relative`: the fall of "
        "the canary's share (in odds) tolerated, below 1; 0.8 fails a canary serving less than "
        "a fifth of its share before.")
    critical: bool = False

    @field_validator("recent")
    @classmethod
    def _a_span(cls, value: str) -> str | None:
        return _read_span(value)

    @model_validator(mode="after")
    def _a_fall(self) -> ShareMetric:
        if not 0 < self.tolerance.relative < 1 or self.tolerance.absolute:
            raise ValueError(f"metric {self.name}: a share's tolerance is `relative` only, "
                             "above 0 and below 1 (0.8: a fall to a fifth of its share fails)")
        return self

    def queries(self) -> dict[str, str]:
        return {"total": self.total}


MetricSpec = Annotated[
    RatioMetric | HistogramMetric | SeriesMetric | ThresholdMetric | EventsMetric | ShareMetric,
    Field(discriminator="kind"),
]
# The kinds, read off the union: each has its module under webhook/kinds/.
METRIC_KINDS: tuple[str, ...] = tuple(
    get_args(cls.model_fields["kind"].annotation)[0] for cls in get_args(get_args(MetricSpec)[0]))


class ConfigDefaults(BaseModel):
    """Defaults for the request fields. Unset alpha: the server's CANARY_JUDGE_DEFAULT_ALPHA."""

    model_config = ConfigDict(extra="forbid")
    alpha: float | None = Field(None, ge=MIN_ALPHA, lt=0.5)
    mode: Mode = "sequential"
    lookback: str | None = None
    warmup: str | None = Field(None, description="Skip this long after the canary's first "
                               "traffic (cold caches, JIT): e.g. 2m.")
    step: str | None = None
    _seconds: dict[str, float] = PrivateAttr(default_factory=dict)

    @field_validator("lookback", "warmup", "step")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        """Parsed at load, so a typo (`1 minute`) is a config error, not a 500 per request."""
        if value is None:
            return None
        from webhook.models import parse_duration  # models imports this module

        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError(f"{value!r} is shorter than 1s")
        return value

    def seconds(self, name: Literal["lookback", "warmup", "step"]) -> float | None:
        """A default duration in seconds (validated above when the config loaded)."""
        return self._seconds.get(name)

    def model_post_init(self, context: Any, /) -> None:
        from webhook.models import parse_duration  # models imports this module

        self._seconds = {name: parse_duration(value) for name in ("lookback", "warmup", "step")
                         if (value := getattr(self, name)) is not None}


class Level(BaseModel):
    """How strict one level (e.g. safety_level=high) makes the judge."""

    model_config = ConfigDict(extra="forbid")
    alpha: float | None = Field(None, ge=MIN_ALPHA, lt=0.5)
    tolerance_factor: float = Field(1.0, gt=0, description="Multiplies every tolerance.")
    min_data_factor: float = Field(1.0, gt=0, description="Multiplies every minimum of data.")
    promotion_needs_approval: bool = False


class Levels(BaseModel):
    """A request var (Argo jsonBody vars, Flagger metadata) choosing how strict to be."""

    model_config = ConfigDict(extra="forbid")
    var: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    default: str
    values: dict[str, Level] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_known(self) -> Levels:
        if self.default not in self.values:
            raise ValueError(f"levels.default {self.default!r} is not one of "
                             f"{sorted(self.values)}")
        return self


class Gates(BaseModel):
    """Deployment gates: rules about *when* a change may start or be promoted."""

    model_config = ConfigDict(extra="forbid")
    market_hours: MarketHoursConfig | None = None
    risk_var: str = Field("risk_tolerance", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    default_risk: Literal["low", "medium", "high", "critical"] = "medium"


class ProviderVariant(BaseModel):
    """What one provider changes in a config: a mesh exports its own metric names, labels and
    units (Istio `istio_requests_total{response_code}`, milliseconds), so the same judgement
    needs other queries and tolerances. Vars are merged over the config's; each entry of
    `metrics` replaces fields of the config's metric of that name, and `null` leaves the
    metric out where the provider's metrics cannot judge it (http's `restarts` reads the
    app's own counter, which a mesh's proxy does not restart with)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    vars: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, dict[str, Any] | None] = Field(default_factory=dict)


class CheckLock(BaseModel):
    """One locked check: a request may not disable it or make it more lenient."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    max_loosening: float = Field(
        1.0, ge=1.0, le=100.0, description="The most a request may multiply the check's "
        "tolerances by (1: requests may only tighten them).")


class Locks(BaseModel):
    """The trust boundary: what app teams' requests may not change in this config.

    `checks` names locked metrics (a list, or a map to their CheckLock). `vars` maps a var to
    the values a request may give it besides the config's own (an empty list: fixed).
    Breaking a lock is a 403 naming the check or var (docs/trust-boundary.md).
    """

    model_config = ConfigDict(extra="forbid")
    checks: dict[str, CheckLock] = Field(default_factory=dict)
    vars: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("checks", mode="before")
    @classmethod
    def _list_of_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(name): {} for name in value}
        return {k: ({} if v is None else v) for k, v in value.items()} \
            if isinstance(value, Mapping) else value


class AnalysisConfig(BaseModel):
    """One named analysis: its metrics plus defaults for the request fields."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    description: str = ""
    vars: dict[str, str] = Field(default_factory=dict)
    defaults: ConfigDefaults = Field(default_factory=ConfigDefaults)
    group_weights: dict[str, float] = Field(
        default_factory=dict, description="Score weight per metric group (default 1 each).")
    levels: Levels | None = None
    gates: Gates = Field(default_factory=Gates)
    metrics: list[MetricSpec] = Field(min_length=1)
    providers: dict[Provider, ProviderVariant] = Field(
        default_factory=dict, description="Per provider (istio, linkerd, ...): the vars and "
        "metric fields that differ, e.g. the mesh's metric names and units.")
    _variants: dict[str, AnalysisConfig] = PrivateAttr(default_factory=dict)
    locks: Locks = Field(default_factory=Locks)

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisConfig:
        names = [m.name for m in self.metrics]
        unknown = sorted(set(self.locks.checks) - set(names))
        if unknown:
            raise ValueError(f"locks.checks names no metric of this config: {unknown}")
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {sorted(dupes)}")
        unjudged = sorted(m.name for m in self.metrics
                          if m.needs_equal_load and m.name in self.locks.checks)
        if unjudged:
            raise ValueError(f"locked metrics cannot set needs_equal_load (a request naming "
                             f"traffic_split: weights would switch them off): {unjudged}")
        unheld = sorted(m.name for m in self.metrics
                        if not m.inconclusive_holds and m.name in self.locks.checks)
        if unheld:
            raise ValueError(f"locked metrics cannot set inconclusive_holds: false (too "
                             f"little data on them would let the verdict pass): {unheld}")
        for metric in self.metrics:
            for template in metric.queries().values():
                if problem := _LANGUAGE.template_problem(template):
                    raise ValueError(f"metric {metric.name}: {problem}")
        _check_renders(self)
        for provider, variant in self.providers.items():
            self._variants[provider] = _build_variant(self, provider, variant)
        return self

    def for_provider(self, provider: str | None) -> AnalysisConfig:
        """The config as judged for `provider`: its variant, or itself when it has none."""
        if provider is None:
            return self
        return self._variants.get(provider, self)

    def var_names(self) -> set[str]:
        """Every var this config reads (call it on `for_provider(...)` for a provider's
        variant): query placeholders, the level and gate vars. A caller's key outside this set
        is a typo, not a var."""
        names: set[str] = set()
        for metric in self.metrics:
            for template in metric.queries().values():
                names |= _LANGUAGE.placeholders(template)
        names -= {"selector", "step"}
        if self.levels is not None:
            names.add(self.levels.var)
        if self.gates.market_hours is not None:
            names |= {self.gates.risk_var, "approved_revision"}
        if self.levels is not None and any(
                level.promotion_needs_approval for level in self.levels.values.values()):
            names.add("approved_revision")
        return names


def _check_renders(config: AnalysisConfig) -> None:
    """Every query renders with the config's vars (a var a caller must give gets a stand-in),
    so a bad default var value is a load error instead of a 400 on every request."""
    for metric in config.metrics:
        for role, template in metric.queries().items():
            needed = _LANGUAGE.placeholders(template) - {"selector", "step"}
            values = {name: config.vars.get(name, "given_by_caller") for name in needed}
            try:
                _LANGUAGE.render(template, values, _LANGUAGE.selector({"a": "b"}, "selector"),
                                 60.0, field=f"metrics.{metric.name}.{role}")
            except QueryLanguageError as exc:
                raise ValueError(f"metric {metric.name}.{role}: {exc}") from exc


def _build_variant(config: AnalysisConfig, provider: str,
                   variant: ProviderVariant) -> AnalysisConfig:
    known = {m.name for m in config.metrics}
    unknown = sorted(set(variant.metrics) - known)
    if unknown:
        raise ValueError(f"providers.{provider}.metrics: no metric {unknown[0]!r} in this "
                         f"config (it has {', '.join(sorted(known))})")
    data = config.model_dump(exclude={"providers"})
    data["vars"] = {**config.vars, **variant.vars}
    dropped = sorted(name for name, fields in variant.metrics.items() if fields is None)
    locked = [name for name in dropped if name in config.locks.checks]
    if locked:
        raise ValueError(f"providers.{provider}.metrics: {locked[0]!r} is locked and cannot be "
                         "left out for a provider")
    data["metrics"] = [{**m, **(variant.metrics.get(m["name"]) or {}), "name": m["name"]}
                       for m in data["metrics"] if m["name"] not in dropped]
    try:
        return AnalysisConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"providers.{provider}: {describe_error(exc)}") from exc


def describe_error(exc: Exception) -> str:
    """One line naming the field and the fix, for /v1/configs, /readyz and the log."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:3]:
            loc = ".".join(str(p) for p in error["loc"]
                           if not str(p).startswith(("function-", "tagged-union")))
            msg = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                msg = "unknown field; check its spelling"
            parts.append(f"{loc}: {msg}" if loc else msg)
        more = f" (and {len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
        return "; ".join(parts) + more
    return " ".join(str(exc).split())


@dataclass
class ConfigRegistry:
    """What the server knows: valid configs by name, and the files that failed to load."""

    configs: dict[str, AnalysisConfig] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # Config names whose file failed to load, with the error: requests for them are refused
    # (a built-in of the same name is not silently used instead of the operator's file).
    broken: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> AnalysisConfig | None:
        return self.configs.get(name)


def parse_config(data: Any, origin: str) -> AnalysisConfig:
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected a mapping at the top level")
    return AnalysisConfig.model_validate(data)


def _load_file(registry: ConfigRegistry, text: str, origin: str) -> None:
    data: Any = None
    try:
        data = yaml.safe_load(text)
        config = parse_config(data, origin)
    except (yaml.YAMLError, ValueError, ValidationError) as exc:
        name = data.get("name") if isinstance(data, Mapping) else None
        named = f"config {name}: " if isinstance(name, str) else ""
        registry.errors[origin] = (named + describe_error(exc))[:1000]
        log.error("invalid analysis config %s: %s", origin, registry.errors[origin])
        if isinstance(name, str):
            registry.configs.pop(name, None)
            registry.broken[name] = f"{origin}: {registry.errors[origin]}"
        return
    registry.configs[config.name] = config
    registry.sources[config.name] = origin
    registry.broken.pop(config.name, None)


def load_registry(config_dir: Path | None) -> ConfigRegistry:
    """Built-ins first, then the directory's files (a file may replace a built-in by name)."""
    registry = ConfigRegistry()
    builtin = resources.files("webhook") / "configs"
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            _load_file(registry, entry.read_text(), f"builtin:{entry.name}")
    if config_dir is not None:
        if not config_dir.is_dir():
            registry.errors[str(config_dir)] = "config directory does not exist"
            return registry
        # ConfigMap mounts hold `..data` symlinked dirs; only the visible *.yaml names count.
        for path in sorted(config_dir.iterdir()):
            if path.suffix in (".yaml", ".yml") and not path.name.startswith("."):
                _load_file(registry, path.read_text(), str(path))
    return registry
