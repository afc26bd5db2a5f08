"""Every figure readable at its real size: the axes get most of the figure, the legend does not,
nothing is drawn outside the figure, the y label sits beside its axes, panel titles share a
baseline and wrap between phrases, every panel thins its ticks alike; sweep figures have whole
epochs and no offset axis (issue 25)."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from matplotlib.text import Text
from torch import nn

import entropyflow
from entropyflow.compare import reference_seeds
from entropyflow.estimate.reference import seed_reference
from entropyflow.report.figures import Panel, entropy_figure, profile_figure
from entropyflow.report.heatmap import heatmap_figure
from entropyflow.report.plotting import wrap_phrases
from entropyflow.report.titles import panel_title
from entropyflow.sweep.events import TrialOutcome
from entropyflow.sweep.output import learning_curves, outcome_figure
from entropyflow.sweep.spec import SweepSpec, placements_from
from entropyflow.sweep.summary import summarize, trial_summary


@pytest.fixture(scope="module")
def compare_random():
    """The panels ``analyze sample:digits_vgg --compare random --seeds 3`` draws."""
    trained = entropyflow.analyze("sample:digits_vgg")
    seeds = [
        entropyflow.analyze("sample:digits_vgg", random_init=True, seed=s)
        for s in reference_seeds(3, trained.model.seed)
    ]
    reference = seed_reference(trained, seeds)
    return [
        Panel.of(panel_title(trained), trained, reference),
        Panel.of(panel_title(seeds[0], len(seeds)), seeds),
    ]


@pytest.fixture(scope="module")
def figure1(compare_random):
    return entropy_figure(compare_random)


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _texts(fig):
    """Every visible text the last draw placed: titles, labels, tick labels in view, legends."""
    out = [t for t in (fig._suptitle, fig._supxlabel) if t is not None]  # noqa: SLF001
    for legend in fig.legends:
        out += legend.get_texts()
    for ax in fig.axes:
        out += [ax.title, ax._left_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]  # noqa: SLF001
        out += [ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
        lo, hi = sorted(ax.get_xlim())
        out += [t for x, t in zip(ax.get_xticks(), ax.get_xticklabels(), strict=False) if lo <= x <= hi]
        lo, hi = sorted(ax.get_ylim())
        out += [t for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=False) if lo <= y <= hi]
    return [t for t in out if isinstance(t, Text) and t.get_visible() and t.get_text()]


def assert_inside(fig):
    renderer = _drawn(fig)
    box = fig.bbox
    tight = fig.get_tightbbox(renderer)  # in inches
    assert tight.x0 >= -0.01 and tight.y0 >= -0.01
    assert tight.x1 <= fig.get_figwidth() + 0.01 and tight.y1 <= fig.get_figheight() + 0.01
    for t in _texts(fig):
        e = t.get_window_extent(renderer)
        assert box.x0 - 0.5 <= e.x0 and e.x1 <= box.x1 + 0.5, t.get_text()
        assert box.y0 - 0.5 <= e.y0 and e.y1 <= box.y1 + 0.5, t.get_text()


def test_compare_random_figure_gives_the_axes_most_of_the_height(figure1):
    fig = figure1
    renderer = _drawn(fig)
    height = fig.bbox.height
    for ax in fig.axes:
        assert ax.get_window_extent(renderer).height >= 0.55 * height
    (legend,) = fig.legends
    assert legend.get_window_extent(renderer).height <= 0.25 * height  # compact: several columns
    assert legend._ncols >= 2  # noqa: SLF001
    assert_inside(fig)


def test_compare_random_y_label_titles_and_ticks(figure1):
    fig = figure1
    renderer = _drawn(fig)
    a, b = fig.axes
    label, box = a.yaxis.label.get_window_extent(renderer), a.get_window_extent(renderer)
    assert box.y0 <= (label.y0 + label.y1) / 2 <= box.y1 and label.height <= box.height
    assert abs((label.y0 + label.y1) / 2 - (box.y0 + box.y1) / 2) < 2  # centred on the axes
    ta, tb = a.get_title(loc="left"), b.get_title(loc="left")
    assert ta.endswith("(4 conv, 2 dense)") and tb.endswith("(4 conv, 2 dense)")
    baselines = []
    for ax in (a, b):
        title = ax._left_title  # noqa: SLF001
        assert title.get_verticalalignment() == "baseline"  # its last line sits on its position
        baselines.append(title.get_transform().transform(title.get_position())[1])
    assert baselines[0] == pytest.approx(baselines[1], abs=0.5)  # one baseline for both subtitles
    assert list(a.get_xticks()) == list(b.get_xticks()) == [1, 2, 3, 4, 5, 6]


def test_profile_figure_has_room_for_its_axes(compare_random):
    fig = profile_figure(compare_random)
    renderer = _drawn(fig)
    assert fig.axes[0].get_window_extent(renderer).height >= 0.55 * fig.bbox.height
    assert len(fig.legends[0].get_texts()) == 5  # the seeds' band, the init level, one per panel (mean and band), dense
    assert_inside(fig)


def _stack(n):
    torch.manual_seed(n)
    model = nn.Sequential(*[nn.Conv1d(2, 2, 3, padding=1) for _ in range(n)])
    return entropyflow.analyze(model, input_size=(2, 5), hash_files=False)


def test_panels_of_different_lengths_thin_their_ticks_alike():
    short, long = _stack(10), _stack(40)
    assert list(entropy_figure([Panel.of("short", short)]).axes[0].get_xticks()) == list(range(1, 11))  # alone
    fig = entropy_figure([Panel.of("short", short), Panel.of("long", long)])
    steps = [np.diff(ax.get_xticks()[1:]) for ax in fig.axes]  # (tick 1 may come first on its own)
    assert len(set(steps[0])) == len(set(steps[1])) == 1 and steps[0][0] == steps[1][0] > 1
    assert_inside(fig)


def test_spectral_y_label_fits_beside_its_axes():
    spectral = entropyflow.analyze("sample:digits_resnet", estimator="spectral")
    fig = entropy_figure([Panel.of(panel_title(spectral), spectral)])
    renderer = _drawn(fig)
    label, box = fig.axes[0].yaxis.label.get_window_extent(renderer), fig.axes[0].get_window_extent(renderer)
    assert fig.axes[0].get_ylabel().endswith("[spectral]")
    assert box.y0 - 1 <= label.y0 and label.y1 <= box.y1 + 1
    assert_inside(fig)


@pytest.mark.parametrize(
    "text,width,lines",
    [
        (
            "Figure 1 style: VGG16 at random initialisation (13 conv, 3 dense)",
            53,
            ["Figure 1 style:", "VGG16 at random initialisation (13 conv, 3 dense)"],
        ),
        (
            "digits_vgg, trained (97.5 % test accuracy)  (4 conv, 2 dense)",
            53,
            ["digits_vgg, trained (97.5 % test accuracy)", "(4 conv, 2 dense)"],
        ),
        (
            "entropy change per layer: a, b.pt vs a, random init (3 seeds)",
            40,
            ["entropy change per layer: a, b.pt", "vs a, random init (3 seeds)"],
        ),
        ("one two three four five six seven", 10, ["one two", "three", "four five", "six seven"]),
        ("kept\nbreak", 80, ["kept", "break"]),
    ],
)
def test_wrap_phrases(text, width, lines):
    assert wrap_phrases(text, width).split("\n") == lines


def test_wrap_phrases_never_breaks_inside_parentheses_that_fit():
    text = "a model with a long name, trained on digits (97.5 % test accuracy), seed 3 (of 20, the last)"
    for width in range(30, 100):
        out = wrap_phrases(text, width).split("\n")
        assert all(len(line) <= width for line in out)
        assert re.sub(r"\s+", " ", " ".join(out)) == re.sub(r"\s+", " ", text)
        for line in out:
            assert line.count("(") == line.count(")"), (width, out)


# --- sweep figures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def placement():
    found = placements_from(analyze_tiny(), ["first"])[0]
    return replace(found, name="p")


def analyze_tiny():
    return entropyflow.analyze(nn.Sequential(nn.Conv2d(1, 2, 3)), input_size=(1, 5, 5))


def _sweep(placement, lambdas, epochs, same=False, patience=None):
    spec = SweepSpec(lambdas=lambdas, placements=(placement,), seeds=(0, 1, 2, 3), epochs=epochs, metric="loss",
                     patience=patience)  # fmt: skip
    outcomes = [
        TrialOutcome(cell.name, s, tuple({"epoch": e, "loss": 1.0 / (e + 0.1 * s + (0 if same else k))}
                                         for e in range(1, epochs + 1)), None)
        for k, cell in enumerate(spec.cells) for s in spec.seeds
    ]  # fmt: skip
    return summarize(spec, [trial_summary(o.cell, o.seed, o.rows, spec) for o in outcomes]), outcomes


def test_learning_curves_have_whole_epochs_on_every_column(placement):
    summary, outcomes = _sweep(placement, (0.0, 1e-3, 1e-2, 1e-1, 1.0), 3, patience=1)
    fig = learning_curves(summary, outcomes)
    renderer = _drawn(fig)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 4  # 2 × 3 grid, two panels unused
    columns: dict[float, list] = {}
    for ax in shown:
        columns.setdefault(round(ax.get_position().x0, 3), []).append(ax)
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert len(columns) == 3
    for column in columns.values():  # the lowest panel of each column labels its epochs
        lowest = min(column, key=lambda ax: ax.get_position().y0)
        labels = [t for t in lowest.get_xticklabels() if t.get_visible() and t.get_text()]
        assert labels and lowest.get_xlabel() == "epoch"
        assert all(t.get_window_extent(renderer).height > 0 for t in labels)
    assert_inside(fig)


def test_learning_curves_of_two_epochs_do_not_tick_half_epochs(placement):
    summary, outcomes = _sweep(placement, (0.0, 1e-3), 2)
    fig = learning_curves(summary, outcomes)
    _drawn(fig)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0, 2.0]


def test_outcome_figure_with_no_differences_has_no_offset_axis(placement):
    summary, _ = _sweep(placement, (0.0, 1e-3, 1e-2), 3, same=True)
    assert all(c.versus[summary.primary].mean == 0.0 for c in summary.cells[1:])
    fig = outcome_figure(summary)
    _drawn(fig)
    top, bottom = fig.axes
    assert bottom.yaxis.get_offset_text().get_text() == "" and top.yaxis.get_offset_text().get_text() == ""
    lo, hi = bottom.get_ylim()
    assert lo < 0 < hi and hi - lo > 1e-3  # a readable range around 0, not ±1e−17
    assert_inside(fig)


# --- the track heatmap with its loss panel ------------------------------------------------------


def test_heatmap_with_its_loss_panel_stays_inside():
    rng = np.random.default_rng(0)
    rows = [f"features.{i}" for i in range(8)]
    steps = [0.0, 100.0, 250.0, 400.0]
    fig = heatmap_figure(
        rng.normal(size=(8, 4)), rows, [f"step_{int(s)}" for s in steps], title="layer median over training, "
        "relative to the random-init level (20 seeds)", colorbar="median − level (nats)", center=0.0,
        xlabel="global step", positions=steps, series=[("train loss", list(range(0, 401, 20)),
                                                         [1 / (1 + k) for k in range(21)])],
        series_label="logged loss",
    )  # fmt: skip
    renderer = _drawn(fig)
    heat, below = fig.axes[0], fig.axes[1]
    assert below.get_lines() and below.get_xlim() == heat.get_xlim()
    assert heat.get_window_extent(renderer).height > below.get_window_extent(renderer).height
    x0 = [a.yaxis.label.get_window_extent(renderer).x0 for a in (heat, below)]
    assert x0[0] == pytest.approx(x0[1], abs=0.5)  # the two y labels in one column
    assert_inside(fig)
