"""Anytime-valid tests: the chance of ever failing a healthy canary over all polls stays ≤ alpha.

Controllers poll the same rollout again and again (Argo `interval`+`count`, Flagger every tick),
each time over [analysis start, now]. A fixed-horizon test re-run at every poll fails healthy
canaries far more often than alpha (a 5 % test looked at 100 times fails roughly a third of
A/A runs: Armitage, McPherson & Rowe, "Repeated significance tests on accumulating data", JRSS A
132, 1969; bench/detection measures it on our data). The statistics here are
test supermartingales, so by Ville's inequality P(sup_t M_t ≥ 1/alpha) ≤ alpha whatever the
number and timing of polls. They hold no state: each poll recomputes M from all steps since the
analysis start, which is the same number any replica would compute.

Counts (`ratio`): following Lindon & Malek, "Anytime-Valid Inference for Multinomial Count
Data", NeurIPS 2022 (arXiv:2011.03567), bad events of each side are treated as Poisson processes
whose intensity is the side's traffic times its bad-event rate. Given the number of bad events in
a step, the canary's share of them is Binomial(K_t, π_t(ρ)) with
π_t(ρ) = ρ·w_t / (ρ·w_t + 1 − w_t), w_t the canary's share of the step's requests and ρ the ratio
of the two sides' bad-event rates. For ρ1 > ρ0 the likelihood ratio of ρ1 against ρ0 is a
supermartingale whenever the true ρ ≤ ρ0 (monotone likelihood ratio); a mixture over ρ1 (a
half-normal prior on log ρ1/ρ0) is one too. Testing against ρ0 = 1 + relative tolerance keeps
the equivalence margin.

Confidence sequence for one proportion: Robbins' beta-binomial mixture (Robbins, "Statistical
methods related to the law of the iterated logarithm", 1970; Howard et al., "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021, §3).

Quantiles (`histogram`): the same martingale on tail exceedances. At each step the threshold is
the stable's q-quantile over the steps before it (so it is fixed before the step's requests
arrive); the events are the canary's requests above threshold × (1 + tolerance) and the
stable's above threshold (`histogram.tail_exceedances` also runs the mirror, anchored on the
canary's quantile). If the canary's q-quantile is within tolerance of the stable's, the
canary exceeds its raised threshold no more often than the stable exceeds its own (1 − q), so
ρ ≤ 1 and the martingale holds; its running maximum may be read at every poll.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Generator, Sequence
from typing import NamedTuple

import numpy as np
from scipy import optimize, special, stats

# Mixture over θ = log(ρ1/ρ0): half-normal with this scale, discretised on a grid. 0.75 puts
# most weight on rate ratios between ~1.1 and ~4 times the tolerated one: the regressions that
# matter, while keeping power against x5 outages.
MIXTURE_SCALE = 0.75
# Clumpiness of bad events assumed before the data can estimate it (`step_dispersion`'s γ:
# twice the squared coefficient of variation of the per-step rate, 0.2 ≈ a rate varying ±30 %
# between steps), worth this many steps of evidence.
DISPERSION_PRIOR = 0.2
DISPERSION_PRIOR_STEPS = 3.0
_GRID = np.linspace(0.01, 4.0, 160)
_NEG_GRID = -_GRID
_EXP_GRID, _EXP_NEG_GRID = np.exp(_GRID), np.exp(_NEG_GRID)
for _grid in (_GRID, _NEG_GRID, _EXP_GRID, _EXP_NEG_GRID):
    _grid.flags.writeable = False  # shared by every test's terms
# More requests in one window than any real one has (a million a second for 30 years): the
# judges call such counts corrupt. Near 2**53 counts stop being exact floats, and from about
# 3.4e15 scipy's binomial quantiles (histogram.py) come back NaN.
MAX_COUNT = 1e15


# How far below the best θ a column of the mixture still counts: terms more than -_FLOOR
# below the largest are < 1e-26 of it, below double precision. Columns that far below the
# best in every step of a block are left out of it (`_band_path`).
_FLOOR = -60.0
# Up to this many steps the window's final evidence is summed over the whole grid at once;
# beyond, it is the band's last value.
_BLOCK = 256
# The first block spans `_FIRST` steps (the whole grid is in play until the data have a say,
# usually within a few dozen steps); later ones at least that many, or as many as make
# `_CELLS` cells once the band is narrow: fewer, larger numpy calls.
_FIRST = 16
_CELLS = 1 << 16
# Columns kept on each side of the band that mattered at the end of the previous block.
_PAD = 3


class _Terms(NamedTuple):
    """The counting steps' inputs of the per-step log-likelihood ratios (`_terms_at`)."""

    use: np.ndarray  # which of the window's steps count
    theta: np.ndarray  # log(ρ1/ρ0) per grid column
    rho1: np.ndarray
    w: np.ndarray  # canary's share of requests, divided by ρ0·w + v
    v: np.ndarray  # stable's share, likewise
    a: np.ndarray  # tempered canary events
    b: np.ndarray  # tempered events of both sides
    log_prior: np.ndarray
    phi: np.ndarray  # the steps' dispersion (`step_dispersion`)


@functools.lru_cache(maxsize=16)
def _log_prior(scale: float) -> np.ndarray:
    """The mixture's weights on the grid (scipy's logpdf costs more than a short window's
    whole test, and the scales are a handful of constants)."""
    out = stats.halfnorm.logpdf(_GRID, scale=scale) + math.log(_GRID[1] - _GRID[0])
    out.flags.writeable = False
    return out


def _step_terms(bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray, n_s: np.ndarray,
                rho0: float, worse: bool, scale: float,
                dispersion_prior: tuple[float, float]) -> _Terms | None:
    """The counting steps' per-step inputs of `_terms_at`; None when no step counts.

    One row of `_rows_terms` (one implementation of the formulas), its counting steps
    taken out."""
    rows = _Rows.of(bad_c, n_c, bad_s, n_s)
    if not rows.counting[0]:
        return None
    terms = _rows_terms(rows.compact(0), rho0, worse, scale, (dispersion_prior,)).row(0)
    return terms._replace(use=rows.use[0])


class _Rows(NamedTuple):
    """Rows of counts of the same steps (one evidence path each), as floats, and which of
    their steps count: both sides have requests and there are bad events."""

    bad_c: np.ndarray
    n_c: np.ndarray
    bad_s: np.ndarray
    n_s: np.ndarray
    k: np.ndarray  # bad events of both sides
    use: np.ndarray
    counting: list[int]  # counting steps per row
    every: bool  # every step of every row counts (the usual busy window)

    @classmethod
    def of(cls, bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray,
           n_s: np.ndarray) -> _Rows:
        """Rows from 1-d arrays (one row) or 2-d ones (rows × steps)."""
        bad_c, n_c = np.asarray(bad_c, float), np.asarray(n_c, float)
        bad_s, n_s = np.asarray(bad_s, float), np.asarray(n_s, float)
        if bad_c.ndim == 1:
            bad_c, n_c = bad_c.reshape(1, -1), n_c.reshape(1, -1)
            bad_s, n_s = bad_s.reshape(1, -1), n_s.reshape(1, -1)
        k = bad_c + bad_s
        # (n_c > 0) & (n_s > 0) & (k > 0) in three calls instead of five (NaN: not > 0 either way)
        use = np.minimum(np.minimum(n_c, n_s), k) > 0
        r, m = use.shape
        if use.all():
            return cls(bad_c, n_c, bad_s, n_s, k, use, [m] * r, True)
        return cls(bad_c, n_c, bad_s, n_s, k, use, np.count_nonzero(use, axis=1).tolist(), False)

    def compact(self, i: int) -> _Rows:
        """Row i on its counting steps alone (one row whose every step counts): a long
        window's row is cheaper computed on them than on all steps."""
        if self.every:
            return self if len(self.counting) == 1 else self._replace(
                bad_c=self.bad_c[i:i + 1], n_c=self.n_c[i:i + 1], bad_s=self.bad_s[i:i + 1],
                n_s=self.n_s[i:i + 1], k=self.k[i:i + 1], use=self.use[i:i + 1],
                counting=[self.counting[i]])
        at = self.use[i].nonzero()[0]
        return _Rows(*(x[i].take(at).reshape(1, -1) for x in (self.bad_c, self.n_c, self.bad_s,
                                                              self.n_s, self.k)),
                     np.ones((1, at.size), bool), [int(at.size)], True)


class _RowsTerms(NamedTuple):
    """`_Terms` of several rows on all their steps (rows × steps): steps that do not count
    have no events (a = b = 0) and a neutral share (w = v = 1/(ρ0 + 1)), so that their
    log-likelihood ratios are exactly ±0 and a running sum passes them unchanged."""

    use: np.ndarray
    theta: np.ndarray
    rho1: np.ndarray
    w: np.ndarray
    v: np.ndarray
    a: np.ndarray
    b: np.ndarray
    log_prior: np.ndarray
    phi: np.ndarray  # 1 on steps that do not count
    every: bool  # every step of every row counts

    def row(self, i: int) -> _Terms:
        """Row i's counting steps as `_Terms`."""
        use = self.use[i]
        if self.every or use.all():
            return _Terms(use, self.theta, self.rho1, self.w[i], self.v[i], self.a[i],
                          self.b[i], self.log_prior, self.phi[i])
        at = use.nonzero()[0]  # found once, not once per array as a mask would
        return _Terms(use, self.theta, self.rho1, self.w[i].take(at), self.v[i].take(at),
                      self.a[i].take(at), self.b[i].take(at), self.log_prior,
                      self.phi[i].take(at))


def _rows_terms(rows: _Rows, rho0: float, worse: bool, scale: float,
                priors: Sequence[tuple[float, float]],
                phi: np.ndarray | None = None) -> _RowsTerms:
    """`_Terms` of every row at once (`_RowsTerms`); `priors` is each row's dispersion prior,
    `phi` the rows' `step_dispersion` (1 where a step does not count) if already known.

    Rows are computed together because at a short window's dozen steps each numpy call costs
    its overhead, not its arithmetic: four rows cost about what one did. Every value is the
    elementwise arithmetic a row alone would do, so each row gets the same bits; only the
    dispersion reduces over steps, and it runs on each row's counting steps (`_dispersions`).
    """
    use = rows.use
    if rows.every:  # the usual busy window: no step to leave out
        k_c, k, c, s = rows.bad_c, rows.k, rows.n_c, rows.n_s
    else:
        k_c, k = np.where(use, rows.bad_c, 0.0), np.where(use, rows.k, 0.0)
        c, s = np.where(use, rows.n_c, 1.0), np.where(use, rows.n_s, 1.0)
    both = c + s
    w = c / both
    v = s / both  # 1 − w, not rounded to 0 when the stable is tiny
    d0 = rho0 * w + v
    if phi is None:
        phi = _dispersions(rows, k_c, k, w, priors)
    theta, rho1 = (_GRID, _EXP_GRID) if worse else (_NEG_GRID, _EXP_NEG_GRID)
    return _RowsTerms(use, theta, rho1 if rho0 == 1.0 else rho0 * rho1, w / d0, v / d0,
                      k_c / phi, k / phi, _log_prior(scale), phi, rows.every)


def _dispersions(rows: _Rows, k_c: np.ndarray, k: np.ndarray, w: np.ndarray,
                 priors: Sequence[tuple[float, float]]) -> np.ndarray:
    """`step_dispersion` of each row's counting steps, on all steps (1 where a step does not
    count), all rows in one `_step_dispersions` call on their counting steps laid end to end
    (`_Runs`)."""
    use, counting = rows.use, rows.counting
    if rows.every:
        return _step_dispersions(k_c.ravel(), k.ravel(), w.ravel(), _Runs(counting),
                                 priors).reshape(use.shape)
    runs = _Runs([n for n in counting if n])  # rows without counting steps: φ unused
    phi = np.ones(use.shape)
    phi[use] = _step_dispersions(k_c[use], k[use], w[use], runs,
                                 [p for p, n in zip(priors, counting, strict=True) if n])
    return phi


def _terms_at(t: _Terms, lo: int, hi: int, cols: slice | np.ndarray) -> np.ndarray:
    """Tempered log-likelihood ratios of steps lo…hi−1 (columns) for the θ rows `cols`.

    (k_c·log(π1/π0) + k_s·log((1−π1)/(1−π0)))/φ with π = ρw/(ρw + v), written so that no
    share rounds to 0 or 1 (log 0, then 0·∞): log(π1/π0) = θ − log((ρ1w + v)/(ρ0w + v)), so one
    logarithm per (θ, step), of ρ1·w' + v' with w', v' divided by ρ0w + v beforehand. Both
    counts' terms are combined per step before any running sum, so huge counts cancel where
    they are of the same size.

    θ is the first axis: the sums and maxima over θ that follow then run along whole rows of
    steps at once, where over a short row of θ numpy pays its overhead once per step.
    """
    d = np.multiply.outer(t.rho1[cols], t.w[lo:hi])
    d += t.v[lo:hi]
    np.log(d, out=d)
    d *= t.b[lo:hi]
    return np.subtract(np.multiply.outer(t.theta[cols], t.a[lo:hi]), d, out=d)


def _running(t: _Terms, lo: int, hi: int, jl: int, jh: int, carry: np.ndarray) -> np.ndarray:
    """C (θ rows jl…jh−1 × steps lo…hi−1): each row's `carry` plus the running sum of
    `_terms_at`'s ratios, the same numbers.

    A block with more rows than steps (the first one: the whole grid, 16 steps) is built
    steps × θ and handed back as a transposed view: numpy broadcasts a per-step value along a
    whole row at once, where θ × steps calls its inner loop once per row of a few steps. Its
    running sum pairs neighbouring rows as the two halves of a complex number: numpy's
    accumulate runs one serial chain of additions per column, so half as many chains do the
    same additions in half the time (complex addition adds the parts separately, bit for
    bit the real additions).
    """
    if jh - jl <= hi - lo:
        wide = _terms_at(t, lo, hi, slice(jl, jh))
        wide[:, 0] += carry[jl:jh]
        np.add.accumulate(wide, axis=1, out=wide)
        return wide
    return _running_rows(t.w[None, lo:hi], t.v[None, lo:hi], t.a[None, lo:hi],
                         t.b[None, lo:hi], t.theta[jl:jh], t.rho1[jl:jh], carry[jl:jh])[0].T


def _running_rows(w: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray,
                  theta: np.ndarray, rho1: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """`_running`'s steps × θ block for several rows of steps at once (rows × steps × θ):
    `carry` plus the running sum of the ratios `_terms_at` gives, the same numbers."""
    c = np.multiply.outer(w, rho1)
    c += v[..., None]
    np.log(c, out=c)
    c *= b[..., None]
    np.subtract(np.multiply.outer(a, theta), c, out=c)
    c[:, 0] += carry
    if c.shape[2] % 2 == 0:
        pairs = c.view(np.complex128)
        np.add.accumulate(pairs, axis=1, out=pairs)
    else:
        np.add.accumulate(c, axis=1, out=c)
    return c


def _log_sum_exp(c: np.ndarray, top: np.ndarray, axis: int) -> np.ndarray:
    """log Σ_θ exp(C) per step, θ along `axis` (the first or the last), `top` the largest
    C per step. Terms more than -_FLOOR below the step's best are clipped so that exp() does
    not underflow (slow); θ is the contiguous axis, summed pairwise: the same sum to float
    rounding (~1e-15)."""
    d = np.subtract(c, top if axis == 0 else top[..., None])
    np.maximum(d, _FLOOR, out=d)
    np.exp(d, out=d)
    total = np.add.reduce(d, axis=axis)
    np.log(total, out=total)
    total += top
    return total


def _band_path(t: _Terms) -> np.ndarray:
    """log M after each counting step.

    log M_t = log Σ_θ exp(C_t(θ)) with C_t(θ) the log prior plus the running sum of the steps'
    log-likelihood ratios. Each step's ratio is concave in θ (a linear term minus b·log of a
    convex function), and so is the half-normal log prior, so C_t is unimodal over the grid.
    Once the data have a say, only a narrow band of θ lies within -_FLOOR of the best one: the
    rest adds less than 1e-24 of M. So each block of steps is computed only on the band
    that mattered at the end of the previous one, padded; a row of θ left behind keeps its
    running sum up to the step where it left and catches up if it comes back. The band is
    checked step by step: its edge rows must lie -_FLOOR below the step's best (or be the
    grid's edges), which by unimodality bounds every row outside it; if not, it is widened
    and the block redone. The first block takes the whole grid. Cost: the steps times the
    band's width, a few rows once thousands of events have been seen, instead of all 160.
    """
    m, g = t.a.size, t.theta.size
    values = np.empty(m)
    carry = np.array(t.log_prior, dtype=float)  # C at the row's step `upto`
    upto = np.zeros(g, dtype=np.int64)
    jl, jh, lo = 0, g, 0
    while lo < m:
        hi = min(lo + (_FIRST if lo == 0 else max(_FIRST, _CELLS // (jh - jl))), m)
        pad = _PAD
        while True:
            if upto[jl] < lo or upto[jh - 1] < lo:  # rows left behind: only at the edges
                stale = (upto[jl:jh] < lo).nonzero()[0] + jl
                for u in np.unique(upto[stale]):
                    rows = stale[upto[stale] == u]
                    carry[rows] += np.add.reduce(_terms_at(t, int(u), lo, rows), axis=1)
                    upto[rows] = lo
            c = _running(t, lo, hi, jl, jh, carry)
            top = np.maximum.reduce(c, axis=0)
            floor = top + _FLOOR
            left = jl == 0 or bool((c[0] < floor).all())
            right = jh == g or bool((c[-1] < floor).all())
            if left and right:
                break
            jl = jl if left else max(jl - pad, 0)
            jh = jh if right else min(jh + pad, g)
            pad *= 2
        values[lo:hi] = _log_sum_exp(c, top, 0)
        last = c[:, -1]
        carry[jl:jh] = last
        upto[jl:jh] = hi
        keep = (last >= floor[-1]).nonzero()[0]
        if keep.size:
            jl, jh = max(jl + int(keep[0]) - _PAD, 0), min(jl + int(keep[-1]) + 1 + _PAD, g)
        else:  # not a number (never with finite counts): the whole grid again
            jl, jh = 0, g
        lo = hi
    return values


def _spread(use: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The counting steps' values (`use`) on the window's steps: steps without events repeat
    the previous value (0 before the first)."""
    if values.size == use.size:  # every step counted
        return values
    index = use.cumsum() - 1  # the last counting step at or before each step, or -1
    return np.where(index >= 0, values[np.maximum(index, 0)], 0.0)


def rate_ratio_log_evidence_path(bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray,
                                 n_s: np.ndarray, rho0: float, worse: bool,
                                 scale: float = MIXTURE_SCALE,
                                 dispersion_prior: tuple[float, float] = (
                                     DISPERSION_PRIOR, DISPERSION_PRIOR_STEPS)) -> np.ndarray:
    """log M after each step, for H0: ρ ≤ ρ0 (worse=True: evidence the canary is worse than
    tolerated) or H0: ρ ≥ ρ0 (worse=False: evidence it is not). Steps without bad events add
    nothing. By Ville's inequality the running maximum crosses log(1/alpha) with probability
    ≤ alpha under H0, so a crossing at any earlier step is as valid as one at the last.

    `scale` is the half-normal mixture's scale on log(ρ1/ρ0): small scales are sharper for
    effects just beyond the tolerance, large ones for big regressions seen early.

    Cost is linear in the steps (`_band_path`). One row of `rate_ratio_log_evidence_paths`.
    """
    return rate_ratio_log_evidence_paths(bad_c, n_c, bad_s, n_s, rho0, worse, scale,
                                         (dispersion_prior,))[0]


def rate_ratio_log_evidence_paths(bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray,
                                  n_s: np.ndarray, rho0: float, worse: bool,
                                  scale: float = MIXTURE_SCALE,
                                  dispersion_priors: Sequence[tuple[float, float]] | None = None
                                  ) -> np.ndarray:
    """`rate_ratio_log_evidence_path` of each row of counts (rows × steps, one path per row,
    `dispersion_priors` one per row, default `DISPERSION_PRIOR`): each row's path to the bit.

    A check often needs several paths of the same steps (`histogram.judge_quantile`: two
    quantiles × two anchors). On a short window numpy's per-call overhead, not the few
    thousand cells, is the cost, so the rows share every call: the dispersion's solve
    (`_mle_rate_ratios`) and, up to `_FIRST` steps (the first block of `_band_path`, on the
    whole grid), the running sums and log-sum-exp as one rows × steps × θ array, steps that do
    not count adding exactly ±0 to every running sum (their value is then the previous one,
    as `_spread` has it). Longer windows go on row by row through `_band_path`.
    """
    rows = _Rows.of(bad_c, n_c, bad_s, n_s)
    r, m = rows.use.shape
    if not any(rows.counting):
        return np.zeros((r, m))
    priors = ([(DISPERSION_PRIOR, DISPERSION_PRIOR_STEPS)] * r if dispersion_priors is None
              else list(dispersion_priors))
    if m <= _FIRST:
        return _paths(rows, _rows_terms(rows, rho0, worse, scale, priors))
    out = np.zeros((r, m))
    for i in (i for i, n in enumerate(rows.counting) if n):
        one = rows.compact(i)
        out[i] = _spread(rows.use[i], _paths(one, _rows_terms(one, rho0, worse, scale,
                                                                  priors[i:i + 1]))[0])
    return out


def _paths(rows: _Rows, terms: _RowsTerms) -> np.ndarray:
    """The rows' log M after each step (`rate_ratio_log_evidence_paths`), from their terms."""
    r, m = rows.use.shape
    if m <= _FIRST:
        c = _running_rows(terms.w, terms.v, terms.a, terms.b, terms.theta, terms.rho1,
                          terms.log_prior)
        values = _log_sum_exp(c, np.maximum.reduce(c, axis=2), 2)
        if not rows.every:  # 0 before a row's first counting step
            values = np.where(np.logical_or.accumulate(rows.use, axis=1), values, 0.0)
        return values
    out = np.zeros((r, m))
    for i in (i for i, n in enumerate(rows.counting) if n):
        out[i] = _spread(rows.use[i], _band_path(terms.row(i)))
    return out


# `_final_log_evidence` first reads every this many rows of θ to find where the band lies.
_COARSE = 8


def _final_log_evidence(t: _Terms) -> float:
    """log M after the last step: for one block the sum over steps on the band of θ that
    matters, else the band path's last value.

    Only the last step's value is wanted, so no step-by-step band is needed: C(θ) after the
    last step is concave in θ (`_band_path` says why), so its rows within -_FLOOR of the best
    form one run. Every `_COARSE`-th row is summed first; a coarse row below the coarse best
    + _FLOOR bounds every row beyond it (away from the best) below that too, and the best is
    at least the coarse best, so only the rows between the nearest such coarse rows on either
    side are summed in full: about a third of the grid once the data have a say.
    """
    m, g = t.a.size, t.theta.size
    if m > _BLOCK:
        return float(_band_path(t)[-1])
    # per-step terms summed (θ·Σa − b·log(…) as one matrix-vector product is cheaper, but
    # with huge counts it cancels two sums of ~1e15 instead of each step's two terms)
    coarse = np.arange(0, g, _COARSE)
    e = t.log_prior[coarse] + np.add.reduce(_terms_at(t, 0, m, coarse), axis=1)
    below = np.flatnonzero(~(e >= e.max() + _FLOOR))  # NaN: not a number either way
    best = int(np.argmax(e))
    left, right = below[below < best], below[below > best]
    lo = int(coarse[left[-1]]) if left.size else 0
    hi = int(coarse[right[0]]) + 1 if right.size else g
    e = t.log_prior[lo:hi] + np.add.reduce(_terms_at(t, 0, m, slice(lo, hi)), axis=1)
    top = float(e.max())
    return top + math.log(float(np.exp(np.maximum(e - top, _FLOOR)).sum()))


def rate_ratio_log_evidence(bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray,
                            n_s: np.ndarray, rho0: float, worse: bool,
                            dispersion_prior: tuple[float, float] = (
                                DISPERSION_PRIOR, DISPERSION_PRIOR_STEPS),
                            scale: float = MIXTURE_SCALE) -> float:
    """log M over the whole window (the last value of `rate_ratio_log_evidence_path`)."""
    terms = _step_terms(bad_c, n_c, bad_s, n_s, rho0, worse, scale, dispersion_prior)
    return 0.0 if terms is None else _final_log_evidence(terms)


def rate_ratio_log_evidence_both(bad_c: np.ndarray, n_c: np.ndarray, bad_s: np.ndarray,
                                 n_s: np.ndarray, rho0: float,
                                 dispersion_prior: tuple[float, float] = (
                                     DISPERSION_PRIOR, DISPERSION_PRIOR_STEPS),
                                 scale: float = MIXTURE_SCALE,
                                 passing: bool | Callable[[np.ndarray], bool] = True
                                 ) -> tuple[np.ndarray, float | None]:
    """(`rate_ratio_log_evidence_path(worse=True)`, `rate_ratio_log_evidence(worse=False)`)
    of the same counts: the ratio judge wants both, and they share the steps' dispersion.
    `passing=False` leaves the second out (None): the judge already knows the answer it
    would only have confirmed, and it costs as much as the first. `passing` may also be a
    function of the first path saying whether the second is still wanted (a path that
    already fails the check leaves nothing for a pass to decide)."""
    rows = _Rows.of(bad_c, n_c, bad_s, n_s)
    use = rows.use[0]
    if not rows.counting[0]:
        path = np.zeros(use.size)
        return path, 0.0 if (passing(path) if callable(passing) else passing) else None
    rows = rows.compact(0)
    fail = _rows_terms(rows, rho0, True, scale, (dispersion_prior,))
    path = _spread(use, _paths(rows, fail)[0])
    if not (passing(path) if callable(passing) else passing):
        return path, None
    terms = _rows_terms(rows, rho0, False, scale, (dispersion_prior,), fail.phi)
    return path, _final_log_evidence(terms.row(0))


_log1p = special.log1p

try:  # scipy's C solver behind optimize.brentq, without the wrapper's argument checks and
    # per-evaluation NaN guard (25 µs a call, more than a short window's whole solve)
    from scipy.optimize._zeros import _brentq as _c_brentq
except ImportError:  # pragma: no cover - a scipy that moved it: the public function
    _c_brentq = None
_BRENT_RTOL = 4 * float(np.finfo(float).eps)  # optimize.brentq's default rtol


def _brentq(f: Callable[[float], float], a: float, b: float, xtol: float = 2e-12) -> float:
    """optimize.brentq(f, a, b, xtol=xtol): the same iterations, so the same root to the bit
    (tests/test_sequential_fast.py); the callers' f is finite on [a, b]."""
    if _c_brentq is None:
        return float(optimize.brentq(f, a, b, xtol=xtol))
    root = float(_c_brentq(f, float(a), float(b), xtol, _BRENT_RTOL, 100, (), False, True))
    if math.isnan(root):  # only with a NaN f: the public function says why
        return float(optimize.brentq(f, a, b, xtol=xtol))
    return root


# OpenBLAS runs a dot product of more than 10,000 elements on several threads: on a busy
# machine (two cores shared by the server's workers) waking them costs far more than the
# product, and 11,000 steps (Prometheus' most per query) took 10× as long per step as 5,500
# (bench/latency.py --only judges). Longer vectors are summed a chunk at a time instead.
_DOT_CHUNK = 8192


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """np.dot of two 1-d arrays, on this thread whatever their length."""
    if x.size <= _DOT_CHUNK:
        return float(np.dot(x, y))
    return math.fsum(float(np.dot(x[i:i + _DOT_CHUNK], y[i:i + _DOT_CHUNK]))
                     for i in range(0, x.size, _DOT_CHUNK))


class _Runs:
    """Rows of different lengths laid end to end in one flat array.

    A sum over a row's steps must be the one the row alone gets: numpy sums pairwise and
    BLAS's dot in blocks, so padding a row, or summing a ragged row with its neighbours
    (np.add.reduceat runs serially), would change the last bits. Consecutive rows of one
    length form a run, a rows × length view whose sums and dots are one call each (the same
    bits row by row, tests/test_sequential_batch.py); the usual windows have one or two runs.
    """

    __slots__ = ("index", "runs", "sizes")

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes  # steps per row
        self.runs: list[tuple[int, int, int, int]] = []  # (first row, rows, start, length)
        self.index: np.ndarray | None = None  # each step's row, for several rows
        if len(sizes) == 1:
            self.runs.append((0, 1, 0, sizes[0]))
            return
        start = 0
        for i, n in enumerate(sizes):
            if self.runs and self.runs[-1][3] == n:
                first, count, begin, _ = self.runs[-1]
                self.runs[-1] = (first, count + 1, begin, n)
            else:
                self.runs.append((i, 1, start, n))
            start += n
        self.index = np.repeat(np.arange(len(sizes)), sizes)

    def summer(self, x: np.ndarray) -> Callable[[], list[float]]:
        """A function giving np.add.reduce of each row of x's current contents: the views
        and the output are made once for the Newton solve's repeated sums."""
        if self.index is None:
            return lambda: [float(np.add.reduce(x))]
        out = np.empty(len(self.sizes))
        parts = [(x[start:start + count * n].reshape(count, n), out[first:first + count])
                 for first, count, start, n in self.runs]

        def sums() -> list[float]:
            for rows, into in parts:
                np.add.reduce(rows, axis=1, out=into)
            return out.tolist()
        return sums

    def dotter(self, x: np.ndarray, y: np.ndarray) -> Callable[[], list[float]]:
        """A function giving `_dot` of each row of x with the same row of y: a run's vector
        products are one matmul call, whose vector-vector case is the BLAS dot np.dot calls."""
        if self.index is None:
            return lambda: [_dot(x, y)]
        if max(self.sizes) > _DOT_CHUNK:
            bounds = np.cumsum([0, *self.sizes]).tolist()
            return lambda: [_dot(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
        out = np.empty(len(self.sizes))
        parts = [(x[start:start + count * n].reshape(count, 1, n),
                  y[start:start + count * n].reshape(count, n, 1),
                  out[first:first + count].reshape(count, 1, 1))
                 for first, count, start, n in self.runs]

        def dots() -> list[float]:
            for rows, columns, into in parts:
                np.matmul(rows, columns, out=into)
            return out.tolist()
        return dots

    def sums(self, x: np.ndarray) -> list[float]:
        """np.add.reduce of each row."""
        if self.index is None:  # one row: no views or closure to make
            return [float(np.add.reduce(x))]
        return self.summer(x)()

    def dots(self, x: np.ndarray, y: np.ndarray) -> list[float]:
        """`_dot` of each row of x with the same row of y."""
        if self.index is None:
            return [_dot(x, y)]
        return self.dotter(x, y)()

    def spread(self, values: list[float]) -> np.ndarray | float:
        """One value per row, repeated on the row's steps (a float for one row)."""
        if self.index is None:
            return values[0]
        return np.array(values)[self.index]


def share_at(rho: float | np.ndarray, w: np.ndarray) -> np.ndarray:
    """The canary's expected share of bad events per step at rate ratio ρ."""
    canary = rho * w  # the same product twice: computed once
    return canary / (canary + 1 - w)


def mle_rate_ratio(k_c: np.ndarray, total: np.ndarray, w: np.ndarray) -> float:
    """Maximum-likelihood ρ of the conditional binomial model: the root of the score
    Σ k_c − K·π_t(ρ), which falls monotonically in ρ. Half an event is added to each side so
    that all-canary or all-stable counts give a finite estimate (`_mle_rate_ratios`, one row).
    """
    w = np.asarray(w, float)
    return _mle_rate_ratios(np.asarray(k_c, float), np.asarray(total, float), w,
                            _Runs([w.size]))[0]


def _newton(x: float, low: float, high: float) -> Generator[float, tuple[float, float], float]:
    """One row's solve of `_mle_rate_ratios`: yields each log ρ whose (score, derivative) it
    needs, returns ρ. A generator so that several rows can be solved in step, each taking
    exactly its own steps (its own bracket, its own stopping), their scores computed together.
    """
    f, slope = yield x
    if f > 0:
        end = (yield high)[0]
        if end >= 0:
            return math.exp(high)
        low = x
    elif f < 0:
        end = (yield low)[0]
        if end <= 0:
            return math.exp(low)
        high = x
    else:
        return math.exp(x)
    for _ in range(200):
        step = f / slope if slope < 0 else math.nan
        nxt = x - step
        if not low < nxt < high:  # out of the bracket (or a flat score): bisect
            nxt = 0.5 * (low + high)
        if abs(nxt - x) <= 1e-12 * max(1.0, abs(x)) or nxt in (low, high):
            return math.exp(nxt)
        x = nxt
        f, slope = yield x
        if f > 0:
            low = x
        elif f < 0:
            high = x
        else:
            return math.exp(x)
    return math.exp(x)


# The bracket of log ρ the Newton solve of `_mle_rate_ratios` keeps to.
_LOG_RHO_BOUND = 20.0


def _pooled(observed: float, events: float, exposure_c: float, exposure_s: float) -> float:
    """The Newton solve's starting log ρ: (canary events / its expected share of traffic)
    over the stable's, weighted by each step's events, inside the bracket."""
    k_s = events - observed + 1.0
    x = (math.log(observed / (exposure_c + 0.5))
         - math.log(max(k_s, 0.5) / (exposure_s + 0.5)))
    return min(max(x, -_LOG_RHO_BOUND), _LOG_RHO_BOUND)


def _mle_rate_ratio_row(k_c: np.ndarray, total: np.ndarray, w: np.ndarray) -> float:
    """`_mle_rate_ratios` of a single row: the same Newton steps on the same arrays, without
    the bookkeeping of several rows (their lists, views and closures cost a short window's
    solve a fifth of its time)."""
    n = w.size
    observed = float(np.add.reduce(k_c)) + 0.5
    weight = total + 1.0 / n  # the half event on the canary's side: the mean share
    v = 1.0 - w
    shares, scratch = np.empty(n), np.empty(n)
    # ndarray.dot is np.dot's BLAS product without the function's dispatch
    dot = _dot if n > _DOT_CHUNK else np.ndarray.dot

    def score(log_rho: float) -> tuple[float, float]:
        np.multiply(math.exp(log_rho), w, shares)
        np.add(shares, v, scratch)
        np.divide(shares, scratch, shares)
        np.multiply(weight, shares, scratch)
        expected = float(np.add.reduce(scratch))
        return observed - expected, float(dot(scratch, shares)) - expected

    events = float(np.add.reduce(total))
    solve = _newton(_pooled(observed, events, float(dot(total, w)), float(dot(total, v))),
                    -_LOG_RHO_BOUND, _LOG_RHO_BOUND)
    at = next(solve)
    try:
        while True:
            at = solve.send(score(at))
    except StopIteration as done:
        return done.value


def _mle_rate_ratios(k_c: np.ndarray, total: np.ndarray, w: np.ndarray,
                     runs: _Runs) -> list[float]:
    """`mle_rate_ratio` of each row, the rows' steps laid end to end (`_Runs`).

    Solved by Newton's method in log ρ, where the score's derivative −Σ K·π(1−π) comes with
    the same arrays: four or five evaluations instead of brentq's fifteen (at xtol 1e-6),
    and closer to the exact root (brentq stopped up to ~1e-6 from it). A step that leaves the
    bracket known to hold the root bisects it instead, so it always converges. The rows'
    scores are evaluated together, each at its own point (`_newton`): on a short window each
    evaluation's numpy calls cost their overhead, whatever the number of rows.
    """
    if runs.index is None:
        return [_mle_rate_ratio_row(k_c, total, w)]
    observed = [x + 0.5 for x in runs.sums(k_c)]
    # the half event on the canary's side: the mean share
    weight = total + runs.spread([1.0 / n for n in runs.sizes])
    v = 1.0 - w
    shares, scratch = np.empty(w.shape), np.empty(w.shape)
    expected_of, slope_of = runs.summer(scratch), runs.dotter(scratch, shares)

    def scores(log_rho: list[float]) -> list[tuple[float, float]]:
        """(score, its derivative) of each row at its log ρ."""
        np.multiply(runs.spread([math.exp(x) for x in log_rho]), w, out=shares)
        np.add(shares, v, out=scratch)
        np.divide(shares, scratch, out=shares)
        np.multiply(weight, shares, out=scratch)
        return [(o - e, d - e) for o, e, d in zip(observed, expected_of(), slope_of(),
                                                   strict=True)]

    low, high = -_LOG_RHO_BOUND, _LOG_RHO_BOUND
    # start at the pooled estimate: (canary events / its expected share of traffic) over
    # the stable's, weighted by each step's events
    events = runs.sums(total)
    exposure_c, exposure_s = runs.dots(total, w), runs.dots(total, v)
    solves, at = [], []
    for i in range(len(runs.sizes)):
        solve = _newton(_pooled(observed[i], events[i], exposure_c[i], exposure_s[i]),
                        low, high)
        solves.append(solve)
        at.append(next(solve))
    roots = [math.nan] * len(solves)
    active = list(range(len(solves)))
    while active:
        got = scores(at)  # rows already solved are evaluated at their last point, unused
        still = []
        for i in active:
            try:
                at[i] = solves[i].send(got[i])
                still.append(i)
            except StopIteration as done:
                roots[i] = done.value
        active = still
    return roots


def step_dispersion(k_c: np.ndarray, k_s: np.ndarray, w: np.ndarray,
                    prior: float = DISPERSION_PRIOR,
                    prior_steps: float = DISPERSION_PRIOR_STEPS,
                    total: np.ndarray | None = None) -> np.ndarray:
    """Per-step factor φ_t ≥ 1 by which the canary's share of bad events varies more than a
    binomial allows.

    Production errors come in clumps (a bad node, a retry storm): the bad-event rate itself
    varies from step to step, and an untempered likelihood ratio reads that noise as evidence.
    If each side's count has the negative-binomial variance μ + δμ² (rate heterogeneity with
    squared coefficient of variation δ; Cameron & Trivedi, "Regression Analysis of Count
    Data", 2013, §3.2, "NB2"), the share of a step with K events has variance
    K·π(1−π)·(1 + γ·K·π(1−π)) with γ = 2δ: busy steps and balanced splits are hit hardest, so
    one constant factor cannot fit both a 20 req/s and a 200 req/s rollout. The step's
    log-likelihood ratio is divided by φ_t = 1 + γ·K·π(1−π), the quasi-likelihood correction
    (McCullagh & Nelder, "Generalized Linear Models", 1989, §9.2); by Jensen's inequality a
    tempered ratio LR^(1/φ) of a supermartingale step is still one.

    γ is the method-of-moments fit of the squared Pearson residuals around the pooled share,
    shrunk towards `prior` worth `prior_steps` typical steps: one or two steps cannot tell a
    clump from a regression, so early on the prior decides how cautious to be.
    """
    k_c = np.asarray(k_c, float)
    if total is None:  # k_c + k_s, when the caller has not summed them already
        total = k_c + k_s
    w = np.asarray(w, float)
    return _step_dispersions(k_c, np.asarray(total, float), w, _Runs([w.size]),
                             ((prior, prior_steps),))


def _step_dispersions(k_c: np.ndarray, total: np.ndarray, w: np.ndarray, runs: _Runs,
                      priors: Sequence[tuple[float, float]]) -> np.ndarray:
    """`step_dispersion` of each row (`priors` per row), the rows' steps laid end to end."""
    pi = share_at(runs.spread(_mle_rate_ratios(k_c, total, w, runs)), w)
    binomial = total * pi * (1 - pi)
    ok = binomial > 0
    if ok.all():  # every step has events on both sides' expected shares
        chi2 = runs.sums((k_c - total * pi) ** 2 / binomial)
        exposure = runs.sums(binomial)
        counted = runs.sizes
    else:
        chi2, exposure, counted = [], [], []
        start = 0
        for n in runs.sizes:
            part = slice(start, start + n)
            start += n
            keep = ok[part]
            chi2.append(float((((k_c[part] - total[part] * pi[part]) ** 2)[keep]
                               / binomial[part][keep]).sum()))
            exposure.append(float(binomial[part][keep].sum()))
            counted.append(int(np.count_nonzero(keep)))
    gamma = []
    for (prior, prior_steps), c2, e, m in zip(priors, chi2, exposure, counted, strict=True):
        if not m:  # no step with events on both expected shares: φ = 1
            gamma.append(0.0)
            continue
        pseudo = prior_steps * e / m
        excess = c2 - (m - 1)  # one degree of freedom went into the pooled share
        gamma.append(max(0.0, (excess + prior * pseudo) / (e * (m - 1) / m + pseudo)))
    phi = 1.0 + runs.spread(gamma) * binomial
    if not all(counted):
        start = 0
        for n, m in zip(runs.sizes, counted, strict=True):
            if not m:
                phi[start:start + n] = 1.0
            start += n
    return phi


# The stable's steps before the rollout that calibrate the tests: the most recent this many
# (analysis slices them; a daily pattern does not leak in), worth as many steps of prior
# evidence: enough to be sure, few enough that the rollout's own steps still move it.
HISTORY_STEPS = 60
HISTORY_MIN_STEPS = 5


def history_dispersion(events: np.ndarray, totals: np.ndarray) -> tuple[float, float] | None:
    """(γ, steps) of `step_dispersion` estimated from the stable's steps before the rollout,
    or None when there are too few of them.

    One or two steps of a rollout cannot tell clumped errors from a regression, but the stable
    served the same traffic before the canary started: the spread of its per-step bad counts
    around a constant rate gives δ (Var = μ + δμ², Pearson moments) and γ = 2δ. A trend in that
    history (a traffic wave) inflates δ, which errs on the cautious side.
    """
    # absent (NaN) or overflowing (+Inf) counts: no events, no requests; what is left
    # negative, or more events than requests, is dropped
    k, n = np.asarray(events, float), np.asarray(totals, float)
    k = np.where(np.isnan(k) | (k == np.inf), 0.0, k)
    with np.errstate(invalid="ignore"):
        ok = (n > 0) & (n != np.inf) & (k >= 0) & (k <= n)
    m = int(ok.sum())
    if m < HISTORY_MIN_STEPS or k[ok].sum() <= 0:
        return None
    k, n = k[ok], n[ok]
    mu = n * float(k.sum()) / float(n.sum())
    pearson = float(((k - mu) ** 2 / mu).sum())
    delta = max(0.0, (pearson - (m - 1)) / float(mu.sum()))
    return 2.0 * delta, float(min(m, HISTORY_STEPS))




@functools.lru_cache(maxsize=16)
def _betaln(a: float, b: float) -> float:
    """special.betaln of the prior's (a, b), the same number: a few constants (the default
    0.5, 0.5), each asked for at every proportion's confidence sequence."""
    return float(special.betaln(a, b))


def proportion_cs(k: float, n: float, alpha: float, a: float = 0.5,
                  b: float = 0.5) -> tuple[float, float]:
    """Time-uniform (1 − alpha) confidence sequence for a binomial proportion at (k, n).

    The set of p where the beta(a, b)-mixture likelihood ratio against p stays below 1/alpha.
    """
    if n <= 0:
        return 0.0, 1.0
    # Python floats: the same IEEE arithmetic as numpy's scalars at a fraction of the cost
    # (brentq evaluates `excess` a few dozen times per call)
    log_mix = float(special.betaln(a + k, b + n - k) - _betaln(a, b))
    bound = math.log(1 / alpha)
    k, rest = float(k), float(n - k)

    def excess(p: float, log: Callable[[float], float] = math.log,
               log1p: Callable[[float], float] = _log1p) -> float:
        # xlogy(k, p) + xlog1py(n − k, −p) to the last bit (scipy's log1p, not libm's, so
        # brentq takes the same steps) without two scipy calls per evaluation; 0 < p < 1 here
        return log_mix - ((k * log(p) if k else 0.0)
                          + (rest * float(log1p(-p)) if rest else 0.0)) - bound

    tiny = 1e-300
    mle = min(max(k / n, tiny), 1 - 1e-15)
    if not excess(mle) < 0:  # huge counts: the sequence has shrunk to the estimate itself
        return mle, mle
    low = _brentq(excess, tiny, mle) if k > 0 and excess(tiny) > 0 else 0.0
    high = (_brentq(excess, mle, 1 - 1e-15)
            if k < n and excess(1 - 1e-15) > 0 else 1.0)
    return low, high
