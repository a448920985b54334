"""PromQL as the analysis and the Flagger hooks need it: side selectors, rendered queries, the
series a query names, and the pod-name regex of Flagger's `provider: pod`.

`PROMQL` implements `webhook.sources.base.QueryLanguage`; nothing outside this package writes
PromQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from webhook.sources.prometheus import promql

# A name is matched from its first character only (the lookbehind): tried from every character
# of a long run of name characters not followed by `{` (a caller's label value, a var), the
# scan was quadratic, and a 200 KB label value held a worker for hours.
_METRIC_NAME = re.compile(r"(?<![a-zA-Z0-9_:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
# Inside a selector's braces: what ends it, or opens a quoted label value; inside a quoted
# value, what ends it or escapes the next character.
_BRACE_STOP = re.compile(r"[}\"'`]")
_QUOTE_STOP = {q: re.compile(rf"[{q}\\]") for q in "\"'"}


def step_text(step: float) -> str:
    """A step as a PromQL duration (`60s`, `1500ms`), for `{{step}}` in `*_over_time`."""
    return f"{int(step)}s" if float(step).is_integer() else f"{int(step * 1000)}ms"


def pod_selectors(target: str, namespace: Mapping[str, str],
                  field: str) -> tuple[str, str]:
    """Canary and primary pods of a Flagger target by pod name (`T-<rs>-<pod>`,
    `T-primary-<rs>-<pod>`), with the namespace matcher; raises PromQLError (400)."""
    segment = "[0-9a-zA-Z]+"
    escaped = re.escape(target)
    # the namespace is caller data: escaped like every other label value
    extra = "".join(", " + m.render() for m in promql.matchers_from_labels(namespace, field))
    return (f'pod=~"{escaped}-{segment}-{segment}"{extra}',
            f'pod=~"{escaped}-primary-{segment}-{segment}"{extra}')


class PromQL:
    """`QueryLanguage` for Prometheus and the backends that speak its API."""

    def selector(self, side: Mapping[str, str] | str, field: str) -> str:
        if isinstance(side, str):
            matchers = promql.parse_matchers(side, field)
        else:
            matchers = promql.matchers_from_labels(side, field)
        return promql.render_selector(matchers)

    def render(self, template: str, vars_: Mapping[str, str], selector: str, step: float,
               field: str) -> str:
        return promql.render(template, vars_, {"selector": selector, "step": step_text(step)},
                             field=field)

    def placeholders(self, template: str) -> set[str]:
        return promql.placeholders(template)

    def template_problem(self, template: str) -> str | None:
        if "selector" not in promql.placeholders(template):
            return "every query must place {{selector}} (the canary's or stable's matchers)"
        if pin := promql.range_pin(template):
            return (f"`{pin}` resolves to the bounds of each request, not of the window (the "
                    "judge reads only the steps it has not settled yet, and the stable's "
                    "history before a rollout), so each step's value would move from poll to "
                    "poll; write the query per step, or pin an absolute time (`@ 1700000000`)")
        return None

    def label_name_ok(self, name: str) -> bool:
        return promql.LABEL_NAME.fullmatch(name) is not None

    def describe(self, expr: str, selector: str) -> str:
        shown = _selectors(expr, selector)
        if shown:
            return ", ".join(shown)
        series = ", ".join(dict.fromkeys(_METRIC_NAME.findall(expr)))
        return f"{series}{{{selector}}}"

    def pinned_value(self, side: Mapping[str, str] | str, label: str) -> str | None:
        if not isinstance(side, str):  # a label map pins each of its labels: no parse needed
            value = side.get(label)
            return None if value is None else str(value)
        values = {m.value for m in promql.parse_matchers(side, "canary")
                  if m.name == label and m.op == "="}
        return values.pop() if len(values) == 1 else None

    def callers_mistake(self, rejection: str, sides: Mapping[str, Mapping[str, str] | str],
                        vars_: Mapping[str, str]) -> promql.PromQLError | None:
        return promql.rejected_regex(rejection, sides, vars_)

    def activity(self, parts: Sequence[tuple[str, bool]]) -> str | None:
        return promql.activity(parts)


PROMQL = PromQL()


def _selectors(expr: str, selector: str) -> list[str]:
    """Each distinct `name{matchers}` of a rendered query that holds the side's `selector`,
    with the config's own matchers beside it (`workflow="admission"`): the query a person can
    run to see what is missing. Without them the reason showed a query that found series,
    and a label value the application spells otherwise stayed invisible.

    One pass over `expr` (a 200 KB label value must not make it quadratic): each selector is
    scanned once, quoted values (which may hold braces) skipped whole."""
    shown: dict[str, None] = {}
    pos = 0
    while (found := _METRIC_NAME.search(expr, pos)) is not None:
        end = _closing_brace(expr, found.end())
        if end is None:
            break
        matchers = expr[found.end():end].strip()
        if selector in matchers:
            shown[f"{found.group(1)}{{{matchers}}}"] = None
        pos = end + 1
    return list(shown)


def _closing_brace(expr: str, pos: int) -> int | None:
    """The index of the `}` closing the selector whose body starts at `pos`; None if none."""
    while (stop := _BRACE_STOP.search(expr, pos)) is not None:
        char = stop.group()
        if char == "}":
            return stop.start()
        pos = stop.end()
        if char == "`":  # raw string: no escapes
            close = expr.find("`", pos)
            if close < 0:
                return None
            pos = close + 1
            continue
        while (inner := _QUOTE_STOP[char].search(expr, pos)) is not None:
            pos = inner.end()
            if inner.group() == char:
                break
            pos += 1  # a backslash escapes the next character
        else:
            return None
    return None
