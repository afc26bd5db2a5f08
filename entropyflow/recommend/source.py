"""Recommend from what the user has: a saved ``analysis.json`` (or its report folder), or a model
spec that is analysed first."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..analysis import AnalyzeOptions, analyze
from ..config import LambdaConfig, check_config_path, save_config
from ..estimate.results import AnalysisResult
from ..estimate.run import ProgressFn
from ..report import read_analysis
from .placement import RecommendOptions, recommend, validate_options


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend_for` gives: the config, the analysis it came from, and that analysis's
    file when it was read from one (None: analysed in this run)."""

    config: LambdaConfig
    analysis: AnalysisResult
    analysis_file: Path | None


def saved_analysis(source: str | None) -> Path | None:
    """The analysis.json that ``source`` names (a file or a report folder), or None for a model."""
    if not source:
        return None
    p = Path(source).expanduser()
    if p.is_dir() and (p / "analysis.json").is_file():
        return p / "analysis.json"
    if p.is_file() and p.suffix.lower() == ".json":
        try:
            with open(p, encoding="utf-8") as f:
                head = f.read(4096)
        except OSError:
            return None
        if '"entropyflow.analysis/' in head:
            return p
    return None


def recommend_for(
    source: str | None = None,
    *,
    analyze_options: AnalyzeOptions | None = None,
    options: RecommendOptions | None = None,
    progress: ProgressFn | None = None,
) -> Recommendation:
    """Analyse ``source`` (or read it, if it is a saved analysis) and recommend a λ placement."""
    options = options or RecommendOptions()
    validate_options(options)
    saved = saved_analysis(source)
    if saved is not None:
        analysis = read_analysis(saved)
        sha = hashlib.sha256(saved.read_bytes()).hexdigest()
    else:
        analysis = analyze(source, analyze_options or AnalyzeOptions(), progress=progress)
        sha = None  # analysed in this run: no file to hash
    return Recommendation(recommend(analysis, options, analysis_sha256=sha), analysis, saved)


def recommend_to(
    source: str | None = None,
    *,
    out: str | Path,
    analyze_options: AnalyzeOptions | None = None,
    options: RecommendOptions | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Recommendation, Path]:
    """What ``entropyflow recommend`` does: check that ``out`` can be written (a .yaml/.yml/.json
    name, not a file entropyflow did not write), recommend, and write the config atomically."""
    path = check_config_path(out)
    rec = recommend_for(source, analyze_options=analyze_options, options=options, progress=progress)
    return rec, save_config(rec.config, path)
