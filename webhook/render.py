"""A verdict as a plain-text table, for a person running curl at 3 a.m."""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 control characters and DEL: a label value (the request's, or a cohort's from the
# data) could otherwise reach the on-call's terminal as an escape sequence that clears the
# screen or moves the cursor over the verdict line, or as a line break that forges one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _safe(text: Any) -> str:
    """`text` with every control character shown as its \\xNN escape, so it prints as what it
    is and the table's lines stay the only lines."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _num(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{value * 100:+.1f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def verdict_text(body: dict[str, Any]) -> str:
    window = body["window"]
    lines = [
        f"verdict: {body['verdict'].upper()}   score: {body['score']:g}   "
        f"config: {_safe(body['config'])}   mode: {body['mode']}",
        f"window:  {window['start']} .. {window['end']} (step {window['step']:g}s)   "
        f"id: {body['analysis_id']}",
        *([f"note:    {_safe(window['note'])}"] if window.get("note") else []),
        f"reason:  {_safe(body['reason'])}",
        "",
    ]
    header = ("check", "verdict", "canary", "stable", "n canary", "n stable", "effect", "p")
    rows = [header]
    for c in body["checks"]:
        rows.append((
            _safe(c["name"]) + (" (critical)" if c["critical"] else ""), c["verdict"],
            _num(c["canary"]["value"]), _num(c["stable"]["value"]),
            _num(c["canary"]["n"] and round(c["canary"]["n"])),
            _num(c["stable"]["n"] and round(c["stable"]["n"])),
            _num(c["effect"], pct=True), _num(c["p_value"]),
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    lines.append("")
    for c in body["checks"]:
        lines.append(f"- {_safe(c['reason'])}")
    if body.get("report"):
        lines += ["", f"report:  {_safe(body['report'])}"]
    return "\n".join(lines) + "\n"
