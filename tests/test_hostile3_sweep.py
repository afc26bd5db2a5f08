"""Issue 19 (hostile inputs, round three): `entropyflow sweep` and its resume.

One real Ray run (module-scoped, shared by the tests of items 1, 4 and 5) resumes a sweep that
entropyflow's own driver recorded and that was then killed, with Tune's pickles planted in the
folder; everything else is refused before Ray starts, in process."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import signal
import textwrap
import time

import pytest
import torch
from hostile import baseline_peak_mib, run
from test_sweep import PLACEMENT

from entropyflow.errors import Interrupted
from entropyflow.sweep import ray_tune, records
from entropyflow.sweep.contract import ReportError, checked_rows, report_row
from entropyflow.sweep.events import TrialOutcome
from entropyflow.sweep.output import sweep_files
from entropyflow.sweep.spec import SweepSpec
from entropyflow.sweep.summary import summarize, trial_summary

EPOCHS = 3
# what each trial does ("λ/seed"): a NaN, a -1e308, epochs out of order, an epoch past --epochs
PLAN = {"0.01/0": "nan", "0.1/0": "huge", "0.1/1": "backwards", "0.1/2": "past"}

TRAIN = textwrap.dedent("""
    import os, time

    def train(config, report):
        lam, seed, log = config["lambda"], config["seed"], config["params"]["log"]
        open(os.path.join(log, f"start-{lam:g}-{seed}-{time.time_ns()}"), "w").close()
        plan = config["params"]["plan"].get(f"{lam:g}/{seed}", "ok")
        for epoch in range(1, config["epochs"] + 1):
            value = 1.0 / epoch + 0.01 * seed + lam
            if epoch == 2 and plan == "nan":
                value = float("nan")
            if epoch == 2 and plan == "huge":
                value = -1e308
            if epoch == 2 and plan == "past":
                report(epoch=12, val_loss=value)
            report(epoch=epoch, val_loss=value)
            if epoch == 2 and plan == "backwards":
                try:
                    report(epoch=1, val_loss=value)
                except ValueError:
                    pass  # swallowed: the trial fails all the same
""")

# what the killed first run had recorded: two finished trials (recognisable values), one cut short
FINISHED = {
    ("baseline", 0): [0.5, 0.4, 0.3],
    ("first λ=0.01", 1): [0.7, 0.6, 0.55],
    ("first λ=0.01", 2): [0.8, 0.7, 0.6],
}
PARTIAL = ("baseline", 1)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Payload:
    """Unpickling this creates the marker file (what a planted tuner.pkl would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def args(tmp, *extra):
    return (
        "sweep",
        f"{tmp / 'mytrain.py'}:train",
        "--lambdas",
        "0,0.01,0.1",
        "--placements",
        "first",
        "--reference",
        tmp / "ref.pt",
        "--seeds",
        "3",
        "--epochs",
        str(EPOCHS),
        "--metric",
        "val_loss",
        "--cpus",
        "2",
        "--param",
        f"log={tmp / 'log'}",
        "--param",
        f"plan={json.dumps(PLAN)}",
        "-o",
        tmp / "report",
        *extra,
    )


def setup_folder(tmp):
    (tmp / "mytrain.py").write_text(TRAIN)
    (tmp / "log").mkdir()
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    torch.save(ref.state_dict(), tmp / "ref.pt")


def killed_first_run(tmp, cli, monkeypatch):
    """The first run, with the driver's own recorder and Ray replaced by what it saw before SIGTERM."""

    def crashed(trials, train, storage, metric, options, recorder, on_event=None, stop=None):
        for (cell, seed), values in FINISHED.items():
            recorder.start(cell, seed)
            rows = [{"epoch": e, "wall_s": 0.1 * e, "val_loss": v} for e, v in enumerate(values, 1)]
            recorder.add(cell, seed, rows, done=True)
        recorder.start(*PARTIAL)
        recorder.add(*PARTIAL, [{"epoch": 1, "wall_s": 0.1, "val_loss": 9.0}])
        raise Interrupted(signal.SIGTERM, "continue with --resume")

    with monkeypatch.context() as m:
        m.setattr(ray_tune, "run", crashed)
        r = cli(*args(tmp))
    assert r.exit_code == 143, r.stderr


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A killed sweep with Tune's pickles planted in its folder, resumed with real Ray."""
    from typer.testing import CliRunner

    from entropyflow.cli import app

    tmp = tmp_path_factory.mktemp("resume")
    setup_folder(tmp)
    runner = CliRunner()
    monkeypatch = pytest.MonkeyPatch()

    def cli(*a):
        return runner.invoke(app, [str(x) for x in a], prog_name="entropyflow")

    killed_first_run(tmp, cli, monkeypatch)
    tune = tmp / "report" / "tune"
    marker = tmp / "pickle-ran"
    bomb = pickle.dumps(Payload(marker))
    trial_dir = tune / "sweep" / "baseline-seed1-00001"
    trial_dir.mkdir(parents=True)
    for f in ("sweep/tuner.pkl", "sweep/trainable.pkl", "sweep/baseline-seed1-00001/params.pkl", "resume-1/tuner.pkl"):
        (tune / f).parent.mkdir(parents=True, exist_ok=True)
        (tune / f).write_bytes(bomb)
    (tune / "sweep" / "experiment_state-2024-01-01_00-00-00.json").write_text('{"trial_data": []}')
    finished_before = {p.name: sha(p) for p in (tune / "trials").iterdir()}
    started = time.monotonic()
    r = run(*args(tmp, "--resume"), timeout=400)
    return tmp, r, marker, finished_before, time.monotonic() - started


def rows_of(tmp):
    return list(csv.DictReader((tmp / "report" / "trials.csv").open()))


def starts(tmp):
    return sorted("-".join(p.name.split("-")[1:3]) for p in (tmp / "log").glob("start-*"))


# --- item 1: --resume never unpickles, runs only what did not finish, counts each epoch once ---------


@pytest.mark.slow
def test_resume_reads_its_own_json_never_a_planted_pickle(resumed):
    tmp, r, marker, finished_before, seconds = resumed
    assert r.rc == 3, r.err[-3000:]  # two trials break the report contract: failed trials exit 3 (issue 21)
    assert not marker.exists()  # no tuner.pkl / trainable.pkl / params.pkl was loaded
    assert "Traceback" not in r.err + r.out, r.err[-3000:]
    # the finished trials were not started again; the cut-short one and the never-started ones were, once
    assert starts(tmp) == sorted(["0-1", "0-2", "0.01-0", "0.1-0", "0.1-1", "0.1-2"])
    rows = rows_of(tmp)
    by_trial: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["epoch"]:
            by_trial.setdefault((row["cell"], row["seed"]), []).append(row["epoch"])
    for key, epochs in by_trial.items():
        assert len(epochs) == len(set(epochs)), key  # each (trial, epoch) once
    assert by_trial[("baseline", "1")] == ["1", "2", "3"]  # the partial run's epoch 1 (9.0) is gone
    assert "9.0" not in {row["val_loss"] for row in rows if row["cell"] == "baseline" and row["seed"] == "1"}
    kept = [row["val_loss"] for row in rows if row["cell"] == "baseline" and row["seed"] == "0"]
    assert kept == ["0.5", "0.4", "0.3"]  # the finished trial's recorded rows, not a re-run
    doc = json.loads((tmp / "report" / "summary.json").read_text())
    base = next(c for c in doc["cells"] if c["cell"] == "baseline")
    assert [t["epochs"] for t in base["trials"]] == [3, 3, 3]
    assert doc["provenance"]["trials_run"] == 6 and doc["provenance"]["resumed"] is True
    tune = tmp / "report" / "tune"
    assert (tune / "resume-2").is_dir()  # a new Tune experiment, beside the planted ones
    for name, digest in finished_before.items():  # finished records are left as they were
        if name in {records.record_name(0), records.record_name(4), records.record_name(5)}:
            assert sha(tune / "trials" / name) == digest


@pytest.mark.slow
def test_resume_refuses_a_foreign_or_corrupted_tune_folder(tmp_path, cli, monkeypatch):
    setup_folder(tmp_path)
    killed_first_run(tmp_path, cli, monkeypatch)
    trials = tmp_path / "report" / "tune" / "trials"
    monkeypatch.setattr(ray_tune, "run", lambda *a, **k: pytest.fail("Ray must not start"))
    record = trials / records.record_name(0)
    good = record.read_bytes()
    cases = {
        b'{"trial": 0, "trial": 1}': 'is damaged (the key "trial" appears twice',
        good.replace(b'"finished"', b'"done"'): "has an unknown state or error; remove it to run that trial again",
        good.replace(b'"seed": 0', b'"seed": 2'): "belongs to another trial or grid; remove it to run that trial again",
        good.replace(
            b'"epoch": 2', b'"epoch": 1'
        ): "has a bad row (report(epoch=1) after epoch 1: each epoch is reported",
        good[: len(good) // 2]: "is damaged (",
    }
    for content, expected in cases.items():
        record.write_bytes(content)
        r = cli(*args(tmp_path, "--resume"))
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"cannot resume: {record} {expected}" in r.stderr, r.stderr
    record.write_bytes(good)
    (trials / "tuner.pkl").write_bytes(b"\x80\x04N.")
    r = cli(*args(tmp_path, "--resume"))
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: cannot resume: {trials / 'tuner.pkl'} is not a trial record of this sweep: "
        "remove it, or use another --out"
    )


# --- item 2: the saved grid is read strictly and within a size bound ---------------------------------


@pytest.mark.slow
def test_a_corrupted_or_huge_grid_file_is_refused(tmp_path, cli, monkeypatch):
    setup_folder(tmp_path)
    killed_first_run(tmp_path, cli, monkeypatch)
    saved = tmp_path / "report" / "tune" / records.SPEC_FILE
    monkeypatch.setattr(ray_tune, "run", lambda *a, **k: pytest.fail("Ray must not start"))
    for content, expected in {
        b'{"train": "x", "fingerprint": NaN}': "is damaged (NaN is not a JSON number)",
        b"[1, 2": "is damaged (Expecting",
        b"\xff\xfe": "is damaged (not UTF-8 text)",
        b'["not", "a", "grid"]': "is not an entropyflow sweep's grid",
    }.items():
        saved.write_bytes(content)
        r = cli(*args(tmp_path, "--resume"))
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"error: cannot resume: {saved} {expected}" in r.stderr
    # 3 GiB (sparse): refused from its size, before a byte is read, in a process of its own
    with saved.open("wb") as f:
        f.truncate(3 << 30)
    before = sha(tmp_path / "ref.pt")
    r = run(*args(tmp_path, "--resume"), timeout=120)
    assert r.rc == 2 and r.one_line_error, r.err
    assert (
        f"cannot resume: {saved} is damaged (3,221,225,472 bytes, more than the 64 MiB such a file may have)" in r.err
    )
    assert r.peak_mib < baseline_peak_mib() + 400  # read whole it took 6.9 GiB
    assert saved.stat().st_size == 3 << 30 and sha(tmp_path / "ref.pt") == before  # nothing changed


# --- item 3: resources are refused when the options are parsed -------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--cpus-per-trial", "-1", "--cpus-per-trial must be from 0.0001 to 65536 (got -1)"),
        ("--cpus-per-trial", "0", "--cpus-per-trial must be from 0.0001 to 65536 (got 0)"),
        ("--cpus-per-trial", "nan", "--cpus-per-trial must be from 0.0001 to 65536 (got nan)"),
        ("--gpus-per-trial", "-0.5", "--gpus-per-trial must be 0 or from 0.0001 to 1024 (got -0.5)"),
        ("--gpus-per-trial", "inf", "--gpus-per-trial must be 0 or from 0.0001 to 1024 (got inf)"),
        ("--gpus-per-trial", "1.5", "--gpus-per-trial above 1 must be a whole number of GPUs (got 1.5)"),
        ("--cpus", "0", "--cpus must be a whole number from 1 to 65536 (got 0)"),
        ("--cpus", "-3", "--cpus must be a whole number from 1 to 65536 (got -3)"),
        ("--cpus-per-trial", "4", "--cpus-per-trial 4 is more than --cpus 2: no trial could start"),
    ],
)
def test_bad_resources_are_refused_at_option_parsing(tmp_path, cli, monkeypatch, option, value, message):
    setup_folder(tmp_path)
    monkeypatch.setattr(ray_tune, "run", lambda *a, **k: pytest.fail("Ray must not start"))
    extra = [a for a in args(tmp_path)]
    if option == "--cpus":
        extra[extra.index("--cpus") + 1] = value
    else:
        extra += [option, value]
    started = time.monotonic()
    r = cli(*extra)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip() == f"error: {message}"
    assert not (tmp_path / "report" / "tune").exists()  # refused before the sweep's folder was made
    assert time.monotonic() - started < 10


# --- item 4: a −1e308 metric crashes nothing and yields no verdict ------------------------------------


@pytest.mark.slow
def test_a_huge_metric_is_kept_but_never_summarised(resumed):
    tmp, r, *_ = resumed
    assert r.rc == 3, r.err[-3000:]  # the resumed sweep has failed trials (issue 21: exit 3)
    verdict = "n/a: 1 trial reported -1e308 (beyond ±1e100)"
    assert verdict in r.out
    doc = json.loads((tmp / "report" / "summary.json").read_text())
    cell = next(c for c in doc["cells"] if c["cell"] == "first λ=0.1")
    assert {o["verdict"] for o in cell["outcomes"].values()} == {verdict}
    assert cell["outcomes"]["final"]["mean"] is None and cell["outcomes"]["final"]["versus_baseline"]["n"] == 0
    huge = next(t for t in cell["trials"] if t["seed"] == 0)
    assert huge["unusable"] == "-1e+308" and huge["final"] is None
    assert "-1e+308" in {row["val_loss"] for row in rows_of(tmp)}  # shown as reported
    assert {"learning_curves.png", "outcomes.png"} <= {p.name for p in (tmp / "report").iterdir()}


@pytest.mark.slow
def test_huge_and_non_finite_metrics_do_not_break_the_figures():
    # the pure path the crash took (every figure after every trial): values at and past the bound
    spec = SweepSpec(lambdas=(0.0, 1.0), placements=(PLACEMENT,), seeds=(0, 1, 2), epochs=2, metric="m", target=0.5)
    for bad in (-1e308, 1e308, float("inf"), float("nan"), -1e100, 5e-324):
        outcomes = [
            TrialOutcome(
                cell,
                s,
                tuple(
                    {"epoch": e, "wall_s": e, "m": bad if (cell, s, e) == ("p λ=1", 0, 2) else 1.0 / e + s}
                    for e in (1, 2)
                ),
                None,
            )
            for cell in ("baseline", "p λ=1")
            for s in range(3)
        ]
        summary = summarize(spec, [trial_summary(o.cell, o.seed, o.rows, spec) for o in outcomes])
        files = sweep_files(summary, outcomes, {})
        assert files["outcomes.png"].startswith(b"\x89PNG") and files["learning_curves.png"].startswith(b"\x89PNG")
        na = summary.cell("p λ=1").verdict["final"].startswith("n/a")
        assert na == (abs(bad) > 1e100 or bad != bad), bad


# --- item 5: epochs out of order or past --epochs fail the trial; NaN yields no verdict ---------------


@pytest.mark.slow
def test_bad_epochs_fail_the_trial_and_nan_has_no_verdict(resumed):
    tmp, r, *_ = resumed
    assert r.rc == 3, r.err[-3000:]
    out = " ".join(r.out.split())
    assert (
        "failed trial: first λ=0.1 seed 1: rejected: report(epoch=1) after epoch 2: each epoch is reported once, "
        "in increasing order" in out
    )
    assert "failed trial: first λ=0.1 seed 2: rejected: report(epoch=12) is past the sweep's last epoch (3)" in out
    rows = rows_of(tmp)
    epochs = {s: [row["epoch"] for row in rows if row["cell"] == "first λ=0.1" and row["seed"] == s] for s in "12"}
    assert epochs == {"1": ["1", "2", ""], "2": ["1", ""]}  # the rows before the bad call, then the error row
    doc = json.loads((tmp / "report" / "summary.json").read_text())
    cells = {c["cell"]: c for c in doc["cells"]}
    assert cells["first λ=0.1"]["failed"] == 2
    nan_cell = cells["first λ=0.01"]
    assert {o["verdict"] for o in nan_cell["outcomes"].values()} == {"n/a: 1 trial reported NaN"}
    assert "no detectable effect" not in json.dumps(nan_cell)
    assert "nan" in {row["val_loss"] for row in rows if row["cell"] == "first λ=0.01" and row["seed"] == "0"}
    assert "n/a: 1 trial reported NaN" in out
    assert doc["best"] is None and doc["reason"].endswith("; 2 cells have no verdict (n/a: 1 trial reported NaN, …)")


def test_the_report_contract_names_the_epoch():
    assert report_row(3, {"m": 1}, 2, 10) == {"epoch": 3, "m": 1.0}
    for epoch, previous, message in [
        (2, 3, "report(epoch=2) after epoch 3: each epoch is reported once, in increasing order"),
        (3, 3, "report(epoch=3) after epoch 3: each epoch is reported once, in increasing order"),
        (12, None, "report(epoch=12) is past the sweep's last epoch (10)"),
        (-1, None, "report(epoch=-1): epochs count from 1 (0: before training)"),
        (2.5, None, "report(epoch=2.5): the epoch must be a whole number"),
        ("3", None, "report(epoch='3'): the epoch must be a whole number"),
    ]:
        with pytest.raises(ReportError) as info:
            report_row(epoch, {"m": 1.0}, previous, 10)
        assert str(info.value) == message
    with pytest.raises(ReportError, match=r"report\(epoch=1, m='x'\): a metric must be a number"):
        report_row(1, {"m": "x"}, None, 10)
    # the driver checks the rows that arrive too (a training function could call tune.report itself)
    rows, problem = checked_rows([{"epoch": 1, "wall_s": 0.1, "m": 1.0}, {"epoch": 11, "wall_s": 0.2, "m": 1.0}], 10)
    assert [r["epoch"] for r in rows] == [1] and problem == "report(epoch=11) is past the sweep's last epoch (10)"
