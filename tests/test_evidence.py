"""Issue 13: statistics against random-init seeds, init-scheme levels, trajectories over training,
comparisons at any size, reports people read (HTML at 1280×800, pandas, JSON to stdout, 80 columns)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import entropyflow
from entropyflow.cli import app
from entropyflow.compare import reference_seeds
from entropyflow.errors import OptionError
from entropyflow.estimate import init_levels, seeds
from entropyflow.report import ReportOptions, comparison_files
from entropyflow.report.heatmap import heatmap_figure
from entropyflow.report.terminal import render_analysis
from entropyflow.report.titles import unique_titles
from entropyflow.runs import analyze_to, track_to
from entropyflow.track import TrackOptions, checkpoint_paths, natural_key

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


# --- pure statistics ------------------------------------------------------------------------------


def _betainc_by_hand(a: float, b: float, x: float) -> float:
    """The hand-written regularised incomplete beta ``I_x(a, b)`` that ``seeds`` used before scipy
    (continued fraction, modified Lentz; relative accuracy about 1e-14), kept as a cross-check."""
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below its mean
        return 1.0 - _betainc_by_hand(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * h / a


def _t_two_sided_by_hand(t: float, df: float) -> float:
    return 0.0 if math.isinf(t) else min(1.0, _betainc_by_hand(df / 2.0, 0.5, df / (df + t * t)))


def _percentile_by_hand(x: float, values: list[float]) -> float:
    below = sum(1 for s in values if s < x)
    equal = sum(1 for s in values if s == x)
    return 100.0 * (below + 0.5 * equal) / len(values)


def test_student_t_and_betainc_match_scipy():
    st = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    for a, b, x in [(0.5, 0.5, 0.3), (2, 3, 0.9), (10, 0.5, 0.99), (0.5, 10, 0.01), (50, 0.5, 0.97), (4.5, 0.5, 0.2)]:
        assert _betainc_by_hand(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=1e-12, abs=1e-15)
    for t in [0.0, 0.1, 1.0, 2.5, 5.0, 10.0, 40.0]:
        for df in [1, 2, 3, 4, 9, 19, 100]:
            assert seeds.t_two_sided(t, df) == pytest.approx(2 * float(st.t.sf(t, df)), rel=1e-11, abs=1e-300)


def test_scipy_statistics_agree_with_the_hand_written_ones():
    """seeds' t test and percentile now come from scipy; the hand-written versions they replaced
    give the same numbers on a grid (signs, ties and infinities included), up to rounding (scipy's
    percentile is ``(below + below_or_equal)·(50/n)``, which can differ in the last digit)."""
    for t in [-40.0, -2.5, -0.1, 0.0, 0.1, 1.0, 2.5, 5.0, 10.0, 40.0, math.inf, -math.inf]:
        for df in [1, 2, 3, 4, 9, 19, 100]:
            expected = _t_two_sided_by_hand(t, df)
            assert seeds.t_two_sided(t, df) == pytest.approx(expected, rel=1e-11, abs=1e-300)
    values = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 7.5, -1.0, 0.0]
    for n in range(1, len(values) + 1):
        for x in [-2.0, -1.0, 0.0, 0.5, 2.0, 3.0, 4.0, 7.5, 8.0]:
            assert seeds.percentile(x, values[:n]) == pytest.approx(_percentile_by_hand(x, values[:n]), rel=1e-15)


def test_holm_and_percentile_by_hand():
    assert seeds.holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert seeds.percentile(2.0, [1.0, 2.0, 3.0, 4.0]) == 37.5  # one below, one tie (half)
    assert seeds.percentile(9.0, [1.0, 2.0]) == 100.0


def test_one_seed_gives_no_z_and_identical_seeds_flag_any_difference():
    one = seeds.seed_stat(1.0, [0.5])
    assert one is not None and one.z is None and one.p is None and one.outside is None
    same = seeds.with_holm([seeds.seed_stat(1.0, [0.5, 0.5, 0.5]), seeds.seed_stat(0.5, [0.5, 0.5])])
    assert same[0].outside is True and same[1].outside is False and same[1].z == 0.0
    assert seeds.seed_stat(1.0, [0.5, None]) is None and seeds.seed_stat(-math.inf, [0.5, 0.4]) is None


def test_init_level_constants_against_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4_000_000, generator=gen, dtype=torch.float64) * 0.05
    u = (torch.rand(4_000_000, generator=gen, dtype=torch.float64) * 2 - 1) * 0.3
    mean_n, median_n = init_levels.predicted("normal", 0.05)
    mean_u, median_u = init_levels.predicted("uniform", 0.3)
    assert float(z.abs().log().mean()) == pytest.approx(mean_n, abs=2e-3)  # log σ − 0.6352
    assert float(z.abs().log().median()) == pytest.approx(median_n, abs=2e-3)
    assert float(u.abs().log().mean()) == pytest.approx(mean_u, abs=2e-3)  # log b − 1
    assert float(u.abs().log().median()) == pytest.approx(median_u, abs=2e-3)  # log b − log 2
    assert pytest.approx(-0.6351814227, abs=1e-9) == init_levels.NORMAL_MEAN_SHIFT


def _conv_values(model: torch.nn.Module) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    out = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach()
            out.append((w.reshape(w.shape[0], -1)[:, 0].abs().log().double().numpy(), tuple(w.shape)))
    return out


def test_init_scheme_is_recognised_from_the_weights():
    import torchvision

    torch.manual_seed(1)
    name, levels = init_levels.recognise(_conv_values(torchvision.models.resnet18()))
    assert name == "kaiming_normal_(mode='fan_out', relu)" and all(level is not None for level in levels)
    torch.manual_seed(1)
    default = torch.nn.Sequential(
        *[torch.nn.Conv2d(c, 64, 3) for c in (3, 64, 64, 64, 64, 64)] + [torch.nn.Conv2d(64, 128, 1)]
    )
    name, _ = init_levels.recognise(_conv_values(default))
    assert name is not None and name.startswith("PyTorch default")
    # trained-looking values (shifted by a factor 3) fit no scheme: nothing is predicted
    torch.manual_seed(1)
    shifted = [(v + math.log(3.0), s) for v, s in _conv_values(torchvision.models.resnet18())]
    assert init_levels.recognise(shifted)[0] is None


# --- --compare random ------------------------------------------------------------------------------


def test_reference_seeds_never_include_the_models_own_seed(tmp_path):
    assert reference_seeds(5, 2) == (0, 1, 3, 4, 5)
    assert reference_seeds(3, None) == (0, 1, 2)
    written = analyze_to(
        "sample:digits_vgg",
        out=tmp_path / "r",
        options=entropyflow.AnalyzeOptions(random_init=True, seed=1, hash_files=False),
        report=ReportOptions(plot=False, html=False),
        compare="random",
        seeds=3,
    )
    assert written.reference is not None and written.reference.seeds == (0, 2, 3)
    assert [r.model.seed for r in written.results] == [1, 0, 2, 3]
    own = written.result.layers[0].per_position
    assert all(not np.array_equal(own, r.layers[0].per_position) for r in written.results[1:])


def test_z_scores_equal_a_direct_computation_from_seeds_csv(tmp_path):
    st = pytest.importorskip("scipy.stats")
    r = runner.invoke(app, ["analyze", "--compare", "random", "--seeds", "6", "-o", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 0, r.output
    layers = rows(tmp_path / "r" / "layers.csv")
    by_layer: dict[str, list[dict]] = {}
    for row in rows(tmp_path / "r" / "seeds.csv"):
        by_layer.setdefault(row["layer_name"], []).append(row)
    # the bundled sample was trained from torch.manual_seed(0) (its manifest says so): seed 0 is excluded
    assert sorted({int(s["seed"]) for v in by_layer.values() for s in v}) == [1, 2, 3, 4, 5, 6]
    pvalues = []
    for row in layers:
        for stat in ("mean", "median", "total"):
            x = float(row[stat])
            ref = np.array([float(s[stat]) for s in by_layer[row["name"]]])
            m, sd = ref.mean(), ref.std(ddof=1)
            assert float(row[f"z_{stat}"]) == pytest.approx((x - m) / sd, rel=1e-9)
            assert float(row[f"seeds_sd_{stat}"]) == pytest.approx(sd, rel=1e-9)
            pct = 100 * ((ref < x).sum() + 0.5 * (ref == x).sum()) / ref.size
            assert float(row[f"percentile_{stat}"]) == pytest.approx(pct)
            p = 2 * st.t.sf(abs(x - m) / (sd * math.sqrt(1 + 1 / ref.size)), ref.size - 1)
            assert float(row[f"p_{stat}"]) == pytest.approx(p, rel=1e-9)
            if stat == "median":
                pvalues.append(p)
    # Holm over the layers, by hand
    order = np.argsort(pvalues)
    adjusted = np.maximum.accumulate([min(1.0, (len(pvalues) - k) * pvalues[i]) for k, i in enumerate(order)])
    for k, i in enumerate(order):
        assert float(layers[i]["p_holm_median"]) == pytest.approx(adjusted[k], rel=1e-9)
        assert layers[i]["outside_median"] == ("true" if adjusted[k] < 0.05 else "false")
    doc = json.loads((tmp_path / "r" / "analysis.json").read_text())
    block = doc["random_init_reference"]
    assert block["seeds"] == [1, 2, 3, 4, 5, 6] and block["init_scheme"].startswith("PyTorch default")
    assert block["layers"][0]["median"]["z"] == pytest.approx(float(layers[0]["z_median"]))
    assert layers[0]["init_scheme"].startswith("PyTorch default") and layers[4]["init_scheme"] == ""  # dense: none


def test_one_seed_says_it_cannot_separate_signal_from_noise(tmp_path):
    r = runner.invoke(app, ["analyze", "--compare", "random", "--seeds", "1", "-o", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert "one seed cannot separate signal from noise" in " ".join(r.output.split())
    assert rows(tmp_path / "r" / "layers.csv")[0]["z_median"] == ""


def test_default_seeds_is_ten_and_seeds_needs_compare_random(tmp_path):
    written = analyze_to(
        None, out=tmp_path / "r", report=ReportOptions(plot=False, html=False), compare="random"
    )  # the bundled trained sample, initialised with seed 0 (its manifest): seeds 1…10
    assert written.result.model.seed == 0 and not written.result.model.random_init
    assert written.reference is not None and written.reference.seeds == tuple(range(1, 11))
    with pytest.raises(OptionError, match='seeds needs compare="random"'):
        analyze_to(None, out=tmp_path / "s", seeds=3)


# --- compare --------------------------------------------------------------------------------------


def test_compare_refuses_different_estimators(tmp_path):
    for est in ("paper", "spectral"):
        assert (
            runner.invoke(app, ["analyze", "--estimator", est, "-o", str(tmp_path / est), "-q", "--no-plot"]).exit_code
            == 0
        )
    r = runner.invoke(app, ["compare", str(tmp_path / "paper"), str(tmp_path / "spectral"), "-o", str(tmp_path / "c")])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "estimators differ" in err and "paper" in err and "spectral" in err
    assert not (tmp_path / "c").exists()


def test_panel_names_are_unique():
    base = entropyflow.analyze("sample:digits_vgg", random_init=True, seed=0, hash_files=False)
    seeds_ = [replace(base, model=replace(base.model, seed=s)) for s in (0, 1)]
    titles = ["sample:digits_vgg, random init (seed 0)", "sample:digits_vgg, random init (seed 1)"]
    assert unique_titles(seeds_) == titles
    unknown = [replace(base, model=replace(base.model, seed=None))] * 2
    assert unique_titles(unknown) == ["sample:digits_vgg, random init #1", "sample:digits_vgg, random init #2"]
    trained = entropyflow.analyze(hash_files=False)
    files = [replace(trained, model=replace(trained.model, files=(f"/runs/{run}/last.pt",))) for run in ("a", "b")]
    titles = unique_titles(files)
    assert len(set(titles)) == 2 and "a/last.pt" in titles[0] and "b/last.pt" in titles[1]


def _no_overlap(fig, ax) -> None:
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    for labels, axis in ((ax.get_xticklabels(), 0), (ax.get_yticklabels(), 1)):
        boxes = sorted(
            (t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()),
            key=lambda b: b.p0[axis],
        )
        assert len(boxes) >= 5
        for a, b in zip(boxes, boxes[1:], strict=False):
            assert b.p0[axis] >= a.p1[axis], (a, b)


@pytest.mark.slow
def test_300_layer_heatmap_and_50_column_labels_do_not_overlap():
    rng = np.random.default_rng(0)
    fig = heatmap_figure(
        rng.normal(size=(300, 50)), [f"backbone.stages.{i // 10}.blocks.{i % 10}.conv" for i in range(300)],
        [f"epoch={e:03d}" for e in range(50)], title="t", colorbar="c", center=0.0,
    )  # fmt: skip
    _no_overlap(fig, fig.axes[0])


@pytest.mark.slow
def test_compare_at_50_inputs_draws_a_heatmap(tmp_path):
    base = entropyflow.analyze(hash_files=False)
    many = [replace(base, model=replace(base.model, files=(f"/ckpt/epoch_{k}.pt",))) for k in range(50)]
    files = comparison_files(many, ReportOptions())
    assert set(files) == {"compare.png", "compare-profile.png"}
    few = comparison_files(many[:3], ReportOptions())
    assert set(few) == {"compare.png", "compare-profile.png"} and few["compare.png"] != files["compare.png"]


# --- track ----------------------------------------------------------------------------------------


def _build_module():
    spec = importlib.util.spec_from_file_location("sample_build", ROOT / "sample_models" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_natural_order_and_globs(tmp_path):
    for name in ("epoch_10.pt", "epoch_2.pt", "epoch_1.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in checkpoint_paths([tmp_path])] == ["epoch_1.pt", "epoch_2.pt", "epoch_10.pt"]
    assert [p.name for p in checkpoint_paths([str(tmp_path / "epoch_1*.pt")])] == ["epoch_1.pt", "epoch_10.pt"]
    assert natural_key("a2") < natural_key("a10")


@pytest.mark.slow
def test_track_caches_by_file_hash_and_reanalyses_only_changes(tmp_path):
    build = _build_module()
    torch.set_num_threads(1)
    ckpts = build.checkpoints(tmp_path / "ck", epochs=3)
    assert [p.name for p in ckpts] == ["epoch_00.pt", "epoch_01.pt", "epoch_02.pt", "epoch_03.pt"]
    opts = TrackOptions(seeds=2, labels=r"epoch_(\d+(?:_copy)?)")
    first = track_to([tmp_path / "ck"], out=tmp_path / "out", track_options=opts, report=ReportOptions(plot=False))
    traj = first.trajectory
    assert traj.analysed == 4 and traj.labels == ("00", "01", "02", "03")
    again = track_to(
        [tmp_path / "ck"], out=tmp_path / "out", track_options=opts, report=ReportOptions(plot=False)
    ).trajectory
    assert again.analysed == 0 and np.array_equal(again.values, traj.values, equal_nan=True)
    # change one file, add one: exactly those two are analysed
    sd = torch.load(ckpts[1], weights_only=True)
    sd["state_dict"]["features.0.weight"] = sd["state_dict"]["features.0.weight"] * 2
    torch.save(sd, ckpts[1])
    shutil.copy(ckpts[3], tmp_path / "ck" / "epoch_03_copy.pt")  # same bytes as a cached file: not re-analysed
    sd["state_dict"]["features.0.weight"] = sd["state_dict"]["features.0.weight"] * 3
    torch.save(sd, tmp_path / "ck" / "epoch_04.pt")
    third = track_to(
        [tmp_path / "ck"], out=tmp_path / "out", track_options=opts, report=ReportOptions(plot=True)
    ).trajectory
    assert third.labels == ("00", "01", "02", "03", "03_copy", "04")
    assert third.analysed == 2 and third.cached == (True, False, True, True, True, False)
    changed = third.layers.index("features.0")
    assert third.values[changed, 1] != traj.values[changed, 1]
    table = rows(tmp_path / "out" / "trajectory.csv")
    assert [r["name"] for r in table] == list(third.layers)
    assert float(table[changed]["02"]) == pytest.approx(third.values[changed, 2])
    assert float(table[0]["random_init_level"]) == pytest.approx(third.level[0])
    assert third.band[0, 0] <= third.level[0] <= third.band[0, 1]
    assert {"trajectory.png", "trajectory-layers.png", "checkpoints.csv"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }


def test_track_cli_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["track", str(tmp_path / "nothing-*.pt"), "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and len(r.stderr.strip().splitlines()) == 1 and "no files match" in r.stderr


# --- reports people read ----------------------------------------------------------------------------


def test_to_pandas_equals_the_csv_and_repr_is_compact(tmp_path):
    result = entropyflow.analyze(hash_files=False)
    frames = result.to_pandas()
    analyze_to(
        None,
        out=tmp_path / "r",
        options=entropyflow.AnalyzeOptions(hash_files=False),
        report=ReportOptions(plot=False, html=False),
    )
    csv_layers = rows(tmp_path / "r" / "layers.csv")
    assert list(frames.layers["name"]) == [r["name"] for r in csv_layers]
    assert np.allclose(frames.layers["median"].astype(float), [float(r["median"]) for r in csv_layers], rtol=0, atol=0)
    assert len(frames.filters) == sum(layer.filters for layer in result.layers)
    html = result._repr_html_()
    assert "<table>" in html and "features.0" in html and "AnalysisResult(" not in repr(result)


def test_format_json_writes_analysis_json_to_stdout(tmp_path):
    r = runner.invoke(app, ["analyze", "--format", "json", "-o", str(tmp_path / "r")])
    assert r.exit_code == 0
    assert json.loads(r.stdout) == json.loads((tmp_path / "r" / "analysis.json").read_text())


def test_80_column_table_keeps_layer_names_whole():
    result = entropyflow.analyze("torchvision:resnet18", random_init=True, hash_files=False)
    console = Console(width=80, record=True, color_system=None)
    render_analysis(result, console)
    text = console.export_text()
    for layer in result.layers:
        assert re.search(rf"\s{re.escape(layer.name)}\s", text), layer.name
    assert "mean profile" not in text and max(len(line) for line in text.splitlines()) <= 80


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (.ci/run installs it)")
def test_html_report_fits_1280x800_in_headless_chromium(tmp_path):
    out = tmp_path / "r"
    opts = entropyflow.AnalyzeOptions(random_init=True, hash_files=False)
    analyze_to(
        "timm:resnet50", out=out, options=opts, compare="random", seeds=2
    )  # two panels: a figure wider than the page
    page = (out / "report.html").read_text()
    probe = """<script>window.addEventListener('load', () => {
      const box = e => e.getBoundingClientRect();
      const imgs = [...document.querySelectorAll('figure img')];
      const last = [...document.querySelectorAll('table')][0].querySelector('tbody tr:last-child');
      last.scrollIntoView();
      const l = box(last), name = box(last.querySelector('code'));
      window.scrollTo(0, 0);
      const t = box(document.getElementById('title'));
      document.body.setAttribute('data-check', JSON.stringify({
        vw: innerWidth, vh: innerHeight, title: [t.left, t.top, t.right, t.bottom],
        imgs: imgs.map(i => [box(i).left, box(i).right, i.naturalWidth, box(i).width]),
        lastName: [name.left, name.right], lastText: last.querySelector('code').textContent,
        scrollW: document.documentElement.scrollWidth,
        table: [document.querySelector('.tablewrap').scrollWidth, document.querySelector('.tablewrap').clientWidth]}));
    });</script></body>"""
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
         "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, dom[:500]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    vw, vh = check["vw"], check["vh"]
    left, top, right, bottom = check["title"]
    assert left >= 0 and right <= vw and top >= 0 and bottom <= vh  # the title, on the first screen
    assert len(check["imgs"]) == 2
    for x0, x1, natural, shown in check["imgs"]:
        assert x0 >= 0 and x1 <= vw and shown <= natural  # figures scaled into the page: legend and last layer in view
    assert check["imgs"][0][2] > vw  # (the entropy figure is wider than the page: it is scaled, not cut)
    assert check["lastText"] == "fc" and check["lastName"][0] >= 0 and check["lastName"][1] <= vw
    assert check["scrollW"] <= vw  # nothing makes the page scroll sideways
    assert check["table"][0] <= check["table"][1]  # the layer table with its seed columns fits too
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,800", f"--screenshot={shot}",
         (out / "report.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000


def test_progress_logs_one_line_per_slow_phase_when_not_a_terminal():
    from entropyflow.cli import _Progress

    err = Console(record=True, width=120, force_terminal=False)  # piped: the lines go to stderr
    out = Console(record=True, file=io.StringIO())
    progress = _Progress(err, out)
    progress.LOG_AFTER_S = 0.0
    for k in range(4):
        progress("seeds", k, 3)
    progress("estimate", 5, 5)
    text = err.export_text().splitlines()
    assert text[-2:] == ["random-init seeds (one analysis each): done in 0.0 s", "estimating layers: done in 0.0 s"]
    assert out.export_text() == ""  # stdout carries only the table or JSON


def test_track_refuses_mixed_architectures_duplicate_labels_and_leaves_no_cache(tmp_path):
    build = _build_module()
    torch.set_num_threads(1)
    ckpts = build.checkpoints(tmp_path / "ck", epochs=1)
    shutil.copy(ROOT / "sample_models" / "digits_resnet.pt", tmp_path / "ck" / "epoch_09.pt")
    out = tmp_path / "out"
    r = runner.invoke(app, ["track", str(tmp_path / "ck"), "-o", str(out), "--seeds", "0"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "one architecture" in r.stderr and "epoch_09.pt" in r.stderr
    # a refused run writes no report; the cache keeps only whole entries of what was analysed (issue 24: an
    # interrupted or partly failed run keeps its finished work), each with the record that vouches for it
    assert not (out / "trajectory.csv").exists() and not (out / "checkpoints.csv").exists()
    entries = sorted((out / ".entropyflow-cache").glob("*.analysis.json"))
    assert all(e.with_name(e.name.replace(".analysis.json", ".record.json")).is_file() for e in entries)
    (tmp_path / "ck" / "epoch_09.pt").unlink()
    r = runner.invoke(app, ["track", *map(str, ckpts), "--labels", r"epoch_\d", "-o", str(out)])
    assert r.exit_code == 2 and "labels must be unique" in r.stderr
    r = runner.invoke(app, ["track", str(tmp_path / "ck"), "--layer", "nosuch", "-o", str(out)])
    assert r.exit_code == 2 and "--layer 'nosuch' is not a layer" in r.stderr
    r = runner.invoke(app, ["track", str(tmp_path / "ck"), "-o", "/proc/entropyflow-track"])
    assert r.exit_code == 2 and r.stderr.startswith("error: cannot write")


def test_a_trained_checkpoint_excludes_its_recorded_init_seed_in_track(tmp_path):
    build = _build_module()
    torch.set_num_threads(1)
    build.checkpoints(tmp_path / "ck", epochs=1)
    traj = track_to(
        [tmp_path / "ck"], out=tmp_path / "o", track_options=TrackOptions(seeds=2), report=ReportOptions(plot=False)
    )
    assert [s.model.seed for s in traj.trajectory.seeds] == [1, 2]  # the run started from seed 0
    epoch0 = traj.trajectory.values[:, 0]
    assert not np.any(np.isclose(traj.trajectory.band[:, 0], epoch0, rtol=0, atol=0))
