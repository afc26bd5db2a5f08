"""Pivot taps of the paper's completed convolution matrix (SPEC §2), one spatial axis at a time.

For output index ``i`` along an axis, the pivot tap ``a_i`` is the smallest kernel index whose
input index ``r_i = stride*i - pad_left + dilation*a`` lies inside the input. The completion puts
identity rows on every input coordinate that is not a pivot, so the completed determinant equals
the determinant of the conv matrix restricted to its pivot columns.

If the ``r_i`` are distinct along every axis, that restricted matrix is triangular once rows and
columns are both ordered by pivot position: an output's pivot is the *smallest* input index it
touches, so any other pivot it touches lies after its own. The determinant is then the product
of the pivot taps, ``Σ_a Σ_b n_a m_b log|w[a, b]|`` in logs (``n_a`` = outputs whose pivot is
``a``). Collisions ('same' padding with stride 1) or outputs that see only padding break this,
and the closed form is then *not* exact.

Pure functions on Python ints; results are cached (a model reuses few geometries).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import prod

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class AxisPivots:
    """Pivots along one axis. ``taps[i]``/``rows[i]`` are -1 when output ``i`` sees only padding."""

    taps: tuple[int, ...]
    rows: tuple[int, ...]
    counts: tuple[int, ...]  # counts[a] = number of outputs whose pivot tap is a
    distinct: bool  # all pivot input indices differ
    complete: bool  # every output has an in-bounds tap


@lru_cache(maxsize=8192)
def axis_pivots(n_in: int, n_out: int, kernel: int, stride: int, pad_left: int, dilation: int) -> AxisPivots:
    """Pivot taps along one axis of a (cross-correlation) convolution."""
    if min(n_in, n_out, kernel, stride, dilation) < 1 or pad_left < 0:
        raise ValueError(f"bad axis geometry n_in={n_in} n_out={n_out} k={kernel} s={stride} p={pad_left} d={dilation}")
    taps: list[int] = []
    rows: list[int] = []
    counts = [0] * kernel
    for i in range(n_out):
        start = stride * i - pad_left
        a = 0 if start >= 0 else (-start + dilation - 1) // dilation
        r = start + dilation * a
        if a >= kernel or not 0 <= r < n_in:
            taps.append(-1)
            rows.append(-1)
            continue
        taps.append(a)
        rows.append(r)
        counts[a] += 1
    complete = -1 not in taps
    distinct = complete and len(set(rows)) == n_out
    return AxisPivots(tuple(taps), tuple(rows), tuple(counts), distinct, complete)


@dataclass(frozen=True)
class PivotPlan:
    """Pivots of an N-d convolution: one :class:`AxisPivots` per spatial axis."""

    axes: tuple[AxisPivots, ...]

    @property
    def exact(self) -> bool:
        return all(ax.distinct for ax in self.axes)

    @property
    def n_out(self) -> int:
        return prod(len(ax.taps) for ax in self.axes)

    @property
    def counts(self) -> tuple[tuple[int, ...], ...]:
        return tuple(ax.counts for ax in self.axes)

    def reason(self) -> str:
        """Why the closed form does not hold ('' when exact)."""
        names = AXIS_NAMES.get(len(self.axes), tuple(f"axis{i}" for i in range(len(self.axes))))
        empty = [n for n, ax in zip(names, self.axes, strict=True) if not ax.complete]
        if empty:
            return (
                f"some outputs along {', '.join(empty)} see only padding (all-zero rows): "
                "the pivot formula does not apply; total = n_out·log|c11|"
            )
        clash = [n for n, ax in zip(names, self.axes, strict=True) if not ax.distinct]
        if clash:
            return (
                f"pivots collide along {', '.join(clash)} (e.g. 'same' padding with stride 1): "
                "the paper's closed form does not hold; total = n_out·log|c11| as in the paper"
            )
        return ""


def pivot_plan(
    in_size: tuple[int, ...],
    out_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pad_left: tuple[int, ...],
    dilation: tuple[int, ...],
) -> PivotPlan:
    """Pivots of a convolution mapping ``in_size`` to ``out_size`` (spatial sizes only)."""
    n = len(kernel)
    if not all(len(t) == n for t in (in_size, out_size, stride, pad_left, dilation)):
        raise ValueError("geometry tuples must all have one entry per spatial axis")
    return PivotPlan(
        tuple(axis_pivots(*args) for args in zip(in_size, out_size, kernel, stride, pad_left, dilation, strict=True))
    )
