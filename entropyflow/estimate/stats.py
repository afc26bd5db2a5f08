"""Summary statistics of per-filter values that survive ``-inf`` (c11 = 0) without NaN.

Location statistics describe the finite values; ``n_neginf`` counts the ``-inf`` ones. Quantiles
use linear interpolation, the default of numpy and pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    n: int
    n_finite: int
    n_neginf: int
    mean: float | None
    std: float | None
    min: float | None
    q1: float | None
    median: float | None
    q3: float | None
    max: float | None


def summarize(values: np.ndarray) -> Summary:
    """Statistics over the finite entries of ``values``; ``-inf`` entries are only counted."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(v).any() or np.isposinf(v).any():
        raise ValueError("per-filter values must be finite or -inf")
    finite = v[np.isfinite(v)]
    n_neginf = int(v.size - finite.size)
    if finite.size == 0:
        return Summary(int(v.size), 0, n_neginf, None, None, None, None, None, None, None)
    q1, med, q3 = (float(x) for x in np.quantile(finite, [0.25, 0.5, 0.75]))
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return Summary(
        n=int(v.size),
        n_finite=int(finite.size),
        n_neginf=n_neginf,
        mean=float(finite.mean()),
        std=std,
        min=float(finite.min()),
        q1=q1,
        median=med,
        q3=q3,
        max=float(finite.max()),
    )


def inf_safe_sum(values: np.ndarray) -> float:
    """Sum that is ``-inf`` when any entry is ``-inf`` (never NaN for finite/-inf inputs)."""
    v = np.asarray(values, dtype=np.float64)
    return float("-inf") if np.isneginf(v).any() else float(v.sum())
