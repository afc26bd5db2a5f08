"""Example inputs (issue 20): zoo models trace with their defaults (video clips, a ViT built
without its weights, optical flow's two frames), ``--input`` once per forward argument (tensors
and numbers, missing ones named), and integer ids of any shape the model takes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import entropyflow
from entropyflow.analysis import AnalyzeOptions, _check_tokens
from entropyflow.errors import OptionError
from entropyflow.load import zoo
from entropyflow.load.model import LoadOptions, load_model
from entropyflow.spec import ExampleInput, parse_example_input, parse_input, parse_inputs, parse_spec
from entropyflow.walk import walk_model
from entropyflow.walk.trace import arguments_help
from entropyflow.words import speaking

CLIP_112 = (3, 16, 112, 112)
CLIP_224 = (3, 16, 224, 224)
DEFAULTS = {
    "r3d_18": CLIP_112,
    "mc3_18": CLIP_112,
    "r2plus1d_18": CLIP_112,
    "s3d": CLIP_224,
    "swin3d_t": CLIP_224,
    "swin3d_s": CLIP_224,
    "swin3d_b": CLIP_224,
    "mvit_v1_b": CLIP_224,
    "mvit_v2_s": CLIP_224,
    "vit_h_14": (3, 224, 224),  # built for 224 without its weights (the SWAG weights' crop is 518)
}
CONV_DENSE = (nn.Linear, nn.modules.conv._ConvNd)


@pytest.fixture
def meta_random_init(monkeypatch):
    """``--random-init`` with the architecture built on the meta device (the walk needs no values)."""
    monkeypatch.setattr(zoo, "build_random", lambda spec, seed: zoo.build(spec))


# --- 1. zoo defaults ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_video_models_and_vit_h_14_trace_with_their_default_input(name, meta_random_init):
    loaded = load_model(f"torchvision:{name}", LoadOptions(random_init=True, hash_files=False))
    assert loaded.input_size == DEFAULTS[name] and loaded.input_count == 1
    walk = walk_model(loaded)
    assert walk.mode == "trace" and walk.input_size == DEFAULTS[name]
    assert walk.sites and all(s.traced and s.geometry is not None for s in walk.sites)
    modules = {n for n, m in loaded.skeleton.named_modules() if isinstance(m, CONV_DENSE)}
    assert modules <= {s.name.rsplit(".", 1)[0] if s.name not in modules else s.name for s in walk.sites}
    if name == "vit_h_14":
        assert loaded.input_note == (
            "input: 3x224x224, the image size VisionTransformer is built for (the weights' crop size is 518x518)"
        )
    else:
        size = "x".join(map(str, DEFAULTS[name]))
        assert loaded.input_note == (
            f"input: a video clip {size} (channels, frames, height, width): 16 frames (torchvision's clip length) "
            "at the weights' crop size"
        )


def test_a_vit_built_with_its_weights_keeps_their_size():
    spec = parse_spec("torchvision:vit_h_14")
    with torch.device("meta"):
        import torchvision

        built_for_weights = torchvision.models.vit_h_14(image_size=518)
    assert zoo.default_input(spec, built_for_weights) == ((3, 518, 518), 1, None)
    assert zoo.default_input(parse_spec("torchvision:resnet18"), zoo.build(parse_spec("torchvision:resnet18"))) == (
        (3, 224, 224),
        1,
        None,
    )


# --- 2. several inputs ----------------------------------------------------------------------------


def test_raft_small_traces_with_two_inputs():
    two = parse_inputs(["float:1x3x128x160", "float:1x3x128x160"])
    result = entropyflow.analyze("torchvision:raft_small", random_init=True, input=two, hash_files=False)
    assert result.model.input_size == (3, 128, 160) and result.model.walk == "trace"
    assert len(result.layers) == 53 and all(layer.traced for layer in result.layers)
    assert "forward called with 2 inputs: image1=1x3x128x160, image2=float32:1x3x128x160" in result.notes
    conv1 = result.layer("feature_encoder.convnormrelu.0")  # 7x7 stride-2 pad-3 conv on the first frame
    assert conv1.geometry.in_size == (128, 160) and conv1.geometry.out_size == (64, 80)


def test_raft_default_input_is_two_frames_and_a_missing_one_is_named(meta_random_init):
    loaded = load_model("torchvision:raft_small", LoadOptions(random_init=True, hash_files=False))
    assert (loaded.input_size, loaded.input_count) == ((3, 224, 224), 2)
    assert loaded.input_note == "input: two frames (image1, image2), each 3x224x224"
    walk = walk_model(loaded, (3, 128, 128))  # --input-size: both frames take it
    assert walk.input_size == (3, 128, 128) and all(s.traced for s in walk.sites)
    with pytest.raises(OptionError) as caught:
        walk_model(loaded, (3, 128, 128), more_inputs=())  # --input given once
    assert str(caught.value) == (
        f"RAFT.forward(image1, image2, num_flow_updates) needs 2 inputs, 1 given: missing image2 ({arguments_help()})"
    )


class Vad(nn.Module):
    """A silero-like forward with a number argument that picks the branch that runs."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Conv1d(4, 6, 3)
        self.narrow = nn.Conv1d(4, 6, 5)
        self.head = nn.Linear(6, 2)

    def forward(self, x, sr: int):
        y = self.wide(x) if sr == 16000 else self.narrow(x)
        return self.head(y.transpose(1, 2))


@pytest.fixture
def scripted(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vad.pt"
    torch.jit.save(torch.jit.script(Vad()), str(path))
    return path


@pytest.mark.parametrize(("sr", "ran", "length"), [(16000, "wide", 14), (8000, "narrow", 12)])
def test_a_scripted_module_gets_its_int_argument(scripted, sr, ran, length):
    result = entropyflow.analyze(
        str(scripted), trust_code=True, hash_files=False, input=parse_inputs(["float:1x4x16", f"int:{sr}"])
    )
    traced = {layer.name: layer.traced for layer in result.layers}
    assert traced == {"wide": ran == "wide", "narrow": ran == "narrow", "head": True}
    assert result.layer(ran).geometry.out_size == (length,)
    assert result.layer("head").geometry.n_positions == length  # the Linear runs once per output position
    assert f"forward called with 2 inputs: x=1x4x16, sr=int32:{sr}" in result.notes


def test_a_scripted_module_names_its_missing_and_extra_arguments(scripted):
    with pytest.raises(OptionError) as caught:
        entropyflow.analyze(str(scripted), trust_code=True, hash_files=False, input=parse_inputs("float:1x4x16"))
    assert str(caught.value) == f"Vad.forward(x, sr) needs 2 inputs, 1 given: missing sr: int ({arguments_help()})"
    with pytest.raises(OptionError) as caught:
        entropyflow.analyze(
            str(scripted), trust_code=True, hash_files=False, input=parse_inputs(["float:1x4x16", "int:1", "float:0.5"])
        )
    assert str(caught.value) == f"Vad.forward(x, sr) takes 2 inputs, 3 given ({arguments_help()})"


def test_the_cli_takes_input_once_per_argument(cli, scripted, tmp_path):
    out = tmp_path / "report"
    r = cli("analyze", scripted, "--trust-code", "--input", "float:1x4x16", "--input", "int:8000", "-o", out, "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("analyze", scripted, "--trust-code", "--input", "float:1x4x16", "-o", tmp_path / "bad", "-q")
    with speaking("cli"):
        flags = arguments_help()
    assert "--input once per forward argument" in flags
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: Vad.forward(x, sr) needs 2 inputs, 1 given: missing sr: int ({flags})"
    ]


def test_inputs_parse_tensors_and_numbers():
    assert parse_inputs(["float:1x3x8x8", "int:16000", "float:0.5", "long:1x2x7", "double:-2"]) == (
        ExampleInput("float32", (3, 8, 8)),
        ExampleInput("int32", None, 16000),
        ExampleInput("float32", None, 0.5),
        ExampleInput("int64", (2, 7)),
        ExampleInput("float64", None, -2.0),
    )
    assert parse_inputs(None) == () and parse_input("long:1x128") == ("int64", (128,))
    options = AnalyzeOptions(input=parse_inputs(["long:1x2x9", "int:3"]))
    assert options.shape == (2, 9) and options.input_dtype == "int64"
    assert options.more_inputs == (ExampleInput("int32", None, 3),) and options.input == (
        ExampleInput("int64", (2, 9)),
        ExampleInput("int32", None, 3),
    )
    assert AnalyzeOptions(input=[]).input is None and AnalyzeOptions(input=parse_inputs("float:1x4")).more_inputs == ()
    for text, message in [
        ("int:abc", "bad input 'int:abc': a scalar argument must be an integer"),
        ("float:nan", "bad input 'float:nan': a scalar argument must be finite"),
        ("float:2x3", "bad input 'float:2x3': the shape starts with the batch dimension, which must be 1"),
        ("float:", "bad input 'float:': no shape after the dtype (e.g. long:1x128)"),
    ]:
        with pytest.raises(OptionError) as caught:
            parse_example_input(text)
        assert str(caught.value).startswith(message), str(caught.value)
    with pytest.raises(OptionError, match=r"^bad input 'int:16000': the first input is the model's main input"):
        parse_inputs(["int:16000", "float:1x3"])
    with pytest.raises(OptionError, match="at most 16 forward arguments"):
        parse_inputs(["float:1x3"] * 17)


# --- 3. integer inputs of any shape ---------------------------------------------------------------


class PairIds(nn.Module):
    """Takes token ids of shape (B, 2, L) only (a pair of sequences)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.proj = nn.Linear(6, 6)

    def forward(self, ids):
        if ids.dim() != 3 or ids.shape[1] != 2:
            raise ValueError("expected ids of shape (B, 2, L)")
        return self.proj(self.embed(ids)).sum(1)


def test_integer_ids_of_any_shape_the_model_takes():
    torch.manual_seed(0)
    model = PairIds()
    result = entropyflow.analyze(model, input=parse_inputs("long:1x2x7"), hash_files=False)
    assert result.model.input_size == (2, 7) and result.model.input_dtype == "int64"
    layer = result.layer("proj")
    assert layer.traced and layer.geometry.n_positions == 14  # applied at every (pair, position)
    w = model.proj.weight.detach().double()
    assert layer.logdet == pytest.approx(torch.linalg.slogdet(w)[1].item(), rel=1e-12)
    assert layer.totals[0] == pytest.approx(14 * torch.linalg.slogdet(w)[1].item(), rel=1e-12)


def test_the_position_limit_applies_to_the_last_axis_of_token_ids_only():
    _check_tokens("int64", (100, 48), 48, True)  # 100 sequences of 48 tokens: allowed
    _check_tokens("int64", (2, 5000), None, True)  # no position table: no limit
    _check_tokens("float32", (5000,), 48, True)  # not token ids
    with pytest.raises(OptionError) as caught:
        _check_tokens("int64", (2, 49), 48, True)
    assert str(caught.value) == (
        "input asks for 49 tokens, but the model's config allows at most 48 positions (max_position_embeddings)"
    )
