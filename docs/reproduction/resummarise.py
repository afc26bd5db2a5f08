"""Re-derive the saved sweeps' statistics from their trials, without training anything.

    python docs/reproduction/resummarise.py [--date YYYY-MM-DD] [TASK ...]

For each of ``ae``, ``cnn``, ``unet`` (or the ones named) this reads ``trials.csv.gz`` (every
trial's rows as the sweep wrote them) and the grid from ``summary.json``, rebuilds the trials,
re-runs the package's current ``trial_summary`` and ``summarize``, and rewrites ``summary.csv``,
``summary.json``, ``outcomes.png``, ``learning_curves.png`` and ``best.yaml`` in place through
``sweep_files`` (the files ``entropyflow sweep`` writes). The original run's provenance (Ray,
torch, machine, wall time) is kept as it was; a ``rederived`` note says when and from what the
statistics were recomputed. Same inputs, same package, same date: same bytes. It takes seconds.

Re-run it whenever entropyflow/sweep/{stats,summary,output}.py change what a summary says.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import gzip
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from entropyflow import __version__
from entropyflow.config import from_dict
from entropyflow.sweep import summary as summary_module
from entropyflow.sweep.events import TrialOutcome
from entropyflow.sweep.output import sweep_files
from entropyflow.sweep.spec import Placement, SweepSpec
from entropyflow.sweep.summary import SweepSummary, summarize, trial_summary

HERE = Path(__file__).resolve().parent
TASKS = ("ae", "cnn", "unet")
WRITTEN = ("summary.csv", "summary.json", "outcomes.png", "learning_curves.png", "best.yaml")
# How the original sweeps ran (their provenance says "local (2 CPUs)", one CPU per trial): the
# runner launches the trials cell by cell, so all baseline trials started before any λ trial.
WHERE = "local Ray with 2 CPUs, 1 CPU per trial"
AT_ONCE = 2
ORDER = "cell by cell: every baseline trial was launched before any λ trial"


def spec_from(doc: dict[str, Any]) -> SweepSpec:
    """The SweepSpec that ``SweepSpec.to_dict`` wrote into summary.json."""
    placements = tuple(Placement(name, from_dict(cfg)) for name, cfg in doc["placements"].items())
    spec = SweepSpec(
        lambdas=tuple(float(v) for v in doc["lambdas"]),
        placements=placements,
        seeds=tuple(int(s) for s in doc["seeds"]),
        epochs=int(doc["epochs"]),
        metric=doc["metric"],
        mode=doc["mode"],
        target=doc["target"],
        params=dict(doc["params"]),
        patience=doc["patience"],
        primary=doc["primary"],
    )
    if spec.to_dict() != doc:  # the grid must round-trip, or the cells' names and configs could differ
        raise SystemExit("the grid in summary.json does not round-trip through SweepSpec")
    return spec


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def read_trials(path: Path, spec: SweepSpec) -> list[TrialOutcome]:
    """Every trial's rows from trials.csv(.gz), in the order the sweep ran them (cells × seeds).
    A blank value is a metric the trial did not report at that epoch (the baseline's entropy_term)."""
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    errors: dict[tuple[str, int], str] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for line in csv.DictReader(f):
            key = (line.pop("cell"), int(line.pop("seed")))
            error = line.pop("error")
            if error:
                errors[key] = error
                continue
            rows.setdefault(key, []).append({k: _number(v) for k, v in line.items() if v != ""})
    keys = [(cell.name, seed) for cell in spec.cells for seed in spec.seeds]
    missing = [k for k in keys if k not in rows and k not in errors]
    if missing or set(rows) - set(keys):
        raise SystemExit(f"{path}: the trials do not match the grid ({len(missing)} missing)")
    return [
        TrialOutcome(cell, seed, tuple(rows.get((cell, seed), ())), errors.get((cell, seed))) for cell, seed in keys
    ]


def resummarise(spec: SweepSpec, outcomes: Sequence[TrialOutcome]) -> SweepSummary:
    trials = [trial_summary(o.cell, o.seed, o.rows, spec, o.error) for o in outcomes]
    summary = summarize(spec, trials)
    timing = getattr(summary_module, "Timing", None)
    if timing is not None and any(f.name == "timing" for f in dataclasses.fields(summary)):
        # the wall-clock caveat of the original runs (only where this version of the package reports one)
        summary = dataclasses.replace(summary, timing=timing(where=WHERE, at_once=AT_ONCE, order=ORDER))
    return summary


def provenance(original: dict[str, Any], date: str) -> dict[str, Any]:
    """The original run's provenance, untouched, and a note of the re-derivation."""
    original = {k: v for k, v in original.items() if k != "rederived"}
    return {
        **original,
        "rederived": {
            "date": date,
            "from": "trials.csv.gz (the original run's rows; no trial was re-run)",
            "by": "python docs/reproduction/resummarise.py",
            "entropyflow": __version__,
            "note": "the statistics (summary.csv, summary.json, the figures, best.yaml) were re-derived on "
            f"{date} from the saved trials with the package's current statistics; everything else in this "
            "provenance describes the original run",
        },
    }


def check_rows(files: dict[str, bytes], saved: Path) -> None:
    """The rebuilt trials must write back the saved trials.csv byte for byte: nothing was lost."""
    with gzip.open(saved, "rb") as f:
        if files["trials.csv"] != f.read():
            raise SystemExit(f"{saved}: the rebuilt trials do not reproduce it")


def run(task: str, date: str) -> SweepSummary:
    folder = HERE / task
    doc = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    spec = spec_from(doc["spec"])
    outcomes = read_trials(folder / "trials.csv.gz", spec)
    summary = resummarise(spec, outcomes)
    files = sweep_files(summary, outcomes, provenance(doc["provenance"], date))
    check_rows(files, folder / "trials.csv.gz")
    for name in WRITTEN:
        (folder / name).write_bytes(files[name])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="*", metavar="TASK", help=f"any of {', '.join(TASKS)} (default: all)")
    parser.add_argument(
        "--date", default=datetime.date.today().isoformat(), help="the date of the note (default: today)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task {unknown[0]} (use {', '.join(TASKS)})")
    out = io.StringIO()
    for task in args.tasks or TASKS:
        summary = run(task, args.date)
        out.write(f"{task}: {summary.best or 'no best cell'}: {summary.reason}\n")
    sys.stdout.write(out.getvalue())  # a script, not the library: it reports what it wrote
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
