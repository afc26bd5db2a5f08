"""report: render an :class:`~entropyflow.estimate.results.AnalysisResult` to files and to a terminal.

Computation never happens here and nothing here prints on its own: renderers take their
output target (a rich Console, a folder) as an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import vocab
from ..errors import OptionError
from ..estimate import registry
from ..estimate.reference import SeedReference
from ..estimate.results import AnalysisResult
from ..estimate.trajectory import layer_matrix
from ..vocab import LabelMode, PlotFormat
from . import notebook  # noqa: F401 - installs AnalysisResult's notebook view
from .figures import Panel, PlotOptions, entropy_figure, profile_figure
from .heatmap import heatmap_figure, layer_order, lines_figure, pick_rows
from .html import render_html
from .jsonio import analysis_json, read_analysis
from .outdir import check_writable, write_atomically
from .plotting import save_figure
from .tables import filters_csv, layers_csv, seeds_csv
from .titles import panel_title, unique_titles

__all__ = ["ReportOptions", "report_files", "comparison_files", "write_report", "read_analysis", "check_writable"]


@dataclass(frozen=True)
class ReportOptions:
    """Which figures and pages go with the CSV/JSON files (checked when built)."""

    plot: bool = True
    plot_format: PlotFormat = "png"
    total: bool = False
    labels: LabelMode = "index"
    html: bool = True

    def __post_init__(self) -> None:
        vocab.plot_format(self.plot_format)
        vocab.label_mode(self.labels)


def report_files(
    result: AnalysisResult,
    options: ReportOptions | None = None,
    references: Sequence[AnalysisResult] = (),
    reference: SeedReference | None = None,
) -> dict[str, bytes]:
    """Every report file rendered in memory: name → bytes.

    ``references``: analyses drawn beside this one (``--compare``): several are random seeds of
    one architecture, pooled in one panel. They are saved as ``compare-*.analysis.json``.
    ``reference``: the model against those seeds (z-scores, percentiles, init levels): it adds
    columns to ``layers.csv``, a block to ``analysis.json``, ``seeds.csv``, and bands to the figures."""
    opts = options or ReportOptions(plot=False, html=False)
    files = {
        "layers.csv": layers_csv(result, reference),
        "filters.csv": filters_csv(result),
        "analysis.json": analysis_json(result, reference),
    }
    if reference is not None:
        files["seeds.csv"] = seeds_csv(tuple(references))
    for i, ref in enumerate(references):
        files[f"compare-{i + 1}.analysis.json" if len(references) > 1 else "compare.analysis.json"] = analysis_json(ref)
    figures = _figures([result], references, opts, reference=reference) if opts.plot else {}
    files.update({name: data for name, (_, _, data) in figures.items()})
    if opts.html:
        files["report.html"] = render_html(
            result,
            {caption: (fmt, data) for caption, fmt, data in figures.values()},
            references=tuple(references),
            reference=reference,
        )
    return files


MAX_PANELS = 5  # beyond a handful of analyses, compare draws a heatmap instead of panels


def check_comparable(results: Sequence[AnalysisResult], names: Sequence[str]) -> None:
    """Analyses drawn on one axis must measure the same quantity: one estimator, one channel rule."""
    for attr, what in (("estimator", "estimator"), ("channel_rule", "channel rule")):
        kinds = {getattr(r, attr) for r in results}
        if len(kinds) > 1:
            listed = ", ".join(f"{n}: {getattr(r, attr)}" for n, r in zip(names, results, strict=True))
            raise OptionError(
                f"compare puts the analyses on one axis, but their {what}s differ ({listed}); analyse them all "
                f"with the same --{what.replace(' ', '-')}"
            )


def comparison_files(
    results: Sequence[AnalysisResult], options: ReportOptions | None = None, names: Sequence[str] = ()
) -> dict[str, bytes]:
    """``compare.<fmt>`` and ``compare-profile.<fmt>``: up to five analyses as side-by-side
    panels (shared y axis) and overlaid profiles; more as a heatmap of the layer medians (layers ×
    analyses) and the medians of the layers that change most. ``names``: the inputs, for messages."""
    opts = options or ReportOptions()
    check_comparable(results, names or [r.model.spec for r in results])
    titles = unique_titles(results)
    if len(results) <= MAX_PANELS:
        panels = [Panel.of(t, r) for t, r in zip(titles, results, strict=True)]
        figures = _draw(panels, opts, "compare")
        return {name.replace("compare-entropy", "compare"): data for name, (_, _, data) in figures.items()}
    matrix, layers = layer_matrix(results)
    est = registry.get(results[0].estimator).labels.suffix
    fmt = opts.plot_format
    heat = heatmap_figure(
        matrix, layers, titles, title=f"layer median over {len(results)} analyses (per output position)",
        colorbar=f"layer median (nats){est}", xlabel="analysis",
        order=layer_order(results),
    )  # fmt: skip
    picked = pick_rows(matrix)
    lines = lines_figure(
        matrix[picked], [layers[i] for i in picked], titles, ylabel=f"layer median (nats){est}", xlabel="analysis",
        title=f"the {len(picked)} layers whose median changes most from the first analysis to the last",
    )  # fmt: skip
    return {f"compare.{fmt}": save_figure(heat, fmt), f"compare-profile.{fmt}": save_figure(lines, fmt)}


def write_report(
    result: AnalysisResult,
    out: str | Path,
    options: ReportOptions | None = None,
    references: Sequence[AnalysisResult] = (),
    reference: SeedReference | None = None,
) -> list[Path]:
    """Render and write the report files into ``out`` atomically."""
    return write_atomically(out, report_files(result, options, references, reference))


def _figures(
    results: Sequence[AnalysisResult],
    references: Sequence[AnalysisResult],
    opts: ReportOptions,
    prefix: str = "",
    pool: bool = True,
    reference: SeedReference | None = None,
) -> dict[str, tuple[str, str, bytes]]:
    panels = [Panel.of(panel_title(r), r, reference if k == 0 else None) for k, r in enumerate(results)]
    if references:
        if pool:
            panels.append(Panel.of(panel_title(references[0], len(references)), references))
        else:
            panels += [Panel.of(panel_title(r), r) for r in references]
    return _draw(panels, opts, prefix)


def _draw(panels: Sequence[Panel], opts: ReportOptions, prefix: str = "") -> dict[str, tuple[str, str, bytes]]:
    plot = PlotOptions(total=opts.total, labels=opts.labels)
    what = "total per filter" if opts.total else "per output position"
    stem = f"{prefix}-" if prefix else ""
    fmt = opts.plot_format
    return {
        f"{stem}entropy.{fmt}": (
            f"Entropy change {what}, one box per layer in execution order",
            fmt,
            save_figure(entropy_figure(panels, plot), fmt),
        ),
        f"{stem}profile.{fmt}": (
            f"Mean entropy change {what} per layer, band from the first to the third quartile",
            fmt,
            save_figure(profile_figure(panels, plot), fmt),
        ),
    }
