"""Devices and memory budgets: the same numbers on every device and under every budget."""

import numpy as np
import pytest
import torch

import entropyflow
from entropyflow.errors import OptionError
from entropyflow.samples import samples_dir
from entropyflow.spec import parse_bytes

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has no GPU)")


@pytest.mark.parametrize(
    "text,value", [("4GiB", 4 * 2**30), ("512MB", 512 * 10**6), ("2G", 2 * 2**30), ("1.5k", 1536), (None, None)]
)
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["lots", "-1GiB", "0", "4 parsecs"])
def test_parse_bytes_rejects(text):
    with pytest.raises(OptionError, match="bad memory budget"):
        parse_bytes(text)


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(3)
    return torch.nn.Sequential(*[torch.nn.Linear(48, 48) for _ in range(5)], torch.nn.Linear(48, 10))


def test_tiny_budget_gives_the_same_dense_values(mlp):
    """A budget of one 48² float64 matrix forces one slogdet per chunk: same values as one batch."""
    big = entropyflow.analyze(mlp, input_size=(48,), hash_files=False)
    tiny = entropyflow.analyze(mlp, input_size=(48,), hash_files=False, max_mem=48 * 48 * 8)
    assert [x.logdet for x in tiny.layers] == [x.logdet for x in big.layers]
    for layer, lin in zip(big.layers, mlp, strict=True):
        m = min(lin.weight.shape)
        assert layer.logdet == pytest.approx(
            torch.linalg.slogdet(lin.weight[:m, :m].double()).logabsdet.item(), abs=1e-12
        )


@cuda
@pytest.mark.gpu
def test_cuda_matches_cpu():
    cpu = entropyflow.analyze(str(samples_dir() / "digits_resnet.pt"), device="cpu")
    gpu = entropyflow.analyze(str(samples_dir() / "digits_resnet.pt"), device="cuda")
    assert gpu.device.startswith("cuda")
    for a, b in zip(cpu.layers, gpu.layers, strict=True):
        np.testing.assert_array_equal(a.per_position, b.per_position)  # log|c11| of the same float64 value
        if a.totals is not None:
            np.testing.assert_allclose(a.totals, b.totals, rtol=1e-12, atol=1e-9)
        if a.logdet is not None:
            assert a.logdet == pytest.approx(b.logdet, abs=1e-9)
