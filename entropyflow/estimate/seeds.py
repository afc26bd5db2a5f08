"""Where a model's layer statistics lie among random-initialisation seeds (pure: numbers in,
numbers out; no scipy).

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


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` (continued fraction, modified Lentz;
    relative accuracy about 1e-14)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], not {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below its mean
        return 1.0 - betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * h / a


def t_two_sided(t: float, df: float) -> float:
    """``P(|T| ≥ |t|)`` for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


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
    below = sum(1 for s in seeds if s < x)
    equal = sum(1 for s in seeds if s == x)
    return 100.0 * (below + 0.5 * equal) / len(seeds)


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

    @property
    def beyond_range(self) -> bool:
        """Below the lowest or above the highest seed (no correction; compare ``outside``)."""
        return self.value < self.lo or self.value > self.hi


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
