"""The fixed vocabularies of entropyflow, each defined once (as a ``Literal`` type and the tuple
of its values) and checked by one function. Options dataclasses check their fields when they are
built, so a value is validated once, wherever it comes from (a flag, a config, a saved analysis).
"""

from __future__ import annotations

import re
from typing import Literal, cast, get_args

from .errors import OptionError
from .text import printable
from .words import option

Estimator = Literal["paper", "spectral"]
ChannelRule = Literal["first", "mean"]
LossForm = Literal["log", "inverse"]
PlotFormat = Literal["png", "svg", "pdf"]
LabelMode = Literal["index", "names"]
Mode = Literal["min", "max"]  # which way a training metric is better

ESTIMATORS: tuple[str, ...] = get_args(Estimator)
CHANNEL_RULES: tuple[str, ...] = get_args(ChannelRule)
LOSS_FORMS: tuple[str, ...] = get_args(LossForm)
PLOT_FORMATS: tuple[str, ...] = get_args(PlotFormat)
LABEL_MODES: tuple[str, ...] = get_args(LabelMode)
MODES: tuple[str, ...] = get_args(Mode)

# layer kinds: conv1d … conv3d, conv_transpose1d … 3d, linear, and MultiheadAttention's q/k/v maps
LAYER_KIND = re.compile(r"conv(_transpose)?[123]d|linear|attention_[qkv]")
LAYER_KINDS_TEXT = "conv1d/2d/3d, conv_transpose1d/2d/3d, linear or attention_q/k/v"


def _alternatives(allowed: tuple[str, ...]) -> str:
    return allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"


def check(value: object, allowed: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``allowed``, else OptionError ``unknown <what> '<value>' (use …)``."""
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(f"unknown {what} '{printable(value, 40)}' (use {_alternatives(allowed)})")
    return value


def estimator(value: object) -> Estimator:
    return cast(Estimator, check(value, ESTIMATORS, "estimator"))


def channel_rule(value: object) -> ChannelRule:
    return cast(ChannelRule, check(value, CHANNEL_RULES, "channel rule"))


def loss_form(value: object) -> LossForm:
    return cast(LossForm, check(value, LOSS_FORMS, "loss form"))


def plot_format(value: object) -> PlotFormat:
    return cast(PlotFormat, check(value, PLOT_FORMATS, option("plot-format")))


def label_mode(value: object) -> LabelMode:
    return cast(LabelMode, check(value, LABEL_MODES, option("labels")))


def mode(value: object) -> Mode:
    return cast(Mode, check(value, MODES, option("mode")))


def is_layer_kind(value: object) -> bool:
    return isinstance(value, str) and LAYER_KIND.fullmatch(value) is not None


def is_conv_kind(kind: str) -> bool:
    return kind.startswith("conv")
