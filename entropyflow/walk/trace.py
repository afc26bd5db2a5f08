"""Walk an eager ``nn.Module``: one forward pass on the ``meta`` device.

The model never sees real data: a meta skeleton (parameters replaced by meta tensors, no weight
copied) runs on one input of shape ``(1, *input_size)``. Module hooks record which conv/dense
modules run, in which order, with which shapes; an op recorder on the same clock catches
weights that a parent module uses functionally (e.g. ``F.linear(x, self.qkv.weight)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import BudgetError, OptionError, TraceError, one_line
from ..load.skeleton import meta_skeleton
from ..spec import ExampleInput
from ..words import arg, option, say
from .classify import custom_forward, eager_kind, skip_reason, stored_weight_note
from .dispatch import Clock, OpRecorder, buffer_kernels, buffer_reason
from .effective import condconv_key, condconv_note, is_condconv, parametrization_owner, weight_transform
from .fused import expert_sites, is_conv1d, moe_kind, split
from .sites import ConvGeometry, DenseGeometry, LayerSite, SkippedModule, Walk, conv_geometry

CPU_BUDGET = 256 << 20  # the CPU fallback's activations (bytes), unless max_mem (--max-gpu-mem) says otherwise
ACTIVATIONS_ALIVE = 4  # the largest activation times this: its input, itself, a temporary, a residual
FUNCTIONAL_NOTE = "weight used functionally by its parent's forward (module not called)"
MoreInputs = tuple[ExampleInput | None, ...]  # positional arguments after the main input; None: the main input again


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
    if kind in ("experts", "condconv"):
        return None
    if kind == "attention" or weight_transform(module):  # weight norm, parametrizations: the effective weight
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
    more_inputs: MoreInputs = (),
) -> Walk:
    """Sites of ``model`` in forward execution order (``input_size=None``: nothing runs, all untraced).

    The forward pass runs on a meta skeleton. A model the meta device cannot run (data-dependent
    code: ``nonzero``, ``.item()``, NMS in detection heads) runs once on the CPU at batch 1
    instead, when ``rebuild`` can provide it as a real module with its weights; the walk says so.
    Only for that: an error the meta pass proves (a shape mismatch) is the answer, and the CPU pass
    runs only when its activations, estimated from the meta pass and the input, fit ``max_mem``.
    ``more_inputs``: the forward's positional arguments after the main input, in order."""
    _check_lazy(model)
    skel = meta_skeleton(model)
    modules = dict(skel.named_modules())
    kinds = {n: k for n, m in modules.items() if (k := _kind(m)) is not None}
    children = {f"{n}.out_proj" if n else "out_proj" for n, k in kinds.items() if k == "attention"}
    blocked = {n: r for n, k in kinds.items() if (r := _blocked(modules[n], k))}
    analysed = [n for n in kinds if n not in blocked and n not in children]
    clock = Clock()
    hooks = _Hooks(clock)
    ops = _recorder(skel, clock)
    mode, notes = "trace", cast(tuple[str, ...], ())
    config = getattr(model, "config", None)  # a transformers model's config (layouts of fused projections)
    if input_size is not None:
        check_arguments(model, 1 + len(more_inputs), extra_inputs)
        if any(e is not None for e in more_inputs):  # explicit arguments (not the example again): say which
            notes = (inputs_note(model, input_size, input_dtype, more_inputs),)
        run = (input_size, input_dtype, extra_inputs, more_inputs)
        try:
            _run(skel, modules, analysed, hooks, ops, *run)
        except _ForwardFailed as meta:
            if rebuild is None or not _data_dependent(meta.exc):
                raise TraceError(_advice(meta.exc, input_size, cpu=None)) from meta.exc
            _check_cpu_budget(hooks, input_size, input_dtype or _input_dtype(skel), max_mem, meta.exc)
            real = rebuild()
            clock = Clock()
            hooks = _Hooks(clock)
            ops = _recorder(real, clock)
            try:
                _run(real, dict(real.named_modules()), analysed, hooks, ops, *run)
            except _ForwardFailed as cpu:
                raise TraceError(_advice(meta.exc, input_size, cpu=cpu.exc)) from cpu.exc
            mode = "trace-cpu"
            notes += (
                f"the meta device cannot run this model ({_cause(meta.exc)}): order and geometry come from one "
                "forward pass on the CPU at batch 1",
            )
    placed: list[tuple[int, list[LayerSite]]] = []
    untraced: list[LayerSite] = []
    for name in analysed:
        m, kind, call = modules[name], kinds[name], hooks.calls.get(name)
        if kind == "attention":
            sites = _attention_sites(name, m, call)
        elif kind == "experts":  # transformers' fused experts: one dense site per expert map
            sites = expert_sites(name, m, call.inputs if call else None, call.count if call else 0)
        elif kind == "condconv":  # one conv site per expert kernel
            sites = _condconv_sites(name, m, call)
        else:
            site = _site(name, m, kind, call, ops.calls.get(_key(name)))
            parent = modules.get(name.rpartition(".")[0]) if "." in name else skel
            sites = split(name, m, parent, config, site)  # fused projections: split, or a note
        order = call.order if call else ops.calls.get(_key(name), {}).get("order")
        (placed.append((order, sites)) if order is not None else untraced.extend(sites))
    ordered = [s for _, group in sorted(placed, key=lambda t: t[0]) for s in group] + untraced
    skipped = _skipped(modules, kinds, blocked, children, ops.calls)
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
            f"{'x'.join(map(str, input_size))} needs about {_mib(need)} of activations, more than "
            f"{option('max-gpu-mem')} {_mib(max_mem)}: pass a smaller {arg('input-size')}, raise "
            f"{arg('max-gpu-mem')}, or pass {arg('no-trace')}"
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


def _no_forward(exc: BaseException) -> bool:
    """``nn.Module``'s own error for a module that defines no ``forward`` (a LightningModule often does not)."""
    return isinstance(exc, NotImplementedError) and 'missing the required "forward" function' in str(exc)


def _advice(meta: BaseException, input_size: tuple[int, ...], cpu: BaseException | None) -> str:
    size = "x".join(map(str, input_size))
    if _no_forward(meta):
        return (
            f"the model defines no forward() ({one_line(meta, 120)}), so there is nothing to trace: analyse the "
            f"module that holds its layers (often an attribute such as .model or .net), or pass {arg('no-trace')} "
            "to analyse without geometry"
        )
    if cpu is not None:
        return (
            f"forward pass failed at input size {size} on the meta device ({_cause(meta)}) and on the CPU "
            f"({type(cpu).__name__}: {one_line(cpu, 140)}); pass {arg('input-size')} matching the model, or "
            f"{arg('no-trace')} to analyse without geometry"
        )
    if _data_dependent(meta):
        return (
            f"the model's forward pass uses code the meta device cannot run ({_cause(meta)}) and no real copy of "
            f"it is available to run on the CPU; analyse it from a torchvision:/timm:/sample: spec or with "
            f"{arg('arch')}, or pass {arg('no-trace')} to analyse without geometry"
        )
    return (
        f"forward pass on the meta device failed at input size {size} ({type(meta).__name__}: {one_line(meta, 160)}); "
        f"pass {arg('input-size')} matching the model, or {arg('no-trace')} to analyse without geometry"
    )


Parameter = tuple[str, bool, str]  # a positional forward parameter: name, required, its type as written


def forward_parameters(model) -> tuple[list[Parameter], bool] | None:
    """The positional parameters of ``model.forward`` (eager or TorchScript, ``self`` excluded) and
    whether it takes ``*args``; None when the signature cannot be read."""
    schema = getattr(getattr(model, "forward", None), "schema", None)
    if schema is not None:  # TorchScript: the compiled signature, with its types
        args = list(schema.arguments)[1:]
        return [(a.name, not a.has_default_value(), str(a.type)) for a in args if not a.kwarg_only], False
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [
        (
            p.name,
            p.default is inspect.Parameter.empty,
            "" if p.annotation is inspect.Parameter.empty else getattr(p.annotation, "__name__", str(p.annotation)),
        )
        for p in signature.parameters.values()
        if p.kind in positional
    ]
    return params, any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())


def arguments_help() -> str:
    """How to give the forward's arguments, in the caller's words."""
    return say(
        cli="give --input once per forward argument, in order: a tensor as DTYPE:1xSHAPE, a number as int:N or float:X",
        library="give input= one value per forward argument, in order (entropyflow.spec.parse_inputs reads them: "
        "a tensor as DTYPE:1xSHAPE, a number as int:N or float:X)",
    )


def check_arguments(model, given: int, keywords: tuple[str, ...] = ()) -> None:
    """OptionError naming the forward's missing arguments (or saying there are too many) before
    anything runs; ``keywords`` are passed by name (``decoder_input_ids``)."""
    read = forward_parameters(model)
    if read is None:
        return
    params, variadic = read
    owner = getattr(model, "original_name", None) or type(model).__name__
    missing = [
        f"{n}: {t}" if t else n
        for i, (n, required, t) in enumerate(params)
        if i >= given and required and n not in keywords
    ]
    names = ", ".join(n for n, _r, _t in params)
    if missing:
        needed = given + len(missing)
        raise OptionError(
            f"{owner}.forward({names}) needs {needed} inputs, {given} given: missing {', '.join(missing)} "
            f"({arguments_help()})"
        )
    if not variadic and given > len(params):
        raise OptionError(
            f"{owner}.forward({names}) takes {len(params)} input{'s' if len(params) != 1 else ''}, {given} given "
            f"({arguments_help()})"
        )


def inputs_note(model, input_size, input_dtype, more_inputs: MoreInputs) -> str:
    """What the forward was called with, when it took more than the one example input."""
    read = forward_parameters(model)
    names = [n for n, _r, _t in read[0]] if read else []
    main = ("" if input_dtype is None or input_dtype.is_floating_point else f"{str(input_dtype)[6:]}:") + "x".join(
        map(str, (1, *input_size))
    )
    parts = [main] + [main if e is None else str(e) for e in more_inputs]
    named = [f"{names[i]}={p}" if i < len(names) else p for i, p in enumerate(parts)]
    return f"forward called with {len(parts)} inputs: {', '.join(named)}"


def example_args(more_inputs: MoreInputs, x: torch.Tensor, real_dtype: torch.dtype | None = None) -> list:
    """The positional arguments after the main input ``x``, on its device: ``None`` is ``x`` itself,
    a number is passed as is, a tensor is zeros (integer dtypes), empty (meta) or reproducible noise."""
    out: list = []
    for i, e in enumerate(more_inputs):
        if e is None:
            out.append(x)
        elif e.shape is None:
            out.append(e.value)
        else:
            dtype = getattr(torch, e.dtype) if e.dtype else (real_dtype or x.dtype)
            shape = (1, *e.shape)
            if not dtype.is_floating_point:
                out.append(torch.zeros(shape, device=x.device, dtype=dtype))
            elif x.device.type == "meta":
                out.append(torch.empty(shape, device="meta", dtype=dtype))
            else:
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(1 + i))
                out.append(noise.to(x.device, dtype))
    return out


def _run(
    model,
    modules,
    analysed,
    hooks: _Hooks,
    ops: OpRecorder,
    input_size,
    input_dtype=None,
    extra_inputs=(),
    more_inputs: MoreInputs = (),
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
        more = example_args(more_inputs, x)
        with torch.no_grad(), ops:
            model(x, *more, **{name: x for name in extra_inputs})
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
    if transform := weight_transform(m, name):
        notes.append(transform)
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


def _kind(module: nn.Module) -> str | None:
    """The walk's kind of a module: a conv/dense kind, ``attention``, ``experts`` (transformers'
    fused experts), ``condconv`` (a conditionally parameterised conv), or None (not analysed)."""
    return eager_kind(module) or moe_kind(module) or ("condconv" if is_condconv(module) else None)


def _recorder(model: nn.Module, clock: Clock) -> OpRecorder:
    """The op recorder of a forward pass of ``model``: it follows every parameter, and floating
    buffers of 2 or more dimensions (a fixed kernel such as an STFT basis, listed as skipped when a
    convolution or matrix product uses it as its weight)."""
    buffers = {id(b): n for n, b in model.named_buffers() if b.is_floating_point() and b.dim() >= 2}
    params = {id(p): n for n, p in model.named_parameters()}
    return OpRecorder({**buffers, **params}, clock, buffers=frozenset(n for i, n in buffers.items() if i not in params))


def _condconv_sites(name: str, m: nn.Module, call: _Call | None) -> list[LayerSite]:
    """One conv site per expert kernel of a CondConv (``NAME.experts.I``), with the geometry of the
    module's traced input and output (the padding inferred from them when it is dynamic)."""
    attrs = cast(Any, m)
    shape = tuple(int(n) for n in attrs.weight_shape)
    nd = len(shape) - 2
    notes: list[str] = []
    geometry: ConvGeometry | None = None
    if call is not None:
        if call.varied:
            notes.append(f"called {call.count} times with different input shapes: geometry of the first call")
        elif call.count > 1:
            notes.append(f"called {call.count} times: analysed once")
        if call.inputs and call.output is not None:

            def tup(v) -> tuple[int, ...]:
                return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * nd

            padding = attrs.padding if isinstance(attrs.padding, str) else tup(attrs.padding)
            geometry, extra = conv_geometry(
                kernel=shape[2:],
                stride=tup(attrs.stride),
                dilation=tup(attrs.dilation),
                padding=padding,
                padding_mode="zeros",
                transposed=False,
                in_shape=call.inputs[0],
                out_shape=call.output,
                groups=int(attrs.groups),
            )
            notes.extend(extra)
    stored = _key(name)
    return [
        LayerSite(
            f"{name}.experts.{e}" if name else f"experts.{e}",
            type(m).__name__,
            f"conv{nd}d",
            condconv_key(name, e),
            shape,
            geometry,
            call is not None,
            call.count if call else 0,
            notes=(condconv_note(m, stored, e), *notes),
        )
        for e in range(int(attrs.num_experts))
    ]


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
    modules: dict[str, nn.Module],
    kinds: dict[str, str],
    blocked: dict[str, str],
    children: set[str],
    used: dict[str, dict] | None = None,
) -> list[SkippedModule]:
    """Every parameterised module that is not analysed, with its reason; and every module holding
    a fixed kernel in a buffer that a convolution or matrix product used (``used``: the op
    recorder's calls by tensor name)."""
    out = []
    for name, m in modules.items():
        own = [p for p in m._parameters.values() if p is not None]
        if not own:
            if used and (kernels := buffer_kernels(name, m, used)):
                n = sum(b.numel() for _, b in kernels)
                out.append(
                    SkippedModule(name or "(model)", type(m).__name__, buffer_reason([k for k, _ in kernels]), n)
                )
            continue
        if name in children or parametrization_owner(name) in kinds:  # analysed with its owner
            continue
        n = sum(p.numel() for p in own)
        if name in blocked:
            out.append(SkippedModule(name or "(model)", type(m).__name__, blocked[name], n))
        elif name not in kinds:
            out.append(SkippedModule(name or "(model)", type(m).__name__, skip_reason(type(m).__name__), n))
    return out
