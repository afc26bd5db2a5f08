"""``entropyflow compare``: saved analyses side by side."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .. import vocab
from .app import app, consoles, wrote
from .errors import errors
from .options import OUTPUT, Debug, PlotFormat


@app.command()
def compare(
    ctx: typer.Context,
    analyses: Annotated[
        list[str],
        typer.Argument(
            metavar="ANALYSIS", help="Two or more analysis.json files (or report folders) to draw side by side."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Folder for compare.* and compare-profile.*.", rich_help_panel=OUTPUT, metavar="DIR"
        ),
    ] = "entropyflow-compare",
    plot_format: PlotFormat = "png",
    plot_total: Annotated[
        bool,
        typer.Option(
            "--plot-total", help="Plot per-filter totals instead of per-position values.", rich_help_panel=OUTPUT
        ),
    ] = False,
    labels: Annotated[
        str,
        typer.Option(
            "--labels", help="x-axis labels: index (1…L) or names.", rich_help_panel=OUTPUT, metavar="index|names"
        ),
    ] = "index",
    debug: Debug = False,
) -> None:
    """Saved analyses on one axis: up to 5 as side-by-side panels (the paper's Figure 1), more as a heatmap."""
    console, err = consoles(ctx)
    with errors(err, debug):
        # deliberate start-up saving: matplotlib and the report modules load only when a command runs
        from ..report import ReportOptions
        from ..runs import compare_to

        report = ReportOptions(
            plot_format=vocab.plot_format(plot_format), total=plot_total, labels=vocab.label_mode(labels), html=False
        )
        written = compare_to(analyses, out=out, report=report)
        for note in written.notes:
            console.print(Text(f"note: {note}", style="dim"))
        wrote(console, written.files, written.out)
