"""Every checkpoint format users have, read without running pickled code, never downloading."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

import entropyflow
from entropyflow.errors import (
    ArchitectureMismatchError,
    CheckpointFormatError,
    UnsafePickleError,
    WeightsNotCachedError,
)
from entropyflow.load.model import LoadOptions, load_model
from entropyflow.samples import build_sample
from entropyflow.walk.heuristic import NO_ARCH

ARCH = "sample:digits_vgg"


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(3)
    return build_sample("digits_vgg").eval()


@pytest.fixture(scope="module")
def reference(vgg):
    return entropyflow.analyze(vgg, input_size=(1, 8, 8), hash_files=False)


def same_values(result, reference):
    assert [layer.name for layer in result.layers] == [layer.name for layer in reference.layers]
    for a, b in zip(result.layers, reference.layers, strict=True):
        assert a.per_position.tolist() == b.per_position.tolist()
        assert (a.totals is None) == (b.totals is None)
        if a.totals is not None:
            assert a.totals.tolist() == b.totals.tolist()


def analyze(path, **kw):
    return entropyflow.analyze(str(path), hash_files=False, **kw)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"model_state_dict": sd, "step": 9},
        lambda sd: {"state_dict_ema": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
        lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
    ],
    ids=["bare", "state_dict", "model", "model_state_dict", "state_dict_ema", "ddp", "compile", "ddp+compile"],
)
def test_state_dict_containers_with_arch(tmp_path, vgg, reference, wrap):
    f = tmp_path / "ckpt.pt"
    torch.save(wrap(vgg.state_dict()), f)
    same_values(analyze(f, arch=ARCH), reference)


def test_lightning_checkpoint_prefix_stripped_to_match_arch(tmp_path, vgg, reference):
    ckpt = {
        "epoch": 7,
        "global_step": 700,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in vgg.state_dict().items()},
        "loops": {"fit_loop": {"state_dict": {}}},
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.9)}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 0.01, "width": 16},
    }
    f = tmp_path / "epoch=7.ckpt"
    torch.save(ckpt, f)
    result = analyze(f, arch=ARCH)
    same_values(result, reference)
    assert "Lightning checkpoint (version 2.4.0, epoch 7, step 700)" in result.model.description
    assert any("stripped key prefix 'model.'" in n for n in result.notes)


def test_bare_state_dict_without_arch_gives_values_but_no_totals(tmp_path, vgg, reference):
    f = tmp_path / "sd.pth"
    torch.save(vgg.state_dict(), f)
    result = analyze(f)
    # without the architecture: module-name order (natural sort), said so, values equal layer by layer
    assert [layer.name for layer in result.layers] == [
        "classifier.1",
        "classifier.3",
        "features.0",
        "features.2",
        "features.5",
        "features.7",
    ]
    assert result.model.order == "module-name order, not traced"
    by_name = {layer.name: layer.per_position.tolist() for layer in reference.layers}
    assert {layer.name: layer.per_position.tolist() for layer in result.layers} == by_name
    assert all(layer.totals is None and NO_ARCH in layer.notes for layer in result.layers)


def test_safetensors_single_sharded_and_folder(tmp_path, vgg, reference):
    sd = {k: v.contiguous() for k, v in vgg.state_dict().items()}
    save_file(sd, tmp_path / "model.safetensors")
    same_values(analyze(tmp_path / "model.safetensors", arch=ARCH), reference)
    shard_dir = tmp_path / "sharded"
    shard_dir.mkdir()
    keys = list(sd)
    halves = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    for name, ks in halves.items():
        save_file({k: sd[k] for k in ks}, shard_dir / name)
    index = {"metadata": {}, "weight_map": {k: name for name, ks in halves.items() for k in ks}}
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    for target in (shard_dir / "model.safetensors.index.json", shard_dir):
        result = analyze(target, arch=ARCH)
        same_values(result, reference)
        assert result.model.format == "safetensors-sharded" and len(result.model.files) == 2


def test_safetensors_manifest_in_metadata(tmp_path, vgg, reference):
    manifest = json.dumps({"arch": ARCH, "input_size": [1, 8, 8]})
    save_file(
        {k: v.contiguous() for k, v in vgg.state_dict().items()},
        tmp_path / "m.safetensors",
        metadata={"entropyflow": manifest},
    )
    same_values(analyze(tmp_path / "m.safetensors"), reference)


def test_safetensors_reads_only_what_it_needs(tmp_path, vgg, monkeypatch):
    from entropyflow.load import source

    sd = {k: v.contiguous() for k, v in vgg.state_dict().items()}
    sd["unused.huge"] = torch.zeros(1000, 1000)
    save_file(sd, tmp_path / "m.safetensors")
    read = []
    for meth in ("get", "get_slice"):
        orig = getattr(source.SafetensorsSource, meth)
        monkeypatch.setattr(
            source.SafetensorsSource,
            meth,
            lambda self, key, *a, _o=orig, _m=meth: read.append((_m, key)) or _o(self, key, *a),
        )
    analyze(tmp_path / "m.safetensors")
    assert {k for _, k in read} == {
        f"{n}.weight" for n in ("features.0", "features.2", "features.5", "features.7", "classifier.1", "classifier.3")
    }


@pytest.mark.slow
def test_torchscript_archive_matches_eager(tmp_path, vgg, reference):
    f = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(vgg), f)
    result = analyze(f, input_size=(1, 8, 8), trust_code=True)
    same_values(result, reference)
    assert result.model.walk == "torchscript" and all(layer.traced for layer in result.layers)


@pytest.mark.slow
def test_torchscript_resnet_geometry_matches_eager(tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    f = tmp_path / "r18.pt"
    torch.jit.save(torch.jit.script(model), f)
    scripted = analyze(f, input_size=(3, 64, 64), trust_code=True)
    eager = entropyflow.analyze(model, input_size=(3, 64, 64), hash_files=False)
    same_values(scripted, eager)
    assert [layer.geometry for layer in scripted.layers] == [layer.geometry for layer in eager.layers]


class Payload:
    """Unpickling this creates a file: the planted payload."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_planted_pickle_payload_does_not_run_by_default(tmp_path, vgg):
    marker = tmp_path / "payload-ran"
    f = tmp_path / "evil.pt"
    torch.save({"state_dict": vgg.state_dict(), "extra": Payload(str(marker))}, f)
    with pytest.raises(UnsafePickleError, match=r"pathlib.*trust_code=True"):
        analyze(f)
    assert not marker.exists()
    # the flag really is what allows it: with it, the payload runs
    with pytest.raises(CheckpointFormatError, match="the checkpoint's 'extra' entry is not a state dict"):
        analyze(f, trust_code=True, key="extra")
    assert marker.exists()


def test_full_pickled_module_needs_the_unsafe_flag(tmp_path, vgg, reference):
    f = tmp_path / "full.pt"
    torch.save(vgg, f)
    with pytest.raises(UnsafePickleError, match="DigitsVGG"):
        analyze(f)
    result = analyze(f, trust_code=True, input_size=(1, 8, 8))
    same_values(result, reference)
    assert result.model.description == "pickled DigitsVGG (loaded trusting its code)"


def test_arch_mismatch_report_names_the_keys(tmp_path, vgg):
    sd = dict(vgg.state_dict())
    sd.pop("classifier.3.bias")
    sd["extra.weight"] = torch.zeros(2, 2)
    sd["features.0.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ArchitectureMismatchError) as e:
        analyze(tmp_path / "bad.pt", arch=ARCH)
    msg = str(e.value)
    assert "1 missing (classifier.3.bias)" in msg and "1 unexpected (extra.weight)" in msg
    assert "features.0.weight: checkpoint (16, 3, 3, 3) vs arch (16, 1, 3, 3)" in msg and "\n" not in msg


def test_fine_tuned_head_rebuilds_with_the_checkpoints_num_classes(tmp_path):
    torch.manual_seed(0)
    model = build_sample("digits_vgg", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "ft.pt")
    result = analyze(tmp_path / "ft.pt", arch=ARCH)
    assert result.layer("classifier.3").weight_shape == (3, 64)
    assert any("num_classes=3" in n for n in result.notes)


def test_torchvision_pretrained_from_a_cache_the_test_writes(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotCachedError) as e:
        entropyflow.analyze("torchvision:squeezenet1_0", hash_files=False)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "squeezenet1_0-b66bff10.pth"
    assert str(expected) in str(e.value) and "weights=PATH" in str(e.value)
    torch.manual_seed(5)
    model = torchvision.models.squeezenet1_0()
    expected.parent.mkdir(parents=True)
    torch.save(model.state_dict(), expected)
    result = entropyflow.analyze("torchvision:squeezenet1_0")
    assert result.model.files == (str(expected),) and len(result.model.sha256) == 64
    assert result.layers[0].c11.tolist() == model.features[0].weight.detach()[:, 0, 0, 0].double().tolist()
    assert "torch hub cache" in result.model.weights


@pytest.mark.slow
def test_timm_pretrained_from_a_hugging_face_cache_the_test_writes(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotCachedError, match="timm/test_resnet.r160_in1k"):
        entropyflow.analyze("timm:test_resnet.r160_in1k", hash_files=False)
    torch.manual_seed(1)
    model = timm.create_model("test_resnet.r160_in1k")
    snap = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abc")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, snap / "model.safetensors")
    result = entropyflow.analyze("timm:test_resnet.r160_in1k", hash_files=False)
    assert result.model.input_size == (3, 160, 160)
    assert result.layers[0].c11.tolist() == model.conv1[0].weight.detach()[:, 0, 0, 0].double().tolist()


def test_weights_option_for_a_zoo_spec(tmp_path, vgg, reference):
    torch.save(vgg.state_dict(), tmp_path / "w.pt")
    same_values(entropyflow.analyze(ARCH, weights=str(tmp_path / "w.pt"), hash_files=False), reference)


def test_random_init_is_reproducible_and_matches_the_library():
    a = entropyflow.analyze(ARCH, random_init=True, seed=4, hash_files=False)
    torch.manual_seed(4)
    model = build_sample("digits_vgg")
    same_values(a, entropyflow.analyze(model, input_size=(1, 8, 8), hash_files=False))


def test_provenance_hash_is_the_files_sha256(tmp_path, vgg):
    import hashlib

    f = tmp_path / "sd.pt"
    torch.save(vgg.state_dict(), f)
    result = entropyflow.analyze(str(f), arch=ARCH)
    assert result.model.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "is empty"),
        (b'{"a": 1}', "JSON file, not a checkpoint"),
        (b"hello world\nthis is text\n", "text file, not a checkpoint"),
        (pickle.dumps({"a": 1}), "plain Python pickle"),
        (bytes(range(256)) * 4, "not a recognised checkpoint"),
    ],
)
def test_wrong_formats(tmp_path, content, match):
    f = tmp_path / "x.pt"
    f.write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=match):
        load_model(str(f), LoadOptions())


def test_truncated_files(tmp_path, vgg):
    full = tmp_path / "full.pt"
    torch.save(vgg.state_dict(), full)
    (tmp_path / "cut.pt").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        load_model(str(tmp_path / "cut.pt"), LoadOptions())
    save_file({k: v.contiguous() for k, v in vgg.state_dict().items()}, tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        load_model(str(tmp_path / "cut.safetensors"), LoadOptions())
