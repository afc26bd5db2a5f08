"""Walk an eager ``nn.Module``: one forward pass on the ``meta`` device.

The model never sees real data: a meta skeleton (parameters replaced by meta tensors, no weight
copied) runs on one input of shape ``(1, *input_size)``. Module hooks record which conv/dense
modules run, in which order, with which shapes; an op recorder on the same clock catches
weights that a parent module uses functionally (e.g. ``F.linear(x, self.qkv.weight)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import BudgetError, OptionError, TraceError, one_line
from ..load.skeleton import meta_skeleton
from .classify import custom_forward, eager_kind, skip_reason, stored_weight_note
from .dispatch import Clock, OpRecorder
from .fused import is_conv1d, split
from .sites import ConvGeometry, DenseGeometry, LayerSite, SkippedModule, Walk, conv_geometry

CPU_BUDGET = 256 << 20  # the CPU fallback's activations (bytes), unless --max-gpu-mem says otherwise
ACTIVATIONS_ALIVE = 4  # the largest activation times this: its input, itself, a temporary, a residual
FUNCTIONAL_NOTE = "weight used functionally by its parent's forward (module not called)"


@dataclass
class _Call:
    order: int
    inputs: list[tuple[int, ...]]
    output: tuple[int, ...] | None = None
    count: int = 1
    varied: bool = False


class _Hooks:
    def __init__(self, clock: Clock):
        self.clock = clock
        self.calls: dict[str, _Call] = {}

    def pre(self, name: str):
        def hook(module, args, kwargs):
            shapes = [tuple(a.shape) for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
            rec = self.calls.get(name)
            if rec is None:
                self.calls[name] = _Call(self.clock.tick(), shapes)
            else:
                rec.count += 1
                rec.varied |= shapes != rec.inputs

        return hook

    def post(self, name: str):
        def hook(module, args, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            rec = self.calls[name]
            if rec.output is None and isinstance(out, torch.Tensor):
                rec.output = tuple(out.shape)

        return hook


def _input_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _check_lazy(model: nn.Module) -> None:
    lazy = [  # the lazy modules that still have uninitialised parameters
        n or "(model)"
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.lazy.LazyModuleMixin) and cast(Any, m).has_uninitialized_params()
    ]
    if lazy:
        raise OptionError(
            f"model has uninitialised lazy modules ({', '.join(lazy[:3])}): run one forward pass before saving it"
        )


def _key(name: str, param: str = "weight") -> str:
    return f"{name}.{param}" if name else param


def _blocked(module: nn.Module, kind: str) -> str | None:
    """None if the module's weight can be analysed, else why not."""
    if kind == "attention":
        return None
    if parametrize.is_parametrized(module, "weight"):
        return "weight is parametrized (weight/spectral norm): the stored tensors are not the weight; not supported"
    if module._parameters.get("weight") is None:
        return "no stored 'weight' parameter (e.g. legacy weight_norm's weight_g/weight_v): not supported"
    return None


def trace_eager(
    model: nn.Module,
    input_size: tuple[int, ...] | None,
    rebuild: Callable[[], nn.Module] | None = None,
    input_dtype: torch.dtype | None = None,
    extra_inputs: tuple[str, ...] = (),
    max_mem: int = CPU_BUDGET,
) -> Walk:
    """Sites of ``model`` in forward execution order (``input_size=None``: nothing runs, all untraced).

    The forward pass runs on a meta skeleton. A model the meta device cannot run (data-dependent
    code: ``nonzero``, ``.item()``, NMS in detection heads) runs once on the CPU at batch 1
    instead, when ``rebuild`` can provide it as a real module with its weights; the walk says so.
    Only for that: an error the meta pass proves (a shape mismatch) is the answer, and the CPU pass
    runs only when its activations, estimated from the meta pass and the input, fit ``max_mem``."""
    _check_lazy(model)
    skel = meta_skeleton(model)
    modules = dict(skel.named_modules())
    kinds = {n: k for n, m in modules.items() if (k := eager_kind(m)) is not None}
    children = {f"{n}.out_proj" if n else "out_proj" for n, k in kinds.items() if k == "attention"}
    blocked = {n: r for n, k in kinds.items() if (r := _blocked(modules[n], k))}
    analysed = [n for n in kinds if n not in blocked and n not in children]
    clock = Clock()
    hooks = _Hooks(clock)
    ops = OpRecorder({id(p): n for n, p in skel.named_parameters()}, clock)
    mode, notes = "trace", cast(tuple[str, ...], ())
    config = getattr(model, "config", None)  # a transformers model's config (layouts of fused projections)
    if input_size is not None:
        try:
            _run(skel, modules, analysed, hooks, ops, input_size, input_dtype, extra_inputs)
        except _ForwardFailed as meta:
            if rebuild is None or not _data_dependent(meta.exc):
                raise TraceError(_advice(meta.exc, input_size, cpu=None)) from meta.exc
            _check_cpu_budget(hooks, input_size, input_dtype or _input_dtype(skel), max_mem, meta.exc)
            real = rebuild()
            clock = Clock()
            hooks = _Hooks(clock)
            ops = OpRecorder({id(p): n for n, p in real.named_parameters()}, clock)
            try:
                _run(real, dict(real.named_modules()), analysed, hooks, ops, input_size, input_dtype, extra_inputs)
            except _ForwardFailed as cpu:
                raise TraceError(_advice(meta.exc, input_size, cpu=cpu.exc)) from cpu.exc
            mode = "trace-cpu"
            notes = (
                f"the meta device cannot run this model ({_cause(meta.exc)}): order and geometry come from one "
                "forward pass on the CPU at batch 1",
            )
    placed: list[tuple[int, list[LayerSite]]] = []
    untraced: list[LayerSite] = []
    for name in analysed:
        m, kind, call = modules[name], kinds[name], hooks.calls.get(name)
        if kind == "attention":
            sites = _attention_sites(name, m, call)
        else:
            site = _site(name, m, kind, call, ops.calls.get(_key(name)))
            parent = modules.get(name.rpartition(".")[0]) if "." in name else skel
            sites = split(name, m, parent, config, site) if kind == "linear" else [site]
        order = call.order if call else ops.calls.get(_key(name), {}).get("order")
        (placed.append((order, sites)) if order is not None else untraced.extend(sites))
    ordered = [s for _, group in sorted(placed, key=lambda t: t[0]) for s in group] + untraced
    skipped = _skipped(modules, kinds, blocked, children)
    return Walk(tuple(ordered), tuple(skipped), mode, tuple(input_size) if input_size else None, notes)


def _check_cpu_budget(
    hooks: _Hooks, input_size: tuple[int, ...], dtype: torch.dtype, max_mem: int, meta: BaseException
) -> None:
    """BudgetError unless the CPU pass's activations fit ``max_mem``: a few times the largest tensor
    the meta pass saw (module inputs and outputs up to where it stopped) or the input itself."""
    shapes = [(1, *input_size)]
    for call in hooks.calls.values():
        shapes.extend(call.inputs)
        if call.output is not None:
            shapes.append(call.output)
    item = dtype.itemsize if dtype.is_floating_point else 8
    need = ACTIVATIONS_ALIVE * max(prod(s) for s in shapes) * max(item, 4)
    if need > max_mem:
        raise BudgetError(
            f"the meta device cannot run this model ({_cause(meta)}) and one forward pass on the CPU at input size "
            f"{'x'.join(map(str, input_size))} needs about {_mib(need)} of activations, more than --max-gpu-mem "
            f"{_mib(max_mem)}: pass a smaller --input-size, raise --max-gpu-mem, or pass --no-trace"
        )


def _mib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{max(1, round(n / (1 << 20)))} MiB"


class _ForwardFailed(Exception):
    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


_DATA_DEPENDENT = (
    "data-dependent",
    "data dependent",
    "nonzero",
    "_local_scalar_dense",
    "item()",
    "meta tensor",
    "register_meta",
    "Cannot copy out of meta",
    "NotImplementedError",
    "'Meta' backend",
)


def _data_dependent(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return isinstance(exc, NotImplementedError) or any(k in text for k in _DATA_DEPENDENT)


def _cause(exc: BaseException) -> str:
    text = str(exc)
    for op in ("nonzero", "_local_scalar_dense", "item", "masked_select", "unique", "nms"):
        if op in text:
            return f"data-dependent op {op}"
    return f"{type(exc).__name__}: {one_line(exc, 80)}"


def _advice(meta: BaseException, input_size: tuple[int, ...], cpu: BaseException | None) -> str:
    size = "x".join(map(str, input_size))
    if cpu is not None:
        return (
            f"forward pass failed at input size {size} on the meta device ({_cause(meta)}) and on the CPU "
            f"({type(cpu).__name__}: {one_line(cpu, 140)}); pass --input-size matching the model, or --no-trace "
            "to analyse without geometry"
        )
    if _data_dependent(meta):
        return (
            f"the model's forward pass uses code the meta device cannot run ({_cause(meta)}) and no real copy of "
            "it is available to run on the CPU; analyse it from a torchvision:/timm:/sample: spec or with --arch, "
            "or pass --no-trace to analyse without geometry"
        )
    return (
        f"forward pass on the meta device failed at input size {size} ({type(meta).__name__}: {one_line(meta, 160)}); "
        "pass --input-size matching the model, or --no-trace to analyse without geometry"
    )


def _run(
    model, modules, analysed, hooks: _Hooks, ops: OpRecorder, input_size, input_dtype=None, extra_inputs=()
) -> None:
    handles = []
    for name in analysed:
        handles.append(modules[name].register_forward_pre_hook(hooks.pre(name), with_kwargs=True))
        handles.append(modules[name].register_forward_hook(hooks.post(name)))
    training = {m: m.training for m in modules.values()}
    device = next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
    try:
        model.eval()
        if input_dtype is not None and not input_dtype.is_floating_point:  # token ids: id 0 everywhere
            x = torch.zeros((1, *input_size), device=device, dtype=input_dtype)
        elif device.type == "meta":
            x = torch.empty((1, *input_size), device="meta", dtype=input_dtype or _input_dtype(model))
        else:  # a real forward: a fixed, reproducible input
            x = torch.randn((1, *input_size), generator=torch.Generator().manual_seed(0)).to(
                device, _input_dtype(model)
            )
        with torch.no_grad(), ops:
            model(x, **{name: x for name in extra_inputs})
    except Exception as exc:  # noqa: BLE001 - the user's model code can raise anything
        raise _ForwardFailed(exc) from exc
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.train(flag)


def _site(name: str, m: nn.Module, kind: str, call: _Call | None, op: dict | None) -> LayerSite:
    notes: list[str] = []
    geometry: ConvGeometry | DenseGeometry | None = None
    conv = cast(nn.modules.conv._ConvNd, m)  # read only for conv kinds
    if call is not None:
        if call.varied:
            notes.append(f"called {call.count} times with different input shapes: geometry of the first call")
        elif call.count > 1:
            notes.append(f"called {call.count} times: analysed once")
        if kind == "linear":
            geometry = DenseGeometry(prod(call.inputs[0][:-1]) if call.inputs else 1)
        elif call.inputs and call.output is not None:
            geometry, extra = conv_geometry(
                kernel=tuple(conv.kernel_size),
                stride=tuple(conv.stride),
                dilation=tuple(conv.dilation),
                padding=conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
                padding_mode=conv.padding_mode,
                transposed=conv.transposed,
                in_shape=call.inputs[0],
                out_shape=call.output,
                groups=conv.groups,
            )
            notes.extend(extra)
    elif op is not None:  # not called as a module, but its weight was used by an op
        notes.append(FUNCTIONAL_NOTE)
        if kind == "linear":
            geometry = DenseGeometry(prod(op["input"][:-1]))
        elif "output" in op:
            geometry, extra = conv_geometry(
                kernel=tuple(conv.kernel_size),
                stride=op["stride"],
                dilation=op["dilation"],
                padding=op["padding"],
                padding_mode="zeros",
                transposed=op["transposed"],
                in_shape=op["input"],
                out_shape=op["output"],
                groups=op["groups"],
            )
            notes.extend(extra)
    cls = custom_forward(m)
    if cls:
        notes.append(stored_weight_note(cls))
    traced = call is not None or op is not None
    count = call.count if call else (op["count"] if op else 0)
    shape = tuple(cast(torch.Tensor, m.weight).shape)
    transposed = is_conv1d(m)
    if transposed:
        notes.append("transformers Conv1D: weight stored (in, out); the map is its transpose")
        shape = (shape[1], shape[0])
    return LayerSite(
        name or type(m).__name__.lower(),
        type(m).__name__,
        kind,
        _key(name),
        shape,
        geometry,
        traced,
        count,
        notes=tuple(notes),
        custom_forward=cls,
        transposed=transposed,
    )


def _attention_sites(name: str, m: nn.MultiheadAttention, call: _Call | None) -> list[LayerSite]:
    """MultiheadAttention: q, k, v projections (packed or separate) and out_proj, in that order."""
    shapes = call.inputs if call else []
    q_n = prod(shapes[0][:-1]) if shapes else None
    kv_n = prod(shapes[1][:-1]) if len(shapes) > 1 else q_n
    e, count = m.embed_dim, call.count if call else 0
    prefix = f"{name}." if name else ""
    sites = []
    for i, part in enumerate("qkv"):
        n = q_n if part == "q" else kv_n
        geo = DenseGeometry(n) if n is not None else None
        if m._qkv_same_embed_dim:
            key, rows, shape = _key(name, "in_proj_weight"), (i * e, (i + 1) * e), (e, e)
        else:
            key, rows, shape = _key(name, f"{part}_proj_weight"), None, tuple(getattr(m, f"{part}_proj_weight").shape)
        sites.append(
            LayerSite(
                f"{prefix}{part}_proj",
                "MultiheadAttention",
                f"attention_{part}",
                key,
                shape,
                geo,
                call is not None,
                count,
                rows,
            )
        )
    out = m.out_proj
    sites.append(
        LayerSite(
            f"{prefix}out_proj",
            type(out).__name__,
            "linear",
            _key(f"{prefix}out_proj"),
            tuple(out.weight.shape),
            DenseGeometry(q_n) if q_n is not None else None,
            call is not None,
            count,
            notes=("applied inside MultiheadAttention's forward",),
        )
    )
    return sites


def _skipped(
    modules: dict[str, nn.Module], kinds: dict[str, str], blocked: dict[str, str], children: set[str]
) -> list[SkippedModule]:
    out = []
    for name, m in modules.items():
        own = [p for p in m._parameters.values() if p is not None]
        if not own or name in children:
            continue
        n = sum(p.numel() for p in own)
        if name in blocked:
            out.append(SkippedModule(name or "(model)", type(m).__name__, blocked[name], n))
        elif name not in kinds:
            out.append(SkippedModule(name or "(model)", type(m).__name__, skip_reason(type(m).__name__), n))
    return out
