"""The paper's estimator (SPEC §2–3) as pure tensor functions, computed in float64.

Conv filters (``weight[f, 0]`` = the first input channel of the filter's group):
  * per output position: ``log|c11|`` with ``c11 = weight[f, 0, 0, ..., 0]``;
  * total, when the pivots are distinct: ``Σ_taps counts ⊙ log|weight[f, 0]|`` (exact);
  * total otherwise: ``n_out · log|c11|`` (the paper's value, flagged not exact by the caller).
Dense layers: ``log|det W[:m, :m]|`` with ``m = min(N, d)`` via float64 ``slogdet``.

``log|0| = -inf`` is kept: no function here ever turns it into NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch

FLOAT = torch.float64


def log_abs(x: torch.Tensor) -> torch.Tensor:
    """``log|x|`` in float64; exact zeros give ``-inf``."""
    return torch.log(torch.abs(x.to(FLOAT)))


def conv_per_position_mean(first_taps: torch.Tensor) -> torch.Tensor:
    """``channel_rule='mean'``: mean over input channels of ``log|weight[f, c, 0, ..., 0]|``.

    ``first_taps`` has shape ``(F, C)``. A zero tap gives ``-inf`` (never NaN: |w| is finite).
    """
    return log_abs(first_taps).mean(dim=1)


def tap_counts(axis_counts: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """Outer product of per-axis pivot counts: ``counts[a, b, ...] = n_a · m_b · ...``."""
    out = torch.ones((), dtype=FLOAT, device=device)
    for c in axis_counts:
        out = out[..., None] * torch.as_tensor(c, dtype=FLOAT, device=device)
    return out


def conv_totals_exact(taps0: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Exact totals ``Σ counts ⊙ log|taps0|`` per filter; taps with zero count are never read."""
    if taps0.shape[1:] != counts.shape:
        raise ValueError(f"taps {tuple(taps0.shape[1:])} and counts {tuple(counts.shape)} differ")
    logs = log_abs(taps0)
    contrib = torch.where(counts > 0, logs * counts, torch.zeros((), dtype=FLOAT, device=logs.device))
    return contrib.reshape(contrib.shape[0], -1).sum(dim=1)


def conv_totals_paper(per_position: torch.Tensor, n_out: int) -> torch.Tensor:
    """The paper's total ``n_out · log|c11|`` (used when the closed form is not exact)."""
    return per_position * float(n_out)


def dense_logabsdet(squares: Sequence[torch.Tensor], max_batch_bytes: int = 1 << 30) -> torch.Tensor:
    """``log|det|`` of each square matrix with float64 ``slogdet``; equal sizes are batched.

    Returns a float64 tensor (on the device of the inputs), ``-inf`` for singular matrices.
    """
    if not squares:
        return torch.empty(0, dtype=FLOAT)
    device = squares[0].device
    out = torch.empty(len(squares), dtype=FLOAT, device=device)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, sq in enumerate(squares):
        if sq.ndim != 2 or sq.shape[0] != sq.shape[1]:
            raise ValueError(f"dense square part must be square, got {tuple(sq.shape)}")
        by_size.setdefault(tuple(sq.shape), []).append(i)
    for shape, idx in by_size.items():
        per = max(1, max_batch_bytes // max(1, prod(shape) * 8))
        for lo in range(0, len(idx), per):
            chunk = idx[lo : lo + per]
            batch = torch.stack([squares[i].to(device=device, dtype=FLOAT) for i in chunk])
            out[torch.as_tensor(chunk, device=device)] = torch.linalg.slogdet(batch).logabsdet
    return out
