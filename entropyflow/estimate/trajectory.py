"""Layer statistics of several analyses as one matrix (layers × analyses), and the result type of
``entropyflow track``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .reference import statistic
from .results import AnalysisResult

__all__ = ["LossSeries", "Trajectory", "layer_matrix"]


def layer_matrix(
    results: Sequence[AnalysisResult], stat: str = "median", layers: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """``stat`` per layer and analysis: one row per layer name (``layers``, or every name in order
    of first appearance), one column per analysis; NaN where an analysis lacks the layer or the
    value is not finite."""
    names = list(layers) if layers is not None else []
    if layers is None:
        for r in results:
            names += [layer.name for layer in r.layers if layer.name not in names]
    row = {name: i for i, name in enumerate(names)}
    out = np.full((len(names), len(results)), np.nan)
    for j, r in enumerate(results):
        for layer in r.layers:
            v = statistic(layer, stat)
            if layer.name in row and v is not None and math.isfinite(v):
                out[row[layer.name], j] = v
    return out, names


@dataclass(frozen=True)
class LossSeries:
    """One logged series of a training run (``loss``, ``eval_loss`` from a Hugging Face
    ``trainer_state.json``): its finite values at their global steps, in step order."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]

    def at(self, step: int) -> float | None:
        """The last value logged at or before ``step`` (None: nothing logged yet)."""
        found = None
        for s, v in zip(self.steps, self.values, strict=True):
            if s > step:
                break
            found = v
        return found


@dataclass(frozen=True, eq=False)
class Trajectory:
    """``values[i, j]``: the statistic of layer ``layers[i]`` at checkpoint ``labels[j]``;
    ``level[i]``: its random-init level (the seeds' mean; NaN without seeds) and ``band[i]`` the
    seeds' (min, max). ``cached[j]``: whether checkpoint ``j`` came from the cache.
    ``steps[j]``: checkpoint ``j``'s global step (or epoch, as ``axis`` says) when its name or
    ``trainer_state.json`` gives one; ``loss``: the run's logged losses (a Hugging Face output_dir);
    ``notes``: what was read around the checkpoints and left out (a damaged trainer_state.json)."""

    labels: tuple[str, ...]
    paths: tuple[Path, ...]
    results: tuple[AnalysisResult, ...]
    layers: tuple[str, ...]
    values: np.ndarray
    level: np.ndarray
    band: np.ndarray
    seeds: tuple[AnalysisResult, ...]
    statistic: str
    cached: tuple[bool, ...]
    steps: tuple[int | None, ...] = ()
    axis: str = "checkpoint"  # what the columns are: step, epoch or checkpoint (file names)
    loss: tuple[LossSeries, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def analysed(self) -> int:
        return sum(1 for c in self.cached if not c)

    @property
    def relative(self) -> np.ndarray:
        """``values`` minus the random-init level (or minus the first checkpoint without seeds)."""
        base = self.level if np.isfinite(self.level).any() else self.values[:, 0]
        relative: np.ndarray = self.values - base[:, None]
        return relative
