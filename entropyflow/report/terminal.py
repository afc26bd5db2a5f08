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

from ..estimate.results import AnalysisResult
from ..text import printable


def _t(text: object, style: str = "") -> Text:
    """Input-derived text, safe to print: control characters escaped, no markup."""
    return Text(printable(text), style=style)


def _line(console: Console, *parts, style: str = "") -> None:
    console.print(
        Text.assemble(*[(printable(p), "") if isinstance(p, str) else p for p in parts], style=style), highlight=False
    )


SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "—"
    if math.isinf(v):
        return "−∞" if v < 0 else "∞"
    if abs(v) >= 1e4:
        return f"{v:,.0f}".replace("-", "−")
    return f"{v:.{digits}f}".replace("-", "−")


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


def render_analysis(result: AnalysisResult, console: Console) -> None:
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
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None, padding=(0, 1))
    for col, just in (
        ("#", "right"),
        ("layer", "left"),
        ("kind", "left"),
        ("filters", "right"),
        ("mean profile", "left"),
        ("mean", "right"),
        ("median", "right"),
        ("Q1", "right"),
        ("Q3", "right"),
        ("total", "right"),
        ("exact", "left"),
    ):
        table.add_column(col, justify=cast(JustifyMethod, just), no_wrap=col != "layer")
    joint = any(layer.joint is not None for layer in result.layers)
    if joint:
        table.add_column("joint", justify="right")
    any_inf = any(layer.summary.n_neginf for layer in result.layers)
    if any_inf:
        table.add_column("−∞", justify="right")
    means = [layer.summary.mean for layer in result.layers if layer.summary.mean is not None]
    lo, hi = (min(means), max(means)) if means else (0.0, 0.0)
    for layer in result.layers:
        s = layer.summary
        if layer.exact is True:
            exact = Text("yes", style="green")
        elif layer.exact is False:
            if layer.reason not in reasons:
                reasons.append(layer.reason)
            exact = Text("no" + _mark(reasons.index(layer.reason)), style="yellow")
        else:
            if layer.reason not in reasons:
                reasons.append(layer.reason)
            exact = Text("—" + _mark(reasons.index(layer.reason)), style="dim")
        name = _t(layer.name + ("" if layer.traced else " (untraced)"))
        bar = Text(mean_bar(s.mean, lo, hi), style="blue" if layer.is_conv else "dark_orange")
        row: list[str | Text] = [
            str(layer.index),
            name,
            _t(layer.kind),
            str(layer.filters),
            bar,
            fmt(s.mean),
            fmt(s.median),
            fmt(s.q1),
            fmt(s.q3),
            fmt(layer.total, 1),
            exact,
        ]
        if joint:
            row.append(fmt(layer.joint, 1))
        if any_inf:
            row.append(Text(str(s.n_neginf), style="red") if s.n_neginf else "")
        table.add_row(*row)
    console.print(table)
    if result.estimator == "spectral":
        console.print(
            "values in nats (spectral, basis-invariant): conv rows are Σ_ω log σ_f(ω) per filter, per output position; "
            "dense rows are log σ_i per singular direction ('filters' = directions); total = Σ over filters; "
            f"joint = the whole layer as one map; bar: mean from {fmt(lo)} (short) to {fmt(hi)} (long)",
            style="dim",
        )
    else:
        console.print(
            "values in nats; mean/median/quartiles are per output position over the layer's filters (finite values); "
            f"bar: mean from {fmt(lo)} (short) to {fmt(hi)} (long)",
            style="dim",
        )
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
            (f"{c['layers']} layers", "bold"),
            f": {c['conv']} conv, {c['dense']} dense",
            f"  ·  {c['layers'] - c['not_exact'] - c['no_total']} exact totals, {c['not_exact']} approximate, "
            f"{c['no_total']} unavailable",
            f"  ·  {c['untraced']} untraced" if c["untraced"] else "",
            (f"  ·  {c['neginf_filters']} filters with c11 = 0 (−∞)", "red") if c["neginf_filters"] else "",
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
    for layer in config.layers:
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
    for w in config.warnings:
        _line(console, f"warning: {w}", style="yellow")
    if path is not None:
        _line(console, f"wrote {path}", style="dim")
