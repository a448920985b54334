"""Every range query one analysis needs, written in the source's query language.

The queries' text depends on the metrics, the sides' selectors, the vars and the step, not on
the window: `plan_exprs` renders it once per analysis (and remembers recent renders, as every
poll of a rollout asks the same), `over` puts it on a window (a sequential poll cuts its window
once the rollout's start is known).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from webhook import kinds
from webhook.configs import MetricSpec
from webhook.resolve import AnalysisRequestError, ResolvedWindow
from webhook.sources import query_language
from webhook.sources.base import QueryKey, QueryLanguage, QueryLanguageError, RangeQuery

MEMO_SIZE = 1024  # renders remembered: a few per rollout polled
MEMO_INPUT = 2048  # characters of vars and selectors beyond which a render is not remembered


@dataclass(frozen=True)
class PlannedQuery:
    """One query's text and grid step, before it is placed on a window."""

    key: QueryKey
    expr: str
    step: float


def plan_exprs(specs: list[MetricSpec], selectors: Mapping[str, str], vars_: Mapping[str, str],
               window_step: float, language: QueryLanguage | None = None
               ) -> list[PlannedQuery]:
    """Every query's text, in the order `plan_queries` lists them."""
    language = language or query_language()
    var_items = tuple(vars_.items())
    render = _render_cached if _memoizable(language, var_items, selectors) else _render_plain
    planned = []
    for spec in specs:
        step = kinds.metric_step(spec, window_step)
        for role, template in kinds.queries(spec).items():
            for side in kinds.sides(spec):
                try:
                    expr = render(language, template, var_items, selectors[side], step,
                                  f"metrics.{spec.name}.{role}")
                except QueryLanguageError as exc:
                    raise AnalysisRequestError(exc.message, exc.field) from exc
                planned.append(PlannedQuery(QueryKey(spec.name, side, role), expr, step))
    return planned


def over(planned: Sequence[PlannedQuery], window: ResolvedWindow) -> list[RangeQuery]:
    """The planned queries over `window`: evaluation at start+step … end covers (start, end]."""
    return [RangeQuery(key=p.key, expr=p.expr, start=window.start + p.step, end=window.end,
                       step=p.step, metric=p.key.metric) for p in planned]


def plan_queries(specs: list[MetricSpec], selectors: Mapping[str, str], vars_: Mapping[str, str],
                 window: ResolvedWindow, language: QueryLanguage | None = None) -> list[RangeQuery]:
    """Every range query the analysis needs over `window`."""
    return over(plan_exprs(specs, selectors, vars_, window.step, language), window)


def _render_plain(language: QueryLanguage, template: str,
                  var_items: tuple[tuple[str, str], ...], selector: str, step: float,
                  field: str) -> str:
    return language.render(template, dict(var_items), selector, step, field=field)


def _memoizable(language: QueryLanguage, var_items: tuple[tuple[str, str], ...],
                selectors: Mapping[str, str]) -> bool:
    """Small, hashable inputs only: callers send the vars and selectors, and the memo must stay
    a few MB whatever they send (MEMO_SIZE entries of at most MEMO_INPUT characters each)."""
    try:
        hash((language, var_items))
    except TypeError:  # a var holding a list, or an unhashable language
        return False
    size = sum(len(k) + len(str(v)) for k, v in var_items) + sum(map(len, selectors.values()))
    return size <= MEMO_INPUT


# A rendering is a pure function of its arguments; a failed one raises and is not remembered.
_render_cached = lru_cache(maxsize=MEMO_SIZE)(_render_plain)
