"""Record which parameters each aten op uses during a meta forward pass.

Module hooks miss weights that a parent uses functionally (``F.linear(x, self.qkv.weight)`` in
Swin's attention, MultiheadAttention's projections) and cannot be attached to TorchScript. A
dispatch mode sees every convolution and matrix product with its actual operands, so it
recovers order and geometry for those weights. One :class:`Clock` orders hooks and ops together.
"""

from __future__ import annotations

import itertools

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten
_MATMULS = {aten.addmm.default: 1, aten.mm.default: 0, aten.matmul.default: 0, aten.bmm.default: 0}
_VIEWS = (aten.t.default, aten.permute.default, aten.transpose.int)
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

    ``to_meta=True`` runs every op on meta copies of its tensors (TorchScript modules hold real
    weights); eager skeletons are already on meta and run unchanged.
    """

    def __init__(self, params: dict[int, str], clock: Clock, to_meta: bool = False):
        super().__init__()
        self.params, self.clock, self.to_meta = params, clock, to_meta
        self._views: dict[int, tuple[str, torch.Tensor]] = {}
        self.calls: dict[str, dict] = {}

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
        if func in _CONVS and id(args[1]) in self.params:
            self._record(
                self.params[id(args[1])],
                input=tuple(args[0].shape),
                output=tuple(out.shape),
                stride=tuple(args[3]),
                padding=tuple(args[4]),
                dilation=tuple(args[5]),
                transposed=bool(args[6]),
                groups=int(args[8]),
            )
        elif func in _VIEWS and id(args[0]) in self.params:
            self._views[id(out)] = (self.params[id(args[0])], out)  # keep `out` alive so its id stays unique
        elif func is aten.linear.default and id(args[1]) in self.params:
            self._record(self.params[id(args[1])], input=tuple(args[0].shape))
        elif func in _MATMULS:
            for a in args:
                hit = self._views.get(id(a)) if isinstance(a, torch.Tensor) else None
                if hit:
                    self._record(hit[0], input=tuple(args[_MATMULS[func]].shape))
                    break
        return out
