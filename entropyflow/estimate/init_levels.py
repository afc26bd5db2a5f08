"""The random-init level of ``log|c11|``, predicted from the initialisation scheme (pure).

A conv filter's per-position value under the paper's estimator is ``log|w|`` of one weight. When
the weights are drawn i.i.d. from

* ``N(0, σ²)`` (``kaiming_normal_``, ``xavier_normal_``, ``normal_``):
  ``E log|w| = log σ − (γ + log 2)/2 = log σ − 0.6352`` and ``median log|w| = log σ + log 0.6745``;
* ``U(−b, b)`` (``kaiming_uniform_``, PyTorch's default ``a = √5``, ``xavier_uniform_``):
  ``E log|w| = log b − 1`` and ``median log|w| = log b − log 2``.

:func:`recognise` finds which scheme produced a model's conv layers: a Kolmogorov–Smirnov test
of every candidate on all layers together (probability integral transform), with each scheme's
scale computed from the weight's fans as PyTorch does. A scheme is named only when exactly one
distinct candidate passes (α = 0.001); a layer gets a prediction only when its own values pass too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

EULER_GAMMA = 0.5772156649015329
NORMAL_MEAN_SHIFT = -(EULER_GAMMA + math.log(2.0)) / 2.0  # E log|Z|, Z ~ N(0, 1): −0.63518
NORMAL_MEDIAN_SHIFT = math.log(0.6744897501960817)  # log of the median of |Z|: −0.39377
KS_CRITICAL = 1.9495  # α = 0.001, asymptotic Kolmogorov distribution


@dataclass(frozen=True)
class Scheme:
    name: str
    dist: str  # "normal" (scale σ) or "uniform" (scale b)
    scale: Callable[[int, int], float]  # (fan_in, fan_out) → σ or b


SCHEMES = (
    Scheme("PyTorch default: kaiming_uniform_(a=√5), U(±1/√fan_in)", "uniform", lambda fi, fo: 1 / math.sqrt(fi)),
    Scheme("kaiming_normal_(mode='fan_out', relu)", "normal", lambda fi, fo: math.sqrt(2 / fo)),
    Scheme("kaiming_normal_(mode='fan_in', relu)", "normal", lambda fi, fo: math.sqrt(2 / fi)),
    Scheme("kaiming_uniform_(mode='fan_in', relu)", "uniform", lambda fi, fo: math.sqrt(6 / fi)),
    Scheme("xavier_uniform_", "uniform", lambda fi, fo: math.sqrt(6 / (fi + fo))),
    Scheme("xavier_normal_", "normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    Scheme("lecun_normal_ (fan_in)", "normal", lambda fi, fo: math.sqrt(1 / fi)),
    Scheme("normal_(0, 0.01)", "normal", lambda fi, fo: 0.01),
    Scheme("normal_(0, 0.02) / trunc_normal_(std=0.02)", "normal", lambda fi, fo: 0.02),
)


@dataclass(frozen=True)
class InitLevel:
    """A recognised scheme and its predicted ``E log|w|`` and median, in nats."""

    scheme: str
    dist: str
    scale: float
    mean: float
    median: float
    ks: float  # the KS distance of the recognised scheme
    n: int  # the values it was recognised from


def fans(weight_shape: Sequence[int]) -> tuple[int, int]:
    """PyTorch's ``(fan_in, fan_out)`` of a weight ``(out, in/groups, *kernel)``."""
    receptive = math.prod(weight_shape[2:]) if len(weight_shape) > 2 else 1
    return int(weight_shape[1]) * receptive, int(weight_shape[0]) * receptive


def predicted(dist: str, scale: float) -> tuple[float, float]:
    """``(E log|w|, median log|w|)`` for ``w ~ N(0, scale²)`` or ``U(−scale, scale)``."""
    if dist == "normal":
        return math.log(scale) + NORMAL_MEAN_SHIFT, math.log(scale) + NORMAL_MEDIAN_SHIFT
    if dist == "uniform":
        return math.log(scale) - 1.0, math.log(scale) - math.log(2.0)
    raise ValueError(f"unknown distribution {dist!r}")


def cdf_log_abs(t: np.ndarray, dist: str, scale: float) -> np.ndarray:
    """``P(log|w| ≤ t)``."""
    r = np.exp(np.asarray(t, dtype=np.float64)) / scale
    if dist == "normal":
        cdf: np.ndarray = torch.special.erf(torch.from_numpy(r / math.sqrt(2.0))).numpy()
        return cdf
    return np.minimum(r, 1.0)


def ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance of ``u`` from the uniform distribution on [0, 1]."""
    x = np.sort(np.asarray(u, dtype=np.float64))
    i = np.arange(1, x.size + 1)
    return float(max(np.max(i / x.size - x), np.max(x - (i - 1) / x.size)))


def recognise(layers: Sequence[tuple[np.ndarray, Sequence[int]]]) -> tuple[str | None, list[InitLevel | None]]:
    """The one initialisation scheme the conv layers' values follow, and each layer's predicted level.

    ``layers``: per conv layer, its per-filter ``log|w|`` values (pooled over seeds) and weight shape.
    The scheme is tested on all layers together: under the right scheme, each value mapped through
    its layer's CDF is uniform on [0, 1] (the probability integral transform), and the pooled KS
    distance stays below its α = 0.001 critical value; fan-dependent scales make the schemes
    distinguishable across layers of different shapes. A layer gets a prediction only when its own
    values also pass. Returns (None, all None) when no scheme or several distinct ones fit.
    """
    usable = [(np.asarray(v, dtype=np.float64).ravel(), tuple(shape)) for v, shape in layers if len(shape) >= 2]
    usable = [(v[np.isfinite(v)], shape) for v, shape in usable]
    total = sum(v.size for v, _ in usable)
    if total < 8:
        return None, [None] * len(layers)
    fits: dict[tuple[str, tuple[float, ...]], tuple[float, Scheme]] = {}
    for scheme in SCHEMES:
        scales = tuple(round(scheme.scale(*fans(shape)), 12) for _, shape in usable)
        u = np.concatenate([cdf_log_abs(v, scheme.dist, sc) for (v, _), sc in zip(usable, scales, strict=True)])
        d = ks_uniform(u)
        key = (scheme.dist, scales)
        if d < KS_CRITICAL / math.sqrt(total) and (key not in fits or d < fits[key][0]):
            fits[key] = (d, scheme)
    if len(fits) != 1:
        return None, [None] * len(layers)
    (((dist, scales), (_, scheme)),) = fits.items()
    same = [
        s.name for s in SCHEMES if (s.dist, tuple(round(s.scale(*fans(sh)), 12) for _, sh in usable)) == (dist, scales)
    ]
    name = " = ".join(same)
    levels: list[InitLevel | None] = []
    for values, shape in layers:
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if len(shape) < 2 or v.size == 0:
            levels.append(None)
            continue
        scale = scheme.scale(*fans(shape))
        d = ks_uniform(cdf_log_abs(v, dist, scale))
        mean, median = predicted(dist, scale)
        levels.append(
            InitLevel(name, dist, scale, mean, median, d, int(v.size)) if d < KS_CRITICAL / math.sqrt(v.size) else None
        )
    return name, levels
