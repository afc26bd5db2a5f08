"""Issue 20, the remaining skipped weights: timm's CondConv2d expert kernels analysed one by one,
fixed kernels held in buffers listed in eager mode too, and the recommend → EntropyRegularizer
round trip on weights that are slices of a parameter (fused MoE experts, CondConv kernels)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from explicit import conv_filter_completion
from test_skipped_weights import _Stft
from torch import nn

import entropyflow
from entropyflow import EntropyRegularizer
from entropyflow.config import save_config
from entropyflow.errors import ConfigError
from entropyflow.recommend import RecommendOptions, recommend
from entropyflow.regularize import terms
from entropyflow.walk.dispatch import buffer_reason
from entropyflow.walk.trace import trace_eager

timm = pytest.importorskip("timm")
from timm.layers import CondConv2d  # noqa: E402 - after the importorskip

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# ---- CondConv2d ---------------------------------------------------------------------------------


class _CondNet(nn.Module):
    """A stem, a CondConv routed from the pooled stem output (as timm's CondConv blocks do), a head."""

    def __init__(self, cc: dict):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(2, 4, 1)
        self.routing = nn.Linear(4, cc["num_experts"])
        self.cc = CondConv2d(4, **cc)
        self.head = nn.Linear(cc["out_channels"], 3)

    def forward(self, x):
        x = self.stem(x)
        r = torch.sigmoid(self.routing(x.mean((2, 3))))
        return self.head(self.cc(x, r).mean((2, 3)))


CONDCONVS = {  # CondConv2d arguments after in_channels=4, and the spatial input size
    "valid": (dict(out_channels=4, kernel_size=3, padding=0, num_experts=3), 6),
    "same-stride2-dynamic": (dict(out_channels=6, kernel_size=3, stride=2, padding="same", num_experts=2), 9),
    "depthwise": (dict(out_channels=4, kernel_size=3, padding=1, groups=4, num_experts=2), 5),
}


def _plain(cc: CondConv2d, expert: int) -> nn.Conv2d:
    """A plain conv holding expert ``expert``'s kernel, with the padding the dynamic one applies here."""
    pad = 0 if cc.dynamic_padding else cc.padding
    conv = nn.Conv2d(cc.in_channels, cc.out_channels, cc.kernel_size, cc.stride, pad, cc.dilation, cc.groups, False)
    if cc.dynamic_padding:  # 'same', k=3, stride 2 on 9: total padding 2, one each side
        conv.padding = (1, 1)
    with torch.no_grad():
        conv.weight.copy_(cc.weight[expert].reshape(cc.weight_shape))
    return conv


def _numbers(layer):
    return (
        layer.kind,
        layer.weight_shape,
        layer.per_position.tolist(),
        None if layer.totals is None else layer.totals.tolist(),
        layer.exact,
        layer.n_positions,
    )


@pytest.mark.parametrize("case", list(CONDCONVS))
@pytest.mark.parametrize("estimator", ["paper", "spectral"])
def test_condconv_experts_equal_plain_convs_holding_their_kernels(case, estimator):
    args, size = CONDCONVS[case]
    net = _CondNet(args)
    result = entropyflow.analyze(net, input_size=(2, size, size), estimator=estimator)
    experts = [f"cc.experts.{e}" for e in range(args["num_experts"])]
    assert [layer.name for layer in result.layers] == ["stem", "routing", *experts, "head"]
    assert result.skipped == ()
    for e, name in enumerate(experts):
        layer = result.layer(name)
        assert layer.traced and layer.module_type == "CondConv2d" and layer.weight_key == f"cc.experts.{e}.weight"
        assert layer.notes[0] == (
            f"expert {e} of CondConv2d ({args['num_experts']} experts): the kernel applied is a mixture of the "
            "experts with data-dependent routing weights; this expert analysed as if used alone "
            f"(row {e} of cc.weight reshaped to {net.cc.weight_shape})"
        )
        plain = entropyflow.analyze(nn.Sequential(_plain(net.cc, e)), input_size=(4, size, size), estimator=estimator)
        assert _numbers(layer) == _numbers(plain.layers[0])
    if args["padding"] == "same":
        assert any(n.startswith("padding inferred from traced shapes (left (1, 1)") for n in result.layers[2].notes)


def test_condconv_exact_totals_against_explicit_matrices(nonzero_weights):
    args, size = CONDCONVS["valid"]
    net = nonzero_weights(_CondNet(args))  # taps of magnitude 0.3..1.7: the explicit log-dets are accurate
    result = entropyflow.analyze(net, input_size=(2, size, size))
    for e in range(args["num_experts"]):
        layer = result.layer(f"cc.experts.{e}")
        assert layer.exact and layer.totals is not None
        for f in range(args["out_channels"]):
            distinct, logdet = conv_filter_completion(_plain(net.cc, e), (4, size, size), f)
            assert distinct and layer.totals[f] == pytest.approx(logdet, rel=1e-10, abs=1e-10)


def test_efficientnet_cc_every_condconv_expert_is_a_site():
    with torch.device("meta"):
        model = timm.create_model("efficientnet_cc_b0_4e")
    walk = trace_eager(model, (3, 224, 224))
    condconvs = [n for n, m in model.named_modules() if isinstance(m, CondConv2d)]
    assert len(condconvs) == 24
    sites = {s.name: s for s in walk.sites}
    for n in condconvs:
        shape = model.get_submodule(n).weight_shape
        for e in range(4):
            s = sites[f"{n}.experts.{e}"]
            assert s.traced and s.kind == "conv2d" and s.weight_shape == shape and s.geometry is not None
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(walk.sites) == len(convs) + 4 * len(condconvs) == 162
    assert all(s.traced for s in walk.sites)
    assert not any(s.module_type == "CondConv2d" for s in walk.skipped)
    assert {s.module_type for s in walk.skipped} == {"BatchNormAct2d"}
    analysed = sum(model.get_submodule(n).weight.numel() for n in condconvs)
    assert analysed / sum(p.numel() for p in model.parameters()) > 0.8  # the 80 % that was skipped


# ---- fixed kernels held in buffers, eager mode ---------------------------------------------------


class _Table(nn.Module):
    """A float buffer fed *as data* into a Linear (Swin-v2's coordinate table): not a kernel."""

    def __init__(self):
        super().__init__()
        self.register_buffer("coords", torch.randn(5, 2))
        self.mlp = nn.Linear(2, 4)

    def forward(self, x):
        return x + self.mlp(torch.sign(self.coords) * self.coords.abs().log1p()).sum()


class _Wrap(nn.Module):
    def __init__(self):
        super().__init__()
        self.stft = _Stft()
        self.table = _Table()

    def forward(self, x):
        return self.table(self.stft(x))


def test_buffer_kernel_listed_in_eager_mode():
    result = entropyflow.analyze(_Wrap(), input_size=(1, 16))
    assert [(layer.name, layer.traced) for layer in result.layers] == [("stft.proj", True), ("table.mlp", True)]
    assert [(s.name, s.module_type, s.reason, s.parameters) for s in result.skipped] == [
        ("stft", "_Stft", buffer_reason(["stft.forward_basis_buffer"]), 24)
    ]
    assert result.skipped[0].reason.startswith("fixed kernel held in a buffer, not a parameter (forward_basis_buffer; ")


# ---- recommend → EntropyRegularizer on slices of parameters --------------------------------------


def _round_trip(result, model, tmp_path):
    cfg = recommend(result, RecommendOptions(strategy="all"))
    path = save_config(cfg, tmp_path / "lambda.yaml")
    return cfg, EntropyRegularizer.from_config(model, path)


@pytest.fixture(scope="module")
def moe_folders(tmp_path_factory):
    from test_hf_reach import tiny

    root = tmp_path_factory.mktemp("moe")
    out = {}
    for kind in ("mixtral", "qwen2_moe"):
        tiny(kind).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe"])
def test_moe_experts_round_trip_through_recommend_and_the_regularizer(moe_folders, kind, tmp_path):
    pytest.importorskip("transformers")
    from test_hf_reach import tiny

    model = tiny(kind)  # the same weights as the saved folder
    result = entropyflow.analyze(str(moe_folders[kind]), hash_files=False)
    cfg, reg = _round_trip(result, model, tmp_path)
    prefix = "model.layers.0.mlp.experts"
    expert_layers = [layer for layer in cfg.layers if layer.name.startswith(prefix)]
    assert len(expert_layers) == 12 and reg.prefix == ""
    experts = model.model.layers[0].mlp.experts
    inter = experts.down_proj.shape[2]
    got = reg.terms()
    for e in range(4):
        for part, matrix in (
            ("gate_proj", experts.gate_up_proj[e, :inter]),
            ("up_proj", experts.gate_up_proj[e, inter:]),
            ("down_proj", experts.down_proj[e]),
        ):
            m = matrix.detach().double()
            k = min(m.shape)
            want = -1e-4 * torch.linalg.slogdet(m[:k, :k]).logabsdet  # float64; the term is the model's float32
            assert got[f"{prefix}.{e}.{part}"].detach() == want.float()
    # the gradient of one expert's term reaches only that expert's slice of the fused parameter
    got[f"{prefix}.2.up_proj"].backward()
    grad = experts.gate_up_proj.grad
    assert grad is not None and experts.down_proj.grad is None
    mask = torch.zeros_like(grad, dtype=torch.bool)
    mask[2, inter:] = True
    assert bool((grad[~mask] == 0).all()) and bool((grad[mask] != 0).any())


def test_moe_expert_missing_from_the_model_is_a_one_line_config_error(moe_folders):
    pytest.importorskip("transformers")
    from test_hf_reach import tiny

    result = entropyflow.analyze(str(moe_folders["mixtral"]), hash_files=False)
    cfg = recommend(result, RecommendOptions(strategy="all"))
    layer = next(layer for layer in cfg.layers if layer.weight_key.endswith("experts.0.gate_proj.weight"))
    key = layer.weight_key.replace("experts.0.", "experts.4.")  # the model has 4 experts: 0..3
    wrong = replace(cfg, layers=(replace(layer, weight_key=key),), fingerprint="")
    with pytest.raises(ConfigError) as err:
        EntropyRegularizer.from_config(tiny("mixtral"), wrong)
    assert str(err.value) == (
        f"layer {layer.name}: the model has no parameter '{key}' (is this the architecture the config was made for? "
        "A LightningModule or wrapper: pass prefix=)"
    )
    shape = replace(layer, weight_shape=(48, 31))  # the expert exists, its shape does not match
    with pytest.raises(ConfigError) as err:
        EntropyRegularizer.from_config(tiny("mixtral"), replace(cfg, layers=(shape,), fingerprint=""))
    assert str(err.value) == (f"layer {layer.name}: '{layer.weight_key}' has shape [48, 32], the config says [48, 31]")


def test_condconv_round_trip_through_recommend_and_the_regularizer(tmp_path):
    args, size = CONDCONVS["valid"]
    net = _CondNet(args)
    result = entropyflow.analyze(net, input_size=(2, size, size))
    cfg, reg = _round_trip(result, net, tmp_path)
    assert [layer.name for layer in cfg.layers] == ["stem", "cc.experts.0", "cc.experts.1", "cc.experts.2"]
    got = reg.terms()
    for e in range(3):
        kernel = net.cc.weight.detach()[e].reshape(net.cc.weight_shape)
        assert got[f"cc.experts.{e}"].detach() == terms.conv_log_term(kernel, 1e-3).float()
    got["cc.experts.1"].backward()
    grad = net.cc.weight.grad
    assert grad is not None
    assert bool((grad[0] == 0).all()) and bool((grad[2] == 0).all())
    taps = grad[1].reshape(net.cc.weight_shape)[:, 0, 0, 0]
    kernel = net.cc.weight.detach()[1].reshape(net.cc.weight_shape)
    assert torch.allclose(taps, -1e-3 / kernel[:, 0, 0, 0])  # d/dc of -λ log|c| is -λ/c, on c11 only
    assert int((grad[1] != 0).sum()) == args["out_channels"]


class _RoutedCondConv(nn.Module):
    """A CondConv2d with its routing, as timm's CondConv blocks use it."""

    def __init__(self):
        super().__init__()
        self.c = CondConv2d(2, 4, 3, num_experts=3)
        self.r = nn.Linear(2, 3)

    def forward(self, x):
        return self.c(x, torch.sigmoid(self.r(x.mean((2, 3)))))


def test_condconv_in_a_torchscript_archive_gives_its_true_reason(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "cc.pt"
    torch.jit.script(_RoutedCondConv()).save(str(path))
    result = entropyflow.analyze(str(path), trust_code=True, input_size=(2, 8, 8), hash_files=False)
    assert [layer.name for layer in result.layers] == ["r"]
    assert [(s.name, s.reason) for s in result.skipped] == [
        (
            "c",
            "CondConv2d: expert kernels mixed by data-dependent routing; each expert is analysed as a conv when the "
            "model is traced as a module (a zoo spec, a state dict with its architecture, a live or pickled module), "
            "not here",
        )
    ]
