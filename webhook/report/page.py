"""The report page: verdict and reason on top, the checks table, then a chart per check.

One self-contained HTML document: inline CSS and inline SVG, no script, no font, no image
or style sheet fetched from anywhere, so it opens the same behind any proxy, from a saved
file, and on paper. Nothing is stored: the page is recomputed from the query each time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from webhook.judge.types import CheckResult
from webhook.render import count_text, effect_text, value_text
from webhook.report.svg import chart

_CSS = """
:root { --pass: #2b8a3e; --fail: #c92a2a; --inconclusive: #e67700; --ink: #212529;
        --muted: #5c6670; --line: #dee2e6; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; padding: 20px 24px 40px; max-width: 1000px; }
h1 { font-size: 1.25rem; margin: 0 0 8px; font-weight: 600; }
h2 { font-size: 1.1rem; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { font-size: 1rem; margin: 0 0 4px; }
.banner { border-left: 8px solid var(--muted); padding: 10px 16px; background: #f8f9fa;
          margin: 8px 0 16px; }
.banner.pass { border-color: var(--pass); } .banner.fail { border-color: var(--fail); }
.banner.inconclusive { border-color: var(--inconclusive); }
.verdict { font-size: 1.6rem; font-weight: 700; margin: 0; letter-spacing: .02em; }
.reason { margin: 4px 0 0; font-size: 1.02rem; }
.meta { color: var(--muted); font-size: .88rem; margin: 6px 0 0; }
.chip { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff;
        font-size: .8rem; font-weight: 600; text-transform: uppercase; }
.chip.pass { background: var(--pass); } .chip.fail { background: var(--fail); }
.chip.inconclusive { background: var(--inconclusive); }
.pass .verdict { color: var(--pass); } .fail .verdict { color: var(--fail); }
.inconclusive .verdict { color: var(--inconclusive); }
table { border-collapse: collapse; width: 100%; font-size: .88rem; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num small.of { display: block; color: var(--muted); white-space: normal; }
td:first-child { overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; }
.checks { display: grid; grid-template-columns: 1fr; gap: 18px; }
figure.check { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
figure.check svg { width: 100%; max-width: 900px; height: auto; display: block; }
figcaption p { margin: 2px 0 6px; font-size: .88rem; }
figcaption .test { color: var(--muted); font-size: .8rem; }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; fill: var(--ink); }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .legend { font-size: 12px; }
svg .axis-label { font-size: 11px; fill: var(--muted); }
svg .axis { stroke: #868e96; stroke-width: 1; }
svg .grid { stroke: #e9ecef; stroke-width: 1; }
svg .empty { font-size: 13px; fill: var(--muted); }
nav { font-size: .85rem; color: var(--muted); }
nav a { color: #1864ab; }
footer { margin-top: 28px; color: var(--muted); font-size: .8rem; }
@media print {
  @page { size: A4; margin: 12mm; }
  body { max-width: none; padding: 0; font-size: 11pt; }
  nav { display: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .checks { display: block; }
  figure.check { break-inside: avoid; page-break-inside: avoid; margin-bottom: 8px; }
  figure.check svg { max-width: 170mm; }
  table { font-size: 8.5pt; }
  tr { break-inside: avoid; }
  h2 { break-after: avoid; }
}
"""


_DASH = "–"  # a missing number (the text table's `-`)


def _num(value: float | None, unit: str = "") -> str:
    return value_text(value, unit, _DASH)


def _unit(check: CheckResult) -> str:
    return check.trace.unit if check.trace else ""


def _anchor(name: str, index: int) -> str:
    return f"c{index}-" + re.sub(r"[^a-zA-Z0-9_-]+", "-", name).strip("-")[:60]


def _table(checks: Sequence[CheckResult], anchors: Sequence[str]) -> str:
    rows = []
    for check, anchor in zip(checks, anchors, strict=True):
        unit = _unit(check)
        effect = effect_text(check.effect, _DASH)
        low, high = check.interval or (None, None)
        # relative intervals (canary / stable - 1) and proportions read as percentages
        in_pct = "/" in check.interval_of or check.kind == "ratio"
        bound_unit = "%" if in_pct else unit
        interval = "–" if low is None else (
            f"{_num(low, bound_unit)} … {_num(high, bound_unit)}")
        # what the bounds are of, as the JSON's `of` and `level` say: beside a relative effect
        # (+202%) an error ratio's interval is of canary - stable (1.6% … 2.4%, in points)
        of = "" if low is None else escape(check.interval_of) + (
            "" if check.interval_level is None else f", {check.interval_level:.0%}")
        rows.append(
            f'<tr data-check={quoteattr(check.name)} data-verdict="{check.verdict}">'
            f'<td><a href="#{anchor}">{escape(check.name)}</a>'
            f'{" <small>(critical)</small>" if check.critical else ""}'
            f'{" <small>(informational)</small>" if not check.blocking else ""}</td>'
            f'<td><span class="chip {check.verdict}">{check.verdict}</span></td>'
            f'<td class="num">{_num(check.canary.value, unit)}</td>'
            f'<td class="num">{_num(check.stable.value, unit)}</td>'
            f'<td class="num">{count_text(check.canary.n, _DASH)}</td>'
            f'<td class="num">{count_text(check.stable.n, _DASH)}</td>'
            f'<td class="num">{effect}</td><td class="num">{escape(interval)}'
            f'{f"<small class=of>{of}</small>" if of else ""}</td>'
            f'<td class="num">{_num(check.p_value)}</td></tr>')
    return ('<div class="table-wrap"><table class="checks-table"><thead><tr><th>check</th>'
            '<th>verdict</th><th>canary</th><th>stable</th><th>n canary</th><th>n stable</th>'
            '<th>effect</th>'
            '<th>interval</th><th>p</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></div>")


def _figure(check: CheckResult, anchor: str) -> str:
    return (f'<figure class="check" id="{anchor}" data-check={quoteattr(check.name)} '
            f'data-verdict="{check.verdict}"><figcaption>'
            f'<h3>{escape(check.name)} <span class="chip {check.verdict}">{check.verdict}'
            f'</span>{" <small>critical</small>" if check.critical else ""}'
            f'{" <small>informational</small>" if not check.blocking else ""}</h3>'
            f'<p>{escape(check.reason)}</p>'
            f'<p class="test">{escape(check.kind)} · {escape(check.test)}</p></figcaption>'
            f'{chart(check, anchor + "-chart")}</figure>')


def _sections(checks: Sequence[CheckResult], anchors: Sequence[str]) -> str:
    """Checks by group, and within a group by cohort (the whole population first)."""
    groups: dict[str, dict[str, list[str]]] = {}
    for check, anchor in zip(checks, anchors, strict=True):
        cohorts = groups.setdefault(check.group, {})
        cohorts.setdefault(check.cohort, []).append(_figure(check, anchor))
    out = []
    for group, cohorts in groups.items():
        title = "charts" if group == "default" and len(groups) == 1 else f"charts: {group}"
        out.append(f'<section class="group" data-group={quoteattr(group)}>'
                   f'<h2>{escape(title)}</h2>')
        for cohort in sorted(cohorts, key=lambda c: (c != "", c)):
            if cohort:
                out.append(f'<h3 class="cohort">cohort {escape(cohort)}</h3>')
            out.append(f'<div class="checks">{"".join(cohorts[cohort])}</div>')
        out.append("</section>")
    return "".join(out)


def report_html(body: dict[str, Any], checks: Sequence[CheckResult],
                links: dict[str, str] | None = None,
                sides: Mapping[str, str] | None = None) -> str:
    """The whole page for one analysis: `body` is the JSON answer, `checks` its results with
    their per-step traces, `links` other formats of the same query (label → URL), `sides` the
    canary's and the stable's selectors (what was compared)."""
    verdict = body["verdict"]
    window = body["window"]
    anchors = [_anchor(c.name, i) for i, c in enumerate(checks)]
    nav = " · ".join(f'<a href={quoteattr(url)}>{escape(label)}</a>'
                     for label, url in (links or {}).items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(verdict.upper())}: {escape(body["config"])} canary analysis</title>'
        f'<style>{_CSS}</style></head><body>'
        f'<h1>canary-judge · config <code>{escape(body["config"])}</code></h1>'
        f'<div class="banner {verdict}" role="status">'
        f'<p class="verdict" id="verdict" data-verdict="{verdict}">{verdict.upper()}'
        f' <small>score {body["score"]:g}</small></p>'
        f'<p class="reason" id="reason">{escape(body["reason"])}</p>'
        f'<p class="meta">mode {escape(body["mode"])} · judged window {escape(window["start"])}'
        f' … {escape(window["end"])} (step {window["step"]:g}s) · {len(checks)} checks · '
        f'analysis {escape(body["analysis_id"])}</p>'
        + (f'<p class="meta" id="note">{escape(window["note"])}</p>'
           if window.get("note") else "")
        + (f'<p class="meta" id="sides">canary <code>{{{escape(sides["canary"])}}}</code> vs '
           f'stable <code>{{{escape(sides["stable"])}}}</code></p>' if sides else "")
        + '</div>'
        + (f'<nav>same analysis as {nav}</nav>' if nav else "")
        + f'<h2>checks</h2>{_table(checks, anchors)}'
        + _sections(checks, anchors)
        + '<footer>Recomputed from this page\'s query on every load; the server keeps no '
        'state. Charts: values per step (a gap is a step without data); the shaded band is '
        'how far the canary may move from the stable without failing; "evidence" is the '
        'sequential test\'s likelihood ratio against "within the relative tolerance", which '
        'fails the check once it reaches 1/α and the canary\'s difference is beyond the '
        'check\'s tolerance (anytime-valid, so polling often does not inflate false '
        'failures). The evidence is drawn as this load computes it over the steps so far; '
        'its estimate of how clumped errors are uses the whole window, so a poll made '
        'earlier may have seen slightly different values.</footer></body></html>')


def error_html(status: str, message: str, field: str | None = None) -> str:
    """An error answer as a page, for a browser that opened a report link: the status, the
    field to fix and the message, escaped (it quotes the caller's values), in the report's
    own style and with nothing to load or run."""
    named = (f'<p class="meta" id="field">field <code>{escape(field)}</code></p>'
             if field else "")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(status)}: canary analysis</title>'
        f'<style>{_CSS}</style></head><body>'
        '<h1>canary-judge</h1>'
        '<div class="banner fail" role="alert">'
        f'<p class="verdict" id="error">{escape(status)}</p>'
        f'<p class="reason" id="message">{escape(message)}</p>{named}</div>'
        '</body></html>')
