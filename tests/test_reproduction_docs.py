"""docs/reproduction.md states numbers of the saved sweeps: recompute some of them from the
committed trials (docs/reproduction/*/trials.csv.gz) and check that the page says them, so the
page cannot drift from the data. Fast: no training, no Ray, a few CSV reads."""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from entropyflow.sweep import stats

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reproduction.md"
DATA = ROOT / "docs" / "reproduction"


@cache
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def runs(task: str, metric: str) -> dict[str, dict[int, list[tuple[int, float, float]]]]:
    """cell → seed → [(epoch, wall_s, metric)] in epoch order."""
    out: dict[str, dict[int, list[tuple[int, float, float]]]] = defaultdict(lambda: defaultdict(list))
    with gzip.open(DATA / task / "trials.csv.gz", "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            assert not row["error"], f"{task}: a failed trial in the saved sweep"
            out[row["cell"]][int(row["seed"])].append((int(row["epoch"]), float(row["wall_s"]), float(row[metric])))
    return {cell: {seed: sorted(rows) for seed, rows in seeds.items()} for cell, seeds in out.items()}


def finals(task: str, metric: str, cell: str) -> np.ndarray:
    by_seed = runs(task, metric)[cell]
    return np.array([by_seed[s][-1][2] for s in sorted(by_seed)])


def signed(v: float, digits: int) -> str:
    """A number as the page writes it: explicit sign, a true minus."""
    return f"{v:+.{digits}f}".replace("-", "−")


def test_autoencoder_final_mse_ratio_and_runs_reaching_the_target() -> None:
    base = finals("ae", "val_loss", "baseline").mean()
    expected = {"1e-4": 1.7, "1e-3": 3.7, "1e-2": 4.3, "0.1": 4.4, "1": 4.4}  # what the page's prose says
    reaching = {"1e-4": 10, "1e-3": 2, "1e-2": 0, "0.1": 0, "1": 0}
    for lam, ratio in expected.items():
        cell = f"dense-first λ={float(lam):g}"
        mean = finals("ae", "val_loss", cell).mean()
        assert round(mean / base, 1) == ratio
        hit = sum(any(v <= 0.01 for _, _, v in rows) for rows in runs("ae", "val_loss")[cell].values())
        assert hit == reaching[lam]
        row = f"| λ1 = {lam} | {mean:.5f} | {mean / base:.1f} |"
        assert row in doc(), row
        assert f"| {hit}/10 |" in doc().split(row, 1)[1].splitlines()[0]
    assert "2 of the\n10 runs (seeds 1 and 6) do reach MSE ≤ 0.01, at epochs 222 and 249" in doc()


def stop_epochs(cell: str) -> np.ndarray:
    """Each seed's early-stopping epoch (patience 7 on the validation MSE), as the sweep counts it."""
    by_seed = runs("ae", "val_loss")[cell]
    return np.array([stats.stop_epoch([v for *_, v in by_seed[s]], 7, "min") for s in sorted(by_seed)])


def test_autoencoder_primary_verdict_and_interval() -> None:
    base, stops = stop_epochs("baseline"), stop_epochs("dense-first λ=0.0001")
    assert base.mean() == pytest.approx(800.7) and stops.mean() == pytest.approx(665.7)
    effect = stats.paired(stops, base)
    assert effect.ci_low is not None and effect.ci_high is not None and effect.ci_high < 0  # earlier: 'better'
    assert f"| λ1 = 1e-4 | 665.7 | −135.0 ({signed(effect.ci_low, 1)}, {signed(effect.ci_high, 1)}) |" in doc()


def test_cnn_no_cell_beats_the_baseline_and_the_largest_gain_ruled_out() -> None:
    base = finals("cnn", "val_acc", "baseline")
    cells = [c for c in runs("cnn", "val_acc") if c != "baseline"]
    effects = {c: stats.paired(finals("cnn", "val_acc", c), base) for c in cells}
    holm = dict(zip(cells, stats.holm([effects[c].p for c in cells]), strict=True))
    assert len(cells) == 9 and min(holm.values()) >= stats.ALPHA  # no verdict but 'no detectable effect'
    assert holm["all λ=0.0001"] == pytest.approx(0.38, abs=0.005)
    top = effects["first λ=0.01"]
    assert top.mean is not None and top.ci_low is not None and top.ci_high is not None
    interval = f"({signed(100 * top.ci_low, 2)}, {signed(100 * top.ci_high, 2)})"
    stated = f"| first λ2 = 1e-2 | 97.58 % | {signed(100 * top.mean, 2)} {interval} | 1 |"
    assert stated in doc(), stated
    assert max(e.ci_high for e in effects.values() if e.ci_high is not None) == pytest.approx(0.0023, abs=5e-5)
    section = doc().split("## CNN classifier", 1)[1].split("## U-Net", 1)[0]
    assert section.count("| no detectable effect; ruled out: ") == 9


def test_unet_primary_interval_and_first_epoch_times() -> None:
    def epochs_to_target(cell: str) -> np.ndarray:
        by_seed = runs("unet", "val_iou")[cell]
        return np.array([next(e for e, _, v in by_seed[s] if v >= 0.777) for s in sorted(by_seed)], dtype=float)

    base, cell = epochs_to_target("baseline"), epochs_to_target("pre-skip λ=0.001")
    assert base.mean() == pytest.approx(13.1) and cell.mean() == pytest.approx(12.5)
    assert stats.sign_flip_interval(cell - base) == pytest.approx((-1.5, 0.0))
    assert "| pre-skip λ2 = 1e-3 | 12.5 | −0.6 (−1.5, 0.0) | 1 | no detectable effect; ruled out: saving > 1.5" in doc()
    first = {c: [rows[0][1] for rows in seeds.values()] for c, seeds in runs("unet", "val_iou").items()}
    base_first = np.mean(first.pop("baseline"))
    cells_first = np.mean([t for times in first.values() for t in times])
    assert f"took {base_first:.2f} s on\n  average for the baseline trials" in doc()
    assert f"and {cells_first:.2f} s for the λ trials" in doc()


def test_saved_summaries_are_rederived_with_the_current_statistics() -> None:
    for task in ("ae", "cnn", "unet"):
        saved = json.loads((DATA / task / "summary.json").read_text(encoding="utf-8"))
        assert "rederived" in saved["provenance"] and saved["provenance"]["ray"].startswith("2.60.0")
        roles = {o: v["role"] for o, v in saved["cells"][1]["outcomes"].items()}
        assert [o for o, r in roles.items() if r == "primary"] == [saved["primary_outcome"]]
    cnn = json.loads((DATA / "cnn" / "summary.json").read_text(encoding="utf-8"))
    verdicts = {stats.kind(c["outcomes"]["final"]["verdict"]) for c in cnn["cells"][1:]}
    assert verdicts == {stats.NO_EFFECT}
