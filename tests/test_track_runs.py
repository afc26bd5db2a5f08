"""Issue 23, "a training run's checkpoints": `track` over a Hugging Face Trainer output_dir written
by a real `Trainer` run (checkpoint-N folders labelled by global step, the logged loss beside the
heatmap and in checkpoints.csv), Lightning's `epoch=E-step=S.ckpt` names, the architecture built
once for the whole run, and hostile trainer_state.json files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import entropyflow
from entropyflow.estimate.reference import statistic
from entropyflow.report.jsonio import analysis_json
from entropyflow.track import (
    TrackOptions,
    checkpoint_paths,
    checkpoint_position,
    order_checkpoints,
    read_trainer_state,
    track,
)

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

ROOT = Path(__file__).resolve().parents[1]
STEPS = (2, 4, 6)


class _Tokens(torch.utils.data.Dataset):
    """24 random sequences of 8 token ids (vocabulary 100) with binary labels, from a seeded generator."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 100, (24, 8), generator=g)
        self.labels = torch.randint(0, 2, (24,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A Trainer's output_dir: 6 steps of batch 4, a checkpoint every 2 steps, the loss logged every step."""
    out = tmp_path_factory.mktemp("trainer") / "output_dir"
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=4, max_steps=6, save_steps=2, logging_steps=1,
        report_to=[], use_cpu=True, seed=0, save_only_model=True, disable_tqdm=True,
    )  # fmt: skip
    transformers.Trainer(model=model, args=args, train_dataset=_Tokens()).train()
    assert sorted(p.name for p in out.iterdir()) == [f"checkpoint-{s}" for s in STEPS]
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _logged(folder: Path, name: str = "loss") -> dict[int, float]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return {e["step"]: e[name] for e in state["log_history"] if name in e}


def test_track_over_a_trainer_output_dir(run, tmp_path, cli):
    out = tmp_path / "track"
    r = cli("track", run, "-o", out, "--seeds", "0")
    assert r.exit_code == 0, r.stderr
    rows = _csv(out / "checkpoints.csv")
    assert [row["label"] for row in rows] == ["2", "4", "6"]  # global steps, in step order
    assert [row["step"] for row in rows] == ["2", "4", "6"]
    assert [Path(row["path"]).name for row in rows] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    loss = _logged(run / "checkpoint-6")  # the newest trainer_state.json holds the whole history
    assert sorted(loss) == [1, 2, 3, 4, 5, 6]
    assert [float(row["loss"]) for row in rows] == [loss[2], loss[4], loss[6]]
    assert (out / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each column is the analysis of its folder on its own
    table = _csv(out / "trajectory.csv")
    for step in STEPS:
        alone = entropyflow.analyze(str(run / f"checkpoint-{step}"))
        medians = {layer.name: statistic(layer, "median") for layer in alone.layers}
        assert [row["name"] for row in table] == list(medians)
        for row in table:
            assert float(row[str(step)]) == pytest.approx(medians[row["name"]], rel=1e-12, abs=1e-12)
    # the library result carries the whole logged series
    traj = track([run], tmp_path / "lib", track_options=TrackOptions(seeds=0))
    assert traj.axis == "step" and traj.steps == STEPS and traj.labels == ("2", "4", "6")
    [series] = traj.loss
    assert series.name == "loss" and series.steps == tuple(sorted(loss))
    assert series.values == tuple(loss[s] for s in sorted(loss))
    assert traj.notes == ()


def test_the_architecture_is_built_once_for_the_run(run, tmp_path, monkeypatch):
    from entropyflow.load import hf

    built = []
    real = hf.build

    def counting(*args, **kwargs):
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(hf, "build", counting)
    traj = track([run], tmp_path / "o", track_options=TrackOptions(seeds=0))
    assert len(built) == 1 and Path(built[0]).name == "checkpoint-2"
    built.clear()
    alone = [entropyflow.analyze(str(run / f"checkpoint-{s}")) for s in STEPS]
    assert len(built) == 3  # the per-checkpoint path builds every time
    for shared, own in zip(traj.results, alone, strict=True):
        assert analysis_json(shared) == analysis_json(own)  # identical numbers, model record and notes
    # a checkpoint with another config.json gets its own build
    other = tmp_path / "other"
    shutil.copytree(run, other)
    cfg = json.loads((other / "checkpoint-6" / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-5
    (other / "checkpoint-6" / "config.json").write_text(json.dumps(cfg))
    built.clear()
    again = track([other], tmp_path / "o2", track_options=TrackOptions(seeds=0))
    assert len(built) == 2
    np.testing.assert_allclose(again.values, traj.values, rtol=0, atol=0)


def test_a_checkpoint_folder_with_pytorch_model_bin_and_optimizer_files(run, tmp_path):
    """A Trainer that saves .bin weights writes optimizer.pt, scheduler.pt and rng_state.pth beside them."""
    folder = tmp_path / "checkpoint-4"
    shutil.copytree(run / "checkpoint-4", folder)
    from safetensors.torch import load_file

    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"state": torch.zeros(3)}, folder / name)
    traj = track([folder], tmp_path / "o", track_options=TrackOptions(seeds=0))
    assert traj.labels == ("4",)
    reference = entropyflow.analyze(str(run / "checkpoint-4"))
    assert [layer.name for layer in traj.results[0].layers] == [layer.name for layer in reference.layers]
    np.testing.assert_allclose(traj.values[:, 0], [statistic(x, "median") for x in reference.layers], rtol=1e-6)


def test_lightning_names_are_labelled_and_ordered_by_step(tmp_path, cli):
    ck = tmp_path / "ck"
    ck.mkdir()
    for name in ("epoch=10-step=110.ckpt", "epoch=0-step=10.ckpt", "epoch=1-step=20.ckpt"):
        shutil.copy(ROOT / "sample_models" / "digits_autoencoder.pt", ck / name)
    out = tmp_path / "o"
    r = cli("track", ck, "-o", out, "--seeds", "0", "--no-plot")
    assert r.exit_code == 0, r.stderr
    rows = _csv(out / "checkpoints.csv")
    assert [row["label"] for row in rows] == ["10", "20", "110"]
    assert [Path(row["path"]).name for row in rows] == [
        "epoch=0-step=10.ckpt", "epoch=1-step=20.ckpt", "epoch=10-step=110.ckpt"
    ]  # fmt: skip
    assert [row["step"] for row in rows] == ["10", "20", "110"] and "loss" not in rows[0]
    assert list(_csv(out / "trajectory.csv")[0])[-3:] == ["10", "20", "110"]


@pytest.mark.parametrize(
    ("names", "labels", "axis"),
    [
        (["step=1200.ckpt", "step=300.ckpt", "last.ckpt"], ["300", "1200", "last"], "step"),
        (["epoch=3.ckpt", "epoch=12.ckpt", "epoch=4.ckpt"], ["3", "4", "12"], "epoch"),
        (["epoch=3-step=9.ckpt", "epoch=12.ckpt"], ["3", "12"], "epoch"),  # not every one has a step
        (["epoch=3-val_loss=0.25.ckpt", "epoch=1-val_loss=0.50.ckpt"], ["1", "3"], "epoch"),
        (["a_2.pt", "b_1.pt"], None, "checkpoint"),  # no run positions: natural order, file stems
    ],
)
def test_order_of_run_names(names, labels, axis):
    paths = [Path("/nowhere") / n for n in names]
    positions = [checkpoint_position(p, []) for p in paths]
    order, got, got_axis = order_checkpoints(paths, positions)
    assert got == labels and got_axis == axis
    if labels is None:
        assert order == list(range(len(names)))


def test_hostile_trainer_state_never_stops_track(run, tmp_path, cli, monkeypatch):
    hostile = tmp_path / "out"
    shutil.copytree(run, hostile)
    # checkpoint-6 (the newest): NaN, a string, a bool step, a list entry;
    # checkpoint-4: not JSON; checkpoint-2: too large
    state = json.loads((hostile / "checkpoint-6" / "trainer_state.json").read_text())
    state["log_history"][0]["loss"] = float("nan")  # json.dumps writes NaN, as the Trainer does
    state["log_history"][1]["loss"] = "0.5"
    state["log_history"].append({"loss": 1.0, "step": True})
    state["log_history"].append([1, 2])
    (hostile / "checkpoint-6" / "trainer_state.json").write_text(json.dumps(state))
    (hostile / "checkpoint-4" / "trainer_state.json").write_bytes(b'{"global_step": 4, "log_history": [')
    (hostile / "checkpoint-2" / "trainer_state.json").write_bytes(b" " * 20_000 + b"{}")
    monkeypatch.setattr("entropyflow.track.MAX_STATE_BYTES", 20_000)
    r = cli("track", hostile, "-o", tmp_path / "o", "--seeds", "0", "--no-plot")
    assert r.exit_code == 0, r.stderr
    assert "note: checkpoint-4/trainer_state.json is not valid JSON: no step or loss from it" in r.stdout
    assert "note: checkpoint-2/trainer_state.json is larger than 20,000 bytes: not read" in r.stdout
    assert "note: checkpoint-6/trainer_state.json: 4 log_history entries dropped" in r.stdout
    rows = _csv(tmp_path / "o" / "checkpoints.csv")
    assert [row["label"] for row in rows] == ["2", "4", "6"]  # the folder names stand in
    loss = _logged(run / "checkpoint-6")
    # steps 1 and 2 were dropped: nothing logged at or before step 2
    assert [row["loss"] for row in rows] == ["", repr(loss[4]), repr(loss[6])]
    traj = track([hostile], tmp_path / "lib", track_options=TrackOptions(seeds=0))
    [series] = traj.loss
    assert series.steps == (3, 4, 5, 6) and series.values == tuple(loss[s] for s in (3, 4, 5, 6))
    assert len(traj.notes) == 3


def test_read_trainer_state_bounds_and_types(tmp_path):
    f = tmp_path / "checkpoint-9" / "trainer_state.json"
    f.parent.mkdir()
    notes: list[str] = []
    f.write_text(
        '{"global_step": 9, "log_history": ['
        '{"loss": 0.5, "step": 3}, {"loss": NaN, "step": 4, "grad_norm": Infinity}, {"loss": 0.25, "step": 6},'
        '{"eval_loss": 0.75, "step": 6}, {"loss": -Infinity, "step": 7}, {"loss": 0.125, "step": -1},'
        '{"train_loss": 0.3, "step": 9}, {"loss": 0.1, "step": 9}]}'
    )
    state = read_trainer_state(f, notes)
    assert state is not None and state.global_step == 9
    loss, eval_loss = state.loss
    assert (loss.name, loss.steps, loss.values) == ("loss", (3, 6, 9), (0.5, 0.25, 0.1))
    assert (eval_loss.name, eval_loss.steps, eval_loss.values) == ("eval_loss", (6,), (0.75,))
    assert loss.at(2) is None and loss.at(5) == 0.5 and loss.at(100) == 0.1
    assert notes == [
        "checkpoint-9/trainer_state.json: 3 log_history entries dropped (not finite numbers at integer steps)"
    ]
    for text, said in [
        ('{"global_step": 1, "global_step": 2}', "is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "is not valid JSON"),
        ('{"global_step": ' + "9" * 5000 + "}", "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8"),
        ("[1, 2]", "is not a JSON object"),
    ]:
        notes = []
        if isinstance(text, bytes):
            f.write_bytes(text)
        else:
            f.write_text(text)
        assert read_trainer_state(f, notes) is None
        assert len(notes) == 1 and said in notes[0]
    notes = []
    f.write_text('{"global_step": "9", "log_history": {"loss": 1}}')
    state = read_trainer_state(f, notes)
    assert state is not None and state.global_step is None and state.loss == ()
    assert len(notes) == 2
    assert checkpoint_position(f.parent, []).step == 9  # the folder's name stands in


def test_output_dir_with_a_final_model_and_globs(run, tmp_path):
    """The Trainer's final save_model() at the output_dir's top level is not one of the run's checkpoints."""
    out = tmp_path / "output_dir"
    shutil.copytree(run, out)
    shutil.copy(run / "checkpoint-6" / "model.safetensors", out / "model.safetensors")
    shutil.copy(run / "checkpoint-6" / "config.json", out / "config.json")
    assert [p.name for p in checkpoint_paths([out])] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert [p.name for p in checkpoint_paths([str(out / "checkpoint-*")])] == [
        "checkpoint-2", "checkpoint-4", "checkpoint-6"
    ]  # fmt: skip
    assert [p.name for p in checkpoint_paths([out / "checkpoint-4"])] == ["checkpoint-4"]
    final = tmp_path / "final"  # a model folder given directly is one checkpoint
    shutil.copytree(run / "checkpoint-6", final)
    assert checkpoint_paths([final]) == [final.resolve()]
    mine = tmp_path / "mine"  # a folder of checkpoint files with the user's own config.json: its files
    mine.mkdir()
    (mine / "config.json").write_text('{"lr": 0.1}')
    for name in ("epoch_2.pt", "epoch_10.pt"):
        shutil.copy(ROOT / "sample_models" / "digits_autoencoder.pt", mine / name)
    assert [p.name for p in checkpoint_paths([mine])] == ["epoch_2.pt", "epoch_10.pt"]
