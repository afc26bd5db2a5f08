"""Every conv kind the tool calls exact, checked against explicitly built completed matrices.

The matrices are built by applying the module to basis images (tests/explicit.py), so the
geometry, the walker's traced shapes and the pivot formula are all checked at once.
"""

import random

import pytest
from explicit import conv_filter_completion, transposed_filter_completion
from torch import nn

import entropyflow

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def check_layer(module, in_shape, fill):
    fill(module)
    result = entropyflow.analyze(module, input_size=in_shape, device="cpu", hash_files=False)
    layer = result.layers[0]
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    completion = transposed_filter_completion if transposed else conv_filter_completion
    assert layer.filters == module.weight.shape[0]
    exacts = []
    for f in range(layer.filters):
        distinct, logdet = completion(module, in_shape, f)
        exacts.append(distinct)
        if distinct and layer.exact:
            assert layer.totals[f] == pytest.approx(logdet, rel=1e-9, abs=1e-9), (f, module)
    # the tool claims exact exactly when the explicit completion has distinct pivots (all filters alike)
    assert layer.exact == all(exacts), (module, in_shape, exacts)
    if not layer.exact:
        assert layer.reason
        assert layer.totals == pytest.approx(layer.per_position * layer.n_positions)
    return layer


def _cases(seed: int, transposed: bool):
    rng = random.Random(seed)
    out = []
    for nd in (1, 2, 3):
        for _ in range({1: 30, 2: 30, 3: 14}[nd]):
            groups = rng.choice([1, 1, 2])
            cin, cout = groups * rng.choice([1, 2]), groups * rng.choice([1, 2])
            if rng.random() < 0.15:  # depthwise
                cin = cout = groups = rng.choice([2, 3])
            kmax = 3 if nd == 3 else 4
            k = tuple(rng.randint(1, kmax) for _ in range(nd))
            s = tuple(rng.randint(1, 3) for _ in range(nd))
            p = tuple(rng.choice([0, 0, 1, 2]) for _ in range(nd))
            d = tuple(rng.randint(1, 2) for _ in range(nd))
            size = tuple(rng.randint(2, 4 if nd == 3 else 7) for _ in range(nd))
            if transposed:
                op = tuple(rng.randint(0, max(si, di) - 1) for si, di in zip(s, d, strict=True))
                mod = CONVT[nd](cin, cout, k, stride=s, padding=p, dilation=d, groups=groups, output_padding=op)
                outs = [
                    (n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                    for n, si, pi, di, ki, oi in zip(size, s, p, d, k, op, strict=True)
                ]
            else:
                mod = CONV[nd](cin, cout, k, stride=s, padding=p, dilation=d, groups=groups)
                outs = [
                    (n + 2 * pi - di * (ki - 1) - 1) // si + 1
                    for n, si, pi, di, ki in zip(size, s, p, d, k, strict=True)
                ]
            if min(outs) < 1:
                continue
            out.append(
                pytest.param(mod, (cin, *size), id=f"{type(mod).__name__}-k{k}-s{s}-p{p}-d{d}-g{groups}-n{size}")
            )
    return out


@pytest.mark.parametrize("module,in_shape", _cases(7, transposed=False))
def test_random_convs_against_explicit_completion(module, in_shape, nonzero_weights):
    check_layer(module, in_shape, nonzero_weights)


@pytest.mark.parametrize("module,in_shape", _cases(11, transposed=True))
def test_random_transposed_convs_against_explicit_completion(module, in_shape, nonzero_weights):
    check_layer(module, in_shape, nonzero_weights)


EXACT_KINDS = [
    (nn.Conv1d(2, 3, 3), (2, 9)),
    (nn.Conv1d(2, 2, 3, stride=2, padding=1, dilation=1), (2, 9)),
    (nn.Conv2d(3, 4, 3), (3, 6, 5)),
    (nn.Conv2d(2, 3, 3, stride=2), (2, 9, 8)),
    (nn.Conv2d(2, 3, 3, dilation=2), (2, 9, 9)),
    (nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 7, 7)),
    (nn.Conv2d(2, 2, 5, stride=3, padding=2), (2, 9, 7)),
    (nn.Conv2d(4, 6, 3, groups=2), (4, 6, 6)),
    (nn.Conv2d(3, 3, 3, stride=2, padding=1, groups=3), (3, 7, 7)),  # depthwise
    (nn.Conv2d(3, 4, 1), (3, 5, 5)),
    (nn.Conv3d(2, 2, 2), (2, 3, 4, 4)),
    (nn.Conv3d(2, 2, 3, stride=2, padding=1), (2, 5, 5, 5)),
    (nn.ConvTranspose1d(2, 3, 3, stride=2), (2, 5)),
    (nn.ConvTranspose2d(4, 2, 2, stride=2), (4, 3, 3)),  # U-Net up-convolution
    (nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), (2, 4, 4)),
    (nn.ConvTranspose2d(4, 4, 3, stride=2, groups=2), (4, 3, 3)),
    (nn.ConvTranspose2d(3, 2, 3, dilation=2), (3, 3, 3)),
    (nn.ConvTranspose3d(2, 2, 2, stride=2), (2, 2, 2, 3)),
]


@pytest.mark.parametrize(
    "module,in_shape", EXACT_KINDS, ids=lambda x: type(x).__name__ if isinstance(x, nn.Module) else str(x)
)
def test_every_claimed_exact_kind(module, in_shape, nonzero_weights):
    layer = check_layer(module, in_shape, nonzero_weights)
    assert layer.exact is True and layer.reason == ""


@pytest.mark.parametrize(
    "module,in_shape",
    [
        (nn.Conv2d(1, 2, 3, padding=1), (1, 5, 5)),
        (nn.Conv2d(1, 2, 3, padding="same"), (1, 6, 6)),
        (nn.Conv2d(2, 2, 4, padding="same"), (2, 6, 6)),  # asymmetric 'same'
        (nn.Conv2d(1, 2, 7, stride=2, padding=3), (1, 16, 16)),  # ResNet stem
        (nn.ConvTranspose2d(2, 2, 3, padding=1), (2, 4, 4)),
    ],
)
def test_collisions_are_flagged_not_exact(module, in_shape, nonzero_weights):
    layer = check_layer(module, in_shape, nonzero_weights)
    assert layer.exact is False and "collide" in layer.reason


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_non_zero_padding_modes_are_not_exact(mode, nonzero_weights):
    conv = nonzero_weights(nn.Conv2d(1, 2, 3, stride=2, padding=1, padding_mode=mode))
    layer = entropyflow.analyze(conv, input_size=(1, 7, 7), hash_files=False).layers[0]
    assert layer.exact is False and f"padding_mode='{mode}'" in layer.reason
    # and rightly so: the explicit completion either has colliding pivots (wrap-around) or a
    # different determinant from the zero-padded product formula
    distinct, logdet = conv_filter_completion(conv, (1, 7, 7), 0)
    if distinct:
        zero_padded = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        zero_padded.load_state_dict(conv.state_dict())
        exact = entropyflow.analyze(zero_padded, input_size=(1, 7, 7), hash_files=False).layers[0]
        assert exact.exact and logdet != pytest.approx(exact.totals[0], rel=1e-6)


def test_channel_rule_mean_is_never_called_exact(nonzero_weights):
    conv = nonzero_weights(nn.Conv2d(3, 2, 3))
    layer = entropyflow.analyze(conv, input_size=(3, 6, 6), channel_rule="mean", hash_files=False).layers[0]
    w = conv.weight.detach().double()
    assert layer.exact is False and "channel_rule=mean" in layer.reason
    assert layer.per_position == pytest.approx(w[:, :, 0, 0].abs().log().mean(1).numpy())


def test_sweeps_cover_exact_and_inexact_cases_of_every_kind(nonzero_weights):
    seen: dict[str, set] = {}
    for cases in (_cases(7, transposed=False), _cases(11, transposed=True)):
        for case in cases:
            module, in_shape = case.values
            layer = entropyflow.analyze(nonzero_weights(module), input_size=in_shape, hash_files=False).layers[0]
            seen.setdefault(layer.kind, set()).add(layer.exact)
    assert set(seen) == {f"conv{n}d" for n in (1, 2, 3)} | {f"conv_transpose{n}d" for n in (1, 2, 3)}
    assert all(v == {True, False} for v in seen.values()), seen
