"""Issue 20, "weights that are skipped or mislabelled": weight-normalised and parametrised layers,
norms in bare state dicts, train-only heads, weights reached through views, buffer kernels, --no-trace."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils import weight_norm as legacy_weight_norm

import entropyflow
from entropyflow.load.source import DictSource
from entropyflow.walk.heuristic import walk_state_dict
from entropyflow.walk.sites import NO_TRACE_REASON, TRAIN_ONLY_REASON

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _net(wrap):
    torch.manual_seed(0)
    return nn.Sequential(wrap(nn.Conv1d(3, 4, 3)), nn.ReLU(), nn.Flatten(), wrap(nn.Linear(24, 5)))


def _plain(net):
    """The same network holding the effective weights as plain parameters."""
    plain = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 5))
    with torch.no_grad():
        for i in (0, 3):
            plain[i].weight.copy_(net[i].weight)
            plain[i].bias.copy_(net[i].bias)
    return plain


def _values(result):
    return [
        (
            layer.name,
            layer.kind,
            layer.per_position.tolist(),
            None if layer.totals is None else layer.totals.tolist(),
            layer.exact,
        )
        for layer in result.layers
    ]


WRAPS = {"legacy": lambda m: legacy_weight_norm(m), "parametrizations": lambda m: parametrizations.weight_norm(m)}


@pytest.mark.parametrize("form", list(WRAPS))
def test_weight_norm_live_equals_plain_layer(form):
    net = _net(WRAPS[form])
    net(torch.zeros(1, 3, 8))  # legacy weight_norm computes .weight in a pre-hook
    got = entropyflow.analyze(net, input_size=(3, 8))
    want = entropyflow.analyze(_plain(net), input_size=(3, 8))
    assert _values(got) == _values(want)
    assert [layer.name for layer in got.layers] == ["0", "3"]
    assert all("weight-normalised" in " ".join(layer.notes) for layer in got.layers)
    assert got.skipped == ()


@pytest.mark.parametrize("form", list(WRAPS))
def test_weight_norm_bare_state_dict(form):
    net = _net(WRAPS[form])
    net(torch.zeros(1, 3, 8))
    walk = walk_state_dict(DictSource(net.state_dict()))
    assert [(s.name, s.kind, s.weight_key, s.weight_shape) for s in walk.sites] == [
        ("0", "conv1d", "0.weight", (4, 3, 3)),
        ("3", "linear", "3.weight", (5, 24)),
    ]
    assert walk.skipped == ()
    note = walk.sites[0].notes[1]
    assert note.startswith(
        "weight-normalised (weight_norm: weight_g, weight_v)"
        if form == "legacy"
        else "weight-normalised (parametrizations.weight_norm: original0, original1)"
    )
    from entropyflow.estimate.run import estimate
    from entropyflow.load.model import LoadedModel
    from entropyflow.walk import effective_tensors

    loaded = LoadedModel("x", "x", "x", DictSource(net.state_dict()))
    tensors, walk = effective_tensors(loaded, walk)
    assert torch.equal(tensors.get("0.weight"), net[0].weight.detach())
    layers, _ = estimate(walk, tensors)
    plain = walk_state_dict(DictSource(_plain(net).state_dict()))
    ref, _ = estimate(plain, DictSource(_plain(net).state_dict()))
    assert [a.per_position.tolist() for a in layers] == [b.per_position.tolist() for b in ref]


@pytest.mark.parametrize("form", list(WRAPS))
def test_weight_norm_torchscript(form, tmp_path):
    net = _net(WRAPS[form]).eval()
    x = torch.zeros(1, 3, 8)
    net(x)
    path = tmp_path / "wn.pt"
    torch.jit.trace(net, x).save(str(path))
    got = entropyflow.analyze(str(path), trust_code=True, input_size=(3, 8))
    want = entropyflow.analyze(_plain(net), input_size=(3, 8))
    assert _values(got) == _values(want)
    assert all("weight-normalised" in " ".join(layer.notes) for layer in got.layers)
    assert got.skipped == ()


def test_layernorm_1xn_is_not_a_dense_layer_in_bare_mode():
    sd = {
        "encoder.layernorm.weight": torch.ones(1, 264),
        "encoder.layernorm.bias": torch.zeros(1, 264),
        "scale.weight": torch.ones(1, 16),
        "scale.bias": torch.zeros(1, 16),
        "head.weight": torch.randn(1, 264),
        "head.bias": torch.zeros(1),
        "fc.weight": torch.randn(8, 264),
        "final.weight": torch.randn(1, 264),
    }
    walk = walk_state_dict(DictSource(sd))
    assert [(s.name, s.kind) for s in walk.sites] == [("fc", "linear"), ("head", "linear")]
    skipped = {s.name: s.reason for s in walk.skipped}
    assert set(skipped) == {"encoder.layernorm", "scale", "final"}
    assert skipped["encoder.layernorm"].startswith(
        "2-D weight of a module named like a normalisation layer (layernorm)"
    )
    assert skipped["scale"].startswith("2-D weight with a bias of its own shape")
    assert skipped["final"].startswith("(1, n) weight without a bias of shape (1,)")


def test_train_only_aux_heads_say_so():
    result = entropyflow.analyze("torchvision:googlenet", random_init=True, input_size=(3, 64, 64))
    untraced = [layer for layer in result.layers if not layer.traced]
    assert [layer.name for layer in untraced] == [
        "aux1.conv.conv", "aux1.fc1", "aux1.fc2", "aux2.conv.conv", "aux2.fc1", "aux2.fc2",
    ]  # fmt: skip
    assert all(TRAIN_ONLY_REASON in layer.reason for layer in untraced)


class _Squeezed(nn.Module):
    """Mamba-style: the depthwise conv's weight reaches F.conv1d through views of the parameter."""

    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(4, 4, 3, groups=4, padding=2)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        w = self.conv1d.weight.squeeze(1)
        y = nn.functional.conv1d(x, w.unsqueeze(1), self.conv1d.bias, padding=2, groups=4)[..., : x.shape[-1]]
        return self.out(y.transpose(1, 2))


def test_weight_reached_through_views_is_traced():
    result = entropyflow.analyze(_Squeezed(), input_size=(4, 10))
    assert [(layer.name, layer.traced) for layer in result.layers] == [("conv1d", True), ("out", True)]
    geo = result.layers[0]
    assert geo.totals is not None and "used functionally" in " ".join(geo.notes)


class _Stft(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("forward_basis_buffer", torch.randn(6, 1, 4))
        self.proj = nn.Conv1d(6, 3, 1)

    def forward(self, x):
        return self.proj(nn.functional.conv1d(x, self.forward_basis_buffer, stride=2))


class _Wrap(nn.Module):
    def __init__(self):
        super().__init__()
        self.stft = _Stft()

    def forward(self, x):
        return self.stft(x)


def test_buffer_kernel_listed_in_torchscript_and_bare(tmp_path):
    path = tmp_path / "stft.pt"
    torch.jit.script(_Wrap()).save(str(path))
    result = entropyflow.analyze(str(path), trust_code=True, input_size=(1, 16))
    assert [layer.name for layer in result.layers] == ["stft.proj"]
    (skip,) = result.skipped
    assert skip.name == "stft" and skip.parameters == 24
    assert skip.reason.startswith("fixed kernel held in a buffer, not a parameter (forward_basis_buffer; ")
    bare = walk_state_dict(DictSource(_Wrap().state_dict()))
    assert {s.name: s.reason for s in bare.skipped} == {
        "stft": "no tensor named 'weight' (a 3-D forward_basis_buffer): a buffer such as a fixed basis or a custom "
        "module's kernel, which the state dict alone cannot tell apart from a conv weight; not analysed"
    }


def test_no_trace_says_no_pass_ran():
    result = entropyflow.analyze(_plain(_net(lambda m: m)), input_size=(3, 8), trace=False)
    assert all(layer.reason.startswith(NO_TRACE_REASON) or layer.reason == NO_TRACE_REASON for layer in result.layers)
    assert all("traced forward pass" not in layer.reason for layer in result.layers)
