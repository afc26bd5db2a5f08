"""Run an estimator over a walk: every site's entropy change, by the estimator's record
(:mod:`.registry`): the paper's (SPEC §2-3, :mod:`.paper_sites`) or the spectral one (SPEC §4,
:mod:`.spectral_sites`).

Whole weights are scanned once for NaN/inf before any site is estimated; an estimator's check of
every site (the spectral memory plan) runs before any work.

Progress (``progress(stage, done, total)``) comes in three stages, each weighted by the work of
its items (the estimator's ``cost``) and reported in thousandths: ``scan``, then the estimator's
conv and dense stages (``conv``/``dense``; ``spectral conv``/``spectral dense``). A stage moves as
its items finish and, through the estimator's ``reporting`` hook, within a long item; it reaches
its total only after its last item's work.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from math import prod

import numpy as np
import torch

from .. import vocab
from ..errors import OptionError, WeightValueError
from ..load.source import TensorSource
from ..text import printable
from ..vocab import ChannelRule, Estimator
from ..walk.sites import LayerSite, Walk
from ..words import arg
from . import registry
from .dense import DEFAULT_BUDGET, DensePrefetch, site_weight, spread
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
        raise OptionError(record.channel_rule_refused.format(channel_rule=arg("channel-rule", "mean")))


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
            raise OptionError(
                f"{arg('device', 'cuda')} was asked for but CUDA is not available here "
                f"(use {arg('device', 'auto')} or cpu)"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise OptionError(f"{arg('device', name)}: this machine has {torch.cuda.device_count()} CUDA device(s)")
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
    scan = Meter(progress, "scan", [float(prod(s.weight_shape)) for s in walk.sites])
    zero = []
    for i, site in enumerate(walk.sites):
        if _scan(site, tensors):
            zero.append(site.name)
        scan.step(i)
    scan.finish()
    if zero and len(zero) == n:
        raise WeightValueError("every analysed weight is all zeros (a blank or uninitialised checkpoint?)")
    conv = [(i, site) for i, site in enumerate(walk.sites) if site.is_conv]
    dense = [(i, site) for i, site in enumerate(walk.sites) if not site.is_conv]
    meter = Meter(progress, est.stages[0], [est.cost(site) for _, site in conv])
    for j, (i, site) in enumerate(conv):
        with est.reporting(meter.within(j)):
            results[i] = est.conv(i + 1, site, tensors, device, opts.channel_rule, opts.max_mem)
        meter.step(j)
    meter.finish()
    # several GPUs: one call, so that the runner can spread its chunks over them (progress per call only)
    chunks = dense_chunks(dense, est.cost) if len(spread(device)) == 1 else [dense] if dense else []
    meter = Meter(progress, est.stages[1], [sum(est.cost(site) for _, site in chunk) for chunk in chunks])
    for j, chunk in enumerate(chunks):
        with est.reporting(meter.within(j)):
            for i, result in est.dense(chunk, tensors, device, opts.max_mem, prefetch).items():
                results[i] = result
        meter.step(j)
    meter.finish()
    warnings = tuple(f"layer {z}: weight is all zeros (every value is -inf)" for z in zero)
    return tuple(r for r in results if r is not None), warnings


PROGRESS_SCALE = 1000  # a weighted stage reports done/total in thousandths of its work
DENSE_CHUNK_COST = 4e9  # dense sites of one shape share a runner call while their cost stays under this


def dense_chunks(
    dense: Sequence[tuple[int, LayerSite]], cost: Callable[[LayerSite], float]
) -> list[list[tuple[int, LayerSite]]]:
    """Dense sites in runner calls: equal shapes together (the runners batch them) up to about
    DENSE_CHUNK_COST of work per call, so that progress moves at least once per call of that size."""
    by_shape: dict[tuple[int, ...], list[tuple[int, LayerSite]]] = {}
    for i, site in dense:
        by_shape.setdefault(tuple(site.weight_shape), []).append((i, site))
    out: list[list[tuple[int, LayerSite]]] = []
    for group in by_shape.values():
        chunk: list[tuple[int, LayerSite]] = []
        spent = 0.0
        for item in group:
            c = cost(item[1])
            if chunk and spent + c > DENSE_CHUNK_COST:
                out.append(chunk)
                chunk, spent = [], 0.0
            chunk.append(item)
            spent += c
        if chunk:
            out.append(chunk)
    return out


class Meter:
    """One progress stage over items of known cost: ``progress(stage, done, PROGRESS_SCALE)`` as
    items finish (and, through :meth:`within`, as one long item advances), never going back and
    reaching PROGRESS_SCALE only in :meth:`finish`, after the last item's work. A stage without
    items reports nothing."""

    def __init__(self, progress: ProgressFn | None, stage: str, costs: Sequence[float]):
        self.progress = progress if costs else None
        self.stage = stage
        weights = [max(0.0, float(c)) for c in costs]
        if not sum(weights):
            weights = [1.0] * len(weights)
        total = sum(weights) or 1.0
        self.start = list(itertools.accumulate([0.0, *weights]))
        self.total = total
        self.done = -1
        self._report(0.0)

    def _report(self, work: float, final: bool = False) -> None:
        if self.progress is None:
            return
        done = PROGRESS_SCALE if final else min(PROGRESS_SCALE - 1, int(PROGRESS_SCALE * work / self.total))
        if done > self.done:
            self.done = done
            self.progress(self.stage, done, PROGRESS_SCALE)

    def within(self, j: int) -> Callable[[float], None] | None:
        """``tick(fraction)`` of item ``j``'s work (None: nobody listens)."""
        if self.progress is None:
            return None
        lo, hi = self.start[j], self.start[j + 1]
        return lambda fraction: self._report(lo + (hi - lo) * fraction)

    def step(self, j: int) -> None:
        """Item ``j`` is done."""
        self._report(self.start[j + 1])

    def finish(self) -> None:
        """Every item is done."""
        self._report(self.total, final=True)


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
