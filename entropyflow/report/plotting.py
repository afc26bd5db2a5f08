"""What every figure of a report shares: the local matplotlib style, a figure that has its own
canvas (no pyplot, no global state), safe label text, text wrapped at phrase boundaries, a
legend with as many columns as fit, a figure grown until its axes get most of it, the overlap test
that label thinning uses, and deterministic rendering to bytes (no timestamps, fixed SVG ids)."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterable
from typing import Any, cast

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
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


def _phrases(line: str) -> list[tuple[str, str, int]]:
    """``line`` cut where a phrase ends, never inside parentheses: each piece with the white space
    before it and how weak a line break there is (0: a wide gap; 1: after ``:`` or ``;``, before
    ``vs`` or a long parenthesis; 2: before a shorter one or a dash; 3: after ``,``; 4: before a
    short aside such as ``(timm)``)."""
    out: list[tuple[str, str, int]] = []
    sep, start, depth, last, weak = "", 0, 0, 0, 0
    for m in re.finditer(r"\s+", line):
        seg = line[last : m.start()]
        depth += seg.count("(") - seg.count(")")
        last = m.start()
        if depth > 0 or m.start() <= start:
            continue
        before, after = line[m.start() - 1], line[m.end() :]
        inside = len(after.split(")", 1)[0]) if after.startswith("(") else 0
        strength = (
            0 if len(m.group()) > 1
            else 1 if before in ":;" or after.startswith("vs ") or inside > 24  # a long aside is a phrase
            else 2 if inside > 12 or after.startswith(("— ", "– "))
            else 3 if before == ","
            else 4 if inside  # "(timm)": part of its phrase
            else None
        )  # fmt: skip
        if strength is not None:
            out.append((sep, line[start : m.start()], weak))
            sep, start, weak = m.group(), m.end(), strength
    out.append((sep, line[start:], weak))
    return out


def wrap_phrases(text: str, width: int) -> str:
    """``text`` in as few lines of at most ``width`` characters as breaks between phrases allow (a
    phrase longer than a line is broken between words), at the strongest of those breaks, the
    lines as even as they allow; existing line breaks are kept."""
    return "\n".join(line for paragraph in text.split("\n") for line in _balanced(paragraph, width))


def _balanced(paragraph: str, width: int) -> list[str]:
    items: list[tuple[str, str, int]] = []
    for sep, phrase, weak in _phrases(paragraph):
        if len(phrase) <= width:
            items.append((sep, phrase, weak))
            continue
        words = re.split(r"(\s+)", phrase)  # word, space, word, …
        items.append((sep, words[0], weak))
        items += [(words[k], words[k + 1], 5) for k in range(1, len(words) - 1, 2)]

    def joined(i: int, j: int) -> str:  # items i..j-1 on one line
        return items[i][1] + "".join(sep + text for sep, text, _ in items[i + 1 : j])

    n = len(items)
    # best[j]: (lines, weakness of the breaks, longest line) for items[:j]; an item longer than a
    # line gets a line of its own
    best: list[tuple[int, int, int]] = [(0, 0, 0)] + [(n + 1, 0, 0)] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            length = len(joined(i, j))
            if length > width and i < j - 1:
                break
            lines, weak, longest = best[i]
            cand = (lines + 1, weak + (items[i][2] if i else 0), max(longest, length))
            if cand < best[j]:
                best[j], back[j] = cand, i
    out, j = [], n
    while j > 0:
        out.append(joined(back[j], j))
        j = back[j]
    return out[::-1] or [""]


def suptitle(fig: Figure, text: str) -> None:
    """A suptitle wrapped at phrase boundaries to the figure's width (11 pt characters are about
    0.09 in wide)."""
    fig.suptitle(wrap_phrases(label(text), max(30, int(fig.get_figwidth() / 0.09))), fontsize=11)


def renderer(fig: Figure) -> Any:
    return cast(FigureCanvasAgg, fig.canvas).get_renderer()


def fitted_legend(fig: Figure, handles: list, where: str = "outside lower center", **kw: Any) -> Legend | None:
    """A figure legend with as many columns (at most one per handle) as fit in the figure's width,
    measured on the rendered entries."""
    if not handles:
        return None
    limit = fig.get_figwidth() * fig.dpi * 0.97
    for ncols in range(min(len(handles), 5), 0, -1):
        legend = fig.legend(handles=handles, **{"loc": where, "ncols": ncols, "frameon": False, **kw})
        if ncols == 1 or legend.get_window_extent(renderer(fig)).width <= limit:
            return legend
        legend.remove()
    return None  # pragma: no cover (ncols 1 always returns)


def grow_for_axes(fig: Figure, ax: Axes, least: float = 2.8, share: float = 0.6, most: float = 4.5) -> None:
    """Make the figure taller until ``ax`` is at least ``least`` inches high and ``share`` of the
    figure (not counting its x tick labels: long rotated names), at most ``most`` inches; titles,
    legend and labels keep their size. Never shrinks it."""
    for _ in range(3):
        fig.draw_without_rendering()
        height = fig.get_figheight()
        axes = ax.get_position().height * height
        ticks = [t.get_window_extent(renderer(fig)).height for t in ax.get_xticklabels() if t.get_text()]
        other = height - axes - max(ticks, default=0.0) / fig.dpi
        want = min(max(least, other * share / (1.0 - share)), max(least, most))
        if axes >= want - 0.02:
            return
        fig.set_figheight(height + (want - axes) + 0.02)


def wrap_ylabel(fig: Figure, ax: Axes) -> None:
    """Break the y label before its unit when it is longer than the axes are high."""
    text = ax.yaxis.label
    if "\n" in text.get_text():
        return
    fig.draw_without_rendering()
    if text.get_window_extent(renderer(fig)).height > ax.get_window_extent(renderer(fig)).height * 0.98:
        head, sep, tail = text.get_text().rpartition(" (")
        if sep:
            text.set_text(f"{head}\n({tail}")


def texts_overlap(fig: Figure, texts: Iterable[Text], axis: str) -> bool:
    """Whether any two visible, non-empty ``texts`` overlap along ``axis`` (``x`` or ``y``) as last
    drawn (call ``fig.draw_without_rendering()`` first)."""
    boxes = [t.get_window_extent(renderer(fig)) for t in texts if t.get_visible() and t.get_text()]
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
