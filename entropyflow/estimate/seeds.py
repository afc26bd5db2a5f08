"""Where a model's layer statistics lie among random-initialisation seeds (pure: numbers in,
numbers out; the distributions come from scipy, imported on first use to keep start-up cheap).

For each layer and each statistic (the layer's ``mean`` and ``median`` of the per-filter values,
and its ``total``), the N seeds give a sample of what random initialisation produces. The model's
value ``x`` is compared with it by

* ``z = (x − m) / s`` with the seeds' mean ``m`` and standard deviation ``s`` (ddof = 1);
* the empirical percentile ``100·(#{seeds < x} + ½·#{seeds = x}) / N``;
* a two-sided prediction test: if the seeds are normal, ``t = (x − m) / (s·√(1 + 1/N))`` follows
  Student's t with N − 1 degrees of freedom for a further draw of the same initialisation, so
  ``p = P(|T| ≥ |t|)``. ``p`` is Holm-corrected over the layers (per statistic), and a layer is
  flagged ``outside`` the random-init level when the corrected p is below ``alpha``.

With one seed there is no spread: z, p and the flag are None (one seed cannot separate signal
from noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

STATISTICS = ("mean", "median", "total")
ALPHA = 0.05


def t_two_sided(t: float, df: float) -> float:
    """``P(|T| ≥ |t|)`` for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    from scipy.special import stdtr  # lazy: scipy costs half a second at import

    return min(1.0, 2.0 * float(stdtr(df, -abs(t))))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error); None entries are left out of the family."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        out[i] = running
    return out


def percentile(x: float, seeds: Sequence[float]) -> float:
    """The empirical percentile of ``x`` among ``seeds`` (ties count half)."""
    from scipy.stats import percentileofscore  # lazy: scipy.stats costs a second at import

    return float(percentileofscore(seeds, x, kind="mean"))


@dataclass(frozen=True)
class SeedStat:
    """One layer statistic of the model against the same statistic over the seeds."""

    value: float
    seeds: tuple[float, ...]
    mean: float
    sd: float | None
    lo: float
    hi: float
    z: float | None
    percentile: float
    p: float | None
    p_holm: float | None = None

    @property
    def outside(self) -> bool | None:
        """Outside the random-init level after the Holm correction (None with one seed)."""
        return None if self.p_holm is None else self.p_holm < ALPHA


def seed_stat(value: float | None, seeds: Sequence[float | None]) -> SeedStat | None:
    """``value`` against ``seeds``; None when the value or any seed is missing or not finite."""
    if value is None or not math.isfinite(value) or not seeds:
        return None
    if any(s is None or not math.isfinite(s) for s in seeds):
        return None
    vals = tuple(float(s) for s in seeds if s is not None)
    n = len(vals)
    mean = math.fsum(vals) / n
    sd = math.sqrt(math.fsum((s - mean) ** 2 for s in vals) / (n - 1)) if n > 1 else None
    z = p = None
    if sd is not None and sd > 0:
        z = (value - mean) / sd
        p = t_two_sided((value - mean) / (sd * math.sqrt(1.0 + 1.0 / n)), n - 1)
    elif sd == 0.0:  # every seed gave the same value: anything else is outside
        z, p = (0.0, 1.0) if value == mean else (math.copysign(math.inf, value - mean), 0.0)
    return SeedStat(value, vals, mean, sd, min(vals), max(vals), z, percentile(value, vals), p)


def with_holm(stats: Sequence[SeedStat | None]) -> list[SeedStat | None]:
    """The same statistics with Holm-corrected p over the family (the layers)."""
    adjusted = holm([s.p if s is not None else None for s in stats])
    return [None if s is None else replace(s, p_holm=q) for s, q in zip(stats, adjusted, strict=True)]
