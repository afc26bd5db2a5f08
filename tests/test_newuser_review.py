"""A new user's review: Figure 1's panel titles wrap between phrases and line up (top and
baseline) also when only one of them wraps; a piped run logs the random-init seeds stage, which
includes the import the seeds' statistics need; an ``hf:`` id not in the cache says that the
architecture also needs the ``[hf]`` extra when transformers is missing."""

import io
import subprocess
import sys

import pytest
from rich.console import Console

import entropyflow
from entropyflow.compare import reference_seeds
from entropyflow.errors import InputNotFoundError
from entropyflow.estimate.reference import seed_reference
from entropyflow.load import hf_cache
from entropyflow.report.figures import Panel, entropy_figure, panel_titles
from entropyflow.report.progress import ProgressDisplay
from entropyflow.report.titles import panel_title


def test_panel_titles_put_the_counts_on_their_own_line_in_every_panel():
    heads = ["sample:digits_resnet", "sample:digits_resnet, random init (10 seeds)"]
    counts = ["(6 conv, 1 dense)"] * 2
    # 50 characters: the second title (63) needs two lines, the first (39) would fit on one
    assert panel_titles(heads, counts, [50, 50]) == [
        "sample:digits_resnet\n(6 conv, 1 dense)",
        "sample:digits_resnet, random init (10 seeds)\n(6 conv, 1 dense)",
    ]
    # narrower: the long head wraps between its phrases; the short title ends in an empty line
    assert panel_titles(heads, counts, [30, 30]) == [
        "sample:digits_resnet\n(6 conv, 1 dense)\n",
        "sample:digits_resnet,\nrandom init (10 seeds)\n(6 conv, 1 dense)",
    ]
    # all fit on one line: left alone
    assert panel_titles(["a", "b"], ["(1 conv, 0 dense)"] * 2, [40, 40]) == [
        "a  (1 conv, 0 dense)",
        "b  (1 conv, 0 dense)",
    ]


@pytest.fixture(scope="module")
def resnet_figure():
    """The panels ``analyze sample:digits_resnet --compare random --seeds 2`` draws."""
    trained = entropyflow.analyze("sample:digits_resnet")
    seeds = [
        entropyflow.analyze("sample:digits_resnet", random_init=True, seed=s)
        for s in reference_seeds(2, trained.model.seed)
    ]
    panels = [
        Panel.of(panel_title(trained), trained, seed_reference(trained, seeds)),
        Panel.of(panel_title(seeds[0], len(seeds)), seeds),
    ]
    return entropy_figure(panels)


def test_resnet_figure_titles_share_their_lines_top_and_baseline(resnet_figure):
    fig = resnet_figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax._left_title for ax in fig.axes]  # noqa: SLF001
    assert [t.get_text() for t in titles] == [
        "sample:digits_resnet\n(6 conv, 1 dense)",
        "sample:digits_resnet, random init (2 seeds)\n(6 conv, 1 dense)",  # not cut after the comma
    ]
    baselines = [t.get_transform().transform(t.get_position())[1] for t in titles]
    assert baselines[0] == pytest.approx(baselines[1], abs=0.5)
    boxes = [t.get_window_extent(renderer) for t in titles]
    assert boxes[0].y1 == pytest.approx(boxes[1].y1, abs=0.5)  # the first lines at one height
    for t, ax in zip(titles, fig.axes, strict=True):  # each title fits over its own panel
        assert t.get_window_extent(renderer).x1 <= ax.get_window_extent(renderer).x1 + 1


def test_a_single_panel_title_that_fits_stays_on_one_line():
    """Plain ``analyze`` (its title is the sample and the bundled file's name)."""
    fig = entropy_figure([Panel.of("sample:digits_vgg, digits_vgg.pt", entropyflow.analyze("sample:digits_vgg"))])
    fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_title(loc="left") == "sample:digits_vgg, digits_vgg.pt  (4 conv, 2 dense)"
    box, title = ax.get_window_extent(), ax._left_title.get_window_extent()  # noqa: SLF001
    assert title.x1 <= fig.bbox.x1 and title.y0 > box.y1


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _piped():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    clock = _Clock()
    return ProgressDisplay(console, console, clock=clock), clock, out


def test_piped_display_logs_a_moving_stage_that_runs_a_second():
    display, clock, out = _piped()
    for k in range(15):  # 15 seeds, 0.125 s each: 1.875 s
        display("seeds", k, 15)
        clock.now += 0.125
    display("seeds", 15, 15)
    assert out.getvalue().splitlines() == [
        "random-init seeds (one analysis each): 8/15 seeds, 0:01 elapsed, eta 0:01",  # the first call at 1 s
        "random-init seeds (one analysis each): done in 1.9 s",
    ]


def test_piped_display_keeps_a_short_stage_silent_and_logs_a_slow_ending_by_heartbeat():
    display, clock, out = _piped()
    display("seeds", 0, 3)
    clock.now += 0.5
    display("seeds", 1, 3)
    clock.now += 0.25
    display("seeds", 3, 3)  # 0.75 s in all: nothing
    assert out.getvalue() == ""
    display("seeds", 0, 2)
    clock.now += 0.25
    display("seeds", 1, 2)  # moved, then a long last step: the heartbeat writes the line when due
    clock.now += 0.5
    display.heartbeat()
    assert out.getvalue() == ""
    clock.now += 0.5
    display.heartbeat()
    assert out.getvalue() == "random-init seeds (one analysis each): 1/2 seeds, 0:01 elapsed, eta 0:01\n"


def test_seeds_stage_includes_the_statistics_import():
    """The seeds' statistics need scipy.stats (about a second to import, the first time): it is
    imported before the seeds stage ends, so that a piped run's seeds line accounts for it."""
    code = (
        "import sys, entropyflow\n"
        "from entropyflow.analysis import AnalyzeOptions\n"
        "from entropyflow.compare import reference_analyses\n"
        "r = entropyflow.analyze('sample:digits_vgg')\n"
        "seen = []\n"
        "def progress(stage, done, total):\n"
        "    if stage == 'seeds':\n"
        "        seen.append((done, total, 'scipy.stats' in sys.modules))\n"
        "reference_analyses(r, 'random', AnalyzeOptions(), 2, progress=progress)\n"
        "print(seen)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[(0, 2, False), (1, 2, False), (2, 2, True)]"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    return tmp_path


HINT = "; its architecture also needs transformers: pip install 'entropyflow[hf]' (without it, only the weights"


def test_not_cached_without_transformers_names_the_extra(empty_cache, monkeypatch):
    monkeypatch.setattr(hf_cache, "missing", lambda extra: ["transformers"] if extra == "hf" else [])
    with pytest.raises(InputNotFoundError) as info:
        hf_cache.resolve_hub("bert-base-uncased")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"hf:bert-base-uncased is not in the local Hugging Face cache ({empty_cache})")
    assert "fetch it with `hf download bert-base-uncased`" in text and HINT in text
    (empty_cache / "models--org--m").mkdir()  # the repository's folder, without the ref
    with pytest.raises(InputNotFoundError) as info:
        hf_cache.resolve_hub("org/m", "v1")
    assert "no refs/v1" in str(info.value) and HINT in str(info.value) and "\n" not in str(info.value)


def test_not_cached_with_transformers_gives_the_fetch_hint_only(empty_cache, monkeypatch):
    monkeypatch.setattr(hf_cache, "missing", lambda extra: [])
    with pytest.raises(InputNotFoundError) as info:
        hf_cache.resolve_hub("bert-base-uncased")
    assert "transformers" not in str(info.value) and "entropyflow[hf]" not in str(info.value)
    assert str(info.value).endswith("or pass a local folder with config.json")
