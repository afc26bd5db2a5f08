"""The bundled samples: real trained checkpoints that analyse with no flags."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import entropyflow
from entropyflow.samples import SAMPLES, samples_dir

FILES = ["digits_vgg.pt", "digits_vgg_random.pt", "digits_resnet.pt", "digits_autoencoder.pt", "digits_unet.pt"]


@pytest.mark.parametrize("name", FILES)
def test_every_sample_gives_geometry_and_totals_without_flags(name):
    result = entropyflow.analyze(str(samples_dir() / name), hash_files=False)
    assert result.layers and all(layer.traced and layer.totals is not None for layer in result.layers)
    assert result.model.arch.startswith("sample:") and result.model.walk == "trace"
    assert (samples_dir() / name).stat().st_size < 200_000


def test_unet_has_transposed_up_convs_and_concat_skips():
    result = entropyflow.analyze(str(samples_dir() / "digits_unet.pt"), hash_files=False)
    ups = [layer for layer in result.layers if layer.kind == "conv_transpose2d"]
    assert [layer.name for layer in ups] == ["up2", "up1"] and all(layer.exact for layer in ups)
    assert [layer.filters for layer in ups] == [32, 16]  # filters of a transposed conv = its input channels
    assert len(result.layers) == 13


def test_random_sample_equals_seeded_random_init():
    stored = entropyflow.analyze(str(samples_dir() / "digits_vgg_random.pt"), hash_files=False)
    fresh = entropyflow.analyze("sample:digits_vgg", random_init=True, seed=0, hash_files=False)
    assert [layer.per_position.tolist() for layer in stored.layers] == [
        layer.per_position.tolist() for layer in fresh.layers
    ]


def test_readme_records_the_metrics_in_the_manifests():
    readme = (samples_dir() / "README.md").read_text()
    for name in FILES:
        manifest = torch.load(samples_dir() / name, weights_only=True)["entropyflow"]
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
        for key, value in manifest["metrics"].items():
            assert f"{value:.4f}" in row, (name, key)
    vgg = torch.load(samples_dir() / "digits_vgg.pt", weights_only=True)["entropyflow"]
    assert vgg["metrics"]["test_accuracy"] > 0.95 and vgg["trained"] is True


def test_registry_covers_the_bundled_files():
    assert {s.file for s in SAMPLES.values()} | {"digits_vgg_random.pt"} == set(FILES)


@pytest.mark.slow
def test_build_script_runs(tmp_path):
    pytest.importorskip("sklearn")
    script = Path(__file__).resolve().parents[1] / "sample_models" / "build.py"
    r = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == sorted(FILES)
    assert re.search(r"digits_vgg\.pt .*test_accuracy", r.stdout)
    result = entropyflow.analyze(str(tmp_path / "digits_unet.pt"), hash_files=False)
    assert len(result.layers) == 13
