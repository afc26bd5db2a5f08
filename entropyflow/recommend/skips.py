"""Which convs feed a residual addition or a skip concatenation (the paper's 'pre-skip' placement).

From the model's torch.fx graph: for every ``add`` of two tensors and every ``cat``, each input is
followed backwards through pass-through nodes only (norms, activations, dropout, stochastic depth,
identity, and scaling by a constant or a parameter such as ConvNeXt's layer scale; pooling is NOT
pass-through) to the conv module that produced it. A model fx cannot trace raises
:class:`GraphError` with fx's reason (in words that name no option: the reason may be saved in a
config's rationale; :func:`.placement.recommend` adds the advice in the caller's words).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from ..errors import EntropyflowError


class GraphError(EntropyflowError):
    """The model's graph cannot be traced with torch.fx."""


PASS_MODULES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
PASS_FUNCTIONS = {
    torch.relu,
    torch.nn.functional.relu,
    torch.nn.functional.relu6,
    torch.nn.functional.gelu,
    torch.nn.functional.silu,
    torch.nn.functional.leaky_relu,
    torch.nn.functional.elu,
    torch.sigmoid,
    torch.tanh,
    torch.nn.functional.dropout,
    torch.nn.functional.batch_norm,
    torch.nn.functional.layer_norm,
    torch.nn.functional.group_norm,
    torch.nn.functional.hardswish,
    torch.nn.functional.mish,
}
PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
PASS_MODULE_NAMES = {
    "StochasticDepth",
    "DropPath",
    "DropBlock2d",
    "LayerScale",
    "LayerScale2d",
}  # torchvision.ops, timm
PASS_FUNCTION_NAMES = {"stochastic_depth", "drop_path", "drop_block_2d", "drop_block_fast_2d"}  # fx-wrapped functions
SCALE_FUNCTIONS = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div}  # x * layer_scale, x / const
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
CAT_FUNCTIONS = {torch.cat, torch.concat}
CONV_TYPES = (nn.modules.conv._ConvNd,)


@dataclass(frozen=True)
class SkipGraph:
    """Convs feeding residual additions and concatenations, and how many of each the graph has."""

    add_feeders: tuple[str, ...]
    cat_feeders: tuple[str, ...]
    n_adds: int
    n_cats: int


def skip_graph(model: nn.Module) -> SkipGraph:
    """Trace ``model`` with torch.fx (no arithmetic: symbolic) and find the convs feeding skips."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; all mean 'cannot trace'
        raise GraphError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:160]})"
        ) from exc
    modules = dict(gm.named_modules())
    adds, cats, n_adds, n_cats = [], [], 0, 0
    for node in gm.graph.nodes:
        if _is_add(node):
            n_adds += 1
            for arg in node.args[:2]:
                adds += _feeder(arg, modules)
        elif node.op == "call_function" and node.target in CAT_FUNCTIONS:
            n_cats += 1
            seq = node.args[0] if node.args else node.kwargs.get("tensors", ())
            for arg in seq:
                cats += _feeder(arg, modules)
    return SkipGraph(tuple(dict.fromkeys(adds)), tuple(dict.fromkeys(cats)), n_adds, n_cats)


def _is_add(node) -> bool:
    if (
        node.op == "call_function"
        and node.target in ADD_FUNCTIONS
        or node.op == "call_method"
        and node.target in ("add", "add_")
    ):
        pass
    else:
        return False
    return sum(isinstance(a, torch.fx.Node) for a in node.args[:2]) == 2  # tensor + tensor, not x + 1


def _feeder(arg, modules: dict) -> list[str]:
    node = arg
    while isinstance(node, torch.fx.Node):
        if node.op == "call_module":
            mod = modules.get(node.target)
            if isinstance(mod, CONV_TYPES):
                return [str(node.target)]
            if not isinstance(mod, PASS_MODULES) and type(mod).__name__ not in PASS_MODULE_NAMES:
                return []
        elif node.op == "call_function" and (
            node.target in PASS_FUNCTIONS or getattr(node.target, "__name__", "") in PASS_FUNCTION_NAMES
        ):
            pass
        elif node.op == "call_function" and node.target in SCALE_FUNCTIONS:
            tensors = [a for a in node.args[:2] if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
            if len(tensors) != 1 or (node.target in (operator.truediv, torch.div) and node.args[0] is not tensors[0]):
                return []  # a product of two activations (attention, gating) is not a scaling
            node = tensors[0]
            continue
        elif node.op == "call_method" and node.target in PASS_METHODS:
            pass
        else:
            return []
        node = node.args[0] if node.args else None
    return []
