"""Seed 000: the entropy of sigmoid activations, in bits, and a loss that applies it (SPEC §7).

``H(z) = (softplus(z) − z·σ(z)) / ln 2`` is the binary entropy of ``σ(z)``; it is evaluated in
the cancellation-free form ``(softplus(−|z|) + |z|·σ(−|z|)) / ln 2`` (both terms positive, no
difference of large numbers). ``dH/dz = −z·σ(z)(1 − σ(z)) / ln 2``; for ``z = (w + G)x + b`` the
gradients w.r.t. ``w`` and ``G`` are equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

LN2 = math.log(2.0)


def sigmoid_entropy_bits(z: torch.Tensor) -> torch.Tensor:
    """Binary entropy (bits) of ``sigmoid(z)``, elementwise, without cancellation for large ``|z|``."""
    a = torch.abs(z)
    return (F.softplus(-a) + a * torch.sigmoid(-a)) / LN2


class SigmoidEntropyLoss(nn.Module):
    """``λ · reduce(H(z))`` over the outputs (pre-sigmoid ``z``) of the named modules of ``model``.

    Forward hooks record each named module's output during the model's own forward pass; call the
    loss after it. ``λ > 0`` penalises entropy (pushes activations to saturate); use ``λ < 0`` to
    reward it. ``reduction``: 'mean' (per element) or 'sum'."""

    def __init__(self, model: nn.Module, modules: Sequence[str], lam: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"unknown reduction {reduction!r} (use mean or sum)")
        self.lam, self.reduction = float(lam), reduction
        self._outputs: dict[str, torch.Tensor] = {}
        found = dict(model.named_modules())
        missing = [m for m in modules if m not in found]
        if missing:
            raise ConfigError(f"modules not found in the model: {', '.join(missing)}")
        self._hooks = [found[m].register_forward_hook(self._recorder(m)) for m in modules]

    def _recorder(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._outputs[name] = output

        return hook

    def forward(self) -> torch.Tensor:
        if not self._outputs:
            raise RuntimeError("no activations recorded: run the model's forward pass before the loss")
        terms = [sigmoid_entropy_bits(z) for z in self._outputs.values()]
        parts = torch.stack([t.mean() if self.reduction == "mean" else t.sum() for t in terms])
        total = parts.mean() if self.reduction == "mean" else parts.sum()
        self._outputs.clear()
        return self.lam * total

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
