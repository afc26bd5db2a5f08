"""``track --address`` on a cluster an administrator started (``ray start --head``, token
authentication on), in both ways of joining it: as a Ray Client (``ray://host:port``), where the
driver runs on the cluster, and as a driver of its own (``host:port``, the GCS). Either gives the
bytes of a serial run, reports the corrupt checkpoint the same way, and leaves the cluster up;
Ctrl-C ends the run's tasks on the cluster (Ray ends a job's tasks with its driver) and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from hostile import finish, run, start
from rayhead import ray_head

pytestmark = pytest.mark.slow  # a Ray head and its clients

pytest.importorskip("ray")
pytest.importorskip("grpc")

from test_track_ray import CACHE, checkpoints  # noqa: E402 - after the skips: it imports torch models

TRACK = ("--arch", "sample:digits_vgg", "--estimator", "spectral", "--seeds", "0", "--no-plot")


@pytest.fixture(scope="module")
def head():
    with ray_head() as h:
        yield h


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serial")
    ck = checkpoints(folder / "ck", n=5, corrupt="epoch_02.pt")
    r = run("track", ck, "-o", folder / "out", *TRACK)
    assert r.rc == 3, r.err[-1000:]
    return ck, folder / "out"


@pytest.mark.parametrize("mode", ["client", "gcs"])
def test_track_on_a_cluster_gives_the_serial_bytes(head, serial, mode, tmp_path, monkeypatch):
    ck, serial_out = serial
    address = head.client if mode == "client" else head.gcs
    monkeypatch.setenv("HOME", str(tmp_path))  # no token of this machine's own
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
    out = tmp_path / "out"
    r = run("track", ck, "-o", out, *TRACK, "--address", address, timeout=300)
    assert r.rc == 3, r.err[-2000:]  # the corrupt checkpoint: named, left out, exit 3
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("failed checkpoint: epoch_02.pt: ") and "truncated or corrupted" in lines[0], lines
    assert lines[-1] == "error: 1 of 5 checkpoints failed (named above) and are left out of the trajectory"
    assert "Traceback" not in r.err
    assert (out / "trajectory.csv").read_bytes() == (serial_out / "trajectory.csv").read_bytes()
    ours = sorted(p.name for p in (out / CACHE).glob("*.analysis.json"))
    assert len(ours) == 4 and ours == sorted(p.name for p in (serial_out / CACHE).glob("*.analysis.json"))
    assert gcs_answers(head)  # the administrator's cluster is still up


def gcs_answers(head) -> bool:
    """Whether the head's GCS still takes connections: a run that joins a cluster never stops it."""
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", int(head.gcs.rsplit(":", 1)[1]))) == 0


def test_a_cluster_without_the_token_is_one_line_at_once(head, serial, tmp_path, monkeypatch):
    ck, _ = serial
    monkeypatch.setenv("HOME", str(tmp_path))
    r = run("track", ck, "-o", tmp_path / "out", *TRACK, "--address", head.client, timeout=60)
    assert r.rc == 2 and r.one_line_error, r.err[-2000:]
    assert "uses token authentication and this machine sent no token" in r.err
    assert not (tmp_path / "out" / "trajectory.csv").exists()


def _running_tasks() -> list[int]:
    """Processes executing a track task anywhere on this machine (Ray titles a busy worker by its task)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"ray::_analyse_task"):
                    found.append(int(entry))
    return found


@pytest.mark.parametrize("mode", ["client", "gcs"])
def test_ctrl_c_on_a_cluster_ends_the_runs_tasks_and_leaves_the_cluster_up(head, mode, tmp_path, monkeypatch):
    ck = checkpoints(tmp_path / "ck", n=24, corrupt=None)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
    out = tmp_path / "out"
    args = ("track", ck, "-o", out, *TRACK[:3], "paper", *TRACK[4:])  # the slower estimator: a longer run
    started = time.monotonic()
    p, o, e = start(*args, "--address", head.client if mode == "client" else head.gcs)
    records = out / CACHE
    while not (records.is_dir() and any(records.glob("*.record.json"))):
        if p.poll() is not None or time.monotonic() - started > 180:
            r = finish(p, o, e, started, timeout=5)
            pytest.fail(f"no checkpoint finished (exit {r.rc}): {r.err[-2000:]}")
        time.sleep(0.1)
    assert _running_tasks(), "the run's tasks were not seen running on the cluster"
    p.send_signal(signal.SIGINT)
    r = finish(p, o, e, started, timeout=60)
    assert r.rc == 130 and "Traceback" not in r.err, r.err[-2000:]
    assert f"the checkpoints analysed so far are cached in {records}" in " ".join(r.err.split())
    deadline = time.monotonic() + 15
    while _running_tasks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _running_tasks() == []  # Ray ended the job's tasks with its driver
    assert gcs_answers(head)
    assert 1 <= len(list(records.glob("*.record.json"))) < 24 and not (out / "trajectory.csv").exists()
