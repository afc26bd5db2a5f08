"""Bounded fuzzing of the surfaces added after the first rounds (issue 19's acceptance): Hugging
Face ``config.json`` files (top-level and sub-config fields, declared sizes, planted ``auto_map``
code), ``hf:`` cache trees (refs, snapshots, symlinks), report folders with planted manifests and
journals, ``track`` cache entries and ``sweep --resume`` folders. Each case runs the real command
line in one worker process (``fuzz_worker.py``); every one must end with exit 0 or 2, one line for
an error, no traceback, within 20 s, with no file of the user's changed (sha256 before and after)
and no planted code run. Reproducible (fixed seed)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pytest
from fuzz_worker import run_cases
from mutate import flip, mutate_json

import entropyflow
from entropyflow.report import write_report

pytestmark = pytest.mark.slow  # fuzzing: mutated surfaces, each through the CLI

transformers = pytest.importorskip("transformers")

SEED = 20261204
QUIET = ("-q", "--no-plot", "--no-html", "--no-hash")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_models(root: Path) -> dict[str, Path]:
    import torch

    T = transformers
    torch.manual_seed(0)
    models = {
        "gpt2": T.GPT2LMHeadModel(T.GPT2Config(vocab_size=61, n_embd=16, n_layer=2, n_head=2, n_positions=24)),
        "llama": T.LlamaForCausalLM(
            T.LlamaConfig(
                vocab_size=61,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                intermediate_size=24,
                max_position_embeddings=64,
            )  # fmt: skip
        ),
        "bert": T.BertModel(
            T.BertConfig(
                vocab_size=61,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=24,
                max_position_embeddings=24,
            )  # fmt: skip
        ),
    }
    out = {}
    for name, model in models.items():
        model.save_pretrained(root / name)
        out[name] = root / name
    return out


# values a hostile config.json puts where a size, a name or a sub-config should be
SIZES = [0, -1, 1, 3, 10**4, 10**6, 2**26, 2**63, 10**70, 2.5, "12", None, [], [10**6, 1], True]
NAMES = [[], [123], [None], ["TFBertModel"], ["FlaxGPT2LMHeadModel"], ["NoSuchModel"], "GPT2LMHeadModel", ["x" * 5000]]
SIZE_KEYS = (
    "num_hidden_layers", "n_layer", "hidden_size", "n_embd", "n_head", "num_attention_heads", "intermediate_size",
    "vocab_size", "max_position_embeddings", "n_positions", "image_size", "num_key_value_heads", "depths",
)  # fmt: skip


def plant_code(folder: Path, marker: Path) -> None:
    """Custom model code that would leave ``marker`` behind if anything imported it."""
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    for name in ("modeling_evil.py", "configuration_evil.py", "__init__.py"):
        (folder / name).write_text(payload)


def hostile_config(config: dict, rng: random.Random, folder: Path, marker: Path) -> dict:
    kind = rng.randrange(6)
    if kind == 0:
        return mutate_json(config, rng)
    if kind == 1:
        config[rng.choice(SIZE_KEYS)] = rng.choice(SIZES)
        return config
    if kind == 2:
        config["architectures"] = rng.choice(NAMES)
        if rng.random() < 0.5:
            config["model_type"] = rng.choice(["gpt2", "llama", "bert", "t5", "nope", 7])
        return config
    plant_code(folder, marker)
    auto_map = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}
    if kind == 3:  # nested: a sub-config carries the custom code
        sub = dict(config)
        sub["auto_map"] = auto_map
        return {"model_type": "encoder-decoder", "is_encoder_decoder": True, "encoder": config, "decoder": sub}
    if kind == 4:
        config[rng.choice(["text_config", "vision_config", "decoder", "sub"])] = {**config, "auto_map": auto_map}
        return config
    config[rng.choice(["trust_remote_code", "custom_pipelines"])] = {"x": auto_map} if rng.random() < 0.5 else True
    return config


def hf_cache_tree(hub: Path, model: Path, outside: Path, rng: random.Random) -> None:
    """``models--org--m`` with a snapshot of ``model``, then one thing about it made hostile."""
    repo = hub / "models--org--m"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    blobs = repo / "blobs"
    blobs.mkdir()
    for f in ("config.json", "model.safetensors"):  # the real layout: snapshot files link to blobs
        blob = blobs / sha(model / f)
        shutil.copyfile(model / f, blob)
        (snapshot / f).symlink_to(Path("../../blobs") / blob.name)
    (repo / "refs").mkdir()
    ref = repo / "refs" / "main"
    kind = rng.randrange(8)
    if kind == 0:
        ref.write_text(rng.choice(["../../..", str(outside), "/etc", "..", "x" * 5000, "", "\x1b[2J", COMMIT[:-1]]))
    elif kind == 1:
        ref.symlink_to(rng.choice(["/proc/self/pagemap", "/dev/zero", str(outside / "ref")]))
    elif kind == 2:
        with ref.open("wb") as f:  # a sparse 2 GiB ref
            f.truncate(2 << 30)
    elif kind == 3:  # the snapshot is a link to a complete model outside the cache
        shutil.rmtree(snapshot)
        snapshot.symlink_to(outside, target_is_directory=True)
        ref.write_text(COMMIT)
    elif kind == 4:  # a snapshot file links out of the repo's folder
        (snapshot / "config.json").unlink()
        (snapshot / "config.json").symlink_to(outside / "config.json")
        ref.write_text(COMMIT)
    elif kind == 5:
        (snapshot / "model.safetensors").unlink()
        (snapshot / "model.safetensors").symlink_to("/dev/zero")
        ref.write_text(COMMIT)
    else:
        ref.write_text(COMMIT)
        config = json.loads((model / "config.json").read_text())
        blob = blobs / sha(model / "config.json")
        blob.unlink()
        blob.write_text(json.dumps(mutate_json(config, rng)))


USER_FILES = {
    "analysis.old.json": b'{"mine": true}',
    "compare-budget.pdf": b"%PDF-1.4 the user's budget",
    "entropy.mine.png": b"\x89PNG user",
    "profile.png": b"\x89PNG the user's own profile",
    "notes.txt": b"keep me",
    "layers.csv": b"my,own,table\n",
}


def plant_report_folder(out: Path, report: Path, rng: random.Random) -> dict[str, str]:
    """A copy of a real report folder (or an empty one) with the user's files and planted metadata.
    Returns the user's files and their sha256."""
    if rng.random() < 0.6:
        shutil.copytree(report, out)
    else:
        out.mkdir()
    protect = {}
    for name in rng.sample(sorted(USER_FILES), rng.randint(1, len(USER_FILES))):
        if (out / name).exists():
            continue
        (out / name).write_bytes(USER_FILES[name])
        protect[str(out / name)] = sha(out / name)
    user_dir = out / rng.choice([".entropyflow-new-x", ".entropyflow-old-x", ".entropyflow-new-1234"])
    user_dir.mkdir()
    (user_dir / "thesis.tex").write_bytes(b"\\documentclass{article}")
    protect[str(user_dir / "thesis.tex")] = sha(user_dir / "thesis.tex")
    names = sorted(USER_FILES) + ["../outside.txt", "/etc/hosts", user_dir.name, ".", ""]
    metadata = [p for p in out.iterdir() if p.is_file() and p.name.startswith(".entropyflow")]
    kind = rng.randrange(4)
    if kind == 0 and metadata:  # a real metadata file mutated
        f = rng.choice(metadata)
        try:
            doc = json.loads(f.read_text())
            f.write_text(json.dumps(mutate_json(doc, rng)))
        except ValueError:
            f.write_bytes(flip(f.read_bytes(), rng))
    else:  # planted: manifests and journals that claim the user's files, with right or wrong digests
        claims = {
            n: rng.choice([hashlib.sha256(USER_FILES.get(n, b"")).hexdigest(), "0" * 64, 7, None])
            for n in rng.sample(names, 4)
        }
        doc = rng.choice(
            [
                {"entropyflow": "report", "files": claims},
                {"files": claims, "command": rng.choice(["analyze", "compare", "sweep", "x"])},
                {"replace": sorted(claims), "backup": user_dir.name, "staging": user_dir.name},
                claims,
            ]
        )
        target = rng.choice(
            [m.name for m in metadata] + [".entropyflow-manifest.json", ".entropyflow-journal.json", ".entropyflow"]
        )
        (out / target).write_text(json.dumps(doc))
    return protect


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfaces")
    models = tiny_models(root / "models")
    result = entropyflow.analyze("sample:digits_vgg", hash_files=False)
    write_report(result, root / "report")
    track_folder(root)
    sweep_folder(root)
    return root, models


def cli(*args) -> None:
    from typer.testing import CliRunner

    from entropyflow.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args], prog_name="entropyflow")
    assert r.exit_code == 0, r.stderr


def track_folder(root: Path) -> None:
    """Two checkpoints of the digits VGG and a ``track`` report with its cache."""
    import torch

    from entropyflow.samples import build_sample

    ckpts = root / "ckpts"
    ckpts.mkdir()
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        torch.save(build_sample("digits_vgg").state_dict(), ckpts / f"epoch={epoch}.pt")
    cli("track", ckpts, "--arch", "sample:digits_vgg", *QUIET[:2], "-o", root / "track")


SWEEP_TRAIN = """
def train(config, report):
    for epoch in range(1, config["epochs"] + 1):
        report(epoch=epoch, val_loss=1.0 / epoch + config["lambda"] + 0.01 * config["seed"])
"""


def sweep_args(folder: Path, out: Path) -> list[str]:
    return [
        "sweep", f"{folder / 'mytrain.py'}:train", "--lambdas", "0,0.01", "--placements", "first",
        "--reference", str(folder / "ref.pt"), "--seeds", "2", "--epochs", "2", "--metric", "val_loss",
        "--cpus", "1", "-o", str(out),
    ]  # fmt: skip


def sweep_folder(root: Path) -> None:
    """A sweep whose four trials the driver recorded as finished (Ray replaced by the recorder)."""
    import torch

    from entropyflow.sweep import ray_tune

    folder = root / "sweep"
    folder.mkdir()
    (folder / "mytrain.py").write_text(SWEEP_TRAIN)
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    torch.save(ref.state_dict(), folder / "ref.pt")

    def recorded(trials, train, storage, metric, options, recorder, on_event=None, stop=None):
        for trial in trials:
            cell, seed = trial["cell"], trial["seed"]
            recorder.start(cell, seed)
            rows = [{"epoch": e, "wall_s": 0.1 * e, "val_loss": 1.0 / e + 0.01 * seed} for e in (1, 2)]
            recorder.add(cell, seed, rows, done=True)
        return recorder.outcomes(trials)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ray_tune, "run", recorded)
        cli(*sweep_args(folder, folder / "report"))


def cases(root: Path, models: dict[str, Path]) -> list[dict]:
    rng = random.Random(SEED)
    work = root / "cases"
    work.mkdir()
    out: list[dict] = []

    def case(args: list[str], **extra) -> None:
        out.append({"kind": "cli", "args": args, **extra})

    for i in range(48):  # config.json
        name = rng.choice(sorted(models))
        folder = work / f"hf{i}"
        folder.mkdir()
        shutil.copyfile(models[name] / "model.safetensors", folder / "model.safetensors")
        marker = work / f"ran{i}"
        config = json.loads((models[name] / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(hostile_config(config, rng, folder, marker)))
        if i % 4 == 3:
            (folder / "model.safetensors").unlink()
        args = ["analyze", str(folder), *QUIET, "-o", str(work / f"out-hf{i}")]
        case(args + (["--random-init"] if i % 4 == 3 else []), absent=[str(marker)])

    outside = work / "outside"  # a complete model outside every cache: never analysed through hf:
    shutil.copytree(models["gpt2"], outside)
    for i in range(24):  # hf: cache trees
        hub = work / f"hub{i}"
        hf_cache_tree(hub, models[rng.choice(sorted(models))], outside, rng)
        spec = rng.choice(["hf:org/m", "hf:org/m", f"hf:org/m@{COMMIT}", "hf:org/m@main", "hf:org/" + "m" * 300])
        case(["analyze", spec, *QUIET, "-o", str(work / f"out-hub{i}")], env={"HF_HUB_CACHE": str(hub)})

    report = root / "report"
    for i in range(40):  # report folders with the user's files and planted manifests and journals
        folder = work / f"report{i}"
        protect = plant_report_folder(folder, report, rng)
        command = rng.randrange(3)
        if command == 0:
            args = ["analyze", *QUIET, "-o", str(folder)]
        elif command == 1:
            args = ["compare", str(report), str(report), "-o", str(folder), "--plot-format", "svg"]
        else:
            args = ["recommend", str(report), "-o", str(folder / rng.choice(["lambda.yaml", "notes.txt"]))]
        case(args, protect=protect)

    ckpts = root / "ckpts"
    protect = {str(p): sha(p) for p in ckpts.iterdir()}
    for i in range(16):  # track caches: entries and records edited, forged, replaced
        folder = work / f"track{i}"
        shutil.copytree(root / "track", folder)
        cache = folder / ".entropyflow-cache"
        entries = sorted(p for p in cache.iterdir() if p.is_file())
        f = rng.choice(entries)
        kind = i % 4
        if kind == 0:
            f.write_bytes(flip(f.read_bytes(), rng))
        elif kind == 1:
            try:
                f.write_text(json.dumps(mutate_json(json.loads(f.read_text()), rng)))
            except ValueError:
                f.write_bytes(f.read_bytes()[: rng.randrange(1, 200)])
        elif kind == 2:  # a forged entry that names a huge architecture to rebuild
            doc = json.loads(f.read_text())
            if isinstance(doc.get("model"), dict):
                doc["model"].update(arch="torchvision:vit_h_14", spec="torchvision:vit_h_14", random_init=True)
            f.write_text(json.dumps(doc))
        else:
            (cache / rng.choice(["x.json", "tuner.pkl", f.name + ".tmp"])).write_bytes(b"\x80\x04N.")
        extra = ["--seeds", "1"] if i % 2 else []
        case(["track", str(ckpts), "--arch", "sample:digits_vgg", *QUIET[:2], *extra, "-o", str(folder)],
             protect=protect)  # fmt: skip

    sweep = root / "sweep"
    protect = {str(sweep / "mytrain.py"): sha(sweep / "mytrain.py"), str(sweep / "ref.pt"): sha(sweep / "ref.pt")}
    for i in range(16):  # sweep folders resumed: records and the grid edited, pickles planted
        folder = work / f"sweep{i}"
        shutil.copytree(sweep / "report", folder)
        tune = folder / "tune"
        files = sorted(p for p in tune.rglob("*.json") if p.is_file())
        f = rng.choice(files)
        kind = i % 4
        if kind == 0:
            f.write_bytes(flip(f.read_bytes(), rng))
        elif kind == 1:
            f.write_text(json.dumps(mutate_json(json.loads(f.read_text()), rng)))
        elif kind == 2:
            f.write_bytes(f.read_bytes()[: rng.randrange(1, 400)])
        else:  # Tune's pickles, planted: resume must never load them
            marker = work / f"pickle-ran{i}"
            payload = b"cbuiltins\nopen\n(" + json.dumps(str(marker)).encode() + b"\nVw\ntR."
            for name in ("sweep/tuner.pkl", "sweep/trainable.pkl", "resume-1/tuner.pkl"):
                (tune / name).parent.mkdir(parents=True, exist_ok=True)
                (tune / name).write_bytes(payload)
            case([*sweep_args(sweep, folder), "--resume"], protect=protect, absent=[str(marker)], no_ray=True)
            continue
        case([*sweep_args(sweep, folder), "--resume"], protect=protect, no_ray=True)
    return out


def test_fuzz_surfaces(corpus, tmp_path):
    root, models = corpus
    todo = cases(root, models)
    assert len(todo) >= 100
    results = run_cases(todo, tmp_path, timeout=400)
    codes = [r["rc"] for r in results]
    by_surface: dict[str, list[int]] = {}
    for case, r in zip(todo, results, strict=True):
        surface = Path(case["args"][-1] if case["args"][0] != "sweep" else case["args"][-2]).name.rstrip("0123456789")
        by_surface.setdefault(surface, [0, 0])[r["rc"] // 2] += 1
        if "-v" in os.environ.get("FUZZ_VERBOSE", ""):
            print(surface, r["rc"], r["err"].strip()[:160])
    print(f"surfaces: {len(todo)} cases, [exit 0, exit 2] by surface {by_surface}")
    assert codes.count(2) > 20 and codes.count(0) > 5
    assert not os.path.exists(root / "cases" / "outside" / "analysis.json")
