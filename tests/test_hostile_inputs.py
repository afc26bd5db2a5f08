"""Malformed and hostile input files, built byte by byte here: each ends with exit 2 and one exact
line, nothing executed, nothing written, and (in a real process) bounded memory and time."""

from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import zipfile

import pytest
import torch
from hostile import baseline_peak_mib, f32_entry, run, run_python, safetensors
from safetensors.torch import save_file
from test_cli import assert_user_error, files_in

import entropyflow
from entropyflow.config import from_dict as config_from_dict
from entropyflow.errors import ConfigError
from entropyflow.samples import build_sample

EXTRA_MIB = 160  # what a refused hostile file may cost above the imports themselves


@pytest.fixture(scope="module")
def baseline():
    return baseline_peak_mib()


@pytest.fixture(scope="module")
def vgg_sd():
    torch.manual_seed(0)
    return build_sample("digits_vgg").state_dict()


def user_error(cli, path, out, message, *extra):
    """Exit 2, exactly ``error: <message>`` on one line, no files."""
    r = cli("analyze", path, "-o", out, *extra)
    assert_user_error(r, out)
    assert r.stderr.strip() == f"error: {message}", r.stderr
    return r


# --- safetensors headers (every rule the safetensors library enforces, and a bound) --------------

DATA = bytes(16)
OK = {"w.weight": f32_entry([2, 2])}
SAFETENSORS = {
    "too_large": (
        safetensors(OK, DATA, length=200_000_000),
        "its safetensors header claims 200,000,000 bytes (entropyflow reads at most 16 MiB of header)",
    ),
    "missing_dtype": (
        safetensors({"w.weight": {"shape": [2, 2], "data_offsets": [0, 16]}}, DATA),
        "safetensors entry 'w.weight' must have exactly dtype, shape and data_offsets",
    ),
    "missing_offsets": (
        safetensors({"w.weight": {"dtype": "F32", "shape": [2, 2]}}, DATA),
        "safetensors entry 'w.weight' must have exactly dtype, shape and data_offsets",
    ),
    "missing_shape": (
        safetensors({"w.weight": {"dtype": "F32", "data_offsets": [0, 16]}}, DATA),
        "safetensors entry 'w.weight' must have exactly dtype, shape and data_offsets",
    ),
    "unknown_dtype": (
        safetensors({"w.weight": {"dtype": "F33", "shape": [2, 2], "data_offsets": [0, 16]}}, DATA),
        "safetensors entry 'w.weight' has an unknown dtype 'F33'",
    ),
    "negative_shape": (
        safetensors({"w.weight": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}, DATA),
        "safetensors entry 'w.weight' has a bad shape (a list of non-negative integers is needed)",
    ),
    "string_shape": (
        safetensors({"w.weight": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}}, DATA),
        "safetensors entry 'w.weight' has a bad shape (a list of non-negative integers is needed)",
    ),
    "overlapping": (
        safetensors({"a.weight": f32_entry([2, 2]), "b.weight": f32_entry([2, 2], begin=8)}, bytes(24)),
        "its safetensors tensors overlap (data offsets are not contiguous)",
    ),
    "reversed": (
        safetensors({"w.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]}}, DATA),
        "safetensors entry 'w.weight' has bad data_offsets (two increasing non-negative integers are needed)",
    ),
    "metadata_not_strings": (
        safetensors({"__metadata__": {"a": 1}, **OK}, DATA),
        "its safetensors __metadata__ must map strings to strings",
    ),
    "deeply_nested": (
        safetensors(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"),
        "its safetensors header is nested too deeply to be a safetensors header",
    ),
    "bytes_do_not_match_shape": (
        safetensors({"w.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}, DATA),
        "safetensors entry 'w.weight' declares 16 bytes for shape [2, 3] of F32",
    ),
    "trailing_bytes": (safetensors(OK, DATA + b"junk"), "is corrupted: 4 bytes follow its last tensor"),
}


@pytest.mark.parametrize("name", list(SAFETENSORS))
def test_safetensors_headers_the_library_rejects(cli, tmp_path, name):
    data, message = SAFETENSORS[name]
    f = tmp_path / f"{name}.safetensors"
    f.write_bytes(data)
    sep = " " if message.startswith("is ") else ": "
    user_error(cli, f, tmp_path / "out", f"{f}{sep}{message}")


@pytest.mark.slow
def test_a_header_declaring_terabytes_is_refused_before_any_allocation(tmp_path, baseline):
    f = tmp_path / "huge.safetensors"
    f.write_bytes(
        safetensors({"w.weight": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 4 * 10**12]}}, DATA)
    )
    r = run("analyze", f, "-o", tmp_path / "out")
    assert r.rc == 2 and r.one_line_error
    assert r.err.strip() == f"error: {f} is truncated: its header describes 4,000,000,000,103 bytes, the file has 119"
    assert r.peak_mib - baseline < EXTRA_MIB and r.peak_mib < 1024, (r.peak_mib, baseline)


# --- torch zips and pickles -----------------------------------------------------------------------


def rewrite_record(src, dst, suffix: str, edit) -> None:
    """Copy a torch zip with one record's bytes edited (CRCs recomputed by zipfile)."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            data = z.read(info)
            out.writestr(zipfile.ZipInfo(info.filename), edit(data) if info.filename.endswith(suffix) else data)


def test_a_mutated_pickle_is_a_corrupted_file(cli, tmp_path, vgg_sd):
    torch.save(vgg_sd, tmp_path / "good.pt")
    rewrite_record(tmp_path / "good.pt", tmp_path / "mutated.pt", "data.pkl", lambda d: d.replace(b"(", b")", 3))
    user_error(
        cli,
        tmp_path / "mutated.pt",
        tmp_path / "out",
        "mutated.pt is truncated or corrupted (IndexError: pop from empty list)",
    )


def test_a_tensor_record_altered_on_disk_fails_its_crc(cli, tmp_path, vgg_sd):
    """Without the CRC check this file was analysed with exit 0: silently wrong numbers."""
    f = tmp_path / "altered.pt"
    torch.save(vgg_sd, f)
    raw = bytearray(f.read_bytes())
    with zipfile.ZipFile(f) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 69] ^= 0xFF  # one byte inside the first tensor's data
    f.write_bytes(bytes(raw))
    user_error(
        cli,
        f,
        tmp_path / "out",
        "altered.pt is corrupted: a record fails its zip check (Bad CRC-32 for file 'altered/data/0')",
        "--arch",
        "sample:digits_vgg",
    )


@pytest.mark.slow
def test_stride_zero_tensors_are_refused_in_bounded_memory(tmp_path, baseline):
    """2 KB declaring a (64, 3, 3000, 3000) conv with stride 0: 7.1 GB RSS and exit 0 before."""
    f = tmp_path / "stride0.pt"
    torch.save({"conv.weight": torch.zeros(1).expand(64, 3, 3000, 3000)}, f)
    assert f.stat().st_size < 4096
    r = run("analyze", f, "-o", tmp_path / "out")
    assert r.rc == 2 and r.one_line_error, r.err
    assert r.err.strip() == (
        f"error: tensor conv.weight declares 1,728,000,000 elements (6.4 GiB) in a file of {f.stat().st_size:,} "
        "bytes (zero or overlapping strides, shape [64, 3, 3000, 3000], stride [0, 0, 0, 0]): not real weights; refused"
    )
    assert r.peak_mib - baseline < EXTRA_MIB and r.peak_mib < 1024 and r.seconds < 30


def bomb_pickle(depth: int, as_key: bool) -> bytes:
    """A protocol-2 pickle of {'w.weight': <tensor>, KEY: VALUE} where the bomb x = (x, x) nested
    ``depth`` times is the key or the value; written opcode by opcode (building the dict in Python
    would hash the key, which is the attack)."""
    buf = io.BytesIO()
    torch.save({"w.weight": torch.ones(2, 2), "epoch": 1}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        pkl = next(z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
    bomb = b")" + b"r" + struct.pack("<I", 100000)  # EMPTY_TUPLE, LONG_BINPUT 100000
    for i in range(depth):
        get = b"j" + struct.pack("<I", 100000 + i)  # LONG_BINGET
        bomb += get + get + b"\x86" + b"r" + struct.pack("<I", 100001 + i)  # TUPLE2, LONG_BINPUT
    target = b"X\x05\x00\x00\x00epoch" if as_key else b"K\x01u."  # BINUNICODE 'epoch' / BININT1 1 before SETITEMS, STOP
    bomb = bomb if as_key else bomb + b"u."
    assert pkl.count(target) == 1
    return pkl.replace(target, bomb)


@pytest.mark.slow
@pytest.mark.parametrize("as_key", [False, True], ids=["value", "key"])
def test_pickle_bombs_are_refused_before_unpickling(tmp_path, baseline, as_key):
    """A 34-level shared tuple: as a Lightning epoch it grew to 3.1 GB in the description; as a
    dict key the unpickler itself hashes it for minutes."""
    f = tmp_path / "bomb.ckpt"
    buf = io.BytesIO()
    torch.save({"w.weight": torch.ones(2, 2)}, buf)
    src = tmp_path / "src.pt"
    src.write_bytes(buf.getvalue())
    rewrite_record(src, f, "data.pkl", lambda _: bomb_pickle(34, as_key))
    assert f.stat().st_size < 4096
    ops = sum(1 for _ in pickletools.genops(bomb_pickle(34, as_key)))
    r = run("analyze", f, "-o", tmp_path / "out", timeout=60)
    assert r.rc == 2 and r.one_line_error, r.err
    assert r.err.strip() == (
        f"error: bomb.ckpt: its pickle of {ops} opcodes builds an object that expands to more than 10,000,000 "
        "objects through shared references (a pickle bomb); refused before unpickling"
    )
    assert r.peak_mib - baseline < EXTRA_MIB and r.peak_mib < 1024 and r.seconds < 30


def test_a_lightning_epoch_is_described_bounded(tmp_path, vgg_sd):
    """Metadata rendered from a checkpoint is bounded even when it is not a bomb."""
    ckpt = {
        "state_dict": vgg_sd,
        "pytorch-lightning_version": "2.4" + "x" * 5000,
        "epoch": list(range(10000)),
        "global_step": 7,
    }
    torch.save(ckpt, tmp_path / "big.ckpt")
    result = entropyflow.analyze(str(tmp_path / "big.ckpt"), arch="sample:digits_vgg", hash_files=False)
    assert result.model.description == (
        "Lightning checkpoint (version 2.4xxxxxxxxxxxxxxxx…, epoch list[10000], step 7) as sample:digits_vgg"
    )


def test_a_torch_zip_named_safetensors_is_read_as_what_it_is(tmp_path, vgg_sd):
    torch.save(vgg_sd, tmp_path / "model.pt")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "model.pt").read_bytes())
    a = entropyflow.analyze(str(tmp_path / "model.pt"), arch="sample:digits_vgg", hash_files=False)
    b = entropyflow.analyze(str(tmp_path / "model.safetensors"), arch="sample:digits_vgg", hash_files=False)
    assert b.model.format == "torch-zip" and [layer.per_position.tolist() for layer in a.layers] == [
        layer.per_position.tolist() for layer in b.layers
    ]


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8(tmp_path, vgg_sd):
    """A valid checkpoint was reported 'truncated' because torch could not open the name."""
    name = os.fsencode(tmp_path) + b"/g\xff\xfeod.pt"
    torch.save(vgg_sd, os.fsdecode(name))
    r = run(
        "analyze", os.fsdecode(name), "--arch", "sample:digits_vgg", "-o", tmp_path / "out", "--no-plot", "--no-html"
    )
    assert r.rc == 0, r.err
    doc = json.loads((tmp_path / "out" / "analysis.json").read_text(encoding="utf-8"))
    assert doc["model"]["files"] == [str(tmp_path) + "/g\\xff\\xfeod.pt"] and len(doc["layers"]) == 6
    assert "g\\xff\\xfeod.pt" in r.out


# --- files and folders that cannot be read, names that cannot exist -------------------------------


def test_names_too_long(cli, tmp_path):
    long = "x" * 300
    user_error(
        cli, tmp_path / f"{long}.pt", tmp_path / "out", f"cannot read {tmp_path / (long + '.pt')}: File name too long"
    )
    r = cli("analyze", "-o", tmp_path / long)
    assert (
        r.exit_code == 2
        and r.stderr.strip() == f"error: cannot write the report to {tmp_path / long}: File name too long"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_folder(cli, tmp_path, vgg_sd):
    f = tmp_path / "locked.pt"
    torch.save(vgg_sd, f)
    f.chmod(0)
    user_error(cli, f, tmp_path / "out", f"cannot read {f}: Permission denied")
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0)
    user_error(cli, d, tmp_path / "out", f"cannot read {d}: Permission denied")


def test_unreadable_file_even_as_root(cli, tmp_path, vgg_sd, monkeypatch):
    f = tmp_path / "locked.pt"
    torch.save(vgg_sd, f)
    real_open = open

    def guarded(path, *a, **k):
        if str(path) == str(f):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", guarded)
    user_error(cli, f, tmp_path / "out", f"cannot read {f}: Permission denied")


@pytest.mark.parametrize(
    "target,shown",
    [
        ("../outside.safetensors", "../outside.safetensors"),
        ("/etc/passwd", "/etc/passwd"),
        ("../../../../../../etc/passwd", "../../../../../../etc/passwd"),
        ("link.safetensors", "link.safetensors"),
    ],
)
def test_shard_indexes_cannot_point_outside_their_folder(cli, tmp_path, vgg_sd, target, shown):
    save_file({k: v.contiguous() for k, v in vgg_sd.items()}, tmp_path / "outside.safetensors")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")  # inside by name, outside once resolved
    (shards / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: target for k in vgg_sd}}))
    user_error(
        cli,
        shards,
        tmp_path / "out",
        f"shard index model.safetensors.index.json points outside its folder ({shown}): shards must be files next to "
        "the index",
    )


# --- options with no sane bound --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--seed", str(2**64)],
            "--seed must be an integer from 0 to 2^64−1 (torch.manual_seed's range), not 18446744073709551616",
        ),
        (
            ["--device", "mps"],
            "unknown device 'mps' (MPS has no float64, which every reported value needs) (use auto, cpu, cuda or "
            "cuda:N)",
        ),
        (["--device", "meta"], "unknown device 'meta' (meta tensors hold no values) (use auto, cpu, cuda or cuda:N)"),
        (
            ["--compare", "random", "--seeds", "1000000"],
            "--seeds 1,000,000 is more than 1000 (each seed is one full analysis of the architecture)",
        ),
        (["--input-size", "3x99999999999"], "bad --input-size '3x99999999999': each size must be at most 1,048,576"),
    ],
)
def test_option_bounds(cli, tmp_path, args, message):
    out = tmp_path / "out"
    r = cli("analyze", *args, "-o", out)
    assert_user_error(r, out)
    assert r.stderr.strip() == f"error: {message}"


def test_empty_output_folder_name_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("analyze", "-o", "")
    assert (
        r.exit_code == 2
        and r.stderr.strip() == "error: the output folder name is empty (give a folder, e.g. -o entropyflow-report)"
    )
    assert list(tmp_path.iterdir()) == []  # not written into the current folder


@pytest.mark.slow
def test_spectral_work_is_planned_against_the_budget(tmp_path, baseline):
    """resnet18 at 20000x20000 ran 113 s to 3 GB and then tried 12.8 GB: now refused at once."""
    r = run(
        "analyze",
        "torchvision:resnet18",
        "--random-init",
        "--estimator",
        "spectral",
        "--input-size",
        "3x20000x20000",
        "-o",
        tmp_path / "out",
    )
    assert r.rc == 2 and r.one_line_error
    assert r.err.strip() == (
        "error: layer conv1: the spectral estimator needs at least 2.6 GiB at once for a 64x3x7x7 kernel on a "
        "20000x20000 grid, more than the memory budget of 256 MiB: raise --max-gpu-mem, pass a smaller "
        "--input-size, or use --estimator paper"
    )
    assert (
        r.seconds < 30 and r.peak_mib - baseline < 400 and r.peak_mib < 1024
    )  # torchvision's import and the model are in it


@pytest.mark.slow
def test_a_huge_kernel_stays_within_the_budget(tmp_path):
    """A 4096x4096 kernel asked for 2.25 PB (the P×P autocorrelation Gram); the direct route holds
    a few spectra of the grid at a time."""
    code = """
import resource, torch, entropyflow
conv = torch.nn.Conv2d(1, 1, 4096, bias=False)
r = entropyflow.analyze(conv, input_size=(1, 4096, 4096), estimator="spectral", hash_files=False)
w = conv.weight.detach().double()[0, 0]
exact = torch.log(torch.fft.rfft2(w).abs()).sum() * 2 - torch.log(torch.fft.rfft2(w)[:, [0, -1]].abs()).sum()
print(r.layers[0].totals[0], float(exact))
"""
    res = run_python(code, timeout=300)
    assert res.rc == 0, res.err[-800:]
    got, exact = map(float, res.out.split())
    assert got == pytest.approx(exact, rel=1e-9)
    assert res.peak_mib < 3000  # memory is the claim; run_python's timeout is the hang guard


@pytest.mark.slow
def test_a_60k_layer_config_validates_in_linear_time():
    layers = [
        {"name": f"l{i}", "kind": "conv2d", "weight_key": f"l{i}.weight", "weight_shape": [4, 3, 3, 3], "lambda": 1e-3}
        for i in range(60_000)
    ]
    doc = {
        "schema_version": 1,
        "channel_rule": "first",
        "loss": {"form": "log", "epsilon": 1e-4},
        "strategy": {"name": "first", "params": {}, "rationale": ""},
        "layers": layers,
    }
    assert len(config_from_dict(doc).layers) == 60_000  # how long it takes is for a benchmark


BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["schema_version: 1", "warnings: *a8"]
)


@pytest.mark.slow
def test_yaml_billion_laughs_is_refused_fast_and_small(tmp_path, baseline):
    f = tmp_path / "bomb.yaml"
    f.write_text(BILLION_LAUGHS)
    assert f.stat().st_size < 1600
    r = run_python(
        f"from entropyflow.recommend import load_config\n"
        f"try:\n    load_config({str(f)!r})\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    assert r.out.strip() == (
        "ConfigError bomb.yaml: line 7: YAML aliases expand this config past 1,000,000 values (an alias bomb?); "
        "write the values out"
    )
    assert r.seconds < 20 and r.peak_mib - baseline < EXTRA_MIB and r.peak_mib < 1024


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.update(warnings=5), "warnings: must be a list of strings (5)"),
        (lambda d: d.update(warnings="abc"), "warnings: must be a list of strings ('abc')"),
        (lambda d: d.update(schema_version=True), "schema_version: True is not supported (expected 1)"),
        (lambda d: d.update(model=["x"] * 3), "model: must be a string (['x', 'x', 'x'])"),
        (
            lambda d: d["strategy"].update(params={"k": [1, 2]}),
            "strategy.params: must be a mapping of names to numbers or strings",
        ),
    ],
)
def test_config_fields_have_their_types(edit, message):
    doc = {
        "schema_version": 1,
        "channel_rule": "first",
        "loss": {"form": "log", "epsilon": 1e-4},
        "strategy": {"name": "first", "params": {}, "rationale": ""},
        "layers": [
            {"name": "c", "kind": "conv2d", "weight_key": "c.weight", "weight_shape": [4, 3, 3, 3], "lambda": 1e-3}
        ],
    }
    edit(doc)
    with pytest.raises(ConfigError) as exc:
        config_from_dict(doc)
    assert str(exc.value) == message


# --- analysis.json given to recommend / compare ---------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    from entropyflow.report import write_report

    write_report(entropyflow.analyze("sample:digits_vgg"), d)
    return json.loads((d / "analysis.json").read_text())


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d["layers"][0].update(index="one"), "layers[0].index: wrong type ('one')"),
        (lambda d: d["layers"][0].update(weight_shape="abc"), "layers[0].weight_shape: wrong type ('abc')"),
        (
            lambda d: d["layers"][0].update(weight_shape=[3, -1]),
            "layers[0].weight_shape: must be a list of integers ≥ 0 ([3, -1])",
        ),
        (lambda d: d["layers"][1].update(name=None), "layers[1].name: wrong type (None)"),
        (
            lambda d: d["layers"][0]["per_filter"].update(dh_per_position=[1.0]),
            "layers[0].per_filter: dh_total and dh_per_position differ in length",
        ),
        (lambda d: d.update(layers={"a": 1}), "layers: wrong type ({'a': 1})"),
    ],
)
def test_analysis_json_fields_have_their_types(cli, tmp_path, saved, edit, message):
    doc = json.loads(json.dumps(saved))
    edit(doc)
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(doc))
    for args in (["recommend", f, "-o", tmp_path / "l.yaml"], ["compare", f, f, "-o", tmp_path / "cmp"]):
        r = cli(*args)
        assert (
            r.exit_code == 2
            and r.stderr.strip() == f"error: {f} is not an entropyflow analysis (entropyflow.analysis/1): {message}"
        )
    assert files_in(tmp_path) == ["analysis.json"]


def test_deeply_nested_analysis_json(cli, tmp_path):
    f = tmp_path / "analysis.json"
    f.write_text('{"schema": "entropyflow.analysis/1", "layers": ' + "[" * 200000 + "]" * 200000 + "}")
    r = cli("recommend", f, "-o", tmp_path / "l.yaml")
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: {f} is not an entropyflow analysis (entropyflow.analysis/1): nested more than 100 levels deep"
    )


def test_a_corrupted_deflate_record_is_a_format_error(tmp_path):
    """A TorchScript archive stores its code deflate-compressed: altered bytes there raised
    zlib.error, an internal error (found by the fuzz corpus when other tests ran first)."""
    import zipfile

    from entropyflow.errors import CheckpointFormatError
    from entropyflow.load.hashing import verify_zip_crcs

    f = tmp_path / "a.zip"
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/code/model.py", "def forward(self, x):\n    return x\n" * 200)
    data = bytearray(f.read_bytes())
    start = data.index(b"model.py") + len(b"model.py") + 8  # inside the compressed stream
    for i in range(start, start + 24):
        data[i] ^= 0x5A
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match="fails its zip check"):
        verify_zip_crcs(f)
