import numpy as np
import pytest
import torch

from entropyflow.estimate.paper import conv_totals_exact, dense_logabsdet, tap_counts


def test_batched_logdets_equal_numpy_per_matrix():
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(n, n, generator=g, dtype=torch.float64) for n in (3, 7, 7, 64, 3, 64)]
    got = dense_logabsdet(mats, max_batch_bytes=64 * 64 * 8)  # forces several chunks
    want = [np.linalg.slogdet(m.numpy())[1] for m in mats]
    assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_singular_is_minus_inf_and_large_layers_do_not_underflow():
    sing = torch.ones(4, 4, dtype=torch.float64)
    big = torch.randn(1024, 1024, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.01
    out = dense_logabsdet([sing, big])
    assert out[0] == -np.inf
    assert torch.det(big) == 0 and out[1] == pytest.approx(np.linalg.slogdet(big.numpy())[1], rel=1e-12)


def test_float32_inputs_are_computed_in_float64():
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(2))
    assert dense_logabsdet([w])[0].item() == pytest.approx(np.linalg.slogdet(w.double().numpy())[1], rel=1e-13)


def test_zero_count_taps_are_never_read():
    taps = torch.tensor([[[0.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)  # tap (0,0) is zero...
    counts = tap_counts([(0, 2), (1, 1)])  # ...but never a pivot: no -inf, no NaN
    assert conv_totals_exact(taps, counts).item() == pytest.approx(2 * np.log(3) + 2 * np.log(4))
