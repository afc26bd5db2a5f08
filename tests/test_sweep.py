"""entropyflow sweep: the statistics against scipy, the pairing of trials by seed, and real local
Ray Tune sweeps through the command line (end to end, a failing trial, resuming a killed sweep)."""

from __future__ import annotations

import csv
import json
import signal
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from hostile import finish, run, start
from scipy import stats as sps

from entropyflow import analyze
from entropyflow.sweep import stats
from entropyflow.sweep.spec import Cell, SweepSpec, placements_from, with_lambda
from entropyflow.sweep.stats import stop_epoch
from entropyflow.sweep.summary import summarize, trial_summary
from entropyflow.sweep.tasks import TASKS

# a real placement (the first conv of a one-layer net), named "p"
PLACEMENT = replace(
    placements_from(analyze(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), input_size=(1, 5, 5)), ["first"])[0],
    name="p",
)

# --- statistics (pure) ------------------------------------------------------------------------------

CELL = [0.912, 0.905, 0.921, 0.899, 0.915, 0.908, 0.917, 0.902, 0.911, 0.920]
BASE = [0.903, 0.901, 0.910, 0.899, 0.904, 0.900, 0.911, 0.898, 0.906, 0.909]


def test_paired_tests_equal_scipy_on_recorded_numbers():
    effect = stats.paired(CELL, BASE)
    d = np.array(CELL) - np.array(BASE)
    assert effect.n == 10 and effect.mean == pytest.approx(d.mean(), abs=1e-15)
    assert effect.se == pytest.approx(d.std(ddof=1) / np.sqrt(10), rel=1e-12)
    assert effect.p_t == pytest.approx(sps.ttest_rel(CELL, BASE).pvalue, rel=1e-12)
    assert effect.p_wilcoxon == pytest.approx(sps.wilcoxon(CELL, BASE).pvalue, rel=1e-12)
    # the 95 % t interval of the paired differences (issue 21: the percentile bootstrap undercovered)
    ci = sps.ttest_rel(CELL, BASE).confidence_interval(0.95)
    assert (effect.ci_low, effect.ci_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert effect.ci_low < effect.mean < effect.ci_high


def test_identical_runs_and_constant_shifts():
    same = stats.paired(BASE, BASE)
    assert same.mean == 0 and same.p_t == 1.0 and same.p_wilcoxon == 1.0
    shifted = stats.paired([b + 0.01 for b in BASE], BASE)  # the same shift on all 10 seeds
    assert shifted.mean == pytest.approx(0.01) and shifted.p_t == pytest.approx(2 * 0.5**10)
    # exactly the same shift on every seed (one test image of 360): the t statistic is infinite, and an
    # exact sign test says how unlikely n equal signs are: 2 * 0.5**n, not certainty
    base = [k / 360 for k in (350, 351, 352)]
    one_image = stats.paired([b + 1 / 360 for b in base], base)
    assert one_image.p_t == 0.25 and stats.verdict(stats.Paired(**{**one_image.__dict__, "p_holm": 0.25}), False) == (
        "too few pairs for a verdict"  # 3 pairs: below stats.MIN_PAIRS (issue 21)
    )
    ten = stats.paired([1.0] * 10, [0.5] * 10)
    assert ten.p_t == pytest.approx(2 * 0.5**10)


def test_holm_against_a_worked_example():
    # Holm (1979): sorted p 0.005, 0.01, 0.03, 0.04 with m = 4 → 0.02, 0.03, 0.06, 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([None, 0.2, None]) == [None, 0.2, None]


def test_trial_outcomes():
    rows = [
        {"epoch": e, "val_loss": v, "wall_s": 0.5 * e} for e, v in enumerate([0.9, 0.5, 0.3, 0.31, 0.32, 0.29, 0.3], 1)
    ]
    spec = SweepSpec(lambdas=(0.0,), placements=(), seeds=(0,), epochs=7, metric="val_loss", target=0.3, patience=2)
    t = trial_summary("c", 0, rows, spec)
    assert t.values["final"] == 0.3 and t.values["best"] == 0.29
    assert t.values["epochs_to_target"] == 3.0 and t.values["seconds_to_target"] == 1.0 and t.reached
    assert t.values["stop_epoch"] == 5.0  # no improvement at epochs 4 and 5
    assert stop_epoch([1, 2, 3, 4], 2, "max") == 4  # never stalls: its last epoch
    never = trial_summary("c", 0, rows, replace(spec, target=0.1))
    # never reached: censored one past the budget (slower than any run that reached it); no time
    assert never.values["epochs_to_target"] == 8.0 and never.values["seconds_to_target"] is None
    assert not never.reached
    assert spec.outcomes == ("final", "best", "epochs_to_target", "seconds_to_target", "stop_epoch")
    assert spec.primary_outcome == "epochs_to_target"


def test_a_cell_that_misses_the_target_is_not_made_faster_by_dropping_seeds():
    spec = SweepSpec(lambdas=(0.0, 1.0), placements=(PLACEMENT,), seeds=tuple(range(6)), epochs=10, metric="loss",
                     target=0.5)  # fmt: skip
    base = [trial_summary("baseline", s, curve([1.0, 0.8, 0.6, 0.4]), spec) for s in range(6)]  # epoch 4
    # the cell reaches the target at epoch 2 in two seeds, and never in the other four
    cell = [trial_summary("p λ=1", s, curve([0.9, 0.4] if s < 2 else [0.9, 0.8, 0.7, 0.6]), spec) for s in range(6)]
    summary = summarize(spec, base + cell)
    c = summary.cell("p λ=1")
    assert c.reached == 2 and summary.cell("baseline").reached == 6
    effect = c.versus["epochs_to_target"]
    assert effect.n == 6 and effect.mean == pytest.approx((2 * (2 - 4) + 4 * (11 - 4)) / 6)
    assert c.verdict["epochs_to_target"] != "better"
    assert c.versus["seconds_to_target"].n == 2  # wall time only where both reached it


def curve(values):
    return [{"epoch": e, "loss": v, "wall_s": float(e)} for e, v in enumerate(values, 1)]


# --- pairing: the same seed is the same run, with and without the term ---------------------------


def collect(train, config):
    rows = []
    train(config, lambda *, epoch, **m: rows.append((epoch, m)))
    return rows


def test_a_seed_is_the_same_run_bit_for_bit():
    task = TASKS["digits-autoencoder"]
    from entropyflow.sweep.runner import task_spec

    spec = task_spec("digits-autoencoder", seeds=2, epochs=3, lambdas=(0.0, 1e-2))
    placement = spec.placements[0]
    params = {"latent": 32}
    baseline = Cell("baseline", 0.0, None, None).trial_config(1, 3, params)
    zero = Cell("dense-first λ=0", 0.0, "dense-first", with_lambda(placement.config, 0.0)).trial_config(1, 3, params)
    term = Cell("dense-first λ=0.01", 1e-2, "dense-first", with_lambda(placement.config, 1e-2)).trial_config(
        1, 3, params
    )
    torch.set_num_threads(1)
    a, b = collect(task.train, baseline), collect(task.train, baseline)
    assert a == b  # reproducible
    z = collect(task.train, zero)
    assert [
        (e, {k: v for k, v in m.items() if k != "entropy_term"}) for e, m in z
    ] == a  # the term at λ = 0 changes no bit
    t = collect(task.train, term)
    assert t[0][1]["val_loss"] != a[0][1]["val_loss"]  # and at λ = 0.01 it does
    other_seed = collect(task.train, Cell("baseline", 0.0, None, None).trial_config(2, 3, params))
    assert other_seed[0][1]["val_loss"] != a[0][1]["val_loss"]


# --- real Ray Tune sweeps through the CLI -----------------------------------------------------------

TRAIN = textwrap.dedent("""
    import os, time, torch
    import torch.nn.functional as F
    import entropyflow.sweep as sweep

    def train(config, report):
        log = config["params"]["log"]
        with open(os.path.join(log, f"start-{config['cell']}-{config['seed']}-{os.getpid()}-{time.time_ns()}"), "w"):
            pass
        if config["params"].get("fail") and config["lambda"] > 0 and config["seed"] == 1:
            raise RuntimeError("planted failure in seed 1")
        gen = sweep.seed(config)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
        reg = sweep.regularizer(model, config)
        x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        y = (x.mean((1, 2, 3)) > 0).long()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(config["epochs"]):
            for idx in torch.randperm(64, generator=gen).split(16):
                opt.zero_grad()
                (F.cross_entropy(model(x[idx]), y[idx]) + sweep.entropy_term(reg)).backward()
                opt.step()
            with torch.no_grad():
                loss = float(F.cross_entropy(model(x), y))
            time.sleep(config["params"].get("sleep", 0))
            report(epoch=epoch + 1, val_loss=1.0 if config["params"].get("plateau") and epoch else loss)
        with open(os.path.join(log, f"done-{config['cell']}-{config['seed']}"), "w"):
            pass
""")


@pytest.fixture
def user_train(tmp_path):
    f = tmp_path / "mytrain.py"
    f.write_text(TRAIN)
    (tmp_path / "log").mkdir()
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    torch.save(ref.state_dict(), tmp_path / "ref.pt")
    return f


def sweep_args(tmp_path, train, *extra):
    return (
        "sweep",
        f"{train}:train",
        "--lambdas",
        "0,1e-2",
        "--placements",
        "first",
        "--reference",
        tmp_path / "ref.pt",
        "--seeds",
        "2",
        "--epochs",
        "3",
        "--metric",
        "val_loss",
        "--cpus",
        "2",
        "--param",
        f"log={tmp_path / 'log'}",
        *extra,
    )


@pytest.mark.slow
def test_a_sweep_end_to_end_with_a_failing_trial(tmp_path, user_train):
    out = tmp_path / "report"
    r = run(*sweep_args(tmp_path, user_train, "--param", "fail=true", "--target", "0.6", "-o", out), timeout=300)
    assert r.rc == 3, r.err[-2000:]  # the report is written, and a failed trial is not a success (issue 21)
    assert "failed trial: first λ=0.01 seed 1:" in r.out and "planted failure in seed 1" in r.out
    rows = (out / "trials.csv").read_text().splitlines()
    assert (
        rows[0] == "cell,seed,epoch,wall_s,entropy_term,val_loss,error,layers"
        or rows[0] == "cell,seed,epoch,wall_s,val_loss,error,layers"
    )
    by_cell = {r.split(",")[0]: r.split(",")[-1] for r in rows[1:]}
    assert by_cell == {"baseline": "", "first λ=0.01": "0"}  # the conv '0' carried the term (issue 23)
    assert len(rows) == 1 + 3 * 3 + 1  # 3 trials × 3 epochs, and the failed trial's error row
    doc = json.loads((out / "summary.json").read_text())
    assert doc["schema"] == "entropyflow.sweep/1" and doc["spec"]["seeds"] == [0, 1]
    cells = {c["cell"]: c for c in doc["cells"]}
    assert set(cells) == {"baseline", "first λ=0.01"} and cells["first λ=0.01"]["failed"] == 1
    assert cells["first λ=0.01"]["outcomes"]["final"]["versus_baseline"]["n"] == 1  # only seed 0 is paired
    assert (out / "best.yaml").read_text().startswith("# entropyflow sweep: no λ config beats the baseline")
    assert {"learning_curves.png", "outcomes.png", "summary.csv"} <= {p.name for p in out.iterdir()}
    assert (out / "tune" / "sweep").is_dir()


@pytest.mark.slow
def test_patience_ends_trials_whose_metric_stalls(tmp_path, user_train):
    out = tmp_path / "report"
    args = [a for a in sweep_args(tmp_path, user_train, "--param", "plateau=true", "--patience", "2", "-o", out)]
    args[args.index("--epochs") + 1] = "6"
    r = run(*args, timeout=300)
    assert r.rc == 0, r.err[-2000:]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    # the loss is 1.0 from epoch 2 on, above epoch 1's (≈ 0.69): no improvement at epochs 2 and 3, so each
    # trial ends at epoch 3 of 6
    assert {(row["cell"], row["seed"]): 0 for row in rows}.keys() == {
        (c, s) for c in ("baseline", "first λ=0.01") for s in ("0", "1")
    }
    assert max(int(row["epoch"]) for row in rows) == 3 and len(rows) == 4 * 3
    doc = json.loads((out / "summary.json").read_text())
    assert doc["spec"]["patience"] == 2
    assert {c["cell"]: c["outcomes"]["stop_epoch"]["mean"] for c in doc["cells"]} == {
        "baseline": 3.0,
        "first λ=0.01": 3.0,
    }


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path, user_train):
    out = tmp_path / "report"
    args = sweep_args(tmp_path, user_train, "--param", "sleep=1.0", "-o", out)
    started = time.monotonic()
    p, o, e = start(*args)
    log = tmp_path / "log"
    while time.monotonic() - started < 240 and len(list(log.glob("done-*"))) < 2:
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    killed = finish(p, o, e, started)
    assert killed.rc == 143, killed.err[-1500:]
    done_before = {f.name for f in log.glob("done-*")}
    assert 2 <= len(done_before) < 4
    r = run(*args, "--resume", timeout=300)
    assert r.rc == 0, r.err[-2000:]
    starts = [f.name.split("-")[1:3] for f in log.glob("start-*")]
    for name in done_before:  # a trial that had finished was not started again
        cell, seed = name[len("done-") :].rsplit("-", 1)
        assert sum(1 for c, s in starts if c == cell and s == seed) == 1, (name, starts)
    assert len(list(log.glob("done-*"))) == 4
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 3
    other = run(*sweep_args(tmp_path, user_train, "--seeds", "3", "-o", out), "--resume")
    assert other.rc == 2 and "--resume needs the same training function and grid" in other.err


def test_without_ray_the_message_says_how_to_install_it(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    r = cli("sweep", "--task", "digits-cnn", "--seeds", "2", "--epochs", "1", "-o", tmp_path / "out")
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        "error: entropyflow sweep needs Ray Tune, which is not installed: pip install 'entropyflow[sweep]'"
    )
    assert not (tmp_path / "out").exists()
