"""Issue 21: an interrupted sweep resumes without counting an epoch twice and without running a
finished trial again, whatever phase its trials were in when the driver died.

One sweep on a real local Ray (4 trials, 2 at once, 3 epochs each), its trials held at chosen
phases by marker files, is interrupted once by SIGKILL of the driver (no cleanup at all) and once
by SIGINT (Ctrl-C: Tune's graceful stop), when:

* ``finish``: one trial has finished entirely (train returned, its record says ``finished``);
* ``during``: one has made its last report (the driver has all its epochs) but train has not
  returned;
* ``mid``: one has reported epoch 1 of 3 and waits;
* the fourth has not started (both CPUs are held).

With SIGINT the ``during`` trial is released as the signal is sent: it may return, and its end
reach the driver, during the graceful stop (issue 21: such a trial was run again). Either way a
trial must run again exactly when its record does not say it finished.

Then ``--resume`` runs with every hold released. The training function is deterministic
(``val_loss = 1/epoch + 0.01·seed + λ``), so the resumed report must equal an uninterrupted run
of each trial, row for row. Plus a unit test of :class:`records.Recorder` on a trial Tune restarts."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hostile import finish, run, start

from entropyflow.sweep import records
from entropyflow.sweep.spec import SweepSpec
from entropyflow.sweep.summary import trial_summary

pytestmark = pytest.mark.slow  # real Ray Tune sweeps killed and resumed

EPOCHS = 3
ROLES = ("finish", "during", "mid")  # claimed in the order the trials start
HOLD_S = 150  # a held trial gives up (raises) after this long: nothing waits for ever if the test dies

TRAIN = textwrap.dedent(f"""
    import json, os, time

    def value(config, epoch):
        return 1.0 / epoch + 0.01 * config["seed"] + config["lambda"]

    def mark(log, name, config):
        path = os.path.join(log, name)
        with open(path + ".tmp", "w") as f:
            json.dump([config["cell"], config["seed"]], f)
        os.replace(path + ".tmp", path)  # whole or absent: the test polls these files

    def claim(log, config):
        # the first trial to start gets "finish", the next "during", …: which trial plays which
        # part is up to Ray's scheduling; the test reads it back from these files
        for role in {ROLES!r}:
            try:
                fd = os.open(os.path.join(log, "role-" + role), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                json.dump([config["cell"], config["seed"]], f)
            return role
        return "free"

    def hold(log, role, config):
        mark(log, "reached-" + role, config)
        deadline = time.monotonic() + {HOLD_S}
        while not any(os.path.exists(os.path.join(log, name)) for name in ("release", "release-" + role)):
            if time.monotonic() > deadline:
                raise RuntimeError("never released")
            time.sleep(0.05)

    def train(config, report):
        log = config["params"]["log"]
        mark(log, f"start-{{time.time_ns()}}-{{os.getpid()}}", config)
        role = "free" if os.path.exists(os.path.join(log, "release")) else claim(log, config)
        for epoch in range(1, config["epochs"] + 1):
            if role == "during" and epoch == config["epochs"]:
                time.sleep(1.2)  # past the trainable's batching interval: the last report is sent now
            report(epoch=epoch, val_loss=value(config, epoch))
            if role == "mid" and epoch == 1:
                hold(log, role, config)
        if role == "during":
            hold(log, role, config)
        mark(log, f"returned-{{time.time_ns()}}", config)
""")


# --- the processes of a driver that was killed ------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session(sid: int) -> set[int]:
    """Every live process of session ``sid`` (the driver was started in a session of its own, and
    Ray's processes stay in it even once the driver is gone and they are orphans)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
                out.add(int(entry))
    return out


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (by /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = set(), list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if (fields := _stat(pid)) is not None and fields[0] != "Z"}


def reap(sid: int, also: set[int]) -> set[int]:
    """Kill what is left of the driver's session (Ray's GCS, raylet, workers) and wait until it is
    gone; what would not die (empty: nothing leaked into later tests)."""
    deadline = time.monotonic() + 15
    left = session(sid) | alive(also)
    while left and time.monotonic() < deadline:
        kill_all(left)
        time.sleep(0.1)
        left = session(sid) | alive(also)
    return left


# --- the sweep ---------------------------------------------------------------------------------------


def setup(tmp: Path) -> tuple[Path, Path]:
    train = tmp / "phasetrain.py"
    train.write_text(TRAIN)
    (tmp / "log").mkdir()
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    torch.save(ref.state_dict(), tmp / "ref.pt")
    return train, tmp / "log"


def sweep_args(tmp: Path, train: Path, out: Path) -> tuple:
    # 2 cells × 2 seeds on 2 CPUs: two trials at once, the third on the worker the first frees
    return ("sweep", f"{train}:train", "--lambdas", "0.01", "--placements", "first", "--reference", tmp / "ref.pt",
            "--seeds", "2", "--epochs", str(EPOCHS), "--metric", "val_loss", "--patience", "2",
            "--cpus", "2", "--param", f"log={tmp / 'log'}", "-o", out)  # fmt: skip


def key_of(path: Path) -> tuple[str, int]:
    cell, seed = json.loads(path.read_text())
    return cell, seed


def roles(log: Path) -> dict[str, tuple[str, int]]:
    return {role: key_of(log / f"role-{role}") for role in ROLES if (log / f"role-{role}").exists()}


def trial_records(out: Path) -> dict[tuple[str, int], dict]:
    """The driver's record of every trial it launched, as it stands."""
    found = {}
    for path in (out / "tune" / records.TRIALS).glob("trial-*.json"):
        with contextlib.suppress(OSError, ValueError):  # replaced whole by rename, but poll defensively
            doc = json.loads(path.read_text())
            found[(doc["cell"], doc["seed"])] = doc
    return found


def phases_reached(log: Path, out: Path) -> bool:
    """Every trial is where the test wants it when the driver dies."""
    who = roles(log)
    if set(who) != set(ROLES) or not all((log / f"reached-{r}").exists() for r in ("during", "mid")):
        return False
    seen = trial_records(out)
    epochs = {role: [row["epoch"] for row in seen.get(who[role], {}).get("rows", [])] for role in ROLES}
    states = {role: seen.get(who[role], {}).get("state") for role in ROLES}
    return (
        states["finish"] == "finished"
        and epochs["during"] == list(range(1, EPOCHS + 1))  # its last report reached the driver…
        and states["during"] == "running"  # …but not the end of its training function
        and epochs["mid"] == [1]
    )


def markers(log: Path, kind: str) -> Counter:
    """How many times each trial's function started (``start``) or returned (``returned``)."""
    return Counter(key_of(p) for p in log.glob(f"{kind}-*") if not p.name.endswith(".tmp"))


def value(cell: str, seed: int, epoch: int) -> float:
    lam = 0.0 if cell == "baseline" else 0.01
    return 1.0 / epoch + 0.01 * seed + lam


KEYS = {(cell, seed) for cell in ("baseline", "first λ=0.01") for seed in (0, 1)}


def interrupt_and_resume(tmp: Path, sig: int) -> dict:
    """Run the sweep, deliver ``sig`` once every trial is at its phase, check the interrupted run,
    then resume with every hold released. What each step left, for the tests to check."""
    train, log = setup(tmp)
    out = tmp / "report"
    args = sweep_args(tmp, train, out)
    # a short path: Ray's socket paths are made of it
    with tempfile.TemporaryDirectory(prefix="ef-ray-", dir="/tmp", ignore_cleanup_errors=True) as ray_tmp:
        return _interrupt_and_resume(args, log, out, sig, isolated(ray_tmp))


def isolated(ray_tmp: str) -> tuple[str, ...]:
    """Run the CLI in a session of its own (Ray's processes stay in it, even as orphans), with a
    Ray temp dir of its own: a plain ``ray.init()`` joins the cluster a ``ray start`` on this machine
    left in /tmp/ray/ray_current_cluster (or RAY_ADDRESS), and then refuses --cpus."""
    return ("env", "-u", "RAY_ADDRESS", f"RAY_TMPDIR={ray_tmp}", "setsid")


def _interrupt_and_resume(args: tuple, log: Path, out: Path, sig: int, prefix: tuple[str, ...]) -> dict:
    started = time.monotonic()
    p, o, e = start(*args, prefix=prefix)
    below: set[int] = set()
    try:
        while not phases_reached(log, out):
            below |= descendants(p.pid)
            exited = (_stat(p.pid) or ["Z"])[0] == "Z"  # not p.poll(): finish() reaps it itself
            if exited or time.monotonic() - started > 90:
                killed = finish(p, o, e, started, timeout=5)
                pytest.fail(f"the phases were not reached (rc {killed.rc}, roles {roles(log)}): {killed.err[-1500:]}")
            time.sleep(0.1)
        reached_s = time.monotonic() - started
        before = {key: doc["state"] for key, doc in trial_records(out).items()}
        below |= descendants(p.pid)
        if sig == signal.SIGKILL:
            os.killpg(p.pid, signal.SIGKILL)  # the driver and its Ray at once: no handler, no cleanup runs
        else:
            p.send_signal(sig)
            (log / "release-during").touch()  # it may return, and its end reach the driver, during the stop
        stopped = finish(p, o, e, started, timeout=90)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        leaked = reap(p.pid, below)
    after = {key: doc["state"] for key, doc in trial_records(out).items()}
    first_starts, first_returned = markers(log, "start"), markers(log, "returned")
    (log / "release").touch()
    resumed = run(*args, "--resume", timeout=90, prefix=prefix)
    return {
        "roles": roles(log),
        "reached_s": reached_s,
        "before": before,
        "stopped": stopped,
        "leaked": leaked,
        "after": after,
        "first_starts": first_starts,
        "first_returned": first_returned,
        "resumed": resumed,
        "starts": markers(log, "start"),
        "returned": markers(log, "returned"),
        "out": out,
        "log": log,
        "signal": sig,
    }


@pytest.fixture(scope="module", params=[signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def resumed(request, tmp_path_factory):
    return interrupt_and_resume(tmp_path_factory.mktemp(signal.Signals(request.param).name), request.param)


def test_the_interruption(resumed):
    who, stopped, after = resumed["roles"], resumed["stopped"], resumed["after"]
    assert resumed["leaked"] == set()  # no Ray process outlived the test's cleanup
    # when the signal came: one finished, one with all its epochs recorded but not its end, one mid-trial
    assert resumed["before"] == {who["finish"]: "finished", who["during"]: "running", who["mid"]: "running"}
    assert resumed["first_starts"] == Counter(who.values())  # the fourth trial never started
    if resumed["signal"] == signal.SIGKILL:
        assert stopped.rc == -signal.SIGKILL
        assert after == resumed["before"] and resumed["first_returned"] == Counter([who["finish"]])
    else:  # Ctrl-C: Tune's graceful stop, exit 130 and how to go on
        assert stopped.rc == 130, stopped.err[-1500:]
        assert "continue with --resume" in stopped.err, stopped.err[-1500:]
        # the held trial stays unfinished; the one released with the signal may have ended during
        # the stop, but only its end reaching the driver makes its record finished
        assert after[who["finish"]] == "finished" and after[who["mid"]] == "running"
        assert after[who["during"]] in ("running", "finished")
        assert resumed["first_returned"][who["finish"]] == 1 and resumed["first_returned"][who["mid"]] == 0


def test_the_resume_runs_every_unfinished_trial_again_and_no_finished_one(resumed):
    r, who, after = resumed["resumed"], resumed["roles"], resumed["after"]
    assert r.rc == 0, r.err[-2000:]
    # (1) a trial whose record says finished was not started again; (2) every other one was, once
    expected = {key: resumed["first_starts"][key] + (after.get(key) != "finished") for key in KEYS}
    assert resumed["starts"] == Counter(expected)
    assert resumed["starts"][who["finish"]] == 1 and resumed["starts"][who["mid"]] == 2
    assert resumed["returned"] - resumed["first_returned"] == Counter(k for k in KEYS if after.get(k) != "finished")
    doc = json.loads((resumed["out"] / "summary.json").read_text())
    assert doc["provenance"]["resumed"] is True
    assert doc["provenance"]["trials_run"] == sum(after.get(key) != "finished" for key in KEYS)


def test_rows_are_unique_and_equal_an_uninterrupted_run(resumed):
    assert resumed["resumed"].rc == 0, resumed["resumed"].err[-2000:]
    rows = list(csv.DictReader((resumed["out"] / "trials.csv").open(encoding="utf-8")))
    # (3) one row per (cell, seed, epoch), --epochs rows per trial, no error row
    keyed = Counter((row["cell"], int(row["seed"]), int(row["epoch"])) for row in rows)
    assert keyed == Counter({(cell, seed, epoch): 1 for cell, seed in KEYS for epoch in range(1, EPOCHS + 1)})
    assert {row["error"] for row in rows} == {""}
    # (5) every value is the uninterrupted run's: the resumed trials started over from epoch 1
    for row in rows:
        assert float(row["val_loss"]) == pytest.approx(
            value(row["cell"], int(row["seed"]), int(row["epoch"])), rel=1e-12
        )


def test_the_summary_counts_each_epoch_once(resumed):
    assert resumed["resumed"].rc == 0, resumed["resumed"].err[-2000:]
    doc = json.loads((resumed["out"] / "summary.json").read_text())
    spec = SweepSpec(lambdas=(0.0,), placements=(), seeds=(0, 1), epochs=EPOCHS, metric="val_loss", patience=2)
    trials = {(c["cell"], t["seed"]): t for c in doc["cells"] for t in c["trials"]}
    assert set(trials) == KEYS and doc["failed"] == []
    for (cell, seed), t in trials.items():
        # (4) epochs and the stop epoch of a curve that never stalls: the budget (duplicated
        # epochs 1, 2, 3, 1, 2, 3 would give 6 epochs and a stop at 5)
        assert t["epochs"] == EPOCHS and t["stop_epoch"] == EPOCHS and t["error"] is None
        # (5) the outcomes of an uninterrupted run of the same trial
        rows = [{"epoch": e, "val_loss": value(cell, seed, e), "wall_s": 0.0} for e in range(1, EPOCHS + 1)]
        fresh = trial_summary(cell, seed, rows, spec)
        for outcome in ("final", "best", "stop_epoch"):
            assert t[outcome] == pytest.approx(fresh.values[outcome], rel=1e-12), (cell, seed, outcome)


# --- the recorder, in process ------------------------------------------------------------------------


def rows(*pairs: tuple[int, float]) -> list[dict]:
    return [{"epoch": e, "val_loss": v, "wall_s": 0.1 * e} for e, v in pairs]


def test_a_trial_restarted_by_tune_keeps_only_its_last_attempt(tmp_path):
    trials = [{"cell": "baseline", "seed": s, "epochs": EPOCHS} for s in range(4)]
    recorder = records.Recorder(tmp_path, trials, EPOCHS)
    # seed 0: two epochs, its worker dies, Tune starts it again: the second attempt's rows only
    recorder.start("baseline", 0)
    recorder.add("baseline", 0, rows((1, 9.0), (2, 8.0)))
    recorder.start("baseline", 0)
    assert recorder.records[("baseline", 0)].rows == ()
    recorder.add("baseline", 0, rows((1, 1.0)))
    recorder.add("baseline", 0, rows((2, 0.5), (3, 0.25)), done=True)
    assert recorder.add("baseline", 0, rows((3, 0.1)), done=True) is None  # nothing after its end
    # seed 1: its last report arrived, not its end; seed 2 raised; seed 3 never started
    recorder.start("baseline", 1)
    recorder.add("baseline", 1, rows((1, 1.0), (2, 0.5), (3, 0.25)))
    recorder.end("baseline", 1)  # Tune let it go without its last result: still running
    recorder.start("baseline", 2)
    recorder.add("baseline", 2, rows((1, 1.0)))
    recorder.end("baseline", 2, error="RuntimeError: boom")

    on_disk = {
        (doc["seed"], doc["state"]): [(r["epoch"], r["val_loss"]) for r in doc["rows"]]
        for doc in (json.loads(p.read_text()) for p in (tmp_path / records.TRIALS).glob("trial-*.json"))
    }
    assert on_disk == {
        (0, "finished"): [(1, 1.0), (2, 0.5), (3, 0.25)],
        (1, "running"): [(1, 1.0), (2, 0.5), (3, 0.25)],
        (2, "failed"): [(1, 1.0)],
    }
    done = records.finished(tmp_path, trials, EPOCHS)
    assert list(done) == [0] and done[0].state == "finished"
    assert [(r["epoch"], r["val_loss"]) for r in done[0].rows] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    outcomes = recorder.outcomes(trials)
    assert [o.error for o in outcomes] == [
        None,
        "the trial did not finish",
        "RuntimeError: boom",
        "the trial did not finish",
    ]


def test_a_restart_after_rows_and_a_row_out_of_order_fail_the_attempt_not_the_count(tmp_path):
    trials = [{"cell": "baseline", "seed": 0, "epochs": EPOCHS}]
    recorder = records.Recorder(tmp_path, trials, EPOCHS)
    recorder.start("baseline", 0)
    recorder.add("baseline", 0, rows((1, 1.0), (2, 0.5)))
    # without the restart, a new attempt's epoch 1 after epoch 2 is refused: never appended
    recorder.add("baseline", 0, rows((1, 1.0)))
    record = recorder.records[("baseline", 0)]
    assert record.state == "failed" and "after epoch 2" in (record.error or "")
    assert [r["epoch"] for r in record.rows] == [1, 2]
    assert records.finished(tmp_path, trials, EPOCHS) == {}
