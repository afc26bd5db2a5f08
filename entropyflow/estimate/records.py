"""Analysis results as plain records (one dict per layer, one per filter): the rows of
``layers.csv`` / ``filters.csv``, of :meth:`AnalysisResult.to_pandas`. Columns are documented in docs/output.md."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from ..walk.sites import ConvGeometry, DenseGeometry
from .stats import Summary


class LayerFields(Protocol):
    """What a row is read from: the fields of a :class:`~.results.LayerResult` (this module does
    not import the result types, which import it for ``to_pandas``)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def module_type(self) -> str: ...
    @property
    def weight_key(self) -> str: ...
    @property
    def weight_shape(self) -> tuple[int, ...]: ...
    @property
    def traced(self) -> bool: ...
    @property
    def calls(self) -> int: ...
    @property
    def geometry(self) -> ConvGeometry | DenseGeometry | None: ...
    @property
    def c11(self) -> np.ndarray: ...
    @property
    def per_position(self) -> np.ndarray: ...
    @property
    def totals(self) -> np.ndarray | None: ...
    @property
    def exact(self) -> bool | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def summary(self) -> Summary: ...
    @property
    def logdet(self) -> float | None: ...
    @property
    def joint(self) -> float | None: ...
    @property
    def filters(self) -> int: ...
    @property
    def n_positions(self) -> int | None: ...
    @property
    def total(self) -> float | None: ...


LAYER_COLUMNS = [
    "index",
    "name",
    "kind",
    "module_type",
    "weight_key",
    "weight_shape",
    "filters",
    "traced",
    "calls",
    "in_size",
    "out_size",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "padding_mode",
    "n_positions",
    "mean",
    "std",
    "min",
    "q1",
    "median",
    "q3",
    "max",
    "n_finite",
    "n_neginf",
    "total",
    "joint",
    "logdet",
    "exact",
    "reason",
]
FILTER_COLUMNS = ["layer_index", "layer_name", "kind", "filter", "c11", "dh_per_position", "dh_total", "exact"]


def dims(t: Sequence[int] | None) -> str:
    return "x".join(str(int(v)) for v in t) if t is not None else ""


def layer_row(layer: LayerFields) -> dict[str, Any]:
    g = layer.geometry if isinstance(layer.geometry, ConvGeometry) else None
    s = layer.summary
    return {
        "index": layer.index,
        "name": layer.name,
        "kind": layer.kind,
        "module_type": layer.module_type,
        "weight_key": layer.weight_key,
        "weight_shape": dims(layer.weight_shape),
        "filters": layer.filters,
        "traced": layer.traced,
        "calls": layer.calls,
        "in_size": dims(g.layer_in_size) if g else None,
        "out_size": dims(g.layer_out_size) if g else None,
        "kernel": dims(g.kernel) if g else None,
        "stride": dims(g.stride) if g else None,
        "padding": dims(g.pad_left) if g else None,
        "dilation": dims(g.dilation) if g else None,
        "padding_mode": g.padding_mode if g else None,
        "n_positions": layer.n_positions,
        "mean": s.mean,
        "std": s.std,
        "min": s.min,
        "q1": s.q1,
        "median": s.median,
        "q3": s.q3,
        "max": s.max,
        "n_finite": s.n_finite,
        "n_neginf": s.n_neginf,
        "total": layer.total,
        "joint": layer.joint,
        "logdet": layer.logdet,
        "exact": layer.exact,
        "reason": layer.reason or None,
    }


def filter_rows(layers: Iterable[LayerFields]) -> Iterator[dict[str, Any]]:
    """One row per filter of every layer (``filters.csv``)."""
    for layer in layers:
        totals = layer.totals.tolist() if layer.totals is not None else [None] * layer.filters
        c11 = layer.c11.tolist() if layer.c11.size else [None] * layer.filters
        for f, (c, v, t) in enumerate(zip(c11, layer.per_position.tolist(), totals, strict=True)):
            yield {
                "layer_index": layer.index,
                "layer_name": layer.name,
                "kind": layer.kind,
                "filter": f,
                "c11": c,
                "dh_per_position": v,
                "dh_total": t,
                "exact": layer.exact,
            }
