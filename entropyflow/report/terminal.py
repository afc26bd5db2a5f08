"""The analysis in a terminal: a rich table, one row per layer, in execution order.

Everything is written to the Console passed in (injectable for tests and embedding). Every string
that comes from the input (names, keys, file names, notes) goes out as a rich ``Text`` after
:func:`~entropyflow.text.printable`: never parsed as markup, never a raw control character.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import cast

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from ..estimate import registry
from ..estimate.reference import SeedReference
from ..estimate.results import AnalysisResult
from ..estimate.trajectory import Trajectory
from ..text import number_ranges, printable
from ..words import arg
from .numbers import fmt


def _t(text: object, style: str = "") -> Text:
    """Input-derived text, safe to print: control characters escaped, no markup."""
    return Text(printable(text), style=style)


def _line(console: Console, *parts, style: str = "") -> None:
    console.print(
        Text.assemble(*[(printable(p), "") if isinstance(p, str) else p for p in parts], style=style), highlight=False
    )


SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"


EIGHTHS = " ▏▎▍▌▋▊▉"
BAR_WIDTH = 10


def mean_bar(value: float | None, lo: float, hi: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar for ``value`` on the scale [lo, hi], in eighths of a character cell."""
    if value is None:
        return ""
    frac = 1.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    eighths = round(frac * (width - 1) * 8) + 8  # every layer gets at least one full cell
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def _mark(i: int) -> str:
    return SUPERSCRIPTS[i] if i < len(SUPERSCRIPTS) else f"[{i + 1}]"


RIGHT = {"#", "filters", "mean", "median", "Q1", "Q3", "total", "joint", "−∞", "seeds", "z", "pct"}
DROP_ORDER = (("mean profile",), ("Q1", "Q3"), ("kind",), ("filters",), ("joint",), ("pct",))  # first to go
LAYER_MIN = 24  # the layer-name column keeps at least this many characters (or the longest name)


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(cell)


def _fit_table(rows: list[dict[str, str | Text]], width: int) -> Table:
    """The table with as many columns as leave the layer names readable in ``width`` characters:
    the sparkline goes first, then the quartiles, kind and filter count."""
    columns = list(rows[0]) if rows else ["#", "layer"]
    widths = {c: max([len(c)] + [_width(r[c]) for r in rows]) for c in columns}
    names = min(widths.get("layer", 0), max(LAYER_MIN, width // 3))

    def need(cols: list[str]) -> int:
        return sum(names if c == "layer" else widths[c] for c in cols) + 2 * (len(cols) - 1)  # padding (0, 1)

    for group in DROP_ORDER:  # quartiles go together
        if need(columns) <= width:
            break
        for drop in group:
            if drop in columns:
                columns.remove(drop)
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None, padding=(0, 1))
    for col in columns:
        table.add_column(
            col, justify="right" if col in RIGHT else "left", no_wrap=col != "layer",
            overflow="fold", min_width=names if col == "layer" else None,
        )  # fmt: skip
    for r in rows:
        table.add_row(*(r[c] for c in columns))
    return table


def _seed_cells(reference: SeedReference, name: str) -> dict[str, str | Text]:
    """z of the layer median against the seeds, its percentile, and the predicted init level."""
    item = reference.layer(name)
    st = item.stat("median")
    if st is None:
        return {"seeds": "—", "z": "—", "pct": ""}
    z = "—" if st.z is None else ("+" if st.z > 0 else "") + fmt(st.z, 1)
    return {
        "seeds": f"{fmt(st.mean)}" + (f"±{st.sd:.2g}" if st.sd is not None else ""),
        "z": Text(z + ("*" if st.outside else ""), style="bold red" if st.outside else ""),
        "pct": f"{st.percentile:.0f}",
    }


def render_analysis(result: AnalysisResult, console: Console, reference: SeedReference | None = None) -> None:
    m = result.model
    size = "x".join(map(str, m.input_size)) if m.input_size else "—"
    _line(console, ("entropyflow ", "bold"), (printable(m.spec), "bold cyan"), f"  ·  {m.description}")
    _line(
        console,
        f"weights: {m.weights}  ·  input {size}  ·  estimator {result.estimator} (channel rule {result.channel_rule})"
        f"  ·  device {result.device}",
        style="dim",
    )

    reasons: list[str] = []
    means = [layer.summary.mean for layer in result.layers if layer.summary.mean is not None]
    lo, hi = (min(means), max(means)) if means else (0.0, 0.0)
    joint = any(layer.joint is not None for layer in result.layers)
    any_inf = any(layer.summary.n_neginf for layer in result.layers)
    rows: list[dict[str, str | Text]] = []
    for layer in result.layers:
        s = layer.summary
        if layer.exact is True:
            exact = Text("yes", style="green")
        else:
            if layer.reason not in reasons:
                reasons.append(layer.reason)
            mark = _mark(reasons.index(layer.reason))
            exact = Text("no" + mark, style="yellow") if layer.exact is False else Text("—" + mark, style="dim")
        row: dict[str, str | Text] = {
            "#": str(layer.index),
            "layer": _t(layer.name + ("" if layer.traced else " (untraced)")),
            "kind": _t(layer.kind),
            "filters": str(layer.filters),
            "mean profile": Text(mean_bar(s.mean, lo, hi), style="blue" if layer.is_conv else "dark_orange"),
            "mean": fmt(s.mean),
            "median": fmt(s.median),
            "Q1": fmt(s.q1),
            "Q3": fmt(s.q3),
            "total": fmt(layer.total, 1),
            "exact": exact,
        }
        if joint:
            row["joint"] = fmt(layer.joint, 1)
        if any_inf:
            row["−∞"] = Text(str(s.n_neginf), style="red") if s.n_neginf else ""
        if reference is not None:
            row.update(_seed_cells(reference, layer.name))
        rows.append(row)
    table = _fit_table(rows, console.width)
    console.print(table)
    shown = {c.header for c in table.columns}
    bar = f"; bar: mean from {fmt(lo)} (short) to {fmt(hi)} (long)" if "mean profile" in shown else ""
    labels = registry.get(result.estimator).labels
    console.print(labels.values_note + bar, style="dim")
    tokens = sorted({n for layer in result.layers if not layer.is_conv and (n := layer.n_positions or 0) > 1})
    if tokens:
        _line(
            console,
            "dense rows are per position (per token in a sequence model); their total = positions traced "
            f"({', '.join(map(str, tokens[:3]))}) × " + labels.dense_total,
            style="dim",
        )
    _layer_notes(result, console)
    if reference is not None:
        _reference_lines(reference, console)
    for i, reason in enumerate(reasons):
        carriers = [other for other in result.layers if other.reason == reason]
        approximate = any(other.exact is False for other in carriers)  # an approximation, not just a missing total
        _line(
            console,
            f"{_mark(i)} {reason} ({len(carriers)} layer{'s' if len(carriers) != 1 else ''})",
            style="yellow" if approximate else "dim",
        )

    c = result.counts
    console.print(
        Text.assemble(
            (f"{c.layers} layers", "bold"),
            f": {c.conv} conv, {c.dense} dense",
            f"  ·  {c.layers - c.not_exact - c.no_total} exact totals, {c.not_exact} approximate, "
            f"{c.no_total} unavailable",
            f"  ·  {c.untraced} untraced" if c.untraced else "",
            (f"  ·  {c.neginf_filters} filters with c11 = 0 (−∞)", "red") if c.neginf_filters else "",
        )
    )
    if result.skipped:
        by_type = Counter((s.module_type, s.reason) for s in result.skipped)
        _line(
            console,
            f"skipped {len(result.skipped)} parameterised module{'s' if len(result.skipped) != 1 else ''} (listed in "
            "analysis.json):",
        )
        for (typ, reason), n in by_type.most_common():
            _line(console, f"  {typ} ×{n}: {reason}", style="dim")
    for note in result.notes:
        _line(console, f"note: {note}", style="dim")
    for w in result.warnings:
        _line(console, f"warning: {w}", style="yellow")


def _layer_notes(result: AnalysisResult, console: Console, limit: int = 4) -> None:
    """How fused projections were split and what the square part of a grouped-query map is."""
    counts: Counter[str] = Counter()
    for layer in result.layers:
        if layer.rows is not None or layer.transposed:
            counts.update(layer.notes)
        else:
            counts.update(n for n in layer.notes if n.startswith("grouped-query"))
    for note, n in counts.most_common(limit):
        _line(console, f"{n} layer{'s' if n != 1 else ''}: {note}", style="dim")


def _reference_lines(reference: SeedReference, console: Console) -> None:
    n = reference.n
    seeds = number_ranges(reference.seeds)
    if n == 1:
        _line(
            console,
            f"seeds: the layer median of 1 random-init seed ({seeds}); one seed cannot separate signal from noise — "
            f"use {arg('seeds', 10)} or more for z-scores",
            style="yellow",
        )
        return
    outside = [item.name for item in reference.layers if (s := item.stat("median")) is not None and s.outside]
    _line(
        console,
        f"seeds: layer median over {n} random-init seeds ({seeds}), mean±sd; z = (model − mean)/sd; pct = percentile "
        f"among the seeds; * = outside the random-init level (prediction test, Holm over the layers, p < "
        f"{reference.alpha:g}): {len(outside)} of {len(reference.layers)} layers"
        + (f" ({', '.join(outside[:6])}{' …' if len(outside) > 6 else ''})" if outside else ""),
        style="dim",
    )
    if n < 5:
        _line(
            console,
            f"only {n} seeds: their sd is itself uncertain, so |z| can look large by chance (the test allows for "
            f"it); use {arg('seeds', 10)} or more",
            style="yellow",
        )
    if reference.init_scheme:
        _line(console, f"init scheme recognised: {reference.init_scheme} (predicted levels in layers.csv)", style="dim")


TABLE_ROWS = 200  # a recommendation's rows printed; a config of thousands of layers is read in its file


def render_recommendation(config, console: Console, path=None) -> None:
    """A λ placement config: strategy, rationale, the chosen layers, warnings."""
    s = config.strategy
    params = ", ".join(f"{k}={v}" for k, v in s.params if k != "requested")
    _line(
        console,
        ("strategy ", "bold"),
        (printable(s.name), "bold cyan"),
        f" ({params})" if params else "",
        f"  ·  loss form {config.form}" + (f", ε = {config.epsilon:g}" if config.form == "inverse" else ""),
        f"  ·  channel rule {config.channel_rule}",
    )
    console.print(_t(s.rationale, "dim"), soft_wrap=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None, padding=(0, 1))
    for col, just in (("layer", "left"), ("kind", "left"), ("weight", "left"), ("λ", "right")):
        table.add_column(col, justify=cast(JustifyMethod, just))
    shown = config.layers[:TABLE_ROWS]
    for layer in shown:
        fl = layer.filter_lambdas
        lam = (
            f"{layer.lam:g}"
            if fl is None
            else f"per filter: {sum(1 for v in fl if v)}/{len(fl)} nonzero, {min(fl):g}…{max(fl):g}"
        )
        table.add_row(
            _t(layer.name), _t(layer.kind), _t(f"{layer.weight_key} {'x'.join(map(str, layer.weight_shape))}"), _t(lam)
        )
    console.print(table)
    if len(shown) < len(config.layers):
        where = f" (every layer is in {path})" if path is not None else ""
        _line(console, f"… and {len(config.layers) - len(shown):,} more layers{where}", style="dim")
    for w in config.warnings[:TABLE_ROWS]:
        _line(console, f"warning: {w}", style="yellow")
    if len(config.warnings) > TABLE_ROWS:
        more = len(config.warnings) - TABLE_ROWS
        _line(console, f"… and {more:,} more warnings (all in the config file)", style="dim")
    if path is not None:
        _line(console, f"wrote {path}", style="dim")


def render_trajectory(traj: Trajectory, console: Console, rows: int = 15) -> None:
    """The layers that move most over the checkpoints: first, last, and the random-init level."""
    n = len(traj.labels)
    seeds = len(traj.seeds)
    _line(
        console,
        (f"{n} checkpoint{'s' if n != 1 else ''}", "bold"),
        (f" ({traj.labels[0]} … {traj.labels[-1]})" if n > 1 else f" ({traj.labels[0]})")
        + f"  ·  analysed {traj.analysed}, from the cache {n - traj.analysed}  ·  layer {traj.statistic}"
        + (f"  ·  random-init level: mean of {seeds} seeds" if seeds else "  ·  no random-init seeds"),
    )
    change = traj.values[:, -1] - traj.values[:, 0]
    order = sorted(range(len(traj.layers)), key=lambda i: -abs(change[i]) if math.isfinite(change[i]) else 0.0)
    shown = sorted(order[:rows])
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None, padding=(0, 1))
    heads = ["#", "layer", "random init", traj.labels[0][:14]] + ([traj.labels[-1][:14]] if n > 1 else [])
    for col in [*heads, "last − random init"]:
        table.add_column(printable(col), justify="left" if col == "layer" else "right", no_wrap=col != "layer")
    for i in shown:
        level = float(traj.level[i])
        last = float(traj.values[i, -1])
        delta = last - level if math.isfinite(level) and math.isfinite(last) else None
        cells: list[str | Text] = [str(i + 1), _t(traj.layers[i]), fmt(level if math.isfinite(level) else None)]
        cells += [fmt(_finite(traj.values[i, 0]))] + ([fmt(_finite(last))] if n > 1 else [])
        table.add_row(*cells, fmt(delta))
    console.print(table)
    if len(shown) < len(traj.layers) or n > 2:
        what = (
            [f"the {len(shown)} of {len(traj.layers)} layers that change most"] if len(shown) < len(traj.layers) else []
        )
        what += [f"the first and last of {n} checkpoints"] if n > 2 else []
        _line(console, f"{' and '.join(what)}; all in trajectory.csv", style="dim")


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
