"""A verdict as a plain-text table, for a person running curl at 3 a.m."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.judge.types import CheckResult, fmt_count, fmt_value

# C0 and C1 control characters and DEL: a label value (the request's, or a cohort's from the
# data) could otherwise reach the on-call's terminal as an escape sequence that clears the
# screen or moves the cursor over the verdict line, or as a line break that forges one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: Any) -> str:
    """`text` with every control character shown as its \\xNN escape, so it prints as what it
    is and the table's lines stay the only lines."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


# An error names what to fix in a line, quoting the caller's names and values: a 100 KB
# unknown key came back two or three times over (300 KB answers and log lines for one body).
MAX_WORD = 200
MAX_MESSAGE = 1000
_LONG_WORD = re.compile(rf"\S{{{MAX_WORD + 1},}}")


def _clipped(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def readable(message: str) -> str:
    """`message` with every run of more than MAX_WORD characters without a space (a name or
    value the caller sent) cut short, so the explanation after it survives; then at most
    MAX_MESSAGE characters."""
    if len(message) > MAX_WORD:
        message = _LONG_WORD.sub(lambda m: _clipped(m.group(), MAX_WORD), message)
    return _clipped(message, MAX_MESSAGE)


# The checks table's cells, in the text table and on the report page alike (a missing number
# is `-` in a terminal, `–` on the page): the numbers as the reasons under them print them.
def value_text(value: float | None, unit: str = "", missing: str = "-") -> str:
    """A value in its unit (`fmt_value`: 3.01%, 270.5ms; a p-value as 0.0123)."""
    return missing if value is None else fmt_value(float(value), unit)


def count_text(n: float | None, missing: str = "-") -> str:
    """A count of requests (or runs, events) with thousands separators."""
    return missing if n is None or not math.isfinite(n) else fmt_count(float(n))


def effect_text(effect: float | None, missing: str = "-") -> str:
    """A relative change as a signed percentage (+202.0%)."""
    return missing if effect is None else f"{effect * 100:+.1f}%"


def verdict_text(body: dict[str, Any], checks: Sequence[CheckResult] = (),
                 sides: Mapping[str, str] | None = None) -> str:
    """The table for `body` (the JSON answer); `checks` (its results, traced) give each value
    its unit, so the table reads 3.01% and 270.5ms as the reasons under it and the report page
    do, not 0.03009 and 0.2705; `sides`, the canary's and the stable's selectors, say what was
    compared."""
    window = body["window"]
    units = [c.trace.unit if c.trace is not None else "" for c in checks]
    units += [""] * (len(body["checks"]) - len(units))
    lines = [
        f"verdict: {body['verdict'].upper()}   score: {body['score']:g}   "
        f"config: {printable(body['config'])}   mode: {body['mode']}",
        f"window:  {window['start']} .. {window['end']} (step {window['step']:g}s)   "
        f"id: {body['analysis_id']}",
        *([f"note:    {printable(window['note'])}"] if window.get("note") else []),
        *([f"canary:  {{{printable(sides['canary'])}}}   stable: {{{printable(sides['stable'])}}}"]
          if sides else []),
        f"reason:  {printable(body['reason'])}",
        "",
    ]
    header = ("check", "verdict", "canary", "stable", "n canary", "n stable", "effect", "p")
    rows = [header]
    for c, unit in zip(body["checks"], units, strict=True):
        rows.append((
            printable(c["name"]) + (" (critical)" if c["critical"] else "")
            + ("" if c["blocking"] else " (informational)"), c["verdict"],
            value_text(c["canary"]["value"], unit), value_text(c["stable"]["value"], unit),
            count_text(c["canary"]["n"]), count_text(c["stable"]["n"]),
            effect_text(c["effect"]), value_text(c["p_value"]),
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    lines.append("")
    for c in body["checks"]:
        lines.append(f"- {printable(c['reason'])}")
    if body.get("report"):
        lines += ["", f"report:  {printable(body['report'])}"]
    return "\n".join(lines) + "\n"


def error_text(status: str, message: str, field: str | None = None) -> str:
    """An error answer as lines for a person, as `verdict_text` is for a verdict: what went
    wrong and which field to fix, control characters shown as escapes (a message quotes the
    caller's values)."""
    lines = [f"error:   {printable(status)}"]
    if field:
        lines.append(f"field:   {printable(field)}")
    lines.append(f"message: {printable(message)}")
    return "\n".join(lines) + "\n"
