"""One call per command: what ``entropyflow analyze``, ``compare`` and ``track`` do, as library
functions (``recommend`` has its own in :mod:`entropyflow.recommend.source`, ``sweep`` in
:mod:`entropyflow.sweep.runner`). One argument order for all of them: what is analysed first, then,
keyword-only, ``out=`` and the options (typed option objects). Each checks what it
can before any work (the output folder, the options), runs the pipeline and writes its files; the
CLI parses, makes this one call and renders what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .analysis import AnalyzeOptions, analyze
from .compare import RANDOM, check_seeds, reference_analyses
from .errors import OptionError
from .estimate.reference import SeedReference, seed_reference
from .estimate.results import AnalysisResult
from .estimate.run import ProgressFn
from .estimate.trajectory import Trajectory
from .report import ReportOptions, comparison_files, read_analysis, report_files
from .report.outdir import preflight, write_atomically
from .report.trajectory import trajectory_files
from .track import ParallelOptions, TrackOptions, track

__all__ = ["Written", "analyze_names", "analyze_to", "compare_to", "track_to"]


@dataclass(frozen=True)
class Written:
    """What a run wrote: the analyses it drew (the first is the model's) and the files, in ``out``."""

    results: tuple[AnalysisResult, ...]
    out: Path
    files: tuple[Path, ...]
    reference: SeedReference | None = None  # with --compare random: the model against the seeds
    trajectory: Trajectory | None = None  # track: the layers over the checkpoints
    notes: tuple[str, ...] = ()  # what the reader of the files should know (compare: other architectures)

    @property
    def result(self) -> AnalysisResult:
        return self.results[0]


def analyze_to(
    model: str | nn.Module | None = None,
    *,
    out: str | Path,
    options: AnalyzeOptions | None = None,
    report: ReportOptions | None = None,
    compare: str | None = None,
    seeds: int | None = None,
    progress: ProgressFn | None = None,
) -> Written:
    """Analyse ``model`` (and, with ``compare``, its reference analyses) and write the report
    folder ``out`` as a whole. The comparison options and the folder are checked first."""
    report = report or ReportOptions()
    n = check_seeds(compare, seeds)
    folder = preflight(out, "analyze", analyze_names(report, compare, n))
    options = options or AnalyzeOptions()
    result = analyze(model, options, progress=progress)
    references = reference_analyses(result, compare, options, seeds, progress=progress) if compare else ()
    reference = seed_reference(result, references) if compare == RANDOM else None
    if progress:
        progress("write", 0, 1)
    files = write_atomically(folder, report_files(result, report, references, reference), "analyze")
    if progress:
        progress("write", 1, 1)
    return Written((result, *references), folder, tuple(files), reference)


def analyze_names(report: ReportOptions, compare: str | None, seeds: int) -> list[str]:
    """The files ``analyze`` will write with these options (checked against the folder before
    any work; tests hold them equal to what :func:`report_files` renders)."""
    names = ["layers.csv", "filters.csv", "analysis.json"]
    if compare == RANDOM:
        names.append("seeds.csv")
    if compare:
        n = seeds if compare == RANDOM else 1
        names += [f"compare-{k}.analysis.json" for k in range(1, n + 1)] if n > 1 else ["compare.analysis.json"]
    if report.plot:
        names += [f"entropy.{report.plot_format}", f"profile.{report.plot_format}"]
    if report.html:
        names.append("report.html")
    return names


def compare_to(analyses: Sequence[str | Path], *, out: str | Path, report: ReportOptions | None = None) -> Written:
    """Draw saved analyses (``analysis.json`` files or their report folders) side by side into
    ``out``: ``compare.<fmt>`` and ``compare-profile.<fmt>`` (the profiles overlaid by layer index,
    so only for analyses of one architecture; otherwise left out and said in ``notes``)."""
    if len(analyses) < 2:
        raise OptionError("compare needs at least two analysis.json files")
    opts = report or ReportOptions()
    folder = preflight(out, "compare", [f"compare.{opts.plot_format}", f"compare-profile.{opts.plot_format}"])
    results = tuple(read_analysis(p) for p in analyses)
    rendered = comparison_files(results, opts, [str(p) for p in analyses])
    notes: tuple[str, ...] = ()
    layers = {tuple((layer.name, layer.kind) for layer in r.layers) for r in results}
    if len(layers) > 1:  # different architectures: layer k of one is not layer k of another
        rendered.pop(f"compare-profile.{opts.plot_format}", None)
        notes = (
            "the analyses have different layers (other architectures): each panel has its own layers, and no "
            "overlaid profile is drawn, since the same layer index would be unrelated layers",
        )
    files = write_atomically(folder, rendered, "compare")
    return Written(results, folder, tuple(files), notes=notes)


def track_to(
    checkpoints: Sequence[str | Path],
    *,
    out: str | Path,
    options: AnalyzeOptions | None = None,
    track_options: TrackOptions | None = None,
    report: ReportOptions | None = None,
    layers: Sequence[str] = (),
    progress: ProgressFn | None = None,
    parallel: ParallelOptions | None = None,
) -> Written:
    """Analyse each checkpoint (cached by file hash), the random-init seeds, and write
    ``trajectory.csv``, ``checkpoints.csv``, ``trajectory.<fmt>`` and ``trajectory-layers.<fmt>``.
    ``parallel``: as Ray tasks (``ParallelOptions(workers=N)`` or ``address=``), with the same
    files. Checkpoints that fail are left out of the files and listed in ``trajectory.failed``."""
    opts = report or ReportOptions()
    figures = [f"trajectory.{opts.plot_format}", f"trajectory-layers.{opts.plot_format}"] if opts.plot else []
    folder = preflight(out, "track", ["trajectory.csv", "checkpoints.csv", *figures])
    traj = track(checkpoints, folder, options, track_options, progress, layers, parallel=parallel)
    files = write_atomically(folder, trajectory_files(traj, opts.plot_format, layers, opts.plot), "track")
    return Written(traj.results, folder, tuple(files), trajectory=traj)
