"""Reference analyses to compare a model against (the paper's Figure 1: trained vs random init).

``random`` re-initialises the analysed architecture with N seeds: the first N of 0, 1, 2, …
that are not the analysed model's own seed (a random-init model is never compared with itself,
nor a trained one whose checkpoint records the seed it was initialised with);
anything else is a model spec analysed with the same options. The comparison itself is drawn by ``report.figures``,
its panel titles come from ``report.titles``.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import count, islice

from .analysis import AnalyzeOptions, analyze
from .errors import OptionError
from .estimate.results import AnalysisResult
from .estimate.run import ProgressFn
from .words import arg, option

RANDOM = "random"
MAX_SEEDS = 1000  # each seed is one full analysis
DEFAULT_SEEDS = 10  # enough for a z-score and a percentile to mean something; costs 10 analyses


def check_seeds(compare: str | None, seeds: int | None) -> int:
    """Validate ``--compare``/``--seeds`` before any analysis runs; returns the number of seeds."""
    if seeds is None:
        return DEFAULT_SEEDS if compare == RANDOM else 1
    if seeds < 1:
        raise OptionError(f"{option('seeds')} must be at least 1")
    if seeds > MAX_SEEDS:
        raise OptionError(
            f"{option('seeds')} {seeds:,} is more than {MAX_SEEDS} (each seed is one full analysis of the architecture)"
        )
    if seeds != 1 and compare != RANDOM:
        raise OptionError(
            f"{option('seeds')} needs {arg('compare', RANDOM)}"
            if not compare
            else f"{option('seeds')} applies to {arg('compare', RANDOM)} only"
        )
    return seeds


def reference_seeds(n: int, own: int | None) -> tuple[int, ...]:
    """The first ``n`` of 0, 1, 2, … without ``own`` (the analysed model's seed, if it is one)."""
    return tuple(islice((s for s in count() if s != own), n))


def reference_analyses(
    result: AnalysisResult,
    compare: str,
    options: AnalyzeOptions,
    seeds: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[AnalysisResult, ...]:
    """Analyse what ``compare`` names with the analysed model's input size and conventions."""
    n = check_seeds(compare, seeds)
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
        raise OptionError(
            f"{arg('compare', RANDOM)} needs the architecture of {result.model.spec}: give it with {arg('arch')}"
        )
    own = result.model.seed  # a random init's seed, or the seed a trained model was initialised with
    picked = reference_seeds(n, own)
    out = []
    for k, s in enumerate(picked):
        if progress:
            progress("seeds", k, n)
        out.append(analyze(arch, replace(opts, random_init=True, seed=s), progress=progress))
    load_seed_statistics()  # part of the seeds' time, so that the stage that shows it accounts for it
    if progress:
        progress("seeds", n, n)
    return tuple(out)


def load_seed_statistics() -> None:
    """Import what the seeds' statistics need (scipy.stats: about a second, the first time) while
    the seeds stage still runs, rather than after it, when no progress stage shows the wait."""
    import scipy.stats  # noqa: F401  # lazy: estimate.seeds imports it on first use, too
