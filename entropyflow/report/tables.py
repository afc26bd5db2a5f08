"""Rows of ``layers.csv`` / ``filters.csv`` and their CSV encoding (deterministic bytes).

Floats are written with Python's shortest round-trip repr; ``-inf`` as ``-inf``; missing values
as empty cells; booleans as ``true``/``false``. Columns are documented in docs/output.md.
"""

from __future__ import annotations

import csv
import io
import math

from ..estimate.records import FILTER_COLUMNS, LAYER_COLUMNS, filter_rows, layer_row
from ..estimate.reference import SeedReference, statistic
from ..estimate.results import AnalysisResult
from ..estimate.seeds import STATISTICS


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


def csv_bytes(columns: list[str], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([cell(row[c]) for c in columns])
    return buf.getvalue().encode("utf-8", "backslashreplace")


REFERENCE_FIELDS = ("seeds_mean", "seeds_sd", "seeds_min", "seeds_max", "z", "percentile", "p", "p_holm", "outside")
REFERENCE_COLUMNS = [
    "n_seeds",
    *(f"{f}_{stat}" for stat in STATISTICS for f in REFERENCE_FIELDS),
    "init_scheme",
    "init_mean",
    "init_median",
]
SEED_COLUMNS = ["layer_index", "layer_name", "seed", *STATISTICS]


def reference_row(reference: SeedReference, name: str) -> dict:
    """The ``layers.csv`` columns of one layer against the random-init seeds."""
    item = reference.layer(name)
    row: dict = {"n_seeds": reference.n}
    for stat in STATISTICS:
        s = item.stat(stat)
        values = (s.mean, s.sd, s.lo, s.hi, s.z, s.percentile, s.p, s.p_holm, s.outside) if s else (None,) * 9
        row.update({f"{f}_{stat}": v for f, v in zip(REFERENCE_FIELDS, values, strict=True)})
    init = item.init
    row.update(
        init_scheme=init.scheme if init else None,
        init_mean=init.mean if init else None,
        init_median=init.median if init else None,
    )
    return row


def layers_csv(result: AnalysisResult, reference: SeedReference | None = None) -> bytes:
    """One row per layer; with ``reference`` (``--compare random``) the seed columns follow."""
    if reference is None:
        return csv_bytes(LAYER_COLUMNS, (layer_row(layer) for layer in result.layers))
    return csv_bytes(
        LAYER_COLUMNS + REFERENCE_COLUMNS,
        ({**layer_row(layer), **reference_row(reference, layer.name)} for layer in result.layers),
    )


def seeds_csv(seeds: tuple[AnalysisResult, ...]) -> bytes:
    """The random-init seeds' layer statistics, one row per layer and seed (long format)."""
    return csv_bytes(
        SEED_COLUMNS,
        (
            {"layer_index": layer.index, "layer_name": layer.name, "seed": r.model.seed}
            | {stat: statistic(layer, stat) for stat in STATISTICS}
            for r in seeds
            for layer in r.layers
        ),
    )


def filters_csv(result: AnalysisResult) -> bytes:
    return csv_bytes(FILTER_COLUMNS, filter_rows(result.layers))
