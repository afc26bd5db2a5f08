"""Hints that work as written (issue 25): the download command of the installed huggingface_hub,
what `sweep` with nothing to run asks for, and the versions an analysis records."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

import entropyflow
from entropyflow.errors import OptionError
from entropyflow.load import hf_cache


@pytest.mark.parametrize(
    "version,command",
    [
        ("2.4.0", "hf download"),
        ("0.34.1", "hf download"),
        ("0.33.5", "huggingface-cli download"),
        ("0.20", "huggingface-cli download"),
    ],
)
def test_the_download_hint_is_the_installed_hub_cli(monkeypatch, version, command):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    assert hf_cache.download_command() == command


def test_the_installed_hub_has_the_command_the_hint_names():
    pytest.importorskip("huggingface_hub")
    import shutil

    assert shutil.which(hf_cache.download_command().split()[0]) is not None


def test_sweep_with_nothing_to_run_asks_for_a_function_or_a_task(tmp_path):
    pytest.importorskip("ray")
    from entropyflow.sweep import SweepRequest, sweep

    with pytest.raises(OptionError) as err:
        sweep(SweepRequest(), out=tmp_path / "o")
    assert str(err.value) == "give a training function (MODULE:FUNCTION or FILE.py:FUNCTION) or task=NAME"
    with pytest.raises(OptionError, match="not both"):
        sweep(SweepRequest(train="m:f", task="digits-cnn"), out=tmp_path / "o")


def test_an_hf_analysis_records_the_transformers_version():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20
    )
    result = entropyflow.analyze(transformers.BertModel(config), input=None, trace=False, hash_files=False)
    versions = dict(result.versions)
    assert versions["transformers"] == transformers.__version__ and versions["torch"] == torch.__version__


@pytest.mark.parametrize(
    "command,panels",
    [
        ("analyze", ["Model: what is analysed", "Estimator: how it is measured", "Evidence:", "Output"]),
        ("recommend", ["Model: what is analysed", "Placement:", "Output"]),
        ("sweep", ["Grid: what is trained", "Measure: what is compared", "Ray: where the work runs", "Output"]),
        ("track", ["Model: what is analysed", "Evidence:", "Ray: where the work runs", "Output"]),
    ],
)
def test_help_groups_the_options_and_shows_no_type_for_flags(command, panels):
    from typer.testing import CliRunner

    from entropyflow.cli.app import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "150"})
    assert result.exit_code == 0
    text = result.output
    assert all(panel in text for panel in panels)
    assert "<bool>" not in text and "<str>" not in text  # flags take no value; values are named
    assert "SPEC §" not in text  # the SPEC does not ship: docs/method.md is cited


def test_compare_of_two_architectures_says_so_and_overlays_nothing(tmp_path):
    from entropyflow.report.jsonio import analysis_json
    from entropyflow.runs import compare_to

    vgg = entropyflow.analyze("sample:digits_vgg", hash_files=False)
    resnet = entropyflow.analyze("sample:digits_resnet", hash_files=False)
    for name, result in (("vgg.json", vgg), ("resnet.json", resnet), ("vgg2.json", vgg)):
        (tmp_path / name).write_bytes(analysis_json(result))
    mixed = compare_to([tmp_path / "vgg.json", tmp_path / "resnet.json"], out=tmp_path / "mixed")
    assert [p.name for p in mixed.files] == ["compare.png"]  # no overlaid profile of unrelated layers
    assert len(mixed.notes) == 1 and "different layers" in mixed.notes[0]
    same = compare_to([tmp_path / "vgg.json", tmp_path / "vgg2.json"], out=tmp_path / "same")
    assert sorted(p.name for p in same.files) == ["compare-profile.png", "compare.png"] and same.notes == ()


def test_track_without_an_architecture_says_why_there_is_no_random_init_level(tmp_path):
    import matplotlib.pyplot as plt

    from entropyflow.report.heatmap import layer_order
    from entropyflow.track import TrackOptions, track

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    for epoch in (1, 2):
        torch.save(net.state_dict(), tmp_path / f"epoch_{epoch}.pt")  # bare state dicts: no architecture
    traj = track(
        [tmp_path / "epoch_1.pt", tmp_path / "epoch_2.pt"], tmp_path / "o", track_options=TrackOptions(seeds=2)
    )
    assert traj.seeds == ()
    assert any(n.startswith("no random-init level: epoch_1.pt does not say which architecture") for n in traj.notes)
    assert layer_order(traj.results) == "module-name order"  # the heatmap's rows are not in execution order
    assert layer_order([entropyflow.analyze("sample:digits_vgg", hash_files=False)]) == "execution order"
    plt.close("all")


def test_a_track_whose_arch_does_not_fit_names_the_file(tmp_path):
    from entropyflow.errors import EntropyflowError
    from entropyflow.track import TrackOptions, track

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    torch.save(net.state_dict(), tmp_path / "epoch_1.pt")
    with pytest.raises(EntropyflowError) as err:
        track(
            [tmp_path / "epoch_1.pt"], tmp_path / "o",
            entropyflow.AnalyzeOptions(arch="torchvision:resnet18"), TrackOptions(seeds=0),
        )  # fmt: skip
    assert str(err.value).startswith("epoch_1.pt: checkpoint does not match torchvision:resnet18: ")
