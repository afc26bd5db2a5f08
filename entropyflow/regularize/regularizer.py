"""``EntropyRegularizer``: the compound loss's entropy terms for a live model, from a λ config.

    reg = EntropyRegularizer.from_config(model, "lambda.yaml")
    loss = criterion(model(x), y) + reg()

It holds no weight copies: parameters are looked up by name on the model at every call (so
``model.to(device)`` and optimiser steps are always seen), and it registers no parameters or
buffers of its own. Names resolve through ``DataParallel``/``DistributedDataParallel``
(``module.``) and ``torch.compile`` (``_orig_mod.``) wrappers, in the model and in the config.

A configured weight that an analysis takes out of a larger parameter (one expert's matrix of
transformers' fused expert tensors, ``….experts.N.gate_proj.weight``; a CondConv expert kernel,
``….experts.N.weight``) is that slice of the live parameter, so its gradient reaches only the slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..config import LambdaConfig, LayerLambda, fingerprint, load_config
from ..errors import ConfigError
from ..load.state_dict import clean_key
from ..lossform import dense_inverse_inertness
from ..walk.effective import WeightView, weight_views
from ..walk.sites import map_shape
from ..walk.trace import trace_eager
from ..warn import warn
from . import terms


class EntropyRegularizer(nn.Module):
    """Σ over the configured layers of eq. 21/23 (form 'log') or eq. 24/25 (form 'inverse').

    Calling it returns a scalar tensor (float32, float64 for a float64 model) on the weights'
    device, differentiable with respect to the configured weights only."""

    _model: nn.Module  # the regularised model: looked up, never registered (no duplicate parameters)

    def __init__(self, model: nn.Module, config: LambdaConfig, prefix: str | None = None):
        super().__init__()
        object.__setattr__(self, "_model", model)  # not a submodule: no duplicate parameters
        self.config = config
        self._views = weight_views(model)  # slices of parameters (fused experts, CondConv kernels) by key
        params = {n: tuple(p.shape) for n, p in model.named_parameters()}
        params.update({k: v.shape for k, v in self._views.items() if k not in params})
        clean = {clean_key(n)[0]: n for n in params}
        self.prefix = _key_prefix(config, params, clean) if prefix is None else prefix
        self._paths = tuple(_resolve(layer, params, clean, self.prefix) for layer in config.layers)
        self._filter_lams: dict[str, torch.Tensor] = {}
        self._check_fingerprint(model)
        self._check_inert()

    @classmethod
    def from_config(
        cls, model: nn.Module, config: LambdaConfig | str | Path | Mapping[str, Any], prefix: str | None = None
    ) -> EntropyRegularizer:
        """``config``: a :class:`LambdaConfig`, a YAML/JSON file written by ``entropyflow recommend``, or its dict.

        ``prefix`` relates the config's weight keys to the model's parameter names: ``"model."``
        means the model calls ``features.0.weight`` ``model.features.0.weight`` (a LightningModule
        holding the network as ``self.model``); ``"-model."`` means the config's keys carry a
        ``model.`` the model lacks. None (default) finds the one prefix that makes every configured
        layer resolve, if the names do not match as they are (``self.prefix`` tells which)."""
        cfg = config if isinstance(config, LambdaConfig) else load_config(config)
        return cls(model, cfg, prefix)

    def forward(self) -> torch.Tensor:
        return total(self.terms())

    def terms(self) -> dict[str, torch.Tensor]:
        """Per-layer terms (already multiplied by λ), in config order, differentiable: their sum is
        ``reg()`` (:func:`total`), so one call gives both the loss term and what to log."""
        return self._values()

    def breakdown(self) -> dict[str, float]:
        """Per-layer terms (already multiplied by λ), in config order, as floats for logging."""
        with torch.no_grad():
            return {name: float(v) for name, v in self._values().items()}

    def extra_repr(self) -> str:
        c = self.config
        prefix = f", prefix={self.prefix!r}" if self.prefix else ""
        return (
            f"form={c.form}, layers={len(c.layers)}, strategy={c.strategy.name}, channel_rule={c.channel_rule}{prefix}"
        )

    # -- internals ------------------------------------------------------------------------------
    def _values(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        out = {}
        for layer, path in zip(cfg.layers, self._paths, strict=True):
            w = self._weight(path)
            dtype = torch.promote_types(w.dtype, torch.float32)
            if layer.is_conv:
                lam = self._lam(layer, w)
                v = (
                    terms.conv_log_term(w, lam, cfg.channel_rule)
                    if cfg.form == "log"
                    else terms.conv_inverse_term(w, lam, cfg.epsilon, cfg.channel_rule)
                )
            else:
                sel = (layer.row_period, layer.transposed)
                v = (
                    terms.dense_log_term(w, layer.lam, layer.rows, sel)
                    if cfg.form == "log"
                    else terms.dense_inverse_term(w, layer.lam, cfg.epsilon, layer.rows, sel)
                )
            out[layer.name] = v.to(dtype)
        return out

    def _weight(self, path: str) -> torch.Tensor:
        """The configured weight at ``path``: a parameter, or a slice of one (a differentiable view)."""
        view: WeightView | None = self._views.get(path)
        if view is None:
            return self._model.get_parameter(path)
        return view.apply(self._model.get_parameter(view.param))

    def _lam(self, layer: LayerLambda, w: torch.Tensor) -> float | torch.Tensor:
        if layer.filter_lambdas is None:
            return layer.lam
        cached = self._filter_lams.get(layer.name)
        if cached is None or cached.device != w.device:
            cached = self._filter_lams[layer.name] = torch.tensor(
                layer.filter_lambdas, dtype=torch.float64, device=w.device
            )
        return cached

    def _check_fingerprint(self, model: nn.Module) -> None:
        if not self.config.fingerprint:
            return
        fp, n = model_fingerprint(model, self.prefix)
        if fp != self.config.fingerprint:
            warn(
                f"the model's layers (fingerprint {fp}, {n} weights) differ from those the config was made for "
                f"({self.config.fingerprint}, {self.config.fingerprint_layers} weights, {self.config.model}): the "
                "configured layers exist and have the right shapes, but check it is the same architecture",
                stacklevel=4,
            )

    def _check_inert(self) -> None:
        if self.config.form != "inverse":
            return
        for layer, path in zip(self.config.layers, self._paths, strict=True):
            if not layer.is_conv:
                with torch.no_grad():
                    w = self._weight(path)
                    ld = float(terms.dense_logabsdet(w, layer.rows, (layer.row_period, layer.transposed)))
                why = dense_inverse_inertness(ld, self.config.epsilon)
                if why:
                    warn(f"layer {layer.name}: 1/(|det W|+ε) is inert ({why}); use form: log", stacklevel=4)


def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of :meth:`EntropyRegularizer.terms` (what calling the regularizer returns)."""
    values = list(terms.values())
    return values[0] if len(values) == 1 else torch.stack(values).sum()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel/DistributedDataParallel and an EMA/SWA ``AveragedModel``
    (``.module``), and torch.compile (``._orig_mod``)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel, AveragedModel)):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner
        else:
            return model


def model_fingerprint(model: nn.Module, prefix: str = "") -> tuple[str, int]:
    """The fingerprint an analysis of ``model`` records: its analysable layers' (weight key, shape),
    found by the same walker (no forward pass, nothing copied but structure). ``prefix`` as in
    :meth:`EntropyRegularizer.from_config`: keys are mapped back to the config's naming."""
    walk = trace_eager(unwrap(model), None)
    entries = []
    for site in walk.sites:
        key = site.weight_key
        if prefix.startswith("-"):
            key = prefix[1:] + key
        elif prefix:
            if not key.startswith(prefix):
                continue  # outside the configured submodule (a LightningModule's other parts)
            key = key[len(prefix) :]
        entries.append((key, site.weight_shape))
    return fingerprint(entries)


def _apply_prefix(key: str, prefix: str) -> str | None:
    if prefix.startswith("-"):
        strip = prefix[1:]
        return key[len(strip) :] if key.startswith(strip) else None
    return prefix + key


Shapes = dict[str, tuple[int, ...]]  # the model's parameter names (and weight views' keys) → shapes


def _lookup(key: str, params: Shapes, clean: dict[str, str]) -> str | None:
    return key if key in params else clean.get(clean_key(key)[0])


def _key_prefix(config: LambdaConfig, params: Shapes, clean: dict[str, str]) -> str:
    """The one prefix (added, or stripped with a leading '-') that resolves every configured key:
    '' when they match as they are. Candidates come from the names themselves (a Lightning
    checkpoint's ``model.``, a wrapper's ``net.``). Several that all resolve (an EMA copy, a student
    and a teacher) raise ConfigError naming them; a failing search keeps '' (the per-layer error
    then names the first missing key)."""
    keys = [clean_key(layer.weight_key)[0] for layer in config.layers]
    if all(_lookup(k, params, clean) for k in keys):
        return ""
    names = set(clean)
    by_suffix: dict[str, set[str]] = {}  # 'features.0.weight' → {'model.'} for 'model.features.0.weight'
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts)):
            by_suffix.setdefault(".".join(parts[i:]), set()).add(".".join(parts[:i]) + ".")
    candidates: set[str] | None = None
    for k in keys:
        here = set(by_suffix.get(k, ()))  # the model has more in front
        parts = k.split(".")
        here |= {"-" + ".".join(parts[:i]) + "." for i in range(1, len(parts)) if ".".join(parts[i:]) in names}
        candidates = here if candidates is None else candidates & here
        if not candidates:
            return ""
    found = sorted(p for p in candidates or () if all(_lookup(_apply_prefix(k, p) or "", params, clean) for k in keys))
    if len(found) > 1:  # an EMA copy, a student and a teacher: each holds the layers; which is meant?
        shown = ", ".join(f"prefix={p!r}" for p in found[:8]) + (", …" if len(found) > 8 else "")
        raise ConfigError(
            f"the config's layers are all found in the model under {len(found)} prefixes "
            f"(an EMA copy, or a student and a teacher?): pass one of {shown}"
        )
    return found[0] if found else ""


def _resolve(layer: LayerLambda, params: Shapes, clean: dict[str, str], prefix: str = "") -> str:
    """The model's own parameter path for a configured layer; ConfigError if missing or mis-shaped."""
    key = _apply_prefix(clean_key(layer.weight_key)[0], prefix) if prefix else layer.weight_key
    path = _lookup(key, params, clean) if key else None
    if path is None:
        hint = f" with prefix '{prefix}'" if prefix else ""
        raise ConfigError(
            f"layer {layer.name}: the model has no parameter '{layer.weight_key}'{hint} "
            "(is this the architecture the config was made for? A LightningModule or wrapper: pass prefix=)"
        )
    shape = params[path]
    ndim = len(shape)
    if layer.rows is not None or layer.transposed:
        out = shape[1] if layer.transposed and ndim == 2 else shape[0]
        if ndim != 2 or (layer.rows is not None and (layer.rows[1] > out or layer.rows[0] >= layer.rows[1])):
            raise ConfigError(
                f"layer {layer.name}: rows {list(layer.rows or ())} do not fit '{layer.weight_key}' of shape "
                f"{list(shape)}"
            )
        try:
            shape = map_shape(shape, layer.rows, layer.row_period, layer.transposed)
        except ValueError as exc:
            raise ConfigError(f"layer {layer.name}: {exc} of '{layer.weight_key}'") from exc
    if shape != tuple(layer.weight_shape):
        raise ConfigError(
            f"layer {layer.name}: '{layer.weight_key}' has shape {list(shape)}, the config says "
            f"{list(layer.weight_shape)}"
        )
    if layer.is_conv and ndim < 3:
        raise ConfigError(
            f"layer {layer.name}: kind {layer.kind} needs a conv weight, '{layer.weight_key}' has shape {list(shape)}"
        )
    if not layer.is_conv and ndim != 2:
        raise ConfigError(
            f"layer {layer.name}: kind {layer.kind} needs a 2-D dense weight, '{layer.weight_key}' has shape "
            f"{list(shape)}"
        )
    return path
