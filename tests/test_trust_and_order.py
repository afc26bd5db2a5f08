"""What runs code (and only with --trust-code), what order layers are numbered in and how honestly
that is said, models the meta device cannot run, and text from input that must not drive a terminal."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from test_cli import assert_user_error
from torch import nn

import entropyflow
from entropyflow.errors import UntrustedCodeError
from entropyflow.samples import build_sample

warnings.filterwarnings("ignore", category=FutureWarning)


class Trigger(nn.Module):
    """Loading this TorchScript module writes a file: its __setstate__ calls torch.save."""

    def __init__(self, path: str):
        super().__init__()
        self.register_buffer("marker", torch.ones(1))
        self.path = path

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self):
        return (self.marker, self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
        self.marker = state[0]
        self.path = state[1]
        self.training = state[2]
        torch.save(self.marker, self.path)


class Payload(nn.Module):
    """A small CNN carrying the trigger."""

    def __init__(self, path: str):
        super().__init__()
        self.trigger = Trigger(path)
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(self.trigger(x))


@pytest.mark.parametrize("name", ["payload.pt", "payload.safetensors", "payload.bin"])
def test_torchscript_runs_nothing_without_the_trust_flag(cli, tmp_path, name):
    marker = tmp_path / "payload-ran"
    f = tmp_path / name
    torch.jit.script(Payload(str(marker))).save(str(f))
    out = tmp_path / "out"
    r = cli("analyze", f, "-o", out)
    assert_user_error(r, out)
    assert r.stderr.strip() == (
        f"error: {name} is a TorchScript archive: loading it runs the TorchScript code it contains (its __setstate__ "
        "and "
        "methods can write files and call other ops). If you trust the file, pass --trust-code; otherwise export the "
        "weights with torch.save(model.state_dict(), PATH)"
    )
    assert not marker.exists()
    with pytest.raises(UntrustedCodeError):
        entropyflow.analyze(str(f))
    assert not marker.exists()
    # the flag really is what allows it: with it, the payload runs (and the model is analysed)
    r = cli("analyze", f, "--trust-code", "--input-size", "1x8x8", "-o", out, "-q")
    assert r.exit_code == 0 and marker.exists()


class Pickled:
    """Unpickling this creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_pickle_named_safetensors_runs_nothing(cli, tmp_path, zipped):
    marker = tmp_path / "payload-ran"
    f = tmp_path / "model.safetensors"
    torch.save({"w.weight": torch.ones(3, 3), "x": Pickled(str(marker))}, f, _use_new_zipfile_serialization=zipped)
    r = cli("analyze", f, "-o", tmp_path / "out")
    assert_user_error(r, tmp_path / "out")
    assert (
        r.stderr.strip().startswith("error: model.safetensors contains pickled Python objects (")
        and "--trust-code" in r.stderr
    )
    assert not marker.exists()


def test_a_traced_archive_is_walked_in_execution_order(tmp_path):
    """20 of 21 layers came out '(untraced)', fc numbered before conv1: torch.jit.trace records
    aten::_convolution, which the recorder did not know."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    f = tmp_path / "traced.pt"
    torch.jit.trace(model, torch.randn(1, 3, 64, 64)).save(str(f))
    traced = entropyflow.analyze(str(f), input_size=(3, 64, 64), trust_code=True, hash_files=False)
    eager = entropyflow.analyze(model, input_size=(3, 64, 64), hash_files=False)
    assert [layer.name for layer in traced.layers] == [layer.name for layer in eager.layers]
    assert (
        traced.layers[0].name == "conv1"
        and traced.layers[-1].name == "fc"
        and all(layer.traced for layer in traced.layers)
    )
    assert [layer.geometry for layer in traced.layers] == [layer.geometry for layer in eager.layers]
    assert [layer.total for layer in traced.layers] == [layer.total for layer in eager.layers]
    assert traced.model.walk == "torchscript" and traced.model.order == "forward execution order"


def test_without_an_architecture_layers_are_in_module_name_order_and_say_so(cli, tmp_path):
    """safetensors stores tensors by dtype and size: fc came first, conv1 fourth, under an axis
    labelled 'forward execution order'."""
    torch.manual_seed(0)
    sd = {k: v.contiguous() for k, v in torchvision.models.resnet18().state_dict().items()}
    save_file(sd, tmp_path / "r18.safetensors")
    out = tmp_path / "out"
    r = cli("analyze", tmp_path / "r18.safetensors", "-o", out, "--no-html")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "analysis.json").read_text())
    names = [layer["name"] for layer in doc["layers"]]
    assert names[:3] == ["conv1", "fc", "layer1.0.conv1"] and names.index("layer2.0.conv1") < names.index(
        "layer2.0.downsample.0"
    )
    assert doc["model"]["order"] == "module-name order, not traced"
    assert any(
        "module-name order (natural sort of the dotted paths), not in execution order" in n for n in doc["notes"]
    )
    assert "module-name order (natural sort of the dotted paths)" in r.stdout


class DataDependent(nn.Module):
    """Like a detection head: which rows go on depends on the values (nonzero)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        f = self.backbone(x).mean((2, 3))
        keep = torch.nonzero(f.abs().sum(1) >= 0).flatten()
        return self.head(f[keep])


def test_a_model_the_meta_device_cannot_run_is_traced_on_the_cpu():
    torch.manual_seed(0)
    result = entropyflow.analyze(DataDependent(), input_size=(3, 16, 16), hash_files=False)
    assert [layer.name for layer in result.layers] == ["backbone", "head"] and all(
        layer.traced for layer in result.layers
    )
    assert result.model.walk == "trace-cpu" and result.model.order == "forward execution order (CPU forward pass)"
    assert result.layers[0].geometry.in_size == (16, 16) and result.layers[1].geometry.n_positions == 1
    assert (
        "the meta device cannot run this model (data-dependent op nonzero): order and geometry come from one forward "
        "pass on the CPU at batch 1"
    ) in result.notes


@pytest.mark.slow
def test_a_torchvision_detection_model(cli, tmp_path):
    """fasterrcnn's RPN and NMS are data-dependent: the advice was a wrong '--input-size'."""
    r = cli(
        "analyze",
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
        "--random-init",
        "-q",
        "-o",
        tmp_path / "det",
        "--no-plot",
        "--no-html",
    )
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "det" / "analysis.json").read_text())
    assert doc["model"]["walk"] == "trace-cpu" and doc["summary"]["untraced"] == 0
    assert [layer["name"] for layer in doc["layers"]][-2:] == [
        "roi_heads.box_predictor.cls_score",
        "roi_heads.box_predictor.bbox_pred",
    ]


def test_sigmoid_entropy_loss_is_exported():
    net = nn.Sequential(nn.Linear(3, 4))
    loss = entropyflow.SigmoidEntropyLoss(net, ["0"], lam=2.0)
    net(torch.zeros(2, 3))
    assert float(loss().detach()) == pytest.approx(
        2.0 * float(entropyflow.sigmoid_entropy_bits(net[0].bias.detach()).mean())
    )


class LitModule(nn.Module):
    """A LightningModule's shape: the network as self.model."""

    def __init__(self, net):
        super().__init__()
        self.model = net


def test_a_config_from_a_lightning_checkpoint_applies_to_the_module_and_the_bare_model(tmp_path):
    torch.manual_seed(0)
    net = build_sample("digits_vgg")
    torch.save(
        {
            "pytorch-lightning_version": "2.4.0",
            "epoch": 3,
            "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
        },
        tmp_path / "lit.ckpt",
    )
    for arch in ("sample:digits_vgg", None):  # matched to the architecture (keys bare) or not (keys keep model.)
        result = entropyflow.analyze(str(tmp_path / "lit.ckpt"), arch=arch, hash_files=False)
        cfg = entropyflow.recommend_config(result)
        values = []
        for model in (net, LitModule(net)):
            with warnings.catch_warnings():
                warnings.simplefilter("error", entropyflow.EntropyflowWarning)  # the fingerprint matches either way
                reg = entropyflow.EntropyRegularizer.from_config(model, cfg)
            values.append(float(reg().detach()))
        expected = -1e-3 * float(torch.log(net.features[0].weight[:, 0, 0, 0].abs().double()).sum())
        assert values == pytest.approx([expected, expected], rel=1e-7), arch  # float32 model: a float32 loss
    explicit = entropyflow.EntropyRegularizer.from_config(
        LitModule(net),
        entropyflow.recommend_config(
            entropyflow.analyze(str(tmp_path / "lit.ckpt"), arch="sample:digits_vgg", hash_files=False)
        ),
        prefix="model.",
    )
    assert explicit.prefix == "model." and "prefix='model.'" in repr(explicit)


# --- text from input never drives the terminal -------------------------------------------------------

EVIL = "conv\x1b[2J\x1b]0;pwned\x07[bold red]$x^2$[/]"


def test_control_characters_and_markup_in_keys_and_file_names(cli, tmp_path):
    torch.manual_seed(0)
    sd = {f"{EVIL}.weight": torch.randn(4, 3, 3, 3), "fc.weight": torch.randn(5, 5)}
    f = tmp_path / "evil\x1b[31m.pt"
    torch.save(sd, f)
    out = tmp_path / "out"
    r = cli("analyze", f, "-o", out, "--labels", "names")
    assert r.exit_code == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "conv\\x1b[2J\\x1b]0;pwned\\x07[bold red]$x^2$[/]" in r.stdout and "evil\\x1b[31m.pt" in r.stdout
    html = (out / "report.html").read_text()
    assert "\x1b" not in html and "conv\\x1b[2J\\x1b]0;pwned\\x07[bold red]$x^2$[/]" in html
    assert (out / "entropy.png").stat().st_size > 10_000  # drawn with the name as a tick label ($ not mathtext)
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["layers"][0]["name"] == EVIL  # the data itself is kept as it is
    r = cli("recommend", out, "-o", tmp_path / "l.yaml", "--strategy", "first")  # names read back from analysis.json
    assert r.exit_code == 0 and "\x1b" not in r.stdout and "conv\\x1b[2J" in r.stdout


def test_control_characters_in_error_messages(cli, tmp_path):
    r = cli("analyze", tmp_path / "no\x1b[2Jsuch.pt", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "\x1b" not in r.stderr
    assert r.stderr.strip() == f"error: no such file or folder: {tmp_path}/no\\x1b[2Jsuch.pt"
