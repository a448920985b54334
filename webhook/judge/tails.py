"""Normal and Student t tail probabilities and quantiles, the numbers scipy.stats gives.

scipy.stats' distribution objects check and broadcast their arguments on every call (~50 µs),
more than some whole checks cost; the judges ask for a handful of scalars per check. These call
the scipy.special functions those objects call (`norm.isf` is −ndtri, `t.sf` is stdtr of −x,
…) for ordinary arguments, and scipy.stats itself at the edges (probabilities 0 or 1, bad
degrees of freedom, NaN), so the answers are the same floats (tests/test_judges_fast.py). Used
by the ratio, histogram, series and limits judges.
"""

from __future__ import annotations

import math

from scipy import special, stats


def norm_isf(q: float) -> float:
    """stats.norm.isf(q); at q = 0 and 1 too (±Inf: a t tail probability that underflowed,
    `series._normal_equivalent`, every poll of a clear regression)."""
    if 0 <= q <= 1:
        return float(-special.ndtri(q))
    return float(stats.norm.isf(q))


def norm_sf(x: float) -> float:
    """stats.norm.sf(x)."""
    if math.isnan(x):
        return float(stats.norm.sf(x))
    return float(special.ndtr(-x))


def t_isf(q: float, df: float) -> float:
    """stats.t.isf(q, df)."""
    if 0 < q < 1 and df > 0:
        return float(-special.stdtrit(df, q))
    return float(stats.t.isf(q, df))


def t_sf(x: float, df: float) -> float:
    """stats.t.sf(x, df)."""
    if df > 0 and not math.isnan(x):
        return float(special.stdtr(df, -x))
    return float(stats.t.sf(x, df))
