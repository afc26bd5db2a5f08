"""Progress that does not lie (issue 25): every stage of a spectral analysis reports as it goes,
reaches its total only after its work, and a piped run logs to stderr, never to stdout."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from entropyflow.analysis import analyze
from entropyflow.estimate import registry, run, spectral
from entropyflow.report.progress import ProgressDisplay

ROOT = Path(__file__).resolve().parents[1]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.Linear(64, 32),
        nn.Linear(32, 10),
    )


def test_every_stage_ends_after_its_work_and_never_reports_done_early(monkeypatch):
    events: list[tuple[str, ...]] = []
    record = registry.get("spectral")

    def conv(*args):
        out = record.conv(*args)
        events.append(("work", record.stages[0]))
        return out

    def dense(chunk, *args):
        out = record.dense(chunk, *args)
        events.append(("work", record.stages[1]))
        return out

    scan = run._scan

    def scanned(site, tensors):
        events.append(("work", "scan"))
        return scan(site, tensors)

    monkeypatch.setitem(registry.REGISTRY, "spectral", dataclasses.replace(record, conv=conv, dense=dense))
    monkeypatch.setattr(run, "_scan", scanned)
    monkeypatch.setattr(run, "DENSE_CHUNK_COST", 0.0)  # one runner call per dense layer

    def progress(stage: str, done: int, total: int) -> None:
        events.append(("call", stage, done, total))

    result = analyze(_model(), input_size=(3, 8, 8), estimator="spectral", device="cpu", progress=progress)
    assert [r.name for r in result.layers] == ["0", "2", "4", "6", "7", "8"]
    stages = ["load", "trace", "scan", "spectral conv", "spectral dense"]
    calls = [e for e in events if e[0] == "call"]
    assert list(dict.fromkeys(e[1] for e in calls)) == stages  # each stage once, in pipeline order
    for stage in stages:
        mine = [k for k, e in enumerate(events) if e[0] == "call" and e[1] == stage]
        done = [events[k][2] for k in mine]
        assert done == sorted(done) and len(set(done)) == len(done)  # never back, never the same twice
        assert len({events[k][3] for k in mine}) == 1  # one total per stage
        finals = [k for k in mine if events[k][2] >= events[k][3]]
        assert finals == [mine[-1]]  # done exactly once: the stage's last call
        work = [k for k, e in enumerate(events) if e == ("work", stage)]
        assert all(k < mine[-1] for k in work)  # ... after all its work
        assert all(mine[0] < k for k in work)  # and the stage showed up before its work started
    assert len(calls) - len([e for e in calls if e[1] != "spectral dense"]) >= 5  # 0, one per layer (4), done
    assert sum(1 for e in events if e == ("work", "spectral dense")) == 4


def test_one_long_dense_layer_ticks_inside_and_keeps_its_values(monkeypatch):
    torch.manual_seed(1)
    w = torch.randn(16, 400, dtype=torch.float64)
    expected = torch.log(torch.linalg.svdvals(w))
    monkeypatch.setattr(spectral, "GRAM_BLOCK_FLOPS", 2 * 16 * 16 * 50)  # 8 column blocks of 50
    ticks: list[float] = []
    with spectral.reporting(ticks.append):
        got = spectral.dense_log_singular_values(w)
    assert torch.allclose(got, expected, rtol=0, atol=1e-10)
    assert len(ticks) >= 9 and ticks == sorted(ticks) and ticks[-1] == 1.0
    assert ticks[-2] < 1.0  # the eigenvalues (and a possible SVD) still counted as work before the end
    gram_share = 2 * 16 * 16 * 400 / spectral.dense_cost((16, 400))
    assert math.isclose(ticks[7], gram_share)  # the 8th block ends the Gram product's share


def test_one_long_conv_layer_ticks_per_chunk_and_keeps_its_values():
    torch.manual_seed(2)
    plan = spectral.circular_plan(torch.randn(6, 4, 3, 3, dtype=torch.float64), (10, 10), (1, 1), (1, 1))
    ticks: list[float] = []
    with spectral.reporting(ticks.append):
        spec = spectral.conv_spectrum(plan, budget=2 * spectral.layer_bytes_per_freq(6, 4, 9))
    filt = torch.log(spectral.filter_singular_values(plan)).sum(1)
    layer = torch.log(spectral.layer_singular_values(plan)).sum()
    assert torch.allclose(spec.filter_totals, filt, atol=1e-9)
    assert math.isclose(spec.layer_total, float(layer), abs_tol=1e-8)
    assert ticks == sorted(ticks) and ticks[-1] == 1.0
    assert len(ticks) >= 60 // 2  # 60 half-spectrum frequencies, two per chunk: a tick per chunk


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _piped(log: bool = True) -> tuple[ProgressDisplay, io.StringIO, _Clock]:
    text = io.StringIO()
    err = Console(file=text, force_terminal=False, width=200)
    clock = _Clock()
    return ProgressDisplay(err, Console(file=io.StringIO()) if log else None, clock=clock), text, clock


def test_piped_lines_start_after_a_second_repeat_every_ten_and_end_with_the_time():
    shown, text, clock = _piped()
    shown("load", 0, 1)
    clock.now += 0.4
    shown("load", 1, 1)  # fast: silent
    shown("spectral dense", 0, 1000)
    clock.now += 1.5
    shown("spectral dense", 100, 1000)  # has run a second and moved: its first line
    clock.now += 2.5
    shown("spectral dense", 250, 1000)  # within 10 s of the last line: silent
    clock.now += 8.0
    shown.heartbeat()  # nothing called for 8 s: the line is due all the same
    clock.now += 6.0
    shown("spectral dense", 1000, 1000)
    shown("write", 0, 1)
    clock.now += 5.0
    shown.heartbeat()  # a step without parts: silent for its first ten seconds (a failing load stays one line)
    clock.now += 6.0
    shown.heartbeat()
    shown("write", 1, 1)
    assert text.getvalue().splitlines() == [
        "spectral dense svdvals: 10%, 0:02 elapsed, eta 0:14",
        "spectral dense svdvals: 25%, 0:12 elapsed, eta 0:36",  # 12 s for a quarter: 36 s to go
        "spectral dense svdvals: done in 18.0 s",
        "rendering figures, writing files: 0:11 elapsed",
        "rendering figures, writing files: done in 11.0 s",
    ]


def test_nested_analyses_start_their_stages_over_under_the_seed_they_belong_to():
    shown, text, clock = _piped()
    shown("seeds", 0, 2)
    for _ in range(2):
        shown("spectral conv", 0, 1000)
        clock.now += 3.0
        shown("spectral conv", 1000, 1000)
    shown("seeds", 1, 2)
    shown("spectral conv", 0, 1000)
    clock.now += 3.0
    shown("spectral conv", 1000, 1000)
    lines = text.getvalue().splitlines()
    assert lines == [
        "seed 1/2: spectral conv FFTs: done in 3.0 s",
        "seed 1/2: spectral conv FFTs: done in 3.0 s",
        "random-init seeds (one analysis each): 1/2 seeds, 0:06 elapsed, eta 0:06",
        "seed 2/2: spectral conv FFTs: done in 3.0 s",
    ]
    silent, quiet, clock = _piped(log=False)
    silent("scan", 0, 1000)
    clock.now += 30
    silent.heartbeat()
    silent("scan", 1000, 1000)
    assert quiet.getvalue() == ""


def test_piped_cli_writes_progress_to_stderr_and_none_to_stdout(tmp_path):
    code = (
        "import sys; from entropyflow.report.progress import ProgressDisplay as P; P.LOG_AFTER_S = P.LOG_IDLE_S = 0.0; "
        "from entropyflow.cli import main; sys.argv[0] = 'entropyflow'; raise SystemExit(main())"
    )
    out = tmp_path / "report"
    args = ["sample:digits_vgg", "--random-init", "--estimator", "spectral", "--no-hash", "--no-plot", "--no-html"]
    proc = subprocess.run(
        [sys.executable, "-c", code, "analyze", *args, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    line = re.compile(r"^(.+): (?:(?:\d+%, )?\d+:\d\d elapsed(?:, eta (?:\?|\d+:\d\d))?|done in \d+\.\d s)$")
    assert lines and all(line.match(x) for x in lines), lines
    stages = [line.match(x).group(1) for x in lines if x.endswith(" s")]
    assert stages == [
        "loading weights",
        "tracing on meta",
        "checking weights for NaN/inf",
        "spectral conv FFTs",
        "spectral dense svdvals",
        "rendering figures, writing files",
    ]
    assert not any(label in proc.stdout for label in ("elapsed", "done in", "svdvals", "FFTs"))
    assert "classifier.3" in proc.stdout  # the table itself went to stdout
    assert (out / "layers.csv").exists()


def test_terminal_bar_has_one_row_per_running_stage_and_hides_finished_ones():
    text = io.StringIO()
    clock = _Clock()
    with ProgressDisplay(Console(file=text, force_terminal=True, width=120), None, clock=clock) as shown:
        shown("load", 0, 1)
        shown("load", 1, 1)
        shown("spectral dense", 0, 1000)
        clock.now += 10
        shown("spectral dense", 400, 1000)
        rows = {t.description: t for t in shown.bar.tasks}
        assert not rows["loading weights"].visible  # done: gone from the bar
        dense = rows["spectral dense svdvals"]
        assert dense.visible and dense.fields == {"amount": "40%", "eta": "0:15"}  # 10 s for 40 %: 15 s to go
        clock.now += 10
        shown.heartbeat()  # no call for 10 s (one long SVD): the ETA grows with the time it takes
        assert dense.fields["eta"] == "0:30"
        shown("spectral dense", 1000, 1000)
        shown("load", 0, 1)  # a second analysis: a new row
        assert [t.visible for t in shown.bar.tasks] == [False, True]
    assert "spectral dense svdvals" in text.getvalue()


def test_the_eta_counts_the_rate_after_the_first_result_not_the_start_up():
    """A parallel track: Ray and the workers take 7 s before the first checkpoint, then one lands every
    0.1 s. The estimate after the first result is the only one that can include the start-up."""
    shown, text, clock = _piped()
    shown("track", 0, 24)
    clock.now += 7.0
    shown("track", 1, 24)
    assert shown._eta(shown.stages["track"], clock.now) == "2:41"  # 7 s × 23: no rate to go on yet
    for done in range(2, 12):
        clock.now += 0.1
        shown("track", done, 24)
    stage = shown.stages["track"]
    assert shown._eta(stage, clock.now) == "0:01"  # 13 left at 0.1 s each, not 13 × 8 s / 11 = 0:09
    clock.now += 0.1
    shown("track", 12, 24)
    assert math.isclose((clock.now - stage.first_at) / (12 - stage.first_done), 0.1)
