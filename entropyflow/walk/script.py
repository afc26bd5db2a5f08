"""Walk a TorchScript module: TorchScript cannot take module hooks, so one forward pass runs
under a dispatch mode that executes every op on ``meta`` tensors and records the convolutions
and matrix products that use the module's parameters (identified by tensor identity)."""

from __future__ import annotations

from math import prod
from typing import cast

import torch

from ..errors import TraceError, one_line
from .classify import skip_reason, type_name_kind
from .dispatch import Clock, OpRecorder
from .sites import ConvGeometry, DenseGeometry, LayerSite, SkippedModule, Walk, conv_geometry


def trace_torchscript(script, input_size: tuple[int, ...] | None) -> Walk:
    """Sites of a TorchScript module (scripted or ``torch.jit.trace``d) in execution order.

    The forward pass runs on ``meta`` copies of every operand; an archive the meta device cannot
    run (data-dependent code, ops without meta kernels) runs once on the CPU at batch 1 instead
    (loading it already required the trust flag), and the walk says so."""
    named = list(script.named_parameters())
    params = {id(p): n for n, p in named}
    modules = dict(script.named_modules())
    rec = OpRecorder(params, Clock(), to_meta=True)
    mode, notes = "torchscript", cast(tuple[str, ...], ())
    if input_size is not None:
        try:
            with rec, torch.no_grad():
                script(torch.empty((1, *input_size), device="meta"))
        except Exception as meta_exc:  # noqa: BLE001 - TorchScript raises torch.jit.Error and friends
            rec = OpRecorder(params, Clock(), to_meta=False)
            try:
                with rec, torch.no_grad():
                    script(torch.zeros((1, *input_size), dtype=_dtype(named)))
            except Exception as exc:  # noqa: BLE001 - the archive's own code can raise anything
                size = "x".join(map(str, input_size))
                raise TraceError(
                    f"TorchScript forward failed at input size {size} on the meta device ({one_line(meta_exc, 120)}) "
                    "and on "
                    f"the CPU ({one_line(exc, 120)}); pass --input-size matching the model, or --no-trace"
                ) from exc
            mode = "torchscript-cpu"
            notes = (
                f"the meta device could not run this archive ({type(meta_exc).__name__}: {one_line(meta_exc, 100)}): "
                "order and geometry come from one forward pass on the CPU at batch 1",
            )
    traced, untraced, skipped = [], [], []
    for name, m in modules.items():
        own = [(pn, p) for pn, p in m.named_parameters(recurse=False)]
        if not own:
            continue
        type_name = m.original_name
        kind = type_name_kind(type_name)
        key = f"{name}.weight" if name else "weight"
        if kind is None or kind == "attention" or key not in dict(named):
            reason = (
                "MultiheadAttention inside TorchScript: not supported (trace it eagerly)"
                if kind == "attention"
                else skip_reason(type_name)
            )
            skipped.append(SkippedModule(name or "(model)", type_name, reason, sum(p.numel() for _, p in own)))
            continue
        call = rec.calls.get(key)
        site = _site(name, m, type_name, kind, key, dict(named)[key], call)
        (traced.append((call["order"], site)) if call else untraced.append(site))
    sites = tuple(s for _, s in sorted(traced, key=lambda t: t[0])) + tuple(untraced)
    return Walk(sites, tuple(skipped), mode, tuple(input_size) if input_size else None, notes)


def _dtype(named) -> torch.dtype:
    return next((p.dtype for _, p in named if p.is_floating_point()), torch.float32)


def _site(name, m, type_name, kind, key, weight, call) -> LayerSite:
    notes: list[str] = []
    geometry: ConvGeometry | DenseGeometry | None = None
    if call and call["count"] > 1:
        notes.append(f"called {call['count']} times: analysed once")
    if call and kind == "linear":
        geometry = DenseGeometry(prod(call["input"][:-1]))
    elif call:
        pad_attr = getattr(m, "padding", call["padding"])
        mode = getattr(m, "padding_mode", "zeros")
        in_shape = call["input"]
        if mode != "zeros" and not isinstance(pad_attr, str):  # the module padded before the conv call
            nd = len(weight.shape) - 2
            in_shape = in_shape[:-nd] + tuple(n - 2 * p for n, p in zip(in_shape[-nd:], pad_attr, strict=True))
        padding = pad_attr if isinstance(pad_attr, str) or mode != "zeros" else call["padding"]
        geometry, extra = conv_geometry(
            kernel=tuple(weight.shape[2:]),
            stride=call["stride"],
            dilation=call["dilation"],
            padding=padding,
            padding_mode=mode,
            transposed=call["transposed"],
            in_shape=in_shape,
            out_shape=call["output"],
            groups=call["groups"],
        )
        notes.extend(extra)
    return LayerSite(
        name or type_name.lower(),
        type_name,
        kind,
        key,
        tuple(weight.shape),
        geometry,
        call is not None,
        call["count"] if call else 0,
        notes=tuple(notes),
    )
