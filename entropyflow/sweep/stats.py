"""The statistics of a sweep, as pure functions on arrays (no Ray, no files).

Per trial: the final and best value of the metric, and the first epoch (and wall time) at which
it reaches the target. Per cell (λ × placement) against the baseline (λ = 0), paired by seed:
the mean difference with a 95 % percentile-bootstrap confidence interval, a paired t-test and a
Wilcoxon signed-rank test (both two-sided, scipy), and Holm's step-down correction over the
cells of the grid. The verdict uses the Holm-corrected t-test at α = 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..estimate.seeds import holm  # noqa: F401 - Holm's step-down adjustment, one definition for the package

ALPHA = 0.05
BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0


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
    """Cell minus baseline over the seeds both have (the effect, in the metric's units)."""

    n: int
    mean: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    p_t: float | None  # paired t-test, two-sided
    p_wilcoxon: float | None  # Wilcoxon signed-rank, two-sided
    p_holm: float | None = None  # the t-test's p after Holm's correction over the grid


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float | None, float | None]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None)


def bootstrap_ci(
    diffs: Sequence[float] | np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampling seeds with replacement;
    a fixed generator makes it reproducible)."""
    d = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def present(values: Iterable[float | None]) -> list[float]:
    """The values that are not None (an outcome a trial did not reach), as floats."""
    return [float(v) for v in values if v is not None]


def paired(cell: Sequence[float], baseline: Sequence[float]) -> Paired:
    """Paired comparison of two equally long sequences (the same seeds, in the same order)."""
    c = np.asarray(cell, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if c.shape != b.shape:
        raise ValueError(f"paired samples differ in length ({c.size} vs {b.size})")
    d = c - b
    n = int(d.size)
    if n == 0:
        return Paired(0, None, None, None, None, None, None)
    mean, se = mean_se(d)
    if n < 2:
        return Paired(n, mean, None, None, None, None, None)
    low, high = bootstrap_ci(d)
    if np.all(d == 0):
        return Paired(n, mean, se, low, high, 1.0, 1.0)  # identical runs: no evidence of any difference
    # every seed moved by the same non-zero amount (one test image, say): the t statistic is infinite,
    # but n equal signs are only as unlikely as an exact sign test says, 2·0.5^n (0.25 for 3 seeds)
    p_t = float(stats.ttest_rel(c, b).pvalue) if np.ptp(d) > 0 else min(1.0, 2.0 * 0.5**n)
    p_w = float(stats.wilcoxon(c, b).pvalue)
    return Paired(n, mean, se, low, high, p_t, p_w)


def verdict(effect: Paired, smaller_is_better: bool) -> str:
    """'better', 'worse' or 'no detectable effect' (Holm-corrected t-test at α = 0.05)."""
    if effect.p_holm is None or effect.mean is None or effect.p_holm >= ALPHA:
        return "no detectable effect"
    improved = effect.mean < 0 if smaller_is_better else effect.mean > 0
    return "better" if improved else "worse"
