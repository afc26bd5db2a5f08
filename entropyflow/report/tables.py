"""Rows of ``layers.csv`` / ``filters.csv`` and their CSV encoding (deterministic bytes).

Floats are written with Python's shortest round-trip repr; ``-inf`` as ``-inf``; missing values
as empty cells; booleans as ``true``/``false``. Columns are documented in docs/output.md.
"""

from __future__ import annotations

import csv
import io
import math

from ..estimate.results import AnalysisResult, ConvGeometry, LayerResult

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


def dims(t) -> str:
    return "x".join(str(int(v)) for v in t) if t is not None else ""


def cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "-inf" if v < 0 else "inf"
        return repr(v)
    return str(v)


def layer_row(layer: LayerResult) -> dict:
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


def _csv(columns: list[str], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([cell(row[c]) for c in columns])
    return buf.getvalue().encode("utf-8", "backslashreplace")


def layers_csv(result: AnalysisResult) -> bytes:
    return _csv(LAYER_COLUMNS, (layer_row(layer) for layer in result.layers))


def filters_csv(result: AnalysisResult) -> bytes:
    def rows():
        for layer in result.layers:
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

    return _csv(FILTER_COLUMNS, rows())
