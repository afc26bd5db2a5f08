"""SPEC §8 golden vectors (copied from shared/golden/golden.json), through the public API."""

import math

import pytest
import torch
from torch import nn

import entropyflow

TOL = 1e-9


def run(module, input_size, **kw):
    return entropyflow.analyze(module, input_size=input_size, hash_files=False, **kw).layers[0]


def linear(weight):
    w = torch.tensor(weight, dtype=torch.float64)
    m = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
    with torch.no_grad():
        m.weight.copy_(w)
    return m


def conv(kernel, cin=None, **kw):
    k = torch.tensor(kernel, dtype=torch.float64)
    k = k.reshape((1,) * (4 - k.ndim) + tuple(k.shape))
    m = nn.Conv2d(k.shape[1], k.shape[0], tuple(k.shape[2:]), bias=False, **kw).double()
    with torch.no_grad():
        m.weight.copy_(k)
    return m


def test_example4_wide_dense_det_18():
    layer = run(linear([[3, 0, 9, -3, 4], [1, 5, -1, 4, 2], [0, 4, -2, 1, 5]]), (5,))
    assert layer.logdet == pytest.approx(2.890371757896165, abs=TOL)
    assert math.exp(layer.logdet) == pytest.approx(18.0, rel=1e-12)
    assert layer.total == pytest.approx(math.log(18), abs=TOL) and layer.exact is True
    assert layer.square == 3 and layer.per_position[0] == pytest.approx(math.log(18) / 3)


def test_dense_tall_5x3_det_23():
    layer = run(linear([[2, 1, 0], [1, 3, 1], [0, 1, 5], [4, -2, 7], [1, 1, -3]]), (3,))
    assert layer.logdet == pytest.approx(3.1354942159291497, abs=TOL)
    assert math.exp(layer.logdet) == pytest.approx(23.0, rel=1e-12)


def test_example5_conv_det_64():
    layer = run(conv([[2, 1], [4, 3], [-2, 1]]), (1, 4, 4))
    assert layer.total == pytest.approx(4.1588830833596715, abs=TOL)
    assert math.exp(layer.total) == pytest.approx(64.0, rel=1e-12)
    assert layer.exact is True and layer.per_position[0] == pytest.approx(math.log(2))
    assert layer.n_positions == 6 and layer.c11[0] == 2.0


@pytest.mark.parametrize(
    "kernel,rows,cols,delta_h",
    [
        ([[0.5655, 1.6998], [-1.1213, 1.4691], [-0.672, 0.4575]], 5, 6, -8.550674751389428),
        ([[-1.2023, 0.574, -1.0116], [-1.2483, 1.3951, 0.7009]], 7, 4, 2.2108366679847156),
        ([[-1.1322, -0.5196, 1.6073], [1.2049, -0.4793, -1.5911], [1.5571, -0.7839, 1.5397]], 6, 6, 1.986602281926761),
    ],
)
def test_valid_single_channel_convs(kernel, rows, cols, delta_h):
    layer = run(conv(kernel), (1, rows, cols))
    assert layer.exact is True and layer.total == pytest.approx(delta_h, abs=TOL)


MULTI = [
    [[-1.5924, 0.5063, -0.6092], [0.9543, 1.6869, -1.0649], [0.3827, 1.0024, -0.9884]],
    [[0.4008, 0.9057, 1.0436], [-0.8099, -0.7417, 1.3886], [-1.1902, 1.2675, 1.5262]],
    [[-1.2434, -0.9782, 0.8239], [0.7306, 0.3481, 0.3643], [1.2789, 1.228, 0.7622]],
]


def test_multichannel_filter_pivots_on_first_input_channel():
    layer = run(conv([MULTI]), (3, 5, 6))
    assert layer.total == pytest.approx(5.582907745728301, abs=TOL) and layer.exact is True
    # the other channels would give -10.97 and 2.61: the channel choice matters
    mean_rule = run(conv([MULTI]), (3, 5, 6), channel_rule="mean")
    expected = (5.582907745728301 - 10.971512750537785 + 2.614194754237202) / 3
    assert mean_rule.total == pytest.approx(expected, abs=1e-9) and mean_rule.exact is False


def test_layer_total_is_the_sum_over_filters_not_the_joint_determinant():
    k = [
        [
            [[-0.7076, -1.3025], [0.6053, 1.0034]],
            [[-0.7517, 0.9149], [-1.3855, -0.8968]],
            [[-1.6758, 0.5584], [0.7915, 0.4418]],
        ],
        [
            [[-0.3208, -1.0629], [-1.0389, -0.9156]],
            [[-0.7176, -0.334], [-0.4737, 1.0866]],
            [[-0.6159, -0.6431], [-1.4363, -1.203]],
        ],
    ]
    layer = run(conv(k), (3, 4, 5))
    assert layer.total == pytest.approx(-17.793764636235416, abs=TOL)
    assert layer.total != pytest.approx(-15.862792203353155, abs=0.1)  # whole-layer completion (documented)


@pytest.mark.parametrize(
    "kernel,rows,cols,s,p,d,delta_h,naive",
    [
        (
            [
                [[1.1451, -1.2486, 0.4933], [1.2598, -1.3722, 1.4943], [-0.6903, 0.8299, -0.5954]],
                [[-1.6256, -0.7325, -1.4546], [-1.4712, 0.3808, -1.14], [-1.0934, -0.6692, 1.0669]],
            ],
            9,
            8,
            2,
            0,
            1,
            1.6259036332458807,
            1.6259036332458803,
        ),
        (
            [
                [[0.703, -0.8952, -1.0083], [-0.5746, 0.7129, -0.3948], [1.0199, 0.6841, 1.4328]],
                [[-1.1471, -1.4874, 1.6575], [-1.1147, -1.5739, -0.6677], [-1.5473, 0.9475, 0.979]],
            ],
            9,
            9,
            1,
            0,
            2,
            -8.809959679286811,
            -8.809959679286806,
        ),
        (
            [
                [[1.2942, -1.6185, 1.5919], [-1.2791, -0.3397, 0.5909], [-0.5033, 0.4524, -0.8683]],
                [[-0.303, 0.8039, -0.493], [1.2757, 1.0796, 1.2357], [-1.4877, -0.4528, -0.7566]],
            ],
            7,
            7,
            2,
            1,
            1,
            3.4243117889757766,
            4.1262838982564585,
        ),
        (
            [
                [
                    [1.5205, -1.6968, -1.5147, -0.568, 0.5523],
                    [-1.4985, 1.4179, 0.3754, -1.3947, 0.6959],
                    [-1.0808, -0.8377, 0.9944, 0.5267, -0.8979],
                    [1.1854, 1.6766, -1.4993, -0.7045, -1.0021],
                    [1.1216, 0.7336, 0.6992, -0.3126, -1.0236],
                ],
                [
                    [-0.7829, 0.7695, 0.9746, -0.7089, -1.48],
                    [-0.4466, -0.4128, -1.4825, -1.0696, 1.2819],
                    [-1.468, 0.6593, 1.3229, 1.2331, -0.8427],
                    [-1.0697, 0.8744, 1.4234, -0.9789, 0.8203],
                    [1.1884, -0.7171, 0.749, -1.1377, 1.3519],
                ],
            ],
            9,
            7,
            3,
            2,
            1,
            2.6563789881848825,
            3.7713530532175406,
        ),
    ],
)
def test_stride_dilation_padding_pivots(kernel, rows, cols, s, p, d, delta_h, naive):
    layer = run(conv([kernel], stride=s, padding=p, dilation=d), (2, rows, cols))
    assert layer.exact is True and layer.total == pytest.approx(delta_h, abs=TOL)
    assert layer.per_position[0] * layer.n_positions == pytest.approx(naive, abs=TOL)


def test_same_padding_stride_one_is_flagged_and_reports_the_papers_value():
    k = [[-0.3678, 0.3235, 0.6513], [-1.2063, -0.7203, -0.5039], [0.6637, 1.3256, -0.7768]]
    layer = run(conv(k, padding=1), (1, 5, 5))
    assert layer.exact is False and "collide" in layer.reason
    assert layer.total == pytest.approx(-25.00539917029791, abs=TOL)  # n_out·log|c11|
    # the square map's true log|det| is 4.2186...: far from the paper's value, hence the flag
    A = (
        torch.nn.functional.conv2d(
            torch.eye(25, dtype=torch.float64).reshape(25, 1, 5, 5),
            torch.tensor(k, dtype=torch.float64)[None, None],
            padding=1,
        )
        .reshape(25, 25)
        .T
    )
    assert float(torch.linalg.slogdet(A).logabsdet) == pytest.approx(4.218647955949818, abs=TOL)
