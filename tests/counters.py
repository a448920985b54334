"""Counters written by hand for a real Prometheus (promtool's OpenMetrics), and what each
counted: scrape phases, gaps and restarts that the lab's steady traffic does not give
(tests/test_offgrid_scrapes.py, tests/test_prometheus_outage.py)."""

from __future__ import annotations

Points = list[tuple[float, float]]  # (time, cumulative value), in time order


def counters_text(families: dict[str, dict[str, Points]]) -> str:
    """OpenMetrics text of counter families: per family, each series' samples by its name
    with labels (`x_total{pod="a"}`)."""
    lines: list[str] = []
    for family, series in families.items():
        lines.append(f"# TYPE {family} counter")
        for name, points in series.items():
            lines += [f"{name} {v:.0f} {t:.3f}" for t, v in points]
    return "\n".join([*lines, "# EOF\n"])


def count_between(points: Points, since: float, until: float) -> float:
    """What a series counted in (since, until]: its last sample at or before `until` minus its
    last one at or before `since` (0: none yet), a drop counted from 0 (a restart)."""
    counted, previous = 0.0, None
    for t, v in points:
        if t > until:
            break
        if t > since:
            counted += v - previous if previous is not None and v >= previous else v
        previous = v
    return counted
