"""A verdict as a plain-text table, for a person running curl at 3 a.m."""

from __future__ import annotations

from typing import Any


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
        f"config: {body['config']}   mode: {body['mode']}",
        f"window:  {window['start']} .. {window['end']} (step {window['step']:g}s)   "
        f"id: {body['analysis_id']}",
        *([f"note:    {window['note']}"] if window.get("note") else []),
        f"reason:  {body['reason']}",
        "",
    ]
    header = ("check", "verdict", "canary", "stable", "n canary", "n stable", "effect", "p")
    rows = [header]
    for c in body["checks"]:
        rows.append((
            c["name"] + (" (critical)" if c["critical"] else ""), c["verdict"],
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
        lines.append(f"- {c['reason']}")
    if body.get("report"):
        lines += ["", f"report:  {body['report']}"]
    return "\n".join(lines) + "\n"
