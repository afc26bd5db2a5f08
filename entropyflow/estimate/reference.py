"""A model's analysis against N random-initialisation seeds of its architecture: per layer, the
seeds' distribution of each layer statistic and where the model lies in it (:mod:`.seeds`), and
the level the initialisation scheme predicts (:mod:`.init_levels`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import registry
from .init_levels import InitLevel, recognise
from .results import AnalysisResult, LayerResult
from .seeds import ALPHA, STATISTICS, SeedStat, seed_stat, with_holm

__all__ = ["LayerReference", "SeedReference", "seed_reference", "statistic"]


def statistic(layer: LayerResult, name: str) -> float | None:
    """A layer statistic by name: ``mean`` / ``median`` of the per-filter values, or ``total``."""
    if name == "total":
        return layer.total
    value: float | None = getattr(layer.summary, name)
    return value


@dataclass(frozen=True)
class LayerReference:
    name: str
    stats: tuple[tuple[str, SeedStat | None], ...]  # (statistic, comparison) in STATISTICS order
    init: InitLevel | None = None

    def stat(self, name: str) -> SeedStat | None:
        return dict(self.stats)[name]


@dataclass(frozen=True)
class SeedReference:
    """The seeds (their numbers; never the model's own seed), per-layer comparisons in the
    model's layer order, and the recognised initialisation scheme (None when not recognised)."""

    seeds: tuple[int | None, ...]
    layers: tuple[LayerReference, ...]
    init_scheme: str | None
    alpha: float = ALPHA

    @property
    def n(self) -> int:
        return len(self.seeds)

    def layer(self, name: str) -> LayerReference:
        for item in self.layers:
            if item.name == name:
                return item
        raise KeyError(name)

    def outside(self, name: str = "median") -> int:
        """How many layers lie outside the random-init level on ``name`` (after Holm)."""
        return sum(1 for item in self.layers if (s := item.stat(name)) is not None and s.outside)


def seed_reference(result: AnalysisResult, seeds: Sequence[AnalysisResult]) -> SeedReference:
    """Compare ``result`` with random-init analyses of its architecture, layer by layer (by name)."""
    by_name = [{layer.name: layer for layer in s.layers} for s in seeds]
    columns: dict[str, list[SeedStat | None]] = {}
    for name in STATISTICS:
        raw = []
        for layer in result.layers:
            others = [b.get(layer.name) for b in by_name]
            values = [statistic(o, name) if o is not None else None for o in others]
            raw.append(seed_stat(statistic(layer, name), values))
        columns[name] = with_holm(raw)
    levels: list[InitLevel | None] = [None] * len(result.layers)
    scheme = None
    if registry.get(result.estimator).init_levels and result.channel_rule == "first" and seeds:
        convs = [
            i
            for i, layer in enumerate(result.layers)
            if layer.is_conv and all(layer.name in b and b[layer.name].is_conv for b in by_name)
        ]
        pooled = [
            (np.concatenate([b[result.layers[i].name].per_position for b in by_name]), result.layers[i].weight_shape)
            for i in convs
        ]
        scheme, found = recognise(pooled)
        for i, level in zip(convs, found, strict=True):
            levels[i] = level
    layers = tuple(
        LayerReference(layer.name, tuple((name, columns[name][i]) for name in STATISTICS), levels[i])
        for i, layer in enumerate(result.layers)
    )
    return SeedReference(tuple(s.model.seed for s in seeds), layers, scheme)
