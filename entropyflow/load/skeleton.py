"""Meta skeletons: the structure of a module with every parameter and buffer on ``meta``.

Used by the loaders (a builder that needs real values while it initialises is built on the CPU and
converted) and by the walker (the forward pass that finds the layers runs on a skeleton).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def meta_skeleton(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers live on ``meta`` (no data copied).

    Returns ``model`` itself when all its tensors are already on ``meta``.
    """
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device.type == "meta" for t in tensors):
        return model
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    for (
        m
    ) in model.modules():  # computed tensors held as attributes (legacy weight_norm's .weight) cannot be deep-copied
        for v in vars(m).values():
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = torch.empty_like(v, device="meta")
    return copy.deepcopy(model, memo)
