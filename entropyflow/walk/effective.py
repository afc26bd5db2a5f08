"""Effective weights of conv subclasses whose ``forward`` transforms the stored weight.

timm's ``StdConv2d``/``ScaledStdConv2d`` (BiT, NFNet) standardise the weight inside ``forward``;
the map the layer applies is the standardised tensor, not the stored one. For each such conv,
the module alone is materialised on the CPU from the checkpoint's tensors and called once on a
tiny zero input; the weight it passes to ``aten.convolution`` is recorded and analysed instead.

Weight-normalised layers (legacy ``weight_g``/``weight_v`` and
``torch.nn.utils.parametrizations.weight_norm``'s ``original0``/``original1``) store no weight:
the layer applies ``g · v / ‖v‖``, computed here from the two tensors (any other parametrization
from the live module), and analysed under the layer's ``weight`` key.

Conditionally parameterised convolutions (timm's ``CondConv2d``) store one flattened kernel per
expert as the rows of a 2-D ``weight`` ``(experts, out·in/groups·k…)``; the kernel applied is a
data-dependent mixture of them. Each expert's kernel is analysed as a conv of its own, under the
key ``NAME.experts.I.weight`` (row ``I`` reshaped to the module's ``weight_shape``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import TorchDispatchMode

from ..load.hf import model_expert_parts
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


# ---- weight-normalised and parametrised weights ------------------------------------------------

_WEIGHT_NORM_KEYS = (
    ("weight_g", "weight_v", "weight_norm"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1", "parametrizations.weight_norm"),
)
PARAMETRIZATIONS = ".parametrizations."


@dataclass(frozen=True)
class WeightNorm:
    """A weight stored as a magnitude ``g`` and a direction ``v``: the layer applies
    ``g · v / ‖v‖``, the norm taken over every axis but ``dim`` (over all of ``v`` when ``dim`` is
    None), which is ``torch._weight_norm(v, g, dim)``."""

    weight_key: str
    g_key: str
    v_key: str
    dim: int | None
    form: str  # 'weight_norm' (legacy weight_g/weight_v) or 'parametrizations.weight_norm'
    shape: tuple[int, ...]  # the effective weight's shape (v's)

    @property
    def note(self) -> str:
        over = "over all of v" if self.dim is None else f"over every axis but {self.dim}"
        g, v = self.g_key.rpartition(".")[2], self.v_key.rpartition(".")[2]
        return f"weight-normalised ({self.form}: {g}, {v}): analysed the effective weight g·v/‖v‖ ({over})"


def weight_norm_dim(g_shape: tuple[int, ...], v_shape: tuple[int, ...]) -> tuple[bool, int | None]:
    """``(ok, dim)``: whether ``g`` of ``g_shape`` is the magnitude of a ``v`` of ``v_shape``, and
    the axis the norm keeps (None: the norm over all of ``v``)."""
    if prod(g_shape) == 1:
        return True, None
    if len(g_shape) != len(v_shape):
        return False, None
    kept = [i for i, n in enumerate(g_shape) if n != 1]
    if len(kept) != 1 or g_shape[kept[0]] != v_shape[kept[0]]:
        return False, None
    return True, kept[0]


def weight_norm_of(prefix: str, shapes: Mapping[str, tuple[int, ...]]) -> WeightNorm | None:
    """The weight norm of the module at ``prefix`` from the shapes of its tensors (``shapes``:
    key → shape, keys with the module prefix), or None when it stores none."""
    dot = f"{prefix}." if prefix else ""
    for g_name, v_name, form in _WEIGHT_NORM_KEYS:
        g, v = shapes.get(dot + g_name), shapes.get(dot + v_name)
        if g is None or v is None or len(v) < 2:
            continue
        ok, dim = weight_norm_dim(tuple(g), tuple(v))
        if ok:
            return WeightNorm(dot + "weight", dot + g_name, dot + v_name, dim, form, tuple(v))
    return None


def weight_norm_weight(tensors: TensorSource, wn: WeightNorm) -> torch.Tensor:
    """The effective weight ``g · v / ‖v‖`` as the layer computes it (``torch._weight_norm``, in
    the stored dtype, float32 at least)."""
    v, g = tensors.get(wn.v_key), tensors.get(wn.g_key)
    dtype = torch.promote_types(v.dtype, torch.float32)
    v, g = v.to(dtype), g.to(dtype)
    if wn.dim is None:
        return v * (g.reshape(()) / torch.linalg.vector_norm(v))
    return torch._weight_norm(v, g.reshape([n if i == wn.dim else 1 for i, n in enumerate(v.shape)]), wn.dim)


def parametrization_owner(name: str) -> str | None:
    """The module that owns ``name`` when ``name`` lies inside its ``parametrizations`` container
    (``conv.parametrizations.weight`` → ``conv``), else None."""
    full = f".{name}"
    if PARAMETRIZATIONS not in full:
        return None
    return full.rpartition(PARAMETRIZATIONS)[0][1:]


def weight_transform(module: nn.Module, prefix: str = "") -> str | None:
    """The note of a conv/dense module whose weight is stored transformed (weight norm, legacy or
    parametrised; any other parametrization of ``weight``), or None when it stores its weight."""
    shapes = {f"{prefix}.{k}" if prefix else k: tuple(t.shape) for k, t in module.state_dict().items()}
    wn = weight_norm_of(prefix, shapes)
    if wn is not None:
        return wn.note
    if parametrize.is_parametrized(module, "weight"):
        plist = cast(Any, module).parametrizations["weight"]
        names = ", ".join(type(p).__name__ for p in plist)
        return f"weight is parametrized ({names}): analysed the parametrization's output, the weight the layer applies"
    return None


def derived_weights(
    tensors: TensorSource, sites: tuple[LayerSite, ...], real: Callable[[], nn.Module] | None = None
) -> dict[str, torch.Tensor]:
    """weight_key → effective weight for every site whose weight the checkpoint stores transformed:
    weight norm from its ``g`` and ``v`` tensors; any other parametrization from the real module
    (``real``: the live module holding these weights), whose ``weight`` property computes it."""
    missing = [s for s in sites if s.weight_key not in tensors]
    if not missing:
        return {}
    shapes = tensors.shapes()
    out: dict[str, torch.Tensor] = {}
    module: nn.Module | None = None
    for site in missing:
        key = site.weight_key
        prefix = key[: -len(".weight")] if key.endswith(".weight") else ""
        wn = weight_norm_of(prefix, shapes)
        if wn is not None and wn.weight_key == key:
            out[key] = weight_norm_weight(tensors, wn)
            continue
        if (kernel := _condconv_kernel(tensors, shapes, key, site.weight_shape)) is not None:
            out[key] = kernel
            continue
        if real is None:
            continue
        module = module if module is not None else real()
        try:
            owner = module.get_submodule(prefix)
        except AttributeError:
            continue
        if parametrize.is_parametrized(owner, "weight"):
            with torch.no_grad():
                out[key] = cast(torch.Tensor, owner.weight).detach().clone()
    return out


# ---- conditionally parameterised convolutions (CondConv) ----------------------------------------

_EXPERT_KEY = re.compile(r"(?:(.*)\.)?experts\.(\d+)\.weight")


def is_condconv(module: nn.Module) -> bool:
    """A conditionally parameterised conv (timm's ``CondConv2d``): a 2-D ``weight`` of one flattened
    kernel of ``weight_shape`` per expert (``num_experts`` rows) and conv attributes to apply it."""
    weight = module._parameters.get("weight")
    shape, experts = getattr(module, "weight_shape", None), getattr(module, "num_experts", None)
    return (
        not isinstance(module, nn.modules.conv._ConvNd)
        and weight is not None
        and weight.dim() == 2
        and isinstance(experts, int)
        and isinstance(shape, tuple)
        and len(shape) >= 3
        and all(isinstance(n, int) for n in shape)
        and tuple(weight.shape) == (experts, prod(shape))
        and all(hasattr(module, a) for a in ("stride", "padding", "dilation", "groups"))
    )


def condconv_key(name: str, expert: int) -> str:
    """The key an expert kernel of the CondConv ``name`` is analysed under."""
    return f"{name}.experts.{expert}.weight" if name else f"experts.{expert}.weight"


def condconv_note(module: nn.Module, key: str, expert: int) -> str:
    """What a CondConv expert site is."""
    attrs = cast(Any, module)
    n, shape = int(attrs.num_experts), tuple(attrs.weight_shape)
    return (
        f"expert {expert} of {type(module).__name__} ({n} experts): the kernel applied is a mixture of the experts "
        f"with data-dependent routing weights; this expert analysed as if used alone (row {expert} of {key} "
        f"reshaped to {shape})"
    )


def condconv_kernel(weight: torch.Tensor, expert: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Expert ``expert``'s kernel of a CondConv ``weight`` ``(experts, prod(shape))``: a view
    (differentiable, its gradient reaches that row only)."""
    return weight[expert].reshape(shape)


def _condconv_kernel(
    tensors: TensorSource, shapes: Mapping[str, tuple[int, ...]], key: str, shape: tuple[int, ...]
) -> torch.Tensor | None:
    """The kernel of a CondConv expert site ``key`` from the stored 2-D weight, else None."""
    m = _EXPERT_KEY.fullmatch(key)
    if m is None:
        return None
    stored, expert = (f"{m.group(1)}.weight" if m.group(1) else "weight"), int(m.group(2))
    rows = shapes.get(stored)
    if rows is None or len(rows) != 2 or expert >= rows[0] or rows[1] != prod(shape):
        return None
    return condconv_kernel(tensors.get_slice(stored, (slice(expert, expert + 1),)), 0, shape)


@dataclass(frozen=True)
class WeightView:
    """An analysed weight that is a slice of a stored parameter (a CondConv expert kernel, one
    expert's map of transformers' fused expert tensors): ``key`` is what an analysis calls it,
    ``param`` the parameter it lives in."""

    key: str
    param: str
    shape: tuple[int, ...]
    expert: int
    rows: tuple[int, int, int] | None = None  # start, stop, step of the expert's (transposed) matrix
    transposed: bool = False

    def apply(self, weight: torch.Tensor) -> torch.Tensor:
        """The view of ``weight`` (the parameter ``param``): differentiable, its gradient reaches
        only this expert's slice."""
        if self.rows is None:
            return condconv_kernel(weight, self.expert, self.shape)
        m = weight[self.expert]
        m = m.T if self.transposed else m
        return m[self.rows[0] : self.rows[1] : self.rows[2]]


def weight_views(model: nn.Module) -> dict[str, WeightView]:
    """Every analysed weight of ``model`` that is a slice of a parameter, by the key an analysis
    gives it (names as ``model.named_modules()`` gives them)."""
    out: dict[str, WeightView] = {}
    for name, module in model.named_modules():
        if is_condconv(module):
            attrs = cast(Any, module)
            shape = tuple(int(n) for n in attrs.weight_shape)
            param = f"{name}.weight" if name else "weight"
            for e in range(int(attrs.num_experts)):
                out[condconv_key(name, e)] = WeightView(condconv_key(name, e), param, shape, e)
    for key, p in model_expert_parts(model).items():
        out[key] = WeightView(key, p.fused, p.shape, p.expert, (p.start, p.stop, p.step), p.transposed)
    return out
