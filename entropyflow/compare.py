"""Reference analyses to compare a model against (the paper's Figure 1: trained vs random init).

``random`` re-initialises the analysed architecture with seeds ``0 … N-1``; anything else is a
model spec analysed with the same options. The comparison itself is drawn by ``report.figures``.
"""
from __future__ import annotations

from dataclasses import replace

from .analysis import AnalyzeOptions, analyze
from .errors import OptionError
from .estimate.results import AnalysisResult

RANDOM = "random"
MAX_SEEDS = 1000  # each seed is one full analysis


def check_seeds(compare: str | None, seeds: int) -> None:
    """Validate ``--compare``/``--seeds`` before any analysis runs."""
    if seeds < 1:
        raise OptionError("--seeds must be at least 1")
    if seeds > MAX_SEEDS:
        raise OptionError(f"--seeds {seeds:,} is more than {MAX_SEEDS} (each seed is one full analysis of the architecture)")
    if seeds != 1 and compare != RANDOM:
        raise OptionError("--seeds needs --compare random" if not compare else "--seeds applies to --compare random only")


def is_random_init(result: AnalysisResult) -> bool:
    return result.model.weights.startswith("random init")


def panel_title(result: AnalysisResult, seeds: int = 1) -> str:
    """A short panel title: the model, and whether it is trained or a random initialisation."""
    name = result.model.arch or result.model.spec
    if is_random_init(result):
        return f"{name}, random init" + (f" ({seeds} seeds)" if seeds > 1 else "")
    if result.model.arch and result.model.arch != result.model.spec:
        return f"{name}, {result.model.spec.split('/')[-1]}"
    return f"{name}, loaded weights" if result.model.format == "zoo" else name


def reference_analyses(result: AnalysisResult, compare: str, options: AnalyzeOptions, seeds: int = 1,
                       progress=None) -> tuple[AnalysisResult, ...]:
    """Analyse what ``compare`` names with the analysed model's input size and conventions."""
    check_seeds(compare, seeds)
    opts = replace(options, arch=None, weights=None, key=None, random_init=False, input_size=result.model.input_size,
                   channel_rule=result.channel_rule, estimator=result.estimator)
    if compare != RANDOM:
        return (analyze(compare, opts, progress=progress),)
    arch = result.model.arch
    if not arch:
        raise OptionError(f"--compare random needs the architecture of {result.model.spec}: give it with --arch")
    return tuple(analyze(arch, replace(opts, random_init=True, seed=s), progress=progress) for s in range(seeds))
