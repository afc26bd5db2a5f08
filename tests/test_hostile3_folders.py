"""Issue 19, hostile inputs round three: report folders, `compare -o`, `sweep -o`, `track` and its
cache. Each test builds its hostile folder or file in tmp_path and checks the exit code, the one
line said, that nothing of the user's changed (sha256 before and after) and the time taken."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time

import pytest
import torch
from safetensors.torch import save_file

from entropyflow.analysis import AnalyzeOptions
from entropyflow.compare import check_seeds
from entropyflow.report import ReportOptions
from entropyflow.report.outdir import BACKUP_PREFIX, JOURNAL, MANIFEST, STAGING_PREFIX
from entropyflow.runs import analyze_names, analyze_to, track_to
from entropyflow.samples import build_sample
from entropyflow.track import TrackOptions

EDITED = (
    "was edited since entropyflow wrote it (an edited file is never replaced): move it away or choose another --out"
)


def hashes(folder):
    """sha256 of every file under ``folder``, hidden ones and those in subfolders included."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refused(r, message):
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.strip() == f"error: {message}", r.stderr


def vgg_state_dict(seed=0):
    torch.manual_seed(seed)
    return build_sample("digits_vgg").state_dict()


# --- 1. a folder without a manifest -----------------------------------------------------------------


@pytest.mark.slow
def test_without_a_manifest_no_file_is_replaced(cli, tmp_path):
    """analysis.old.json, compare-budget.pdf and entropy.mine.png were deleted and the user's
    profile.png overwritten, exit 0. Without a manifest nothing in the folder is entropyflow's (no
    release ever wrote a report without one): the run is refused and nothing is touched; only the
    names a report would write block it, each named."""
    out = tmp_path / "out"
    assert cli("analyze", "-o", out, "-q").exit_code == 0
    (out / MANIFEST).unlink()  # a folder whose report files entropyflow has no record of
    shutil.copy(out / "analysis.json", out / "analysis.old.json")  # starts like a report file, has its content
    (out / "compare-budget.pdf").write_bytes(b"%PDF-1.4 the budget")
    shutil.copy(out / "entropy.png", out / "entropy.mine.png")
    (out / "profile.png").write_bytes(b"\x89PNG\r\n\x1a\n my own plot")
    before = hashes(out)
    r = cli("analyze", "-o", out, "-q")
    refused(
        r,
        f"cannot write the report to {out}: layers.csv exists there and was not written by entropyflow (no record "
        f"of it in {MANIFEST}): move it away or choose another --out",
    )
    assert hashes(out) == before
    keep = ("analysis.old.json", "compare-budget.pdf", "entropy.mine.png")
    for name in sorted(before):
        if name not in keep:
            (out / name).rename(tmp_path / name)  # the user moves the blocking names away, as told
    assert cli("analyze", "-o", out, "-q", "--plot-format", "svg").exit_code == 0
    after = hashes(out)
    for name in keep:
        assert after[name] == before[name], name
    assert "entropy.png" not in after and "entropy.svg" in after


# --- 2. another command's report --------------------------------------------------------------------


def never(*args, **kwargs):
    raise AssertionError("work started before the folder was checked")


@pytest.mark.slow
def test_compare_and_sweep_never_write_into_an_analyze_report(cli, tmp_path, monkeypatch):
    """`compare A B -o A` deleted A's analysis.json, CSVs, figures and report; so did `sweep -o A`."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("analyze", "-o", a, "-q", "--no-plot").exit_code == 0
    assert cli("analyze", "sample:digits_unet", "-o", b, "-q", "--no-plot").exit_code == 0
    before = hashes(a)
    said = (
        f"cannot write the report to {a}: it holds the report of `entropyflow analyze`, which `entropyflow {{}}` "
        "never replaces or deletes: choose another --out"
    )
    refused(cli("compare", a, b, "-o", a), said.format("compare"))
    monkeypatch.setattr("entropyflow.sweep.ray_tune.run", never)  # no trial may start
    r = cli("sweep", "--task", "digits-cnn", "--seeds", "1", "--epochs", "1", "-o", a)
    refused(r, said.format("sweep"))
    assert not (a / "tune").exists()
    assert hashes(a) == before
    assert json.loads((a / MANIFEST).read_text())["command"] == "analyze"
    assert cli("compare", a, b, "-o", tmp_path / "c").exit_code == 0  # a folder of its own is fine
    assert json.loads((tmp_path / "c" / MANIFEST).read_text())["command"] == "compare"


# --- 3. planted metadata, user folders with entropyflow's prefixes, edited report files ------------


def test_planted_metadata_and_lookalike_folders_touch_nothing_of_the_users(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    (out / "thesis.tex").write_text("three years of work")
    for prefix in (STAGING_PREFIX, BACKUP_PREFIX):  # user folders that merely share the prefixes
        (out / f"{prefix}photos").mkdir()
        (out / f"{prefix}photos" / "analysis.json").write_text("a holiday")
    sha = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in ("notes.md", "thesis.tex")}
    planted = {"tool": "entropyflow report folder", "command": "analyze", "files": sha}
    (out / MANIFEST).write_text(json.dumps(planted))  # "these files are mine, unchanged: remove them as stale"
    before = {k: v for k, v in hashes(out).items() if k != MANIFEST}
    assert cli("analyze", "-o", out, "-q", "--no-plot").exit_code == 0
    after = hashes(out)
    assert all(after[k] == v for k, v in before.items()), before.keys() - after.keys()
    # a planted journal naming the user's files as placed (to delete) or moved (to overwrite)
    mine = hashes(out)
    (out / JOURNAL).write_text(
        json.dumps(
            {"tool": "entropyflow report folder", "backup": f"{BACKUP_PREFIX}photos", "placed": sha, "moved": {}}
        )
    )
    refused(
        cli("analyze", "-o", out, "-q", "--no-plot"),
        f"cannot write the report to {out}: {JOURNAL} from an interrupted run is unreadable: remove it after checking "
        "the folder",
    )
    assert {k: v for k, v in hashes(out).items() if k != JOURNAL} == mine
    # the same with report names: the backup folder is not entropyflow's (no marker), nothing is restored from it
    layers = hashlib.sha256((out / "layers.csv").read_bytes()).hexdigest()
    (out / f"{BACKUP_PREFIX}photos" / "layers.csv").write_text("planted")
    doc = {"tool": "entropyflow report folder", "backup": f"{BACKUP_PREFIX}photos", "placed": {}, "moved": {}}
    doc["moved"]["layers.csv"] = hashlib.sha256(b"planted").hexdigest()
    doc["placed"]["layers.csv"] = layers
    (out / JOURNAL).write_text(json.dumps(doc))
    assert cli("analyze", "-o", out, "-q", "--no-plot").exit_code == 0
    assert (out / f"{BACKUP_PREFIX}photos" / "layers.csv").read_text() == "planted"
    assert (out / "layers.csv").read_bytes().startswith(b"index,name,kind")
    # an edited report file is never replaced
    (out / "layers.csv").write_text("index,name,kind,module_type,my notes\n")
    edited = hashes(out)
    refused(cli("analyze", "-o", out, "-q", "--no-plot"), f"cannot write the report to {out}: layers.csv {EDITED}")
    assert hashes(out) == edited
    assert (out / f"{STAGING_PREFIX}photos" / "analysis.json").read_text() == "a holiday"
    assert (out / f"{BACKUP_PREFIX}photos" / "analysis.json").read_text() == "a holiday"


# --- 4. ownership checked before the work ------------------------------------------------------------


@pytest.mark.slow
def test_ownership_is_checked_before_any_work(cli, tmp_path, monkeypatch):
    """`sweep -o` a folder with the user's trials.csv ran every trial, then exited 2 leaving OUT/tune;
    `track` left cache entries on a refused run."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "trials.csv").write_text("my,trials\n")
    (out / "trajectory.csv").write_text("my,trajectory\n")
    before = hashes(out)
    monkeypatch.setattr("entropyflow.sweep.ray_tune.run", never)  # no trial may start
    r = cli("sweep", "--task", "digits-cnn", "--seeds", "1", "--epochs", "1", "-o", out)
    refused(
        r,
        f"cannot write the report to {out}: trials.csv exists there and was not written by entropyflow (no record of "
        f"it in {MANIFEST}): move it away or choose another --out",
    )
    assert hashes(out) == before and not (out / "tune").exists()
    monkeypatch.setattr("entropyflow.track.analyze", never)
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(vgg_state_dict(), ck / "epoch_1.pt")
    r = cli("track", ck, "-o", out, "--seeds", "0")
    refused(
        r,
        f"cannot write the report to {out}: trajectory.csv exists there and was not written by entropyflow (no record "
        f"of it in {MANIFEST}): move it away or choose another --out",
    )
    assert hashes(out) == before and not (out / ".entropyflow-cache").exists()
    (out / "layers.csv").write_text("mine\n")
    r = cli("analyze", "-o", out, "-q")
    assert r.exit_code == 2 and "layers.csv exists there and was not written by entropyflow" in r.stderr
    # what analyze checks before the work is what it writes
    for k, (opts, compare, seeds) in enumerate(
        [
            (ReportOptions(), None, None),
            (ReportOptions(plot=False, html=False), "random", 2),
            (ReportOptions(plot_format="svg"), "random", 1),
            (ReportOptions(html=False), "sample:digits_unet", None),
        ]
    ):
        written = analyze_to(
            None,
            out=tmp_path / f"n{k}",
            options=AnalyzeOptions(hash_files=False),
            report=opts,
            compare=compare,
            seeds=seeds,
        )
        expected = analyze_names(opts, compare, check_seeds(compare, seeds))
        assert sorted(p.name for p in written.files) == sorted(expected), (opts, compare, seeds)


# --- 5. a planted cache entry never supplies a spec to build ----------------------------------------


def test_a_planted_track_cache_entry_never_supplies_an_architecture(tmp_path, monkeypatch):
    """A cache entry whose model.arch said torchvision:vit_h_14 made track build it (> 3 GiB)."""
    from entropyflow.load import zoo

    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(vgg_state_dict(), ck / "epoch_1.pt")  # a bare state dict: no architecture, no seeds
    out = tmp_path / "out"
    first = track_to([ck], out=out, track_options=TrackOptions(seeds=2), report=ReportOptions(plot=False)).trajectory
    assert first.seeds == () and first.cached == (False,)
    entry = next((out / ".entropyflow-cache").glob("*.analysis.json"))
    doc = json.loads(entry.read_text())
    doc["model"]["arch"] = "torchvision:vit_h_14"
    doc["model"]["input_size"] = [3, 224, 224]
    data = json.dumps(doc).encode()
    entry.write_bytes(data)
    record = entry.with_name(entry.name.replace(".analysis.json", ".record.json"))
    rec = json.loads(record.read_text())
    rec["analysis_sha256"] = hashlib.sha256(data).hexdigest()  # a forged, consistent record
    record.write_text(json.dumps(rec))

    def never(*args, **kwargs):
        raise AssertionError("built an architecture named by a cache entry")

    monkeypatch.setattr(zoo, "build_random", never)
    again = track_to([ck], out=out, track_options=TrackOptions(seeds=2), report=ReportOptions(plot=False)).trajectory
    assert again.cached == (True,) and again.seeds == ()


# --- 6. the cache key covers every file; entries are verified ---------------------------------------


def test_track_cache_keys_on_every_shard_and_verifies_its_entries(tmp_path):
    """Rewriting a shard of a sharded checkpoint reported the old numbers and the old sha."""
    sd = {k: v.contiguous() for k, v in vgg_state_dict().items()}
    ck = tmp_path / "ck"
    ck.mkdir()
    key = "features.0.weight"
    names = sorted(sd)
    half = {"a": names[: len(names) // 2], "b": names[len(names) // 2 :]}
    for shard, keys in half.items():
        save_file({k: sd[k] for k in keys}, ck / f"model-{shard}.safetensors")
    index = ck / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: f"model-{s}.safetensors" for s, ks in half.items() for k in ks}}))
    out = tmp_path / "out"
    opts, report = TrackOptions(seeds=0), ReportOptions(plot=False)
    first = track_to([index], out=out, track_options=opts, report=report).trajectory
    assert track_to([index], out=out, track_options=opts, report=report).trajectory.cached == (True,)
    shard = "a" if key in half["a"] else "b"
    save_file({k: (sd[k] * 3 if k == key else sd[k]) for k in half[shard]}, ck / f"model-{shard}.safetensors")
    second = track_to([index], out=out, track_options=opts, report=report).trajectory
    assert second.cached == (False,) and second.results[0].model.sha256 != first.results[0].model.sha256
    row = second.layers.index("features.0")
    assert second.values[row, 0] == pytest.approx(first.values[row, 0] + math.log(3))
    # an entry edited after it was written is recomputed, not reported as fact
    for entry in (out / ".entropyflow-cache").glob("*.analysis.json"):
        entry.write_bytes(entry.read_bytes().replace(b'"dh_per_position": [', b'"dh_per_position": [9, ', 1))
    third = track_to([index], out=out, track_options=opts, report=report).trajectory
    assert third.cached == (False,) and third.values[row, 0] == pytest.approx(second.values[row, 0])
    # an oversized or malformed record is ignored, never trusted
    for record in (out / ".entropyflow-cache").glob("*.record.json"):
        record.write_text('{"schema": 1, "schema": 2}')
    assert track_to([index], out=out, track_options=opts, report=report).trajectory.cached == (False,)


# --- 7. a catastrophic --labels pattern ---------------------------------------------------------------


@pytest.mark.slow
def test_a_backtracking_labels_pattern_ends_in_seconds(cli, tmp_path):
    """--labels '^(a+)+$' against a long file name hung for more than 60 s."""
    ck = tmp_path / "ck"
    ck.mkdir()
    name = "a" * 60 + "!.pt"
    (ck / name).write_bytes(b"not even a checkpoint: labels come first")
    started = time.monotonic()
    r = cli("track", ck / name, "--labels", "^(a+)+$", "-o", tmp_path / "out")
    took = time.monotonic() - started
    refused(
        r,
        "--labels '^(a+)+$' takes more than 5 s on these file names (nested repetition such as (a+)+ backtracks "
        "without end): simplify the pattern",
    )
    assert took < 30, took  # a hang guard, not a speed claim: the pattern's own limit is 5 s; it hung > 60 s
    assert not (tmp_path / "out").exists()
