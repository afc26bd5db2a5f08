"""The paper's Figures 1, 8 and 9 (one box per layer, in execution order) and a per-model
profile (mean per layer with a quartile band), as matplotlib Figures.

Nothing here touches pyplot or global state: figures are built with ``matplotlib.figure.Figure``
under a local style, and :func:`~.plotting.save_figure` renders them to bytes deterministically
(no timestamps, fixed SVG ids), so the same analysis gives the same file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from ..estimate import registry
from ..estimate.reference import SeedReference
from ..estimate.results import AnalysisResult
from ..vocab import LABEL_MODES
from .boxes import BoxStats, layer_values, neginf_counts, result_boxes
from .plotting import (
    STYLE,
    fitted_legend,
    grow_for_axes,
    label,
    new_figure,
    suptitle,
    texts_overlap,
    wrap_phrases,
    wrap_ylabel,
)
from .plotting import save_figure as save_figure  # public here too: docs and users draw figures through this module

NAME_LIMIT = 48  # characters of a layer name on the x axis
CONV_FACE, DENSE_COLOR, APPROX_EDGE, NEGINF_COLOR = "#9ecae1", "#e6550d", "#3182bd", "#cb181d"
PANEL_COLORS = ("#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#d62728", "#8c564b", "#e377c2")


@dataclass(frozen=True)
class Panel:
    """One panel: a title and one analysis, or several (random seeds) pooled filter by filter."""

    title: str
    results: tuple[AnalysisResult, ...]
    reference: SeedReference | None = None  # random-init seeds drawn behind this panel's layers

    @classmethod
    def of(
        cls, title: str, results: AnalysisResult | Sequence[AnalysisResult], reference: SeedReference | None = None
    ) -> Panel:
        return cls(title, (results,) if isinstance(results, AnalysisResult) else tuple(results), reference)

    @property
    def layers(self):
        return self.results[0].layers


@dataclass(frozen=True)
class PlotOptions:
    total: bool = False  # per-filter totals instead of per-position values
    labels: str = "index"  # x tick labels: layer index or dotted names
    title: str | None = None


def y_label(options: PlotOptions, estimator: str = "paper") -> str:
    what = "total entropy change per filter" if options.total else "entropy change per output position"
    return f"{what} (nats)" + registry.get(estimator).labels.suffix


def _panel_width(n_layers: int, labels: str) -> float:
    per = 0.16 if labels == "names" else 0.13
    return min(max(4.2, 1.2 + per * n_layers), 26.0)


def _name_height(panels: Sequence[Panel], options: PlotOptions) -> float:
    if options.labels != "names":
        return 0.0
    longest = max((min(len(layer.name), NAME_LIMIT) for p in panels for layer in p.layers), default=0)
    return min(0.3 + 0.062 * longest, 3.2)


def entropy_figure(panels: Sequence[Panel], options: PlotOptions = PlotOptions()) -> Figure:
    """Box per layer, panels side by side with a shared y axis (Figure 1 when comparing)."""
    _check(panels, options)
    with matplotlib.rc_context(STYLE):
        width = sum(_panel_width(len(p.layers), options.labels) for p in panels) + 0.6
        fig = new_figure(width, 4.6 + _name_height(panels, options))
        axes = fig.subplots(
            1,
            len(panels),
            sharey=True,
            squeeze=False,
            width_ratios=[_panel_width(len(p.layers), options.labels) for p in panels],
        )[0]
        legend: dict[str, object] = {}
        pad = max(_title_pad(panel) for panel in panels)  # one pad: the panel titles share a baseline
        for ax, panel in zip(axes, panels, strict=True):
            _draw_boxes(ax, panel, options, legend)
            _style_axis(ax, panel)
        axes[0].set_ylabel(y_label(options, panels[0].results[0].estimator))
        _legend(fig, legend)
        suptitle(fig, options.title or _default_title(panels, "entropy change per layer"))
        _set_titles(fig, list(axes), panels, pad)
        _finish(fig, list(axes), panels, options.labels)
    return fig


def _finish(fig: Figure, axes: list, panels: Sequence[Panel], labels: str) -> None:
    """The same tick step on every panel (the widest any of them needs), then a figure tall enough
    for its axes, and a y label that fits beside them."""
    steps = [thin_ticks(fig, ax, panel, labels) for ax, panel in zip(axes, panels, strict=True)]
    if len(set(steps)) > 1:
        for ax, panel in zip(axes, panels, strict=True):
            _set_ticks(ax, panel, max(steps), labels)
    grow_for_axes(fig, axes[0])
    wrap_ylabel(fig, axes[0])


def profile_figure(panels: Sequence[Panel], options: PlotOptions = PlotOptions()) -> Figure:
    """Mean per layer as a line with a band from the first to the third quartile; panels overlay."""
    _check(panels, options)
    with matplotlib.rc_context(STYLE):
        n_layers = max(len(p.layers) for p in panels)
        fig = new_figure(_panel_width(n_layers, options.labels) + 1.2, 4.2 + _name_height(panels, options))
        ax = fig.add_subplot()
        handles: list[Any] = []  # artists, and entries drawn from several
        for k, panel in enumerate(panels):
            color = PANEL_COLORS[k % len(PANEL_COLORS)]
            if panel.reference is not None and not options.total:
                handles += _profile_band(ax, panel, panel.reference)
            boxes = [b for b in result_boxes(panel.results, options.total) if b is not None]
            xs = [b.index for b in boxes]
            ax.fill_between(xs, [b.q1 for b in boxes], [b.q3 for b in boxes], color=color, alpha=0.18, linewidth=0)
            ax.plot(xs, [b.mean for b in boxes], color=color, linewidth=1.4, marker="o", markersize=2.2)
            dense = [b for b in boxes if b.is_dense]
            ax.plot(
                [b.index for b in dense],
                [b.mean for b in dense],
                linestyle="none",
                marker="D",
                markersize=5,
                markerfacecolor=DENSE_COLOR,
                markeredgecolor="black",
                markeredgewidth=0.5,
            )
            handles.append(_Entry(
                (Patch(facecolor=color, alpha=0.18), Line2D([], [], color=color, linewidth=1.4)),
                wrap_phrases(label(f"{panel.title}: mean, band Q1–Q3 of filters"), 48),
            ))  # fmt: skip
        if any(b.is_dense for p in panels for b in result_boxes(p.results, options.total) if b is not None):
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="D",
                    markerfacecolor=DENSE_COLOR,
                    markeredgecolor="black",
                    label="dense layer",
                )
            )
        _mark_neginf(ax, panels[0], options)
        _style_axis(ax, panels[0])
        ax.set_ylabel(y_label(options, panels[0].results[0].estimator))
        _legend_below(fig, handles)
        suptitle(fig, options.title or _default_title(panels, "mean entropy change per layer"))
        _finish(fig, [ax], [max(panels, key=lambda p: len(p.layers))], options.labels)
    return fig


@dataclass(frozen=True)
class _Entry:
    """A legend entry drawn from several handles on top of each other (a band with its line)."""

    parts: tuple[Artist, ...]
    text: str

    def get_label(self) -> str:
        return self.text


def _check(panels: Sequence[Panel], options: PlotOptions) -> None:
    if not panels:
        raise ValueError("nothing to plot")
    if options.labels not in LABEL_MODES:
        raise ValueError(f"unknown label mode {options.labels!r} (use index or names)")


def _default_title(panels: Sequence[Panel], what: str) -> str:
    if len(panels) > 2:
        return f"{what}: {len(panels)} analyses"
    return f"{what}: " + " vs ".join(p.title for p in panels)


def _draw_boxes(ax, panel: Panel, options: PlotOptions, legend: dict) -> None:
    if panel.reference is not None and not options.total:
        _seed_band(ax, panel, panel.reference, "median", legend)
    boxes = result_boxes(panel.results, options.total)
    conv = [b for b in boxes if b is not None and not (b.is_dense and b.n == 1 and len(panel.results) == 1)]
    if conv:
        art = ax.bxp(
            [b.bxp() for b in conv],
            positions=[b.index for b in conv],
            widths=0.62,
            showmeans=True,
            patch_artist=True,
            manage_ticks=False,
            medianprops={"color": "black", "linewidth": 1.1},
            meanprops={"marker": "o", "markerfacecolor": "black", "markeredgecolor": "black", "markersize": 3.2},
            flierprops={
                "marker": "o",
                "markerfacecolor": "none",
                "markeredgecolor": "#444444",
                "markersize": 3,
                "markeredgewidth": 0.6,
            },
            whiskerprops={"linewidth": 0.8},
            capprops={"linewidth": 0.8},
        )
        estimator = panel.results[0].estimator
        for patch, b in zip(art["boxes"], conv, strict=True):
            _style_box(patch, b, legend, estimator)
        legend["mean"] = Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="black",
            markeredgecolor="black",
            markersize=4,
            label="mean (closed dot)",
        )
        if any(b.fliers for b in conv):
            legend["outlier"] = Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markerfacecolor="none",
                markeredgecolor="#444444",
                markersize=4,
                label="outlier (> 1.5 IQR)",
            )
    single = [b for b in boxes if b is not None and b not in conv]
    if single:
        ax.plot(
            [b.index for b in single],
            [b.mean for b in single],
            linestyle="none",
            marker="D",
            markersize=6,
            markerfacecolor=DENSE_COLOR,
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=3,
        )
        legend["dense"] = Line2D(
            [],
            [],
            linestyle="none",
            marker="D",
            markerfacecolor=DENSE_COLOR,
            markeredgecolor="black",
            markersize=5,
            label="dense layer (one value per layer)",
        )
    if len(panel.results) > 1:
        _seed_means(ax, panel, options, legend)
    _mark_untraced(ax, panel, legend)
    _mark_neginf(ax, panel, options, legend)


def _style_box(patch, b: BoxStats, legend: dict, estimator: str = "paper") -> None:
    face = DENSE_COLOR if b.is_dense else CONV_FACE
    patch.set_facecolor(face)
    patch.set_edgecolor("#2b4c6f")
    patch.set_linewidth(0.8)
    if b.exact is False:
        patch.set_hatch("////")
        patch.set_edgecolor(APPROX_EDGE)
        legend["approx"] = Patch(
            facecolor=CONV_FACE,
            edgecolor=APPROX_EDGE,
            hatch="////",
            label=registry.get(estimator).labels.approx_box,
        )
    elif b.exact is None:
        patch.set_facecolor("#d9d9d9")
        legend["nototal"] = Patch(facecolor="#d9d9d9", edgecolor="#2b4c6f", label="no geometry (total unavailable)")
    elif b.is_dense:
        legend["densebox"] = Patch(
            facecolor=DENSE_COLOR, edgecolor="#2b4c6f", label=registry.get(estimator).labels.dense_box
        )
    else:
        legend["exact"] = Patch(facecolor=face, edgecolor="#2b4c6f", label="Q1–Q3, median line (exact total)")


def _seed_means(ax, panel: Panel, options: PlotOptions, legend: dict) -> None:
    xs, ys = [], []
    for r in panel.results:
        for layer in r.layers:
            v = layer_values(layer, options.total)
            if v is None:
                continue
            finite = v[v > -math.inf]
            if finite.size:
                xs.append(layer.index)
                ys.append(float(finite.mean()))
    ax.plot(xs, ys, linestyle="none", marker="_", markersize=7, color="#31a354", markeredgewidth=1.2, zorder=4)
    legend["seeds"] = Line2D(
        [],
        [],
        linestyle="none",
        marker="_",
        color="#31a354",
        markersize=8,
        markeredgewidth=1.2,
        label=f"mean of each of {len(panel.results)} seeds",
    )


SEED_BAND, INIT_COLOR, OUTSIDE_COLOR = "#bdbdbd", "#7b3294", "#b2182b"


def _seed_band(ax, panel: Panel, ref: SeedReference, stat: str, legend: dict, z_labels: bool = True) -> None:
    """Behind each layer: the seeds' range of the layer ``stat`` (min to max), their mean, the
    level the initialisation scheme predicts, and the model's z-score (red where Holm-flagged)."""
    index = {layer.name: layer.index for layer in panel.layers}
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    crowded = len(panel.layers) > 60
    for item in ref.layers:
        s, x = item.stat(stat), index.get(item.name)
        if s is None or x is None:
            continue
        ax.fill_between(
            [x - 0.45, x + 0.45], [s.lo] * 2, [s.hi] * 2, color=SEED_BAND, alpha=0.55, linewidth=0, zorder=0.6
        )
        ax.plot([x - 0.45, x + 0.45], [s.mean] * 2, color="#636363", linewidth=0.9, zorder=0.7)
        level = (
            item.init.median
            if item.init is not None and stat == "median"
            else (item.init.mean if item.init is not None and stat == "mean" else None)
        )
        if level is not None:
            ax.plot([x], [level], marker="_", markersize=9, markeredgewidth=1.6, color=INIT_COLOR, zorder=0.8)
        if z_labels and s.z is not None and (not crowded or s.outside):
            ax.text(
                x, 1.01, _z_text(s.z), transform=trans, rotation=90 if len(panel.layers) > 12 else 0, ha="center",
                va="bottom", fontsize=6.5, clip_on=False,
                color=OUTSIDE_COLOR if s.outside else "#525252", fontweight="bold" if s.outside else "normal",
            )  # fmt: skip
    n = ref.n
    legend["band"] = Patch(
        facecolor=SEED_BAND, alpha=0.55,
        label=f"random init, {n} seed{'s' if n != 1 else ''}: range of the\nlayer {stat}s (line: their mean)"
        + ("\none seed cannot separate signal from noise" if n == 1 else ""),
    )  # fmt: skip
    if any(item.init is not None for item in ref.layers):
        legend["init"] = Line2D(
            [], [], linestyle="none", marker="_", markersize=9, markeredgewidth=1.6, color=INIT_COLOR,
            label=f"{stat} the init scheme predicts:\n" + wrap_phrases(label(ref.init_scheme, 120), 56),
        )  # fmt: skip
    if n > 1:
        legend["z"] = Line2D(
            [], [], linestyle="none", marker="$z$", color=OUTSIDE_COLOR, markersize=7,
            label=f"z of the model's {stat} vs the seeds (red:\noutside the seeds, Holm p < {ref.alpha:g})",
        )  # fmt: skip


def _profile_band(ax, panel: Panel, ref: SeedReference) -> list[Artist]:
    """The seeds' range of the layer mean behind the profile, and the init scheme's E log|w|."""
    index = {layer.name: layer.index for layer in panel.layers}
    rows = [(index[item.name], item) for item in ref.layers if item.name in index and item.stat("mean") is not None]
    xs = [x for x, _ in rows]
    stats = [item.stat("mean") for _, item in rows]
    ax.fill_between(
        xs, [s.lo for s in stats if s], [s.hi for s in stats if s], color=SEED_BAND, alpha=0.6, linewidth=0, zorder=0.5,
        step="mid",
    )  # fmt: skip
    handles: list[Artist] = [
        Patch(
            facecolor=SEED_BAND,
            alpha=0.6,
            label=f"random init, {ref.n} seed{'s' if ref.n != 1 else ''}:\nrange of the layer means",
        )
    ]
    init = [(x, item.init.mean) for x, item in rows if item.init is not None]
    if init:
        ax.plot(
            *zip(*init, strict=True),
            linestyle="none",
            marker="_",
            markersize=9,
            markeredgewidth=1.6,
            color=INIT_COLOR,
            zorder=3,
        )
        handles.append(
            Line2D([], [], linestyle="none", marker="_", markersize=9, markeredgewidth=1.6, color=INIT_COLOR,
                   label="E log|w| the init scheme predicts:\n" + wrap_phrases(label(ref.init_scheme, 120), 56))
        )  # fmt: skip
    return handles


def _z_text(z: float) -> str:
    if math.isinf(z):
        return "±∞".replace("±", "−" if z < 0 else "+")
    return f"{z:+.1f}".replace("-", "−")


def _mark_untraced(ax, panel: Panel, legend: dict) -> None:
    untraced = [layer.index for layer in panel.layers if not layer.traced]
    for i in untraced:
        ax.axvspan(i - 0.5, i + 0.5, color="#f0f0f0", zorder=0)
    if untraced:
        legend["untraced"] = Patch(facecolor="#f0f0f0", label="not called in the traced forward pass")


def _mark_neginf(ax, panel: Panel, options: PlotOptions, legend: dict | None = None) -> None:
    counts = neginf_counts(panel.results, options.total)
    if not counts:
        return
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    xs = sorted(counts)
    ax.plot(
        xs,
        [0.015] * len(xs),
        transform=trans,
        linestyle="none",
        marker="v",
        color=NEGINF_COLOR,
        markersize=5,
        clip_on=False,
        zorder=5,
    )
    if len(panel.layers) <= 60:
        for x in xs:
            ax.text(
                x, 0.045, f"{counts[x]}", transform=trans, ha="center", va="bottom", fontsize=6.5, color=NEGINF_COLOR
            )
    text = f"c11 = 0 → −∞, not drawn: {sum(counts.values())} value(s) in {len(xs)} layer(s)"
    handle = Line2D([], [], linestyle="none", marker="v", color=NEGINF_COLOR, markersize=5, label=text)
    if legend is not None:
        legend["neginf"] = handle
    else:
        ax.legend(handles=[handle], loc="lower right", frameon=False)


def _title_pad(panel: Panel) -> float:
    """Points between a panel's axes and its title: room for the z-scores drawn above the axes."""
    if panel.reference is not None and panel.reference.n > 1:
        return 28 if len(panel.layers) > 12 else 14
    return 6


def _style_axis(ax, panel: Panel) -> None:
    ax.set_xlim(0.4, len(panel.layers) + 0.6)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.7)
    ax.set_xlabel(f"layer ({panel.results[0].model.order})")


def _set_titles(fig: Figure, axes: list, panels: Sequence[Panel], pad: float) -> None:
    """Each panel's title (its name, then its layer counts), wrapped to the width its axes get once
    laid out, all with one pad and one number of lines, so that they share a baseline and a top."""
    fig.draw_without_rendering()  # the axes' real widths (titles change heights, not widths)
    chars = [max(24, int(ax.get_position().width * fig.get_figwidth() / 0.075)) for ax in axes]  # 10 pt characters
    heads = [label(panel.title) for panel in panels]
    counts = [f"({p.results[0].counts.conv} conv, {p.results[0].counts.dense} dense)" for p in panels]
    for ax, text in zip(axes, panel_titles(heads, counts, chars), strict=True):
        ax.set_title(text, loc="left", pad=pad)


def panel_titles(heads: Sequence[str], counts: Sequence[str], chars: Sequence[int]) -> list[str]:
    """Titles ``head  counts`` wrapped to ``chars`` characters between phrases only. When one of
    them needs a second line, every one puts its counts on a line of their own under its head
    (the same break in every panel), and the shorter ones end in empty lines: the same number of
    lines in every title, so that they line up at the top as well as at the baseline."""
    one = [wrap_phrases(f"{h}  {c}", w) for h, c, w in zip(heads, counts, chars, strict=True)]
    if all("\n" not in t for t in one):
        return one
    titles = [
        f"{wrap_phrases(h, w)}\n{c}" if len(c) <= w else t for h, c, w, t in zip(heads, counts, chars, one, strict=True)
    ]
    lines = max(t.count("\n") + 1 for t in titles)
    return [t + "\n" * (lines - 1 - t.count("\n")) for t in titles]


def _legend(fig: Figure, legend: dict) -> None:
    order = [
        "exact", "approx", "nototal", "mean", "outlier", "dense", "densebox", "seeds", "band", "init", "z", "neginf",
        "untraced",
    ]  # fmt: skip
    handles = [legend[k] for k in order if k in legend]
    _legend_below(fig, handles)


def _legend_below(fig: Figure, handles: list) -> None:
    """Legend under the axes, with as many columns as fit in the figure's width (never clipped)."""
    parts = [h.parts if isinstance(h, _Entry) else h for h in handles]
    fitted_legend(
        fig, parts, labels=[h.get_label() for h in handles], handler_map={tuple: HandlerTuple(ndivide=1)}
    )  # fmt: skip


NICE_STEPS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)


def tick_positions(n_layers: int, step: int) -> list[int]:
    """Layer indices to label: every ``step``-th, plus layer 1 when it does not crowd the next."""
    if step == 1:
        return list(range(1, n_layers + 1))
    ticks = list(range(step, n_layers + 1, step))
    return ([1] if step >= 4 else []) + ticks


def thin_ticks(fig: Figure, ax, panel: Panel, labels: str) -> int:
    """Label as many layers as fit without overlapping text; returns the step used.

    Starts from an estimate of the space each label needs and, after a real layout pass,
    widens the step until no two tick labels' rendered boxes overlap."""
    n = len(panel.layers)
    width_pt = ax.get_position().width * fig.get_figwidth() * 72
    font = matplotlib.rcParams["xtick.labelsize"] if isinstance(matplotlib.rcParams["xtick.labelsize"], float) else 8.0
    need = font * 1.35 if labels == "names" else font * (0.62 * len(str(n)) + 0.9)
    start = max(1, math.ceil(n / max(1.0, width_pt / need)))
    for step in [s for s in NICE_STEPS if s >= start] + [n]:
        _set_ticks(ax, panel, step, labels)
        if not labels_overlap(fig, ax):
            return step
    return n


def _set_ticks(ax, panel: Panel, step: int, labels: str) -> None:
    ticks = tick_positions(len(panel.layers), step)
    ax.set_xticks(ticks)
    if labels == "names":
        names = {layer.index: layer.name for layer in panel.layers}
        ax.set_xticklabels([label(names[t], NAME_LIMIT) for t in ticks], rotation=90, fontsize=7, family="monospace")
    else:
        ax.set_xticklabels([str(t) for t in ticks])


def labels_overlap(fig: Figure, ax) -> bool:
    """Whether any two visible x tick labels overlap once drawn."""
    fig.draw_without_rendering()
    return texts_overlap(fig, ax.get_xticklabels(), "x")
