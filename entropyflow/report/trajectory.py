"""``entropyflow track`` output: ``trajectory.csv`` (layers × checkpoints), ``checkpoints.csv``,
the heatmap (colours diverge around each layer's random-init level) and a few-lines plot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..estimate import registry
from ..estimate.trajectory import Trajectory
from .heatmap import heatmap_figure, lines_figure, pick_rows
from .plotting import save_figure
from .tables import csv_bytes

__all__ = ["trajectory_files", "chosen_layers"]


def chosen_layers(traj: Trajectory, names: Sequence[str] = (), k: int = 5) -> list[int]:
    """Rows for the lines plot: the named layers, or the ``k`` that move most over training."""
    if names:
        missing = [n for n in names if n not in traj.layers]
        if missing:
            raise KeyError(missing[0])
        return [traj.layers.index(n) for n in names]
    return pick_rows(traj.values, k)


def trajectory_csv(traj: Trajectory) -> bytes:
    labels = list(traj.labels)
    columns = ["index", "name", "random_init_level", "random_init_min", "random_init_max", *labels]
    rows = []
    for i, name in enumerate(traj.layers):
        row = {
            "index": i + 1,
            "name": name,
            "random_init_level": _f(traj.level[i]),
            "random_init_min": _f(traj.band[i, 0]),
            "random_init_max": _f(traj.band[i, 1]),
        }
        row.update({label: _f(traj.values[i, j]) for j, label in enumerate(labels)})
        rows.append(row)
    return csv_bytes(columns, rows)


def checkpoints_csv(traj: Trajectory) -> bytes:
    columns = ["label", "path", "sha256", "from_cache"]
    rows = [
        {"label": label, "path": str(path), "sha256": r.model.sha256, "from_cache": hit}
        for label, path, r, hit in zip(traj.labels, traj.paths, traj.results, traj.cached, strict=True)
    ]
    return csv_bytes(columns, rows)


def _f(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def trajectory_files(
    traj: Trajectory, fmt: str = "png", layers: Sequence[str] = (), plot: bool = True
) -> dict[str, bytes]:
    """Every ``track`` file rendered in memory: name → bytes."""
    files = {"trajectory.csv": trajectory_csv(traj), "checkpoints.csv": checkpoints_csv(traj)}
    if not plot:
        return files
    est = registry.get(traj.results[0].estimator).labels.suffix
    seeds = len(traj.seeds)
    against = f"the random-init level ({seeds} seeds)" if seeds else f"the first checkpoint ({traj.labels[0]})"
    heat = heatmap_figure(
        traj.relative, traj.layers, traj.labels, center=0.0, xlabel="checkpoint",
        title=f"layer {traj.statistic} over training, relative to {against}",
        colorbar=f"{traj.statistic} − {'random-init level' if seeds else 'first checkpoint'} (nats)",
    )  # fmt: skip
    picked = chosen_layers(traj, layers)
    bands = {traj.layers[i]: (float(traj.band[i, 0]), float(traj.band[i, 1])) for i in picked if seeds}
    lines = lines_figure(
        traj.values[picked], [traj.layers[i] for i in picked], traj.labels, xlabel="checkpoint",
        ylabel=f"layer {traj.statistic} (nats){est}", bands=bands,
        title=f"layer {traj.statistic} over training" + (f" (bands: {seeds} random-init seeds)" if seeds else ""),
    )  # fmt: skip
    files[f"trajectory.{fmt}"] = save_figure(heat, fmt)
    files[f"trajectory-layers.{fmt}"] = save_figure(lines, fmt)
    return files
