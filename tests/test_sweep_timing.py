"""Issue 21, wall-clock outcomes that are not confounded: the trials are launched seed by seed with
the cells in a random order fixed by the grid (not every baseline trial first, on the fresh
workers), the first epoch is left out of the time to the target, and every wall-clock outcome
says that its trials shared a machine."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from test_sweep import PLACEMENT

from entropyflow.sweep import ray_tune, runner, stats
from entropyflow.sweep.events import RayOptions
from entropyflow.sweep.output import outcome_figure, summary_csv, summary_json
from entropyflow.sweep.render import render_summary
from entropyflow.sweep.runner import LAUNCH_ORDER, in_grid_order, launch_order, run_sweep
from entropyflow.sweep.spec import BASELINE, SweepSpec
from entropyflow.sweep.summary import SHARED, Timing, summarize, trial_summary

TRAIN = textwrap.dedent("""
    import os, time

    def train(config, report):
        log = config["params"]["log"]
        open(os.path.join(log, f"{time.time_ns()}-{config['cell']}-{config['seed']}"), "w").close()
        for epoch in range(1, config["epochs"] + 1):
            report(epoch=epoch, loss=1.0 / epoch + config["lambda"] + 0.01 * config["seed"])
""")


def grid(seeds: int = 10, **kw) -> SweepSpec:
    """The baseline and three λ cells (4 cells)."""
    return SweepSpec(
        lambdas=(0.0, 1e-3, 1e-2, 1e-1), placements=(PLACEMENT,), seeds=tuple(range(seeds)), epochs=3, metric="loss",
        **kw,
    )  # fmt: skip


def by_seed(spec: SweepSpec, order: list[int]) -> list[list[int]]:
    """The launch order as, per seed, the cell indices in the order they start."""
    n = len(spec.cells)
    return [[i // len(spec.seeds) for i in order[k * n : (k + 1) * n]] for k in range(len(spec.seeds))]


# --- (a) the interleaved order ---------------------------------------------------------------------------


def test_the_launch_order_is_seed_by_seed_with_the_cells_shuffled():
    spec = grid()
    order = launch_order(spec)
    assert sorted(order) == list(range(40))  # every trial once
    n_seeds = len(spec.seeds)
    for k in range(n_seeds):  # seed-major: the four trials of seed k, then those of seed k + 1
        assert {i % n_seeds for i in order[4 * k : 4 * k + 4]} == {k}
    perms = by_seed(spec, order)
    assert all(sorted(p) == [0, 1, 2, 3] for p in perms)  # each seed has every cell once
    assert len({tuple(p) for p in perms}) >= 5  # 10 draws of 24 orders: the seeds differ
    # the baseline (cell 0) is not always first, nor never: over five grids (50 seeds; a fixed draw
    # per grid, so several grids keep this from resting on one draw) it is first about 1 in 4
    first = [p[0] for epochs in range(1, 6) for p in by_seed(spec, launch_order(replace(spec, epochs=epochs)))]
    assert 5 <= first.count(0) <= 20, first
    assert min(first.count(c) for c in range(4)) >= 5  # every cell gets its turn at the front


def test_the_launch_order_is_fixed_by_the_grid_and_documented():
    spec = grid()
    assert launch_order(spec) == launch_order(replace(spec))  # a re-run or --resume: the same order
    assert launch_order(spec) != launch_order(replace(spec, epochs=4))  # another grid, another draw
    # the rule as LAUNCH_ORDER and docs/training.md state it
    fingerprint = spec.fingerprint()
    for k, seed in enumerate(spec.seeds):
        cells = list(range(4))
        random.Random(int(hashlib.sha256(f"{fingerprint}/{seed}".encode()).hexdigest()[:16], 16)).shuffle(cells)
        assert by_seed(spec, launch_order(spec))[k] == cells
    assert LAUNCH_ORDER.startswith("interleaved: seed by seed")


# --- (b) outcomes back in grid order ---------------------------------------------------------------------


def fake_run(launched: list[list[tuple[str, int]]], unfinished: set[tuple[str, int]] = frozenset()):
    """ray_tune.run without Ray: each trial's loss encodes its λ and seed; ``unfinished`` trials
    never send their last result (so --resume runs them again)."""

    def run(trials, train, storage, metric, options, recorder, on_event=None, stop=None):
        launched.append([(t["cell"], t["seed"]) for t in trials])
        for t in trials:
            recorder.start(t["cell"], t["seed"])
            rows = [
                {"epoch": e, "wall_s": 0.5 * e, metric: 1.0 / e + t["lambda"] + 0.01 * t["seed"]} for e in (1, 2, 3)
            ]
            recorder.add(t["cell"], t["seed"], rows, done=(t["cell"], t["seed"]) not in unfinished)
        return recorder.outcomes(trials)  # in the order it was given: the launch order

    return run


def setup_train(tmp: Path) -> str:
    (tmp / "mytrain.py").write_text(TRAIN)
    (tmp / "log").mkdir(exist_ok=True)
    return f"{tmp / 'mytrain.py'}:train"


def expected_loss(cell, seed: int) -> float:
    return 1.0 / 3 + cell.lam + 0.01 * seed


def test_outcomes_launched_interleaved_come_back_in_grid_order(tmp_path, monkeypatch):
    launched: list[list[tuple[str, int]]] = []
    monkeypatch.setattr(ray_tune, "run", fake_run(launched))
    spec = grid(seeds=5, params={"log": str(tmp_path / "log")})
    result = run_sweep(setup_train(tmp_path), spec, out=tmp_path / "report", ray_options=RayOptions(cpus=1))
    grid_keys = [(c.name, s) for c in spec.cells for s in spec.seeds]
    assert launched == [[grid_keys[i] for i in launch_order(spec)]]
    assert launched[0][:4] != grid_keys[:4]  # not the grid order (all baseline first)
    for c in result.summary.cells:
        assert [t.seed for t in c.trials] == list(spec.seeds)
        for t in c.trials:  # every trial carries its own rows, not its launch neighbour's
            assert t.values["final"] == pytest.approx(expected_loss(c.cell, t.seed))
    # the records are still named by grid index
    record = json.loads((tmp_path / "report/tune/trials/trial-000006.json").read_text())
    assert (record["cell"], record["seed"]) == grid_keys[6]
    doc = json.loads((tmp_path / "report/summary.json").read_text())
    assert doc["timing"]["where"] == "local Ray with 1 CPU, 1 CPU per trial" and doc["timing"]["at_once"] == 1
    assert doc["provenance"]["launch_order"] == LAUNCH_ORDER


def test_resume_launches_the_unfinished_trials_in_the_same_order(tmp_path, monkeypatch):
    spec = grid(seeds=5, params={"log": str(tmp_path / "log")})
    grid_keys = [(c.name, s) for c in spec.cells for s in spec.seeds]
    unfinished = {grid_keys[1], grid_keys[7], grid_keys[12], grid_keys[18]}
    launched: list[list[tuple[str, int]]] = []
    train = setup_train(tmp_path)
    monkeypatch.setattr(ray_tune, "run", fake_run(launched, unfinished))
    first = run_sweep(train, spec, out=tmp_path / "report", ray_options=RayOptions(cpus=1))
    assert len(first.failed) == 4
    monkeypatch.setattr(ray_tune, "run", fake_run(launched))
    second = run_sweep(train, spec, out=tmp_path / "report", ray_options=RayOptions(cpus=1), resume=True)
    assert launched[1] == [k for k in launched[0] if k in unfinished]  # the launch order, minus what finished
    assert second.complete
    for c in second.summary.cells:
        assert [t.values["final"] for t in c.trials] == pytest.approx([expected_loss(c.cell, s) for s in spec.seeds])


def test_in_grid_order_maps_by_cell_and_seed():
    from entropyflow.sweep.events import TrialOutcome

    trials = [{"cell": c, "seed": s} for c in ("baseline", "p") for s in (0, 1)]
    todo = [trials[3], trials[0], trials[2]]
    ran = [TrialOutcome(t["cell"], t["seed"], ({"epoch": 1, "k": n},), None) for n, t in enumerate(todo)]
    done = {1: _Done(TrialOutcome("baseline", 1, (), None))}
    out = in_grid_order(trials, done, todo, ran)  # type: ignore[arg-type]
    assert [(o.cell, o.seed) for o in out] == [("baseline", 0), ("baseline", 1), ("p", 0), ("p", 1)]
    assert [o.rows[0]["k"] if o.rows else None for o in out] == [1, None, 2, 0]


class _Done:
    def __init__(self, outcome):
        self._outcome = outcome

    def outcome(self):
        return self._outcome


# --- (c) the time to the target, first epoch excluded ----------------------------------------------------


def rows(values, wall):
    return [{"epoch": e, "loss": v, "wall_s": w} for e, (v, w) in enumerate(zip(values, wall, strict=True), 1)]


def test_seconds_to_target_starts_at_the_end_of_epoch_1():
    spec = grid(target=0.3)
    wall = [10.0, 10.6, 11.3, 11.9]
    t = trial_summary("c", 0, rows([0.9, 0.5, 0.3, 0.2], wall), spec)
    assert t.values["epochs_to_target"] == 3.0 and t.values["seconds_to_target"] == pytest.approx(1.3)
    shuffled = rows([0.9, 0.5, 0.3, 0.2], wall)[::-1]  # rows arrive in any order: sorted by epoch
    assert trial_summary("c", 0, shuffled, spec).values["seconds_to_target"] == pytest.approx(1.3)
    at_once = trial_summary("c", 0, rows([0.25, 0.2, 0.1, 0.1], wall), spec)
    assert at_once.values["epochs_to_target"] == 1.0 and at_once.values["seconds_to_target"] == 0.0
    censored = trial_summary("c", 0, rows([0.9, 0.8, 0.7, 0.6], wall), replace(spec, epochs=4))
    assert censored.values["epochs_to_target"] == 5.0 and censored.values["seconds_to_target"] is None
    assert not censored.reached


# --- (d) a first-epoch cost on the baseline alone is not an effect ---------------------------------------


def simulated(spec: SweepSpec, first_cost: dict[str, float]):
    """Every cell's trials with the same loss curve (no true effect), 0.6 s per epoch with noise;
    the trials of the cells in ``first_cost`` pay that many seconds more in epoch 1 (a fresh worker)."""
    rng = np.random.default_rng(2121)
    values = [0.9, 0.6, 0.4, 0.25, 0.2, 0.15]
    out = []
    for cell in spec.cells:
        for seed in spec.seeds:
            wall = np.cumsum(0.6 + rng.normal(0.0, 0.05, size=len(values)))
            wall[:] += first_cost.get(cell.name, 0.0)
            out.append((cell.name, seed, rows(values, [float(w) for w in wall])))
    return out


def old_definition(t, trial_rows):
    """seconds_to_target as it was: the raw wall_s of the target epoch (first epoch included)."""
    hit = int(t.values["epochs_to_target"]) - 1
    return replace(t, values={**t.values, "seconds_to_target": trial_rows[hit]["wall_s"]})


def test_a_first_epoch_cost_on_the_baseline_no_longer_makes_a_cell_better():
    spec = SweepSpec(lambdas=(0.0, 1e-3), placements=(PLACEMENT,), seeds=tuple(range(10)), epochs=6, metric="loss",
                     target=0.3, primary="seconds_to_target")  # fmt: skip
    trials = simulated(spec, {BASELINE: 10.0})
    new = [trial_summary(c, s, r, spec) for c, s, r in trials]
    old = [old_definition(t, r) for t, (_, _, r) in zip(new, trials, strict=True)]
    cell = "p λ=0.001"
    before = summarize(spec, old).cell(cell)
    after = summarize(spec, new).cell(cell)
    assert before.versus["seconds_to_target"].mean == pytest.approx(-10.0, abs=0.2)  # the worker, not the λ
    assert stats.kind(before.verdict["seconds_to_target"]) == "better"
    assert abs(after.versus["seconds_to_target"].mean) < 0.2
    assert stats.kind(after.verdict["seconds_to_target"]) == "no detectable effect"
    assert after.versus["seconds_to_target"].n == 10
    assert summarize(spec, new).best is None


# --- (e) the wall clock said to be shared ----------------------------------------------------------------

TIMING = Timing("local Ray with 2 CPUs, 1 CPU per trial", 2, LAUNCH_ORDER)
CAVEAT = "trials shared a machine (local Ray with 2 CPUs, 1 CPU per trial: up to 2 trials at once)"


def summary_of(spec: SweepSpec, timing: Timing | None = TIMING):
    trials = [trial_summary(c, s, r, spec) for c, s, r in simulated(spec, {})]
    return summarize(spec, trials, timing=timing) if timing else summarize(spec, trials)


def test_summary_json_says_how_the_clock_ran():
    spec = grid(seeds=6, target=0.3)
    summary = summary_of(replace(spec, epochs=6))
    doc = json.loads(summary_json(summary, [], {}))
    timing = doc["timing"]
    assert timing["shared"] == CAVEAT and timing["at_once"] == 2 and timing["first_epoch_excluded"] is True
    assert timing["launch_order"] == LAUNCH_ORDER
    assert "minus wall_s at the first epoch" in timing["seconds_to_target"]
    wall = doc["statistics"]["wall_clock"]["seconds_to_target"]
    assert "first epoch" in wall and CAVEAT in wall
    rows = list(csv.DictReader(io.StringIO(summary_csv(summary).decode())))
    assert {r["seconds_to_target_timing"] for r in rows} == {CAVEAT}
    # exploratory here: its verdict stays "exploratory", the caveat is in its own column
    assert {r["seconds_to_target_verdict"] for r in rows} == {"", "exploratory"}


def test_a_wall_clock_verdict_says_the_trials_shared_a_machine():
    spec = replace(grid(seeds=6, target=0.3, primary="seconds_to_target"), epochs=6)
    summary = summary_of(spec)
    for c in summary.cells[1:]:
        assert c.verdict["seconds_to_target"].endswith(f"; {SHARED}")
        assert stats.kind(c.verdict["seconds_to_target"]) in ("no detectable effect", "better", "worse")
    assert summary.reason.endswith(CAVEAT)
    console = Console(record=True, width=400)
    render_summary(summary, console)
    text = console.export_text()
    assert f"({SHARED}; first epoch excluded: see below)" in text
    assert "from the end of epoch 1 to the end of the epoch that reached it" in text and CAVEAT in text
    assert "The time after epoch 1 to reach loss ≤ 0.3" in text
    title = outcome_figure(summary).get_suptitle().replace("\n", " ")
    assert f"({SHARED}: local Ray with 2 CPUs, 1 CPU per trial)" in title
    # without a target there is no wall-clock outcome and nothing to caveat
    plain = summary_of(replace(spec, target=None, primary=None))
    assert "timing" not in summary_rows_header(plain) and json.loads(summary_json(plain, [], {}))["statistics"][
        "wall_clock"
    ] == {}  # fmt: skip
    console = Console(record=True, width=400)
    render_summary(plain, console)
    assert SHARED not in console.export_text()


def summary_rows_header(summary) -> str:
    return summary_csv(summary).decode().splitlines()[0]


def test_summarize_without_timing_still_says_shared():
    summary = summary_of(replace(grid(seeds=6, target=0.3), epochs=6), timing=None)
    assert summary.timing.caveat() == "trials shared a machine (not recorded)"


def test_where_the_trials_ran():
    assert runner.timing(RayOptions(cpus=2), 40) == Timing("local Ray with 2 CPUs, 1 CPU per trial", 2, LAUNCH_ORDER)
    assert runner.timing(RayOptions(cpus=2, cpus_per_trial=0.5), 40).at_once == 4
    assert runner.timing(RayOptions(cpus=8), 3).at_once == 3  # no more at once than there are trials
    cluster = runner.timing(RayOptions(address="ray://head:10001"), 40)
    assert cluster.at_once is None
    assert cluster.caveat() == "trials shared a machine (the Ray cluster at ray://head:10001, 1 CPU per trial)"


# --- (f) Tune starts the trials in the order it is given -------------------------------------------------


@pytest.mark.slow
def test_tune_starts_the_trials_in_the_launch_order(tmp_path, monkeypatch):
    """One CPU: one trial at a time, so the order of the markers the trials write is the order
    Tune started them in. Its own Ray temp dir, so that a Ray someone started on this machine is
    not joined (and a short one: Ray's socket paths have a length limit)."""
    ray_tmp = tempfile.mkdtemp(prefix="eft")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        spec = replace(grid(seeds=3, params={"log": str(tmp_path / "log")}), lambdas=(0.0, 1e-2), epochs=1)
        result = run_sweep(setup_train(tmp_path), spec, out=tmp_path / "report", ray_options=RayOptions(cpus=1))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.complete
    started = [name.split("-", 1)[1] for name in sorted(os.listdir(tmp_path / "log"))]
    grid_keys = [f"{c.name}-{s}" for c in spec.cells for s in spec.seeds]
    assert started == [grid_keys[i] for i in launch_order(spec)]
