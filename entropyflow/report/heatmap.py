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
from numpy.typing import ArrayLike

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


def column_edges(positions: ArrayLike) -> np.ndarray:
    """Cell edges, in steps, for columns centred on increasing ``positions`` (global steps): halfway
    between neighbours; the outer cells as wide as their neighbour's half-gap (one column: as wide
    as its step)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.size == 1:
        half = max(abs(float(x[0])), 1.0) / 2
        return np.array([x[0] - half, x[0] + half])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def column_axis(positions: ArrayLike, x: ArrayLike) -> np.ndarray:
    """Steps ``x`` on the heatmap's column axis, where column ``j`` (the checkpoint at step
    ``positions[j]``, increasing) is at ``j``: piecewise linear between the checkpoints' steps, and
    in the outer half-columns (out to :func:`column_edges`' outer edges, at -0.5 and n - 0.5) at the
    scale of the neighbouring gap. NaN for a step beyond the outer edges (left out)."""
    pos = np.asarray(positions, dtype=np.float64)
    n = pos.size
    edges = column_edges(pos)
    knots = np.concatenate([[edges[0]], pos, [edges[-1]]])
    columns = np.concatenate([[-0.5], np.arange(n, dtype=np.float64), [n - 0.5]])
    xs = np.asarray(x, dtype=np.float64)
    out = np.interp(xs, knots, columns)
    out[~((xs >= knots[0]) & (xs <= knots[-1]))] = np.nan
    return out


def loss_dots(positions: ArrayLike, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Where each column's dot sits on a logged series (``x``: increasing steps, ``y`` its values):
    at the last value logged at or before the column's step, drawn at the step it was logged at
    (on the column axis, :func:`column_axis`). Columns with nothing logged yet, or whose value was
    logged beyond the outer edge, get none."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    idx = np.searchsorted(xs, np.asarray(positions, dtype=np.float64), side="right") - 1
    idx = idx[idx >= 0]
    at = column_axis(positions, xs[idx])
    keep = np.isfinite(at)
    return at[keep], ys[idx][keep]


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

    With ``positions`` (the checkpoints' global steps, increasing) each of ``series`` (name, x, y:
    a training loss against steps) is drawn in a panel under the heatmap. The columns stay evenly
    spaced, one per checkpoint, labelled by ``columns``; the logged steps are put on that axis by
    :func:`column_axis` (piecewise linear between the checkpoints' steps; values logged beyond the
    outer half-columns are left out, and the x label says how many), and each column's dot sits on
    the line at the step its value was logged at (:func:`loss_dots`)."""
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
        edges = np.arange(n_cols + 1) - 0.5  # one column per checkpoint, evenly spaced
        mesh = ax.pcolormesh(edges, np.arange(n_rows + 1) - 0.5, masked, cmap=cmap, norm=norm)
        ax.set_ylim(n_rows - 0.5, -0.5)  # the first layer on top, as imshow draws it
        bar = fig.colorbar(mesh, cax=fig.add_subplot(grid[0, 1]))
        bar.set_label(colorbar)
        ax.set_ylabel(f"layer ({order})")
        ax.tick_params(axis="x", labelbottom=False)
        colors = matplotlib.colormaps["tab10"]
        left_out = 0
        for k, (name, xs, ys) in enumerate(series):
            x = np.asarray(xs, dtype=np.float64)
            y = np.asarray(ys, dtype=np.float64)
            if not x.size:
                continue
            at = column_axis(positions, x)
            shown = np.isfinite(at)
            left_out += int(np.count_nonzero(~shown))
            color = colors(k % 10)
            below.plot(at[shown], y[shown], linewidth=1.1, color=color, label=label(name, 40))
            dots_x, dots_y = loss_dots(positions, x, y)
            below.plot(dots_x, dots_y, "o", markersize=3.5, color=color)
        for edge in edges:
            below.axvline(float(edge), color="#e0e0e0", linewidth=0.6, zorder=0)
        ax.set_xlim(-0.5, n_cols - 0.5)
        below.set_ylabel(series_label)
        if left_out:
            outer = column_edges(positions)
            xlabel += (
                f"\n{left_out} loss value{'s' if left_out > 1 else ''} logged before step {float(outer[0]):g} or "
                f"after step {float(outer[-1]):g} left out"
            )
        below.set_xlabel(xlabel)
        below.grid(axis="y", color="#e5e5e5", linewidth=0.7)
        below.legend(loc="best", frameon=False, fontsize=7)
        suptitle(fig, title)
        _thin(fig, below, "x", [shorten(c, 32) for c in columns], at=range(n_cols))
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
