"""Panel titles: the model, and whether its weights are trained or a random initialisation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath

from ..estimate.results import AnalysisResult


def panel_title(result: AnalysisResult, seeds: int = 1) -> str:
    """A short panel title: the model, and whether it is trained or a random initialisation."""
    name = result.model.arch or result.model.spec
    if result.model.random_init:
        if seeds > 1:
            return f"{name}, random init ({seeds} seeds)"
        return f"{name}, random init" + (f" (seed {result.model.seed})" if result.model.seed is not None else "")
    if result.model.arch and result.model.arch != result.model.spec:
        return f"{name}, {result.model.spec.split('/')[-1]}"
    return f"{name}, loaded weights" if result.model.format == "zoo" else name


def unique_titles(results: Sequence[AnalysisResult]) -> list[str]:
    """Panel titles that tell the analyses apart: the short title, then the seed of a random
    initialisation, then as much of the file path as makes them unique, then a running number."""
    titles = [panel_title(r) for r in results]
    if len(set(titles)) == len(titles):
        return titles
    for k, r in enumerate(results):
        if r.model.random_init and r.model.seed is not None:
            titles[k] = f"{titles[k]}, seed {r.model.seed}"
    depth = 1
    while len(set(titles)) < len(titles) and depth <= 4:
        counts = Counter(titles)
        tails = {}
        for k, r in enumerate(results):
            if counts[titles[k]] > 1 and r.model.files:
                parts = [p for p in PurePath(r.model.files[0]).parts if p not in ("/", "\\")]
                tails[k] = f"{r.model.arch or ''} {'/'.join(parts[-depth:])}".strip()
        if len(set(tails.values())) > 1 or depth == 1:
            for k, t in tails.items():
                titles[k] = t
        depth += 1
    counts = Counter(titles)
    base = [panel_title(r) for r in results]
    return [f"{base[k]} #{k + 1}" if counts[t] > 1 else t for k, t in enumerate(titles)]
