"""Issue 19, round three: analysis.json, λ configs, `recommend -o`, the regularizer's checks, the CPU
fallback of the walker and SIGTERM. Each hostile input is built here; each ends with exit 2 and one
line (or the documented exit code), leaves the user's files byte-identical, and stays bounded."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import time

import pytest
import torch
from hostile import baseline_peak_mib, finish, run, start
from test_trust_and_order import DataDependent

import entropyflow
from entropyflow.config import from_dict as config_from_dict
from entropyflow.config import load_config, to_dict
from entropyflow.errors import BudgetError, ConfigError
from entropyflow.regularize import EntropyRegularizer
from entropyflow.samples import build_sample


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(r, *fragments) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in r.stderr + r.stdout, err
    for frag in fragments:
        assert frag in err, (frag, err)
    return err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The sample's analysis.json as a dict, and a λ config (every conv layer) made from it."""
    d = tmp_path_factory.mktemp("saved")
    from entropyflow.report import write_report

    write_report(entropyflow.analyze("sample:digits_vgg"), d)
    from entropyflow.recommend.placement import RecommendOptions
    from entropyflow.recommend.source import recommend_to

    recommend_to(str(d / "analysis.json"), out=d / "lambda.json", options=RecommendOptions("all"))
    return json.loads((d / "analysis.json").read_text()), to_dict(load_config(d / "lambda.json"))


# --- 1. recommend -o replaces only a real λ config, and writes it with the umask's mode ------------


def test_recommend_replaces_only_a_file_that_is_a_lambda_config(cli, tmp_path, saved):
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps(saved[0]))
    mine = tmp_path / "settings.json"  # mentions both names in its first 4 KB, but is the user's
    mine.write_text('{"schema_version": 1, "fingerprint": "mine", "lr": 0.1, "layers": []}\n')
    before = sha(mine)
    err = one_line_error(cli("recommend", analysis, "-o", mine))
    assert err == (
        f"error: cannot write {mine}: the file exists and is not a λ config written by entropyflow (entropyflow "
        "never overwrites files it did not write): choose another name"
    )
    assert sha(mine) == before
    cfg = tmp_path / "lambda.json"
    old = os.umask(0o027)
    try:
        assert cli("recommend", analysis, "-o", cfg).exit_code == 0
        assert (cfg.stat().st_mode & 0o777) == 0o640  # 0666 & ~umask, not mkstemp's 0600
        assert cli("recommend", analysis, "-o", cfg, "--strategy", "all").exit_code == 0  # a real config: replaced
    finally:
        os.umask(old)
    assert len(load_config(cfg).layers) == 4


# --- 2. the CPU fallback: only for what the meta device cannot run, within the budget --------------


@pytest.mark.slow
def test_a_shape_error_is_not_retried_on_the_cpu(tmp_path):
    baseline = baseline_peak_mib()
    r = run("analyze", "--input-size", "1x8192x8192", "-o", tmp_path / "out", "-q")
    assert r.rc == 2 and r.one_line_error, (r.rc, r.err[-500:])
    assert "forward pass on the meta device failed at input size 1x8192x8192" in r.err
    assert r.peak_mib - baseline < 400, (r.peak_mib, baseline)  # was > 3 GiB: a CPU forward at 8192²
    assert not (tmp_path / "out").exists()


def test_the_cpu_fallback_is_bounded_by_max_gpu_mem():
    with pytest.raises(BudgetError) as exc:
        entropyflow.analyze(DataDependent(), input_size=(3, 2048, 2048), max_mem=64 << 20, hash_files=False)
    assert str(exc.value) == (
        "the meta device cannot run this model (data-dependent op nonzero) and one forward pass on the CPU at input "
        "size 3x2048x2048 needs about 512 MiB of activations, more than max_mem 64 MiB: pass a smaller "
        "input_size=, raise max_mem=, or pass trace=False"
    )
    ok = entropyflow.analyze(DataDependent(), input_size=(3, 16, 16), hash_files=False)  # small: still on the CPU
    assert ok.model.walk == "trace-cpu"


# --- 3. big inputs: linear, bounded up front, the real reason --------------------------------------


def big_analysis(saved: dict, n: int) -> dict:
    doc = copy.deepcopy(saved)
    dense = doc["layers"][4]
    doc["layers"] = [
        {**dense, "index": i + 1, "name": f"blocks.{i}.fc", "weight_key": f"blocks.{i}.fc.weight"} for i in range(n)
    ]
    return doc


@pytest.mark.slow
def test_recommend_on_10000_layers_is_linear(tmp_path, saved):
    from entropyflow.recommend.placement import RecommendOptions
    from entropyflow.recommend.source import recommend_to

    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(big_analysis(saved[0], 10_000)))
    rec, path = recommend_to(str(f), out=tmp_path / "l.yaml", options=RecommendOptions("all"))
    assert len(rec.config.layers) == 10_000  # how long it takes (it was n²) is for a benchmark
    assert len(load_config(path).layers) == 10_000


@pytest.mark.slow
def test_the_terminal_shows_a_bounded_recommendation(cli, tmp_path, saved):
    """A config of thousands of layers is read in its file: the table stops at 200 rows and says so."""
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(big_analysis(saved[0], 250)))
    r = cli("recommend", f, "--strategy", "all", "-o", tmp_path / "l.yaml")
    assert r.exit_code == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("blocks.")]
    assert len(rows) == 200 and rows[-1].startswith("blocks.199.fc ")
    assert f"… and 50 more layers (every layer is in {tmp_path / 'l.yaml'})" in " ".join(r.stdout.split())
    assert len(load_config(tmp_path / "l.yaml").layers) == 250


@pytest.mark.slow
def test_too_many_layers_and_too_large_files_say_so(cli, tmp_path, saved, monkeypatch):
    monkeypatch.setattr("entropyflow.report.jsonio.MAX_LAYERS", 100)
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(big_analysis(saved[0], 101)))
    one_line_error(cli("recommend", f, "-o", tmp_path / "l.yaml"), "layers: more than 100 layers (101)")
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as fh:
        fh.truncate(17 << 20)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"is larger than 16 MiB: not a λ config$"):
        load_config(huge)
    many = tmp_path / "many.yaml"  # no alias at all: the message must not say "alias bomb"
    many.write_text("schema_version: 1\nwarnings: [" + "x, " * 1_100_000 + "x]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(many)
    assert str(exc.value) == "many.yaml: more than 1,000,000 values: not a λ config"
    assert time.monotonic() - started < 60  # a hang guard: reading the 17 MiB file whole takes minutes


# --- 4. numbers that broke arithmetic (exit 1) ----------------------------------------------------


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda d: d["layers"][0].update(calls="BIG"), "an integer with 5000 digits (at most 64)"),
        (lambda d: d["layers"][0].update(calls=int("9" * 60)), "layers[0].calls: 999999999999999"),
        (
            lambda d: d["layers"][0]["per_filter"]["dh_total"].__setitem__(0, 1e308),
            "layers[0].per_filter.dh_total[0]: 1e+308 is beyond ±1e+100",
        ),
        (lambda d: d["layers"][1]["summary"].update(mean=-1e308), "layers[1].summary.mean: -1e+308 is beyond"),
    ],
)
def test_huge_numbers_in_analysis_json(cli, tmp_path, saved, edit, fragment):
    doc = copy.deepcopy(saved[0])
    edit(doc)
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(doc).replace('"BIG"', "9" * 5000))
    for args in (["recommend", f, "-o", tmp_path / "l.yaml"], ["compare", f, f, "-o", tmp_path / "cmp"]):
        one_line_error(cli(*args), f"{f} is not an entropyflow analysis", fragment)
    assert sorted(os.listdir(tmp_path)) == ["analysis.json"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_5000_digit_integer_in_a_lambda_config(tmp_path, saved, suffix):
    text = json.dumps(saved[1]).replace('"lambda": 0.001', '"lambda": ' + "9" * 5000, 1)
    f = tmp_path / f"lambda{suffix}"
    f.write_text(text)  # JSON is YAML too
    with pytest.raises(ConfigError, match="an integer with 5000 digits"):
        load_config(f)
    big = copy.deepcopy(saved[1])
    big["layers"][0]["lambda"] = 10**400  # a parsed mapping: float() would overflow
    with pytest.raises(ConfigError, match=r"^layers\[0\].lambda: must be finite"):
        config_from_dict(big)


# --- 5. accepted silently before -------------------------------------------------------------------


def test_duplicate_keys_are_refused(cli, tmp_path, saved):
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(saved[0]).replace('"device": ', '"device": "x", "device": ', 1))
    one_line_error(cli("recommend", f, "-o", tmp_path / "l.yaml"), 'the key "device" appears twice in one object')
    j = tmp_path / "lambda.json"
    j.write_text(json.dumps(saved[1]).replace('"lambda": 0.001', '"lambda": 0.001, "lambda": 5', 1))
    with pytest.raises(ConfigError, match='lambda.json is not valid JSON: the key "lambda" appears twice'):
        load_config(j)
    y = tmp_path / "lambda.yaml"
    y.write_text("schema_version: 1\nmodel: a\nmodel: b\n")
    with pytest.raises(ConfigError) as exc:
        load_config(y)
    assert str(exc.value) == "lambda.yaml: line 3: the key 'model' appears twice in one mapping"


def test_one_weight_listed_twice_is_refused(saved):
    doc = copy.deepcopy(saved[1])
    doc["layers"][2] = {**doc["layers"][0], "name": "again"}
    with pytest.raises(ConfigError) as exc:
        config_from_dict(doc)
    assert str(exc.value) == (
        "layers[2].weight_key: 'features.0.weight' is already regularised by layers[0] (its λ would count twice); "
        "list each weight once"
    )
    fused = copy.deepcopy(saved[1])  # row blocks of one fused weight are fine while they do not overlap
    base = {"kind": "linear", "weight_key": "attn.in_proj_weight", "weight_shape": [4, 4], "lambda": 1e-4}
    fused["layers"] = [{**base, "name": "q", "rows": [0, 4]}, {**base, "name": "k", "rows": [4, 8]}]
    assert len(config_from_dict(fused).layers) == 2
    fused["layers"][1]["rows"] = [2, 6]
    with pytest.raises(ConfigError, match=r"layers\[1\].weight_key: 'attn.in_proj_weight' is already"):
        config_from_dict(fused)


def test_a_layer_the_model_lacks_and_a_huge_lambda(saved):
    model = build_sample("digits_vgg")
    doc = copy.deepcopy(saved[1])
    doc["layers"][1].update(name="nope", weight_key="nope.weight")
    with pytest.raises(ConfigError, match=r"^layer nope: the model has no parameter 'nope.weight'"):
        EntropyRegularizer.from_config(model, doc)
    doc = copy.deepcopy(saved[1])
    doc["layers"][0]["lambda"] = 1e308
    with pytest.raises(ConfigError) as exc:
        EntropyRegularizer.from_config(model, doc)
    assert str(exc.value) == "layers[0].lambda: must be at most 1e+06 in magnitude (1e+308)"
    doc["layers"][0]["lambda"] = 1e6
    doc["loss"] = {"form": "inverse", "epsilon": 1e-12}
    assert torch.isfinite(EntropyRegularizer.from_config(model, doc)())  # the bounds keep the term finite


# --- 6. SIGTERM at any moment of a real run: 143 --------------------------------------------------


def _wait_for(f, text: bytes, p, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while text not in os.pread(f.fileno(), 1 << 20, 0):
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (the CLI's life has begun: before that, Python
    is still starting and nothing can keep the default action from killing it)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.parametrize("when", ["imports", "running", "end"])
def test_sigterm_at_any_moment_exits_143(tmp_path, when):
    out = tmp_path / "out"
    started = time.monotonic()
    p, o, e = start("analyze", "-o", out, "--no-html", "--no-plot")
    while not _catches_sigterm(p.pid):  # first thing the CLI's module does, before its heavy imports
        assert p.poll() is None and time.monotonic() - started < 60
        time.sleep(0.001)
    if when == "running":
        time.sleep(2)
    elif when == "end":
        _wait_for(o, b"wrote ", p)  # the last line is out: the interpreter is about to tear down
    os.kill(p.pid, signal.SIGTERM)
    r = finish(p, o, e, started)
    assert r.rc == 143, (when, r.rc, r.err[-400:])
    assert "Traceback" not in r.err and r.err.strip().splitlines()[-1] == "terminated (SIGTERM)", r.err[-400:]
    if when != "end":
        assert not out.exists() or "analysis.json" not in os.listdir(out)
