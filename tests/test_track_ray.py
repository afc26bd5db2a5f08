"""Issue 24: ``track`` on Ray. 24 checkpoints on a local Ray of 2 workers give the same bytes as the
serial run (trajectory.csv, checkpoints.csv, every cache entry); a corrupt checkpoint among them is
reported in both modes while the rest complete; the cache written by one mode is read by the other
(nothing analysed again); the local Ray listens on 127.0.0.1 only; Ctrl-C stops a parallel run
(exit 130) keeping what finished; without Ray the flags say how to install it, and a serial run
never imports Ray."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hostile import finish, start
from typer.testing import CliRunner

from entropyflow.analysis import AnalyzeOptions
from entropyflow.cli.app import app
from entropyflow.errors import EXIT_INCOMPLETE, CheckpointFormatError, MissingExtraError, OptionError
from entropyflow.report import ReportOptions
from entropyflow.runs import track_to
from entropyflow.samples.models import DigitsVGG
from entropyflow.track import CACHE, ParallelOptions, TrackOptions

runner = CliRunner()
N = 24
CORRUPT = "epoch_13.pt"


def checkpoints(folder: Path, n: int = N, corrupt: str | None = CORRUPT) -> Path:
    """``n`` DigitsVGG state dicts, each a little further from the initialisation, and one file
    cut short (its zip directory lost) among them."""
    folder.mkdir()
    torch.manual_seed(0)
    model = DigitsVGG()
    for k in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.02).add_(0.01 * torch.randn_like(p))
        torch.save(model.state_dict(), folder / f"epoch_{k:02d}.pt")
    if corrupt:
        (folder / corrupt).write_bytes((folder / "epoch_00.pt").read_bytes()[:3000])
    return folder


OPTS = AnalyzeOptions(arch="sample:digits_vgg")
NO_PLOT = ReportOptions(plot=False)


def entries(out: Path) -> dict[str, dict]:
    """The cache entries' analyses (their sha256 checked by the record), ``versions`` left out."""
    found = {}
    for p in sorted((out / CACHE).glob("*.analysis.json")):
        record = json.loads(p.with_name(p.name.replace(".analysis.json", ".record.json")).read_text())
        assert record["analysis_sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        doc = json.loads(p.read_bytes())
        assert doc.pop("versions")["torch"] == torch.__version__
        found[p.name] = doc
    return found


def test_parallel_options_are_checked_before_any_work():
    with pytest.raises(OptionError, match="^workers must be from 1 to"):
        ParallelOptions(workers=0)
    with pytest.raises(OptionError, match="^working_dir ships files to a cluster"):
        ParallelOptions(workers=2, working_dir="src")
    with pytest.raises(OptionError, match="^address is empty"):
        ParallelOptions(address=" ")
    assert not ParallelOptions().on_ray and ParallelOptions(workers=1).on_ray and ParallelOptions(address="auto").on_ray


def test_without_ray_the_flags_say_how_to_install_it(tmp_path, monkeypatch):
    ck = checkpoints(tmp_path / "ck", n=1, corrupt=None)
    monkeypatch.setattr("entropyflow.extras.importlib.util.find_spec", lambda name: None)
    for flag in (["--workers", "2"], ["--address", "ray://127.0.0.1:1"]):
        r = runner.invoke(app, ["track", str(ck), "-o", str(tmp_path / "out"), "--seeds", "0", *flag])
        assert r.exit_code == 2, r.output
        assert r.stderr.strip() == (
            "error: track on Ray (--workers, --address) needs Ray Tune, which is not installed: "
            "pip install 'entropyflow[sweep]'"
        )
    assert not (tmp_path / "out" / CACHE).exists()  # refused before any work
    with pytest.raises(MissingExtraError):
        track_to([ck], out=tmp_path / "lib", options=OPTS, parallel=ParallelOptions(workers=2))


def test_serial_track_never_imports_ray(tmp_path):
    ck = checkpoints(tmp_path / "ck", n=2, corrupt=None)
    code = (
        "import sys; from entropyflow.runs import track_to; from entropyflow.report import ReportOptions; "
        "from entropyflow.track import TrackOptions; "
        f"track_to([{str(ck)!r}], out={str(tmp_path / 'out')!r}, track_options=TrackOptions(seeds=0), "
        "report=ReportOptions(plot=False)); print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_serial_track_reports_a_corrupt_checkpoint_and_exits_3(tmp_path):
    ck = checkpoints(tmp_path / "ck", n=3, corrupt="epoch_01.pt")
    r = runner.invoke(app, ["track", str(ck), "-o", str(tmp_path / "out"), "--seeds", "0", "--no-plot", "-q"])
    assert r.exit_code == EXIT_INCOMPLETE == 3, r.output
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("failed checkpoint: epoch_01.pt: ") and "truncated or corrupted" in lines[0]
    assert lines[-1] == "error: 1 of 3 checkpoints failed (named above) and are left out of the trajectory"
    header = (tmp_path / "out" / "trajectory.csv").read_text().splitlines()[0]
    assert "epoch_00" in header and "epoch_02" in header and "epoch_01" not in header
    assert len(list((tmp_path / "out" / CACHE).glob("*.record.json"))) == 2  # what completed is cached
    # every checkpoint failing: nothing to draw, the checkpoint's own error (exit 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(CheckpointFormatError):
        track_to([bad], out=tmp_path / "out2", track_options=TrackOptions(seeds=0), report=NO_PLOT)


@pytest.mark.slow
def test_two_ray_workers_give_the_serial_bytes_and_share_its_cache(tmp_path, monkeypatch):
    from test_sweep_guarantees import listeners, loopback

    ck = checkpoints(tmp_path / "ck")
    topts = TrackOptions(seeds=2)
    serial = track_to([ck], out=tmp_path / "serial", options=OPTS, track_options=topts, report=NO_PLOT).trajectory
    seen: set = set()

    def progress(stage: str, k: int, n: int) -> None:  # the driver, while Ray runs: what listens below this process
        if k in (N // 2, N - 3):
            seen.update(listeners(os.getpid()))

    par = track_to(
        [ck],
        out=tmp_path / "parallel",
        options=OPTS,
        track_options=topts,
        report=NO_PLOT,
        progress=progress,
        parallel=ParallelOptions(workers=2),
    ).trajectory
    for traj in (serial, par):
        assert traj.analysed == N - 1 and len(traj.labels) == N - 1 and len(traj.seeds) == 2
        assert [(f.label, f.exit_code) for f in traj.failed] == [("epoch_13", 2)]
        assert "truncated or corrupted" in traj.failed[0].error
    for name in ("trajectory.csv", "checkpoints.csv"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes(), name
    # the 23 cache entries: the same analyses, field for field, but for the library versions, which analyze
    # records for the libraries imported in its process (a worker process may have imported fewer or more)
    mine, theirs = entries(tmp_path / "serial"), entries(tmp_path / "parallel")
    assert len(mine) == N - 1 and mine == theirs
    # the local Ray listened, on the loopback interface only
    assert {"gcs_server", "raylet"} <= {name for name, _, _ in seen}, seen
    assert [s for s in seen if not loopback(s[1])] == []

    # each mode reads the other's cache: nothing is analysed again, and no Ray is started for it
    def never(*args, **kwargs):
        raise AssertionError("analysed again")

    monkeypatch.setattr("entropyflow.track.SharedArchitecture.analyze", never)
    monkeypatch.setattr("entropyflow.track._OnRay._start", never)
    for out, parallel in ((tmp_path / "serial", ParallelOptions(workers=2)), (tmp_path / "parallel", None)):
        again = track_to(
            [ck], out=out, options=OPTS, track_options=TrackOptions(seeds=0), report=NO_PLOT, parallel=parallel
        ).trajectory
        assert again.analysed == 0 and all(again.cached) and len(again.failed) == 1
        assert (again.values == serial.values).all()


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_track_keeping_what_finished(tmp_path):
    from test_sweep_guarantees import descendants

    ck = checkpoints(tmp_path / "ck", corrupt=None)
    out = tmp_path / "out"
    args = ("track", ck, "-o", out, "--arch", "sample:digits_vgg", "--estimator", "spectral", "--workers", "2")
    started = time.monotonic()
    p, o, e = start(*args, "--seeds", "0", "--no-plot")
    records = out / CACHE
    while not (records.is_dir() and any(records.glob("*.record.json"))):
        if os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) or time.monotonic() - started > 150:
            r = finish(p, o, e, started, timeout=5)
            pytest.fail(f"no checkpoint finished (exit {r.rc}): {r.err[-2000:]}")
        time.sleep(0.1)
    ray_pids = [pid for pid, name in descendants(p.pid).items() if name in ("gcs_server", "raylet")]
    assert len(ray_pids) == 2, descendants(p.pid)
    p.send_signal(signal.SIGINT)
    r = finish(p, o, e, started, timeout=60)
    assert r.rc == 130, r.err[-2000:]
    assert "Traceback" not in r.err
    assert f"the checkpoints analysed so far are cached in {records}; the same command again" in " ".join(r.err.split())
    kept = len(list(records.glob("*.record.json")))
    assert 1 <= kept < N
    assert not (out / "trajectory.csv").exists()
    for pid in ray_pids:  # the local Ray was shut down with the run
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            assert state == "Z", f"Ray's process {pid} outlived the run"
