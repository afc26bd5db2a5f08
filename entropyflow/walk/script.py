"""Walk a TorchScript module: TorchScript cannot take module hooks, so one forward pass runs
under a dispatch mode that executes every op on ``meta`` tensors and records the convolutions
and matrix products that use the module's parameters (identified by tensor identity)."""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import cast

import torch

from ..errors import TraceError, one_line
from ..words import arg
from .classify import skip_reason, type_name_kind
from .dispatch import Clock, OpRecorder, buffer_reason
from .effective import parametrization_owner, weight_norm_of
from .sites import ConvGeometry, DenseGeometry, LayerSite, SkippedModule, Walk, conv_geometry
from .trace import MoreInputs, check_arguments, example_args, inputs_note


def trace_torchscript(script, input_size: tuple[int, ...] | None, more_inputs: MoreInputs = ()) -> Walk:
    """Sites of a TorchScript module (scripted or ``torch.jit.trace``d) in execution order.

    The forward pass runs on ``meta`` copies of every operand; an archive the meta device cannot
    run (data-dependent code, ops without meta kernels) runs once on the CPU at batch 1 instead
    (loading it already required the trust flag), and the walk says so."""
    named = list(script.named_parameters())
    params = {id(p): n for n, p in named}
    buffers = {id(b): n for n, b in script.named_buffers() if b.is_floating_point() and b.dim() >= 2}
    params.update({i: n for i, n in buffers.items() if i not in params})  # a conv kernel held as a buffer
    modules = dict(script.named_modules())
    rec = OpRecorder(params, Clock(), to_meta=True)
    mode, notes = "torchscript", cast(tuple[str, ...], ())
    if input_size is not None:
        check_arguments(script, 1 + len(more_inputs))  # names the missing arguments (`sr: int`) before running
        notes = (inputs_note(script, input_size, None, more_inputs),) if any(more_inputs) else ()
        try:
            with rec, torch.no_grad():
                x = torch.empty((1, *input_size), device="meta")
                script(x, *example_args(more_inputs, x))
        except Exception as meta_exc:  # noqa: BLE001 - TorchScript raises torch.jit.Error and friends
            rec = OpRecorder(params, Clock(), to_meta=False)
            try:
                with rec, torch.no_grad():
                    x = torch.zeros((1, *input_size), dtype=_dtype(named))
                    script(x, *example_args(more_inputs, x))
            except Exception as exc:  # noqa: BLE001 - the archive's own code can raise anything
                size = "x".join(map(str, input_size))
                raise TraceError(
                    f"TorchScript forward failed at input size {size} on the meta device ({one_line(meta_exc, 120)}) "
                    "and on "
                    f"the CPU ({one_line(exc, 120)}); pass {arg('input-size')} matching the model, or {arg('no-trace')}"
                ) from exc
            mode = "torchscript-cpu"
            notes += (
                f"the meta device could not run this archive ({type(meta_exc).__name__}: {one_line(meta_exc, 100)}): "
                "order and geometry come from one forward pass on the CPU at batch 1",
            )
    traced, untraced, skipped = [], [], []
    tensors = dict(named)
    shapes = {n: tuple(p.shape) for n, p in named}
    kinds = {name: type_name_kind(_unparametrized(m.original_name)) for name, m in modules.items()}
    for name, m in modules.items():
        own = [(pn, p) for pn, p in m.named_parameters(recurse=False)]
        type_name = m.original_name
        if not own:
            used = [(f"{name}.{bn}" if name else bn) for bn, _ in m.named_buffers(recurse=False)]
            used = [b for b in used if b in rec.calls]
            if used:  # a fixed kernel (an STFT basis) registered as a buffer and used by a conv/matmul
                skipped.append(SkippedModule(name or "(model)", type_name, buffer_reason(used), _numel(m, used)))
            continue
        owner = parametrization_owner(name)
        if owner is not None and kinds.get(owner) is not None and weight_norm_of(owner, shapes) is not None:
            continue  # the weight norm's g and v: analysed with the layer that owns them
        kind = kinds[name]
        key = f"{name}.weight" if name else "weight"
        wn = weight_norm_of(name, shapes) if kind is not None and key not in tensors else None
        if kind is None or kind == "attention" or (key not in tensors and wn is None):
            reason = (
                "MultiheadAttention inside TorchScript: not supported (trace it eagerly)"
                if kind == "attention"
                else _parametrized_reason(name, modules)
                if kind is not None and type_name.startswith("Parametrized")
                else skip_reason(type_name)
                if kind is None
                else f"{type_name} without a stored 'weight' parameter inside TorchScript: not supported"
            )
            skipped.append(SkippedModule(name or "(model)", type_name, reason, sum(p.numel() for _, p in own)))
            continue
        if wn is not None:
            call = rec.calls.get(wn.v_key) or rec.calls.get(wn.g_key)
            site = _site(name, m, type_name, kind, wn.weight_key, tensors[wn.v_key], call)
            site = replace(site, notes=site.notes + (wn.note,))
        else:
            call = rec.calls.get(key)
            site = _site(name, m, type_name, kind, key, tensors[key], call)
        (traced.append((call["order"], site)) if call else untraced.append(site))
    sites = tuple(s for _, s in sorted(traced, key=lambda t: t[0])) + tuple(untraced)
    return Walk(sites, tuple(skipped), mode, tuple(input_size) if input_size else None, notes)


def _unparametrized(type_name: str) -> str:
    """``ParametrizedConv1d`` → ``Conv1d``: the class torch.nn.utils.parametrize derives."""
    return type_name[len("Parametrized") :] if type_name.startswith("Parametrized") else type_name


def _parametrized_reason(name: str, modules: dict) -> str:
    plist = modules.get(f"{name}.parametrizations.weight" if name else "parametrizations.weight")
    kinds = [c.original_name for _, c in plist.named_children()] if plist is not None else []
    return (
        f"weight is parametrized ({', '.join(kinds) or 'unknown'}) inside TorchScript: only weight norm's "
        "effective weight can be computed from the stored tensors; not supported"
    )


def _numel(m, keys: list[str]) -> int:
    own = dict(m.named_buffers(recurse=False))
    return sum(own[k.rpartition(".")[2]].numel() for k in keys)


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
