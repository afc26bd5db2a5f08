"""Explicitly built matrices and completions, independent of entropyflow's pivot code.

A layer's matrix is built by applying the module (in float64, bias zeroed) to every basis
image. The completion follows the paper/SPEC: for each output row of a filter, the pivot is the
first nonzero column inside the first input channel of the filter's group; identity rows go on
every other input coordinate (conv); transposed convs are completed as tall maps with identity
columns on every non-pivot output coordinate.
"""

from __future__ import annotations

import copy
from math import prod

import torch
from torch import nn


def layer_matrix(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(matrix of shape (out_numel, in_numel), output shape without batch)."""
    m = copy.deepcopy(module).double()
    if getattr(m, "bias", None) is not None:
        with torch.no_grad():
            m.bias.zero_()
    d = prod(in_shape)
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *in_shape)
    with torch.no_grad():
        out = m(basis)
    return out.reshape(d, -1).T.contiguous(), tuple(out.shape[1:])


def _first_nonzero(row: torch.Tensor) -> int | None:
    nz = torch.nonzero(row != 0)
    return int(nz[0]) if len(nz) else None


def conv_filter_completion(conv: nn.Module, in_shape, f: int):
    """(pivots distinct?, log|det| of the completed matrix or None) for filter ``f`` of a Conv."""
    A, out_shape = layer_matrix(conv, in_shape)
    c_in, s_in = in_shape[0], prod(in_shape[1:])
    c_out, s_out = out_shape[0], prod(out_shape[1:])
    g = f // (c_out // conv.groups)
    c0 = g * (c_in // conv.groups)
    rows = A[f * s_out : (f + 1) * s_out]
    pivots = [_first_nonzero(r[c0 * s_in : (c0 + 1) * s_in]) for r in rows]
    if None in pivots or len(set(pivots)) != len(pivots):
        return False, None
    M = torch.eye(c_in * s_in, dtype=torch.float64)
    for r, p in zip(rows, pivots, strict=True):
        M[c0 * s_in + p] = r
    return True, float(torch.linalg.slogdet(M).logabsdet)


def transposed_filter_completion(conv: nn.Module, in_shape, c: int):
    """Same for "filter" ``c`` (input channel c, the stamp weight[c]) of a ConvTranspose."""
    B, out_shape = layer_matrix(conv, in_shape)
    c_in, s_in = in_shape[0], prod(in_shape[1:])
    c_out, s_out = out_shape[0], prod(out_shape[1:])
    g = c // (c_in // conv.groups)
    o0 = g * (c_out // conv.groups)
    cols = B[:, c * s_in : (c + 1) * s_in]  # tall: (c_out*s_out, s_in)
    pivots = [_first_nonzero(cols[o0 * s_out : (o0 + 1) * s_out, j]) for j in range(s_in)]
    if None in pivots or len(set(pivots)) != len(pivots):
        return False, None
    n = cols.shape[0]
    pivot_rows = {o0 * s_out + p for p in pivots}
    extra = [torch.nn.functional.one_hot(torch.tensor(r), n).double() for r in range(n) if r not in pivot_rows]
    M = torch.cat([cols, torch.stack(extra, 1)], 1) if extra else cols
    return True, float(torch.linalg.slogdet(M).logabsdet)
