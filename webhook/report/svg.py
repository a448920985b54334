"""One SVG chart per check, drawn on the server: no JavaScript, no fonts or files to fetch.

The top panel shows what was compared, step by step: canary and stable values, the band the
canary may move in around the stable without failing, and fixed limits. The bottom panel, for
sequential tests, shows the evidence against "the canary is within tolerance" on a log scale
with the 1/alpha line it must reach to fail, and the step where it first did. The chart
carries its own text alternative (<title>, <desc>) for screen readers and for print.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from webhook.judge.types import CheckResult, Trace, fmt_value

WIDTH = 760
LEFT, RIGHT = 78, 16
VALUES_HEIGHT = 190
EVIDENCE_HEIGHT = 110
TOP = 26
GAP = 44
BOTTOM = 30
DAY = 86400.0
CANARY, STABLE, BAND, LIMIT, EVIDENCE, FAIL_LINE = (
    "#d9480f", "#1864ab", "#74c0fc", "#495057", "#6741d9", "#c92a2a")


def _clock(ts: float, trace: Trace | None = None) -> str:
    """UTC wall-clock time of `ts`; with the date too when `trace`'s window is a day or longer,
    where the same hour comes round again and a bare "09:13" names two instants."""
    dated = trace is not None and _spans_days(trace)
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M" if dated else "%H:%M")


def _spans_days(trace: Trace) -> bool:
    """Whether `trace`'s window is a day or longer: its time labels then carry the date."""
    return len(trace.canary) * trace.step >= DAY


def power_of_ten(exponent: float, digits: int = 3) -> str:
    """10**exponent as text; evidence can pass 1e308, where a float overflows."""
    if not math.isfinite(exponent):
        return "n/a" if math.isnan(exponent) else ("∞" if exponent > 0 else "0")
    if exponent < 300:
        return f"{10 ** exponent:.{digits}g}"
    return f"1e+{math.floor(exponent)}"


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values spanning [low, high] (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / count
    if not (math.isfinite(raw) and raw > 0):
        return [low, high]
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


class _Panel:
    """Maps step index and value to pixels inside one panel."""

    def __init__(self, top: float, height: float, steps: int, low: float, high: float) -> None:
        self.top, self.height, self.steps = top, height, max(steps, 1)
        self.low, self.high = low, high if high > low else low + 1.0
        self.width = WIDTH - LEFT - RIGHT

    def x(self, index: float) -> float:
        # Step i covers (t_i - step, t_i]: its point sits at the step's end.
        return LEFT + self.width * (index + 1) / self.steps

    def y(self, value: float) -> float:
        span = self.high - self.low
        frac = (value - self.low) / span if math.isfinite(span) and span > 0 else 0.5
        if not math.isfinite(frac):
            frac = 0.5 if math.isnan(frac) else math.copysign(1.05, frac)
        return self.top + self.height * (1 - min(max(frac, -0.05), 1.05))


def _path(panel: _Panel, values: Sequence[float]) -> str:
    """A polyline broken at missing steps, so a gap is never drawn as a value."""
    parts, pen_down = [], False
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{panel.x(i):.1f},{panel.y(v):.1f}")
        pen_down = True
    if len(parts) == 1:  # a single point: a short tick so it stays visible
        x, y = parts[0][1:].split(",")
        parts.append(f"L{float(x) + 0.1:.1f},{y}")
    return " ".join(parts)


def _band_polygons(panel: _Panel, trace: Trace) -> list[str]:
    """The tolerated range as filled polygons, one per run of steps where it is known."""
    n = len(trace.stable)
    low = list(trace.band_low) or [math.nan] * n
    high = list(trace.band_high) or [math.nan] * n
    polys, run = [], []
    for i in range(n + 1):
        s = trace.stable[i] if i < n else math.nan
        lo = low[i] if i < n and math.isfinite(low[i]) else s
        hi = high[i] if i < n and math.isfinite(high[i]) else s
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            run.append((i, lo, hi))
            continue
        if run:
            top = [f"{panel.x(i):.1f},{panel.y(h):.1f}" for i, _, h in run]
            bottom = [f"{panel.x(i):.1f},{panel.y(lo):.1f}" for i, lo, _ in reversed(run)]
            if len(run) == 1:  # widen a lone step so it shows
                top = [f"{panel.x(run[0][0]) - 2:.1f},{panel.y(run[0][2]):.1f}", top[0]]
            polys.append(" ".join(top + bottom))
            run = []
    return polys


def _bounds_around(trace: Trace) -> list[float]:
    """A quantile's bucket bounds from the one at or below its lowest value to the one at or
    above its highest: all the buckets say of where the values lie."""
    seen = _finite([*trace.canary, *trace.stable])
    if not trace.bucket_bounds or not seen:
        return []
    bounds = trace.bucket_bounds
    low = max((b for b in bounds if b <= min(seen)), default=min(seen))
    high = min((b for b in bounds if b >= max(seen)), default=max(seen))
    return [b for b in bounds if low <= b <= high]


def _value_range(trace: Trace) -> tuple[float, float]:
    values = _finite([*trace.canary, *trace.stable, *trace.band_high, *trace.band_low,
                      *trace.limits])
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    # a quantile's scale reaches the bucket bounds around its values: the buckets place it
    # only between them, and the chart shows how wide that is
    around = _bounds_around(trace)
    if around:
        low, high = min(low, around[0]), max(high, around[-1])
    low = min(low, 0.0) if low >= 0 and low < 0.5 * high else low
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    return (low if low == 0 else low - pad), high + pad


def _legend(items: Sequence[tuple[str, str, str]], y: float) -> list[str]:
    out, x = [], LEFT
    for label, color, kind in items:
        if kind == "band":
            out.append(f'<rect x="{x}" y="{y - 8}" width="18" height="10" fill="{color}" '
                       'fill-opacity="0.35"/>')
        else:
            dash = {"dash": ' stroke-dasharray="5 3"',
                    "dot": ' stroke-dasharray="1 3"'}.get(kind, "")
            out.append(f'<line x1="{x}" y1="{y - 3}" x2="{x + 18}" y2="{y - 3}" '
                       f'stroke="{color}" stroke-width="2.5"{dash}/>')
        out.append(f'<text x="{x + 23}" y="{y}" class="legend">{escape(label)}</text>')
        x += 23 + 7 * len(label) + 18
    return out


def _x_axis(panel: _Panel, trace: Trace, y: float) -> list[str]:
    # the clock's zone heads the time labels: the page's times are UTC ("…Z"), and a bare
    # "08:14" reads as the reader's own local time
    out = [f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" class="axis"/>',
           f'<text x="{LEFT - 6}" y="{y + 14}" class="tick time-zone" '
           'text-anchor="end">UTC</text>']
    n = panel.steps
    # dated labels are twice as wide: fewer of them, so they do not run into each other
    every = max(1, math.ceil(n / (5 if _spans_days(trace) else 8)))
    # from half a spacing in, so neither end's label runs past the panel (into "UTC")
    for i in range(every // 2, n, every):
        t = trace.first_time + i * trace.step
        out.append(f'<text x="{panel.x(i):.1f}" y="{y + 14}" class="tick" '
                   f'text-anchor="middle">{_clock(t, trace)}</text>')
    return out


def _y_axis(panel: _Panel, ticks: Sequence[float], label: str, fmt) -> list[str]:
    out = []
    for t in ticks:
        y = panel.y(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                   'class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" '
                   f'text-anchor="end">{escape(fmt(t))}</text>')
    mid = panel.top + panel.height / 2
    out.append(f'<text x="14" y="{mid:.1f}" class="axis-label" text-anchor="middle" '
               f'transform="rotate(-90 14 {mid:.1f})">{escape(label)}</text>')
    return out


def describe(check: CheckResult) -> str:
    """The chart's text alternative: what a sighted reader takes from it, in one paragraph."""
    trace = check.trace
    if trace is None or not trace.canary:
        return f"No per-step data for {check.name}. {check.reason}"
    unit = trace.unit
    parts = []
    for side, values, summary in (("Canary", trace.canary, check.canary),
                                  ("stable", trace.stable, check.stable)):
        seen = _finite(values)
        if not values:
            continue
        if not seen:
            parts.append(f"{side}: no data in any step")
            continue
        parts.append(f"{side} {trace.value_label} from {fmt_value(min(seen), unit)} to "
                     f"{fmt_value(max(seen), unit)} over {len(seen)} of {len(values)} steps "
                     f"(window value {fmt_value(summary.value, unit)})")
    if trace.limits:
        parts.append("limit " + " and ".join(fmt_value(v, unit) for v in trace.limits))
    around = _bounds_around(trace)
    if around:
        parts.append("the values are interpolated inside histogram buckets, which place them "
                     "only between bucket bounds (here " + ", ".join(
                         fmt_value(b, unit) for b in around) + ")")
    if trace.evidence:
        level = power_of_ten((trace.evidence_level or 0.0) / math.log(10))
        peak = power_of_ten(max(trace.evidence) / math.log(10))
        crossed = trace.crossed
        parts.append(
            f"evidence of a regression beyond tolerance peaked at {peak} against the "
            f"fail line {level} ({trace.evidence_line})" + (
                f", first reached at step {crossed + 1} "
                f"({_clock(trace.first_time + crossed * trace.step, trace)} UTC)"
                if crossed is not None else ", never reached") + (
                ", yet the check did not fail (its reason says why)"
                if crossed is not None and check.verdict != "fail" else ""))
    start = _clock(trace.first_time - trace.step, trace)
    end = _clock(trace.first_time + (len(trace.canary) - 1) * trace.step, trace)
    return (f"{check.name}, judged from {start} to {end} UTC in {len(trace.canary)} steps: "
            + "; ".join(parts) + f". Verdict {check.verdict}.")


def chart(check: CheckResult, ident: str) -> str:
    """The check's chart as an inline <svg> element."""
    trace = check.trace
    title = f"{check.name}: canary vs stable ({check.verdict})"
    desc = describe(check)
    head = (f'<title id="{ident}-t">{escape(title)}</title>'
            f'<desc id="{ident}-d">{escape(desc)}</desc>')
    if trace is None or not trace.canary:
        height = 60
        body = [f'<text x="{LEFT}" y="34" class="empty">No series for this check: '
                f'{escape(check.test or check.kind)}</text>']
        return _svg(ident, height, head, body)
    steps = len(trace.canary)
    has_evidence = bool(trace.evidence) and trace.evidence_level is not None
    height = TOP + VALUES_HEIGHT + BOTTOM + (GAP + EVIDENCE_HEIGHT if has_evidence else 0)
    low, high = _value_range(trace)
    panel = _Panel(TOP, VALUES_HEIGHT, steps, low, high)
    unit = trace.unit
    body = _y_axis(panel, nice_ticks(low, high), trace.value_label,
                   lambda v: fmt_value(v, unit))
    body += _x_axis(panel, trace, TOP + VALUES_HEIGHT)
    legend = [("canary", CANARY, "line")]
    if trace.stable:
        legend.append(("stable", STABLE, "line"))
    polys = _band_polygons(panel, trace)
    if polys:
        legend.append(("tolerated range", BAND, "band"))
        body += [f'<polygon points="{p}" fill="{BAND}" fill-opacity="0.35" class="band"/>'
                 for p in polys]
    for limit in trace.limits:
        y = panel.y(limit)
        body.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                    f'stroke="{LIMIT}" stroke-width="1.5" stroke-dasharray="5 3" class="limit"/>')
        body.append(f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" class="tick" '
                    f'text-anchor="end">limit {escape(fmt_value(limit, unit))}</text>')
    if trace.limits:
        legend.append(("limit", LIMIT, "dash"))
    drawn = _bounds_around(trace)  # not every bound down to 0: those would pile up
    for bound in drawn:
        y = panel.y(bound)
        body.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                    f'stroke="{LIMIT}" stroke-width="1" stroke-dasharray="1 3" '
                    'class="bucket-bound"/>')
        body.append(f'<text x="{LEFT + 4}" y="{y - 3:.1f}" class="tick">bucket le '
                    f'{escape(fmt_value(bound, unit))}</text>')
    if drawn:
        legend.append(("bucket bounds", LIMIT, "dot"))
    if trace.stable:
        body.append(f'<path d="{_path(panel, trace.stable)}" fill="none" stroke="{STABLE}" '
                    'stroke-width="1.8" class="stable"/>')
    body.append(f'<path d="{_path(panel, trace.canary)}" fill="none" stroke="{CANARY}" '
                'stroke-width="2.2" class="canary"/>')
    if not _finite(trace.canary):
        body.append(f'<text x="{LEFT + panel.width / 2:.0f}" y="{TOP + VALUES_HEIGHT / 2:.0f}" '
                    f'class="empty" text-anchor="middle" fill="{CANARY}">no canary data in '
                    'this window</text>')
    if has_evidence:
        body += _evidence(trace, TOP + VALUES_HEIGHT + GAP, steps, check.verdict == "fail")
        legend.append(("evidence", EVIDENCE, "line"))
    body = _legend(legend, 14) + body
    return _svg(ident, height, head, body)


def _evidence(trace: Trace, top: float, steps: int, failed: bool) -> list[str]:
    """log10 of the test martingale per step, the 1/alpha line, and where it was crossed.

    A ratio's evidence is against the relative tolerance alone, and the check fails only when
    the canary's difference is also beyond the absolute tolerance: evidence over the line on a
    check that did not fail is marked as such, never as the failure it was not."""
    level = (trace.evidence_level or 0.0) / math.log(10)
    values = [v / math.log(10) for v in trace.evidence]
    peak = max(_finite(values), default=0.0)
    # Strong evidence runs to 1e100 and beyond; past twice the line's height only "far over
    # the line" matters, so the scale stops there and says how far the peak went.
    ceiling = max(2 * level, 1.0)
    high = min(max(peak, level), ceiling) * 1.12
    low = max(min(min(_finite(values), default=0.0), 0.0), -level)
    panel = _Panel(top, EVIDENCE_HEIGHT, steps, low, high)
    values = [min(max(v, low), ceiling) for v in values]
    ticks = [t for t in nice_ticks(low, high, 3) if float(t).is_integer()] or [0.0]
    out = _y_axis(panel, ticks, "evidence", lambda v: power_of_ten(v, 6))
    if peak > ceiling:
        out.append(f'<text x="{WIDTH - RIGHT - 4}" y="{top - 4}" class="tick" '
                   f'text-anchor="end">evidence off the scale: peak {power_of_ten(peak, 2)}</text>')
    out += _x_axis(panel, trace, top + EVIDENCE_HEIGHT)
    y = panel.y(level)
    out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
               f'stroke="{FAIL_LINE}" stroke-width="1.5" stroke-dasharray="6 3" '
               'class="fail-line"/>')
    line = escape(trace.evidence_line.replace("alpha", "α"))
    out.append(f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" class="tick" '
               f'fill="{FAIL_LINE}" text-anchor="end">fail line {line} = '
               f'{power_of_ten(level)}</text>')
    out.append(f'<path d="{_path(panel, values)}" fill="none" stroke="{EVIDENCE}" '
               'stroke-width="2" class="evidence"/>')
    crossed = trace.crossed
    if crossed is not None:
        x = panel.x(crossed)
        when = _clock(trace.first_time + crossed * trace.step, trace)
        anchor = "end" if x > WIDTH * 0.6 else "start"
        dx = -5 if anchor == "end" else 5
        color, kind, dash = (FAIL_LINE, "crossed", "") if failed else (
            LIMIT, "reached", ' stroke-dasharray="3 3"')
        label = (f"crossed at {when} (step {crossed + 1})" if failed else
                 f"over the line from {when}, yet the check did not fail (see its reason)")
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + EVIDENCE_HEIGHT}" '
                   f'stroke="{color}" stroke-width="1.5"{dash} class="{kind}"/>')
        out.append(f'<circle cx="{x:.1f}" cy="{panel.y(values[crossed]):.1f}" r="4" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{x + dx:.1f}" y="{top + 26}" class="tick" fill="{color}" '
                   f'text-anchor="{anchor}">{escape(label)}</text>')
    return out


def _svg(ident: str, height: float, head: str, body: Sequence[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" '
            f'width="{WIDTH}" height="{height:.0f}" role="img" '
            f'aria-labelledby={quoteattr(ident + "-t")} aria-describedby={quoteattr(ident + "-d")} '
            f'class="chart" id={quoteattr(ident)}>{head}{"".join(body)}</svg>')
