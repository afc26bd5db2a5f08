"""Run the spectral estimator (SPEC §4) on walked sites and build their :class:`LayerResult`.

Conv layers: per filter ``Σ_ω log σ_f(ω)`` (``totals``) and its mean per output position
(``per_position``), plus the whole layer's ``Σ_ω Σ_i log σ_i(K̂(ω))`` (``joint``), all with a
circular boundary on the traced input grid. Dense layers: ``log σ_i`` per singular direction
(``per_position``, one entry per direction), ``logdet = Σ_i log σ_i``, batched by shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from math import prod

import numpy as np
import torch

from ..errors import BudgetError
from ..load.source import TensorSource
from ..text import printable
from ..walk.sites import ConvGeometry, LayerSite
from ..words import arg
from . import paper, spectral
from .dense import DensePrefetch, site_weight
from .results import LayerResult, layer_result

UNTRACED_GRID = 32  # per axis: a fine circular grid stands in for the large-grid limit without geometry


def _grid(site: LayerSite) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The circular grid, stride and dilation the spectral estimator uses for a conv site."""
    geo = site.geometry
    if isinstance(geo, ConvGeometry):
        return geo.in_size, geo.stride, geo.dilation
    nd = len(site.weight_shape) - 2
    return tuple(max(UNTRACED_GRID, k) for k in site.weight_shape[2:]), (1,) * nd, (1,) * nd


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_budget(sites: Sequence[LayerSite], budget: int) -> None:
    """Refuse, before any work, a layer whose smallest spectral chunk cannot fit ``budget`` (or,
    for a layer whose weight is itself that large, four times its float64 weight)."""
    for site in sites:
        if not site.is_conv:
            continue
        grid, stride, dilation = _grid(site)
        need = spectral.conv_work(site.weight_shape, grid, stride, dilation).least
        allowance = max(budget, 4 * 8 * prod(site.weight_shape))
        if need > allowance:
            raise BudgetError(
                f"layer {printable(site.name, 60)}: the spectral estimator needs at least {_mib(need)} at once for a "
                f"{'x'.join(map(str, site.weight_shape))} kernel on a {'x'.join(map(str, grid))} grid, more than the "
                "memory "
                f"budget of {_mib(budget)}: raise {arg('max-gpu-mem')}, pass a smaller {arg('input-size')}, or use "
                f"{arg('estimator', 'paper')}"
            )


def conv_site(
    index: int, site: LayerSite, tensors: TensorSource, device: torch.device, rule: str, budget: int
) -> LayerResult:
    """The spectrum of a conv site's whole weight (``rule`` is always ``first``: every channel is used)."""
    weight = tensors.get(site.weight_key)
    c11 = weight.reshape(weight.shape[0], -1)[:, 0].to(paper.FLOAT).numpy()
    return conv_layer(index, site, weight, c11, device, budget)


def dense_layers(
    dense: Sequence[tuple[int, LayerSite]],
    tensors: TensorSource,
    device: torch.device,
    budget: int,
    prefetch: DensePrefetch | None,
) -> dict[int, LayerResult]:
    """``log σ_i`` of every dense site (keyed by its position ``i`` in the walk), batched by shape;
    ``prefetch`` (log-determinants of square parts) does not apply."""
    loads = [(i, site.weight_shape, functools.partial(site_weight, site, tensors)) for i, site in dense]  # rows applied
    logs = dense_log_singular_values(loads, device, budget)
    return {i: dense_layer(i + 1, site, logs[i]) for i, site in dense}


def conv_layer(
    index: int, site: LayerSite, weight: torch.Tensor, c11: np.ndarray, device: torch.device, budget: int
) -> LayerResult:
    nd = len(site.weight_shape) - 2
    geo = site.geometry
    w = weight.to(device=device, dtype=spectral.FLOAT)
    if isinstance(geo, ConvGeometry):
        plan = spectral.circular_plan(w, geo.in_size, geo.stride, geo.dilation, geo.groups)
        spec = spectral.conv_spectrum(plan, budget)
        exact, reason = _exactness(geo, plan)
        totals, joint = spec.filter_totals, spec.layer_total
    else:
        grid, _, _ = _grid(site)
        plan = spectral.circular_plan(w, grid, (1,) * nd, (1,) * nd)
        spec = spectral.conv_spectrum(plan, budget, layer=False)
        exact, totals, joint = None, None, None
        reason = (
            f"no geometry: per-position value on a {'x'.join(map(str, grid))} circular grid (≈ the large-grid "
            "limit) assuming stride 1 and no dilation; totals unavailable"
        )
    per = (spec.filter_totals / spec.n_freq).cpu().numpy()
    return layer_result(
        index,
        site,
        c11=c11,
        per_position=per,
        totals=None if totals is None else totals.cpu().numpy(),
        exact=exact,
        reason=reason,
        joint=joint,
    )


def coincides(geo: ConvGeometry, grid: tuple[int, ...]) -> bool:
    """Whether the layer's own (non-wrapping) map IS the circular operator the estimator measures on
    ``grid`` (the plan's output grid), so that its values are exact (SPEC §4).

    Per axis, with input ``n``, output ``m``, kernel ``k``, stride ``s``, left padding ``p``,
    dilation ``δ``: output ``i`` reads inputs ``s·i − p + δ·a``. The two maps are the same matrix
    (up to the columns of pixels neither reads) exactly when no output reads padding and no circular
    window wraps: ``p = 0``, the dilated reach ``δ(k − 1) < s`` (windows disjoint, so the plan's
    kernel is one tap: 1x1 convs, kernel = stride), ``m = ⌈n/s⌉`` (the circular map's output count)
    and the last window ``s(m − 1) + δ(k − 1) ≤ n − 1`` stays inside the input (a right padding
    would otherwise be read as pixels). Groups do not matter (both maps are block diagonal over
    them); a transposed conv is the adjoint of the conv this geometry describes, so the same test
    applies to it (its output padding is in ``n``)."""
    for n, m, k, s, p, d, g in zip(
        geo.in_size, geo.out_size, geo.kernel, geo.stride, geo.pad_left, geo.dilation, grid, strict=True
    ):
        reach = d * (k - 1)
        if p != 0 or reach >= s or m != g or s * (m - 1) + reach > n - 1:
            return False
    return True


def _exactness(geo: ConvGeometry, plan: spectral.CircularPlan) -> tuple[bool, str]:
    if coincides(geo, plan.grid):
        return True, ""
    grid = "x".join(map(str, geo.in_size))
    if not plan.divisible:
        return False, (
            f"input grid {grid} is not a multiple of the stride {'x'.join(map(str, geo.stride))}: "
            f"circular spectrum on the rounded "
            f"{'x'.join(str(n * s) for n, s in zip(plan.grid, geo.stride, strict=True))} grid"
        )
    circular_same = (
        geo.padding_mode == "circular"
        and not geo.transposed
        and tuple(geo.out_size) == tuple(n // s for n, s in zip(geo.in_size, geo.stride, strict=True))
    )
    if circular_same:
        return True, ""
    if any(geo.pad_left):
        boundary = f"{'zero' if geo.padding_mode == 'zeros' else geo.padding_mode} padding", "padded map itself"
    elif any(d * (k - 1) >= s for k, s, d in zip(geo.kernel, geo.stride, geo.dilation, strict=True)):
        boundary = "no padding, kernel wider than the stride", "layer's own map, whose windows do not wrap"
    else:
        boundary = "padding on the right only", "padded map itself"
    reason = (
        f"{boundary[0]}: the spectrum of the layer with a circular boundary on the traced input grid, not of "
        f"the {boundary[1]} (how far apart: docs/method.md, spectral estimator)"
    )
    if plan.n_freq != geo.n_out:
        reason += (
            f"; the circular map has {plan.n_freq} positions per filter, the layer {geo.n_out}: totals sum "
            f"over the {plan.n_freq}, per-position values are their mean"
        )
    return False, reason


def dense_log_singular_values(
    jobs: Sequence[tuple[int, tuple[int, ...], Callable[[], torch.Tensor]]], device: torch.device, budget: int
) -> dict[int, np.ndarray]:
    """``log σ_i`` of each ``(id, shape, load)``; equal shapes go through one batched call, and a
    batch reads (with ``load``) and holds at most about ``budget`` bytes of float64, so a
    checkpoint far larger than memory streams through."""
    by_shape: dict[tuple[int, ...], list[tuple[int, Callable[[], torch.Tensor]]]] = {}
    for i, shape, load in jobs:
        by_shape.setdefault(tuple(shape), []).append((i, load))
    out: dict[int, np.ndarray] = {}
    for shape, group in by_shape.items():
        per = max(1, budget // (3 * shape[0] * shape[1] * 8))  # matrix + Gram/SVD workspace
        for lo in range(0, len(group), per):
            chunk = group[lo : lo + per]
            batch = torch.stack([load().to(device=device, dtype=spectral.FLOAT) for _, load in chunk])
            logs = spectral.dense_log_singular_values(batch).cpu().numpy()
            out.update((i, row) for (i, _), row in zip(chunk, logs, strict=True))
            del batch
    return out


def dense_layer(index: int, site: LayerSite, logs: np.ndarray) -> LayerResult:
    geo = site.geometry
    n = getattr(geo, "n_positions", None)
    total = float(logs.sum()) if not np.isneginf(logs).any() else float("-inf")
    reason = "" if n is not None else "no geometry: positions unknown, totals unavailable"
    return layer_result(
        index,
        site,
        c11=[],
        per_position=logs,
        totals=None if n is None else n * logs,
        exact=True if n is not None else None,
        reason=reason,
        logdet=total,
        joint=None if n is None else n * total,
    )
