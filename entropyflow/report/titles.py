"""Panel titles: the model, and whether its weights are trained or a random initialisation."""

from __future__ import annotations

from ..estimate.results import AnalysisResult


def panel_title(result: AnalysisResult, seeds: int = 1) -> str:
    """A short panel title: the model, and whether it is trained or a random initialisation."""
    name = result.model.arch or result.model.spec
    if result.model.random_init:
        return f"{name}, random init" + (f" ({seeds} seeds)" if seeds > 1 else "")
    if result.model.arch and result.model.arch != result.model.spec:
        return f"{name}, {result.model.spec.split('/')[-1]}"
    return f"{name}, loaded weights" if result.model.format == "zoo" else name
