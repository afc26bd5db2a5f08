"""What the walker finds: layer sites with their traced geometry, and the modules it skips."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch

from ..vocab import is_conv_kind


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of one traced convolution, in the *forward-conv* view used by the estimator.

    For a transposed convolution this is its adjoint: the conv whose weight tensor it stores,
    mapping the transposed conv's output grid (``in_size``) back to its input grid (``out_size``).
    """

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad_left: tuple[int, ...]
    dilation: tuple[int, ...]
    padding_mode: str = "zeros"
    transposed: bool = False
    source: str = "module attributes"
    groups: int = 1

    @property
    def n_out(self) -> int:
        """Output positions per filter (transposed: input positions of the transposed conv)."""
        return prod(self.out_size)

    @property
    def layer_in_size(self) -> tuple[int, ...]:
        """The layer's own input grid (for a transposed conv: the adjoint's output grid)."""
        return self.out_size if self.transposed else self.in_size

    @property
    def layer_out_size(self) -> tuple[int, ...]:
        return self.in_size if self.transposed else self.out_size


@dataclass(frozen=True)
class DenseGeometry:
    """How many vectors a dense layer maps per sample (1 for a classifier head, T for T tokens)."""

    n_positions: int


def selected_rows(n_rows: int, rows: tuple[int, int] | None, period: int | None) -> list[int] | None:
    """The rows of a dense map that ``rows`` (and ``period``) select: ``rows`` alone is the block
    ``[start, stop)``; with ``period`` the block repeats every ``period`` rows (per-head interleaved
    fused projections such as GPT-NeoX's ``query_key_value``). None: every row."""
    if rows is None:
        return None
    if period is None:
        return list(range(rows[0], rows[1]))
    if period <= 0 or n_rows % period or rows[1] > period:
        raise ValueError(f"rows {rows} every {period} do not tile {n_rows} rows")
    return [h * period + r for h in range(n_rows // period) for r in range(rows[0], rows[1])]


def dense_map(
    weight: torch.Tensor, rows: tuple[int, int] | None = None, period: int | None = None, transposed: bool = False
) -> torch.Tensor:
    """The dense map a site means, as ``(outputs, inputs)``: ``weight`` or, for a weight stored
    ``(in, out)`` (transformers' ``Conv1D``), its transpose; then the selected rows."""
    m = weight.T if transposed else weight
    if rows is None:
        return m
    if period is None:
        return m[rows[0] : rows[1]]
    index = torch.tensor(selected_rows(m.shape[0], rows, period), device=m.device)
    return m.index_select(0, index)


def map_shape(
    weight_shape: tuple[int, ...], rows: tuple[int, int] | None, period: int | None, transposed: bool
) -> tuple[int, ...]:
    """The shape of :func:`dense_map` of a weight of ``weight_shape``."""
    out, inp = (weight_shape[1], weight_shape[0]) if transposed else (weight_shape[0], weight_shape[1])
    picked = selected_rows(out, rows, period)
    return (len(picked) if picked is not None else out, inp)


@dataclass(frozen=True)
class LayerSite:
    """One conv/dense map to analyse. ``rows`` selects a row block of the weight (q/k/v),
    repeated every ``row_period`` rows for per-head interleaved layouts; ``transposed``: the
    weight is stored ``(in, out)`` and the map is its transpose. For such sites ``weight_shape``
    is the map's shape (see :func:`map_shape`)."""

    name: str
    module_type: str
    kind: str
    weight_key: str
    weight_shape: tuple[int, ...]
    geometry: ConvGeometry | DenseGeometry | None
    traced: bool
    calls: int = 0
    rows: tuple[int, int] | None = None
    inferred: bool = False
    notes: tuple[str, ...] = ()
    custom_forward: str | None = None  # the class of a conv/dense subclass that overrides forward
    row_period: int | None = None
    transposed: bool = False
    untraced_reason: str | None = None  # why an untraced site has no geometry, when not the default

    @property
    def is_conv(self) -> bool:
        return is_conv_kind(self.kind)

    @property
    def filters(self) -> int:
        return self.weight_shape[0] if self.is_conv else 1


# saved with the results: the same words whoever the caller (no flag, no keyword)
NO_TRACE_REASON = "trace off: no forward pass ran, so no geometry; total unavailable"
TRAIN_ONLY_REASON = (
    "called only in training mode (e.g. an auxiliary classifier head): the eval-mode forward pass does not run it, "
    "so no geometry; total unavailable"
)


@dataclass(frozen=True)
class SkippedModule:
    """A parameterised module (or parameter group) that is not analysed, and why."""

    name: str
    module_type: str
    reason: str
    parameters: int


WALK_ORDER = {
    "trace": "forward execution order",
    "trace-cpu": "forward execution order (CPU forward pass)",
    "torchscript": "forward execution order",
    "torchscript-cpu": "forward execution order (CPU forward pass)",
    "state_dict": "module-name order, not traced",
    "untraced": "module registration order, not traced",
}


def order_of(mode: str) -> str:
    """How the layers of a walk are ordered, in words (axis labels, analysis.json)."""
    return WALK_ORDER.get(mode, "forward execution order")


@dataclass(frozen=True)
class Walk:
    """All sites in analysis order (traced first, in execution order) plus skipped modules."""

    sites: tuple[LayerSite, ...]
    skipped: tuple[SkippedModule, ...]
    mode: str  # 'trace' | 'torchscript' | 'state_dict' | 'untraced'
    input_size: tuple[int, ...] | None
    notes: tuple[str, ...] = ()


def conv_geometry(
    *,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: tuple[int, ...] | str,
    padding_mode: str,
    transposed: bool,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    groups: int = 1,
) -> tuple[ConvGeometry | None, tuple[str, ...]]:
    """Build a :class:`ConvGeometry` from layer attributes and traced shapes.

    When the attributes do not explain the traced output size (a subclass that pads in its own
    forward, e.g. timm's ``Conv2dSame``), the left padding is inferred from the shapes with the
    usual convention (left = total // 2) and the geometry says so.
    """
    nd = len(kernel)
    in_sp, out_sp = tuple(in_shape[-nd:]), tuple(out_shape[-nd:])
    if isinstance(padding, str):
        if transposed or padding not in ("same", "valid"):
            return None, (f"unsupported padding {padding!r}",)
        pads = (
            tuple(0 for _ in kernel)
            if padding == "valid"
            else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        )
    else:
        pads = tuple(int(p) for p in padding)
    conv_in, conv_out = (out_sp, in_sp) if transposed else (in_sp, out_sp)

    def expected(p: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (n + 2 * q - d * (k - 1) - 1) // s + 1
            for n, q, d, k, s in zip(conv_in, p, dilation, kernel, stride, strict=True)
        )

    source, notes = "module attributes", []
    if transposed:
        # the adjoint's outputs are exactly the transposed conv's inputs: nothing to reconcile,
        # but the traced output must be what the attributes give for some output_padding
        extra = [
            o - ((n - 1) * s - 2 * q + d * (k - 1) + 1)
            for o, n, s, q, d, k in zip(out_sp, in_sp, stride, pads, dilation, kernel, strict=True)
        ]
        if any(e < 0 or e >= max(s, d) for e, s, d in zip(extra, stride, dilation, strict=True)):
            return None, (f"traced sizes {in_sp}->{out_sp} do not match the layer's attributes",)
    elif expected(pads) != conv_out:
        totals = [
            max(0, (o - 1) * s + d * (k - 1) + 1 - n)
            for o, s, d, k, n in zip(conv_out, stride, dilation, kernel, conv_in, strict=True)
        ]
        pads = tuple(t // 2 for t in totals)
        if (
            tuple(
                (n + t - d * (k - 1) - 1) // s + 1
                for n, t, d, k, s in zip(conv_in, totals, dilation, kernel, stride, strict=True)
            )
            != conv_out
        ):
            return None, (f"traced sizes {in_sp}->{out_sp} cannot be explained by any padding",)
        source = "inferred from traced shapes"
        notes.append(
            f"padding inferred from traced shapes (left {pads}, right "
            f"{tuple(t - p for t, p in zip(totals, pads, strict=True))})"
        )
    return (
        ConvGeometry(
            conv_in,
            conv_out,
            tuple(kernel),
            tuple(stride),
            pads,
            tuple(dilation),
            padding_mode,
            transposed,
            source,
            int(groups),
        ),
        tuple(notes),
    )
