"""The Prometheus source (also Thanos, Mimir, Cortex, VictoriaMetrics): the HTTP client
(`client`), PromQL's safe construction (`promql`) and the query language the analysis uses
(`selectors.PROMQL`)."""

from webhook.sources.prometheus.client import PrometheusSource
from webhook.sources.prometheus.selectors import PROMQL, PromQL

__all__ = ["PROMQL", "PromQL", "PrometheusSource"]
