"""Frozen result types of an analysis, produced by the estimators here and read by everything
after them. Arrays are float64, read-only, one entry per filter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..vocab import ChannelRule, Estimator, is_conv_kind
from ..walk.sites import ConvGeometry, DenseGeometry, LayerSite, SkippedModule, order_of
from .records import FILTER_COLUMNS, LAYER_COLUMNS, filter_rows, layer_row
from .stats import Summary, inf_safe_sum, summarize

__all__ = [
    "LayerResult",
    "ModelInfo",
    "AnalysisResult",
    "SkippedModule",
    "ConvGeometry",
    "DenseGeometry",
    "Summary",
    "layer_result",
    "frozen_array",
]


def frozen_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class LayerResult:
    """Entropy change of one conv/dense map (nats).

    ``per_position``: per filter, the change per output position (``log|c11|``; dense: the one
    value ``log|det W_sq| / m``). ``totals``: per filter, the change over all output positions
    (dense: ``n_positions · log|det W_sq|``), None without geometry. ``exact`` says whether
    the totals are the completed determinant (True) or the paper's approximation (False).

    Spectral estimator: conv ``per_position`` is ``Σ_ω log σ_f(ω) / n_ω`` per filter and
    ``totals`` the sums; dense ``per_position`` holds ``log σ_i`` per singular direction (so a
    dense layer has ``min(N, d)`` entries) and ``logdet`` is ``Σ_i log σ_i``. ``joint`` is the
    whole layer as one map (all filters together, over all positions); None for the paper
    estimator, which, like the paper, treats each filter as its own map.
    """

    index: int
    name: str
    kind: str
    module_type: str
    weight_key: str
    weight_shape: tuple[int, ...]
    traced: bool
    calls: int
    geometry: ConvGeometry | DenseGeometry | None
    c11: np.ndarray
    per_position: np.ndarray
    totals: np.ndarray | None
    exact: bool | None
    reason: str
    summary: Summary
    logdet: float | None = None
    square: int | None = None
    inferred: bool = False
    notes: tuple[str, ...] = ()
    joint: float | None = None
    rows: tuple[int, int] | None = None  # which rows of the stored weight's map (fused projections)
    row_period: int | None = None
    transposed: bool = False  # weight stored (in, out): transformers' Conv1D

    @property
    def is_conv(self) -> bool:
        return is_conv_kind(self.kind)

    @property
    def filters(self) -> int:
        return int(self.per_position.size)

    @property
    def n_positions(self) -> int | None:
        if isinstance(self.geometry, ConvGeometry):
            return self.geometry.n_out
        if isinstance(self.geometry, DenseGeometry):
            return self.geometry.n_positions
        return None

    @property
    def total(self) -> float | None:
        """Sum of the per-filter totals (``-inf`` if any filter is ``-inf``), None without geometry."""
        return None if self.totals is None else inf_safe_sum(self.totals)


def layer_result(
    index: int,
    site: LayerSite,
    *,
    c11: Sequence[float] | np.ndarray,
    per_position: np.ndarray,
    totals: np.ndarray | None,
    exact: bool | None,
    reason: str,
    logdet: float | None = None,
    square: int | None = None,
    joint: float | None = None,
) -> LayerResult:
    """The one way an estimator turns its numbers for ``site`` into a :class:`LayerResult`."""
    return LayerResult(
        index=index,
        name=site.name,
        kind=site.kind,
        module_type=site.module_type,
        weight_key=site.weight_key,
        weight_shape=site.weight_shape,
        traced=site.traced,
        calls=site.calls,
        geometry=site.geometry,
        c11=frozen_array(c11),
        per_position=frozen_array(per_position),
        totals=None if totals is None else frozen_array(totals),
        exact=exact,
        reason=reason,
        summary=summarize(per_position),
        logdet=logdet,
        square=square,
        inferred=site.inferred,
        notes=site.notes,
        joint=joint,
        rows=site.rows,
        row_period=site.row_period,
        transposed=site.transposed,
    )


@dataclass(frozen=True)
class ModelInfo:
    """What was analysed, for provenance: the spec as given, its description and format, the weights and
    their files (with sha256), the architecture, the example input and how the layers were walked."""

    spec: str
    description: str
    format: str
    weights: str
    files: tuple[str, ...] = ()
    sha256: str | None = None
    arch: str | None = None
    input_size: tuple[int, ...] | None = None
    walk: str = "trace"
    random_init: bool = False  # the architecture's own random initialisation, not trained weights
    seed: int | None = None  # the torch.manual_seed of the (random) initialisation, when known
    input_dtype: str | None = None  # the traced input's dtype when set (int64: token ids)

    @property
    def order(self) -> str:
        """How the layers are numbered, in words (``forward execution order`` when traced)."""
        return order_of(self.walk)


class Frames(NamedTuple):
    """:meth:`AnalysisResult.to_pandas`: one row per layer, one row per filter."""

    layers: Any  # pandas.DataFrame
    filters: Any


@dataclass(frozen=True)
class Counts:
    """What an analysis holds, counted: its layers (conv and dense), those the trace did not reach,
    the modules it skipped, the totals that are approximate or unavailable, and the filters whose
    entropy is −∞ (c11 = 0). Written as analysis.json's ``summary``, in this order."""

    layers: int
    conv: int
    dense: int
    untraced: int
    skipped: int
    not_exact: int
    no_total: int
    neginf_filters: int


#: the notebook view of a result: entropyflow.report.notebook installs it (estimate renders no HTML)
NOTEBOOK_VIEW: list[Callable[[AnalysisResult], str]] = []


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """One analysis: the model (:class:`ModelInfo`), the estimator and channel rule, one
    :class:`LayerResult` per conv/dense layer in order, the modules skipped (with why), the warnings
    and notes of the run, and the library versions. ``layer(name)`` finds a layer; ``to_pandas()``
    gives the CSV rows as DataFrames."""

    model: ModelInfo
    estimator: Estimator
    channel_rule: ChannelRule
    device: str
    layers: tuple[LayerResult, ...]
    skipped: tuple[SkippedModule, ...]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    versions: tuple[tuple[str, str], ...] = ()

    def layer(self, name: str) -> LayerResult:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_pandas(self) -> Frames:
        """The layers and the filters as pandas DataFrames, with the columns of ``layers.csv`` and
        ``filters.csv`` (numbers as floats, ``-inf`` kept, missing values as NaN/None)."""
        import pandas as pd  # deliberate start-up saving: pandas loads only when a frame is asked for

        return Frames(
            pd.DataFrame([layer_row(layer) for layer in self.layers], columns=LAYER_COLUMNS),
            pd.DataFrame(list(filter_rows(self.layers)), columns=FILTER_COLUMNS),
        )

    def _repr_html_(self) -> str | None:
        """The notebook view; None (IPython then shows the text repr) until entropyflow.report,
        which renders it, is imported (``entropyflow.analyze`` does)."""
        return NOTEBOOK_VIEW[0](self) if NOTEBOOK_VIEW else None

    def __repr__(self) -> str:
        c = self.counts
        init = f", random init (seed {self.model.seed})" if self.model.random_init else ""
        return (
            f"<AnalysisResult {self.model.spec!r}{init}: {c.layers} layers ({c.conv} conv, {c.dense} dense), "
            f"estimator {self.estimator}>"
        )

    @property
    def counts(self) -> Counts:
        """How many layers of each kind, and how many of their totals are exact (analysis.json's
        ``summary``)."""
        conv = sum(1 for layer in self.layers if layer.is_conv)
        return Counts(
            layers=len(self.layers),
            conv=conv,
            dense=len(self.layers) - conv,
            untraced=sum(1 for layer in self.layers if not layer.traced),
            skipped=len(self.skipped),
            not_exact=sum(1 for layer in self.layers if layer.exact is False),
            no_total=sum(1 for layer in self.layers if layer.totals is None),
            neginf_filters=sum(layer.summary.n_neginf for layer in self.layers),
        )
