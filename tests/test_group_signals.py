"""A signal sent to the whole process group (``timeout -s TERM``, a job manager stopping a job by
its group, Ctrl-C at a terminal) while a local Ray runs: the Ray started for the run lives in a
session of its own, so the signal reaches the command only, which stops gracefully (exit 143 or
130, its one line) and shuts that Ray down. Before, the GCS died with the group and Ray's client
waited 60 s for it before ending the command with status 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep_guarantees import descendants

pytestmark = pytest.mark.slow  # local Rays

pytest.importorskip("ray")

from test_track_ray import CACHE, checkpoints  # noqa: E402 - after the skip


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """The CLI as the leader of a process group of its own (as a shell starts a job)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "entropyflow", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )


def _wait_for(p: subprocess.Popen, ready, what: str, limit: float = 150) -> None:
    started = time.monotonic()
    while not ready():
        if p.poll() is not None or time.monotonic() - started > limit:
            p.kill()
            pytest.fail(f"{what} never happened (exit {p.poll()}): {p.communicate()[1][-2000:]}")
        time.sleep(0.1)


def _ray(p: subprocess.Popen) -> list[int]:
    return [pid for pid, name in descendants(p.pid).items() if name in ("gcs_server", "raylet")]


def _gone(pids: list[int], limit: float = 20) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.2)
    return False


def test_sigterm_to_the_group_stops_a_sweep_at_once(tmp_path):
    out = tmp_path / "sweep"
    p = _start(["sweep", "--task", "digits-cnn", "--seeds", "2", "--lambdas", "1e-3", "-o", str(out)], tmp_path)
    _wait_for(p, lambda: any((out / "tune" / "trials").glob("trial-*.json")), "a trial record")
    ray = _ray(p)
    assert len(ray) == 2, descendants(p.pid)
    signalled = time.monotonic()
    os.killpg(p.pid, signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 143, err[-2000:]
    assert time.monotonic() - signalled < 30  # not Ray's 60 s wait for a GCS that died with the group
    assert err.strip().splitlines()[-1] == (
        f"terminated (SIGTERM): finished trials are kept in {out / 'tune'}; continue with --resume"
    )
    assert "Traceback" not in err and "GCS" not in err
    assert _gone(ray)  # the run's Ray was shut down with it


def test_sigterm_to_the_group_stops_a_parallel_track_at_once(tmp_path):
    ck = checkpoints(tmp_path / "ck", corrupt=None)
    out = tmp_path / "out"
    args = ["track", str(ck), "-o", str(out), "--arch", "sample:digits_vgg", "--estimator", "paper"]
    p = _start([*args, "--workers", "2", "--seeds", "0", "--no-plot"], tmp_path)
    _wait_for(p, lambda: any((out / CACHE).glob("*.record.json")), "a cached checkpoint")
    ray = _ray(p)
    assert len(ray) == 2, descendants(p.pid)
    os.killpg(p.pid, signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"terminated (SIGTERM): the checkpoints analysed so far are cached in {out / CACHE}")
    assert "interrupted (SIGINT)" not in err and "Traceback" not in err
    assert _gone(ray)


def test_ctrl_c_before_any_checkpoint_finished_claims_no_cache(tmp_path):
    ck = checkpoints(tmp_path / "ck", n=4, corrupt=None)
    out = tmp_path / "out"
    args = ["track", str(ck), "-o", str(out), "--arch", "sample:digits_vgg", "--estimator", "paper"]
    p = _start([*args, "--workers", "2", "--seeds", "0", "--no-plot"], tmp_path)
    _wait_for(p, lambda: len(_ray(p)) == 2, "a local Ray")
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole foreground group
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    if any((out / CACHE).glob("*.record.json")):  # a checkpoint finished in the meantime: it is cached and said so
        assert last.startswith(f"interrupted (SIGINT): the checkpoints analysed so far are cached in {out / CACHE}")
    else:
        assert last == "interrupted (SIGINT): no checkpoint had finished, so nothing was cached"
