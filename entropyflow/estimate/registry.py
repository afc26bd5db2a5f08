"""The estimators, one record each: how its sites are run, the conventions ``analysis.json``
states, the labels figures and the terminal use, and what applies to it (channel rules, the dense
prefetch, the init scheme's predicted levels, the square-part determinant).

Adding an estimator: its math and site runners in their own modules, its name in
``vocab.Estimator``, and its record here. Nothing that renders or places λ compares names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from math import prod

import torch

from .. import vocab
from ..load.source import TensorSource
from ..vocab import CHANNEL_RULES
from ..walk.sites import ConvGeometry, LayerSite
from . import paper_sites, spectral, spectral_sites
from .dense import DensePrefetch
from .results import LayerResult

ConvRunner = Callable[[int, LayerSite, TensorSource, torch.device, str, int], LayerResult]
"""``(index, site, tensors, device, channel_rule, budget)`` → the conv site's result."""
DenseRunner = Callable[
    [Sequence[tuple[int, LayerSite]], TensorSource, torch.device, int, DensePrefetch | None], dict[int, LayerResult]
]
"""``((i, site), …), tensors, device, budget, prefetch`` → every dense site's result by ``i``."""
SitesCheck = Callable[[Sequence[LayerSite], int], None]
"""``(sites, budget)``: refuse, before any work, what cannot run (raises an EntropyflowError)."""


SiteCost = Callable[[LayerSite], float]
"""``site`` → the work its runner does (any unit, the same for an estimator's conv and dense sites):
weights progress, so that a display's fraction and ETA follow the time, not the layer count."""
Reporting = Callable[[Callable[[float], None] | None], AbstractContextManager[None]]
"""``reporting(tick)``: within the block, a runner calls ``tick(fraction)`` (0…1 of its call) as it goes."""


def _no_check(sites: Sequence[LayerSite], budget: int) -> None:
    """Nothing to refuse before the work starts."""


def _no_reporting(tick: Callable[[float], None] | None) -> AbstractContextManager[None]:
    """A runner that reports nothing within a call (its calls are short)."""
    return nullcontext()


def _paper_cost(site: LayerSite) -> float:
    """The paper's estimator: a conv reads a few taps per filter; a dense layer is one LU of its square part."""
    if site.is_conv:
        return float(site.weight_shape[0] * 64)
    m = min(site.weight_shape[:2])
    return 2.0 / 3.0 * m**3


def _spectral_cost(site: LayerSite) -> float:
    """The spectral estimator: FFTs and one factorisation per frequency (conv), Gram + SVD (dense)."""
    if not site.is_conv:
        return spectral.dense_cost(tuple(site.weight_shape[:2]))
    grid, stride, dilation = spectral_sites._grid(site)
    geo = site.geometry
    groups = geo.groups if isinstance(geo, ConvGeometry) else 1
    cost = spectral.conv_cost(
        tuple(site.weight_shape), grid, stride, dilation, groups, layer=isinstance(geo, ConvGeometry)
    )
    return cost + 8.0 * prod(site.weight_shape)


@dataclass(frozen=True)
class Labels:
    """How reports name an estimator's values."""

    suffix: str  # after a figure's value label ("entropy change … (nats)"): "" or " [name]"
    values_note: str  # the terminal's line under the layer table (the bar legend follows it)
    dense_total: str  # what a dense row's total is positions × (terminal)
    approx_box: str  # figure legend: a hatched box (total not exact)
    dense_box: str  # figure legend: a dense layer drawn as a box


@dataclass(frozen=True)
class EstimatorRecord:
    """One estimator: its runners, conventions, labels and what applies to it."""

    name: str
    conv: ConvRunner
    dense: DenseRunner
    labels: Labels
    conventions: tuple[tuple[str, str], ...]  # analysis.json's estimator.conventions, in order
    check_sites: SitesCheck = _no_check
    channel_rules: tuple[str, ...] = CHANNEL_RULES
    channel_rule_refused: str = ""  # the error for a channel rule not in ``channel_rules`` ({channel_rule}: its words)
    dense_prefetch: bool = False  # dense log-determinants can start while the model is built
    init_levels: bool = False  # the init scheme's predicted levels (log|w|) are its values' levels
    square_logdet: bool = False  # ``LayerResult.logdet`` is log|det| of the dense square part
    stages: tuple[str, str] = ("conv", "dense")  # the progress stages of its conv and dense sites
    cost: SiteCost = _paper_cost
    reporting: Reporting = _no_reporting


PAPER = EstimatorRecord(
    name="paper",
    conv=paper_sites.conv_layer,
    dense=paper_sites.dense_layers,
    labels=Labels(
        suffix="",
        values_note="values in nats; mean/median/quartiles are per output position over the layer's filters "
        "(finite values)",
        dense_total="log|det W_sq|",
        approx_box="total not exact (paper's n_out·log|c11|)",
        dense_box="dense layer, values pooled over seeds",
    ),
    conventions=(
        ("log", "natural (nats)"),
        (
            "conv",
            "PyTorch cross-correlation; weight (C_out, C_in/groups, *kernel); transposed convs as the adjoint of "
            "the conv storing the same weight (filters = weight.shape[0])",
        ),
        ("c11", "weight[f, 0, 0, ..., 0]: first tap of the first input channel of the filter's group"),
        ("per_position", "conv: log|c11| per output position; dense: log|det W[:m,:m]| / m"),
        (
            "total",
            "conv: completed determinant (sum over pivot taps) when exact, else n_out*log|c11|; dense: "
            "n_positions*log|det W[:m,:m]|",
        ),
        ("layer_total", "sum of per-filter totals (each filter as its own map, as in the paper)"),
        ("dense", "log|det W[:m,:m]|, m = min(N, d), float64 slogdet (Theorem 3)"),
    ),
    dense_prefetch=True,
    init_levels=True,
    square_logdet=True,
)

SPECTRAL = EstimatorRecord(
    name="spectral",
    conv=spectral_sites.conv_site,
    dense=spectral_sites.dense_layers,
    check_sites=spectral_sites.check_budget,
    labels=Labels(
        suffix=" [spectral]",
        values_note="values in nats (spectral, basis-invariant): conv rows are Σ_ω log σ_f(ω) per filter, per "
        "output position; dense rows are log σ_i per singular direction ('filters' = directions); total = Σ over "
        "filters; joint = the whole layer as one map",
        dense_total="Σ log σ_i of the whole map",
        approx_box="not exact: zero-padded conv, circular-boundary spectrum",
        dense_box="dense layer: log σᵢ per singular direction",
    ),
    conventions=(
        ("log", "natural (nats)"),
        (
            "conv",
            "circular boundary on the traced input grid; stride by space-to-depth, dilation by zero insertion, "
            "groups block-diagonal, transposed convs as adjoints; zero-padded layers are approximated by their "
            "circular limit (exact = false)",
        ),
        (
            "per_position",
            "conv: sum over frequencies of log sigma_f(w) / number of frequencies, sigma_f(w) = "
            "sqrt(sum_c |FFT(k_fc)(w)|^2); dense: log sigma_i, one entry per singular direction",
        ),
        ("total", "conv: sum over frequencies of log sigma_f(w) per filter; dense: n_positions*log sigma_i"),
        (
            "joint",
            "the whole layer as one map: conv sum over frequencies and groups of sum_i log sigma_i(K(w)), dense "
            "n_positions * sum_i log sigma_i(W)",
        ),
        (
            "dense",
            "sum_i log sigma_i(W), float64 svdvals (log-volume on the row space; the entropy change for square W)",
        ),
    ),
    channel_rules=("first",),
    stages=("spectral conv", "spectral dense"),
    cost=_spectral_cost,
    reporting=spectral.reporting,
    channel_rule_refused="{channel_rule} applies to the paper estimator only (the spectral estimator uses "
    "every channel)",
)

REGISTRY: dict[str, EstimatorRecord] = {r.name: r for r in (PAPER, SPECTRAL)}


def names() -> tuple[str, ...]:
    """The registered estimators, in registration order."""
    return tuple(REGISTRY)


def get(name: object) -> EstimatorRecord:
    """The record of estimator ``name``; OptionError ``unknown estimator …`` if there is none."""
    return REGISTRY[vocab.check(name, names(), "estimator")]


def register(record: EstimatorRecord) -> EstimatorRecord:
    """Add (or replace) ``record``; returns it."""
    REGISTRY[record.name] = record
    return record


def conventions(name: object) -> dict[str, str]:
    """The conventions ``analysis.json`` states for estimator ``name``, as a fresh dict."""
    return dict(get(name).conventions)
