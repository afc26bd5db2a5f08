"""Which modules are analysed (conv, transposed conv, dense, attention projections) and why the
others are skipped. Works on eager modules and on TorchScript ``original_name`` strings."""

from __future__ import annotations

import re

from torch import nn

from .fused import is_conv1d

_CONV_NAME = re.compile(r"(?:Lazy)?Conv(Transpose)?([123])d")


def eager_kind(module: nn.Module) -> str | None:
    """``conv2d``, ``conv_transpose2d``, ``linear``, ``attention`` or None (not analysed)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        nd = len(module.kernel_size)
        return f"conv_transpose{nd}d" if module.transposed else f"conv{nd}d"
    if isinstance(module, nn.Linear) or is_conv1d(module):
        return "linear"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    return None


def type_name_kind(type_name: str) -> str | None:
    """The kind for a module type name (TorchScript keeps only the original class name)."""
    m = _CONV_NAME.fullmatch(type_name)
    if m:
        return f"conv_transpose{m.group(2)}d" if m.group(1) else f"conv{m.group(2)}d"
    if type_name in ("Linear", "NonDynamicallyQuantizableLinear", "LazyLinear"):
        return "linear"
    if type_name == "MultiheadAttention":
        return "attention"
    return None


_NN_BASES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
    nn.MultiheadAttention,
)


def custom_forward(module: nn.Module) -> str | None:
    """The class name when a conv/dense subclass overrides ``forward`` (its map may differ from
    the stored weight's, e.g. weight standardisation or dynamic padding), else None."""
    for base in _NN_BASES:
        if isinstance(module, base):
            if type(module).forward is not base.forward:
                return f"{type(module).__module__}.{type(module).__qualname__}"
            return None
    return None


def stored_weight_note(cls: str) -> str:
    """The note of a layer whose class overrides ``forward`` while its stored weight is analysed."""
    return f"custom forward ({cls}): values use the stored weight"


def skip_reason(type_name: str) -> str:
    """A one-line reason for not analysing a parameterised module of this type."""
    if "Norm" in type_name:
        return "normalisation layer: a per-channel affine map, not a conv/dense weight (see docs/method.md)"
    if "Embedding" in type_name:
        return "embedding: a lookup table indexed by ids, not a linear map of its input"
    if re.search(r"(LSTM|GRU|RNN)", type_name):
        return "recurrent layer: not covered by the paper's conv/dense estimator"
    if type_name == "PReLU":
        return "parametric activation: elementwise, not a conv/dense map"
    if type_name == "Bilinear":
        return "bilinear layer: a bilinear form of two inputs, not a linear map of one"
    if "CondConv" in type_name:
        return (
            f"{type_name}: expert kernels mixed by data-dependent routing; each expert is analysed as a conv "
            "when the model is traced as a module (a zoo spec, a state dict with its architecture, a live or pickled "
            "module), not here"
        )
    return f"parameters held directly by {type_name} (tokens, embeddings, scales): not a conv/dense weight"
