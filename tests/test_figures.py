"""Figures 1/8/9 and the HTML report: statistics, -inf, tick layout, determinism, Chromium."""

import io
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread
from torch import nn

import entropyflow
from entropyflow.report import ReportOptions, report_files
from entropyflow.report.boxes import box_stats, result_boxes
from entropyflow.report.figures import (
    CONV_FACE,
    Panel,
    PlotOptions,
    entropy_figure,
    labels_overlap,
    profile_figure,
    save_figure,
)
from entropyflow.report.html import render_html

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def vgg():
    return entropyflow.analyze(str(ROOT / "sample_models" / "digits_vgg.pt"))


@pytest.fixture(scope="module")
def with_zero_taps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 5))
    with torch.no_grad():
        model[0].weight[[0, 3, 5], 0, 0, 0] = 0.0
    return entropyflow.analyze(model, input_size=(2, 6, 6), hash_files=False)


@pytest.fixture(scope="module")
def deep():
    """210 layers: 209 convs and a dense head."""
    torch.manual_seed(1)
    layers = [nn.Conv1d(4, 4, 3, padding=1) for _ in range(209)]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 6, 3))
    return entropyflow.analyze(model, input_size=(4, 6), hash_files=False)


def test_box_statistics_equal_pandas_quantiles_of_filters_csv(vgg):
    rows = pd.read_csv(io.BytesIO(report_files(vgg)["filters.csv"]))
    boxes = result_boxes(vgg)
    assert len(boxes) == len(vgg.layers) == rows["layer_index"].nunique() == 6
    for b in boxes:
        v = rows.loc[rows["layer_index"] == b.index, "dh_per_position"]
        q1, med, q3 = v.quantile([0.25, 0.5, 0.75])
        assert (b.q1, b.median, b.q3, b.mean) == pytest.approx((q1, med, q3, v.mean()), abs=1e-12)
        iqr = q3 - q1
        inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
        assert (b.whislo, b.whishi) == (inside.min(), inside.max())
        assert sorted(b.fliers) == sorted(v[(v < q1 - 1.5 * iqr) | (v > q3 + 1.5 * iqr)].tolist())
    assert sum(len(b.fliers) for b in boxes) > 0  # the trained VGG has outliers to draw


def test_totals_boxes_use_the_totals(vgg):
    for b, layer in zip(result_boxes(vgg, total=True), vgg.layers, strict=True):
        assert b.median == pytest.approx(float(np.median(layer.totals)))


def test_neg_inf_values_are_counted_not_drawn(with_zero_taps):
    b = result_boxes(with_zero_taps)[0]
    assert b.n == 8 and b.n_neginf == 3 and math.isfinite(b.mean)
    values = with_zero_taps.layers[0].per_position
    assert b.mean == pytest.approx(np.mean(values[np.isfinite(values)])) and b.n - b.n_neginf == 5
    fig = entropy_figure([Panel.of("zeros", with_zero_taps)])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("−∞, not drawn: 3 value(s) in 1 layer(s)" in t for t in texts)
    ax = fig.axes[0]
    assert "3" in [t.get_text() for t in ax.texts]  # the per-layer count
    for line in ax.get_lines():  # nothing non-finite was handed to matplotlib
        assert np.isfinite(np.asarray(line.get_ydata(), dtype=float)).all()


def test_box_stats_all_neg_inf_is_none():
    assert box_stats([-math.inf, -math.inf]) is None


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["index", "names"])
def test_200_layer_model_has_no_overlapping_tick_labels(deep, labels):
    assert len(deep.layers) == 210
    fig = entropy_figure([Panel.of("deep", deep)], PlotOptions(labels=labels))
    ax = fig.axes[0]
    ticks = ax.get_xticks()
    assert not labels_overlap(fig, ax)
    assert 10 <= len(ticks) < 210 and ticks.min() >= 1 and ticks.max() <= 210
    assert ax.get_xlim() == pytest.approx((0.4, 210.6))
    assert fig.get_figwidth() <= 26.6
    if labels == "names":
        assert {t.get_text() for t in ax.get_xticklabels()} <= {layer.name for layer in deep.layers}


def test_small_model_labels_every_layer(vgg):
    fig = entropy_figure([Panel.of("vgg", vgg)], PlotOptions(labels="names"))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [layer.name for layer in vgg.layers]


def test_dense_and_not_exact_layers_are_marked(vgg):
    fig = entropy_figure([Panel.of("vgg", vgg)])
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 4  # the four 'same'-padding convs are not exact
    diamonds = [layer for layer in ax.get_lines() if layer.get_marker() == "D"]
    assert len(diamonds) == 1 and list(diamonds[0].get_xdata()) == [5, 6]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("not exact" in t for t in labels) and any("dense layer" in t for t in labels)


@pytest.mark.slow
def test_comparison_shares_the_y_axis_and_pools_seeds(vgg):
    seeds = [entropyflow.analyze("sample:digits_vgg", random_init=True, seed=s) for s in range(2)]
    fig = entropy_figure([Panel.of("trained", vgg), Panel.of("random", seeds)])
    a, b = fig.axes[:2]
    assert a.get_ylim() == b.get_ylim() and a.get_shared_y_axes().joined(a, b)
    pooled = result_boxes(seeds)[0]
    both = np.concatenate([s.layers[0].per_position for s in seeds])
    assert pooled.n == 32 and pooled.median == pytest.approx(np.median(both))
    prof = profile_figure([Panel.of("trained", vgg), Panel.of("random", seeds)])
    means = [layer for layer in prof.axes[0].get_lines() if layer.get_marker() == "o"]
    assert list(means[0].get_ydata()) == pytest.approx([layer.summary.mean for layer in vgg.layers])


@pytest.mark.slow
def test_same_analysis_gives_identical_files(vgg):
    opts = ReportOptions(plot=True, html=True)
    a, b = report_files(vgg, opts), report_files(vgg, opts)
    assert set(a) == {"layers.csv", "filters.csv", "analysis.json", "entropy.png", "profile.png", "report.html"}
    assert a == b
    for fmt in ("svg", "pdf"):
        f = save_figure(entropy_figure([Panel.of("vgg", vgg)]), fmt)
        assert f == save_figure(entropy_figure([Panel.of("vgg", vgg)]), fmt)


def test_png_matches_the_golden_image(vgg, tmp_path):
    png = save_figure(entropy_figure([Panel.of("digits_vgg", vgg)], PlotOptions(title="digits_vgg (golden)")))
    (tmp_path / "now.png").write_bytes(png)
    now, gold = imread(tmp_path / "now.png"), imread(GOLDEN / "digits_vgg_entropy.png")
    assert now.shape == gold.shape
    diff = np.abs(now[..., :3] - gold[..., :3])
    assert diff.mean() < 0.01 and (diff.max(axis=-1) > 0.25).mean() < 0.01


def test_html_is_self_contained(vgg):
    page = report_files(vgg, ReportOptions())["report.html"].decode()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 2
    for layer in vgg.layers:
        assert f"<code>{layer.name}</code>" in page
    assert "pivots collide" in page and "sha256" in page and vgg.model.sha256 in page


def _chromium(page: Path, shot: Path) -> str:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={shot.parent / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,1400",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), r.stderr[-2000:]
    return r.stderr


def _console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line]


def _face_pixels(png: Path) -> int:
    img = (imread(png)[..., :3] * 255).round()
    face = np.array([int(CONV_FACE[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - face).max(axis=-1) <= 6).sum())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium_and_shows_the_figure(vgg, tmp_path):
    files = report_files(vgg, ReportOptions())
    page = tmp_path / "report.html"
    page.write_bytes(files["report.html"])
    log = _chromium(page, tmp_path / "shot.png")
    assert _console_messages(log) == []
    assert _face_pixels(tmp_path / "shot.png") > 2000  # the boxes of the figure are on screen
    # the same page without figures shows none of that colour: the check can fail
    bare = tmp_path / "bare" / "report.html"
    bare.parent.mkdir()
    bare.write_bytes(render_html(vgg, {}))
    _chromium(bare, bare.parent / "shot.png")
    assert _face_pixels(bare.parent / "shot.png") < 50


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_console_error_detection_works(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><p>x</p><script>console.error('boom')</script></body></html>")
    assert any("boom" in m for m in _console_messages(_chromium(page, tmp_path / "shot.png")))


# --- the CLI side of figures and comparisons -------------------------------------------------

from test_cli import assert_user_error, files_in, report_names  # noqa: E402


def test_plot_flags(cli, tmp_path):
    out = tmp_path / "a"
    r = cli("analyze", "-o", out, "--no-plot", "--no-html", "-q")
    assert r.exit_code == 0, r.stderr
    assert report_names(out) == ["analysis.json", "filters.csv", "layers.csv"]
    out = tmp_path / "b"
    r = cli("analyze", "-o", out, "--plot-format", "svg", "--plot-total", "--labels", "names", "-q")
    assert r.exit_code == 0, r.stderr
    svg = (out / "entropy.svg").read_text()
    assert "total entropy change per filter" in svg and "features.0" in svg
    assert "<svg" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "args,frag",
    [
        (("--plot-format", "gif"), "unknown --plot-format 'gif'"),
        (("--labels", "both"), "unknown --labels 'both'"),
        (("--seeds", "3"), "--seeds needs --compare random"),
        (("--compare", "random", "--seeds", "0"), "--seeds must be at least 1"),
        (("--compare", "sample:nope"), "unknown sample model 'nope'"),
    ],
)
def test_bad_plot_and_compare_options(cli, tmp_path, args, frag):
    out = tmp_path / "out"
    assert_user_error(cli("analyze", "-o", out, *args), out, frag)


@pytest.mark.slow
def test_compare_random_seeds_and_saved_analyses(cli, tmp_path):
    out = tmp_path / "cmp"
    r = cli("analyze", "-o", out, "--compare", "random", "--seeds", "2", "-q")
    assert r.exit_code == 0, r.stderr
    assert {"compare-1.analysis.json", "compare-2.analysis.json", "entropy.png"} <= set(files_in(out))
    seed2 = entropyflow.report.read_analysis(out / "compare-2.analysis.json")  # seed 0 is the sample's own init
    assert seed2.model.weights == "random init (torch.manual_seed(2))" and seed2.model.input_size == (1, 8, 8)
    both = tmp_path / "both"
    r = cli("compare", out / "analysis.json", out / "compare-1.analysis.json", "-o", both)
    assert r.exit_code == 0, r.stderr
    assert report_names(both) == ["compare-profile.png", "compare.png"]
    png = imread(both / "compare.png")
    assert png.shape[1] > imread(out / "entropy.png").shape[1] * 0.9  # two full panels
    r = cli("compare", out, out / "compare-2.analysis.json", "-o", tmp_path / "dirs", "--plot-format", "pdf")
    assert r.exit_code == 0 and (tmp_path / "dirs" / "compare.pdf").read_bytes().startswith(b"%PDF")


def test_compare_bad_inputs(cli, tmp_path):
    (tmp_path / "x.json").write_text("{}")
    out = tmp_path / "out"
    assert_user_error(cli("compare", tmp_path / "x.json", "-o", out), out, "at least two")
    assert_user_error(cli("compare", tmp_path / "x.json", tmp_path / "x.json", "-o", out), out, "x.json")
    assert_user_error(cli("compare", tmp_path / "missing.json", tmp_path / "x.json", "-o", out), out, "missing.json")
