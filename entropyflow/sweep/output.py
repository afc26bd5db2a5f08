"""A sweep's report files, rendered in memory (written as a whole by ``report.outdir``):

* ``trials.csv``: one row per trial per epoch (every reported metric, wall time), a failed trial's
  error on its own row;
* ``summary.csv``: one row per cell: per outcome the mean ± s.e. over seeds, the paired
  difference to the baseline with its 95 % bootstrap CI, t-test, Wilcoxon and Holm p-values,
  the verdict;
* ``summary.json``: all of it, with the grid and provenance;
* ``learning_curves.<fmt>``: per cell, its mean curve and band (± 1 s.e. over seeds) over the
  baseline's; ``outcomes.<fmt>``: per cell, every seed's epochs to the target (or final value),
  mean and 95 % CI;
* ``best.yaml``: the winning cell's λ config, or ``best: null`` and the reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import matplotlib
import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._version import __version__
from ..config import dumps
from ..report.figures import STYLE, save_figure
from . import stats
from .spec import BASELINE
from .summary import SweepSummary

SCHEMA = "entropyflow.sweep/1"
NUMBER_FIELDS = ("mean", "se", "ci_low", "ci_high", "p_t", "p_wilcoxon", "p_holm")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def trials_csv(outcomes: Sequence[Any], metrics: Sequence[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    columns = ["cell", "seed", "epoch", "wall_s", *metrics, "error"]
    w.writerow(columns)
    for o in sorted(outcomes, key=lambda o: (o.cell != BASELINE, o.cell, o.seed)):
        for row in sorted(o.rows, key=lambda r: r.get("epoch", 0)):
            w.writerow(
                [
                    o.cell,
                    o.seed,
                    _cell(row.get("epoch")),
                    _cell(row.get("wall_s")),
                    *[_cell(row.get(m)) for m in metrics],
                    "",
                ]
            )
        if o.error:
            w.writerow([o.cell, o.seed, "", "", *[""] * len(metrics), o.error])
    return buf.getvalue().encode("utf-8", "backslashreplace")


def summary_rows(summary: SweepSummary) -> list[dict[str, Any]]:
    rows = []
    for c in summary.cells:
        row: dict[str, Any] = {
            "cell": c.cell.name,
            "placement": c.cell.placement or "",
            "lambda": c.cell.lam,
            "seeds": len(c.trials),
            "failed": c.failed,
            "reached_target": c.reached,
        }
        for outcome in summary.outcomes:
            row[f"{outcome}_mean"], row[f"{outcome}_se"] = c.mean[outcome], c.se[outcome]
            effect = c.versus.get(outcome)
            for name in ("mean", "ci_low", "ci_high", "p_t", "p_wilcoxon", "p_holm"):
                row[f"{outcome}_diff_{name}" if name == "mean" else f"{outcome}_{name}"] = (
                    getattr(effect, name) if effect is not None else None
                )
            row[f"{outcome}_pairs"] = effect.n if effect is not None else None
            row[f"{outcome}_verdict"] = c.verdict.get(outcome, "")
        rows.append(row)
    return rows


def summary_csv(summary: SweepSummary) -> bytes:
    rows = summary_rows(summary)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(rows[0]))
    for row in rows:
        w.writerow([_cell(v) for v in row.values()])
    return buf.getvalue().encode("utf-8", "backslashreplace")


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def summary_json(summary: SweepSummary, outcomes: Sequence[Any], provenance: dict[str, Any]) -> bytes:
    cells = []
    for c in summary.cells:
        cells.append(
            {
                "cell": c.cell.name,
                "placement": c.cell.placement,
                "lambda": c.cell.lam,
                "seeds": len(c.trials),
                "failed": c.failed,
                "reached_target": c.reached,
                "outcomes": {
                    o: {
                        "mean": _json_number(c.mean[o]),
                        "se": _json_number(c.se[o]),
                        "versus_baseline": (
                            {k: _json_number(v) for k, v in asdict(c.versus[o]).items()} if o in c.versus else None
                        ),
                        "verdict": c.verdict.get(o),
                    }
                    for o in summary.outcomes
                },
                "trials": [
                    {
                        "seed": t.seed,
                        "epochs": t.epochs,
                        "error": t.error,
                        **({"reached_target": t.reached} if summary.spec.target is not None else {}),
                        **{o: _json_number(t.values[o]) for o in summary.outcomes},
                    }
                    for t in c.trials
                ],
            }
        )
    doc = {
        "schema": SCHEMA,
        "entropyflow": __version__,
        "spec": summary.spec.to_dict(),
        "primary_outcome": summary.primary,
        "best": summary.best,
        "reason": summary.reason,
        "tests": "paired by seed against the baseline: mean difference with a 95 % percentile bootstrap CI "
        "(10,000 resamples), two-sided paired t-test and Wilcoxon signed-rank (scipy), t-test p-values "
        "Holm-corrected over the cells per outcome; verdict at α = 0.05",
        "cells": cells,
        "failed": [f"{o.cell} seed {o.seed}: {o.error}" for o in outcomes if o.error],
        "provenance": provenance,
    }
    return (json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n").encode("utf-8", "backslashreplace")


def best_yaml(summary: SweepSummary) -> bytes:
    if summary.best is not None:
        config = summary.cell(summary.best).cell.config
        if config is not None:
            header = textwrap.fill(f"entropyflow sweep: the best cell, {summary.reason}", 98)
            return ("".join(f"# {line}\n" for line in header.splitlines()) + dumps(config)).encode()
    doc = {"best": None, "reason": summary.reason}
    return (
        "# entropyflow sweep: no λ config beats the baseline\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    ).encode()


def _curves(outcomes: Sequence[Any], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """cell → (epochs, mean, s.e.) over the seeds that reported every epoch up to the shortest run."""
    by_cell: dict[str, list[list[float]]] = {}
    for o in outcomes:
        values = [float(r[metric]) for r in sorted(o.rows, key=lambda r: r["epoch"]) if r.get(metric) is not None]
        if values and not o.error:
            by_cell.setdefault(o.cell, []).append(values)
    out = {}
    for cell, runs in by_cell.items():
        n = min(len(r) for r in runs)
        arr = np.array([r[:n] for r in runs])
        se = arr.std(axis=0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1 else np.zeros(n)
        out[cell] = (np.arange(1, n + 1), arr.mean(axis=0), se)
    return out


def learning_curves(summary: SweepSummary, outcomes: Sequence[Any]) -> Figure:
    spec = summary.spec
    curves = _curves(outcomes, spec.metric)
    cells = [c.cell.name for c in summary.cells if c.cell.name != BASELINE and c.cell.name in curves]
    ncols = max(1, min(3, len(cells)))
    nrows = max(1, math.ceil(len(cells) / ncols))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.6), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for k, ax in enumerate(axes.flat):
            if k >= len(cells):
                ax.set_visible(False)
                continue
            for name, color in ((BASELINE, "#636363"), (cells[k], "#3182bd")):
                if name not in curves:
                    continue
                x, mean, se = curves[name]
                ax.plot(x, mean, color=color, linewidth=1.4, label=name)
                ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2, linewidth=0)
            if spec.target is not None:
                ax.axhline(spec.target, color="#cb181d", linewidth=0.8, linestyle="--", label="target")
            verdict = summary.cell(cells[k]).verdict.get(summary.primary, "")
            ax.set_title(f"{cells[k]}: {verdict}", loc="left")
            ax.grid(color="#e5e5e5", linewidth=0.7)
            ax.legend(frameon=False, loc="best")
        for ax in axes[-1]:
            ax.set_xlabel("epoch")
        for ax in axes[:, 0]:
            ax.set_ylabel(spec.metric)
        title = (
            f"{spec.metric} over training: mean and ± 1 s.e. over {len(spec.seeds)} seeds, each cell over the baseline"
        )
        fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() / 0.085)), fontsize=11)
    return fig


def outcome_figure(summary: SweepSummary) -> Figure:
    outcome = summary.primary
    label = {
        "epochs_to_target": f"epochs to reach {summary.spec.metric} {'≤' if summary.spec.mode == 'min' else '≥'} "
        f"{summary.spec.target:g}"
        if summary.spec.target is not None
        else "",
        "final": f"final {summary.spec.metric}",
    }[outcome]
    cells = summary.cells
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(6.0, 1.0 + 1.1 * len(cells)), 4.4), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        rng = np.random.default_rng(0)
        for i, c in enumerate(cells):
            values = stats.present(t.values[outcome] for t in c.trials if t.error is None)
            color = "#636363" if c.cell.name == BASELINE else "#3182bd"
            if values:
                ax.plot(i + rng.uniform(-0.12, 0.12, len(values)), values, "o", color=color, alpha=0.55, markersize=4)
                mean = float(np.mean(values))
                half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
                ax.errorbar(i + 0.3, mean, yerr=half, fmt="D", color="black", markersize=5, capsize=3)
            missing = sum(1 for t in c.trials if t.error is None and t.values[outcome] is None)
            if missing:
                ax.annotate(
                    f"{missing} not reached",
                    (i, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="top",
                    fontsize=7,
                    color="#cb181d",
                )
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([c.cell.name for c in cells], rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.7)
        title = f"{label} per cell: every seed (dots), mean ± 1.96 s.e. (diamond)"
        fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() / 0.085)), fontsize=11)
    return fig


def sweep_files(
    summary: SweepSummary, outcomes: Sequence[Any], provenance: dict[str, Any], plot_format: str = "png"
) -> dict[str, bytes]:
    metrics = sorted(
        {
            k
            for o in outcomes
            for r in o.rows
            for k in r
            if k not in ("epoch", "wall_s") and isinstance(r.get(k), (int, float)) and not _tune_column(k)
        }
    )
    files = {
        "trials.csv": trials_csv(outcomes, metrics),
        "summary.csv": summary_csv(summary),
        "summary.json": summary_json(summary, outcomes, provenance),
        "best.yaml": best_yaml(summary),
    }
    if any(o.rows for o in outcomes):
        files[f"learning_curves.{plot_format}"] = save_figure(learning_curves(summary, outcomes), plot_format)
        files[f"outcomes.{plot_format}"] = save_figure(outcome_figure(summary), plot_format)
    return files


_TUNE_COLUMNS = {
    "timestamp",
    "time_this_iter_s",
    "time_total_s",
    "training_iteration",
    "pid",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "done",
    "node_ip",
    "hostname",
    "date",
    "trial_id",
}


def _tune_column(name: str) -> bool:
    return name in _TUNE_COLUMNS or name.startswith("config/")
