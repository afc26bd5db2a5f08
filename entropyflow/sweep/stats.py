"""The statistics of a sweep, as pure functions on arrays (no Ray, no files).

Per trial: the final and best value of the metric, and the first epoch (and wall time) at which
it reaches the target. Per cell (λ × placement) against the baseline (λ = 0), paired by seed,
the differences d = cell − baseline are summarised by their mean and one test with the interval
that inverts it, so the two never disagree:

* an ordinary outcome: the two-sided paired t-test and the 95 % t interval of the mean
  difference (``mean ± t(0.975, n−1)·s/√n``), which has its stated coverage at every n for
  normal differences (a percentile bootstrap does not: at 3 seeds it is the range of the
  differences and excludes 0 in a quarter of null sweeps);
* a censored outcome (``epochs_to_target``: runs that never reach the target): the restricted
  time to target, ``min(T, E + 1)`` with ``T`` the first epoch at which the run reaches the
  target (∞ if it never does within the horizon ``E = --epochs``), compared by a paired
  sign-flip permutation test of its mean (exact, over all 2ⁿ sign vectors, for n ≤ 12; else
  10,000 fixed-seed random sign vectors) with the interval that inverts that test.

A Wilcoxon signed-rank p is kept for reference. Holm's step-down correction runs over the cells
of the grid; the verdict (``better``, ``worse``, ``no detectable effect`` with the effect the
interval rules out) is given on the primary outcome only, and only from ``MIN_PAIRS`` pairs on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..estimate.seeds import holm  # noqa: F401 - Holm's step-down adjustment, one definition for the package

ALPHA = 0.05
LEVEL = 1.0 - ALPHA  # the intervals' coverage
MIN_PAIRS = 5  # fewer paired seeds than this: estimates and intervals, but no verdict
EXACT_FLIPS = 12  # up to this many pairs the sign-flip test enumerates all 2ⁿ sign vectors
FLIPS = 10_000  # beyond: this many random sign vectors from a fixed generator
FLIP_SEED = 0
T_TEST = "paired t-test"
SIGN_FLIP = "paired sign-flip permutation test of the restricted mean"
TOO_FEW = "too few pairs for a verdict"
NO_EFFECT = "no detectable effect"
EXPLORATORY = "exploratory"


def reached(values: Sequence[float], target: float, mode: str) -> int | None:
    """Index of the first value at or beyond ``target`` (≤ for mode 'min', ≥ for 'max'), else None."""
    for i, v in enumerate(values):
        if (v <= target) if mode == "min" else (v >= target):
            return i
    return None


def best(values: Sequence[float], mode: str) -> float:
    return float(min(values) if mode == "min" else max(values))


class EarlyStop:
    """Early stopping as Keras and the paper's experiments count it: training ends at the epoch
    that completes ``patience`` epochs without improving on the best value so far."""

    def __init__(self, patience: int, mode: str):
        self.patience, self.mode = patience, mode
        self.best: float | None = None
        self.wait = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop after it."""
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return self.wait >= self.patience


def stop_epoch(values: Sequence[float], patience: int, mode: str) -> int:
    """1-based epoch at which early stopping with ``patience`` ends training (the last epoch if
    it never stalls that long)."""
    rule = EarlyStop(patience, mode)
    for epoch, v in enumerate(values, start=1):
        if rule.update(v):
            return epoch
    return len(values)


@dataclass(frozen=True)
class Paired:
    """Cell minus baseline over the seeds both have (the effect, in the metric's units).

    ``p`` is the p-value of ``test`` (the paired t-test, or the sign-flip test for a censored
    outcome) and ``ci_low`` … ``ci_high`` the 95 % interval that inverts the same test (±inf
    where the test could not reject at any effect: too few pairs for a sign-flip test)."""

    n: int
    mean: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    p_t: float | None  # paired t-test, two-sided (None for a censored outcome: not a valid test there)
    p_wilcoxon: float | None  # Wilcoxon signed-rank, two-sided (for reference)
    p_holm: float | None = None  # ``p`` after Holm's correction over the grid
    p: float | None = None  # the p-value the verdict rests on
    test: str = T_TEST


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float | None, float | None]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None)


def present(values: Iterable[float | None]) -> list[float]:
    """The values that are not None (an outcome a trial did not reach), as floats."""
    return [float(v) for v in values if v is not None]


# --- the t-test and its interval, vectorised over the last axis (one row per sweep) ---------------


def t_test(diffs: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided paired t-test of mean(d) = 0 and the t interval ``mean ± t(1−α/2, n−1)·s/√n``,
    per row of ``diffs`` (shape (..., n), n ≥ 2): ``(p, low, high)``.

    Differences that are all equal make the t statistic infinite; then n equal signs are only as
    unlikely as an exact sign test says, ``p = 2·0.5ⁿ`` (1 if all are 0), and the interval is the
    one that inverts that test: the common value when ``p < α``, else unbounded."""
    d = np.asarray(diffs, dtype=np.float64)
    n = d.shape[-1]
    if n < 2:
        raise ValueError("a t-test needs at least 2 pairs")
    mean = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    constant = np.ptp(d, axis=-1) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(constant, 0.0, mean / np.where(constant, 1.0, se))
    p = 2.0 * stats.t.sf(np.abs(t), n - 1)
    half = stats.t.ppf(0.5 + level / 2.0, n - 1) * se
    low, high = mean - half, mean + half
    sign_p = np.where(mean == 0, 1.0, min(1.0, 2.0 * 0.5**n))
    p = np.where(constant, sign_p, p)
    wide = constant & (min(1.0, 2.0 * 0.5**n) >= 1.0 - level)
    low = np.where(constant, np.where(wide, -np.inf, mean), low)
    high = np.where(constant, np.where(wide, np.inf, mean), high)
    return p, low, high


# --- the sign-flip permutation test (censored outcomes) ------------------------------------------


def sign_vectors(n: int) -> tuple[np.ndarray, bool]:
    """The sign vectors of the test: all 2ⁿ for n ≤ EXACT_FLIPS (exact), else FLIPS random ones
    from ``default_rng(FLIP_SEED)``; and whether the set is exact."""
    if n <= EXACT_FLIPS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n))).reshape(2**n, n), True
    return np.random.default_rng(FLIP_SEED).choice((-1.0, 1.0), size=(FLIPS, n)), False


def _flip_p(flipped: np.ndarray, observed: np.ndarray, exact: bool, scale: np.ndarray) -> np.ndarray:
    # a sign vector counts when its |sum| is at least the observed one (ties included, up to rounding)
    count = (flipped >= observed[..., None] - 1e-9 * scale[..., None]).sum(axis=-1)
    k = flipped.shape[-1]
    p: np.ndarray = count / k if exact else (1.0 + count) / (1.0 + k)
    return p


def sign_flip_p(diffs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Two-sided paired sign-flip (permutation) test of mean(d) = 0, per row of ``diffs`` (shape
    (..., n)): under the null, cell and baseline are exchangeable within a seed, so each difference
    is as likely to have either sign. p = the share of sign vectors s with |Σ sᵢdᵢ| ≥ |Σ dᵢ|
    (exact for n ≤ 12; with random vectors, (1 + count)/(1 + 10,000), which is valid)."""
    d = np.asarray(diffs, dtype=np.float64)
    signs, exact = sign_vectors(d.shape[-1])
    scale = np.abs(d).sum(axis=-1) + 1e-300
    return _flip_p(np.abs(d @ signs.T), np.abs(d.sum(axis=-1)), exact, scale)


def sign_flip_interval(diffs: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The interval that inverts the sign-flip test: the shifts δ at which the test of
    mean(d − δ) = 0 does not reject at 1 − level, found by bisection from the mean outwards.
    Unbounded (±inf) when no shift can be rejected (2/2ⁿ ≥ α: 5 pairs or fewer)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    signs, exact = sign_vectors(n)
    a, b = signs @ d, signs.sum(axis=1)
    total, alpha = float(d.sum()), 1.0 - level
    scale = float(np.abs(d).sum()) + float(np.ptp(d)) * n + 1e-300

    def accepted(delta: float) -> bool:
        p = _flip_p(np.abs(a - delta * b)[None, :], np.array([abs(total - n * delta)]), exact, np.array([scale]))
        return bool(p[0] > alpha)

    mean, spread = float(d.mean()), float(np.ptp(d)) + abs(float(d.mean())) + 1.0
    bounds = []
    for far in (float(d.min()) - spread, float(d.max()) + spread):
        if accepted(far):
            bounds.append(math.copysign(math.inf, far - mean))
            continue
        good, bad = mean, far
        for _ in range(80):
            mid = 0.5 * (good + bad)
            if mid in (good, bad):
                break
            good, bad = (mid, bad) if accepted(mid) else (good, mid)
        bounds.append(_snap(good, a, b, total, n))
    return bounds[0], bounds[1]


def _snap(delta: float, a: np.ndarray, b: np.ndarray, total: float, n: int) -> float:
    """The test's p changes only where |Σ sᵢ(dᵢ − δ)| = |Σ (dᵢ − δ)| for some sign vector: at
    δ = (Σd − s·d)/(n − Σs) or (Σd + s·d)/(n + Σs). The bound found by bisection is one of them,
    up to rounding; return it exactly."""
    with np.errstate(divide="ignore", invalid="ignore"):
        points = np.concatenate([(total - a) / (n - b), (total + a) / (n + b)])
    points = points[np.isfinite(points)]
    if points.size == 0:
        return delta
    near = float(points[np.argmin(np.abs(points - delta))])
    return near if abs(near - delta) <= 1e-6 * (1.0 + abs(delta)) else delta


def paired(cell: Sequence[float], baseline: Sequence[float], censored: bool = False) -> Paired:
    """Paired comparison of two equally long sequences (the same seeds, in the same order);
    ``censored``: the values are restricted times to target, compared by the sign-flip test."""
    c = np.asarray(cell, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if c.shape != b.shape:
        raise ValueError(f"paired samples differ in length ({c.size} vs {b.size})")
    d = c - b
    n = int(d.size)
    test = SIGN_FLIP if censored else T_TEST
    if n == 0:
        return Paired(0, None, None, None, None, None, None, test=test)
    mean, se = mean_se(d)
    if n < 2:
        return Paired(n, mean, None, None, None, None, None, test=test)
    p_w = 1.0 if np.all(d == 0) else float(stats.wilcoxon(c, b).pvalue)
    if censored:
        low, high = sign_flip_interval(d)
        p = float(sign_flip_p(d))
        return Paired(n, mean, se, low, high, None, p_w, p=p, test=test)
    p_arr, low_arr, high_arr = t_test(d)
    p = float(p_arr)
    return Paired(n, mean, se, float(low_arr), float(high_arr), p, p_w, p=p, test=test)


def ruled_out(effect: Paired, smaller_is_better: bool) -> tuple[float, float] | None:
    """The smallest improvement and the smallest harm (in the metric's units, ≥ 0 unless the
    interval lies on one side) that the 95 % interval excludes: an effect beyond them is ruled out."""
    if effect.ci_low is None or effect.ci_high is None:
        return None
    if smaller_is_better:  # an improvement is a negative difference
        return -effect.ci_low, effect.ci_high
    return effect.ci_high, -effect.ci_low


def verdict(effect: Paired, smaller_is_better: bool) -> str:
    """'better' or 'worse' (Holm-corrected p < α), else 'no detectable effect' with the effects the
    interval rules out; 'too few pairs for a verdict' below MIN_PAIRS pairs."""
    if effect.n < MIN_PAIRS:
        return TOO_FEW
    if effect.p_holm is None or effect.mean is None or effect.p_holm >= ALPHA:
        bounds = ruled_out(effect, smaller_is_better)
        if bounds is None:
            return NO_EFFECT
        if math.isinf(bounds[0]) and math.isinf(bounds[1]):
            return f"{NO_EFFECT}; nothing ruled out (unbounded interval: this test cannot reject with {effect.n} pairs)"
        return f"{NO_EFFECT}; ruled out: improvement > {_bound(bounds[0])}, harm > {_bound(bounds[1])}"
    improved = effect.mean < 0 if smaller_is_better else effect.mean > 0
    return "better" if improved else "worse"


def _bound(v: float) -> str:
    return "none (unbounded)" if math.isinf(v) else f"{v:.4g}"


def kind(verdict_text: str) -> str:
    """The verdict's category ('better', 'worse', 'no detectable effect', …) without its bounds."""
    return verdict_text.split(";", 1)[0]
