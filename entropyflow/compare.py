"""Reference analyses to compare a model against (the paper's Figure 1: trained vs random init).

``random`` re-initialises the analysed architecture with seeds ``0 … N-1``; anything else is a
model spec analysed with the same options. The comparison itself is drawn by ``report.figures``,
its panel titles come from ``report.titles``.
"""

from __future__ import annotations

from dataclasses import replace

from .analysis import AnalyzeOptions, analyze
from .errors import OptionError
from .estimate.results import AnalysisResult
from .estimate.run import ProgressFn

RANDOM = "random"
MAX_SEEDS = 1000  # each seed is one full analysis


def check_seeds(compare: str | None, seeds: int) -> None:
    """Validate ``--compare``/``--seeds`` before any analysis runs."""
    if seeds < 1:
        raise OptionError("--seeds must be at least 1")
    if seeds > MAX_SEEDS:
        raise OptionError(
            f"--seeds {seeds:,} is more than {MAX_SEEDS} (each seed is one full analysis of the architecture)"
        )
    if seeds != 1 and compare != RANDOM:
        raise OptionError(
            "--seeds needs --compare random" if not compare else "--seeds applies to --compare random only"
        )


def reference_analyses(
    result: AnalysisResult, compare: str, options: AnalyzeOptions, seeds: int = 1, progress: ProgressFn | None = None
) -> tuple[AnalysisResult, ...]:
    """Analyse what ``compare`` names with the analysed model's input size and conventions."""
    check_seeds(compare, seeds)
    opts = replace(
        options,
        arch=None,
        weights=None,
        key=None,
        random_init=False,
        input_size=result.model.input_size,
        channel_rule=result.channel_rule,
        estimator=result.estimator,
    )
    if compare != RANDOM:
        return (analyze(compare, opts, progress=progress),)
    arch = result.model.arch
    if not arch:
        raise OptionError(f"--compare random needs the architecture of {result.model.spec}: give it with --arch")
    return tuple(analyze(arch, replace(opts, random_init=True, seed=s), progress=progress) for s in range(seeds))
