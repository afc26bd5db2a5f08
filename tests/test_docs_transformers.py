"""docs/training.md's Hugging Face Trainer section: docs/examples/hf_trainer.py runs, from another
working directory, and writes what the section says (a short run: 50 steps)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entropyflow.config import load_config

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "hf_trainer.py"


@pytest.mark.slow
def test_hf_trainer_example_runs_from_any_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", "out", "--steps", "50", "--profile-every", "25"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"  # relative to the working directory

    cfg = load_config(out / "lambda.yaml")  # `first` on GPT-2: the q block of layer 0's fused c_attn
    (layer,) = cfg.layers
    assert (layer.name, layer.weight_key, layer.rows, layer.transposed, layer.lam) == (
        "transformer.h.0.attn.c_attn.q", "transformer.h.0.attn.c_attn.weight", (0, 64), True, 1e-3,
    )  # fmt: skip

    with open(out / "entropy_profile.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["step"]) for r in rows}) == [0, 25, 50]
    assert all(r["total"] and math.isfinite(float(r["total"])) for r in rows)  # token input: totals everywhere
    names = {r["name"] for r in rows}
    assert {"transformer.h.0.attn.c_attn.q", "transformer.h.1.mlp.c_fc", "lm_head"} <= names

    history = json.loads((out / "log_history.json").read_text(encoding="utf-8"))
    logged = [h for h in history if "entropy/term" in h]
    assert [h["step"] for h in logged] == [25, 50] and all("loss" in h for h in logged)
    assert all(h["entropy/term"] != logged[0]["entropy/term"] for h in logged[1:])  # the weights moved
    (evaluation,) = [h for h in history if "eval_loss" in h]
    assert evaluation["eval_loss"] < math.log(256) - 1  # learned: well below the uniform byte model

    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("transformer.h.0.attn.c_attn.q λ=0.001: held-out loss ") and "after 50 steps" in line
    assert f"{evaluation['eval_loss']:.3f}" in line and "profile at steps [0, 25, 50]" in line
