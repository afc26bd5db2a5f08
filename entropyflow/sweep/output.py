"""A sweep's report files, rendered in memory (written as a whole by ``report.outdir``):

* ``trials.csv``: one row per trial per epoch (every reported metric, wall time), a failed trial's
  error on its own row, and the ``layers`` that carried the term (space-separated);
* ``summary.csv``: one row per cell: per outcome the mean ± s.e. over seeds, the paired
  difference to the baseline with the 95 % interval of its test (t interval; for the censored
  epochs to the target, the interval inverting the sign-flip test), the test and its p, the
  t-test (not for censored outcomes), Wilcoxon and Holm p-values, the verdict (primary outcome)
  or ``exploratory``;
* ``summary.json``: all of it, with the grid and provenance, and ``timing``: what the wall clock
  measures (the first epoch excluded), the order the trials were launched in, and where they ran;
  ``summary.csv`` says beside every wall-clock outcome that the trials shared a machine;
* ``learning_curves.<fmt>``: per cell, its mean curve and band (± 1 s.e. over seeds) over the
  baseline's; ``outcomes.<fmt>``: per cell, every seed's epochs to the target (or final value),
  mean and 95 % CI;
* ``best.yaml``: the winning cell's λ config (for a rule resolved in the trials, the config its
  first trial resolved), or ``best: null`` and the reason.
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
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from .._version import __version__
from ..config import LambdaConfig, dumps, load_config
from ..report.plotting import STYLE, save_figure, wrap_phrases
from . import stats
from .contract import unusable
from .spec import BASELINE
from .summary import CENSORED, SECONDS_TO_TARGET, SHARED, WALL_CLOCK, SweepSummary, describe, smaller_is_better, test_of

SCHEMA = "entropyflow.sweep/1"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _value(v: Any) -> str:
    """A reported value as written: NaN as ``nan`` (trials.csv shows what the trial reported)."""
    return repr(v) if isinstance(v, float) else _cell(v)


def trial_layers(outcome: Any, summary: SweepSummary) -> list[str] | None:
    """The layers that carried the term in one trial: what its regularizer placed (recorded by the
    trial), else the cell's λ config; None for the baseline or a rule never resolved."""
    if outcome.placed is not None:
        return list(outcome.placed["layers"])
    config = next((c.cell.config for c in summary.cells if c.cell.name == outcome.cell), None)
    return None if config is None else [layer.name for layer in config.layers]


def cell_layers(summary: SweepSummary, name: str, outcomes: Sequence[Any]) -> dict[str, Any]:
    """``summary.json``'s account of a cell's layers: the configured ones, or for a rule resolved
    in the trials the layers they chose (by seed where seeds disagree)."""
    cell = summary.cell(name).cell
    if cell.config is not None:
        return {"layers": [layer.name for layer in cell.config.layers]}
    if cell.rule is None:
        return {"layers": None}
    chosen = {o.seed: o.placed["layers"] for o in outcomes if o.cell == name and o.placed is not None}
    distinct = {tuple(v) for v in chosen.values()}
    doc: dict[str, Any] = {
        "layers": list(distinct.pop()) if len(distinct) == 1 else None,
        "resolved": "in each trial, on the model the training function built (entropyflow.sweep.regularizer)",
    }
    if len(distinct) > 1 or not chosen:
        doc["layers_by_seed"] = {str(seed): layers for seed, layers in sorted(chosen.items())}
    return doc


def trials_csv(outcomes: Sequence[Any], metrics: Sequence[str], summary: SweepSummary | None = None) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    columns = ["cell", "seed", "epoch", "wall_s", *metrics, "error", "layers"]
    w.writerow(columns)
    for o in sorted(outcomes, key=lambda o: (o.cell != BASELINE, o.cell, o.seed)):
        layers = trial_layers(o, summary) if summary is not None else None
        placed = " ".join(layers) if layers else ""
        for row in sorted(o.rows, key=lambda r: r.get("epoch", 0)):
            w.writerow(
                [
                    o.cell,
                    o.seed,
                    _cell(row.get("epoch")),
                    _cell(row.get("wall_s")),
                    *[_value(row.get(m)) for m in metrics],
                    "",
                    placed,
                ]
            )
        if o.error:
            w.writerow([o.cell, o.seed, "", "", *[""] * len(metrics), o.error, placed])
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
            for name in ("mean", "ci_low", "ci_high", "p", "p_t", "p_wilcoxon", "p_holm"):
                row[f"{outcome}_diff_{name}" if name == "mean" else f"{outcome}_{name}"] = (
                    getattr(effect, name) if effect is not None else None
                )
            row[f"{outcome}_test"] = effect.test if effect is not None else None
            row[f"{outcome}_pairs"] = effect.n if effect is not None else None
            row[f"{outcome}_verdict"] = c.verdict.get(outcome, "")
            if outcome in WALL_CLOCK:  # the clock measured neighbours too: said on every row that shows it
                row[f"{outcome}_timing"] = summary.timing.caveat()
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
                **cell_layers(summary, c.cell.name, outcomes),
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
                        "role": "primary" if o == summary.primary else "exploratory",
                        "verdict": c.verdict.get(o),
                        "ruled_out": _ruled_out(c.versus.get(o), summary, o),
                    }
                    for o in summary.outcomes
                },
                "trials": [
                    {
                        "seed": t.seed,
                        "epochs": t.epochs,
                        "error": t.error,
                        **({"reached_target": t.reached} if summary.spec.target is not None else {}),
                        **({"unusable": t.unusable} if t.unusable is not None else {}),
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
        "tests": "paired by seed against the baseline: the mean difference (cell − baseline) with the 95 % "
        "interval that inverts its test: the t interval and the two-sided paired t-test, or, for the censored "
        "epochs to the target, the paired sign-flip permutation test of the restricted mean; Wilcoxon "
        "signed-rank for reference; p-values Holm-corrected over the cells per outcome; a verdict at α = 0.05 "
        f"on the primary outcome only, from {stats.MIN_PAIRS} pairs on",
        "statistics": statistics(summary),
        "timing": summary.timing.to_dict(),
        "cells": cells,
        "failed": [f"{o.cell} seed {o.seed}: {o.error}" for o in outcomes if o.error],
        "provenance": provenance,
    }
    return (json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n").encode("utf-8", "backslashreplace")


def _ruled_out(effect: stats.Paired | None, summary: SweepSummary, outcome: str) -> dict[str, float | None] | None:
    """The effects the 95 % interval excludes, in the metric's units (beyond them: ruled out)."""
    bounds = None if effect is None else stats.ruled_out(effect, smaller_is_better(outcome, summary.spec))
    if bounds is None:
        return None
    return {"improvement_above": _json_number(bounds[0]), "harm_above": _json_number(bounds[1])}


def statistics(summary: SweepSummary) -> dict[str, Any]:
    """How the cells are compared, in words and numbers (summary.json's ``statistics``)."""
    spec = summary.spec
    return {
        "alpha": stats.ALPHA,
        "interval": f"{stats.LEVEL:.0%} interval of the mean paired difference that inverts the outcome's test",
        "test": {o: test_of(o) for o in summary.outcomes},
        "censored": {
            o: f"restricted time to target min(T, E + 1) with horizon E = the epochs of a trial = {spec.epochs}: "
            f"a run that "
            f"does not reach the target counts as {spec.epochs + 1}; exact sign-flip distribution for n ≤ "
            f"{stats.EXACT_FLIPS} pairs, else {stats.FLIPS:,} random sign vectors (seed {stats.FLIP_SEED})"
            for o in summary.outcomes
            if o in CENSORED
        },
        "wall_clock": {
            o: f"{SECONDS_TO_TARGET}; {summary.timing.caveat()}" for o in summary.outcomes if o in WALL_CLOCK
        },
        "min_pairs": stats.MIN_PAIRS,
        "primary": summary.primary,
        "exploratory": [o for o in summary.outcomes if o != summary.primary],
        "multiplicity": "Holm over the cells (with at least min_pairs pairs) for each outcome; a verdict on the "
        "primary outcome only; the exploratory outcomes get estimates and intervals, no verdict, and are not "
        "corrected across outcomes",
    }


def best_config(summary: SweepSummary, outcomes: Sequence[Any]) -> LambdaConfig | None:
    """The best cell's λ config: the configured one, or the one its first trial resolved."""
    if summary.best is None:
        return None
    cell = summary.cell(summary.best).cell
    if cell.config is not None:
        return cell.config
    resolved = [o.placed["config"] for o in outcomes if o.cell == cell.name and o.placed and o.placed["config"]]
    return load_config(resolved[0]) if resolved else None


def best_yaml(summary: SweepSummary, outcomes: Sequence[Any] = ()) -> bytes:
    if summary.best is not None:
        config = best_config(summary, outcomes)
        if config is not None:
            header = textwrap.fill(f"entropyflow sweep: the best cell, {summary.reason}", 98)
            return ("".join(f"# {line}\n" for line in header.splitlines()) + dumps(config)).encode()
    doc = {"best": None, "reason": summary.reason}
    return (
        "# entropyflow sweep: no λ config beats the baseline\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    ).encode()


def _curves(outcomes: Sequence[Any], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]]:
    """Per cell: epochs, the mean and s.e. over the runs still training at each epoch (runs that
    stopped early drop out), and every run's last epoch."""
    by_cell: dict[str, list[list[float]]] = {}
    for o in outcomes:
        values = [float(r[metric]) for r in sorted(o.rows, key=lambda r: r["epoch"]) if r.get(metric) is not None]
        if values and not o.error and not any(unusable(v) for v in values):  # NaN, inf, ±1e308: no curve
            by_cell.setdefault(o.cell, []).append(values)
    out = {}
    for cell, runs in by_cell.items():
        n = max(len(r) for r in runs)
        arr = np.full((len(runs), n), np.nan)
        for k, r in enumerate(runs):
            arr[k, : len(r)] = r
        count = np.sum(~np.isnan(arr), axis=0)
        mean = np.nanmean(arr, axis=0)
        sd = np.array([np.nanstd(arr[:, e], ddof=1) if count[e] > 1 else 0.0 for e in range(n)])
        out[cell] = (np.arange(1, n + 1), mean, sd / np.sqrt(count), [len(r) for r in runs])
    return out


def _log_scale(curves: dict[str, Any]) -> bool:
    """A metric that is positive everywhere and spans more than a decade reads better on log axes."""
    values = np.concatenate([c[1] for c in curves.values()]) if curves else np.array([])
    return bool(values.size and np.all(values > 0) and values.max() / values.min() > 10)


FEW_EPOCHS = 12  #: curves up to this many epochs get a marker per epoch and a tick per epoch


def learning_curves(summary: SweepSummary, outcomes: Sequence[Any]) -> Figure:
    spec = summary.spec
    curves = _curves(outcomes, spec.metric)
    cells = [c.cell.name for c in summary.cells if c.cell.name != BASELINE and c.cell.name in curves]
    ncols = max(1, min(3, len(cells)))
    nrows = max(1, math.ceil(len(cells) / ncols))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.7), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        log = _log_scale(curves)
        for k, ax in enumerate(axes.flat):
            if k >= len(cells):
                ax.set_visible(False)
                continue
            for name, color in ((BASELINE, "#636363"), (cells[k], "#3182bd")):
                if name not in curves:
                    continue
                x, mean, se, stops = curves[name]
                dots = {"marker": "o", "markersize": 3.5} if len(x) <= FEW_EPOCHS else {}  # one epoch draws no line
                ax.plot(x, mean, color=color, linewidth=1.4, label=name, **dots)
                ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2, linewidth=0)
                if spec.patience is not None:  # where each run stopped: a rug on the epoch axis
                    ax.plot(stops, [0.0] * len(stops), "|", color=color, markersize=9, alpha=0.8,
                            transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
            if spec.target is not None:
                ax.axhline(spec.target, color="#cb181d", linewidth=0.8, linestyle="--", label="target")
            if log:
                ax.set_yscale("log")
            verdict = stats.kind(summary.cell(cells[k]).verdict.get(summary.primary, ""))
            ax.set_title(f"{cells[k]}: {verdict}", loc="left")
            ax.grid(color="#e5e5e5", linewidth=0.7)
            ax.legend(frameon=False, loc="best")
        for column in axes.T:  # the lowest panel drawn in each column carries the epoch axis
            shown = [ax for ax in column if ax.get_visible()]
            if shown:
                shown[-1].xaxis.set_tick_params(labelbottom=True)
                shown[-1].set_xlabel("epoch")
        longest = max((len(curves[n][0]) for n in curves), default=1)
        for ax in axes.flat:
            if longest <= FEW_EPOCHS:  # every epoch ticked, half an epoch of room either side (not 0.945 … 1.05)
                ax.set_xlim(0.5, longest + 0.5)
                ax.set_xticks(range(1, longest + 1))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
            if not log:
                ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
        for ax in axes[:, 0]:
            ax.set_ylabel(spec.metric)
        seeds = f"{len(spec.seeds)} seed{'s' * (len(spec.seeds) != 1)}"
        title = f"{spec.metric} over training: mean ± 1 s.e. over {seeds}, each cell over the baseline"
        fig.suptitle(wrap_phrases(title, int(fig.get_figwidth() / 0.09)), fontsize=11)
        caption = f"verdicts on {describe(summary.primary, spec)}"
        if spec.patience is not None:
            caption += f"; ticks: where each run stopped (patience {spec.patience}); later means are over the runs left"
        fig.supxlabel(wrap_phrases(caption, int(fig.get_figwidth() / 0.075)), fontsize=8, color="#525252")
    return fig


def _readable_y(ax: Any, half: float) -> None:
    """Plain tick values (no offset such as ``1e−17``), and a range of ± ``half`` around the data
    when they are all equal (up to rounding)."""
    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ys = [float(y) for line in ax.get_lines() for y in np.ravel(line.get_ydata()) if np.isfinite(y)]
    if ys and max(ys) - min(ys) <= 1e-9 * max(1.0, max(abs(y) for y in ys)):
        mid = 0.0 if abs(max(ys)) <= 1e-9 else (max(ys) + min(ys)) / 2
        ax.set_ylim(mid - half, mid + half)


VERDICT_COLOR = {"better": "#238b45", "worse": "#cb181d", "no detectable effect": "#636363"}


def outcome_figure(summary: SweepSummary) -> Figure:
    """The primary outcome: every seed's value per cell (top) and, below, each cell's paired
    differences to the baseline with the 95 % interval of the test the verdict rests on."""
    outcome = summary.primary
    spec = summary.spec
    label = describe(outcome, spec).removeprefix("the ")
    cells = summary.cells
    censored = outcome == "epochs_to_target"
    base = {t.seed: t.values[outcome] for t in summary.cell(BASELINE).trials if t.error is None}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(6.0, 1.0 + 1.1 * len(cells)), 6.6), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1.2, 1.0))
        rng = np.random.default_rng(0)
        for i, c in enumerate(cells):
            done = [t for t in c.trials if t.error is None and t.values[outcome] is not None]
            color = "#636363" if c.cell.name == BASELINE else "#3182bd"
            jitter = {t.seed: i + rng.uniform(-0.12, 0.12) for t in done}
            if done:
                values = np.array([float(t.values[outcome] or 0.0) for t in done])
                missed = np.array([censored and not t.reached for t in done])
                x = np.array([jitter[t.seed] for t in done])
                top.plot(x[~missed], values[~missed], "o", color=color, alpha=0.55, markersize=4)
                if missed.any():  # censored at the budget + 1: open circles
                    top.plot(x[missed], values[missed], "o", mfc="none", color=color, alpha=0.8, markersize=4)
                half = 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
                top.errorbar(i + 0.3, float(values.mean()), yerr=half, fmt="D", color="black", markersize=5, capsize=3)
            effect = c.versus.get(outcome)
            if c.na is not None and c.cell.name != BASELINE:
                bottom.annotate("n/a", (i, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -3),
                                textcoords="offset points", ha="center", va="top", fontsize=7)  # fmt: skip
            if effect is None or effect.mean is None:
                continue
            diffs = [(jitter[t.seed], float(t.values[outcome] or 0.0) - float(b)) for t in done
                     if (b := base.get(t.seed)) is not None]  # fmt: skip
            verdict = stats.kind(c.verdict.get(outcome, ""))
            vcolor = VERDICT_COLOR.get(verdict, "#636363")
            bottom.plot([d[0] for d in diffs], [d[1] for d in diffs], "o", color=color, alpha=0.55, markersize=4)
            if (
                effect.ci_low is not None
                and effect.ci_high is not None
                and math.isfinite(effect.ci_low)
                and math.isfinite(effect.ci_high)
            ):
                span = [[effect.mean - effect.ci_low], [effect.ci_high - effect.mean]]
                bottom.errorbar(i + 0.3, effect.mean, yerr=span, fmt="D", color=vcolor, markersize=5, capsize=3)
            p = effect.p_holm
            bottom.annotate(
                verdict.replace("no detectable effect", "no effect").replace(stats.TOO_FEW, "too few pairs")
                + (f"\np={p:.2g}" if p is not None else ""),
                (i, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -3), textcoords="offset points",
                ha="center", va="top", fontsize=7, color=vcolor,
            )  # fmt: skip
        bottom.axhline(0.0, color="#636363", linewidth=0.8)
        bottom.margins(y=0.25)
        lo, hi = top.get_ylim()
        scale = hi - lo if hi - lo > 1e-9 * max(1.0, abs(hi)) else max(1.0, abs(hi))
        _readable_y(top, scale / 2)
        _readable_y(bottom, scale / 2)  # all differences 0: as wide as the values above
        bottom.set_xticks(range(len(cells)))
        bottom.set_xticklabels([c.cell.name for c in cells], rotation=30, ha="right")
        top.set_ylabel(label)
        bottom.set_ylabel("cell − baseline, same seed")
        for ax in (top, bottom):
            ax.grid(axis="y", color="#e5e5e5", linewidth=0.7)
        title = (
            f"{label}: every seed (dots), mean ± 1.96 s.e. (diamond); below, the paired differences with the 95 % "
            f"interval of the {test_of(outcome)} and the Holm-corrected verdict (from {stats.MIN_PAIRS} pairs)"
        )
        if censored and any(not t.reached for c in cells for t in c.trials if t.error is None):
            title += f" (open: never reached, counted as {spec.epochs + 1})"
        if outcome in WALL_CLOCK:
            title += f" ({SHARED}: {summary.timing.where})"
        fig.suptitle(wrap_phrases(title, int(fig.get_figwidth() / 0.08)), fontsize=10)
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
        "trials.csv": trials_csv(outcomes, metrics, summary),
        "summary.csv": summary_csv(summary),
        "summary.json": summary_json(summary, outcomes, provenance),
        "best.yaml": best_yaml(summary, outcomes),
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
