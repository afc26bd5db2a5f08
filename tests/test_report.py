"""Report files: documented columns, -inf handling, JSON round trip."""

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import entropyflow
from entropyflow.estimate.stats import summarize
from entropyflow.report import read_analysis, report_files, write_report
from entropyflow.report.tables import FILTER_COLUMNS, LAYER_COLUMNS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "output.md"


@pytest.fixture(scope="module")
def with_zero_taps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    with torch.no_grad():
        model[0].weight[[0, 3], 0, 0, 0] = 0.0
    return entropyflow.analyze(model, input_size=(2, 6, 6), hash_files=False)


def test_every_column_is_documented():
    text = DOCS.read_text()
    for col in LAYER_COLUMNS + FILTER_COLUMNS:
        assert f"`{col}`" in text, col


def test_neg_inf_is_kept_counted_and_never_nan(with_zero_taps):
    conv = with_zero_taps.layers[0]
    assert conv.summary.n_neginf == 2 and conv.summary.n_finite == 4
    finite = conv.per_position[np.isfinite(conv.per_position)]
    assert conv.summary.mean == pytest.approx(finite.mean()) and conv.total == -math.inf
    assert np.isneginf(conv.totals).sum() == 2 and not np.isnan(conv.totals).any()
    files = report_files(with_zero_taps)
    rows = list(csv.DictReader(io.StringIO(files["filters.csv"].decode())))
    assert [r["dh_per_position"] for r in rows[:6]].count("-inf") == 2
    layers = list(csv.DictReader(io.StringIO(files["layers.csv"].decode())))
    assert (
        layers[0]["n_neginf"] == "2" and layers[0]["total"] == "-inf" and float(layers[0]["mean"]) == conv.summary.mean
    )
    doc = json.loads(files["analysis.json"])  # strict JSON: no bare -Infinity tokens
    assert doc["layers"][0]["total"] == "-inf" and doc["layers"][0]["per_filter"]["dh_total"].count("-inf") == 2


def test_filters_csv_matches_the_result(with_zero_taps):
    rows = list(csv.DictReader(io.StringIO(report_files(with_zero_taps)["filters.csv"].decode())))
    assert len(rows) == 6 + 1
    dense = rows[-1]
    assert (
        dense["kind"] == "linear" and dense["c11"] == "" and float(dense["dh_total"]) == with_zero_taps.layers[1].logdet
    )
    assert [float(r["c11"]) for r in rows[:6]] == with_zero_taps.layers[0].c11.tolist()


def test_json_round_trip(tmp_path, with_zero_taps):
    write_report(with_zero_taps, tmp_path)
    back = read_analysis(tmp_path / "analysis.json")
    assert back.model == with_zero_taps.model and back.counts == with_zero_taps.counts
    for a, b in zip(back.layers, with_zero_taps.layers, strict=True):
        assert a.summary == b.summary and a.geometry == b.geometry and a.exact == b.exact
        assert a.per_position.tolist() == b.per_position.tolist() and a.totals.tolist() == b.totals.tolist()
    assert report_files(back) == report_files(with_zero_taps)


def test_summary_quantiles_are_numpys_over_finite_values():
    v = np.array([-np.inf, -3.0, -1.0, -2.0, -5.0, -np.inf])
    s = summarize(v)
    assert (s.q1, s.median, s.q3) == tuple(np.quantile([-3.0, -1.0, -2.0, -5.0], [0.25, 0.5, 0.75]))
    assert s.n_neginf == 2 and summarize(np.array([-np.inf])).mean is None
    with pytest.raises(ValueError):
        summarize(np.array([np.nan]))


def test_random_init_survives_a_round_trip(tmp_path):
    """ModelInfo.random_init is a field (it was read off the wording of `weights`): written when
    true, read back, and recognised in files of 0.1.0 that lack it."""
    import json

    result = entropyflow.analyze("sample:digits_vgg", random_init=True, seed=3)
    assert result.model.random_init is True
    write_report(result, tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "analysis.json").read_text())
    assert doc["model"]["random_init"] is True
    assert read_analysis(tmp_path / "r").model.random_init is True
    del doc["model"]["random_init"]  # as entropyflow 0.1.0 wrote it
    (tmp_path / "old.json").write_text(json.dumps(doc))
    assert read_analysis(tmp_path / "old.json").model.random_init is True
    trained = entropyflow.analyze("sample:digits_vgg")
    assert (
        trained.model.random_init is False
        and "random_init" not in json.loads(report_files(trained)["analysis.json"])["model"]
    )
