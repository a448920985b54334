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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from webhook import promql
from webhook.gates.market_hours import MarketHoursConfig

log = logging.getLogger(__name__)

Direction = Literal["increase", "decrease", "either"]
Mode = Literal["fixed", "sequential"]


class Tolerance(BaseModel):
    """A change smaller than this does not matter in practice, however significant it is.

    The allowed change is the larger of `relative` × the stable value and `absolute` (in the
    metric's own unit), so a zero-error stable side still has a meaningful bound.
    """

    model_config = ConfigDict(extra="forbid")
    relative: float = Field(0.0, ge=0)
    absolute: float = Field(0.0, ge=0)


class _MetricBase(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
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
    alpha: float | None = Field(None, gt=0, lt=0.5)


class RatioMetric(_MetricBase):
    """Two counters, judged as a proportion of requests (error ratio, fill rate)."""

    kind: Literal["ratio"]
    bad: str | None = Field(None, description="PromQL: per-step count of bad events.")
    good: str | None = Field(None, description="PromQL: per-step count of good events.")
    total: str = Field(description="PromQL: per-step count of all events.")

    @model_validator(mode="after")
    def _one_numerator(self) -> RatioMetric:
        if (self.bad is None) == (self.good is None):
            raise ValueError("a ratio metric needs exactly one of `bad` or `good`")
        return self

    def queries(self) -> dict[str, str]:
        numerator = self.bad if self.bad is not None else self.good
        assert numerator is not None
        return {"numerator": numerator, "total": self.total}


class HistogramMetric(_MetricBase):
    """Prometheus histogram buckets; the query must return one series per `le`."""

    kind: Literal["histogram"]
    query: str = Field(description="PromQL: per-step bucket increments, `sum by (le) (…)`.")
    quantiles: list[float] = Field(default_factory=lambda: [0.95, 0.99], min_length=1)
    min_tail: float = Field(
        10, ge=1, description="Expected requests above the quantile needed on each side.")

    @model_validator(mode="after")
    def _quantiles_in_range(self) -> HistogramMetric:
        if any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must be strictly between 0 and 1, e.g. 0.99")
        return self

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
        20, ge=2, description="Steps with both sides needed: fewer cannot tell autocorrelation "
        "from a shift.")

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
        None, ge=0, description="Steps without a canary sample tolerated once it has "
        "reported (0: must report every step, e.g. an availability gauge).")

    @model_validator(mode="after")
    def _a_bound(self) -> ThresholdMetric:
        if self.min is None and self.max is None:
            raise ValueError("a threshold metric needs `min`, `max` or both")
        return self

    def queries(self) -> dict[str, str]:
        return {"values": self.query}

    def sides(self) -> tuple[str, ...]:
        return ("canary",)


class EventsMetric(_MetricBase):
    """A zero-tolerance counter (adverse events, compliance violations): per-step counts."""

    kind: Literal["events"]
    query: str = Field(description="PromQL: per-step count of events, `sum(increase(…))`.")
    total: str | None = Field(None, description="PromQL: per-step requests, so that zero "
                              "events on zero traffic stays inconclusive.")
    allowed: float = Field(0, ge=0)
    critical: bool = True
    min_total: float = Field(0, ge=0)

    def queries(self) -> dict[str, str]:
        out = {"events": self.query}
        if self.total:
            out["total"] = self.total
        return out


MetricSpec = Annotated[
    RatioMetric | HistogramMetric | SeriesMetric | ThresholdMetric | EventsMetric,
    Field(discriminator="kind"),
]
METRIC_KINDS = ("ratio", "histogram", "series", "threshold", "events")


def metric_sides(spec: MetricSpec) -> tuple[str, ...]:
    """Which sides a metric is queried for: canary-only limits skip the stable side."""
    sides = getattr(spec, "sides", None)
    return sides() if callable(sides) else ("canary", "stable")


class ConfigDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    mode: Mode = "sequential"
    lookback: str | None = None
    warmup: str | None = Field(None, description="Skip this long after the canary's first "
                               "traffic (cold caches, JIT): e.g. 2m.")
    step: str | None = None


class Level(BaseModel):
    """How strict one level (e.g. safety_level=high) makes the judge."""

    model_config = ConfigDict(extra="forbid")
    alpha: float | None = Field(None, gt=0, lt=0.5)
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

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisConfig:
        names = [m.name for m in self.metrics]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {sorted(dupes)}")
        for metric in self.metrics:
            for template in metric.queries().values():
                if "selector" not in promql.placeholders(template):
                    raise ValueError(f"metric {metric.name}: every query must place "
                                     "{{selector}} (the canary's or stable's matchers)")
        return self


@dataclass
class ConfigRegistry:
    """What the server knows: valid configs by name, and the files that failed to load."""

    configs: dict[str, AnalysisConfig] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> AnalysisConfig | None:
        return self.configs.get(name)


def parse_config(data: Any, origin: str) -> AnalysisConfig:
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected a mapping at the top level")
    return AnalysisConfig.model_validate(data)


def _load_file(registry: ConfigRegistry, text: str, origin: str) -> None:
    try:
        config = parse_config(yaml.safe_load(text), origin)
    except (yaml.YAMLError, ValueError, ValidationError) as exc:
        registry.errors[origin] = " ".join(str(exc).split())[:1000]
        log.error("invalid analysis config %s: %s", origin, registry.errors[origin])
        return
    registry.configs[config.name] = config
    registry.sources[config.name] = origin


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
