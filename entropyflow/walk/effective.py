"""Effective weights of conv subclasses whose ``forward`` transforms the stored weight.

timm's ``StdConv2d``/``ScaledStdConv2d`` (BiT, NFNet) standardise the weight inside ``forward``;
the map the layer applies is the standardised tensor, not the stored one. For each such conv,
the module alone is materialised on the CPU from the checkpoint's tensors and called once on a
tiny zero input; the weight it passes to ``aten.convolution`` is recorded and analysed instead.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..load.source import TensorSource
from .sites import LayerSite


class _CaptureConvWeights(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.weights: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.weights.append(args[1].detach().clone())
        return func(*args, **(kwargs or {}))


def _materialise(module: nn.Module, name: str, tensors: TensorSource) -> nn.Module:
    if all(t.device.type != "meta" for t in list(module.parameters()) + list(module.buffers())):
        return module
    real = copy.deepcopy(module).to_empty(device="cpu")
    prefix = f"{name}." if name else ""
    state = {k: tensors.get(prefix + k) for k in real.state_dict() if prefix + k in tensors}
    real.load_state_dict(state, strict=True)
    return real


def effective_weights(
    skeleton: nn.Module, sites: tuple[LayerSite, ...], tensors: TensorSource
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(weights, notes)``: weight_key → effective weight, and weight_key → replacement note."""
    modules = dict(skeleton.named_modules())
    weights: dict[str, torch.Tensor] = {}
    notes: dict[str, str] = {}
    for site in sites:
        cls = site.custom_forward
        if cls is None or not site.is_conv or site.kind.startswith("conv_transpose"):
            continue
        name = site.weight_key[: -len(".weight")] if site.weight_key.endswith(".weight") else ""
        module = modules.get(name)
        if not isinstance(module, nn.modules.conv._ConvNd):
            continue
        try:
            real = _materialise(module, name, tensors)
            size = [d * (k - 1) + 1 for k, d in zip(module.kernel_size, module.dilation, strict=True)]
            x = torch.zeros((1, module.in_channels, *size), dtype=module.weight.dtype)
            cap = _CaptureConvWeights()
            with torch.no_grad(), cap:
                real(x)
        except Exception as exc:  # noqa: BLE001 - the module's own forward can raise anything  # a custom forward can fail on a lone zero input: keep the stored weight
            notes[site.weight_key] = (
                f"custom forward ({cls}): could not capture its effective weight ({type(exc).__name__}); values use "
                "the stored weight"
            )
            continue
        if len(cap.weights) == 1 and tuple(cap.weights[0].shape) == tuple(site.weight_shape):
            weights[site.weight_key] = cap.weights[0]
            notes[site.weight_key] = (
                f"custom forward ({cls}): analysed the effective weight it passes to the convolution"
            )
    return weights, notes
