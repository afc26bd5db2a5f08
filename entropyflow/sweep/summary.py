"""From trials to outcomes: per trial, per cell, and each cell against the baseline, paired by seed.

Outcomes of a trial (the metric's values over its epochs):

* ``final``: the value at the last epoch; ``best``: the best value over all epochs;
* ``epochs_to_target``: the restricted time to target, ``min(T, E + 1)``: ``T`` is the first
  epoch (1-based) whose value reaches ``--target``, ∞ for a trial that never reaches it within
  the horizon ``E = --epochs`` (or before early stopping ends it), so such a trial is *censored*
  and counts as ``E + 1``, slower than any trial that did; a cell that reaches the target in
  fewer seeds cannot look faster by dropping them. Being censored, it is compared by a paired
  sign-flip permutation test of its mean, not a t-test (see :mod:`.stats`); the tables say how
  many reached the target.
* ``seconds_to_target``: the wall time from the end of epoch 1 to the end of that epoch
  (``wall_s`` of the target epoch − ``wall_s`` of the first reported epoch; 0 when epoch 1 reaches
  it). The first epoch is excluded because it carries what a fresh Ray worker pays once (imports,
  first calls: 10 s against 0.6 s on a reused worker), which would be charged to whichever cell
  happened to start a worker. Wall time cannot be censored the same way, so it is compared over
  the seeds where both runs reached the target (the pair count shows it). The trials ran
  concurrently on shared hardware, so the clock also measures their neighbours: every report of
  it says so (:class:`Timing`, ``SHARED``), and a verdict on it carries those words.
* ``stop_epoch``: the epoch at which early stopping with ``--patience P`` ends training (no
  improvement in P epochs, as Keras and the paper's experiments count it); with a patience, the
  sweep also ends each trial there.

Each cell is compared to the baseline over the seeds both have (see :mod:`.stats`); p-values are
Holm-corrected over the cells (with at least ``MIN_PAIRS`` pairs), per outcome. Only the primary
outcome (``--primary``) gets a verdict; the others are exploratory: estimates with 95 %
intervals, no verdict, not corrected across outcomes.

A trial whose metric was NaN, infinite or beyond ±1e100 at any epoch (:func:`.contract.unusable`)
has no outcomes: a cell with such a trial, or paired with such a baseline trial, gets no mean and
no verdict, but ``n/a`` and the reason (``n/a: 2 trials reported NaN``). Dropping those seeds
instead would hide exactly the runs that diverged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import stats
from .contract import MAX_METRIC, unusable
from .spec import BASELINE, LOWER_IS_BETTER_ALWAYS, OUTCOMES, Cell, SweepSpec

SHARED = "trials shared a machine"
CLOCK = (
    "wall_s: seconds since the trial's training function was called, on its Ray worker "
    "(time.perf_counter), as reported in trials.csv"
)
SECONDS_TO_TARGET = (
    "seconds_to_target: wall_s at the epoch that reached the target minus wall_s at the first epoch, "
    "so the first epoch (a fresh worker's imports and first calls) is excluded; 0 when epoch 1 reached it"
)


@dataclass(frozen=True)
class Timing:
    """What the wall clock measures and where the trials ran: every wall-clock outcome is shown
    with it, because trials that share a machine (and a driver) slow each other down."""

    where: str = "not recorded"  # "local Ray with 2 CPUs, 1 CPU per trial" or "the Ray cluster at ADDR"
    at_once: int | None = None  # the most trials that could run at the same time; None: not known
    order: str = "as given"  # the order the trials were launched in

    def caveat(self) -> str:
        """``trials shared a machine (local Ray …: up to 2 trials at once)``."""
        at_once = "" if self.at_once is None else f": up to {self.at_once} trial{'s' * (self.at_once != 1)} at once"
        return f"{SHARED} ({self.where}{at_once})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": CLOCK,
            "seconds_to_target": SECONDS_TO_TARGET,
            "first_epoch_excluded": True,
            "shared": self.caveat(),
            "where": self.where,
            "at_once": self.at_once,
            "launch_order": self.order,
        }


@dataclass(frozen=True)
class TrialSummary:
    cell: str
    seed: int
    epochs: int
    values: dict[str, float | None]  # outcome → value (None: not applicable, or not reached: seconds_to_target)
    error: str | None = None
    reached: bool = False  # reached the target (epochs_to_target is censored otherwise)
    unusable: str | None = None  # the first NaN, infinite or huge metric value it reported (then no outcomes)


@dataclass(frozen=True)
class CellSummary:
    cell: Cell
    trials: tuple[TrialSummary, ...]
    mean: dict[str, float | None]
    se: dict[str, float | None]
    reached: int  # trials that reached the target
    failed: int
    versus: dict[str, stats.Paired] = field(default_factory=dict)  # outcome → against the baseline
    verdict: dict[str, str] = field(default_factory=dict)
    na: str | None = None  # why there are no statistics: "n/a: 2 trials reported NaN"


@dataclass(frozen=True)
class SweepSummary:
    spec: SweepSpec
    cells: tuple[CellSummary, ...]
    best: str | None
    reason: str
    timing: Timing = Timing()

    @property
    def primary(self) -> str:
        """The outcome the best cell is chosen on."""
        return self.spec.primary_outcome

    @property
    def patience(self) -> int | None:
        return self.spec.patience

    @property
    def outcomes(self) -> tuple[str, ...]:
        return self.spec.outcomes

    def cell(self, name: str) -> CellSummary:
        return next(c for c in self.cells if c.cell.name == name)


def trial_summary(
    cell: str,
    seed: int,
    rows: Sequence[dict[str, Any]],
    spec: SweepSpec,
    error: str | None = None,
) -> TrialSummary:
    """The outcomes of one trial from its reported rows (``epoch`` and the metric)."""
    metric, mode = spec.metric, spec.mode
    rows = sorted((r for r in rows if r.get(metric) is not None), key=lambda r: r["epoch"])
    values = [float(r[metric]) for r in rows]
    out: dict[str, float | None] = dict.fromkeys(OUTCOMES)
    bad = next((v for v in values if unusable(v)), None)
    if bad is not None:
        return TrialSummary(cell, seed, len(values), out, error, unusable=_value_text(bad))
    hit: int | None = None
    if values:
        out["final"], out["best"] = values[-1], stats.best(values, mode)
        if spec.target is not None:
            hit = stats.reached(values, spec.target, mode)
            if hit is not None:
                out["epochs_to_target"] = float(rows[hit]["epoch"])
                out["seconds_to_target"] = seconds_to_target(rows, hit)
            elif error is None:
                out["epochs_to_target"] = float(spec.epochs + 1)  # censored: never reached within the budget
        if spec.patience is not None:
            out["stop_epoch"] = float(stats.stop_epoch(values, spec.patience, mode))
    return TrialSummary(cell, seed, len(values), out, error, reached=hit is not None)


def seconds_to_target(rows: Sequence[dict[str, Any]], hit: int) -> float:
    """Wall time from the end of the first reported epoch to the end of ``rows[hit]`` (rows sorted
    by epoch): what a fresh worker pays once lands in epoch 1 and is left out; NaN without ``wall_s``."""
    first, at = rows[0].get("wall_s"), rows[hit].get("wall_s")
    if first is None or at is None:
        return float("nan")
    return float(at) - float(first)


def summarize(spec: SweepSpec, trials: Sequence[TrialSummary], *, timing: Timing | None = None) -> SweepSummary:
    """Per-cell statistics and the paired comparisons against the baseline. ``timing``: how the
    trials were run (said wherever a wall-clock outcome is shown)."""
    timing = timing or Timing()
    by_cell: dict[str, list[TrialSummary]] = {c.name: [] for c in spec.cells}
    for t in trials:
        by_cell.setdefault(t.cell, []).append(t)
    base = {t.seed: t for t in by_cell.get(BASELINE, []) if t.error is None}
    cells = []
    for cell in spec.cells:
        done = [t for t in by_cell[cell.name] if t.error is None]
        bad = [t for t in done if t.unusable is not None]
        base_bad = [] if cell.name == BASELINE else [base[t.seed] for t in done if t.seed in base]
        na = not_available(bad, [t for t in base_bad if t.unusable is not None])
        mean: dict[str, float | None] = dict.fromkeys(OUTCOMES)
        se: dict[str, float | None] = dict.fromkeys(OUTCOMES)
        for outcome in OUTCOMES if not bad else ():
            mean[outcome], se[outcome] = stats.mean_se(stats.present(t.values[outcome] for t in done))
        versus: dict[str, stats.Paired] = {}
        if cell.name != BASELINE and na is not None:
            versus = {
                outcome: stats.Paired(0, None, None, None, None, None, None, test=test_of(outcome))
                for outcome in OUTCOMES
            }
        elif cell.name != BASELINE:
            for outcome in OUTCOMES:
                pairs = [
                    (a, b)
                    for t in sorted(done, key=lambda t: t.seed)
                    if t.seed in base
                    and (a := t.values[outcome]) is not None
                    and (b := base[t.seed].values[outcome]) is not None
                ]
                versus[outcome] = stats.paired(
                    [a for a, _ in pairs], [b for _, b in pairs], censored=outcome in CENSORED
                )
        cells.append(
            CellSummary(
                cell,
                tuple(by_cell[cell.name]),
                mean,
                se,
                sum(1 for t in done if t.reached),
                len(by_cell[cell.name]) - len(done),
                versus,
                na=na,
            )
        )
    # Holm over the grid (the cells with enough pairs for a verdict), per outcome; then the verdicts:
    # on the primary outcome only, the others are exploratory
    corrected = []
    for outcome in OUTCOMES:
        others = [c for c in cells if c.cell.name != BASELINE]
        family = [c.versus[outcome].p if c.versus[outcome].n >= stats.MIN_PAIRS else None for c in others]
        for c, p in zip(others, stats.holm(family), strict=True):
            c.versus[outcome] = _with_holm(c.versus[outcome], p)
    for c in cells:
        for outcome, effect in c.versus.items():
            if outcome != spec.primary_outcome:
                c.verdict[outcome] = c.na or stats.EXPLORATORY
                continue
            c.verdict[outcome] = c.na or stats.verdict(effect, smaller_is_better=smaller_is_better(outcome, spec))
            if outcome in WALL_CLOCK and c.na is None:
                c.verdict[outcome] += f"; {SHARED}"  # a wall-clock verdict never without its caveat
        corrected.append(c)
    best, reason = _best(corrected, spec)
    if spec.primary_outcome in WALL_CLOCK:
        reason += f"; {timing.caveat()}"
    return SweepSummary(spec, tuple(corrected), best, reason, timing)


CENSORED = frozenset({"epochs_to_target"})  # compared by the sign-flip test of the restricted mean
WALL_CLOCK = frozenset({"seconds_to_target"})  # measured on a machine the trials shared


def test_of(outcome: str) -> str:
    """The test (and the interval inverting it) an outcome is compared by."""
    return stats.SIGN_FLIP if outcome in CENSORED else stats.T_TEST


def smaller_is_better(outcome: str, spec: SweepSpec) -> bool:
    return outcome in LOWER_IS_BETTER_ALWAYS or spec.mode == "min"


def _with_holm(p: stats.Paired, holm: float | None) -> stats.Paired:
    return replace(p, p_holm=holm)


def _value_text(v: float) -> str:
    return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.3g}"


def not_available(bad: Sequence[TrialSummary], base_bad: Sequence[TrialSummary]) -> str | None:
    """Why a cell has no statistics: its trials (or the baseline trials of its seeds) reported
    metric values that cannot be summarised; None when there are none."""
    if not bad and not base_bad:
        return None
    kinds = []
    for t in (*bad, *base_bad):
        v = t.unusable or ""
        kind = v if v in ("NaN", "inf", "-inf") else f"{v} (beyond ±{MAX_METRIC:.0e})".replace("e+", "e")
        if kind not in kinds:
            kinds.append(kind)
    n = len(bad) + len(base_bad)
    text = f"n/a: {n} trial{'s' if n != 1 else ''} reported {' or '.join(kinds)}"
    return text + (f" ({len(base_bad)} of them the baseline's)" if base_bad else "")


WHAT = {
    "final": "the final {metric}",
    "best": "the best {metric}",
    "epochs_to_target": "the epochs to reach {metric} {target}",
    "seconds_to_target": "the time after epoch 1 to reach {metric} {target}",  # the first epoch is not timed
    "stop_epoch": "the early-stopping epoch (patience {patience})",
}


def describe(outcome: str, spec: SweepSpec) -> str:
    """The outcome in words (``the epochs to reach val_loss ≤ 0.01``)."""
    target = f"{'≤' if spec.mode == 'min' else '≥'} {spec.target:g}" if spec.target is not None else ""
    return WHAT[outcome].format(metric=spec.metric, target=target, patience=spec.patience)


def _best(cells: Sequence[CellSummary], spec: SweepSpec) -> tuple[str | None, str]:
    primary = spec.primary_outcome
    lower = smaller_is_better(primary, spec)
    winners = [c for c in cells if stats.kind(c.verdict.get(primary, "")) == "better"]
    what = describe(primary, spec)
    others = [c for c in cells if c.cell.name != BASELINE]
    na = [c for c in others if c.na is not None]
    missing = ""
    few = [c for c in others if c.na is None and stats.kind(c.verdict.get(primary, "")) == stats.TOO_FEW]
    if few:
        have = "cells have" if len(few) > 1 else "cell has"
        missing += f"; {len(few)} {have} fewer than {stats.MIN_PAIRS} paired seeds ({stats.TOO_FEW})"
    if na:
        have = "cells have" if len(na) > 1 else "cell has"
        missing += f"; {len(na)} {have} no verdict ({na[0].na}{', …' * (len(na) > 1)})"
    if not winners:
        family = sum(1 for c in others if c.versus[primary].p_holm is not None)
        if family == 0:
            return None, f"no cell has the {stats.MIN_PAIRS} paired seeds a verdict on {what} needs{missing}"
        counted = f"the {family} cells" if family > 1 else "the 1 cell"
        return None, (
            f"no cell beats the baseline significantly on {what} ({test_of(primary)} over the seeds, "
            f"Holm-corrected over {counted} with at least {stats.MIN_PAIRS} pairs, α = 0.05){missing}"
        )
    pick = min(winners, key=lambda c: (c.versus[primary].mean or 0.0) * (1.0 if lower else -1.0))
    effect = pick.versus[primary]
    reason = (
        f"{pick.cell.name} improves {what} by {abs(effect.mean or 0.0):.4g} on average over "
        f"{effect.n} paired seeds (95 % CI {effect.ci_low:.4g} … {effect.ci_high:.4g}, {effect.test}, "
        f"Holm-corrected p = {effect.p_holm:.3g})"
    )
    costs = [describe(o, spec) for o in spec.outcomes if o != primary and worse_side(pick.versus.get(o), o, spec)]
    if costs:
        reason += f"; but (exploratory, uncorrected) its 95 % interval lies on the worse side for {' and '.join(costs)}"
    return pick.cell.name, reason


def worse_side(effect: stats.Paired | None, outcome: str, spec: SweepSpec) -> bool:
    """The 95 % interval of a (secondary) outcome excludes 0 on the side of harm."""
    if effect is None or effect.ci_low is None or effect.ci_high is None:
        return False
    return effect.ci_low > 0 if smaller_is_better(outcome, spec) else effect.ci_high < 0
