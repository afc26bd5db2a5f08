"""What every figure of a report shares: the local matplotlib style, a figure that has its own
canvas (no pyplot, no global state), safe label text, a wrapped suptitle, the overlap test that
label thinning uses, and deterministic rendering to bytes (no timestamps, fixed SVG ids)."""

from __future__ import annotations

import io
import itertools
import textwrap
from collections.abc import Iterable
from typing import Any, cast

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from ..text import printable
from ..vocab import PLOT_FORMATS

DPI = 110
STYLE: dict[Any, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "entropyflow",
    "axes.axisbelow": True,
    "hatch.linewidth": 0.6,
}


def label(text: object, limit: int | None = 200) -> str:
    """Input-derived text for a figure: control characters written out, cut to ``limit``
    characters, and ``$`` escaped so that matplotlib never parses a layer or file name as mathtext."""
    return printable(text, limit).replace("$", r"\$")


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width`` × ``height`` inches with its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself: layout passes and label extents need a real renderer
    return fig


def suptitle(fig: Figure, text: str) -> None:
    """A suptitle wrapped to the figure's width (11 pt characters are about 0.09 in wide)."""
    fig.suptitle(textwrap.fill(label(text), max(30, int(fig.get_figwidth() / 0.09))), fontsize=11)


def texts_overlap(fig: Figure, texts: Iterable[Text], axis: str) -> bool:
    """Whether any two visible, non-empty ``texts`` overlap along ``axis`` (``x`` or ``y``) as last
    drawn (call ``fig.draw_without_rendering()`` first)."""
    renderer = cast(FigureCanvasAgg, fig.canvas).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]
    if axis == "x":
        boxes.sort(key=lambda b: b.x0)
        return any(b.x0 < a.x1 + 1.0 for a, b in itertools.pairwise(boxes))
    boxes.sort(key=lambda b: b.y0)
    return any(b.y0 < a.y1 + 0.5 for a, b in itertools.pairwise(boxes))


def save_figure(fig: Figure, fmt: str = "png") -> bytes:
    """Render to bytes without timestamps or random ids: same figure, same bytes."""
    if fmt not in PLOT_FORMATS:
        raise ValueError(f"unknown plot format {fmt!r} (use {', '.join(PLOT_FORMATS)})")
    metadata = {
        "png": {"Software": None},
        "svg": {"Date": None, "Creator": None},
        "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
    }[fmt]
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    return buf.getvalue()
