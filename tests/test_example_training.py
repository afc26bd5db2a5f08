"""docs/examples/train_digits.py: the Figure 7 loop on scikit-learn digits, run for a few steps."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_lambda_zero_gives_identical_runs(example, tmp_path, capsys):
    """Both runs of a seed share initial weights and batches: with λ = 0 they are bit-identical."""
    r = example.main(["--epochs", "2", "--seeds", "1", "--max-steps", "30", "--lambda", "0", "--out", str(tmp_path)])
    base, ent = r["base"][0], r["entropy"][0]
    assert base.test_acc == ent.test_acc and base.train_ce == ent.train_ce and len(base.test_acc) == 3
    assert ent.reg == [0.0, 0.0, 0.0]
    assert r["paired_diff"] == 0.0
    out = capsys.readouterr().out
    assert "entropy loss: strategy first, form log, on features.0 (λ=0)" in out
    assert "paired difference +0.0000" in out


def test_entropy_term_raises_first_layer_c11_and_is_logged(example, tmp_path, capsys):
    r = example.main(["--epochs", "1", "--seeds", "2", "--max-steps", "15", "--lambda", "0.05", "--out", str(tmp_path)])
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
