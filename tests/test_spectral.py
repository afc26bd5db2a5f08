"""The spectral estimator (SPEC §4): golden circular spectra, explicit circular matrices for every
conv kind (stride, dilation, groups, 1-D/3-D, transposed, kernels larger than the grid), dense
singular values, zero padding against its circular limit, float32 against float64."""

import itertools
import math

import numpy as np
import pytest
import torch

from entropyflow.estimate import spectral as S

# SPEC golden: circular_filter (C_in=2, 3x3, grid 4x5) and circular_layer (C_out=2, C_in=3, 3x3, grid 4x4)
GOLDEN_FILTER_K = [
    [[-0.9894, -0.348, -0.0601], [0.8732, 0.5613, -0.5458], [0.8098, -1.9486, -0.393]],
    [[0.4827, 1.4741, -1.6445], [-1.2079, -0.4991, -1.5713], [-0.0475, 0.2596, -0.269]],
]
GOLDEN_FILTER_SV = [
    5.257275150259744,
    5.257275150259744,
    5.2023225284482315,
    5.021029207396902,
    5.021029207396902,
    4.652473119370115,
    4.652473119370115,
    4.513178278782583,
    4.513178278782583,
    3.975057839914173,
    3.975057839914173,
    3.6471869666909043,
    3.549405018374401,
    3.549405018374401,
    3.419266545620566,
    3.419266545620566,
    2.7458211164492323,
    2.7458211164492323,
    1.5750082957651983,
    1.5750082957651983,
]
GOLDEN_FILTER_SUM = 26.25953015553794
GOLDEN_LAYER_K = [
    [
        [[-0.8838, 1.8752, 1.5751], [0.3047, 1.4665, -0.7931], [-1.33, 0.2526, 1.8032]],
        [[-0.2284, 0.754, 1.2588], [0.0445, 0.841, -0.6608], [1.2901, 0.4211, 0.0675]],
        [[-0.6298, -2.8555, 0.3189], [0.003, -0.1162, -0.3973], [1.8846, -0.0867, -0.0816]],
    ],
    [
        [[-0.0034, -1.0721, -0.5364], [-0.3443, 0.3168, 0.5983], [-0.7553, 1.0568, -2.3901]],
        [[1.5139, 0.6583, 0.8263], [0.1393, 0.4136, 0.3313], [-0.3473, -0.9087, 0.4187]],
        [[0.2696, -0.6726, 0.0587], [-0.7266, 2.3947, 0.547], [0.6458, 0.9126, -3.5085]],
    ],
]
GOLDEN_LAYER_SUM = 52.6985294799451


def circular_matrix(w, grid, stride, dilation, pad, groups):
    """The explicit matrix of a circular conv: out[f, i] = Σ_{c,a} w[f, c, a] x[g·Cg + c, (s·i − P + δ·a) mod n]."""
    w = np.asarray(w, float)
    f_, cg = w.shape[:2]
    ks = w.shape[2:]
    out = tuple(n // s for n, s in zip(grid, stride, strict=True))
    A = np.zeros((f_ * math.prod(out), cg * groups * math.prod(grid)))
    for f in range(f_):
        g = f // (f_ // groups)
        for i in itertools.product(*map(range, out)):
            row = f * math.prod(out) + np.ravel_multi_index(i, out)
            for c in range(cg):
                for a in itertools.product(*map(range, ks)):
                    r = tuple(
                        (s * ii - p + d * aa) % n
                        for ii, aa, s, p, d, n in zip(i, a, stride, pad, dilation, grid, strict=True)
                    )
                    A[row, (g * cg + c) * math.prod(grid) + np.ravel_multi_index(r, grid)] += w[(f, c) + a]
    return A, math.prod(out)


def sum_log_sv(A):
    return float(np.log(np.linalg.svd(A, compute_uv=False)).sum())


def test_golden_circular_filter_spectrum():
    plan = S.circular_plan(torch.tensor(GOLDEN_FILTER_K, dtype=torch.float64)[None], (4, 5), (1, 1), (1, 1))
    sv = S.filter_singular_values(plan)[0].sort(descending=True).values
    np.testing.assert_allclose(sv.numpy(), GOLDEN_FILTER_SV, rtol=0, atol=1e-12)
    spec = S.conv_spectrum(plan)
    assert float(spec.filter_totals[0]) == pytest.approx(GOLDEN_FILTER_SUM, abs=1e-10)
    assert spec.layer_total == pytest.approx(GOLDEN_FILTER_SUM, abs=1e-10) and spec.n_freq == 20


def test_golden_circular_layer_spectrum_in_any_chunking():
    plan = S.circular_plan(torch.tensor(GOLDEN_LAYER_K, dtype=torch.float64), (4, 4), (1, 1), (1, 1))
    assert S.layer_singular_values(plan).numel() == 32
    for budget in (1, 10_000, 1 << 30):  # one frequency row at a time … everything at once
        assert S.conv_spectrum(plan, budget).layer_total == pytest.approx(GOLDEN_LAYER_SUM, abs=1e-10)


CASES = [
    # name, weight shape (F, C/groups, *k), grid, stride, dilation, padding, groups
    ("2d same", (3, 2, 3, 3), (5, 4), (1, 1), (1, 1), (1, 1), 1),
    ("2d valid wide", (2, 3, 3, 2), (4, 5), (1, 1), (1, 1), (0, 0), 1),
    ("2d expanding (C_out > C_in)", (5, 2, 3, 3), (4, 4), (1, 1), (1, 1), (1, 1), 1),
    ("2d stride 2", (3, 2, 3, 3), (6, 4), (2, 2), (1, 1), (1, 1), 1),
    ("2d stride (2, 1) 1x1 expanding", (4, 3, 1, 1), (4, 3), (2, 1), (1, 1), (0, 0), 1),
    ("2d stride 3 > kernel 2", (2, 2, 2, 2), (6, 6), (3, 3), (1, 1), (0, 0), 1),
    ("1d stride 2, dilation 2 (reads even pixels only)", (3, 2, 2), (8,), (2,), (2,), (0,), 1),
    ("2d stride 2 kernel 7 (stem)", (2, 1, 7, 7), (8, 8), (2, 2), (1, 1), (3, 3), 1),
    ("2d dilation 2", (2, 2, 3, 3), (6, 5), (1, 1), (2, 2), (2, 2), 1),
    ("2d dilation + stride", (2, 2, 3, 2), (8, 6), (2, 3), (2, 1), (1, 0), 1),
    ("2d grouped", (6, 2, 3, 3), (4, 4), (1, 1), (1, 1), (1, 1), 2),
    ("2d depthwise", (4, 1, 3, 3), (5, 4), (1, 1), (1, 1), (1, 1), 4),
    ("2d depthwise multiplier 2", (6, 1, 3, 3), (4, 3), (1, 1), (1, 1), (1, 1), 3),
    ("2d kernel larger than grid", (2, 2, 5, 5), (3, 3), (1, 1), (1, 1), (2, 2), 1),
    ("1d stride 3 dilation 2", (3, 2, 3), (9,), (3,), (2,), (1,), 1),
    ("1d odd grid", (2, 3, 4), (7,), (1,), (1,), (0,), 1),
    ("3d", (2, 2, 3, 2, 3), (3, 4, 3), (1, 2, 1), (1, 1, 1), (1, 0, 1), 1),
    # large kernels: the whole layer from FFTs of every channel pair (≥ 64 taps), and (> 1024 taps per
    # channel) the per-filter values from the direct route instead of the autocorrelation
    ("2d kernel 9x9 (FFT layer route)", (3, 2, 9, 9), (10, 9), (1, 1), (1, 1), (4, 4), 1),
    ("2d kernel 9x9 grouped stride 2 (FFT layer route)", (4, 1, 9, 9), (10, 10), (2, 2), (1, 1), (4, 4), 2),
    ("2d kernel 33x33 (direct filter route)", (2, 1, 33, 33), (34, 33), (1, 1), (1, 1), (16, 16), 1),
]


SLOW_CASES = ("2d kernel 33x33 (direct filter route)",)  # explicit matrices: by far the slowest case


@pytest.mark.parametrize(
    "name,shape,grid,stride,dilation,pad,groups",
    [pytest.param(*c, id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW_CASES else []) for c in CASES],
)
def test_conv_kinds_against_explicit_circular_matrices(name, shape, grid, stride, dilation, pad, groups):
    g = torch.Generator().manual_seed(hash(name) % 2**31)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    A, n_out = circular_matrix(w.numpy(), grid, stride, dilation, pad, groups)
    plan = S.circular_plan(w, grid, stride, dilation, groups)
    assert plan.divisible and plan.n_freq == n_out
    spec = S.conv_spectrum(plan, budget=4096)  # small budget: several chunks
    for f in range(shape[0]):  # filter f is the row block of output channel f
        assert float(spec.filter_totals[f]) == pytest.approx(sum_log_sv(A[f * n_out : (f + 1) * n_out]), abs=1e-9), f
        exact = np.sort(np.linalg.svd(A[f * n_out : (f + 1) * n_out], compute_uv=False))
        np.testing.assert_allclose(np.sort(S.filter_singular_values(plan)[f].numpy()), exact, atol=1e-10)
    read = A[:, np.abs(A).sum(0) > 0]  # input pixels the layer never reads are zero columns: no singular value
    assert spec.layer_total == pytest.approx(sum_log_sv(read), abs=1e-9)
    np.testing.assert_allclose(S.layer_singular_values(plan).numpy(), np.linalg.svd(read, compute_uv=False), atol=1e-10)


def test_transposed_conv_is_the_adjoint():
    """ConvTranspose2d(3→4, k=2, s=2) on a 3x3 input: its matrix is Aᵀ of the conv storing the same
    weight (3, 4, 2, 2) on the 6x6 output grid; filters are its 3 input channels (column blocks)."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64)
    A, n = circular_matrix(w.numpy(), (6, 6), (2, 2), (1, 1), (0, 0), 1)
    T = A.T  # the transposed conv: 3·9 inputs → 4·36 outputs
    # with a circular boundary, conv_transpose2d is exactly this matrix (checked on basis images, wrap by folding)
    x = torch.zeros(1, 3, 3, 3, dtype=torch.float64)
    cols = []
    for idx in range(27):
        x.zero_()
        x.view(-1)[idx] = 1
        y = torch.nn.functional.conv_transpose2d(x, w, stride=2)  # 6x6 exactly: k = s, no overlap to wrap
        cols.append(y.flatten().numpy())
    np.testing.assert_allclose(np.stack(cols, 1), T, atol=0)
    plan = S.circular_plan(w, (6, 6), (2, 2), (1, 1))
    spec = S.conv_spectrum(plan)
    for f in range(3):
        assert float(spec.filter_totals[f]) == pytest.approx(sum_log_sv(T[:, f * n : (f + 1) * n]), abs=1e-10)
    assert spec.layer_total == pytest.approx(sum_log_sv(T), abs=1e-10)


def test_grid_not_divisible_by_the_stride_is_flagged():
    plan = S.circular_plan(torch.ones(1, 1, 3, 3, dtype=torch.float64), (7, 8), (2, 2), (1, 1))
    assert not plan.divisible and plan.grid == (4, 4)


def test_dense_log_singular_values():
    wide = torch.tensor([[3.0, 0, 9, -3, 4], [1, 5, -1, 4, 2], [0, 4, -2, 1, 5]], dtype=torch.float64)  # Example 4
    tall = torch.tensor([[2.0, 1, 0], [1, 3, 1], [0, 1, 5], [4, -2, 7], [1, 1, -3]], dtype=torch.float64)
    assert float(S.dense_log_singular_values(wide).sum()) == pytest.approx(5.7342934389065, abs=1e-12)  # ½ log det WWᵀ
    assert float(S.dense_log_singular_values(tall).sum()) == pytest.approx(
        4.886974090590572, abs=1e-12
    )  # ½ log det WᵀW
    # Cauchy–Binet: the paper's completed value (det 18, det 23) never exceeds the spectral one
    assert math.log(18) < 5.7342934389065 and math.log(23) < 4.886974090590572
    logs = S.dense_log_singular_values(wide)
    assert torch.all(logs[:-1] >= logs[1:])  # descending: the per-direction distribution
    assert torch.isneginf(S.dense_log_singular_values(torch.zeros(2, 3, dtype=torch.float64))).all()


def test_basis_invariance_where_the_paper_estimator_is_not():
    """Permuting a dense layer's inputs changes Example 4's det 18 into 187, −187 or −45 (SPEC §1);
    the spectral value does not move. The same holds for an orthogonal change of basis."""
    w = torch.tensor([[3.0, 0, 9, -3, 4], [1, 5, -1, 4, 2], [0, 4, -2, 1, 5]], dtype=torch.float64)
    base = float(S.dense_log_singular_values(w).sum())
    for perm in itertools.permutations(range(5)):
        assert float(S.dense_log_singular_values(w[:, list(perm)]).sum()) == pytest.approx(base, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert float(S.dense_log_singular_values(w @ q).sum()) == pytest.approx(base, abs=1e-12)


def zero_padded_matrix(k, n):
    """The explicit 'same' zero-padded conv of one 3x3 filter on an n x n grid (n² x n²)."""
    A = np.zeros((n * n, n * n))
    for i, j, a, b in itertools.product(range(n), range(n), range(3), range(3)):
        r, c = i - 1 + a, j - 1 + b
        if 0 <= r < n and 0 <= c < n:
            A[i * n + j, r * n + c] += k[a, b]
    return A


def per_position_gap(k, n):
    # square matrix: Σ log σ = log|det|. The SVD route is NOT usable here: at n = 32 the off-centre
    # filter's matrix has singular values far below ε·σ_max, which an SVD returns as rounding noise
    # (it gave −0.5044 instead of −0.5132). LU's log|det| agrees with a 120-digit computation
    # (test_gap_reference_values_are_exact) to 1e-12.
    exact = np.linalg.slogdet(zero_padded_matrix(k, n))[1] / n**2
    circ = float(S.conv_spectrum(S.circular_plan(torch.tensor(k)[None, None], (n, n), (1, 1), (1, 1))).filter_totals[0])
    return exact - circ / n**2


def test_zero_padding_against_the_circular_value():
    """The table in docs/method.md: the zero-padded 'same' map's exact Σ log σ / n² against the
    circular value. A centre-heavy filter (response bounded away from 0, no winding) converges like
    1/n; a filter dominated by an off-centre tap behaves like a shift, whose zero-padded version
    loses boundary rows: the gap stays near half a nat per position."""
    centre = np.array([[0.2, -0.5, 0.1], [0.4, 1.0, -0.3], [-0.2, 0.3, 0.25]])
    gaps = [per_position_gap(centre, n) for n in (4, 8, 16, 32)]
    assert gaps == pytest.approx([0.0195, -0.0014, -0.0004, -0.0001], abs=5e-5)
    offcentre = np.array([[0.1257, -0.1321, 0.6404], [0.1049, -0.5357, 0.3616], [1.304, 0.9471, -0.7037]])
    gaps = [per_position_gap(offcentre, n) for n in (4, 8, 16, 32)]
    assert gaps == pytest.approx([-0.7348, -0.6025, -0.5613, -0.5132], abs=5e-5)


def _same_conv_logdet_mp(k, n, dps):
    """log|det| of the 'same' zero-padded n×n conv matrix in dps-digit arithmetic: the matrix is block
    tridiagonal (image rows), so det = Π det S_i with S_0 = D, S_i = D − L S_{i−1}^{-1} U."""
    import mpmath

    mpmath.mp.dps = dps
    rows = [[mpmath.mpf(str(v)) for v in r] for r in k]

    def toeplitz(row):
        t = mpmath.zeros(n, n)
        for j in range(n):
            for b in range(3):
                if 0 <= j - 1 + b < n:
                    t[j, j - 1 + b] += row[b]
        return t

    lo, d, up = (toeplitz(r) for r in rows)
    s, total = d, mpmath.mpf(0)
    for i in range(n):
        if i:
            s = d - lo * mpmath.inverse(s) * up
        total += mpmath.log(abs(mpmath.det(s)))
    return float(total)


# log|det| / n² of the off-centre filter's zero-padded matrix, from _same_conv_logdet_mp at 60 and
# 120 digits (identical); n = 32 takes 12 s, so it is recorded here and n = 8 is recomputed below
OFFCENTRE_EXACT = {8: -0.04149769775101206, 16: 0.011863743167523906, 32: 0.055974365919305706}


def test_gap_reference_values_are_exact():
    off = np.array([[0.1257, -0.1321, 0.6404], [0.1049, -0.5357, 0.3616], [1.304, 0.9471, -0.7037]])
    assert _same_conv_logdet_mp(off, 8, 40) / 64 == pytest.approx(OFFCENTRE_EXACT[8], abs=1e-15)
    for n, exact in OFFCENTRE_EXACT.items():
        assert np.linalg.slogdet(zero_padded_matrix(off, n))[1] / n**2 == pytest.approx(exact, abs=1e-9), n
    # the SVD route is rounding noise at n = 32 (σ_min ≈ 1e-16 of σ_max): off by more than 5e-3
    assert abs(sum_log_sv(zero_padded_matrix(off, 32)) / 1024 - OFFCENTRE_EXACT[32]) > 5e-3


def test_float32_against_float64():
    """float32 arithmetic agrees with float64 to ~1e-5 nats per position on a VGG-like 64→64 layer."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 64, 3, 3, generator=g, dtype=torch.float64) * 0.05
    s64 = S.conv_spectrum(S.circular_plan(w, (14, 14), (1, 1), (1, 1)))
    s32 = S.conv_spectrum(S.circular_plan(w, (14, 14), (1, 1), (1, 1), dtype=torch.float32))
    per64, per32 = s64.filter_totals / 196, s32.filter_totals.double() / 196
    assert float((per64 - per32).abs().max()) < 2e-5
    assert abs(s64.layer_total - s32.layer_total) / 196 / 64 < 2e-5
