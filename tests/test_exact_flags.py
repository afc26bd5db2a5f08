"""Spectral ``exact`` flags (issue 20) and the spectral per-position divisor.

A conv's spectral values are exact when its own (zero-padded, non-wrapping) map IS the circular
operator the estimator measures: no left padding, a dilated reach ``δ(k − 1)`` smaller than the
stride (disjoint windows: 1x1 convs, kernel = stride), as many outputs per axis as the circular
map (``⌈n/s⌉``) and a last window inside the input; groups do not matter and transposed convs
follow through their adjoint (``spectral_sites.coincides``). Every claimed case is checked here
against the real layer matrix, built by running the module on basis images in float64, and each
geometry left inexact is shown to really differ.
"""

import numpy as np
import pytest
import torch
from explicit import layer_matrix
from test_spectral import circular_matrix
from torch import nn

import entropyflow
from entropyflow.estimate.spectral_sites import coincides
from entropyflow.walk.sites import ConvGeometry


def _fill(module: nn.Module, seed: int = 0) -> nn.Module:
    """Weights of magnitude 0.3..1.7 with random signs: no tap is zero, so a zero column of the
    layer matrix is a pixel the layer never reads (a structural zero, not a value)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(
                (0.3 + 1.4 * torch.rand(p.shape, generator=g))
                * torch.where(torch.rand(p.shape, generator=g) < 0.5, -1, 1)
            )
    return module


def _analyze(module: nn.Module, in_shape: tuple[int, ...]):
    return entropyflow.analyze(
        module, input_size=in_shape, estimator="spectral", device="cpu", hash_files=False
    ).layers[0]


def _log_sv(m: np.ndarray) -> np.ndarray:
    m = m[:, np.abs(m).sum(0) > 0]  # pixels this map never reads carry no singular value
    with np.errstate(divide="ignore"):
        return np.log(np.linalg.svd(m, compute_uv=False))


def real_map(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The layer's real matrix in the forward-conv view (a transposed conv: its adjoint), rows
    grouped by filter, and the number of rows per filter."""
    a, _ = layer_matrix(module, in_shape)
    m = a.numpy()
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        m = m.T
    return m, m.shape[0] // module.weight.shape[0]


C1, C2, C3 = nn.Conv1d, nn.Conv2d, nn.Conv3d
T1, T2, T3 = nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d

EXACT = {
    "1x1": (lambda: C2(3, 4, 1), (3, 5, 6)),
    "1x1 stride 2": (lambda: C2(3, 5, 1, stride=2), (3, 6, 8)),
    "1x1 stride 2 odd grid": (lambda: C2(2, 3, 1, stride=2), (2, 7, 5)),  # not divisible, still exact
    "1x1 depthwise": (lambda: C2(4, 4, 1, groups=4), (4, 5, 5)),
    "1x1 more filters than inputs": (lambda: C2(2, 5, 1), (2, 4, 3)),
    "1x1 reflect, no padding": (lambda: C2(2, 3, 1, padding_mode="reflect"), (2, 4, 4)),
    "2x2 stride 2 groups 2": (lambda: C2(4, 6, 2, stride=2, groups=2), (4, 8, 6)),
    "2x3 stride 2x3": (lambda: C2(2, 3, (2, 3), stride=(2, 3)), (2, 6, 9)),
    "2x2 stride 3": (lambda: C2(2, 3, 2, stride=3), (2, 9, 6)),
    "2x2 stride 3, grid 8 (8 mod 3 = 2 > reach 1)": (lambda: C2(2, 3, 2, stride=3), (2, 8, 8)),
    "2x2 dilation 2 stride 3": (lambda: C2(2, 3, 2, stride=3, dilation=2), (2, 9, 9)),
    "1-D k=2 s=2": (lambda: C1(3, 4, 2, stride=2), (3, 10)),
    "3-D 1x1x1": (lambda: C3(2, 3, 1), (2, 3, 4, 3)),
    "3-D 2x2x2 stride 2": (lambda: C3(2, 3, 2, stride=2), (2, 4, 4, 2)),
    "transposed 2x2 stride 2 (U-Net)": (lambda: T2(6, 4, 2, stride=2), (6, 3, 4)),
    "transposed 2x2 stride 2 groups 2": (lambda: T2(4, 6, 2, stride=2, groups=2), (4, 3, 3)),
    "transposed 1x1": (lambda: T2(3, 2, 1), (3, 4, 5)),
    "transposed 1x1 stride 2 output_padding 1": (lambda: T2(3, 4, 1, stride=2, output_padding=1), (3, 3, 4)),
    "transposed 1-D k=3 s=3": (lambda: T1(2, 3, 3, stride=3), (2, 5)),
    "transposed 3-D 2x2x2 stride 2": (lambda: T3(3, 2, 2, stride=2), (3, 2, 2, 3)),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_claimed_exact_against_the_real_layer_matrix(name):
    make, in_shape = EXACT[name]
    module = _fill(make().double())
    layer = _analyze(module, in_shape)
    assert layer.exact is True and layer.reason == "", (name, layer.reason)
    m, n_out = real_map(module, in_shape)
    assert layer.n_positions == n_out  # here the circular map and the layer have the same positions
    expected = [_log_sv(m[f * n_out : (f + 1) * n_out]).sum() for f in range(layer.filters)]
    np.testing.assert_allclose(layer.totals, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(layer.per_position, np.array(expected) / n_out, rtol=0, atol=1e-12)
    assert layer.joint == pytest.approx(_log_sv(m).sum(), abs=1e-10)


class PadRight(nn.Conv2d):
    """Pads one pixel on the right/bottom inside its forward (timm's Conv2dSame on an odd grid)."""

    def forward(self, x):
        return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))


NOT_EXACT = {
    # name: (module, input, words of the reason)
    "3x3 'same' zero padding": (lambda: C2(2, 3, 3, padding=1), (2, 5, 5), "zero padding"),
    "3x3 valid": (lambda: C2(2, 3, 3), (2, 6, 6), "no padding, kernel wider than the stride"),
    "2x2 dilation 2 stride 2 (reach = stride)": (
        lambda: C2(2, 3, 2, stride=2, dilation=2),
        (2, 8, 8),
        "no padding, kernel wider than the stride",
    ),
    "3x3 stride 2 padding 1": (lambda: C2(2, 3, 3, stride=2, padding=1), (2, 6, 6), "zero padding"),
    "1x1 zero padding 1": (lambda: C2(2, 3, 1, padding=1), (2, 4, 4), "zero padding"),
    "2x2 stride 2 right padding (odd grid)": (lambda: PadRight(2, 3, 2, stride=2), (2, 5, 5), "not a multiple"),
    "1x1 stride 2 right padding (even grid)": (lambda: PadRight(2, 3, 1, stride=2), (2, 4, 4), "padding on the right"),
    "2x2 stride 3, grid 7 (7 mod 3 = 1 ≤ reach 1)": (lambda: C2(2, 3, 2, stride=3), (2, 7, 7), "not a multiple"),
    "transposed 2x2 stride 2 output_padding 1": (
        lambda: T2(3, 2, 2, stride=2, output_padding=1),
        (3, 3, 3),
        "not a multiple",
    ),
    "transposed 3x3 stride 2 padding 1": (
        lambda: T2(3, 2, 3, stride=2, padding=1, output_padding=1),
        (3, 3, 3),
        "zero padding",
    ),
}


@pytest.mark.parametrize("name", list(NOT_EXACT))
def test_inexact_geometries_really_differ(name):
    """Where the flag stays false the real map's Σ log σ (over min(rows, cols) singular values,
    unread pixels dropped) is not what the circular operator gives."""
    make, in_shape, words = NOT_EXACT[name]
    module = _fill(make().double())
    layer = _analyze(module, in_shape)
    assert layer.exact is False and words in layer.reason, (name, layer.reason)
    m, n_out = real_map(module, in_shape)
    gaps = []
    for f in range(layer.filters):
        real = _log_sv(m[f * n_out : (f + 1) * n_out])
        gaps.append(abs(real.sum() - layer.totals[f]) if np.isfinite(real).all() else np.inf)
    assert max(gaps) > 1e-3, (name, gaps)


def test_one_by_one_with_padding_has_outputs_that_read_only_padding():
    """Why a padded 1x1 conv stays inexact: its border outputs read only padding (zero rows), so
    each real filter map (36 rows, 32 read columns) has rank 16: Σ log σ over min(rows, cols) is −∞,
    while the circular map has 16 positions, all with σ = ‖k_f‖."""
    module = _fill(C2(2, 3, 1, padding=1).double())
    m, n_out = real_map(module, (2, 4, 4))
    assert n_out == 36 and np.linalg.matrix_rank(m[:n_out]) == 16
    layer = _analyze(module, (2, 4, 4))
    np.testing.assert_allclose(
        layer.totals, 16 * np.log(np.linalg.norm(module.weight.detach().numpy()[:, :, 0, 0], axis=1))
    )
    assert "the circular map has 16 positions per filter, the layer 36" in layer.reason


def test_per_position_divides_by_the_circular_positions():
    """A stride-1 valid conv, 12 inputs → 8 outputs: the circular map measured has 12 positions
    (12 frequencies, 12 singular values per filter), so the per-position value is their mean
    log σ, total / 12: the log-gain per coordinate of the map measured, as the paper's
    per-position value is its total / n_out (n_out = the positions of the map it measures).
    Dividing by the layer's 8 would mix two maps' counts (1.5x the mean log-gain here)."""
    module = _fill(C1(2, 3, 5).double())
    layer = _analyze(module, (2, 12))
    assert layer.n_positions == 8 and layer.exact is False
    w = module.weight.detach().numpy()
    a, n = circular_matrix(w, (12,), (1,), (1,), (0,), 1)
    assert n == 12
    logs = [np.log(np.linalg.svd(a[f * n : (f + 1) * n], compute_uv=False)) for f in range(3)]
    np.testing.assert_allclose(layer.totals, [v.sum() for v in logs], rtol=0, atol=1e-10)
    np.testing.assert_allclose(layer.per_position, [v.mean() for v in logs], rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.per_position, layer.totals / 12, rtol=0, atol=0)
    assert "the circular map has 12 positions per filter, the layer 8: totals sum over the 12" in layer.reason


def test_per_position_is_grid_independent_where_total_over_layer_positions_is_not():
    """The mean over the circular positions tends to the filter's mean log-gain as the grid grows
    (here within 0.02 nats from 24 to 96 positions); total / n_out of the 'valid' layer would not."""
    module = _fill(C1(2, 3, 5).double())
    small, large = _analyze(module, (2, 24)), _analyze(module, (2, 96))
    assert np.abs(small.per_position - large.per_position).max() < 0.02
    wrong_small, wrong_large = small.totals / small.n_positions, large.totals / large.n_positions
    assert np.abs(wrong_small - wrong_large).max() > 5 * np.abs(small.per_position - large.per_position).max()


def _geo(n, m, k, s, p=0, d=1, transposed=False):
    return ConvGeometry((n,), (m,), (k,), (s,), (p,), (d,), transposed=transposed)


@pytest.mark.parametrize(
    ("geo", "grid", "same"),
    [
        (_geo(8, 8, 1, 1), 8, True),
        (_geo(8, 4, 2, 2), 4, True),
        (_geo(7, 4, 1, 2), 4, True),  # 1x1 stride 2 on an odd grid
        (_geo(7, 3, 2, 3), 3, False),  # windows 0-1, 3-4 only: the circular map has a third
        (_geo(8, 3, 2, 3), 3, True),
        (_geo(9, 3, 2, 3, d=2), 3, True),  # reach 2 < stride 3
        (_geo(8, 4, 2, 2, d=2), 4, False),  # reach 2 = stride: the last window would wrap
        (_geo(5, 3, 2, 2), 3, False),  # right padding read by the last window
        (_geo(8, 10, 1, 1, p=1), 8, False),
        (_geo(8, 6, 3, 1), 8, False),
    ],
)
def test_coincides_per_axis(geo, grid, same):
    assert coincides(geo, (grid,)) is same
