"""The basis-invariant spectral estimator (SPEC §4) as pure tensor functions.

Dense: ``Σ_i log σ_i(W)``, with the ``log σ_i`` as the per-direction distribution.

Convolutions are taken with a **circular** boundary on the layer's input grid, where they are
block-circulant and diagonalised by the DFT (Sedghi, Gupta & Long 2019):

* stride 1: filter ``f`` has singular values ``σ_f(ω) = sqrt(Σ_c |K̂_{f,c}(ω)|²)``, one per
  frequency ``ω`` of the grid; the whole layer has, per frequency, the singular values of the
  ``C_out × C_in`` matrix ``K̂(ω)`` (per group for grouped convs: block diagonal);
* stride ``s``: space-to-depth (polyphase). On a grid divisible by ``s`` the strided conv is a
  stride-1 conv on the ``grid/s`` grid with ``C_in·s^d`` input channels and kernel taps
  ``k'[c, p][a'] = k[c][s·a' + p]``. Phases the kernel never reaches (a 1×1 stride-2 conv reads
  one pixel in four) are dropped: they are zero columns, which have no singular value, so the
  whole-layer sum runs over ``min(C_out, C_in·phases read)`` values per frequency, not over
  structural zeros;
* dilation ``δ``: the kernel with ``δ − 1`` zeros inserted between taps;
* kernels larger than the grid wrap around it (taps are summed modulo the grid);
* padding is a circular shift of the input (orthogonal): it does not change singular values;
* a transposed conv is the adjoint of the conv storing the same weight: same singular values.

Sums over frequencies use the real FFT's half spectrum with Hermitian multiplicities. The DFT
of a tiny kernel is a product with small DFT matrices (no zero-padded FFT buffers). Whole-layer
sums use ``slogdet`` on square blocks and the R factor of a QR on rectangular ones (never
``eigvalsh(K̂K̂ᴴ)``, which squares the condition number). Everything is chunked over
frequencies to a memory budget and runs wherever the input tensors live (CPU or CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from math import prod

import torch

FLOAT = torch.float64

Tick = Callable[[float], None]
"""``tick(fraction)``: how much (0…1) of the current call's work is done; called between chunks."""
_TICK: ContextVar[Tick | None] = ContextVar("entropyflow_spectral_tick", default=None)


@contextmanager
def reporting(tick: Tick | None) -> Iterator[None]:
    """Within the block, the chunked loops below call ``tick(fraction)`` between chunks, so a
    caller can show how far one long layer has got (the only state here: the math is unchanged)."""
    token = _TICK.set(tick)
    try:
        yield
    finally:
        _TICK.reset(token)


def _tick(fraction: float) -> None:
    tick = _TICK.get()
    if tick is not None:
        tick(min(1.0, max(0.0, fraction)))


@contextmanager
def _span(lo: float, hi: float) -> Iterator[None]:
    """Ticks of the block reported as the part ``lo…hi`` of the enclosing call's work."""
    outer = _TICK.get()
    token = _TICK.set(None if outer is None else (lambda f: outer(lo + (hi - lo) * f)))
    try:
        yield
    finally:
        _TICK.reset(token)


def dense_cost(shape: tuple[int, ...]) -> float:
    """Floating-point operations (about) of :func:`dense_log_singular_values` on one ``m × n`` matrix,
    counting the ``svdvals`` fallback (ill-conditioned matrices: random square ones): Gram, its
    eigenvalues, the SVD."""
    return sum(_dense_parts(*sorted(shape[-2:])))


def _dense_parts(k: int, n: int) -> tuple[float, float, float]:
    """The work of the Gram product, its eigenvalues and the expected ``svdvals`` fallback of a
    ``k × n`` matrix (``k ≤ n``). The fallback is expected for near-square matrices (a random
    ``k × n`` one has ``λ_min/λ_max ≈ ((1 − √(k/n))/(1 + √(k/n)))²``, below GRAM_CONDITION only
    when ``k/n`` is close to 1); for the others a tenth of the work stands for it, so that an
    unexpected fallback still runs before the call reports its end."""
    gram, eig = 2.0 * k * k * n, 4.0 * k**3
    svd = 4.0 * k * k * n + 8.0 * k**3 if 2 * k >= n else 0.1 * (gram + eig)
    return gram, eig, svd


GRAM_BLOCK_FLOPS = 4e9  # a Gram product larger than this is summed in column blocks, with a tick after each


GRAM_CONDITION = 1e-4  # Gram route accepted when λ_min ≥ 1e-4·λ_max: log σ_i then within ~1e-8 nats


def dense_log_singular_values(weight: torch.Tensor, dtype: torch.dtype = FLOAT) -> torch.Tensor:
    """``log σ_i`` of a matrix (or a batch of equal-shaped matrices), descending; ``-inf`` for zeros.

    Fast route: the eigenvalues of the smaller Gram matrix (``W Wᵀ`` or ``WᵀW``, one BLAS-3
    product and a symmetric eigensolver, several times faster than an SVD of a wide layer). The
    Gram's rounding error is about ``d·ε·λ_max``, so it is used only for matrices with
    ``λ_min ≥ GRAM_CONDITION·λ_max`` (relative error of ``σ_i`` below ~1e-8); the others, and any
    with a zero singular value, go through ``svdvals``, which is accurate down to ``ε·σ_max``."""
    w = weight.to(dtype)
    if w.shape[-2] > w.shape[-1]:
        w = w.mT
    k, n = w.shape[-2:]
    batch = prod(w.shape[:-2])
    gram_cost, eig_cost, svd_cost = (batch * part for part in _dense_parts(k, n))
    whole = gram_cost + eig_cost + svd_cost
    blocks = max(1, min(n, math.ceil(gram_cost / GRAM_BLOCK_FLOPS)))
    if blocks == 1:
        gram = w @ w.mT
    else:  # a large Gram product in column blocks (its sum is the same up to rounding), a tick after each
        step = -(-n // blocks)
        gram = w.new_zeros((*w.shape[:-1], k))
        for lo in range(0, n, step):
            part = w[..., lo : lo + step]
            gram += part @ part.mT
            _tick(gram_cost * min(n, lo + step) / n / whole)
    _tick(gram_cost / whole)
    lam = torch.linalg.eigvalsh(gram).flip(-1)  # descending
    _tick((gram_cost + eig_cost) / whole)
    ok = (lam[..., -1] >= GRAM_CONDITION * lam[..., 0]) & (lam[..., -1] > 0)
    out = 0.5 * torch.log(lam.clamp_min(torch.finfo(dtype).tiny))
    if not bool(ok.all()):
        bad = ~ok
        out[bad] = torch.log(torch.linalg.svdvals(w[bad]))
    _tick(1.0)
    return out


def dilate(kernel: torch.Tensor, dilation: tuple[int, ...]) -> torch.Tensor:
    """Insert ``δ − 1`` zeros between taps along each of the last ``len(dilation)`` axes."""
    nd = len(dilation)
    if all(d == 1 for d in dilation):
        return kernel
    lead = kernel.shape[:-nd]
    size = tuple(d * (k - 1) + 1 for k, d in zip(kernel.shape[-nd:], dilation, strict=True))
    out = kernel.new_zeros(*lead, *size)
    out[(...,) + tuple(slice(None, None, d) for d in dilation)] = kernel
    return out


def polyphase(kernel: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """Space-to-depth: ``(F, C, *k)`` with stride ``s`` → ``(F, C·∏s, *ceil(k/s))`` with stride 1.

    Input channel ``c·∏s + p`` (``p`` the phase, row-major over axes) holds ``k[c][s·a' + p]``."""
    nd = len(stride)
    if all(s == 1 for s in stride):
        return kernel
    f, c = kernel.shape[:2]
    ks = kernel.shape[2:]
    padded = tuple(-(-k // s) * s for k, s in zip(ks, stride, strict=True))
    k = torch.nn.functional.pad(kernel, [p for ax in reversed(range(nd)) for p in (0, padded[ax] - ks[ax])])
    # (F, C, a'0, s0, a'1, s1, ...) → (F, C, s0, s1, ..., a'0, a'1, ...)
    k = k.reshape(f, c, *[v for ax in range(nd) for v in (padded[ax] // stride[ax], stride[ax])])
    perm = [0, 1] + [2 + 2 * ax + 1 for ax in range(nd)] + [2 + 2 * ax for ax in range(nd)]
    k = k.permute(perm)
    return k.reshape(f, c * prod(stride), *[padded[ax] // stride[ax] for ax in range(nd)])


def read_phases(kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """Which polyphase input channels a kernel reads (row-major over axes, as :func:`polyphase`):
    with a stride larger than the (dilated) kernel's reach some input pixels are never read."""
    mask = torch.ones((), dtype=torch.bool)
    for k, s, d in zip(kernel, stride, dilation, strict=True):
        taps = {d * a % s for a in range(k)}
        mask = mask[..., None] & torch.tensor([p in taps for p in range(s)])
    return mask.flatten()


def fold(kernel: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Wrap taps that reach beyond the circular grid back onto it (sum modulo the grid size)."""
    nd = len(grid)
    for ax, n in enumerate(grid):
        axis = kernel.ndim - nd + ax
        k = kernel.shape[axis]
        if k <= n:
            continue
        blocks = -(-k // n)
        pad = [0, 0] * (kernel.ndim - axis - 1) + [0, blocks * n - k]
        kernel = torch.nn.functional.pad(kernel, pad)
        shape = kernel.shape[:axis] + (blocks, n) + kernel.shape[axis + 1 :]
        kernel = kernel.reshape(shape).sum(dim=axis)
    return kernel


@dataclass(frozen=True)
class CircularPlan:
    """The stride-1 circular problem equivalent to a conv layer on its input grid."""

    kernel: torch.Tensor  # (F, C', *k') real, folded into ``grid``; C' = phases the layer reads × C
    grid: tuple[int, ...]  # the output grid (input grid / stride)
    groups: int
    divisible: bool  # the input grid was a multiple of the stride (else it was rounded up)

    @property
    def n_freq(self) -> int:
        return prod(self.grid)


def circular_plan(
    weight: torch.Tensor,
    in_grid: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int = 1,
    dtype: torch.dtype = FLOAT,
) -> CircularPlan:
    """Reduce a conv (weight ``(F, C/groups, *k)``) on a circular ``in_grid`` to stride 1 on ``grid/s``."""
    divisible = all(n % s == 0 for n, s in zip(in_grid, stride, strict=True))
    grid = tuple(-(-n // s) for n, s in zip(in_grid, stride, strict=True))
    k = polyphase(dilate(weight.to(dtype), dilation), stride)
    read = read_phases(tuple(weight.shape[2:]), stride, dilation)
    if not bool(read.all()):  # drop the pixels the layer never reads (zero columns, e.g. 1x1 stride-2)
        f, c = weight.shape[:2]
        k = k.reshape(f, c, read.numel(), *k.shape[2:])[:, :, read.to(k.device)].reshape(f, -1, *k.shape[2:])
    return CircularPlan(fold(k, grid), grid, groups, divisible)


def frequency_rows(
    grid: tuple[int, ...], taps: tuple[int, ...], lo: int, hi: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Rows ``lo:hi`` of ``E[ω, a] = exp(−2πi·Σ_ax u_ax·a_ax/n_ax)`` over the half-spectrum frequencies
    (rfftn order, flattened) and the kernel's taps (flattened): ``K̂(ω) = Σ_a E[ω, a]·k[:, :, a]``.
    Built a chunk at a time, so no (frequencies × taps) matrix of the whole grid is ever held."""
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    half = (*grid[:-1], grid[-1] // 2 + 1)
    flat = torch.arange(lo, hi, device=device)
    phase = torch.zeros((hi - lo, prod(taps)), device=device, dtype=dtype)
    tap_index = torch.arange(prod(taps), device=device)
    step, tap_step = 1, 1
    for ax in reversed(range(len(grid))):
        u = (flat // step) % half[ax]
        a = (tap_index // tap_step) % taps[ax]
        # per axis, the phase of u·a mod n (exact integers), then scaled: as np.fft does
        phase += (-2.0 * math.pi / grid[ax]) * torch.remainder(torch.outer(u, a), grid[ax]).to(dtype)
        step *= half[ax]
        tap_step *= taps[ax]
    return torch.polar(torch.ones_like(phase), phase).to(cdtype)


def half_multiplicity(
    grid: tuple[int, ...], lo: int, hi: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Hermitian multiplicity (1 or 2) of the half-spectrum frequencies ``lo:hi`` (rfftn order)."""
    n = grid[-1]
    u_last = torch.arange(lo, hi, device=device) % (n // 2 + 1)
    one = (u_last == 0) | ((n % 2 == 0) & (u_last == n // 2))
    return torch.where(one, 1.0, 2.0).to(dtype)


def _block_logabs(blocks: torch.Tensor) -> torch.Tensor:
    """``Σ_i log σ_i`` of each matrix in a batch ``(..., m, n)``: LU if square, else QR's R factor."""
    m, n = blocks.shape[-2:]
    r = torch.linalg.lu_factor_ex(blocks).LU if m == n else torch.linalg.qr(blocks if m > n else blocks.mH, mode="r").R
    return torch.log(torch.abs(torch.diagonal(r, dim1=-2, dim2=-1))).sum(-1)


@dataclass(frozen=True)
class ConvSpectrum:
    """Per-filter totals ``Σ_ω log σ_f(ω)``, the whole-layer ``Σ_ω Σ_i log σ_i(K̂(ω))`` and the
    number of frequencies (= output positions of the circular layer)."""

    filter_totals: torch.Tensor  # (F,) float64
    layer_total: float | None
    n_freq: int


def conv_spectrum(plan: CircularPlan, budget: int = 1 << 30, layer: bool = True) -> ConvSpectrum:
    """Per-filter and (``layer=True``) whole-layer log-spectra of a circular plan, holding at most
    about ``budget`` bytes of complex work at once."""
    k = plan.kernel
    if all(n == 1 for n in k.shape[2:]):  # one tap (1x1 convs, also strided): K̂(ω) = K at every frequency
        flat = k.reshape(k.shape[:2])
        filt = plan.n_freq * torch.log(torch.linalg.vector_norm(flat, dim=1))
        whole = None
        if layer:
            blocks = flat.reshape(plan.groups, flat.shape[0] // plan.groups, flat.shape[1])
            whole = plan.n_freq * float(_block_logabs(blocks).sum())
        return ConvSpectrum(filt, whole, plan.n_freq)
    filt_cost, layer_cost = _plan_cost(tuple(k.shape), plan.grid, plan.groups, layer)
    split = filt_cost / (filt_cost + layer_cost)
    with _span(0.0, split):
        filt = filter_log_spectrum(plan, budget)
    _tick(split)
    whole = None
    if layer:
        with _span(split, 1.0):
            whole = layer_log_spectrum(plan, budget)
    _tick(1.0)
    return ConvSpectrum(filt, whole, plan.n_freq)


def _plan_cost(kernel: tuple[int, ...], grid: tuple[int, ...], groups: int, layer: bool) -> tuple[float, float]:
    """The work (about: flop-equivalents, calibrated on a CPU: the batched factorisations of many
    small blocks cost per element, not per flop) of the per-filter and whole-layer passes of a plan
    whose kernel has shape ``kernel`` (``(F, C', *taps)``) on ``grid``."""
    f, c = kernel[:2]
    taps = prod(kernel[2:])
    n, half = prod(grid), _half(grid)
    fft = 5.0 * n * math.log2(n + 1)
    filt = 10.0 * (f * c * taps * taps + f * fft if taps <= AUTOCORR_MAX_TAPS else f * c * fft)
    if not layer:
        return float(filt), 0.0
    fg = f // max(1, groups)
    factor = 1000.0 * (1.0 if fg == c else 2.5)  # per block element and frequency: LU if square, else QR
    spectra = c * f * fft if taps >= FFT_LAYER_MIN_TAPS else 8.0 * taps * f * c * half
    return float(filt), float(half * f * c * factor + spectra)


def conv_cost(
    weight_shape: tuple[int, ...],
    in_grid: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int = 1,
    layer: bool = True,
) -> float:
    """Floating-point operations (about) of :func:`circular_plan` + :func:`conv_spectrum` for a conv
    of this shape on this grid, from shapes alone (weights a progress display's ETA)."""
    f, c = weight_shape[:2]
    kernel = weight_shape[2:]
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    grid = tuple(-(-n // s) for n, s in zip(in_grid, stride, strict=True))
    folded = tuple(min(-(-p // s), g) for p, s, g in zip(dilated, stride, grid, strict=True))
    channels = c * prod(stride)
    if all(n == 1 for n in folded):
        return float(f * channels * (1 + (min(f // max(1, groups), channels) if layer else 0)))
    return sum(_plan_cost((f, channels, *folded), grid, groups, layer))


def _multiplicity(grid: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Hermitian multiplicity of each rfftn frequency (1 or 2), shape ``(*grid[:-1], grid[-1]//2 + 1)``."""
    n = grid[-1]
    mult = torch.full((n // 2 + 1,), 2.0, device=device, dtype=dtype)
    mult[0] = 1.0
    if n % 2 == 0:
        mult[-1] = 1.0
    return mult.expand(*grid[:-1], n // 2 + 1)


GUARD = 1e-6  # autocorrelation route accepted where σ_f(ω)² ≥ GUARD·‖k_f‖² (relative error ≲ 1e-8 there)
AUTOCORR_MAX_TAPS = 1024  # beyond this many taps per channel the P×P Gram costs more than the direct route


def _half(grid: tuple[int, ...]) -> int:
    return prod(grid[:-1]) * (grid[-1] // 2 + 1)


def autocorr_fixed_bytes(taps: int, nd: int) -> int:
    """Bytes of the lag index arrays of :func:`_autocorrelation` (once per call)."""
    return 8 * taps * taps * (nd + 2)


def autocorr_bytes_per_filter(taps: int, grid: tuple[int, ...], kernel: tuple[int, ...]) -> int:
    """Bytes one filter holds on the autocorrelation route: its Gram, lags, the wrapped grid, the
    half spectrum and the temporaries of the log."""
    return 8 * taps * taps + 8 * prod(2 * n - 1 for n in kernel) + 8 * prod(grid) + 40 * _half(grid)


def direct_bytes_per_channel(grid: tuple[int, ...]) -> int:
    """Bytes one (filter, input channel) holds on the direct route: its complex half spectrum and
    the power accumulator with its temporaries."""
    return 56 * _half(grid)


def filter_log_spectrum(plan: CircularPlan, budget: int = 1 << 30) -> torch.Tensor:
    """``Σ_ω log σ_f(ω)`` per filter.

    Fast route (kernels of at most AUTOCORR_MAX_TAPS taps): ``σ_f(ω)² = Σ_τ r_f[τ] e^{−iωτ}``,
    the DFT of the filter's autocorrelation ``r_f = Σ_c k_fc ⋆ k_fc`` (a few taps), so no
    ``F × C × grid`` array is formed. Its rounding error is relative to ``‖k_f‖²``; filters whose
    response falls below ``GUARD·‖k_f‖²`` at some frequency are recomputed from ``|K̂|²`` directly
    (exact down to zero, where ``log 0 = −∞``), as are all filters of larger kernels."""
    k = plan.kernel
    f = k.shape[0]
    nd = len(plan.grid)
    taps = prod(k.shape[2:])
    if taps > AUTOCORR_MAX_TAPS:
        return _filter_log_spectrum_direct(plan, budget)
    dims = tuple(range(1, nd + 1))
    mult = _multiplicity(plan.grid, k.device, k.dtype)
    out = torch.empty(f, dtype=k.dtype, device=k.device)
    room = budget - autocorr_fixed_bytes(taps, nd)
    per = max(1, room // autocorr_bytes_per_filter(taps, plan.grid, tuple(k.shape[2:])))
    redo = []
    for lo in range(0, f, per):
        r = _autocorrelation(k[lo : lo + per])  # (f', *(2K-1))
        power = torch.fft.rfftn(_wrap(r, plan.grid), s=plan.grid, dim=dims).real  # σ_f(ω)², (f', *half grid)
        floor = GUARD * r[(slice(None),) + tuple(n // 2 for n in r.shape[1:])]  # GUARD · ‖k_f‖²
        bad = (power <= floor.reshape((-1,) + (1,) * nd)).flatten(1).any(1)
        out[lo : lo + per] = 0.5 * (torch.log(power.clamp_min(torch.finfo(k.dtype).tiny)) * mult).flatten(1).sum(1)
        redo += [lo + int(i) for i in torch.nonzero(bad).flatten()]
        del r, power
        _tick(0.5 * min(f, lo + per) / f)
    if redo:
        idx = torch.tensor(redo, device=k.device)
        sub = CircularPlan(k[idx], plan.grid, 1, plan.divisible)
        with _span(0.5, 1.0):
            out[idx] = _filter_log_spectrum_direct(sub, budget)
    return out


def _autocorrelation(k: torch.Tensor) -> torch.Tensor:
    """``r_f[τ] = Σ_c Σ_a k[f, c, a] k[f, c, a + τ]`` for all lags ``τ``: shape ``(F, *(2K − 1))``,
    lag ``τ`` stored at index ``τ + K − 1``. One batched Gram ``Σ_c k[f,c,a] k[f,c,a']`` per filter,
    then its entries are summed by lag ``a' − a``."""
    f, c = k.shape[:2]
    taps = tuple(k.shape[2:])
    flat = k.reshape(f, c, -1)
    gram = torch.bmm(flat.transpose(1, 2), flat)  # (F, P, P)
    pos = torch.stack(torch.meshgrid(*[torch.arange(n, device=k.device) for n in taps], indexing="ij"), -1).reshape(
        -1, len(taps)
    )
    lags = pos[None, :, :] - pos[:, None, :] + torch.tensor(taps, device=k.device) - 1  # (P, P, nd): a' − a + K − 1
    size = tuple(2 * n - 1 for n in taps)
    idx = torch.zeros(lags.shape[:2], dtype=torch.long, device=k.device)
    for ax, n in enumerate(size):
        idx = idx * n + lags[..., ax]
    r = k.new_zeros(f, prod(size)).index_add_(1, idx.flatten(), gram.reshape(f, -1))
    return r.reshape(f, *size)


def _wrap(r: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Lags ``τ = −(K−1) … K−1`` (stored from index 0) summed onto the circular grid at ``τ mod n``."""
    for ax, n in enumerate(grid):
        axis = ax + 1
        length = r.shape[axis]
        idx = torch.remainder(torch.arange(length, device=r.device) - length // 2, n)
        out = r.new_zeros(r.shape[:axis] + (n,) + r.shape[axis + 1 :])
        r = out.index_add_(axis, idx, r)
    return r


def _filter_log_spectrum_direct(plan: CircularPlan, budget: int) -> torch.Tensor:
    """``Σ_ω log σ_f(ω)`` from ``|K̂_fc(ω)|²`` summed over channels (no cancellation anywhere).
    Chunks over filters, and over input channels when one filter's spectra exceed the budget."""
    k = plan.kernel
    f, c = k.shape[:2]
    nd = len(plan.grid)
    dims = tuple(range(2, nd + 2))
    mult = _multiplicity(plan.grid, k.device, k.dtype)
    out = torch.empty(f, dtype=k.dtype, device=k.device)
    unit = direct_bytes_per_channel(plan.grid)
    cper = max(1, min(c, budget // unit))
    fper = max(1, budget // (unit * cper)) if cper == c else 1
    for lo in range(0, f, fper):
        power = torch.zeros((min(fper, f - lo), *mult.shape), dtype=k.dtype, device=k.device)
        for c0 in range(0, c, cper):
            hat = torch.fft.rfftn(k[lo : lo + fper, c0 : c0 + cper], s=plan.grid, dim=dims)
            power += (hat.real.square() + hat.imag.square()).sum(1)
            del hat
        out[lo : lo + fper] = 0.5 * (torch.log(power) * mult).flatten(1).sum(1)
        del power
        _tick(min(f, lo + fper) / f)
    return out


@dataclass(frozen=True)
class ConvWork:
    """What the spectral estimator of one conv layer must hold at once, before anything runs:
    building its circular plan, and the smallest chunk of the per-filter and whole-layer passes."""

    plan_bytes: int
    filter_bytes: int
    layer_bytes: int

    @property
    def least(self) -> int:
        return max(self.plan_bytes, self.filter_bytes, self.layer_bytes)


def conv_work(
    weight_shape: tuple[int, ...],
    in_grid: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    layer: bool = True,
) -> ConvWork:
    """The least memory :func:`circular_plan` + :func:`conv_spectrum` need for a conv of this shape
    on this grid (bytes; float64/complex128), from shapes alone."""
    f, c = weight_shape[:2]
    kernel = weight_shape[2:]
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    padded = [-(-n // s) * s for n, s in zip(dilated, stride, strict=True)]
    plan_bytes = 3 * 8 * f * c * prod(padded)  # the float64 copy, dilation, space-to-depth
    grid = tuple(-(-n // s) for n, s in zip(in_grid, stride, strict=True))
    folded = tuple(min(p // s, g) for p, s, g in zip(padded, stride, grid, strict=True))
    channels = c * prod(stride)
    taps = prod(folded)
    if all(n == 1 for n in folded):
        return ConvWork(plan_bytes, 8 * f * channels, 16 * f * channels)
    if taps <= AUTOCORR_MAX_TAPS:
        filt = autocorr_fixed_bytes(taps, len(grid)) + autocorr_bytes_per_filter(taps, grid, folded)
    else:
        filt = direct_bytes_per_channel(grid)
    if not layer:
        whole = 0
    elif taps >= FFT_LAYER_MIN_TAPS:
        whole = (
            16 * f * channels * _half(grid) + 3 * 16 * f * channels + 64
        )  # every pair's spectrum, one frequency's blocks
    else:
        whole = 16 * f * channels * taps + layer_bytes_per_freq(f, channels, taps)
    return ConvWork(plan_bytes, filt, whole)


FFT_LAYER_MIN_TAPS = 64  # from this many taps the layer's spectra come from FFTs, not from E·k per frequency


def layer_log_spectrum(plan: CircularPlan, budget: int = 1 << 30) -> float:
    """``Σ_ω Σ_g Σ_i log σ_i(K̂_g(ω))``: the layer's ``C_out × C_in`` frequency matrices go through
    one batched factorisation per chunk of frequencies. Small kernels: the matrices come out of one
    complex product ``E[ω, taps] · k[taps, F·C]`` per chunk (already in batch layout), a chunk
    holding about ``budget`` bytes. Large kernels: one FFT of every channel pair (the product would
    cost taps operations per frequency), then factorised chunk by chunk."""
    k = plan.kernel
    f, c = k.shape[:2]
    taps_shape = tuple(k.shape[2:])
    n_half = _half(plan.grid)
    taps = prod(taps_shape)
    whole = torch.zeros((), dtype=k.dtype, device=k.device)
    if taps >= FFT_LAYER_MIN_TAPS:
        dims = tuple(range(2, k.ndim))
        hat = torch.fft.rfftn(k, s=plan.grid, dim=dims).reshape(plan.groups, f // plan.groups, c, n_half)
        per = max(1, budget // (3 * 16 * f * c + 64))
        for lo in range(0, n_half, per):
            hi = min(n_half, lo + per)
            blocks = hat[..., lo:hi].permute(3, 0, 1, 2).contiguous()  # (ω, groups, F/g, C)
            whole += (_block_logabs(blocks).sum(-1) * half_multiplicity(plan.grid, lo, hi, k.device, k.dtype)).sum()
            del blocks
            _tick(hi / n_half)
        return float(whole)
    cplx = torch.complex128 if k.dtype == torch.float64 else torch.complex64
    kt = k.reshape(f * c, -1).mT.to(cplx)  # (taps, F·C)
    per = max(1, budget // layer_bytes_per_freq(f, c, taps))
    for lo in range(0, n_half, per):
        hi = min(n_half, lo + per)
        e = frequency_rows(plan.grid, taps_shape, lo, hi, k.device, k.dtype)
        blocks = (e @ kt).reshape(-1, plan.groups, f // plan.groups, c)
        weights = half_multiplicity(plan.grid, lo, hi, k.device, k.dtype)
        whole += (_block_logabs(blocks).sum(-1) * weights).sum()  # Σ over groups, then frequencies
        del e, blocks
        _tick(hi / n_half)
    return float(whole)


def layer_bytes_per_freq(f: int, c: int, taps: int) -> int:
    """Bytes one frequency of :func:`layer_log_spectrum` holds: its E row, its F×C block, the
    factorisation and its workspace."""
    return 16 * taps + 4 * 16 * f * c + 64


def filter_singular_values(plan: CircularPlan) -> torch.Tensor:
    """All ``σ_f(ω)`` over the full grid, shape ``(F, n_freq)`` (small problems, tests and plots)."""
    k = plan.kernel.to(plan.kernel.dtype)
    hat = torch.fft.fftn(k, s=plan.grid, dim=tuple(range(2, k.ndim)))
    sigma: torch.Tensor = hat.abs().square().sum(1).sqrt().reshape(k.shape[0], -1)
    return sigma


def layer_singular_values(plan: CircularPlan) -> torch.Tensor:
    """The whole layer's singular values (union over frequencies and groups), descending."""
    k = plan.kernel
    f, c = k.shape[:2]
    hat = torch.fft.fftn(k, s=plan.grid, dim=tuple(range(2, k.ndim)))  # (F, C, *grid)
    hat = hat.reshape(plan.groups, f // plan.groups, c, -1).permute(3, 0, 1, 2)
    sigma: torch.Tensor = torch.linalg.svdvals(hat).flatten().sort(descending=True).values
    return sigma
