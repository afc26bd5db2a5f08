"""Run an estimator over a walk: every site's entropy change, by the estimator's record
(:mod:`.registry`): the paper's (SPEC §2-3, :mod:`.paper_sites`) or the spectral one (SPEC §4,
:mod:`.spectral_sites`).

Whole weights are scanned once for NaN/inf before a site is estimated; an estimator's check of
every site (the spectral memory plan) runs before any work.
"""

from __future__ import annotations

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
from ..walk.sites import LayerSite, Walk
from . import registry
from .dense import DEFAULT_BUDGET, DensePrefetch, site_weight
from .results import LayerResult

ProgressFn = Callable[[str, int, int], None]


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
    record = registry.get(vocab.estimator(estimator))
    if vocab.channel_rule(rule) not in record.channel_rules:
        raise OptionError(record.channel_rule_refused)


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
    est = registry.get(opts.estimator)
    est.check_sites(walk.sites, opts.max_mem)  # every layer planned before any work
    n = len(walk.sites)
    results: list[LayerResult | None] = [None] * n
    dense: list[tuple[int, LayerSite]] = []
    zero: list[str] = []
    for i, site in enumerate(walk.sites):
        if _scan(site, tensors):
            zero.append(site.name)
        if site.is_conv:
            results[i] = est.conv(i + 1, site, tensors, device, opts.channel_rule, opts.max_mem)
        else:
            dense.append((i, site))
        if progress:
            progress("estimate", i + 1, n)
    if dense:
        for i, result in est.dense(dense, tensors, device, opts.max_mem, prefetch).items():
            results[i] = result
    if zero and len(zero) == n:
        raise WeightValueError("every analysed weight is all zeros (a blank or uninitialised checkpoint?)")
    warnings = tuple(f"layer {z}: weight is all zeros (every value is -inf)" for z in zero)
    return tuple(r for r in results if r is not None), warnings


SCAN_CHUNK = 1 << 23  # elements read and widened at once while scanning a weight (32 MiB as float32)


def _chunks(site: LayerSite, tensors: TensorSource) -> Iterator[torch.Tensor]:
    """The weight (as the site selects it) in row blocks of about SCAN_CHUNK elements: a 7B model's
    250 MiB bfloat16 head is never held twice, nor widened to float32 as a whole."""
    shape = tensors.shape(site.weight_key)
    if site.rows is not None or site.transposed or not shape:
        yield site_weight(site, tensors)
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
        w = site_weight(site, tensors)
        nan = int(torch.isnan(w).sum())
        inf = int(torch.isinf(w).sum())
        raise WeightValueError(
            f"layer {site.name} ({site.weight_key}) has {nan} NaN and {inf} infinite weight values: the checkpoint is "
            "corrupted"
        )
    return lo == 0.0 and hi == 0.0
