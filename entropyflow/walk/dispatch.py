"""Record which parameters each aten op uses during a meta forward pass.

Module hooks miss weights that a parent uses functionally (``F.linear(x, self.qkv.weight)`` in
Swin's attention, MultiheadAttention's projections) and cannot be attached to TorchScript. A
dispatch mode sees every convolution and matrix product with its actual operands, so it
recovers order and geometry for those weights. One :class:`Clock` orders hooks and ops together.
"""

from __future__ import annotations

import itertools
from typing import cast

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten
_MATMULS = {aten.addmm.default: 1, aten.mm.default: 0, aten.matmul.default: 0, aten.bmm.default: 0}
# torch.jit.trace records aten::_convolution (same leading arguments as aten::convolution)
_CONVS = (aten.convolution.default, aten._convolution.default)


class Clock:
    def __init__(self):
        self._c = itertools.count()

    def tick(self) -> int:
        return next(self._c)


def _to_meta(x):
    return x.to("meta") if isinstance(x, torch.Tensor) and x.device.type != "meta" else x


class OpRecorder(TorchDispatchMode):
    """Records, per parameter name, the first op that uses it (conv args or matmul input rows).

    ``buffers``: names in ``params`` that are buffers (fixed kernels), recorded only as a conv's
    weight or a matrix product's weight operand, never as the data a product is applied to.
    ``to_meta=True`` runs every op on meta copies of its tensors (TorchScript modules hold real
    weights); eager skeletons are already on meta and run unchanged.
    """

    def __init__(
        self, params: dict[int, str], clock: Clock, to_meta: bool = False, buffers: frozenset[str] = frozenset()
    ):
        super().__init__()
        self.params, self.clock, self.to_meta = params, clock, to_meta
        self.buffers = buffers  # names in ``params`` that are buffers: recorded only where a weight goes
        self._views: dict[int, tuple[str, torch.Tensor]] = {}  # views and transforms of a parameter
        self.calls: dict[str, dict] = {}

    def _source(self, t: object) -> str | None:
        """The parameter ``t`` is, or is a view or elementwise transform of, else None."""
        if not isinstance(t, torch.Tensor):
            return None
        name = self.params.get(id(t))
        if name is not None:
            return name
        hit = self._views.get(id(t))
        return hit[0] if hit is not None else None

    def _follow(self, func, args, out) -> None:
        """Remember ``out`` as the parameter it was computed from when every tensor operand is a
        parameter (or one already followed) and one has as many elements as ``out``: views
        (``squeeze``, ``view``, ``t``), copies, and transforms such as weight norm's ``v · g/‖v‖``,
        so that a weight reaching a conv or matrix product that way is still recognised. An op
        that also reads an activation (``x + pos_embed``) is never followed."""
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(first, torch.Tensor):
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        names = [self._source(a) for a in tensors]
        if not tensors or None in names:
            return
        n = first.numel()
        for a, name in zip(tensors, names, strict=True):
            if a.numel() == n:
                self._views[id(first)] = (cast(str, name), first)  # keep `first` alive so its id stays unique
                return

    def _record(self, name: str, **info) -> None:
        if name in self.calls:
            self.calls[name]["count"] += 1
        else:
            self.calls[name] = {"order": self.clock.tick(), "count": 1, **info}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten.native_batch_norm.default and args[0].device.type == "meta":
            # shapes only: torch's meta batch norm runs a Python decomposition (half of a ResNet trace)
            x, training = args[0], bool(args[5])
            stats = (x.shape[1],) if training else (0,)
            return torch.empty_like(x), x.new_empty(stats), x.new_empty(stats)
        out = func(*tree_map(_to_meta, args), **tree_map(_to_meta, kwargs)) if self.to_meta else func(*args, **kwargs)
        if func in _CONVS and (weight := self._source(args[1])) is not None:
            self._record(
                weight,
                input=tuple(args[0].shape),
                output=tuple(out.shape),
                stride=tuple(args[3]),
                padding=tuple(args[4]),
                dilation=tuple(args[5]),
                transposed=bool(args[6]),
                groups=int(args[8]),
            )
        elif func is aten.linear.default and (weight := self._source(args[1])) is not None:
            self._record(weight, input=tuple(args[0].shape))
        elif func in _MATMULS:
            for i, a in enumerate(args):
                hit = self._views.get(id(a)) if isinstance(a, torch.Tensor) else None
                if hit and not (i == _MATMULS[func] and hit[0] in self.buffers):  # a buffer as the data: not a kernel
                    self._record(hit[0], input=tuple(args[_MATMULS[func]].shape))
                    break
        else:
            self._follow(func, args, out)
        return out


def buffer_reason(keys: list[str]) -> str:
    """Why a kernel held in a buffer is listed but not analysed."""
    return (
        f"fixed kernel held in a buffer, not a parameter ({', '.join(k.rpartition('.')[2] for k in keys[:3])}; e.g. an "
        "STFT basis) used by a convolution or matrix product: not a trained conv/dense weight, not analysed"
    )


def buffer_kernels(name: str, module: torch.nn.Module, used: dict[str, dict]) -> list[tuple[str, torch.Tensor]]:
    """The module's own buffers (full names) that a convolution or matrix product used, by the op
    recorder's calls ``used`` (a fixed kernel such as an STFT basis)."""
    prefix = f"{name}." if name else ""
    return [(prefix + n, b) for n, b in module.named_buffers(recurse=False) if prefix + n in used]


def train_mode_uses(
    model: torch.nn.Module, input_size: tuple[int, ...], dtype: torch.dtype, keys: set[str]
) -> set[str]:
    """Which of ``keys`` (parameter names) a forward pass in training mode uses: one pass on
    ``model`` (a meta skeleton) at batch 2 (batch norm in training mode needs two values per
    channel), every module's mode restored after. Empty when that pass fails."""
    modes = {m: m.training for m in model.modules()}
    rec = OpRecorder({id(p): n for n, p in model.named_parameters()}, Clock())
    try:
        model.train()
        if dtype.is_floating_point:
            x = torch.empty((2, *input_size), device="meta", dtype=dtype)
        else:
            x = torch.zeros((2, *input_size), device="meta", dtype=dtype)
        with torch.no_grad(), rec:
            model(x)
    except Exception:  # noqa: BLE001 - the user's model code can raise anything; then nothing is claimed
        return set()
    finally:
        for m, flag in modes.items():
            m.train(flag)
    return keys & set(rec.calls)
