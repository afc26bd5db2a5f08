"""Issue 21, the sweep's statistics: intervals with their stated coverage (simulated under the null
through the sweep's own functions), the censored outcome's sign-flip test, the minimum number of
pairs, the primary outcome's verdict and the exploratory rest, and what "no detectable effect" rules out."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps
from test_sweep import PLACEMENT, curve

from entropyflow.sweep import stats
from entropyflow.sweep.output import summary_csv, summary_json
from entropyflow.sweep.spec import SweepSpec
from entropyflow.sweep.summary import summarize, trial_summary

SWEEPS = 4000  # per n: the Monte-Carlo s.e. of a 5 % rate is 0.0034


def within_mc(rate: float, expected: float, n: int) -> bool:
    return abs(rate - expected) <= 3.0 * math.sqrt(expected * (1.0 - expected) / n)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_t_interval_has_its_coverage_under_the_null(n):
    rng = np.random.default_rng(21_000 + n)
    seed_effect = rng.normal(0.0, 1.0, size=(SWEEPS, n))  # what a seed does to both runs
    cell = seed_effect + rng.normal(0.0, 0.3, size=(SWEEPS, n))
    base = seed_effect + rng.normal(0.0, 0.3, size=(SWEEPS, n))
    p, low, high = stats.t_test(cell - base)
    covered = (low <= 0) & (high >= 0)
    assert within_mc(float(covered.mean()), 0.95, SWEEPS), covered.mean()
    assert within_mc(float((p < stats.ALPHA).mean()), 0.05, SWEEPS), (p < stats.ALPHA).mean()
    assert np.array_equal(~covered, p < stats.ALPHA)  # the interval never contradicts the test
    # and the sweep's per-cell comparison is exactly these functions
    for k in range(3):
        effect = stats.paired(cell[k], base[k])
        assert (effect.p, effect.ci_low, effect.ci_high) == (p[k], low[k], high[k]) and effect.p_t == p[k]


def test_the_t_interval_equals_scipy_on_recorded_numbers():
    cell = [0.912, 0.905, 0.921, 0.899, 0.915, 0.908, 0.917, 0.902, 0.911, 0.920]
    base = [0.903, 0.901, 0.910, 0.899, 0.904, 0.900, 0.911, 0.898, 0.906, 0.909]
    effect = stats.paired(cell, base)
    ref = sps.ttest_rel(cell, base)
    ci = ref.confidence_interval(0.95)
    assert effect.p == pytest.approx(ref.pvalue, rel=1e-12) and effect.test == "paired t-test"
    assert (effect.ci_low, effect.ci_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))


def brute_sign_flip(d):
    d = np.asarray(d, dtype=float)
    flips = [abs(np.dot(s, d)) for s in itertools.product((1, -1), repeat=d.size)]
    return sum(f >= abs(d.sum()) - 1e-12 for f in flips) / len(flips)


def test_the_exact_sign_flip_test_and_its_interval_on_explicit_enumerations():
    for d in ([1, 2, 3, 4, 5, 6], [3, -1, 4, 5, 2, 6, 1, 0], [2, -2, 1, 0, 3], [0.5, -0.25, 1.0]):
        assert stats.sign_flip_p(d) == pytest.approx(brute_sign_flip(d), abs=1e-15)
    assert stats.sign_flip_p([1, 2, 3, 4, 5, 6]) == 2 / 64  # only the identity and the all-minus vector
    low, high = stats.sign_flip_interval([3, -1, 4, 5, 2, 6, 1, 0])
    assert (low, high) == (pytest.approx(1 / 3, abs=1e-12), pytest.approx(14 / 3, abs=1e-12))
    d = np.array([3, -1, 4, 5, 2, 6, 1, 0], dtype=float)
    assert brute_sign_flip(d - low) > 0.05 and brute_sign_flip(d - (low - 1e-6)) <= 0.05
    assert brute_sign_flip(d - high) > 0.05 and brute_sign_flip(d - (high + 1e-6)) <= 0.05
    # 5 pairs or fewer: 2/2ⁿ ≥ 0.0625, no shift can be rejected, the interval is unbounded
    assert stats.sign_flip_interval([1, 2, 3, 4, 5]) == (-math.inf, math.inf)
    # beyond 12 pairs: 10,000 fixed-seed random sign vectors, reproducible, p = (1 + count)/(1 + 10,000)
    big = np.arange(15.0) - 3
    p = stats.sign_flip_p(big)
    assert p == stats.sign_flip_p(big) and p * 10_001 == pytest.approx(round(p * 10_001))
    assert p == pytest.approx(brute_sign_flip(big), abs=0.005)


@pytest.mark.parametrize("n", [3, 5, 10, 15])
def test_the_censored_outcome_test_holds_its_level_under_the_null(n):
    epochs, sweeps = 10, (SWEEPS if n <= 12 else 600)
    rng = np.random.default_rng(2100 + n)
    speed = rng.uniform(0.05, 0.4, size=(sweeps, n, 1))  # per seed, shared by the cell and the baseline
    hit = rng.geometric(np.broadcast_to(speed, (sweeps, n, 2)))  # the epoch each run reaches the target
    restricted = np.minimum(hit, epochs + 1).astype(float)  # min(T, E + 1): never reached → E + 1
    assert (restricted == epochs + 1).mean() > 0.12  # censoring is common in this simulation
    d = restricted[..., 0] - restricted[..., 1]
    p = stats.sign_flip_p(d)
    fpr = float((p <= stats.ALPHA).mean())
    assert fpr <= stats.ALPHA + 3.0 * math.sqrt(0.05 * 0.95 / sweeps), fpr
    if n <= 5:
        assert fpr == 0.0  # the smallest exact p is 2/2ⁿ ≥ 0.0625
    for k in range(4 if n <= 12 else 1):  # the interval never contradicts the test
        effect = stats.paired(restricted[k, :, 0], restricted[k, :, 1], censored=True)
        assert effect.p == p[k] and effect.p_t is None
        assert (effect.ci_low <= 0 <= effect.ci_high) == (effect.p > stats.ALPHA)


SPEC = SweepSpec(lambdas=(0.0, 1.0), placements=(PLACEMENT,), seeds=tuple(range(6)), epochs=10, metric="loss",
                 target=0.5)  # fmt: skip


def sweep(spec, base_curves, cell_curves):
    trials = [trial_summary("baseline", s, curve(v), spec) for s, v in zip(spec.seeds, base_curves, strict=True)]
    trials += [trial_summary("p λ=1", s, curve(v), spec) for s, v in zip(spec.seeds, cell_curves, strict=True)]
    return summarize(spec, trials)


def test_the_primary_outcome_gets_the_verdict_and_the_rest_is_exploratory():
    # the cell reaches the target at epoch 2 on every seed, the baseline at epoch 4 (6 seeds: p = 2/64)
    base = [[1.0, 0.8, 0.6, 0.4 - 0.01 * s] for s in range(6)]
    cell = [[0.9, 0.4 - 0.02 * s] for s in range(6)]
    summary = sweep(SPEC, base, cell)
    c = summary.cell("p λ=1")
    e = c.versus["epochs_to_target"]
    assert e.test == stats.SIGN_FLIP and e.mean == -2.0 and e.p == 2 / 64 and e.p_holm == 2 / 64
    assert (e.ci_low, e.ci_high) == (-2.0, -2.0)  # every difference is −2: the inverted test's interval
    assert c.verdict["epochs_to_target"] == "better" and summary.best == "p λ=1"
    assert c.verdict["final"] == c.verdict["best"] == c.verdict["seconds_to_target"] == "exploratory"
    assert c.versus["final"].test == stats.T_TEST and c.versus["final"].ci_low is not None
    doc = json.loads(summary_json(summary, [], {}))
    st = doc["statistics"]
    assert st["primary"] == "epochs_to_target" and st["min_pairs"] == 5
    assert st["exploratory"] == ["final", "best", "seconds_to_target"]
    assert st["test"]["epochs_to_target"] == stats.SIGN_FLIP and st["test"]["final"] == stats.T_TEST
    assert "horizon E = the epochs of a trial = 10" in st["censored"]["epochs_to_target"]
    outcomes = doc["cells"][1]["outcomes"]
    assert outcomes["epochs_to_target"]["role"] == "primary" and outcomes["final"]["role"] == "exploratory"
    assert "seconds_to_target_test" in summary_csv(summary).decode().splitlines()[0].split(",")


def test_below_five_pairs_there_is_no_verdict():
    spec = replace(SPEC, seeds=(0, 1, 2, 3))
    base = [[1.0, 0.8, 0.6, 0.4] for _ in range(4)]
    cell = [[0.9, 0.4] for _ in range(4)]
    summary = sweep(spec, base, cell)
    c = summary.cell("p λ=1")
    assert c.versus["epochs_to_target"].n == 4 and c.versus["epochs_to_target"].p_holm is None
    assert c.verdict["epochs_to_target"] == "too few pairs for a verdict"
    assert summary.best is None
    assert summary.reason == (
        "no cell has the 5 paired seeds a verdict on the epochs to reach loss ≤ 0.5 needs; 1 cell has fewer than 5 "
        "paired seeds (too few pairs for a verdict)"
    )


def test_no_detectable_effect_says_what_it_rules_out():
    spec = replace(SPEC, target=None)  # primary: the final loss, t-test
    base = [[1.0, 0.5 + 0.01 * s] for s in range(6)]
    noise = [0.004, -0.003, 0.001, -0.002, 0.003, -0.001]
    cell = [[1.0, 0.5 + 0.01 * s + noise[s]] for s in range(6)]
    summary = sweep(spec, base, cell)
    e = summary.cell("p λ=1").versus["final"]
    d = np.array(noise)
    half = sps.t.ppf(0.975, 5) * d.std(ddof=1) / math.sqrt(6)
    assert e.ci_low == pytest.approx(d.mean() - half, rel=1e-9)
    assert e.ci_high == pytest.approx(d.mean() + half, rel=1e-9)
    assert summary.cell("p λ=1").verdict["final"] == (
        f"no detectable effect; ruled out: improvement > {-e.ci_low:.4g}, harm > {e.ci_high:.4g}"
    )
    assert stats.ruled_out(e, smaller_is_better=True) == (-e.ci_low, e.ci_high)
    outcomes = json.loads(summary_json(summary, [], {}))["cells"][1]["outcomes"]
    assert outcomes["final"]["ruled_out"] == {"improvement_above": -e.ci_low, "harm_above": e.ci_high}
