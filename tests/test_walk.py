import pytest
import torch
from explicit import conv_filter_completion
from torch import nn

import entropyflow
from entropyflow.errors import TraceError, WeightsNotCachedError
from entropyflow.load import zoo
from entropyflow.load.source import DictSource
from entropyflow.spec import parse_spec
from entropyflow.walk.heuristic import walk_state_dict
from entropyflow.walk.trace import trace_eager


def skeleton(spec):
    return zoo.build(parse_spec(spec))


def fx_order(model):
    """Conv/Linear modules in torch.fx graph order: an independent view of execution order."""
    gm = torch.fx.symbolic_trace(model)
    mods = dict(model.named_modules())
    return [
        n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(mods[n.target], (nn.Conv2d, nn.Linear))
    ]


def test_vgg16_thirteen_convs_then_three_dense():
    walk = trace_eager(skeleton("torchvision:vgg16"), (3, 224, 224))
    assert [s.kind for s in walk.sites] == ["conv2d"] * 13 + ["linear"] * 3
    assert walk.sites[0].name == "features.0" and walk.sites[-1].name == "classifier.6"
    g = walk.sites[0].geometry
    assert g.in_size == (224, 224) and g.out_size == (224, 224) and g.pad_left == (1, 1)
    assert walk.sites[12].geometry.in_size == (14, 14)
    assert [s.geometry.n_positions for s in walk.sites[13:]] == [1, 1, 1]
    assert all(s.traced for s in walk.sites) and walk.skipped == ()


@pytest.mark.parametrize("spec,n_conv", [("timm:resnet50", 53), ("torchvision:resnet50", 53)])
def test_resnet50_all_convs_in_execution_order(spec, n_conv):
    sk = skeleton(spec)
    walk = trace_eager(sk, (3, 224, 224))
    names = [s.name for s in walk.sites]
    assert [s.kind for s in walk.sites] == ["conv2d"] * n_conv + ["linear"]
    assert names == fx_order(zoo.build(parse_spec(spec), device="cpu"))
    # the downsample projection runs after conv3 in both libraries' Bottleneck.forward
    assert names[:5] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.0.downsample.0"]
    assert {s.module_type for s in walk.skipped} == {"BatchNorm2d"} and len(walk.skipped) == 53


class Reordered(nn.Module):
    """Registration order b, a, unused, emb, norm; execution order a, b, a (again)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Linear(8, 8)
        self.a = nn.Conv2d(1, 2, 3)
        self.unused = nn.Linear(4, 4)
        self.emb = nn.Embedding(10, 4)
        self.norm = nn.BatchNorm2d(2)
        self.rnn = nn.LSTM(4, 4)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        y = self.norm(self.a(x))
        y = self.b(y.flatten(1)[:, :8])
        return self.a(x).sum() + y.sum() * self.scale


def test_execution_order_untraced_last_and_every_skip_listed():
    walk = trace_eager(Reordered(), (1, 6, 6))
    assert [(s.name, s.traced) for s in walk.sites] == [("a", True), ("b", True), ("unused", False)]
    assert "called 2 times" in walk.sites[0].notes[0]
    assert walk.sites[2].geometry is None
    reasons = {s.name: (s.module_type, s.reason) for s in walk.skipped}
    assert set(reasons) == {"emb", "norm", "rnn", "(model)"}
    assert "embedding" in reasons["emb"][1] and "normalisation" in reasons["norm"][1]
    assert "recurrent" in reasons["rnn"][1] and "parameters held directly by Reordered" in reasons["(model)"][1]


def test_untraced_layers_get_values_but_no_totals():
    result = entropyflow.analyze(Reordered(), input_size=(1, 6, 6), hash_files=False)
    unused = result.layer("unused")
    assert unused.index == 3 and not unused.traced and unused.totals is None and unused.exact is None
    assert "not called" in unused.reason and unused.logdet is not None


class FunctionalAttention(nn.Module):
    """Uses its Linear's weight through F.linear (like torchvision's Swin), never calling it."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.qkv = nn.Linear(6, 18)
        self.proj = nn.Conv1d(18, 18, 1)

    def forward(self, x):  # x: (1, 5, 6)
        h = torch.nn.functional.linear(self.first(x), self.qkv.weight, self.qkv.bias)
        return torch.nn.functional.conv1d(h.transpose(1, 2), self.proj.weight)


def test_weights_used_functionally_are_traced_in_order():
    walk = trace_eager(FunctionalAttention(), (5, 6))
    assert [(s.name, s.traced) for s in walk.sites] == [("first", True), ("qkv", True), ("proj", True)]
    qkv, proj = walk.sites[1], walk.sites[2]
    assert qkv.geometry.n_positions == 5 and "functionally" in qkv.notes[0]
    assert proj.geometry.in_size == (5,) and proj.geometry.out_size == (5,)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x)[0]


def test_multihead_attention_packed_qkv_and_out_proj(nonzero_weights):
    model = nonzero_weights(SelfAttention())
    result = entropyflow.analyze(model, input_size=(5, 8), hash_files=False)
    assert [layer.name for layer in result.layers] == ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"]
    w = model.attn.in_proj_weight.detach().double()
    for i, layer in enumerate(result.layers[:3]):
        assert layer.logdet == pytest.approx(float(torch.linalg.slogdet(w[i * 8 : (i + 1) * 8]).logabsdet), rel=1e-12)
        assert layer.n_positions == 5 and layer.total == pytest.approx(5 * layer.logdet)
    out = model.attn.out_proj.weight.detach().double()
    assert result.layers[3].logdet == pytest.approx(float(torch.linalg.slogdet(out).logabsdet), rel=1e-12)


def test_timm_conv2d_same_geometry_inferred_and_exact_against_explicit_matrix(nonzero_weights):
    from timm.layers import Conv2dSame

    conv = nonzero_weights(Conv2dSame(2, 3, 3, stride=2))
    layer = entropyflow.analyze(conv, input_size=(2, 7, 8), hash_files=False).layers[0]
    assert any("padding inferred" in n for n in layer.notes)
    for f in range(3):
        distinct, logdet = conv_filter_completion(conv, (2, 7, 8), f)
        assert distinct == layer.exact
        if distinct:
            assert layer.totals[f] == pytest.approx(logdet, rel=1e-9)


def test_weight_standardising_conv_is_analysed_with_its_effective_weight():
    from timm.layers import StdConv2d

    model = nn.Sequential(StdConv2d(3, 4, 3), nn.ReLU())
    layer = entropyflow.analyze(model, input_size=(3, 8, 8), hash_files=False).layers[0]
    w = model[0].weight.detach()
    eff = torch.nn.functional.batch_norm(
        w.reshape(1, 4, -1), None, None, training=True, momentum=0.0, eps=model[0].eps
    ).reshape_as(w)
    assert layer.c11 == pytest.approx(eff[:, 0, 0, 0].double().numpy(), rel=1e-6)
    assert "effective weight" in layer.notes[-1]


def test_bare_state_dict_heuristics():
    sd = {
        "stem.weight": torch.randn(4, 3, 3, 3),
        "stem.bias": torch.randn(4),
        "bn.weight": torch.ones(4),
        "bn.running_mean": torch.zeros(4),
        "tok_embeddings.weight": torch.randn(100, 4),
        "block.attn.in_proj_weight": torch.randn(12, 4),
        "temporal.weight": torch.randn(4, 4, 5),
        "head.weight": torch.randn(10, 4),
        "head.bias": torch.zeros(10),
        "rnn.weight_ih_l0": torch.randn(16, 4),
        "rnn.weight_hh_l0": torch.randn(16, 4),
    }
    walk = walk_state_dict(DictSource(sd))
    assert [(s.name, s.kind) for s in walk.sites] == [  # module-name order: the file's order is not the model's
        ("block.attn.q_proj", "attention_q"),
        ("block.attn.k_proj", "attention_k"),
        ("block.attn.v_proj", "attention_v"),
        ("head", "linear"),
        ("stem", "conv2d"),
        ("temporal", "conv1d"),
    ]
    assert all(s.geometry is None and s.inferred for s in walk.sites)
    skipped = {s.name: s.reason for s in walk.skipped}
    assert set(skipped) == {"bn", "tok_embeddings", "rnn"}
    assert "embedding" in skipped["tok_embeddings"] and "recurrent" in skipped["rnn"] and "1-D" in skipped["bn"]


def test_natural_module_order():
    from entropyflow.walk.heuristic import natural_key

    names = [
        "layer.10.conv",
        "layer.2.conv",
        "layer.2",
        "fc",
        "layer.1.conv2",
        "layer.1.conv10",
        "layer1.0",
        "layer.1.conv",
    ]
    assert sorted(names, key=natural_key) == [
        "fc",
        "layer.1.conv",
        "layer.1.conv2",
        "layer.1.conv10",
        "layer.2",
        "layer.2.conv",
        "layer.10.conv",
        "layer1.0",
    ]


def test_wrong_input_size_fails_with_a_hint():
    with pytest.raises(TraceError, match="pass input_size= matching the model, or trace=False"):
        trace_eager(skeleton("torchvision:vgg16"), (3, 16, 16))


def test_no_trace_lists_everything_untraced():
    result = entropyflow.analyze(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), trace=False, hash_files=False
    )
    assert [layer.traced for layer in result.layers] == [False, False] and result.model.walk == "untraced"
    assert all(layer.totals is None for layer in result.layers)


def test_builders_never_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    sk = skeleton("torchvision:fcn_resnet50")  # its default would fetch an ImageNet backbone
    assert sum(isinstance(m, nn.Conv2d) for m in sk.modules()) == 55
    with zoo.offline(parse_spec("torchvision:vgg16")), pytest.raises(WeightsNotCachedError, match="never downloads"):
        torch.hub.load_state_dict_from_url("https://example.invalid/x.pth", model_dir=str(tmp_path))
    assert list(tmp_path.rglob("*.pth")) == []
