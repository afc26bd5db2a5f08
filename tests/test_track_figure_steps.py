"""`track`'s heatmap on a Trainer output_dir with uneven checkpoint steps: one evenly spaced column
per checkpoint, labelled by step, the logged loss mapped onto those columns (piecewise linear
between the checkpoints' steps), each column's dot at the step its loss was logged at, and
checkpoints.csv naming that step (`loss_step`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from entropyflow.report.heatmap import column_axis, heatmap_figure, loss_dots
from entropyflow.report.plotting import texts_overlap
from entropyflow.report.trajectory import trajectory_figures, trajectory_files
from entropyflow.track import TrackOptions, track

transformers = pytest.importorskip("transformers")

SPACED = "(evenly spaced by checkpoint, not by step)"


def _output_dir(root: Path, steps: tuple[int, ...], logged: list[tuple[int, float]]) -> Path:
    """A Trainer-like output_dir: checkpoint-N folders (a tiny BERT's model.safetensors and
    config.json, its weights scaled at each save) and each one's trainer_state.json holding the
    losses logged up to its step."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24
    )
    model = transformers.BertForSequenceClassification(config)
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.1)
        folder = root / f"checkpoint-{step}"
        model.save_pretrained(folder)
        history = [{"step": s, "loss": v} for s, v in logged if s <= step]
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    return root


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(data.decode("utf-8").splitlines()))


def _panel(fig):
    heat, below = fig.axes[0], fig.axes[1]
    line, dots = below.get_lines()[:2]
    return heat, below, line.get_xydata(), dots.get_xydata()


def _inside(fig) -> None:
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    for ax in fig.axes:
        for t in [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels()]:
            if t.get_visible() and t.get_text():
                e = t.get_window_extent(renderer)
                assert box.x0 - 0.5 <= e.x0 and e.x1 <= box.x1 + 0.5 and e.y0 >= box.y0 - 0.5, t.get_text()


def test_uneven_steps_get_even_columns_and_the_loss_follows_them(tmp_path):
    logged = [(s, 2.0 / s) for s in range(1, 31)]
    run = _output_dir(tmp_path / "run", (1, 2, 30), logged)
    traj = track([run], tmp_path / "o", track_options=TrackOptions(seeds=0))
    heat_fig, lines_fig = trajectory_figures(traj)
    heat, below, line, dots = _panel(heat_fig)
    # one column per checkpoint, each one wide, whatever the steps
    assert heat.get_xlim() == below.get_xlim() == (-0.5, 2.5)
    mesh_x = heat.collections[0].get_coordinates()[0, :, 0]
    np.testing.assert_array_equal(mesh_x, [-0.5, 0.5, 1.5, 2.5])
    assert list(below.get_xticks()) == [0, 1, 2]
    assert [t.get_text() for t in below.get_xticklabels()] == ["1", "2", "30"]
    heat_fig.draw_without_rendering()
    assert not texts_overlap(heat_fig, below.get_xticklabels(), "x")
    assert below.get_xlabel() == f"global step\n{SPACED}"
    # the loss: step 1 at column 0, step 2 at column 1, steps 2..30 linearly across columns 1..2
    expected_x = [0.0] + [1.0 + (s - 2) / 28 for s in range(2, 31)]
    np.testing.assert_allclose(line[:, 0], expected_x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(line[:, 1], [v for _, v in logged], rtol=0, atol=0)
    np.testing.assert_allclose(dots, [[0.0, 2.0], [1.0, 1.0], [2.0, 2.0 / 30]], rtol=0, atol=1e-12)
    # the lines plot: the same evenly spaced categories, the same labels and axis label
    lines_ax = lines_fig.axes[0]
    assert [t.get_text() for t in lines_ax.get_xticklabels()] == ["1", "2", "30"]
    assert list(lines_ax.get_xticks()) == [0, 1, 2] and lines_ax.get_xlabel() == below.get_xlabel()
    _inside(heat_fig)
    _inside(lines_fig)


def test_each_dot_is_at_the_step_its_loss_was_logged(tmp_path):
    """logging_steps=5, save_steps=3: checkpoints 6 and 9 hold the loss logged at step 5."""
    logged = [(5, 2.5), (10, 2.0), (15, 1.5)]
    run = _output_dir(tmp_path / "run", (3, 6, 9, 12, 15), logged)
    traj = track([run], tmp_path / "o", track_options=TrackOptions(seeds=0))
    rows = _csv(trajectory_files(traj, plot=False)["checkpoints.csv"])
    assert list(rows[0]) == ["label", "path", "sha256", "from_cache", "step", "loss", "loss_step"]
    assert [r["step"] for r in rows] == ["3", "6", "9", "12", "15"]
    assert [r["loss"] for r in rows] == ["", "2.5", "2.5", "2.0", "1.5"]
    assert [r["loss_step"] for r in rows] == ["", "5", "5", "10", "15"]
    fig, _ = trajectory_figures(traj)
    _, below, line, dots = _panel(fig)
    # steps 5, 10, 15 between checkpoints 3|6, 9|12 and at 15: columns 2/3, 2 + 1/3, 4
    np.testing.assert_allclose(line, [[2 / 3, 2.5], [7 / 3, 2.0], [4.0, 1.5]], rtol=0, atol=1e-12)
    # no dot for checkpoint 3 (nothing logged yet); 6 and 9 both at step 5, on the line
    np.testing.assert_allclose(dots, [[2 / 3, 2.5], [2 / 3, 2.5], [7 / 3, 2.0], [4.0, 1.5]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.interp(dots[:, 0], line[:, 0], line[:, 1]), dots[:, 1], rtol=0, atol=1e-12)
    assert [t.get_text() for t in below.get_xticklabels()] == ["3", "6", "9", "12", "15"]
    _inside(fig)


def test_losses_beyond_the_outer_half_columns_are_left_out_and_said():
    # checkpoints at 10 and 20: the outer cells reach step 5 and step 25 (half the gap)
    positions = [10.0, 20.0]
    steps = list(range(1, 31))
    mapped = column_axis(positions, steps)
    assert np.isnan(mapped[:4]).all() and np.isnan(mapped[25:]).all()  # steps 1-4 and 26-30
    np.testing.assert_allclose(mapped[4:25], [(s - 10) / 10 for s in range(5, 26)], rtol=0, atol=1e-12)
    fig = heatmap_figure(
        np.zeros((3, 2)), ["a", "b", "c"], ["10", "20"], title="t", colorbar="c", center=0.0,
        xlabel="global step", positions=positions, series=[("loss", steps, [1.0 / s for s in steps])],
    )  # fmt: skip
    _, below, line, dots = _panel(fig)
    assert line[0, 0] == -0.5 and line[-1, 0] == 1.5 and len(line) == 21
    np.testing.assert_allclose(dots, [[0.0, 0.1], [1.0, 0.05]], rtol=0, atol=1e-12)
    assert below.get_xlabel() == "global step\n9 loss values logged before step 5 or after step 25 left out"
    _inside(fig)
    # a dot whose value was logged before the first column's outer edge is left out as well
    xs, ys = loss_dots([10.0, 20.0], [1.0, 15.0], [3.0, 2.0])
    np.testing.assert_allclose(np.stack([xs, ys], axis=1), [[0.5, 2.0]], rtol=0, atol=0)
    # one checkpoint: its cell spans half its step on either side
    np.testing.assert_allclose(column_axis([8.0], [4.0, 8.0, 12.0, 13.0]), [-0.5, 0.0, 0.5, np.nan])


def test_crowded_step_labels_are_thinned_never_overlapped():
    positions = [1.0, 2.0, *[1_000_000.0 + 1000 * k for k in range(60)]]
    labels = [str(int(p)) for p in positions]
    fig = heatmap_figure(
        np.random.default_rng(0).normal(size=(4, len(positions))), ["w", "x", "y", "z"], labels, title="t",
        colorbar="c", center=0.0, xlabel="global step", positions=positions,
        series=[("loss", positions, [1.0] * len(positions))],
    )  # fmt: skip
    below = fig.axes[1]
    ticks = list(below.get_xticks())
    shown = [t.get_text() for t in below.get_xticklabels()]
    assert 1 < len(ticks) < len(positions)  # thinned, not dropped
    step = int(ticks[1] - ticks[0])
    assert ticks == list(range(0, len(positions), step)) and shown == [labels[int(t)] for t in ticks]
    fig.draw_without_rendering()
    assert not texts_overlap(fig, below.get_xticklabels(), "x")
