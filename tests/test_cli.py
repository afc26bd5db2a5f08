"""The CLI: the default sample works; every bad input gives one line on stderr, exit code 2,
no traceback and no files in --out; internal errors give exit code 1."""

import csv
import io
import json

import pytest
import torch

from entropyflow.samples import build_sample, samples_dir

SAMPLES = samples_dir()


def files_in(path):
    """Every name under ``path``, hidden ones included (nothing may be left after an error)."""
    return sorted(p.name for p in path.rglob("*")) if path.exists() else []


def report_names(path):
    """The report files of a successful run: everything but the ownership manifest, which must be there."""
    names = files_in(path)
    assert ".entropyflow-manifest.json" in names, names
    return [n for n in names if n != ".entropyflow-manifest.json"]


def assert_user_error(r, out, *fragments):
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in r.stderr + r.stdout
    for frag in fragments:
        assert frag in err, (frag, err)
    assert files_in(out) == [], files_in(out)


def test_default_analyze_on_the_bundled_sample(cli, tmp_path):
    out = tmp_path / "report"
    r = cli("analyze", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert report_names(out) == [
        "analysis.json",
        "entropy.png",
        "filters.csv",
        "layers.csv",
        "profile.png",
        "report.html",
    ]
    for name in ("features.0", "features.7", "classifier.1", "classifier.3"):
        assert name in r.stdout
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["model"]["spec"].endswith("digits_vgg.pt") and doc["summary"]["layers"] == 6
    assert len(doc["model"]["sha256"]) == 64 and doc["model"]["input_size"] == [1, 8, 8]


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("entropyflow 0.")


@pytest.fixture
def ckpt(tmp_path):
    def make(name, sd):
        f = tmp_path / name
        torch.save(sd, f)
        return f

    return make


def vgg_sd(seed=0):
    torch.manual_seed(seed)
    return build_sample("digits_vgg").state_dict()


def test_missing_path(cli, tmp_path):
    out = tmp_path / "out"
    assert_user_error(cli("analyze", tmp_path / "nope.pt", "-o", out), out, "no such file or folder", "nope.pt")


def test_folder_without_checkpoint(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    out = tmp_path / "out"
    assert_user_error(cli("analyze", tmp_path / "empty", "-o", out), out, "contains no checkpoint")


@pytest.mark.parametrize(
    "name,content,frag",
    [
        ("empty.pt", b"", "is empty (0 bytes)"),
        ("config.json", b'{"lr": 0.1}', "JSON file, not a checkpoint"),
        ("notes.pt", b"just some text\n", "text file, not a checkpoint"),
    ],
)
def test_empty_json_text_files(cli, tmp_path, name, content, frag):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    assert_user_error(cli("analyze", tmp_path / name, "-o", out), out, frag)


def test_truncated_file(cli, tmp_path, ckpt):
    full = ckpt("full.pt", vgg_sd())
    (tmp_path / "cut.pt").write_bytes(full.read_bytes()[:3000])
    out = tmp_path / "out"
    assert_user_error(cli("analyze", tmp_path / "cut.pt", "-o", out), out, "truncated or corrupted")


@pytest.mark.parametrize(
    "spec,frag",
    [
        ("torchvision:vgg61", "unknown torchvision model 'vgg61' (did you mean"),
        ("timm:resnet5O", "unknown timm model 'resnet5O'"),
        ("sample:digit_vgg", "unknown sample model 'digit_vgg' (did you mean digits_vgg"),
        ("keras:vgg16", "unknown model source 'keras:'"),
        ("torchvision:resnet18.IMAGENET9K", "has no weights 'IMAGENET9K'"),
    ],
)
def test_unknown_model_names(cli, tmp_path, spec, frag):
    out = tmp_path / "out"
    assert_user_error(cli("analyze", spec, "-o", out), out, frag)


def test_model_without_conv_or_dense_layers(cli, tmp_path, ckpt):
    f = ckpt("norms.pt", {"ln.weight": torch.ones(4), "ln.bias": torch.zeros(4), "emb.weight": torch.randn(10, 4)})
    out = tmp_path / "out"
    assert_user_error(cli("analyze", f, "-o", out), out, "no conv or dense layers found")


@pytest.mark.parametrize("value,frag", [(float("nan"), "1 NaN and 0 infinite"), (float("inf"), "0 NaN and 1 infinite")])
def test_nonfinite_weights(cli, tmp_path, ckpt, value, frag):
    sd = vgg_sd()
    sd["features.5.weight"][3, 7, 2, 1] = value  # not a tap the estimator reads: still caught
    f = ckpt("bad.pt", {"entropyflow": {"arch": "sample:digits_vgg", "input_size": [1, 8, 8]}, "state_dict": sd})
    out = tmp_path / "out"
    assert_user_error(cli("analyze", f, "-o", out), out, "features.5", frag)


def test_all_zero_weights(cli, tmp_path, ckpt):
    sd = {k: torch.zeros_like(v) for k, v in vgg_sd().items()}
    f = ckpt("zeros.pt", sd)
    out = tmp_path / "out"
    assert_user_error(
        cli("analyze", f, "--arch", "sample:digits_vgg", "-o", out), out, "every analysed weight is all zeros"
    )


@pytest.mark.slow
def test_some_zero_taps_are_kept_and_counted(cli, tmp_path, ckpt):
    sd = vgg_sd()
    sd["features.0.weight"][[1, 4], 0, 0, 0] = 0.0
    f = ckpt("zeros.pt", sd)
    out = tmp_path / "out"
    r = cli("analyze", f, "--arch", "sample:digits_vgg", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "2 filters with c11 = 0 (−∞)" in r.stdout
    row = next(csv.DictReader(io.StringIO((out / "layers.csv").read_text())))
    assert row["n_neginf"] == "2" and row["total"] == "-inf" and row["mean"] not in ("nan", "")


@pytest.mark.parametrize("sub,frag", [("", "exists and is not a folder"), ("report", "is a file, not a folder")])
def test_unwritable_out(cli, tmp_path, sub, frag):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / sub if sub else tmp_path / "file.txt"
    r = cli("analyze", "-o", out)
    assert r.exit_code == 2 and r.stderr.startswith("error: cannot write the report") and frag in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_write_failure_leaves_no_partial_report(cli, tmp_path, monkeypatch):
    import os

    real_replace, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr("entropyflow.report.outdir.os.replace", flaky)
    out = tmp_path / "new" / "report"
    r = cli("analyze", "-o", out)
    assert r.exit_code == 2 and "No space left on device" in r.stderr
    assert not (tmp_path / "new").exists()
    # an existing report survives a failed rewrite untouched
    monkeypatch.setattr("entropyflow.report.outdir.os.replace", real_replace)
    assert cli("analyze", "-o", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls.clear()
    monkeypatch.setattr("entropyflow.report.outdir.os.replace", flaky)
    assert cli("analyze", SAMPLES / "digits_unet.pt", "-o", out).exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    "args,frag",
    [
        (["--input-size", "3xabc"], "bad --input-size '3xabc'"),
        (["--channel-rule", "median"], "unknown channel rule 'median'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--estimator", "magic"], "unknown estimator 'magic'"),
        (
            ["--arch", "torchvision:vgg16", "--random-init"],
            "--random-init needs a model spec: with no model argument entropyflow "
            "analyses the bundled sample file digits_vgg.pt; for its architecture use sample:digits_vgg",
        ),
        ([str(SAMPLES / "digits_vgg.pt"), "--random-init"], "apply to torchvision:/timm:/sample: specs, not to files"),
    ],
)
def test_bad_options(cli, tmp_path, args, frag):
    out = tmp_path / "out"
    assert_user_error(cli("analyze", *args, "-o", out), out, frag)


@pytest.mark.parametrize(
    "args,frag",
    [
        (
            ["analyze", "--bogus"],
            "No such option: --bogus (Possible options: --out) (see 'entropyflow analyze --help')",
        ),
        (["analyze", "--seed", "one"], "Invalid value for '--seed': Input should be a valid integer"),
        (["analyze", "a.pt", "b.pt"], "Got unexpected extra argument(s) (b.pt)"),
        (["frobnicate"], "No such command 'frobnicate'. (see 'entropyflow --help')"),
        (["--nope"], "No such option: --nope"),
    ],
)
def test_bad_command_lines_are_one_line_errors_too(cli, tmp_path, args, frag):
    out = tmp_path / "out"
    r = cli(*args, "-o", out) if args[0] == "analyze" else cli(*args)
    assert_user_error(r, out, frag)


def test_bare_command_prints_help(cli):
    r = cli()
    assert "Usage: entropyflow" in r.stdout and "analyze" in r.stdout and "recommend" in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_but_absent(cli, tmp_path):
    out = tmp_path / "out"
    assert_user_error(cli("analyze", "--device", "cuda", "-o", out), out, "CUDA is not available")


@pytest.mark.slow
def test_unsafe_pickle_refused_then_allowed(cli, tmp_path):
    torch.manual_seed(0)
    f = tmp_path / "full.pt"
    torch.save(build_sample("digits_vgg"), f)
    out = tmp_path / "out"
    assert_user_error(cli("analyze", f, "-o", out), out, "a pickled nn.Module", "DigitsVGG", "--trust-code")
    for flag in ("--trust-code", "--unsafe-pickle"):  # --unsafe-pickle is the older name of the same flag
        r = cli("analyze", f, flag, "--input-size", "1x8x8", "-o", out)
        assert r.exit_code == 0 and "analysis.json" in files_in(out)


def test_internal_errors_exit_1_with_traceback_only_under_debug(cli, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("entropyflow.analysis.estimate", boom)
    r = cli("analyze", "-o", tmp_path / "out")
    assert r.exit_code == 1 and "internal error: RuntimeError: kaboom" in r.stderr and "Traceback" not in r.stderr
    r = cli("analyze", "-o", tmp_path / "out", "--debug")
    assert r.exit_code == 1 and "Traceback" in r.stderr
    assert files_in(tmp_path / "out") == []


@pytest.mark.slow
def test_reports_are_byte_identical_across_runs(cli, tmp_path):
    for run in ("a", "b"):
        assert cli("analyze", SAMPLES / "digits_unet.pt", "-q", "-o", tmp_path / run).exit_code == 0
    for name in ("layers.csv", "filters.csv", "analysis.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.slow
def test_vgg16_random_init_acceptance(cli, tmp_path):
    r = cli("analyze", "torchvision:vgg16", "--random-init", "-o", tmp_path / "vgg")
    assert r.exit_code == 0, r.stderr
    rows = (tmp_path / "vgg" / "layers.csv").read_text().splitlines()[1:]
    cols = [row.split(",") for row in rows]
    assert [c[0] for c in cols] == [str(i) for i in range(1, 17)]
    assert [c[2] for c in cols] == ["conv2d"] * 13 + ["linear"] * 3
    assert all(c[26] not in ("", "nan") for c in cols)  # every layer has a total
    assert "16 layers: 13 conv, 3 dense" in r.stdout


@pytest.mark.slow
def test_timm_resnet50_random_init_lists_53_convs_and_1_dense(cli, tmp_path):
    r = cli("analyze", "timm:resnet50", "--random-init", "-q", "-o", tmp_path / "r50")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "r50" / "analysis.json").read_text())
    kinds = [layer["kind"] for layer in doc["layers"]]
    assert kinds == ["conv2d"] * 53 + ["linear"] and [layer["index"] for layer in doc["layers"]] == list(range(1, 55))
    assert len(doc["skipped"]) == 53 and {s["type"] for s in doc["skipped"]} == {"BatchNorm2d"}
