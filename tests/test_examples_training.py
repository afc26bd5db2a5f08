"""docs/examples: the three ways to train with a λ config (plain loop, Lightning, sweep contract),
and train_digits.py (the Figure 7 loop), each run for a few steps on scikit-learn's digits."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from entropyflow.config import save_config
from entropyflow.recommend import RecommendOptions, recommend
from entropyflow.sweep.spec import Cell, with_lambda

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """`entropyflow recommend sample:digits_vgg --strategy first` with a λ large enough to show."""
    import entropyflow

    cfg = recommend(entropyflow.analyze("sample:digits_vgg"), RecommendOptions(strategy="first", lam_conv=0.05))
    path = tmp_path_factory.mktemp("cfg") / "lambda.yaml"
    save_config(cfg, path)
    return path


@pytest.mark.slow
def test_plain_loop(config, tmp_path, capsys):
    out = load("plain_loop").main(
        ["--config", str(config), "--epochs", "2", "--profile-every", "1", "--max-steps", "5", "--out", str(tmp_path)]
    )
    assert [p.step for p in out["history"]] == [0, 1, 2]
    first = [p.by_name()["features.0"].median for p in out["history"]]
    assert first[2] > first[0]  # λ on features.0 raises its log|c11|
    rows = list(csv.DictReader((tmp_path / "entropy_profile.csv").open()))
    assert len(rows) == 3 * 6 and rows[0]["name"] == "features.0"
    assert "entropy term: features.0 +" in capsys.readouterr().out
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_lightning_example(config, tmp_path):
    pytest.importorskip("lightning")
    trainer = load("lightning_digits").main(
        ["--config", str(config), "--epochs", "1", "--profile-every", "1", "--out", str(tmp_path)]
    )
    metrics = trainer.callback_metrics
    assert "entropy/term_epoch" in metrics and float(metrics["entropy/term_epoch"]) > 0
    assert "entropy/profile/model.features.0/median" in metrics
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0


@pytest.mark.slow
def test_sweep_example_follows_the_contract(config):
    """The same seed is the same run: the baseline twice, bit for bit; the term changes it."""
    train = load("sweep_train").train
    from entropyflow.config import load_config

    cfg = load_config(config)
    runs = []
    for cell in (Cell("baseline", 0.0, None, None), Cell("baseline", 0.0, None, None),
                 Cell("first λ=0.05", 0.05, "first", with_lambda(cfg, 0.05))):  # fmt: skip
        rows: list = []
        torch.set_num_threads(1)
        train(cell.trial_config(3, 1, {}), lambda *, epoch, rows=rows, **m: rows.append((epoch, m)))
        runs.append(rows)
    assert runs[0] == runs[1] and len(runs[0]) == 1 and set(runs[0][0][1]) == {"val_acc", "val_loss"}
    assert runs[2][0][1]["val_loss"] != runs[0][0][1]["val_loss"]


# --- docs/examples/train_digits.py: the Figure 7 loop -------------------------------------------


@pytest.fixture(scope="module")
def train_digits():
    return load("train_digits")


@pytest.mark.slow
def test_lambda_zero_gives_identical_runs(train_digits, tmp_path, capsys):
    """Both runs of a seed share initial weights and batches: with λ = 0 they are bit-identical."""
    r = train_digits.main(
        ["--epochs", "2", "--seeds", "1", "--max-steps", "30", "--lambda", "0", "--out", str(tmp_path)]
    )
    base, ent = r["base"][0], r["entropy"][0]
    assert base.test_acc == ent.test_acc and base.train_ce == ent.train_ce and len(base.test_acc) == 3
    assert ent.reg == [0.0, 0.0, 0.0]
    assert r["paired_diff"] == 0.0
    out = capsys.readouterr().out
    assert "entropy loss: strategy first, form log, on features.0 (λ=0)" in out
    assert "paired difference +0.0000" in out


@pytest.mark.slow
def test_entropy_term_raises_first_layer_c11_and_is_logged(train_digits, tmp_path, capsys):
    r = train_digits.main(
        ["--epochs", "1", "--seeds", "2", "--max-steps", "15", "--lambda", "0.05", "--out", str(tmp_path)]
    )
    cfg = r["config"]
    assert (
        cfg.strategy.name == "first"
        and [layer.name for layer in cfg.layers] == ["features.0"]
        and cfg.layers[0].lam == 0.05
    )
    for base, ent in zip(r["base"], r["entropy"], strict=True):
        # -λ/c11 pushes |c11| up: the guided run ends with a larger mean log|c11| in the first conv
        assert ent.first_log_c11 > base.first_log_c11 + 0.05
        assert base.reg == [0.0, 0.0] and ent.reg[0] > 0  # initial term -λ Σ log|c11| > 0: |c11| < 1 at init
        assert ent.reg[-1] < ent.reg[0]  # and it decreased while training
        assert len(base.test_acc) == 2 and 0.0 <= base.test_acc[-1] <= 1.0
    png = tmp_path / "train_digits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((tmp_path / "train_digits.csv").read_text().splitlines()))
    assert len(rows) == 2 * 2 * 2  # 2 seeds × 2 runs × (initial + 1 epoch)
    first = [row for row in rows if row["entropy_loss"] == "1" and row["seed"] == "0" and row["epoch"] == "0"][0]
    assert float(first["entropy_term"]) == pytest.approx(r["entropy"][0].reg[0], abs=1e-6)
