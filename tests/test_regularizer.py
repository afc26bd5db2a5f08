"""The entropy loss terms and EntropyRegularizer: analytic gradients, wrappers, autocast, errors;
seed 000's sigmoid entropy against the SPEC golden values."""

import math

import pytest
import torch
from torch import nn

from entropyflow.config import LambdaConfig, LayerLambda, Strategy
from entropyflow.errors import ConfigError
from entropyflow.regularize import EntropyflowWarning, EntropyRegularizer, SigmoidEntropyLoss, sigmoid_entropy_bits

# SPEC golden (binary_entropy_sigmoid): z, H_bits, dH/dz
GOLDEN_H = [
    (-8.0, 0.004354352872342919, 0.0038691658009562596),
    (-2.0, 0.5270653410031616, 0.3029474499735814),
    (-0.5, 0.956286539380729, 0.16951934509186878),
    (0.0, 1.0, -0.0),
    (0.3, 0.9839504632682354, -0.10580363819409827),
    (1.0, 0.8399415379831694, -0.2836510610670778),
    (4.0, 0.1299792746663049, -0.10192759465037506),
    (12.0, 0.00011523424020824055, -0.00010636938919140938),
]


def config(layers, form="log", eps=1e-4, rule="first", fp=""):
    return LambdaConfig(
        model="test",
        fingerprint=fp,
        estimator="paper",
        channel_rule=rule,
        form=form,
        epsilon=eps,
        strategy=Strategy("first", (), ""),
        layers=tuple(layers),
    )


def conv_layer(name, w, lam=0.3, fl=None):
    return LayerLambda(name, "conv2d", f"{name}.weight", tuple(w.shape), lam, fl)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3),
        nn.ReLU(),
        nn.Conv2d(5, 4, 3, groups=1),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6),
        nn.Linear(6, 6),
    ).double()


# --- sigmoid entropy (seed 000) ------------------------------------------------------------


def test_sigmoid_entropy_matches_golden_values_and_gradient():
    z = torch.tensor([g[0] for g in GOLDEN_H], dtype=torch.float64, requires_grad=True)
    h = sigmoid_entropy_bits(z)
    assert h.tolist() == pytest.approx([g[1] for g in GOLDEN_H], rel=1e-13, abs=1e-16)
    h.sum().backward()
    assert z.grad.tolist() == pytest.approx([g[2] for g in GOLDEN_H], rel=1e-11, abs=1e-16)


def test_sigmoid_entropy_has_no_cancellation_for_large_z():
    z = torch.tensor([40.0, -40.0, 200.0], dtype=torch.float64)
    h = sigmoid_entropy_bits(z)
    # for large |z|: H ≈ (1 + |z|) e^{-|z|} / ln 2; the naive softplus(z) - z·σ(z) gives 0 (or worse) here
    expected = [(1 + 40) * math.exp(-40) / math.log(2)] * 2
    assert h[:2].tolist() == pytest.approx(expected, rel=1e-12)
    assert h[2] > 0 and math.isfinite(h[2])
    naive = (torch.nn.functional.softplus(z) - z * torch.sigmoid(z)) / math.log(2)
    assert naive[0] == 0.0  # what the cancellation-free form avoids


def test_autograd_equals_the_analytic_gradients_for_w_G_and_b():
    torch.manual_seed(1)
    x = torch.randn(7, dtype=torch.float64)
    w = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    G = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    z = (w + G) @ x + b
    sigmoid_entropy_bits(z).sum().backward()
    D = torch.sigmoid(z.detach())
    dz = -z.detach() * D * (1 - D) / math.log(2)
    torch.testing.assert_close(w.grad, dz[:, None] * x[None, :], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(G.grad, w.grad, rtol=0, atol=0)
    torch.testing.assert_close(b.grad, dz, rtol=1e-12, atol=1e-14)


def test_sigmoid_entropy_loss_hooks_named_modules(net):
    loss = SigmoidEntropyLoss(net, ["4"], lam=0.5)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out4 = net[4](net[3](net[2](net[1](net[0](x)))))
    net(x)
    assert float(loss().detach()) == pytest.approx(0.5 * float(sigmoid_entropy_bits(out4).mean()), rel=1e-12)
    with pytest.raises(RuntimeError, match="run the model's forward"):
        loss()
    loss.remove()
    with pytest.raises(ConfigError, match="nope"):
        SigmoidEntropyLoss(net, ["nope"])


# --- regularizer gradients ------------------------------------------------------------------


def test_conv_log_form_gradient_is_minus_lambda_over_c11(net):
    w = net[0].weight
    reg = EntropyRegularizer(net, config([conv_layer("0", w, 0.3)]))
    reg().backward()
    expected = torch.zeros_like(w)
    expected[:, 0, 0, 0] = -0.3 / w.detach()[:, 0, 0, 0]
    torch.testing.assert_close(w.grad, expected, rtol=1e-12, atol=0)
    assert reg().dtype == torch.float64  # a float64 model gets a float64 loss
    assert float(reg().detach()) == pytest.approx(
        -0.3 * float(torch.log(w.detach()[:, 0, 0, 0].abs()).sum()), rel=1e-12
    )


def test_conv_inverse_form_gradient_and_per_filter_lambdas(net):
    w = net[2].weight
    fl = [0.1, 0.2, 0.3, 0.4]
    reg = EntropyRegularizer(net, config([conv_layer("2", w, 1.0, tuple(fl))], form="inverse", eps=1e-3))
    reg().backward()
    c = w.detach()[:, 0, 0, 0]
    expected = torch.zeros_like(w)
    expected[:, 0, 0, 0] = -torch.tensor(fl, dtype=torch.float64) * torch.sign(c) / (c.abs() + 1e-3) ** 2
    torch.testing.assert_close(w.grad, expected, rtol=1e-12, atol=0)
    assert float(reg().detach()) == pytest.approx(
        sum(layer / (abs(float(ci)) + 1e-3) for layer, ci in zip(fl, c, strict=True)), rel=1e-12
    )


def test_dense_log_form_gradient_is_minus_lambda_W_inverse_transpose(net):
    w = net[4].weight  # (6, 64): square part 6x6
    reg = EntropyRegularizer(net, config([LayerLambda("4", "linear", "4.weight", (6, 64), 0.7)]))
    reg().backward()
    expected = torch.zeros_like(w)
    expected[:, :6] = -0.7 * torch.linalg.inv(w.detach()[:, :6]).T
    torch.testing.assert_close(w.grad, expected, rtol=1e-10, atol=1e-12)
    assert reg.breakdown()["4"] == pytest.approx(
        -0.7 * float(torch.linalg.slogdet(w.detach()[:, :6]).logabsdet), rel=1e-12
    )


def test_dense_inverse_form_gradient_on_a_well_scaled_layer(net):
    w = net[5].weight  # 6x6
    with torch.no_grad():
        w.copy_(torch.eye(6, dtype=torch.float64) * 1.3 + 0.1 * w)
    reg = EntropyRegularizer(
        net, config([LayerLambda("5", "linear", "5.weight", (6, 6), 0.2)], form="inverse", eps=1e-3)
    )
    reg().backward()
    # d/dW [λ/(|det W| + ε)] = -λ |det W| W^{-T} / (|det W| + ε)²
    det = torch.linalg.det(w.detach()).abs()
    expected = -0.2 * det * torch.linalg.inv(w.detach()).T / (det + 1e-3) ** 2
    torch.testing.assert_close(w.grad, expected, rtol=1e-10, atol=1e-14)
    assert float(reg().detach()) == pytest.approx(0.2 / (float(det) + 1e-3), rel=1e-12)


def test_mean_channel_rule_matches_the_analysis_rule(net):
    w = net[2].weight
    reg = EntropyRegularizer(net, config([conv_layer("2", w, 1.0)], rule="mean"))
    expected = -float(torch.log(w.detach()[:, :, 0, 0].abs()).mean(dim=1).sum())
    assert float(reg().detach()) == pytest.approx(expected, rel=1e-12)


def test_mha_packed_rows(net):
    mha = nn.MultiheadAttention(4, 1).double()
    layer = LayerLambda("k_proj", "attention_k", "in_proj_weight", (4, 4), 1.0, rows=(4, 8))
    reg = EntropyRegularizer(mha, config([layer]))
    assert float(reg().detach()) == pytest.approx(
        -float(torch.linalg.slogdet(mha.in_proj_weight.detach()[4:8]).logabsdet), rel=1e-12
    )


# --- wrappers, devices, autocast ------------------------------------------------------------


def test_no_weight_copies_and_optimiser_steps_are_seen(net):
    reg = EntropyRegularizer(net, config([conv_layer("0", net[0].weight)]))
    assert list(reg.parameters()) == [] and list(reg.buffers()) == []
    before = float(reg().detach())
    with torch.no_grad():
        net[0].weight.mul_(2.0)
    assert float(reg().detach()) == pytest.approx(before - 0.3 * 5 * math.log(2.0), rel=1e-12)


@pytest.mark.slow
def test_data_parallel_and_compile_prefixes(net):
    cfg = config([conv_layer("0", net[0].weight)])
    plain = float(EntropyRegularizer(net, cfg)().detach())
    for wrapped in (nn.DataParallel(net), torch.compile(net)):
        assert float(EntropyRegularizer(wrapped, cfg)().detach()) == pytest.approx(plain, rel=1e-12)
    # and a config written from a wrapped model's names works on the bare model
    prefixed = config([LayerLambda("module.0", "conv2d", "module._orig_mod.0.weight", tuple(net[0].weight.shape), 0.3)])
    assert float(EntropyRegularizer(net, prefixed)().detach()) == pytest.approx(plain, rel=1e-12)


def test_distributed_data_parallel(net, tmp_path):
    """A real DDP wrapper (gloo, one process): names resolve through 'module.', and the gradient
    after DDP's all-reduce is still -λ/c11 on c11."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(net)
        reg = EntropyRegularizer(ddp, config([conv_layer("0", net[0].weight)]))
        assert reg._paths == ("module.0.weight",)
        x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        (ddp(x).sum() * 0 + reg()).backward()
    finally:
        dist.destroy_process_group()
    w = net[0].weight
    expected = torch.zeros_like(w)
    expected[:, 0, 0, 0] = -0.3 / w.detach()[:, 0, 0, 0]
    torch.testing.assert_close(w.grad, expected, rtol=1e-12, atol=0)


def test_autocast_gives_the_full_precision_value(net):
    model = net.float()
    cfg = config([conv_layer("0", model[0].weight), LayerLambda("5", "linear", "5.weight", (6, 6), 1e-4)])
    reg = EntropyRegularizer(model, cfg)
    full = float(reg().detach())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = reg()
    assert value.dtype == torch.float32 and float(value.detach()) == pytest.approx(full, rel=1e-7)
    # the terms are computed from the float32 weights in float64, never from a bfloat16 cast
    c11 = model[0].weight.detach()[:, 0, 0, 0].double()
    exact = -0.3 * float(torch.log(c11.abs()).sum()) - 1e-4 * float(
        torch.linalg.slogdet(model[5].weight.detach().double()).logabsdet
    )
    assert float(value.detach()) == pytest.approx(exact, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has no GPU)")
@pytest.mark.gpu
def test_cuda(net):
    cfg = config([conv_layer("0", net[0].weight)])
    cpu = float(EntropyRegularizer(net, cfg)().detach())
    assert float(EntropyRegularizer(net.cuda(), cfg)().detach()) == pytest.approx(cpu, rel=1e-12)


# --- errors and warnings -------------------------------------------------------------------


def test_kind_and_weight_mismatches_are_errors(net):
    with pytest.raises(ConfigError, match="kind linear needs a 2-D dense weight"):
        EntropyRegularizer(net, config([LayerLambda("0", "linear", "0.weight", (5, 3, 3, 3), 1.0)]))
    with pytest.raises(ConfigError, match=r"rows \[0, 9\] do not fit"):
        EntropyRegularizer(net, config([LayerLambda("5", "attention_q", "5.weight", (9, 6), 1.0, rows=(0, 9))]))


def test_fingerprint_of_a_live_model_equals_the_analysis_fingerprint(net):
    import entropyflow
    from entropyflow.config import fingerprint
    from entropyflow.regularize import model_fingerprint

    a = entropyflow.analyze(net, input_size=(3, 8, 8))
    assert model_fingerprint(net) == fingerprint((layer.weight_key, layer.weight_shape) for layer in a.layers)
    assert model_fingerprint(nn.DataParallel(net)) == model_fingerprint(net)
    mha = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))  # packed q/k/v rows: one key, shape (e, e)
    assert model_fingerprint(mha)[1] == 3  # 0.weight, 1.in_proj_weight (4x4 blocks), 1.out_proj.weight


def test_missing_and_misshaped_layers_are_errors(net):
    with pytest.raises(ConfigError, match="layer 9: the model has no parameter '9.weight'"):
        EntropyRegularizer(net, config([LayerLambda("9", "conv2d", "9.weight", (5, 3, 3, 3), 1.0)]))
    with pytest.raises(ConfigError, match=r"has shape \[5, 3, 3, 3\], the config says \[5, 3, 5, 5\]"):
        EntropyRegularizer(net, config([LayerLambda("0", "conv2d", "0.weight", (5, 3, 5, 5), 1.0)]))


def test_fingerprint_mismatch_warns(net):
    with pytest.warns(EntropyflowWarning, match="differ from those the config was made for"):
        EntropyRegularizer(net, config([conv_layer("0", net[0].weight)], fp="0123456789abcdef"))


def test_inert_dense_inverse_form_warns():
    torch.manual_seed(0)
    lin = nn.Linear(256, 256)  # default init: log|det| ≈ -600, so |det| underflows far below ε
    with pytest.warns(EntropyflowWarning, match="inert"):
        reg = EntropyRegularizer(lin, config([LayerLambda("", "linear", "weight", (256, 256), 1e-4)], form="inverse"))
    assert float(reg().detach()) == pytest.approx(1e-4 / 1e-4)  # value λ/ε
    reg().backward()
    assert float(lin.weight.grad.abs().max()) == 0.0  # gradient exactly zero: the pitfall
