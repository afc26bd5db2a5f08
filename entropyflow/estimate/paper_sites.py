"""Run the paper's estimator (SPEC §2-3) on walked sites and build their :class:`LayerResult`.

Reads only what it needs from the tensor source: ``weight[:, 0]`` of each conv (the first input
channel of each filter's group), the ``m × m`` square part of each dense weight. Dense
log-determinants are batched in float64, and those a :class:`DensePrefetch` already computed are
taken from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..load.source import TensorSource
from ..walk.sites import ConvGeometry, DenseGeometry, LayerSite
from . import paper
from .dense import DensePrefetch, Job, run_dense
from .pivots import pivot_plan
from .results import LayerResult, layer_result

NO_GEOMETRY_UNTRACED = "not called in the traced forward pass: no geometry, total unavailable"


def conv_layer(
    index: int, site: LayerSite, tensors: TensorSource, device: torch.device, rule: str, budget: int
) -> LayerResult:
    """``log|c11|`` per filter (``rule`` ``first``) or the mean over input channels (``mean``), and
    the completed determinant per filter when the pivot formula is exact. ``budget`` is unused."""
    nd = len(site.weight_shape) - 2
    geo = site.geometry
    totals: torch.Tensor | None = None
    exact: bool | None = None
    reasons: list[str] = []
    plan = None
    if isinstance(geo, ConvGeometry):
        plan = pivot_plan(geo.in_size, geo.out_size, geo.kernel, geo.stride, geo.pad_left, geo.dilation)
        if geo.padding_mode != "zeros" and any(geo.pad_left):
            reasons.append(
                f"padding_mode='{geo.padding_mode}' maps padded taps onto image pixels: the pivot formula does not "
                "apply; total = n_out·log|c11|"
            )
        elif not plan.exact:
            reasons.append(plan.reason())
        if rule == "mean":
            reasons.append(
                "channel_rule=mean averages log|taps| over input channels (§4.2 reading), not a completed determinant"
            )
        exact = not reasons
    else:
        reasons.append(
            (site.untraced_reason or NO_GEOMETRY_UNTRACED)
            if not site.inferred
            else "kind inferred from the state dict: no geometry, total unavailable"
        )
    # read only the taps the estimate uses: c11, and for exact totals the pivot taps (a corner of the kernel)
    counts = plan.counts if plan is not None and exact else ((1,),) * nd
    extent = tuple(max((a for a, n in enumerate(c) if n), default=0) + 1 for c in counts)
    counts = tuple(c[:n] for c, n in zip(counts, extent, strict=True))
    taps0 = tensors.get_slice(site.weight_key, (slice(None), 0) + tuple(slice(0, n) for n in extent)).to(
        device=device, dtype=paper.FLOAT
    )
    c11 = taps0.reshape(taps0.shape[0], -1)[:, 0]
    if rule == "first":
        per = paper.log_abs(c11)
    else:
        first = tensors.get_slice(site.weight_key, (slice(None), slice(None)) + (0,) * nd).to(
            device=device, dtype=paper.FLOAT
        )
        per = paper.conv_per_position_mean(first)
    if exact:
        totals = paper.conv_totals_exact(taps0, paper.tap_counts(counts, device))
    elif isinstance(geo, ConvGeometry):
        totals = paper.conv_totals_paper(per, geo.n_out)
    return layer_result(
        index,
        site,
        c11=c11.cpu().numpy(),
        per_position=per.cpu().numpy(),
        totals=None if totals is None else totals.cpu().numpy(),
        exact=exact,
        reason="; ".join(reasons),
    )


def dense_layers(
    dense: Sequence[tuple[int, LayerSite]],
    tensors: TensorSource,
    device: torch.device,
    budget: int,
    prefetch: DensePrefetch | None,
) -> dict[int, LayerResult]:
    """``log|det W[:m,:m]|`` of every dense site (keyed by its position ``i`` in the walk): those
    ``prefetch`` already computed on these tensors are taken from it, the rest batched here."""
    jobs = {i: _job(site) for i, site in dense}
    early = prefetch.take() if prefetch is not None else {}
    done: dict[Job, float] = {}
    for job in jobs.values():
        src, key = tensors.origin(job[0])
        if prefetch is not None and src is prefetch.tensors and job._replace(key=key) in early:
            done[job] = early[job._replace(key=key)]
    done.update(run_dense(tensors, [j for j in jobs.values() if j not in done], device, budget))
    return {i: _dense(i + 1, site, done[jobs[i]], jobs[i][2]) for i, site in dense}


def _job(site: LayerSite) -> Job:
    """The square part of a dense site: (key, first row, m = min(N, d)), and how rows are picked."""
    m = min(site.weight_shape[0], site.weight_shape[1])
    if site.row_period is None and not site.transposed:
        return Job(site.weight_key, site.rows[0] if site.rows else 0, m)
    return Job(site.weight_key, 0, m, site.rows, site.row_period, site.transposed)


def _dense(index: int, site: LayerSite, logdet: float, m: int) -> LayerResult:
    geo = site.geometry
    totals = None if not isinstance(geo, DenseGeometry) else np.array([geo.n_positions * logdet])
    reason = (
        ""
        if geo is not None
        else (
            (site.untraced_reason or NO_GEOMETRY_UNTRACED)
            if not site.inferred
            else "kind inferred from the state dict: positions unknown, total unavailable"
        )
    )
    return layer_result(
        index,
        site,
        c11=[],
        per_position=np.array([logdet / m]),
        totals=totals,
        exact=True if geo is not None else None,
        reason=reason,
        logdet=float(logdet),
        square=m,
    )
