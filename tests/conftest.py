import os

os.environ.setdefault("COLUMNS", "200")

import pytest
import torch
from typer.testing import CliRunner

from entropyflow.cli import app


class CliResult:
    def __init__(self, r):
        self.exit_code, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr
        self.exception = r.exception


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str) -> CliResult:
        return CliResult(runner.invoke(app, [str(a) for a in args], prog_name="entropyflow"))

    return run


@pytest.fixture
def nonzero_weights():
    """Fill every parameter of a module with values of magnitude 0.3..1.7 and random sign."""

    def fill(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                mag = 0.3 + 1.4 * torch.rand(p.shape, generator=g)
                sign = torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0)
                p.copy_(mag * sign)
        return module

    return fill


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread (several oversubscribe a shared CPU by 10-20x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
