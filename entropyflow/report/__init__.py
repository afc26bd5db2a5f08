"""report: render an :class:`~entropyflow.results.AnalysisResult` to files and to a terminal.

Computation never happens here and nothing here prints on its own: renderers take their
output target (a rich Console, a folder) as an argument.
"""
from __future__ import annotations

from pathlib import Path

from ..results import AnalysisResult
from .jsonio import analysis_json, read_analysis
from .outdir import check_writable, write_atomically
from .tables import filters_csv, layers_csv

__all__ = ["report_files", "write_report", "read_analysis", "check_writable"]


def report_files(result: AnalysisResult) -> dict[str, bytes]:
    """Every report file rendered in memory: name → bytes."""
    return {"layers.csv": layers_csv(result), "filters.csv": filters_csv(result), "analysis.json": analysis_json(result)}


def write_report(result: AnalysisResult, out: str | Path) -> list[Path]:
    """Render and write the report files into ``out`` atomically."""
    return write_atomically(out, report_files(result))
