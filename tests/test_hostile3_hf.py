"""Issue 19, Hugging Face folders and ``hf:`` ids: custom code hidden in sub-configs, the hub cache
as untrusted input, configs that declare unbounded models, and config.json values that used to
end in exit 1 or be accepted silently. Every input is built here, in tmp_path; nothing downloads."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from conftest import CliResult
from safetensors.torch import save_file
from test_cli import assert_user_error, files_in
from typer.testing import CliRunner

import entropyflow
from entropyflow.cli import app
from entropyflow.errors import ArchitectureMismatchError, CheckpointFormatError
from entropyflow.load import hf_cache, hf_config
from entropyflow.text import printable

transformers = pytest.importorskip("transformers")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny(kind: str) -> torch.nn.Module:
    T = transformers
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=0, eos_token_id=0
        )
        return T.GPT2LMHeadModel(cfg)
    if kind == "llama":
        cfg = T.LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64)  # fmt: skip
        return T.LlamaForCausalLM(cfg)
    if kind == "resnet":
        cfg = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
        return T.ResNetModel(cfg)
    if kind == "vit":
        cfg = T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=48)  # fmt: skip
        return T.ViTModel(cfg)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf3")
    out = {}
    for kind in ("gpt2", "llama", "resnet", "vit"):
        tiny(kind).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def variant(src: Path, dst: Path, edit=None, text: str | None = None, weights: bool = True) -> Path:
    """A copy of ``src`` with its config.json edited (a function of the dict) or replaced by ``text``."""
    dst.mkdir(parents=True)
    if weights:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    if text is None:
        doc = json.loads((src / "config.json").read_text())
        edit(doc)
        text = json.dumps(doc)
    (dst / "config.json").write_text(text)
    return dst


def sha(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def refused(cli, tmp_path, spec, *fragments, extra=()):
    out = tmp_path / "out"
    started = time.monotonic()
    r = cli("analyze", str(spec), "-o", out, *extra)
    assert_user_error(r, out, *fragments)
    return r.stderr.strip(), time.monotonic() - started


# --- 1. custom code in a sub-config ------------------------------------------------------------------


def test_a_nested_auto_map_is_refused_without_running_or_prompting(tmp_path, monkeypatch):
    folder = tmp_path / "encdec"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Evil: pass\n")
    bert = {"model_type": "bert", "vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 48}  # fmt: skip
    vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
           "intermediate_size": 48, "image_size": 32, "patch_size": 8}  # fmt: skip
    # a decoder type with no causal-LM class of its own: transformers would ask whether to run evil.py
    decoder = {**vit, "auto_map": {"AutoModelForCausalLM": "evil.Evil"}}
    config = {"model_type": "encoder-decoder", "architectures": ["EncoderDecoderModel"], "is_encoder_decoder": True,
              "encoder": bert, "decoder": decoder}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    asked: list[str] = []
    real_input = input
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(str(a)) or real_input())
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["analyze", str(folder), "-o", str(out)], input="y\n")  # a terminal's "y" on stdin
    assert_user_error(CliResult(r), out)
    assert r.stderr.strip() == (
        f"error: {printable(folder / 'config.json')} names custom model code (decoder.auto_map): building it runs the "
        "repository's Python; pass --trust-code if you trust it"
    )
    with pytest.raises(ArchitectureMismatchError, match="^transformers cannot build EncoderDecoderModel from .*encdec"):
        entropyflow.analyze(str(folder), trust_code=True, hash_files=False)  # trusted, yet transformers never asks
    assert asked == [] and not marker.exists() and not (tmp_path / "out").exists()


# --- 2. the hub cache --------------------------------------------------------------------------------


def cache_repo(hub: Path, model: Path, repo: str = "org/tiny") -> Path:
    """The real layout: snapshots/COMMIT/FILE are links into ../../blobs/SHA256, refs/main holds COMMIT."""
    root = hub / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    (root / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in model.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        (root / "blobs" / digest).write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(f"../../blobs/{digest}")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    return root


def test_hf_ids_resolve_only_inside_the_cache(cli, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    sharded = tmp_path / "sharded"
    tiny("llama").save_pretrained(sharded, max_shard_size="20KB")
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    root = cache_repo(hub, sharded)
    result = entropyflow.analyze("hf:org/tiny", hash_files=False)  # the real layout, sharded: links into blobs/
    assert len(result.layers) == 15 and result.model.spec == "hf:org/tiny"
    outside = tmp_path / "elsewhere"
    shutil.copytree(sharded, outside)
    before = sha(tmp_path / "elsewhere")
    ref = root / "refs" / "main"

    ref.unlink()
    with ref.open("wb") as f:  # 2 GiB, sparse: read with a bound, in bounded time and memory
        f.truncate(2 << 30)
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(CheckpointFormatError, match=r"refs/main does not hold a commit hash \(40 hex digits\)"):
        hf_cache.resolve_hub("org/tiny")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20 and time.monotonic() - started < 1
    for content in (str(outside), "../../../elsewhere", f"../snapshots/{COMMIT}"):  # a path is not a commit
        ref.write_text(content)
        refused(
            cli, tmp_path, "hf:org/tiny", "refs/main does not hold a commit hash (40 hex digits); the cache is damaged"
        )
    for target in ("/proc/self/pagemap", str(outside / "config.json")):  # links out of the repository's folder
        ref.unlink()
        ref.symlink_to(target)
        refused(cli, tmp_path, "hf:org/tiny", "hf:org/tiny@main: refs/main links outside models--org--tiny")
    ref.unlink()
    ref.write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(outside / "config.json")  # one file of the snapshot leaves the repository
    refused(cli, tmp_path, "hf:org/tiny", "hf:org/tiny@main: config.json links outside models--org--tiny")
    shutil.rmtree(snapshot)
    snapshot.symlink_to(outside)  # the whole snapshot elsewhere
    refused(cli, tmp_path, "hf:org/tiny", f"hf:org/tiny@main: snapshots/{COMMIT[:12]} links outside models--org--tiny")
    for spec, fragment in (
        ("hf:" + "a" * 5000 + "/b", "is not a Hugging Face repository id (ORG/NAME"),
        ("hf:org/" + "b" * 97, "at most 96 characters each"),
        ("hf:org--x/tiny", "no '--' or '..'"),
        ("hf:org/tiny@" + "v" * 300, "not a branch, tag or commit"),
        ("hf:org/tiny@/etc", "not a branch, tag or commit"),
        ("hf:org/tiny@a/../../b", "not a branch, tag or commit"),
    ):
        refused(cli, tmp_path, spec, fragment)
    assert sha(outside) == before and files_in(tmp_path / "out") == []


# --- 3. sizes declared by config.json ----------------------------------------------------------------


def test_declared_sizes_are_bounded_by_the_checkpoint_before_building(cli, folders, tmp_path, monkeypatch):
    cases = [
        ("llama", lambda c: c.update(num_hidden_layers=100_000), "declares num_hidden_layers = 100,000 layers but the "
         "checkpoint holds only 21 tensors: the config does not describe these weights"),
        ("gpt2", lambda c: c.update(n_layer=1_000_000), "declares n_layer = 1,000,000 layers but the checkpoint"),
        ("resnet", lambda c: c.update(depths=[1_000_000, 1]), "declares depths = 1,000,001 layers but the checkpoint"),
        ("vit", lambda c: c.update(image_size=2**26), "'image_size' must be a whole number from 1 to 1,048,576"),
    ]  # fmt: skip
    for i, (kind, edit, fragment) in enumerate(cases):
        folder = variant(folders[kind], tmp_path / f"m{i}", edit)
        message, seconds = refused(cli, tmp_path, folder, fragment)
        assert seconds < 60, (message, seconds)  # a hang guard: building the declared model takes far longer
    for i, (kind, edit, fragment) in enumerate(  # no weights at all: absolute bounds, sized on meta first
        [
            ("gpt2", lambda c: c.update(n_layer=1_000_000), "--random-init builds at most 1,024"),
            ("gpt2", lambda c: c.update(vocab_size=2**40), "declares more than 4,294,967,296 parameters: --random-init "
             "builds them in memory (at most 16 GiB of float32); analyse a checkpoint instead"),
            ("vit", lambda c: c.update(image_size=2**20, patch_size=1), "declares more than 4,294,967,296 parameters"),
        ]
    ):  # fmt: skip
        folder = variant(folders[kind], tmp_path / f"r{i}", edit, weights=False)
        message, seconds = refused(cli, tmp_path, folder, fragment, extra=("--random-init",))
        assert seconds < 60, (message, seconds)
    # the backstop: a size the config check does not know stops the build after 8 modules per tensor
    monkeypatch.setattr(hf_config, "LAYER_KEYS", frozenset())
    folder = variant(folders["gpt2"], tmp_path / "backstop", lambda c: c.update(n_layer=1_000_000))
    message, seconds = refused(cli, tmp_path, folder, "declares a model of more than 480 modules: too many for a "
                               "checkpoint of 28 tensors (the config does not describe these weights)")  # fmt: skip
    assert seconds < 60, (message, seconds)


# --- 4. values that ended in exit 1 ------------------------------------------------------------------


def test_malformed_config_values_are_one_line_errors(cli, folders, tmp_path):
    base = (folders["gpt2"] / "config.json").read_text()
    deep = base.rstrip().rstrip("}") + ', "x": ' + "[" * 2000 + "]" * 2000 + "}"
    huge = base.rstrip().rstrip("}") + ', "n_positions2": ' + "7" * 5000 + "}"
    cases = [
        ("gpt2", deep, "nested more than 100 levels deep"),
        ("gpt2", huge, "an integer with 5000 digits (at most 64)"),
        ("gpt2", lambda c: c.update(architectures=[123]), "'architectures' must be a list of class names, not [123]"),
        ("gpt2", lambda c: c.update(architectures=[None]), "'architectures' must be a list of class names, not [None]"),
        ("vit", lambda c: c.update(image_size=224.5), "'image_size' must be a whole number from 1 to 1,048,576 (or a "
         "list of up to 3), not 224.5"),
        ("vit", lambda c: c.update(image_size="224"), "'image_size' must be a whole number from 1 to 1,048,576"),
        ("gpt2", lambda c: c.update(n_layer="2"), "'n_layer' must be a whole number of layers, not '2'"),
    ]  # fmt: skip
    for i, (kind, edit, fragment) in enumerate(cases):
        text = edit if isinstance(edit, str) else None
        folder = variant(folders[kind], tmp_path / f"c{i}", None if text else edit, text=text)
        before = sha(folder)
        refused(cli, tmp_path, folder, fragment)
        assert sha(folder) == before


# --- 5. what was accepted silently ---------------------------------------------------------------


def test_architectures_that_transformers_does_not_build_as_named(cli, folders, tmp_path):
    for i, name in enumerate(("TFGPT2LMHeadModel", "FlaxGPT2LMHeadModel")):  # the PyTorch twin, said in a note
        folder = variant(folders["gpt2"], tmp_path / f"twin{i}", lambda c, n=name: c.update(architectures=[n]))
        result = entropyflow.analyze(str(folder), hash_files=False)
        assert result.model.description.startswith("GPT2LMHeadModel from")
        assert f"{folder.name}/config.json names {name} (" in " ".join(result.notes)
        assert "built as GPT2LMHeadModel, its PyTorch twin" in " ".join(result.notes)
    cases = [
        (lambda c: c.update(architectures=["NoSuchModel"]), "architectures[0] 'NoSuchModel' is not a PyTorch model "
         f"class of transformers {transformers.__version__}"),
        (lambda c: c.update(architectures=["LlamaForCausalLM"]), "model_type 'gpt2' contradicts architectures[0] "
         "LlamaForCausalLM (a 'llama' model): fix one of them"),
    ]  # fmt: skip
    for i, (edit, fragment) in enumerate(cases):
        refused(cli, tmp_path, variant(folders["gpt2"], tmp_path / f"bad{i}", edit), fragment)
    dup = (folders["gpt2"] / "config.json").read_text().replace('"n_layer": 2', '"n_layer": 2, "n_layer": 200')
    assert dup.count('"n_layer"') == 2
    refused(cli, tmp_path, variant(folders["gpt2"], tmp_path / "dup", text=dup), 'the key "n_layer" appears twice')
