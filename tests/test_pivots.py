import itertools

import pytest

from entropyflow.estimate.pivots import axis_pivots, pivot_plan


def brute(n_in, n_out, k, s, p, d):
    taps = []
    for i in range(n_out):
        hit = [a for a in range(k) if 0 <= s * i - p + d * a < n_in]
        taps.append(hit[0] if hit else -1)
    return taps


GRID = [
    (n, k, s, p, d)
    for n, k, s, p, d in itertools.product(range(1, 10), range(1, 5), range(1, 4), range(0, 4), range(1, 4))
    if (n + 2 * p - d * (k - 1) - 1) // s + 1 >= 1 and n + 2 * p - d * (k - 1) - 1 >= 0
]


@pytest.mark.parametrize("n,k,s,p,d", GRID[::7])
def test_axis_pivots_match_brute_force(n, k, s, p, d):
    n_out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    ax = axis_pivots(n, n_out, k, s, p, d)
    assert list(ax.taps) == brute(n, n_out, k, s, p, d)
    rows = [s * i - p + d * a for i, a in enumerate(ax.taps) if a >= 0]
    assert ax.complete == (-1 not in ax.taps)
    assert ax.distinct == (ax.complete and len(set(rows)) == n_out)
    assert sum(ax.counts) == sum(1 for a in ax.taps if a >= 0)


def test_no_padding_is_always_distinct_with_pivot_tap_zero():
    for n, k, s, d in itertools.product(range(3, 12), range(1, 4), range(1, 4), range(1, 3)):
        n_out = (n - d * (k - 1) - 1) // s + 1
        if n_out < 1:
            continue
        ax = axis_pivots(n, n_out, k, s, 0, d)
        assert ax.distinct and ax.counts[0] == n_out and sum(ax.counts[1:]) == 0


def test_same_padding_stride_one_collides():
    ax = axis_pivots(224, 224, 3, 1, 1, 1)
    assert not ax.distinct and ax.rows[0] == ax.rows[1] == 0


@pytest.mark.parametrize("s,p,k", [(2, 1, 3), (3, 1, 3), (3, 2, 3), (4, 3, 5), (3, 2, 7)])
def test_padding_below_stride_and_kernel_is_distinct(s, p, k):
    n_out = (20 + 2 * p - (k - 1) - 1) // s + 1
    assert axis_pivots(20, n_out, k, s, p, 1).distinct


def test_padding_at_least_kernel_leaves_outputs_in_padding():
    ax = axis_pivots(20, 6, 3, 4, 3, 1)  # output 0 reads rows -3..-1 only
    assert not ax.complete and ax.taps[0] == -1


def test_pivot_plan_combines_axes_and_explains():
    plan = pivot_plan((7, 7), (4, 4), (3, 3), (2, 2), (1, 1), (1, 1))
    assert plan.exact and plan.n_out == 16 and plan.counts == ((3, 1, 0), (3, 1, 0))
    bad = pivot_plan((5, 5), (5, 5), (3, 3), (1, 1), (1, 1), (1, 1))
    assert not bad.exact and "collide along H, W" in bad.reason()
    half = pivot_plan((5, 9), (5, 5), (3, 3), (1, 2), (1, 1), (1, 1))
    assert "collide along H" in half.reason() and "W" not in half.reason().split("(")[0].split("along")[1]


def test_outputs_in_padding_only_are_reported():
    ax = axis_pivots(2, 5, 1, 1, 2, 1)  # 1x1 kernel with padding 2: outputs 0,1,4 see only padding
    assert not ax.complete and ax.taps == (-1, -1, 0, 0, -1)
    assert "see only padding" in pivot_plan((2,), (5,), (1,), (1,), (2,), (1,)).reason()
