"""Planning renders each query's text once per analysis and remembers recent renders: the text
is the same as rendering afresh, on any window; a failed render fails every time; and what a
caller sends cannot grow the memo beyond its bound."""

from __future__ import annotations

import pytest

from webhook import plan
from webhook.configs import load_registry
from webhook.resolve import AnalysisRequestError, ResolvedWindow
from webhook.sources import query_language

SELECTORS = {"canary": 'rollouts_pod_template_hash="c1"',
             "stable": 'rollouts_pod_template_hash="s1"'}


def _http():
    config = load_registry(None).get("http")
    assert config is not None
    return config


def test_planned_text_is_the_fresh_render_on_every_window():
    config, language = _http(), query_language()
    whole = ResolvedWindow(start=1_000_000.0, end=1_010_800.0, step=60.0)
    cut = ResolvedWindow(start=1_007_200.0, end=1_010_800.0, step=60.0)
    planned = plan.plan_exprs(config.metrics, SELECTORS, config.vars, 60.0, language)
    for window in (whole, cut):
        queries = plan.over(planned, window)
        assert queries == plan.plan_queries(config.metrics, SELECTORS, config.vars, window)
        for q in queries:
            assert SELECTORS[q.key.side] in q.expr and "{{" not in q.expr
            assert q.start == window.start + q.step and q.end == window.end
        fresh = [language.render(t, config.vars, SELECTORS[side], 60.0, field="x")
                 for spec in config.metrics
                 for t in spec.queries().values()
                 for side in ("canary", "stable")]
        assert sorted(q.expr for q in queries) == sorted(fresh)


def test_a_failed_render_fails_every_time():
    config = _http()
    bad_vars = {**config.vars, "requests_metric": "not a name"}
    for _ in range(2):
        with pytest.raises(AnalysisRequestError, match=r"vars\.requests_metric"):
            plan.plan_exprs(config.metrics, SELECTORS, bad_vars, 60.0, query_language())


def test_large_caller_input_is_not_remembered():
    config = _http()
    huge = {"canary": 'rollouts_pod_template_hash="' + "c" * plan.MEMO_INPUT + '"',
            "stable": SELECTORS["stable"]}
    before = plan._render_cached.cache_info().currsize
    queries = plan.plan_exprs(config.metrics, huge, config.vars, 60.0, query_language())
    assert any(huge["canary"] in q.expr for q in queries)
    assert plan._render_cached.cache_info().currsize == before
    assert plan._render_cached.cache_info().maxsize == plan.MEMO_SIZE
