"""Box-plot statistics of per-filter values, computed here (not by matplotlib) so they can be
tested against pandas and drawn with ``Axes.bxp`` exactly as computed.

The paper's style: box from the first to the third quartile (linear interpolation, as numpy and
pandas), a median line, a closed dot at the mean, whiskers at the most extreme values within
1.5 IQR of the box, and every value beyond them an outlier. ``-inf`` values (``c11 = 0``) are
not plotted; they are counted in ``n_neginf`` and annotated by the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..estimate.results import AnalysisResult, LayerResult
from ..vocab import is_conv_kind

WHISKER_IQR = 1.5


@dataclass(frozen=True)
class BoxStats:
    """One layer's box, from its finite values: ``n`` counts every value (``-inf`` included,
    ``n_neginf`` of them, not drawn), the rest are the statistics ``Axes.bxp`` draws (:meth:`bxp`),
    with ``fliers`` the values beyond the whiskers."""

    index: int
    name: str
    kind: str
    exact: bool | None
    n: int
    n_neginf: int
    mean: float
    median: float
    q1: float
    q3: float
    whislo: float
    whishi: float
    fliers: tuple[float, ...]

    @property
    def is_dense(self) -> bool:
        return not is_conv_kind(self.kind)

    def bxp(self) -> dict:
        """The dict ``matplotlib.axes.Axes.bxp`` draws."""
        return {
            "med": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "whislo": self.whislo,
            "whishi": self.whishi,
            "mean": self.mean,
            "fliers": list(self.fliers),
            "label": str(self.index),
        }


def box_stats(
    values: Sequence[float] | np.ndarray,
    *,
    index: int = 0,
    name: str = "",
    kind: str = "conv2d",
    exact: bool | None = None,
) -> BoxStats | None:
    """Statistics of the finite entries of ``values``; None when there is none to draw."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.sort(v[np.isfinite(v)])
    n_neginf = int(np.isneginf(v).sum())
    if finite.size == 0:
        return None
    q1, med, q3 = (float(x) for x in np.quantile(finite, [0.25, 0.5, 0.75]))
    iqr = q3 - q1
    lo_fence, hi_fence = q1 - WHISKER_IQR * iqr, q3 + WHISKER_IQR * iqr
    inside = finite[(finite >= lo_fence) & (finite <= hi_fence)]
    fliers = finite[(finite < lo_fence) | (finite > hi_fence)]
    return BoxStats(
        index=index,
        name=name,
        kind=kind,
        exact=exact,
        n=int(v.size),
        n_neginf=n_neginf,
        mean=float(finite.mean()),
        median=med,
        q1=q1,
        q3=q3,
        whislo=float(inside.min()),
        whishi=float(inside.max()),
        fliers=tuple(float(x) for x in fliers),
    )


def layer_values(layer: LayerResult, total: bool = False) -> np.ndarray | None:
    """What the figure plots for one layer: per-position values, or the per-filter totals."""
    if total:
        return None if layer.totals is None else np.asarray(layer.totals)
    return np.asarray(layer.per_position)


def result_boxes(results: AnalysisResult | Sequence[AnalysisResult], total: bool = False) -> list[BoxStats | None]:
    """One box per layer, in execution order. Several results (random seeds of one architecture)
    are pooled filter by filter; their layers must match by name."""
    runs = [results] if isinstance(results, AnalysisResult) else list(results)
    first = runs[0]
    for other in runs[1:]:
        if [x.name for x in other.layers] != [x.name for x in first.layers]:
            raise ValueError(
                f"cannot pool analyses of different layer lists ({first.model.spec} vs {other.model.spec})"
            )
    boxes: list[BoxStats | None] = []
    for i, layer in enumerate(first.layers):
        found = [layer_values(r.layers[i], total) for r in runs]
        parts = [p for p in found if p is not None]
        if len(parts) < len(found):
            boxes.append(None)
            continue
        boxes.append(
            box_stats(np.concatenate(parts), index=layer.index, name=layer.name, kind=layer.kind, exact=layer.exact)
        )
    return boxes


def neginf_counts(results: AnalysisResult | Sequence[AnalysisResult], total: bool = False) -> dict[int, int]:
    """Layer index → number of ``-inf`` values (over all pooled runs)."""
    runs = [results] if isinstance(results, AnalysisResult) else list(results)
    out: dict[int, int] = {}
    for r in runs:
        for layer in r.layers:
            v = layer_values(layer, total)
            k = 0 if v is None else int(np.isneginf(v).sum())
            if k:
                out[layer.index] = out.get(layer.index, 0) + k
    return out
