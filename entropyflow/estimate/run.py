"""Run the estimator over a walk: per-filter entropy change of every site (the paper, SPEC §2-3).

Reads only what it needs from the tensor source: ``weight[:, 0]`` of each conv (the first input
channel of each filter's group), the ``m × m`` square part of each dense weight. Whole weights
are scanned once for NaN/inf. Dense log-determinants are batched in float64.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .. import vocab
from ..errors import OptionError, WeightValueError
from ..load.source import TensorSource
from ..text import printable
from ..vocab import ChannelRule, Estimator
from ..walk.sites import ConvGeometry, DenseGeometry, LayerSite, Walk, dense_map
from . import paper, spectral_sites
from .dense import DEFAULT_BUDGET, DensePrefetch, Job, run_dense
from .pivots import pivot_plan
from .results import LayerResult, layer_result

ProgressFn = Callable[[str, int, int], None]
NO_GEOMETRY_UNTRACED = "not called in the traced forward pass: no geometry, total unavailable"


@dataclass(frozen=True)
class EstimateOptions:
    channel_rule: ChannelRule = "first"
    device: str = "auto"
    max_mem: int = DEFAULT_BUDGET  # bytes of float64 work held at once (dense batches, spectra)
    estimator: Estimator = "paper"

    def __post_init__(self) -> None:
        check_estimator_options(self.estimator, self.channel_rule)


def check_estimator_options(estimator: object, rule: object) -> None:
    """The estimator and channel rule, and whether they go together (checked where options are built)."""
    vocab.estimator(estimator)
    vocab.channel_rule(rule)
    if estimator == "spectral" and rule != "first":
        raise OptionError(
            "--channel-rule mean applies to the paper estimator only (the spectral estimator uses every channel)"
        )


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Other torch devices are refused: ``meta`` holds no
    values, and ``mps`` (and most accelerators) have no float64, which every reported value needs."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d{1,3})?", name):
        why = {
            "meta": " (meta tensors hold no values)",
            "mps": " (MPS has no float64, which every reported value needs)",
        }
        raise OptionError(
            f"unknown device '{printable(name, 40)}'{why.get(str(name).split(':')[0], '')} (use auto, cpu, cuda or "
            "cuda:N)"
        )
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError("--device cuda was asked for but CUDA is not available here (use --device auto or cpu)")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise OptionError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def estimate(
    walk: Walk,
    tensors: TensorSource,
    options: EstimateOptions | None = None,
    progress: ProgressFn | None = None,
    prefetch: DensePrefetch | None = None,
) -> tuple[tuple[LayerResult, ...], tuple[str, ...]]:
    """Estimate every site of ``walk``. Returns the layer results and warnings.

    ``prefetch``: dense log-determinants already started on these tensors (see estimate.dense)."""
    opts = options or EstimateOptions()
    device = resolve_device(opts.device)
    spectral = opts.estimator == "spectral"
    if spectral:
        spectral_sites.check_budget(walk.sites, opts.max_mem)  # every layer planned before any work
    n = len(walk.sites)
    results: list[LayerResult | None] = [None] * n
    dense: list[tuple[int, LayerSite]] = []
    zero: list[str] = []
    for i, site in enumerate(walk.sites):
        if _scan(site, tensors):
            zero.append(site.name)
        if site.is_conv:
            results[i] = (
                _conv_spectral(i + 1, site, tensors, device, opts)
                if spectral
                else _conv(i + 1, site, tensors, device, opts.channel_rule)
            )
        else:
            dense.append((i, site))
        if progress:
            progress("estimate", i + 1, n)
    if dense and spectral:
        loads = [(i, site.weight_shape, functools.partial(_weight, site, tensors)) for i, site in dense]  # rows applied
        logs = spectral_sites.dense_log_singular_values(loads, device, opts.max_mem)
        for i, site in dense:
            results[i] = spectral_sites.dense_layer(i + 1, site, logs[i])
    elif dense:
        jobs = {i: _job(site) for i, site in dense}
        early = prefetch.take() if prefetch is not None else {}
        done: dict[Job, float] = {}
        for job in jobs.values():
            src, key = tensors.origin(job[0])
            if prefetch is not None and src is prefetch.tensors and job._replace(key=key) in early:
                done[job] = early[job._replace(key=key)]
        done.update(run_dense(tensors, [j for j in jobs.values() if j not in done], device, opts.max_mem))
        for i, site in dense:
            results[i] = _dense(i + 1, site, done[jobs[i]], jobs[i][2])
    if zero and len(zero) == n:
        raise WeightValueError("every analysed weight is all zeros (a blank or uninitialised checkpoint?)")
    warnings = tuple(f"layer {z}: weight is all zeros (every value is -inf)" for z in zero)
    return tuple(r for r in results if r is not None), warnings


def _weight(site: LayerSite, tensors: TensorSource) -> torch.Tensor:
    return dense_map(tensors.get(site.weight_key), site.rows, site.row_period, site.transposed)


SCAN_CHUNK = 1 << 23  # elements read and widened at once while scanning a weight (32 MiB as float32)


def _chunks(site: LayerSite, tensors: TensorSource) -> Iterator[torch.Tensor]:
    """The weight (as the site selects it) in row blocks of about SCAN_CHUNK elements: a 7B model's
    250 MiB bfloat16 head is never held twice, nor widened to float32 as a whole."""
    shape = tensors.shape(site.weight_key)
    if site.rows is not None or site.transposed or not shape:
        yield _weight(site, tensors)
        return
    per_row = max(1, int(np.prod(shape[1:])))
    step = max(1, SCAN_CHUNK // per_row)
    for r0 in range(0, shape[0], step):
        yield tensors.get_slice(site.weight_key, (slice(r0, min(shape[0], r0 + step)),))


def _scan(site: LayerSite, tensors: TensorSource) -> bool:
    """Raise on NaN/inf anywhere in the weight; return True if it is all zeros. One pass."""
    lo, hi, n = math.inf, -math.inf, 0
    for w in _chunks(site, tensors):
        n += w.numel()
        if w.numel():
            low, high = torch.aminmax(w if w.dtype in (torch.float32, torch.float64) else w.float())
            lo, hi = min(lo, float(low)), max(hi, float(high))
    if n == 0:
        raise WeightValueError(f"layer {site.name} ({site.weight_key}) has an empty weight")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        w = _weight(site, tensors)
        nan = int(torch.isnan(w).sum())
        inf = int(torch.isinf(w).sum())
        raise WeightValueError(
            f"layer {site.name} ({site.weight_key}) has {nan} NaN and {inf} infinite weight values: the checkpoint is "
            "corrupted"
        )
    return lo == 0.0 and hi == 0.0


def _conv(index: int, site: LayerSite, tensors: TensorSource, device: torch.device, rule: str) -> LayerResult:
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


def _conv_spectral(
    index: int, site: LayerSite, tensors: TensorSource, device: torch.device, opts: EstimateOptions
) -> LayerResult:
    weight = tensors.get(site.weight_key)
    c11 = weight.reshape(weight.shape[0], -1)[:, 0].to(paper.FLOAT).numpy()
    return spectral_sites.conv_layer(index, site, weight, c11, device, opts.max_mem)


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
