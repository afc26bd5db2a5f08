"""The paper's entropy loss terms (eqs. 21, 23, 24, 25) as pure, differentiable functions.

Conventions match the analysis (SPEC §2-3): a conv filter's ``c11`` is the first tap of the first
input channel of its group (``weight[f, 0, 0, ..., 0]``, any conv kind: the analysis reads
``weight[:, 0]`` for transposed convs too); a dense layer's square part is ``W[:m, :m]`` with
``m = min(N, d)``. ``lam`` is a scalar or one value per filter (the paper's λ^{ℓd}).

Gradients (tested against autograd): log form ``-λ/c11`` on ``c11`` and zero elsewhere; inverse
form ``-λ·sign(c)/(|c|+ε)²``; dense log form ``-λ·W_sq^{-T}`` on the square part.
Arithmetic is float64 whatever the weight dtype or autocast state, and so is the result (the
regularizer casts it to the loss dtype).
"""

from __future__ import annotations

import torch

from ..walk.sites import dense_map

Selection = tuple[int | None, bool] | None  # (row period, transposed) of a fused / Conv1D weight

Lam = float | torch.Tensor


def first_taps(weight: torch.Tensor, rule: str = "first") -> torch.Tensor:
    """``c11`` per filter, shape ``(F,)`` (rule 'first'); rule 'mean': ``weight[f, c, 0, ..., 0]``, shape ``(F, C)``."""
    nd = weight.ndim - 2
    if rule == "first":
        return weight[(slice(None), 0) + (0,) * nd]
    if rule == "mean":
        return weight[(slice(None), slice(None)) + (0,) * nd]
    raise ValueError(f"unknown channel rule {rule!r} (use first or mean)")


def _lam(lam: Lam, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(lam, dtype=torch.float64, device=like.device)


def conv_log_term(weight: torch.Tensor, lam: Lam, rule: str = "first") -> torch.Tensor:
    """Eq. 23: ``-Σ_f λ_f log|c11_f|`` (rule 'mean': ``log|c11|`` replaced by the mean over input channels)."""
    with torch.autocast(weight.device.type, enabled=False):
        taps = first_taps(weight, rule).double()
        logs = torch.log(torch.abs(taps))
        if rule == "mean":
            logs = logs.mean(dim=1)
        return -(_lam(lam, logs) * logs).sum()


def conv_inverse_term(weight: torch.Tensor, lam: Lam, eps: float, rule: str = "first") -> torch.Tensor:
    """Eq. 25: ``Σ_f λ_f / (|c11_f| + ε)`` (rule 'mean': the mean over input channels of ``1/(|w_f,c| + ε)``)."""
    with torch.autocast(weight.device.type, enabled=False):
        taps = first_taps(weight, rule).double()
        inv = 1.0 / (torch.abs(taps) + eps)
        if rule == "mean":
            inv = inv.mean(dim=1)
        return (_lam(lam, inv) * inv).sum()


def square_part(weight: torch.Tensor, rows: tuple[int, int] | None = None, sel: Selection = None) -> torch.Tensor:
    """``M[:m, :m]`` of the dense map ``M`` (rows selected; transposed for a Conv1D weight)."""
    period, transposed = sel or (None, False)
    w = dense_map(weight, rows, period, transposed)
    m = min(w.shape[0], w.shape[1])
    return w[:m, :m]


def dense_logabsdet(weight: torch.Tensor, rows: tuple[int, int] | None = None, sel: Selection = None) -> torch.Tensor:
    """``log|det W[:m, :m]|`` in float64 (differentiable)."""
    with torch.autocast(weight.device.type, enabled=False):
        logabsdet: torch.Tensor = torch.linalg.slogdet(square_part(weight, rows, sel).double()).logabsdet
        return logabsdet


def dense_log_term(
    weight: torch.Tensor, lam: float, rows: tuple[int, int] | None = None, sel: Selection = None
) -> torch.Tensor:
    """Eq. 21: ``-λ log|det W[:m, :m]|``."""
    return -lam * dense_logabsdet(weight, rows, sel)


def dense_inverse_term(
    weight: torch.Tensor, lam: float, eps: float, rows: tuple[int, int] | None = None, sel: Selection = None
) -> torch.Tensor:
    """Eq. 24: ``λ / (|det W[:m, :m]| + ε)``. Inert (value λ/ε, gradient ~0) once ``|det|`` ≪ ε
    (:func:`entropyflow.lossform.dense_inverse_inertness` says when)."""
    return lam / (torch.exp(dense_logabsdet(weight, rows, sel)) + eps)
