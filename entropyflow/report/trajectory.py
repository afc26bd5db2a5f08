"""``entropyflow track`` output: ``trajectory.csv`` (layers × checkpoints), ``checkpoints.csv``,
the heatmap (colours diverge around each layer's random-init level) and a few-lines plot."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..estimate import registry
from ..estimate.trajectory import LossSeries, Trajectory
from .heatmap import heatmap_figure, layer_order, lines_figure, pick_rows
from .plotting import save_figure
from .tables import csv_bytes

__all__ = ["trajectory_files", "trajectory_figures", "chosen_layers", "logged_at"]


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


def logged_at(series: LossSeries, step: int) -> tuple[int, float] | None:
    """(the step it was logged at, the value): the last value of ``series`` logged at or before
    ``step``; None when nothing was logged yet."""
    k = bisect.bisect_right(series.steps, step) - 1
    return (series.steps[k], series.values[k]) if k >= 0 else None


def checkpoints_csv(traj: Trajectory) -> bytes:
    """One row per checkpoint; with a training run's positions its ``step`` (or ``epoch``), and
    with a logged loss the last value of each series logged at or before that step (``loss``)
    and the step it was logged at (``loss_step``; ``eval_loss``, ``eval_loss_step``)."""
    columns = ["label", "path", "sha256", "from_cache"]
    known = traj.axis != "checkpoint" or any(s is not None for s in traj.steps)
    position = traj.axis if traj.axis != "checkpoint" else "step"
    if known:
        columns.append(position)
    for series in traj.loss:
        columns += [series.name, f"{series.name}_step"]
    rows = []
    for j, (label, path, r, hit) in enumerate(zip(traj.labels, traj.paths, traj.results, traj.cached, strict=True)):
        row: dict[str, object] = {"label": label, "path": str(path), "sha256": r.model.sha256, "from_cache": hit}
        step = traj.steps[j] if j < len(traj.steps) else None
        if known:
            row[position] = step
        for series in traj.loss:
            found = logged_at(series, step) if step is not None and position == "step" else None
            row[series.name], row[f"{series.name}_step"] = found[1] if found else None, found[0] if found else None
        rows.append(row)
    return csv_bytes(columns, rows)


def loss_positions(traj: Trajectory) -> list[float] | None:
    """The columns' global steps when the loss can be drawn against them (every checkpoint has one,
    in increasing order), else None."""
    if not traj.loss or traj.axis != "step" or len(traj.steps) != len(traj.labels):
        return None
    steps = [s for s in traj.steps if s is not None]
    if len(steps) != len(traj.labels) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        return None
    return [float(s) for s in steps]


SPACING = "(evenly spaced by checkpoint, not by step)"  # whatever the steps between the checkpoints


def _xlabel(traj: Trajectory) -> str:
    """The x label: checkpoints are drawn evenly spaced (columns, or points in the lines plot),
    whatever the steps between them, and a step axis says so."""
    if traj.axis == "step":
        return f"global step\n{SPACING}"
    return {"epoch": "epoch"}.get(traj.axis, "checkpoint")


def _f(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def trajectory_figures(traj: Trajectory, layers: Sequence[str] = ()) -> tuple[Figure, Figure]:
    """The heatmap (with the logged loss under it, on the columns' axis) and the few-lines plot."""
    est = registry.get(traj.results[0].estimator).labels.suffix
    seeds = len(traj.seeds)
    against = f"the random-init level ({seeds} seeds)" if seeds else f"the first checkpoint ({traj.labels[0]})"
    positions = loss_positions(traj)
    heat = heatmap_figure(
        traj.relative, traj.layers, traj.labels, center=0.0, xlabel=_xlabel(traj),
        title=f"layer {traj.statistic} over training, relative to {against}",
        colorbar=f"{traj.statistic} − {'random-init level' if seeds else 'first checkpoint'} (nats)",
        positions=positions, series=[(s.name, s.steps, s.values) for s in traj.loss] if positions else (),
        series_label="logged loss",
        order=layer_order(traj.results),
    )  # fmt: skip
    picked = chosen_layers(traj, layers)
    bands = {traj.layers[i]: (float(traj.band[i, 0]), float(traj.band[i, 1])) for i in picked if seeds}
    lines = lines_figure(
        traj.values[picked], [traj.layers[i] for i in picked], traj.labels, xlabel=_xlabel(traj),
        ylabel=f"layer {traj.statistic} (nats){est}", bands=bands,
        title=f"layer {traj.statistic} over training" + (f" (bands: {seeds} random-init seeds)" if seeds else ""),
    )  # fmt: skip
    return heat, lines


def trajectory_files(
    traj: Trajectory, fmt: str = "png", layers: Sequence[str] = (), plot: bool = True
) -> dict[str, bytes]:
    """Every ``track`` file rendered in memory: name → bytes."""
    files = {"trajectory.csv": trajectory_csv(traj), "checkpoints.csv": checkpoints_csv(traj)}
    if not plot:
        return files
    heat, lines = trajectory_figures(traj, layers)
    files[f"trajectory.{fmt}"] = save_figure(heat, fmt)
    files[f"trajectory-layers.{fmt}"] = save_figure(lines, fmt)
    return files
