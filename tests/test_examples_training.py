"""docs/examples: the three ways to train with a λ config (plain loop, Lightning, sweep contract),
each run for a few steps on scikit-learn's digits."""

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


def test_lightning_example(config, tmp_path):
    pytest.importorskip("lightning")
    trainer = load("lightning_digits").main(
        ["--config", str(config), "--epochs", "1", "--profile-every", "1", "--out", str(tmp_path)]
    )
    metrics = trainer.callback_metrics
    assert "entropy/term_epoch" in metrics and float(metrics["entropy/term_epoch"]) > 0
    assert "entropy/profile/model.features.0/median" in metrics
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0


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
