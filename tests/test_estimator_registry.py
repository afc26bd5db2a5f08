"""The estimator registry: one record per estimator, and every report reads its labels from it.

A fake third estimator, registered here only, reaches the terminal, the figures and
``analysis.json`` without any other module knowing its name."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from rich.console import Console

import entropyflow
from entropyflow import vocab
from entropyflow.errors import OptionError
from entropyflow.estimate import registry
from entropyflow.estimate.run import EstimateOptions, check_estimator_options
from entropyflow.report import html, numbers, terminal
from entropyflow.report.figures import Panel, PlotOptions, entropy_figure, y_label
from entropyflow.report.jsonio import to_dict
from entropyflow.report.terminal import render_analysis

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "entropyflow"

FAKE_LABELS = registry.Labels(
    suffix=" [fake]",
    values_note="values in nats (fake estimator note)",
    dense_total="fake dense total",
    approx_box="fake: total not exact",
    dense_box="fake: dense box",
)


@pytest.fixture(scope="module")
def vgg():
    return entropyflow.analyze(str(ROOT / "sample_models" / "digits_vgg.pt"))


@pytest.fixture
def fake(monkeypatch):
    record = dataclasses.replace(
        registry.PAPER, name="fake", labels=FAKE_LABELS, conventions=(("log", "natural (nats)"), ("fake", "yes"))
    )
    monkeypatch.setitem(registry.REGISTRY, "fake", record)
    return record


def test_every_estimator_has_one_record():
    assert registry.names() == vocab.ESTIMATORS
    for name in vocab.ESTIMATORS:
        record = registry.get(name)
        assert record.name == name
        assert set(record.channel_rules) <= set(vocab.CHANNEL_RULES) and record.channel_rules
        assert record.channel_rule_refused or record.channel_rules == vocab.CHANNEL_RULES
        assert dict(record.conventions)["log"] == "natural (nats)"
        assert record.labels.values_note.startswith("values in nats")


def test_what_applies_to_each_estimator():
    paper, spectral = registry.get("paper"), registry.get("spectral")
    assert paper.dense_prefetch and paper.init_levels and paper.square_logdet
    assert not (spectral.dense_prefetch or spectral.init_levels or spectral.square_logdet)
    assert paper.labels.suffix == "" and spectral.labels.suffix == " [spectral]"


def test_unknown_estimator_and_refused_rule():
    with pytest.raises(OptionError, match=r"^unknown estimator 'nope' \(use paper or spectral\)$"):
        registry.get("nope")
    with pytest.raises(OptionError, match='channel_rule="mean" applies to the paper estimator only'):
        check_estimator_options("spectral", "mean")  # the library's words; the CLI says --channel-rule mean
    with pytest.raises(OptionError, match='channel_rule="mean" applies to the paper estimator only'):
        EstimateOptions(estimator="spectral", channel_rule="mean")
    check_estimator_options("paper", "mean")


def test_estimate_runs_the_records_runners(monkeypatch):
    calls = {"conv": 0, "dense": 0}
    paper = registry.PAPER

    def conv(*args):
        calls["conv"] += 1
        return paper.conv(*args)

    def dense(sites, *args):
        calls["dense"] += len(sites)
        return paper.dense(sites, *args)

    monkeypatch.setitem(registry.REGISTRY, "paper", dataclasses.replace(paper, conv=conv, dense=dense))
    result = entropyflow.analyze(str(ROOT / "sample_models" / "digits_vgg.pt"))
    assert calls["conv"] == result.counts.conv > 0
    assert calls["dense"] == result.counts.dense > 0


def test_a_fake_estimator_reaches_the_terminal(vgg, fake):
    console = Console(record=True, width=200)
    render_analysis(dataclasses.replace(vgg, estimator="fake"), console)
    text = console.export_text()
    assert "estimator fake" in text
    assert FAKE_LABELS.values_note in text


def test_a_fake_estimator_reaches_the_figures(vgg, fake):
    assert y_label(PlotOptions(), "fake").endswith(" (nats) [fake]")
    assert y_label(PlotOptions(), "paper").endswith(" (nats)")
    fig = entropy_figure([Panel.of("fake", dataclasses.replace(vgg, estimator="fake"))])
    assert fig.axes[0].get_ylabel().endswith("[fake]")


def test_a_fake_estimator_reaches_analysis_json(vgg, fake):
    d = to_dict(dataclasses.replace(vgg, estimator="fake"))
    assert d["estimator"]["conventions"] == {"log": "natural (nats)", "fake": "yes"}


def test_one_number_formatter():
    assert terminal.fmt is numbers.fmt and html.fmt is numbers.fmt
    assert numbers.fmt(None) == "—"
    assert numbers.fmt(float("-inf")) == "−∞" and numbers.fmt(float("inf")) == "∞"
    assert numbers.fmt(-1.23456) == "−1.235" and numbers.fmt(2.0, 1) == "2.0"
    assert numbers.fmt(-12345.6) == "−12,346"


def _imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    return [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


def test_figures_share_helpers_without_private_imports():
    for name in ("figures.py", "heatmap.py", "plotting.py", "terminal.py", "html.py", "numbers.py"):
        path = PACKAGE / "report" / name
        private = [(mod, name) for mod, name in _imports(path) if name.startswith("_") and name != "__version__"]
        assert not private, f"{path.name} imports private names {private}"


def test_no_estimator_name_is_compared_outside_the_registry():
    """Renderers and placement ask the registry; only it (and the vocabulary) spells the names."""
    for rel in (
        "estimate/run.py",
        "estimate/reference.py",
        "report/terminal.py",
        "report/figures.py",
        "report/jsonio.py",
        "recommend/placement.py",
    ):
        source = (PACKAGE / rel).read_text()
        assert '== "spectral"' not in source and '== "paper"' not in source, rel
