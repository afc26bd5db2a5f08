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

from ..estimate.results import AnalysisResult
from .plotting import STYLE, label, new_figure, suptitle, texts_overlap

NAME_CHARS = 40


def shorten(text: str, limit: int) -> str:
    """Cut from the middle, keeping the end (where checkpoint names and seeds differ)."""
    text = label(text, None)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def _thin(fig: Figure, ax, axis: str, labels: Sequence[str], at: Sequence[float] | None = None) -> int:
    """Label every ``step``-th row/column (placed at ``at``, default their indices), the smallest
    step at which no two labels overlap."""
    n = len(labels)
    where = list(at) if at is not None else list(range(n))
    for step in itertools.chain(range(1, 10), range(10, n + 1, 5), [n]):
        ticks = list(range(0, n, step))
        if axis == "x":
            flat = at is not None and max((len(x) for x in labels), default=0) <= 7  # step numbers read upright
            ax.set_xticks([where[t] for t in ticks], [labels[t] for t in ticks], rotation=0 if flat else 90, fontsize=7)
        else:
            ax.set_yticks(ticks, [labels[t] for t in ticks], fontsize=7, family="monospace")
        fig.draw_without_rendering()
        if not texts_overlap(fig, ax.get_xticklabels() if axis == "x" else ax.get_yticklabels(), axis):
            return step
    return n


def column_edges(positions: Sequence[float]) -> np.ndarray:
    """Cell edges for columns centred on increasing ``positions`` (global steps): halfway between
    neighbours; the outer cells as wide as their neighbour's half-gap (one column: as wide as its step)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.size == 1:
        half = max(abs(float(x[0])), 1.0) / 2
        return np.array([x[0] - half, x[0] + half])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def heatmap_figure(
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    colorbar: str,
    center: float | None = None,
    xlabel: str = "",
    positions: Sequence[float] | None = None,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]] = (),
    series_label: str = "",
    order: str = "execution order",
) -> Figure:
    """``values[i, j]``: row ``i`` (a layer, in ``order``, top to bottom) and column ``j``. ``order``:
    "execution order", or "module-name order" for layers walked without the architecture.
    With ``center`` the colours diverge around it (blue below, red above, symmetric limits);
    otherwise a sequential map. Missing values (NaN) are drawn grey.

    With ``positions`` (increasing, e.g. the checkpoints' global steps) the columns sit on that
    axis, and each of ``series`` (name, x, y: a training loss) is drawn in a panel under the
    heatmap on the same x axis, with a dot where each column's position meets it."""
    data = np.asarray(values, dtype=np.float64)
    n_rows, n_cols = data.shape
    panel = positions is not None and any(len(x) for _, x, _ in series)
    with matplotlib.rc_context(STYLE):
        width = min(max(5.5, 2.8 + 0.22 * n_cols + 0.055 * max((len(r) for r in rows), default=0)), 18.0)
        height = min(max(3.6, 1.9 + 0.115 * n_rows), 40.0)
        fig = new_figure(width, height + (1.9 if panel else 0.0))
        finite = data[np.isfinite(data)]
        if center is not None:
            span = float(np.max(np.abs(finite - center))) if finite.size else 1.0
            span = span or 1.0
            norm = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
            cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")
        else:
            norm = None
            cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
        masked = np.ma.masked_invalid(data)
        if not panel:
            ax = fig.add_subplot()
            image = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
            bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
            bar.set_label(colorbar)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"layer ({order})")
            suptitle(fig, title)
            _thin(fig, ax, "x", [shorten(c, 32) for c in columns])
            _thin(fig, ax, "y", [shorten(r, NAME_CHARS) for r in rows])
            return fig
        assert positions is not None
        grid = fig.add_gridspec(2, 2, width_ratios=[1.0, 0.03], height_ratios=[height, 1.7])
        ax = fig.add_subplot(grid[0, 0])
        below = fig.add_subplot(grid[1, 0], sharex=ax)
        edges = column_edges(positions)
        mesh = ax.pcolormesh(edges, np.arange(n_rows + 1) - 0.5, masked, cmap=cmap, norm=norm)
        ax.set_ylim(n_rows - 0.5, -0.5)  # the first layer on top, as imshow draws it
        bar = fig.colorbar(mesh, cax=fig.add_subplot(grid[0, 1]))
        bar.set_label(colorbar)
        ax.set_ylabel(f"layer ({order})")
        ax.tick_params(axis="x", labelbottom=False)
        colors = matplotlib.colormaps["tab10"]
        lo = float(edges[0])
        hi = float(edges[-1])
        for k, (name, xs, ys) in enumerate(series):
            x = np.asarray(xs, dtype=np.float64)
            y = np.asarray(ys, dtype=np.float64)
            if not x.size:
                continue
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
            below.plot(x, y, linewidth=1.1, color=colors(k % 10), label=label(name, 40))
            idx = np.searchsorted(x, np.asarray(positions, dtype=np.float64), side="right") - 1
            seen = idx >= 0  # each column: the last value logged at or before its step
            below.plot(np.asarray(positions)[seen], y[idx[seen]], "o", markersize=3.5, color=colors(k % 10))
        for edge in edges:
            below.axvline(float(edge), color="#e0e0e0", linewidth=0.6, zorder=0)
        ax.set_xlim(lo, hi)
        below.set_ylabel(series_label)
        below.set_xlabel(xlabel)
        below.grid(axis="y", color="#e5e5e5", linewidth=0.7)
        below.legend(loc="best", frameon=False, fontsize=7)
        suptitle(fig, title)
        _thin(fig, below, "x", [shorten(c, 32) for c in columns], at=positions)
        _thin(fig, ax, "y", [shorten(r, NAME_CHARS) for r in rows])
        fig.align_ylabels([ax, below])  # one column for both y labels, whatever their tick labels' widths
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


def layer_order(results: Sequence[AnalysisResult]) -> str:
    """How the rows of analyses are ordered: the forward pass's order, or the module names' when
    the first was walked without its architecture (a bare state dict)."""
    return "module-name order" if results and results[0].model.walk == "state_dict" else "execution order"
