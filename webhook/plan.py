"""Every range query one analysis needs, written in the source's query language."""

from __future__ import annotations

from collections.abc import Mapping

from webhook import kinds
from webhook.configs import MetricSpec
from webhook.resolve import AnalysisRequestError, ResolvedWindow
from webhook.sources import query_language
from webhook.sources.base import QueryKey, QueryLanguage, QueryLanguageError, RangeQuery


def plan_queries(specs: list[MetricSpec], selectors: Mapping[str, str], vars_: Mapping[str, str],
                 window: ResolvedWindow, language: QueryLanguage | None = None) -> list[RangeQuery]:
    """Every range query the analysis needs; evaluation at start+step … end covers (start, end]."""
    language = language or query_language()
    queries = []
    for spec in specs:
        step = kinds.metric_step(spec, window.step)
        for role, template in kinds.queries(spec).items():
            for side in kinds.sides(spec):
                try:
                    expr = language.render(template, vars_, selectors[side], step,
                                           field=f"metrics.{spec.name}.{role}")
                except QueryLanguageError as exc:
                    raise AnalysisRequestError(exc.message, exc.field) from exc
                queries.append(RangeQuery(
                    key=QueryKey(spec.name, side, role), expr=expr,
                    start=window.start + step, end=window.end, step=step,
                    metric=spec.name))
    return queries
