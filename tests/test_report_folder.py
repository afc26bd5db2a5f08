"""The report folder is replaced as a whole: never mixed, never stale, never a file the tool did
not write deleted or overwritten, whatever signal arrives at whatever moment."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hostile import env, finish, run, so_far, start

from entropyflow.report import outdir
from entropyflow.samples import samples_dir

pytestmark = pytest.mark.slow  # the report-folder protocol: crashes, signals and kills at every rename (minutes)

SAMPLES = samples_dir()
MANIFEST = ".entropyflow-manifest.json"


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.exists() else {}


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".entropyflow-") and p.name != MANIFEST)


def consistent(folder) -> str:
    """The report in ``folder`` is one complete run: every file its manifest lists, with those
    bytes, and no other report file. Returns the analysed spec."""
    doc = json.loads((folder / MANIFEST).read_text())
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert names == set(doc["files"]), (names, doc["files"])
    for name, sha in doc["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    assert leftovers(folder) == []
    return json.loads((folder / "analysis.json").read_text())["model"]["spec"]


def test_reusing_a_folder_leaves_no_stale_files(cli, tmp_path):
    out = tmp_path / "out"
    assert cli("analyze", "-o", out, "--compare", "random", "--seeds", "2", "-q").exit_code == 0
    assert {"entropy.png", "profile.png", "compare-1.analysis.json", "compare-2.analysis.json"} <= set(os.listdir(out))
    assert cli("analyze", "-o", out, "--plot-format", "svg", "-q").exit_code == 0
    assert sorted(p for p in os.listdir(out) if not p.startswith(".")) == [
        "analysis.json",
        "entropy.svg",
        "filters.csv",
        "layers.csv",
        "profile.svg",
        "report.html",
    ]
    consistent(out)


def test_a_stale_file_the_user_changed_is_kept(cli, tmp_path):
    out = tmp_path / "out"
    assert cli("analyze", "-o", out, "-q").exit_code == 0
    (out / "entropy.png").write_bytes(b"my own edit")
    assert cli("analyze", "-o", out, "--no-plot", "-q").exit_code == 0
    assert (out / "entropy.png").read_bytes() == b"my own edit" and not (out / "profile.png").exists()


def test_a_folder_named_like_a_report_file_is_never_deleted(cli, tmp_path):
    """It was deleted recursively, with exit 0."""
    out = tmp_path / "out"
    (out / "analysis.json").mkdir(parents=True)
    (out / "analysis.json" / "thesis.tex").write_text("three years of work")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = cli("analyze", "-o", out)
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: cannot write the report to {out}: analysis.json exists there as a folder, which entropyflow did not "
        "write and never deletes: move it away or choose another --out"
    )
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(out)) == ["analysis.json"]


def test_a_users_own_file_is_never_overwritten(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "layers.csv").write_text("my,own,table\n")
    (out / "notes.md").write_text("mine")
    r = cli("analyze", "-o", out)
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: cannot write the report to {out}: layers.csv exists there and was not written by entropyflow "
        f"(no record of it in {MANIFEST}): move it away or choose another --out"
    )
    assert snapshot(out) == {"layers.csv": b"my,own,table\n", "notes.md": b"mine"}
    (out / "layers.csv").unlink()
    assert cli("analyze", "-o", out, "-q").exit_code == 0  # beside other files is fine
    assert (out / "notes.md").read_text() == "mine"
    consistent_files = json.loads((out / MANIFEST).read_text())["files"]
    assert "notes.md" not in consistent_files


def test_a_report_without_its_manifest_is_not_replaced(cli, tmp_path):
    """No release wrote reports without a manifest: report files entropyflow has no record of are
    the user's, and the run is refused with nothing touched."""
    out = tmp_path / "out"
    assert cli("analyze", "-o", out, "-q").exit_code == 0
    (out / MANIFEST).unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("analyze", SAMPLES / "digits_unet.pt", "-o", out, "--plot-format", "svg", "-q")
    assert r.exit_code == 2 and "was not written by entropyflow" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_empty_name_and_a_report_name_that_is_a_link(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere.csv").write_text("keep")
    (out / "filters.csv").symlink_to(tmp_path / "elsewhere.csv")
    r = cli("analyze", "-o", out)
    assert r.exit_code == 2 and "filters.csv exists there as a symbolic link" in r.stderr
    assert (tmp_path / "elsewhere.csv").read_text() == "keep"


# --- interrupted commits ----------------------------------------------------------------------------


def commit_renames(cli, tmp_path):
    """How many renames a commit over an existing report makes (the journal, the old files moved
    aside, the new files moved in)."""
    out = tmp_path / "count"
    assert cli("analyze", "-o", out, "-q").exit_code == 0
    calls = []
    real = os.replace
    import unittest.mock

    with unittest.mock.patch("entropyflow.report.outdir.os.replace", lambda a, b: calls.append(b) or real(a, b)):
        assert cli("analyze", SAMPLES / "digits_unet.pt", "-o", out, "-q").exit_code == 0
    shutil.rmtree(out)
    return len(calls)


def test_a_signal_at_every_rename_of_the_commit(cli, tmp_path, monkeypatch):
    """SIGINT delivered at the k-th rename (what `strace -e inject=rename:signal=INT:when=k` does)
    is held until the commit is complete: the new report, whole, then exit 130."""
    n = commit_renames(cli, tmp_path)
    assert n == 1 + 2 * 7  # the journal, 7 files aside (6 report files + manifest), 7 new ones
    real = os.replace
    for k in range(1, n + 1):
        out = tmp_path / f"k{k}"
        assert cli("analyze", "-o", out, "-q").exit_code == 0
        calls = []

        def replace(a, b, k=k, calls=calls):
            calls.append(b)
            if len(calls) == k:
                os.kill(os.getpid(), signal.SIGINT)
            return real(a, b)

        monkeypatch.setattr("entropyflow.report.outdir.os.replace", replace)
        r = cli("analyze", SAMPLES / "digits_unet.pt", "-o", out, "-q")
        monkeypatch.setattr("entropyflow.report.outdir.os.replace", real)
        assert r.exit_code == 130 and r.stderr.strip() == "interrupted", (k, r.stderr)
        assert consistent(out).endswith("digits_unet.pt"), k


KILL_DRIVER = """
import os, sys
from entropyflow.report import outdir
k, real, calls = int(sys.argv[1]), os.replace, []
def replace(a, b):
    calls.append(b)
    if len(calls) == k:
        os._exit(137)  # killed outright: no handler, no cleanup
    return real(a, b)
outdir.os.replace = replace
from entropyflow.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_hard_kill_at_every_rename_is_undone_by_the_next_run(cli, tmp_path):
    """SIGKILL cannot be held: the folder may be mixed until the next run, which finds the
    journal and restores the previous report byte for byte before anything else."""
    n = commit_renames(cli, tmp_path)
    for k in (1, 2, n // 2, n):  # after the journal, after one file moved aside, half-way, after the manifest
        out = tmp_path / f"k{k}"
        assert cli("analyze", "-o", out, "-q").exit_code == 0
        before = snapshot(out)
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                KILL_DRIVER,
                str(k),
                "analyze",
                str(SAMPLES / "digits_unet.pt"),
                "-o",
                str(out),
                "-q",
            ],
            env=env(),
            capture_output=True,
            text=True,
        )
        assert p.returncode == 137, p.stderr
        with outdir._locked(out):
            outdir._recover(out)
        assert snapshot(out) == before, k
        assert leftovers(out) == [], (k, leftovers(out))


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("sig,code,k", [("INT", 130, 8), ("TERM", 143, 1)])
def test_real_signals_injected_at_renames_with_strace(tmp_path, sig, code, k):
    """The report's reproduction itself: strace delivers the signal at the k-th rename syscall (of
    13: the journal, 6 files aside, 6 new ones; every k is covered in-process above). Slow under
    ptrace, so two of them."""
    probe = subprocess.run(["strace", "-f", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("ptrace is not permitted here")
    out = tmp_path / "out"
    assert run("analyze", "-o", out, "-q", "--no-html").rc == 0
    r = run(
        "analyze",
        SAMPLES / "digits_unet.pt",
        "-o",
        out,
        "-q",
        "--no-html",
        prefix=(
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=rename,renameat,renameat2",
            "-e",
            f"inject=rename,renameat,renameat2:signal={sig}:when={k}",
        ),
    )
    assert r.rc == code, (r.rc, r.err[-300:])
    assert consistent(out).endswith("digits_unet.pt")


def test_concurrent_runs_on_one_folder_both_complete(tmp_path):
    """The losing run said 'No such file or directory'; now commits take turns."""
    out = tmp_path / "out"
    started = time.monotonic()
    jobs = [
        start("analyze", model, "-o", out, "-q") for model in (SAMPLES / "digits_vgg.pt", SAMPLES / "digits_unet.pt")
    ] * 1
    jobs += [start("analyze", SAMPLES / "digits_resnet.pt", "-o", out, "-q")]
    runs = [finish(*job, started) for job in jobs]
    assert [r.rc for r in runs] == [0, 0, 0], [r.err for r in runs]
    assert consistent(out).rsplit("/", 1)[-1] in ("digits_vgg.pt", "digits_unet.pt", "digits_resnet.pt")


@pytest.mark.parametrize(
    "sig,code,said", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_during_a_long_run_keeps_the_earlier_report(tmp_path, sig, code, said):
    out = tmp_path / "out"
    assert run("analyze", "-o", out, "-q").rc == 0
    before = snapshot(out)
    started = time.monotonic()
    p, o, e = start(
        "analyze", "sample:digits_resnet", "--random-init", "--compare", "random", "--seeds", "1000", "-o", out
    )
    # the signal goes once the thousand reference analyses are seen under way, short of the end (a fixed
    # sleep could land in the writing on a fast machine, which finishes a whole new report first)
    seen = None
    while seen is None and time.monotonic() - started < 120 and p.poll() is None:
        seen = re.search(r"random-init seeds \(one analysis each\): (\d+)/1000 seeds", so_far(e))
        time.sleep(0.05)
    assert seen is not None and int(seen.group(1)) < 1000, so_far(e)[-600:]
    p.send_signal(sig)
    r = finish(p, o, e, started)
    assert r.rc == code and r.err.strip().splitlines()[-1] == said, (r.rc, r.err[-300:])
    after = snapshot(out)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))  # names, not bytes
    assert "Traceback" not in r.err, r.err[-2000:]
    assert changed == [] and leftovers(out) == [], (changed, leftovers(out), r.err[-600:], r.progress[-5:])


def test_an_interrupted_config_write_leaves_no_temporary_file(cli, tmp_path, monkeypatch):
    cfg = tmp_path / "lambda.yaml"
    assert cli("recommend", "-o", cfg).exit_code == 0
    before = cfg.read_bytes()

    def interrupted(a, b):
        raise KeyboardInterrupt

    monkeypatch.setattr("entropyflow.config.os.replace", interrupted)
    r = cli("recommend", "sample:digits_unet", "-o", cfg)
    assert r.exit_code == 130 and cfg.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["lambda.yaml"]


def test_recommend_never_overwrites_a_file_it_did_not_write(cli, tmp_path):
    mine = tmp_path / "settings.yaml"
    mine.write_text("lr: 0.1\n")
    r = cli("recommend", "-o", mine)
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: cannot write {mine}: the file exists and is not a λ config written by entropyflow (entropyflow never "
        "overwrites files it did not write): choose another name"
    )
    assert mine.read_text() == "lr: 0.1\n"
    r = cli("recommend", "-o", "")
    assert (
        r.exit_code == 2 and r.stderr.strip() == "error: the config file name is empty (give one, e.g. -o lambda.yaml)"
    )
