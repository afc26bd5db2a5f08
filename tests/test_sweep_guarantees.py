"""Issue 21: a local Ray that listens on the loopback interface only, and sweep exits that scripts can
trust (a --metric typo stops the sweep, failed trials exit 3, dead workers are retried, whole error
messages, ``best: null`` loads as what it is).

Two real Ray sweeps run in a child process (one shared by the socket, exit-3, retry and message
tests; one for the metric typo); everything else runs in process with Ray replaced by a recorder."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time

import pytest
from hostile import finish, run, start

from entropyflow.config import ConfigError, load_best, load_config
from entropyflow.errors import EXIT_INCOMPLETE, IncompleteError, OptionError, exit_code
from entropyflow.sweep import ray_tune
from entropyflow.sweep.contract import TUNE_FIELDS, check_metric, missing_metric
from entropyflow.sweep.events import RayOptions
from entropyflow.sweep.output import best_yaml
from entropyflow.sweep.spec import SweepSpec
from entropyflow.sweep.summary import summarize, trial_summary

TRAIN = textwrap.dedent("""
    import os, time

    def train(config, report):
        lam, seed, log = config["lambda"], config["seed"], config["params"]["log"]
        open(os.path.join(log, f"start-{lam:g}-{seed}-{time.time_ns()}"), "w").close()
        if seed == 2:
            raise RuntimeError("planted failure: the first line of the message,\\nand its second line")
        died = os.path.join(log, "died-once")
        if seed == 1 and not os.path.exists(died):
            open(died, "w").close()
            os._exit(1)  # the Ray worker dies: --retries runs the trial again
        for epoch in range(1, config["epochs"] + 1):
            time.sleep(config["params"].get("sleep", 0.0))
            report(epoch=epoch, val_loss=1.0 / epoch + lam + 0.01 * seed, acc=0.5)
        open(os.path.join(log, f"done-{lam:g}-{seed}"), "w").close()
""")


def setup(tmp):
    (tmp / "mytrain.py").write_text(TRAIN)
    (tmp / "log").mkdir()


def args(tmp, *extra, seeds=3):
    """The baseline alone (what items 1-5 need: trials, not λ cells), ``seeds`` trials."""
    return (
        "sweep",
        f"{tmp / 'mytrain.py'}:train",
        "--lambdas",
        "0",
        "--seeds",
        str(seeds),
        "--epochs",
        "2",
        "--cpus",
        "2",
        "--param",
        f"log={tmp / 'log'}",
        "-o",
        tmp / "report",
        *extra,
    )


# --- what processes listen on ---------------------------------------------------------------------


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` (by /proc's parent links), with its name."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/comm") as f:
                out[pid] = f.read().strip()
        except OSError:
            continue
        todo += children.get(pid, [])
    return out


def listening_sockets() -> dict[str, tuple[str, int]]:
    """Socket inode → (address, port) of every listening TCP socket (IPv4 and IPv6)."""
    out: dict[str, tuple[str, int]] = {}
    for family, table in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-order
            out[fields[9]] = (socket.inet_ntop(family, raw), int(port, 16))
    return out


def listeners(root: int) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening socket held by a process below ``root``."""
    sockets = listening_sockets()
    found = set()
    for pid, name in descendants(root).items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in sockets:
                found.add((name, *sockets[link[8:-1]]))
    return found


def loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A real sweep on a local Ray: one trial raises, one trial's worker dies once (retried); the
    listening sockets of every process below the CLI's are read while it runs."""
    tmp = tmp_path_factory.mktemp("guarantees")
    setup(tmp)
    started = time.monotonic()
    p, o, e = start(*args(tmp, "--metric", "val_loss", "--param", "sleep=0.2"))
    seen: set[tuple[str, str, int]] = set()
    while not os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) and time.monotonic() - started < 240:
        seen |= listeners(p.pid)
        time.sleep(0.2)
    return tmp, finish(p, o, e, started, timeout=240), seen


@pytest.mark.slow
def test_the_local_ray_listens_on_loopback_only(swept):
    _, r, seen = swept
    names = {name for name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # the scan did see Ray's servers
    assert [s for s in seen if not loopback(s[1])] == []


@pytest.mark.slow
def test_failed_trials_write_the_report_and_exit_3(swept):
    tmp, r, _ = swept
    assert r.rc == EXIT_INCOMPLETE == 3, r.err[-3000:]
    assert r.err.strip().splitlines()[-1] == "error: 1 of 3 trials failed (the report above counts them)"
    out = tmp / "report"
    assert {"trials.csv", "summary.csv", "summary.json", "best.yaml"} <= {p.name for p in out.iterdir()}
    doc = json.loads((out / "summary.json").read_text())
    assert doc["failed"] == [
        "baseline seed 2: RuntimeError: planted failure: the first line of the message, and its second line"
    ]


@pytest.mark.slow
def test_a_dead_worker_is_retried_and_the_error_is_whole(swept):
    tmp, r, _ = swept
    log = tmp / "log"
    starts = sorted("-".join(p.name.split("-")[1:3]) for p in log.glob("start-*"))
    assert starts == ["0-0", "0-1", "0-1", "0-2"]  # the dead worker's trial ran once more; a raise is final
    assert sorted(p.name for p in log.glob("done-*")) == ["done-0-0", "done-0-1"]
    rows = (tmp / "report" / "trials.csv").read_text().splitlines()
    assert sum(1 for row in rows if row.startswith("baseline,1,")) == 2  # the retried trial's epochs, once each
    said = " ".join(r.out.split())
    assert "failed trial: baseline seed 2: RuntimeError: planted failure: the first line of the message, and" in said


@pytest.mark.slow
def test_a_metric_typo_stops_the_sweep_at_its_first_report(tmp_path):
    setup(tmp_path)
    r = run(*args(tmp_path, "--metric", "val_los", seeds=1), timeout=240)
    assert r.rc == 2, r.err[-3000:]
    assert r.err.strip() == (
        "error: metric val_los is not what the training function reports: report(epoch=1) gave val_loss, acc: "
        f"the sweep stopped at that report; name one of those with --metric (and a new --out, or remove "
        f"{tmp_path / 'report'})"
    )
    assert list((tmp_path / "log").glob("done-*")) == []
    assert not (tmp_path / "report" / "summary.json").exists()


# --- in process ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["pid", "done", "training_iteration", "time_total_s"])
def test_a_metric_named_like_a_tune_field_is_refused_before_anything_runs(tmp_path, cli, monkeypatch, metric):
    setup(tmp_path)
    monkeypatch.setattr(ray_tune, "run", lambda *a, **k: pytest.fail("Ray must not start"))
    r = cli(*args(tmp_path, "--metric", metric))
    assert r.exit_code == 2, (r.stderr, r.exception)
    assert r.stderr.strip() == (
        f"error: --metric {metric}: that is the name of a field Ray Tune adds to every result ({metric}), not "
        "something the training function reports; report the metric under another name"
    )
    assert not (tmp_path / "report" / "tune").exists()
    assert {"pid", "done", "training_iteration", "time_total_s", "hostname", "node_ip"} <= set(TUNE_FIELDS)
    check_metric("val_loss")  # an ordinary name passes


def test_missing_metric_names_what_was_reported():
    assert missing_metric("val_loss", {"epoch": 1, "val_loss": 0.3, "wall_s": 0.1}) is None
    assert missing_metric("val_los", {"epoch": 3, "val_loss": 0.3, "acc": 0.9, "wall_s": 0.1}) == (
        "metric val_los is not what the training function reports: report(epoch=3) gave val_loss, acc"
    )
    assert missing_metric("loss", {"epoch": 1}).endswith("report(epoch=1) gave no metric")


def fake_run(fail: bool):
    def run(trials, train, storage, metric, options, recorder, on_event=None, stop=None):
        assert options.retries == 2
        for i, t in enumerate(trials):
            recorder.start(t["cell"], t["seed"])
            rows = [{"epoch": e, "wall_s": 0.1 * e, metric: 1.0 / e + 0.01 * i} for e in (1, 2)]
            if fail and i == len(trials) - 1:
                recorder.add(t["cell"], t["seed"], rows[:1])
                recorder.end(t["cell"], t["seed"], error="RuntimeError: planted")
            else:
                recorder.add(t["cell"], t["seed"], rows, done=True)
        return recorder.outcomes(trials)

    return run


@pytest.mark.slow
@pytest.mark.parametrize("fail", [False, True])
def test_exit_status_is_0_only_when_every_trial_completed(tmp_path, cli, monkeypatch, fail):
    setup(tmp_path)
    monkeypatch.setattr(ray_tune, "run", fake_run(fail))
    r = cli(*args(tmp_path, "--metric", "val_loss", "--retries", "2"))
    assert r.exit_code == (3 if fail else 0), r.stderr
    assert (tmp_path / "report" / "summary.json").is_file()  # the report is written either way
    if fail:
        assert r.stderr.strip() == "error: 1 of 3 trials failed (the report above counts them)"
        assert "failed trial: baseline seed 2: RuntimeError: planted" in r.stdout
    else:
        assert r.stderr.strip() == ""
    assert exit_code(IncompleteError("x")) == 3


@pytest.mark.parametrize("value", ["-1", "101", "x"])
def test_retries_is_checked(tmp_path, cli, monkeypatch, value):
    setup(tmp_path)
    monkeypatch.setattr(ray_tune, "run", lambda *a, **k: pytest.fail("Ray must not start"))
    r = cli(*args(tmp_path, "--metric", "val_loss", "--retries", value))
    assert r.exit_code == 2
    if value != "x":
        assert r.stderr.strip() == f"error: --retries must be a whole number from 0 to 100 (got {value})"
    assert RayOptions().retries == 1
    with pytest.raises(OptionError):
        RayOptions(retries=True)


# Tune's error file: "Failure # N (occurred at …)" then str(exc), appended at every failure
TASK_ERROR = """Failure # 1 (occurred at 2026-01-01_00-00-00)
ray::ImplicitFunc.train() (pid=123, ip=127.0.0.1, actor_id=abc, repr=_trainable)
  File "/x/ray/tune/trainable/trainable.py", line 331, in train
    raise skipped from exception_cause(skipped)
  File "/x/mytrain.py", line 7, in train
    raise RuntimeError("first line\\nsecond line")
    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
RuntimeError: planted failure: the first line of the message,
and its second line
"""
ACTOR_ERROR = """Failure # 1 (occurred at 2026-01-01_00-00-00)
The actor died unexpectedly before finishing this task.
\tclass_name: ImplicitFunc
\tpid: 4242
The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: \
Worker unexpectedly exits with a connection error code 2. End of file.
"""
CONTRACT_ERROR = """Failure # 2 (occurred at 2026-01-01_00-00-01)
ray::ImplicitFunc.train() (pid=123, ip=127.0.0.1)
  File "/x/entropyflow/sweep/ray_tune.py", line 90, in report
    raise broken[0]
entropyflow.sweep.contract.ReportError: report(epoch=12) is past the sweep's last epoch (3)
"""


def test_error_messages_are_kept_whole(tmp_path):
    assert ray_tune.error_message(TASK_ERROR) == (
        "RuntimeError: planted failure: the first line of the message, and its second line"
    )
    assert ray_tune.error_message(ACTOR_ERROR) == (
        "The actor died unexpectedly before finishing this task. class_name: ImplicitFunc pid: 4242 The actor is "
        "dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: Worker "
        "unexpectedly exits with a connection error code 2. End of file."
    )
    # two failures in one file (a retried trial): the last one counts, whole
    assert (
        ray_tune.error_message(ACTOR_ERROR + CONTRACT_ERROR)
        == "rejected: report(epoch=12) is past the sweep's last epoch (3)"
    )
    long = "RuntimeError: " + " ".join(f"word{i}" for i in range(200))  # 1,400 characters, kept whole
    assert ray_tune.error_message("Failure # 1 (occurred at t)\n" + long + "\n") == long
    # a file larger than what is read: from its first whole line on
    big = tmp_path / "error.txt"
    big.write_text("x" * (ray_tune.ERROR_TAIL + 10) + "\n" + TASK_ERROR)
    assert ray_tune._error_text(str(big)).startswith("RuntimeError: planted failure: the first line")
    assert ray_tune.error_message("") == "the trial failed"


def test_best_null_loads_as_what_it_is(tmp_path):
    spec = SweepSpec(lambdas=(0.0,), placements=(), seeds=(0, 1), epochs=2, metric="val_loss")
    rows = ({"epoch": 1, "wall_s": 0.1, "val_loss": 1.0},)
    summary = summarize(spec, [trial_summary("baseline", s, rows, spec) for s in (0, 1)])
    path = tmp_path / "best.yaml"
    path.write_bytes(best_yaml(summary))
    assert load_best(path) is None
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"this is a sweep's best.yaml with no winning cell (best: null: {summary.reason}), so there is no λ config "
        "to use: train without the term, or give the config of one of the sweep's cells"
    )
    with pytest.raises(ConfigError, match="unknown field"):
        load_config({"best": None, "reason": "x", "other": 1})  # anything more is not best.yaml
