"""Issue 21: ``sweep --address`` on an existing cluster, in Ray Client mode (``ray://``), where Tune's
driver runs on the cluster: the trials' records and progress still reach this machine, Ctrl-C stops
the remote experiment (exit 130, the resume hint) and ``--resume`` finishes it without running a
finished trial again; a cluster that wants a token says so at once.

One real Ray head (token authentication on, its own temp folder and session, killed at the end)
serves the module; the CLI runs in child processes."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from hostile import finish, run, start
from rayhead import clean_environ, ray_head

pytestmark = pytest.mark.slow  # a Ray cluster and client processes

pytest.importorskip("ray")
pytest.importorskip("grpc")

TRAIN = textwrap.dedent("""
    import os, time

    def train(config, report):
        log, seed = config["params"]["log"], config["seed"]
        open(os.path.join(log, f"start-{seed}-{time.time_ns()}"), "w").close()
        for epoch in (1, 2):
            while seed == 1 and epoch == 2 and not os.path.exists(os.path.join(log, "release")):
                with open(os.path.join(log, "beat"), "w") as f:  # the trial is alive while this changes
                    f.write(str(time.time_ns()))
                time.sleep(0.1)
            report(epoch=epoch, val_loss=1.0 / epoch + 0.01 * seed)
""")


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 with its Ray Client server, token authentication on."""
    with ray_head() as head:
        yield head.client, head.token


def _args(tmp: Path, address: str, *extra: str) -> tuple:
    return (
        "sweep",
        f"{tmp / 'mytrain.py'}:train",
        "--lambdas",
        "0",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--metric",
        "val_loss",
        "--address",
        address,
        "--param",
        f"log={tmp / 'log'}",
        "-o",
        tmp / "report",
        *extra,
    )


@pytest.fixture
def client(tmp_path, monkeypatch):
    """This machine's environment as a client of the cluster: no token of its own unless given."""
    (tmp_path / "mytrain.py").write_text(TRAIN)
    (tmp_path / "log").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the machine running the tests
    for name in set(os.environ) - set(clean_environ()):
        monkeypatch.delenv(name)
    return tmp_path


def test_a_cluster_that_wants_a_token_says_so_at_once(cluster, client, monkeypatch):
    address, token = cluster
    r = run(*_args(client, address), timeout=60)
    assert r.rc == 2 and r.one_line_error, r.err[-2000:]
    assert "uses token authentication and this machine sent no token" in r.err
    assert "RAY_AUTH_MODE=token" in r.err and "RAY_AUTH_TOKEN" in r.err
    assert r.seconds < 20  # Ray's own client would retry for 30 s and say only that it timed out
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
    assert not (client / "report" / "tune").exists()  # nothing ran: nothing is left that would block a second try
    r = run(*_args(client, address), timeout=60)  # the same command again
    assert r.rc == 2 and r.one_line_error, r.err[-2000:]
    assert "refused this machine's token" in r.err


def _record(tmp: Path, index: int) -> dict | None:
    path = tmp / "report" / "tune" / "trials" / f"trial-{index:06d}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return None


def _exited(p: subprocess.Popen) -> bool:
    """Whether the child has ended, without reaping it (``finish`` collects its status)."""
    return os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _starts(tmp: Path, seed: int) -> int:
    return sum(1 for p in (tmp / "log").iterdir() if p.name.startswith(f"start-{seed}-"))


def test_client_mode_records_stops_on_ctrl_c_and_resumes(cluster, client, monkeypatch):
    address, token = cluster
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    started = time.monotonic()
    p, out, err = start(*_args(client, address))
    # wait until seed 0 has finished and seed 1 has reported its first epoch: both recorded HERE,
    # although Tune's driver and its callbacks run on the cluster
    deadline = started + 240  # a loaded machine: Ray Client's connection alone may take 30 s
    while True:
        first, second = _record(client, 0), _record(client, 1)
        if first and second and first["state"] == "finished" and len(second["rows"]) == 1:
            break
        if _exited(p) or time.monotonic() > deadline:
            r = finish(p, out, err, started, timeout=5)
            pytest.fail(f"the trials were not recorded on this machine (exit {r.rc}): {r.err[-2000:]}")
        time.sleep(0.2)
    assert (client / "log" / "beat").exists()
    p.send_signal(signal.SIGINT)
    r = finish(p, out, err, started, timeout=90)
    assert r.rc == 130, r.err[-2000:]
    assert "continue with --resume" in r.err and "Traceback" not in r.err
    assert "done: baseline seed 0: val_loss 0.5 at epoch 2" in r.err  # one line per ended trial off a terminal
    # the remote experiment was stopped: seed 1's trial no longer runs on the cluster
    time.sleep(3)
    beat = (client / "log" / "beat").read_text()
    time.sleep(2)
    assert (client / "log" / "beat").read_text() == beat, "the trial still runs on the cluster after Ctrl-C"
    assert _record(client, 0)["state"] == "finished" and _record(client, 1)["state"] == "running"

    (client / "log" / "release").touch()
    r = run(*_args(client, address, "--resume"), timeout=180)
    assert r.rc == 0, r.err[-2000:]
    assert _starts(client, 0) == 1  # finished before Ctrl-C: never run again
    assert _starts(client, 1) == 2  # run again from its start
    with open(client / "report" / "trials.csv", newline="") as f:
        rows = [(row["seed"], row["epoch"], row["val_loss"]) for row in csv.DictReader(f)]
    assert sorted(rows) == [("0", "1", "1.0"), ("0", "2", "0.5"), ("1", "1", "1.01"), ("1", "2", "0.51")]
