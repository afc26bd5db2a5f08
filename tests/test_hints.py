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
        ("sweep", ["Grid: what is trained", "Measure: what is compared", "Ray: where the trials run", "Output"]),
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
