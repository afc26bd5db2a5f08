"""report: render an :class:`~entropyflow.results.AnalysisResult` to files and to a terminal.

Computation never happens here and nothing here prints on its own: renderers take their
output target (a rich Console, a folder) as an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import vocab
from ..estimate.results import AnalysisResult
from ..vocab import LabelMode, PlotFormat
from .figures import Panel, PlotOptions, entropy_figure, profile_figure, save_figure
from .html import render_html
from .jsonio import analysis_json, read_analysis
from .outdir import check_writable, write_atomically
from .tables import filters_csv, layers_csv
from .titles import panel_title

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
    result: AnalysisResult, options: ReportOptions | None = None, references: Sequence[AnalysisResult] = ()
) -> dict[str, bytes]:
    """Every report file rendered in memory: name → bytes.

    ``references``: analyses drawn beside this one (``--compare``): several are random seeds of
    one architecture, pooled in one panel. They are saved as ``compare-*.analysis.json``."""
    opts = options or ReportOptions(plot=False, html=False)
    files = {
        "layers.csv": layers_csv(result),
        "filters.csv": filters_csv(result),
        "analysis.json": analysis_json(result),
    }
    for i, ref in enumerate(references):
        files[f"compare-{i + 1}.analysis.json" if len(references) > 1 else "compare.analysis.json"] = analysis_json(ref)
    figures = _figures([result], references, opts) if opts.plot else {}
    files.update({name: data for name, (_, _, data) in figures.items()})
    if opts.html:
        files["report.html"] = render_html(result, {caption: (fmt, data) for caption, fmt, data in figures.values()})
    return files


def comparison_files(results: Sequence[AnalysisResult], options: ReportOptions | None = None) -> dict[str, bytes]:
    """``compare.<fmt>`` (side-by-side panels, shared y axis) and ``compare-profile.<fmt>``."""
    opts = options or ReportOptions()
    figures = _figures(results[:1], results[1:], opts, prefix="compare", pool=False)
    return {name.replace("compare-entropy", "compare"): data for name, (_, _, data) in figures.items()}


def write_report(
    result: AnalysisResult,
    out: str | Path,
    options: ReportOptions | None = None,
    references: Sequence[AnalysisResult] = (),
) -> list[Path]:
    """Render and write the report files into ``out`` atomically."""
    return write_atomically(out, report_files(result, options, references))


def _figures(
    results: Sequence[AnalysisResult],
    references: Sequence[AnalysisResult],
    opts: ReportOptions,
    prefix: str = "",
    pool: bool = True,
) -> dict[str, tuple[str, str, bytes]]:
    panels = [Panel.of(panel_title(r), r) for r in results]
    if references:
        if pool:
            panels.append(Panel.of(panel_title(references[0], len(references)), references))
        else:
            panels += [Panel.of(panel_title(r), r) for r in references]
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
