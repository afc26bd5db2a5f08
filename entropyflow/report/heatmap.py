"""Layers × analyses as one picture: a heatmap (``track``'s trajectory, ``compare`` with many
inputs) and a few-lines plot for chosen layers. Labels are thinned until no two overlap (checked
on their rendered extents), so 300 layers or 50 checkpoints still read."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from .plotting import STYLE, label, new_figure, suptitle, texts_overlap

NAME_CHARS = 40


def shorten(text: str, limit: int) -> str:
    """Cut from the middle, keeping the end (where checkpoint names and seeds differ)."""
    text = label(text, None)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def _thin(fig: Figure, ax, axis: str, labels: Sequence[str]) -> int:
    """Label every ``step``-th row/column, the smallest step at which no two labels overlap."""
    n = len(labels)
    for step in itertools.chain(range(1, 10), range(10, n + 1, 5), [n]):
        ticks = list(range(0, n, step))
        if axis == "x":
            ax.set_xticks(ticks, [labels[t] for t in ticks], rotation=90, fontsize=7)
        else:
            ax.set_yticks(ticks, [labels[t] for t in ticks], fontsize=7, family="monospace")
        fig.draw_without_rendering()
        if not texts_overlap(fig, ax.get_xticklabels() if axis == "x" else ax.get_yticklabels(), axis):
            return step
    return n


def heatmap_figure(
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    colorbar: str,
    center: float | None = None,
    xlabel: str = "",
) -> Figure:
    """``values[i, j]``: row ``i`` (a layer, in execution order, top to bottom) and column ``j``.
    With ``center`` the colours diverge around it (blue below, red above, symmetric limits);
    otherwise a sequential map. Missing values (NaN) are drawn grey."""
    data = np.asarray(values, dtype=np.float64)
    n_rows, n_cols = data.shape
    with matplotlib.rc_context(STYLE):
        width = min(max(5.5, 2.8 + 0.22 * n_cols + 0.055 * max((len(r) for r in rows), default=0)), 18.0)
        height = min(max(3.6, 1.9 + 0.115 * n_rows), 40.0)
        fig = new_figure(width, height)
        ax = fig.add_subplot()
        finite = data[np.isfinite(data)]
        if center is not None:
            span = float(np.max(np.abs(finite - center))) if finite.size else 1.0
            span = span or 1.0
            norm = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
            cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")
        else:
            norm = None
            cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
        image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.set_label(colorbar)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("layer (execution order)")
        suptitle(fig, title)
        _thin(fig, ax, "x", [shorten(c, 32) for c in columns])
        _thin(fig, ax, "y", [shorten(r, NAME_CHARS) for r in rows])
    return fig


def lines_figure(
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "",
    bands: dict[str, tuple[float, float]] | None = None,
) -> Figure:
    """One line per chosen row over the columns (e.g. a layer's median over checkpoints), with an
    optional horizontal band per row (its random-init range)."""
    data = np.asarray(values, dtype=np.float64)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(min(max(5.5, 2.5 + 0.16 * len(columns)), 16.0), 4.2)
        ax = fig.add_subplot()
        colors = matplotlib.colormaps["tab10"]
        x = np.arange(len(columns))
        for k, (name, row) in enumerate(zip(rows, data, strict=True)):
            color = colors(k % 10)
            ax.plot(x, row, marker="o", markersize=2.5, linewidth=1.3, color=color, label=shorten(name, NAME_CHARS))
            if bands and name in bands:
                lo, hi = bands[name]
                ax.axhspan(lo, hi, color=color, alpha=0.12, linewidth=0)
        ax.set_xlim(-0.5, len(columns) - 0.5)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.7)
        fig.legend(loc="outside right center", frameon=False, fontsize=7)  # never over the lines
        suptitle(fig, title)
        _thin(fig, ax, "x", [shorten(c, 32) for c in columns])
    return fig


def pick_rows(values: np.ndarray, k: int = 5) -> list[int]:
    """The ``k`` rows that change most from the first column to the last (NaN-safe), in order."""
    data = np.asarray(values, dtype=np.float64)
    change = np.abs(np.nan_to_num(data[:, -1] - data[:, 0], nan=-math.inf))
    return sorted(int(i) for i in np.argsort(-change, kind="stable")[: min(k, data.shape[0])])
