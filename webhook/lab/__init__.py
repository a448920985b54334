"""A Prometheus lab: synthetic canary/stable traffic planted into a real, local Prometheus.

Used by the test suite, the demo and the benchmarks so that analysis code runs against real
PromQL semantics on data whose ground truth is known.
"""

from webhook.lab.prometheus import PrometheusLab
from webhook.lab.synth import DEFAULT_BUCKETS, ExtraSeries, TrafficSide, render_openmetrics

__all__ = ["DEFAULT_BUCKETS", "ExtraSeries", "PrometheusLab", "TrafficSide", "render_openmetrics"]
