"""Issue 22's homes: one atomic write (entropyflow.atomic), the loss forms' float math
(entropyflow.lossform), and validation driven by the dataclasses' fields (config, analysis.json)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from entropyflow import config
from entropyflow.atomic import umask, write_atomic
from entropyflow.estimate.results import LayerResult, ModelInfo
from entropyflow.estimate.stats import Summary
from entropyflow.lossform import dense_inverse_inertness
from entropyflow.report import jsonio
from entropyflow.walk.sites import ConvGeometry, DenseGeometry, SkippedModule


def test_write_atomic_replaces_whole_with_an_ordinary_mode_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    old = os.umask(0o027)
    try:
        write_atomic(target, b"new")
        assert (target.stat().st_mode & 0o777) == 0o640 and umask() == 0o027
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize("temp", [None, ".a.json.tmp"])
def test_write_atomic_failing_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch, temp) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b"old")

    def interrupted(a, b):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new", temp=None if temp is None else tmp_path / temp)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_atomic_never_follows_a_link_at_its_fixed_temporary_name(tmp_path: Path) -> None:
    (tmp_path / "mine").write_bytes(b"keep")
    (tmp_path / ".a.tmp").symlink_to(tmp_path / "mine")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "a", b"new", temp=tmp_path / ".a.tmp")
    assert (tmp_path / "mine").read_bytes() == b"keep" and not (tmp_path / "a").exists()


def test_dense_inverse_inertness_says_when_eq_24_cannot_act() -> None:
    assert "underflows" in (dense_inverse_inertness(-3900.0, 1e-3) or "")
    assert "huge" in (dense_inverse_inertness(20.0, 1e-3) or "")
    assert dense_inverse_inertness(0.0, 1e-3) is None


def test_every_field_of_a_lambda_config_has_its_reader() -> None:
    assert set(config._CONFIG_FIELDS) == {f.name for f in dataclasses.fields(config.LambdaConfig)} - {"schema_version"}
    assert set(config._LAYER_FIELDS) == {f.name for f in dataclasses.fields(config.LayerLambda)}


@pytest.mark.parametrize(
    ("cls", "readers"),
    [
        (ModelInfo, jsonio._MODEL_FIELDS),
        (SkippedModule, jsonio._SKIPPED_FIELDS),
        (ConvGeometry, jsonio._CONV_FIELDS),
        (DenseGeometry, {}),
        (Summary, {}),
        (LayerResult, jsonio._LAYER_FIELDS),
    ],
)
def test_every_field_of_analysis_json_has_a_reader(cls, readers) -> None:
    """A new field of a result type needs a reader: its annotation's, or its own."""
    for f in dataclasses.fields(cls):
        assert f.name in readers or str(f.type) in jsonio._BY_TYPE, (cls.__name__, f.name, f.type)
