"""A sweep in the terminal: the live table of trials while it runs, the cells against the
baseline when it is done. Everything goes to the Console passed in."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..text import printable
from . import stats
from .events import TrialEvent
from .summary import SHARED, WALL_CLOCK, SweepSummary, describe, test_of

STATE_STYLE = {"pending": "dim", "running": "cyan", "done": "green", "stopped": "yellow", "failed": "bold red"}
VERDICT_STYLE = {"better": "green", "worse": "red", "no detectable effect": "dim", stats.TOO_FEW: "yellow"}


def _sign(v: float) -> str:
    return ("+" if v > 0 else "") + _num(v)


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}g}".replace("-", "−")


class TrialBoard:
    """The state of every trial, as events arrive; ``render()`` gives the live table."""

    def __init__(self, metric: str = "metric", shown: int = 12):
        self.metric, self.shown = metric, shown
        self.trials: dict[tuple[str, int], TrialEvent] = {}  # (cell, seed) → latest event
        self.order: list[tuple[str, int]] = []

    def update(self, event: TrialEvent) -> None:
        key = (event.cell, event.seed)
        if key not in self.trials:
            self.order.append(key)
        previous = self.trials.get(key)
        if previous is not None and previous.state == "running" and event.state == "running" and event.value is None:
            return  # a start event after results: keep what is known
        self.trials[key] = event

    def render(self) -> Group:
        counts = Counter(e.state for e in self.trials.values())
        pending = counts["pending"]
        self.total = len(self.trials)
        head = Text.assemble(
            (f"{counts['done']}/{self.total} trials done", "bold"),
            f"  ·  {counts['running']} running  ·  {pending} waiting",
            (f"  ·  {counts['stopped']} stopped" if counts["stopped"] else "", "yellow"),
            (f"  ·  {counts['failed']} failed" if counts["failed"] else "", "bold red"),
        )
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), header_style="bold")
        for col in ("cell", "seed", "state", "epoch", self.metric):
            table.add_column(col, justify="left" if col in ("cell", "state") else "right")
        recent = [t for t in self.order if self.trials[t].state in ("running", "failed")]
        recent += [t for t in reversed(self.order) if self.trials[t].state == "done"]
        for trial in recent[: self.shown]:
            e = self.trials[trial]
            state = e.state if not e.error else f"failed: {e.error}"
            table.add_row(
                Text(printable(e.cell)),
                str(e.seed),
                Text(printable(state, 80), style=STATE_STYLE[e.state]),
                "" if e.epoch is None else str(e.epoch),
                _num(e.value),
            )
        return Group(head, table)


class Trimmed:
    """A renderable drawn without the spaces that pad its lines on the right (a table's last
    column is padded to its widest cell): piped output carries no trailing blanks."""

    def __init__(self, renderable: Any):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line[-1]
                line[-1] = Segment(last.text.rstrip(" "), last.style)
            yield from line
            yield Segment.line()


def render_summary(summary: SweepSummary, console: Console, failed: tuple[str, ...] = ()) -> None:
    spec = summary.spec
    seeds = f"{len(spec.seeds)} seed{'s' * (len(spec.seeds) != 1)}"

    def say(text: Text) -> None:  # wrapped on a terminal, between words; no line ends in blanks
        console.print(Trimmed(text), highlight=False)

    say(
        Text.assemble(
            ("entropyflow sweep", "bold"),
            f"  ·  {len(summary.cells)} cells × {seeds}  ·  {spec.metric} "
            f"({spec.mode})" + (f"  ·  target {spec.target:g}" if spec.target is not None else ""),
        )
    )
    for outcome in summary.outcomes:
        title = describe(outcome, spec)
        title = title[0].upper() + title[1:]
        if outcome == summary.primary:
            title += "  (primary: the verdict and the best cell are on it)"
        else:
            title += "  (exploratory: estimates and intervals, no verdict)"
        if outcome in WALL_CLOCK:
            title += f"  ({SHARED}; first epoch excluded: see below)"
        say(Text(title, style="bold"))  # its own line: wraps at the console's width, not the table's
        table = Table(
            box=None,
            show_edge=False,
            pad_edge=False,
            padding=(0, 2),
            header_style="bold",
        )
        for col, just in (
            ("cell", "left"),
            ("mean ± s.e.", "right"),
            ("Δ vs baseline", "right"),
            ("95 % interval", "right"),
            ("pairs", "right"),
            ("p (Holm)", "right"),
            ("", "left"),
        ):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for c in summary.cells:
            value = f"{_num(c.mean[outcome])} ± {_num(c.se[outcome], 2)}"
            if outcome == "epochs_to_target":
                value += f"  ({c.reached}/{len(c.trials) - c.failed} reached)"
            effect = c.versus.get(outcome)
            verdict = c.verdict.get(outcome, "")
            if effect is None or effect.mean is None:
                na = Text(c.na or "", style="yellow")
                table.add_row(Text(printable(c.cell.name), style="bold"), value, "", "", "", "", na)
                continue
            table.add_row(
                Text(printable(c.cell.name)),
                value,
                _sign(effect.mean),
                f"[{_num(effect.ci_low)}, {_num(effect.ci_high)}]",
                str(effect.n),
                _num(effect.p_holm, 2),
                Text(verdict, style=VERDICT_STYLE.get(stats.kind(verdict), "dim")),
            )
        console.print(Trimmed(table))
    say(
        Text(
            "paired by seed against the baseline; Δ = cell − baseline; "
            + "; ".join(sorted({f"{describe(o, spec)}: {test_of(o)}" for o in summary.outcomes}))
            + f" (two-sided, with the interval inverting it); Holm-corrected over the cells; verdict at α = 0.05 "
            f"on the primary outcome only, from {stats.MIN_PAIRS} pairs on; Wilcoxon in summary.csv",
            style="dim",
        )
    )
    if any(o in WALL_CLOCK for o in summary.outcomes):
        say(Text(wall_clock_note(summary), style="dim"))
    say(Text.assemble(("best: ", "bold"), printable(summary.best or "none"), f"  ·  {printable(summary.reason)}"))
    for f in failed:
        say(Text(f"failed trial: {printable(f, 300)}", style="yellow"))


def wall_clock_note(summary: SweepSummary) -> str:
    """The footnote of the wall-clock outcome: what its clock measures and that it was shared."""
    return (
        "time to reach the target: from the end of epoch 1 to the end of the epoch that reached it (the first "
        f"epoch, with a fresh worker's imports and first calls, is excluded; 0 when epoch 1 reached it); "
        f"{printable(summary.timing.caveat(), 200)}; launch order: {summary.timing.order.partition(':')[0]}"
    )


def trial_line(event: TrialEvent) -> str:
    """One line for a trial that ended, where no live table can be drawn (a log, CI):
    ``done: first λ=0.001 seed 3: val_loss 0.1234 at epoch 5 (12.3 s)`` or
    ``failed: baseline seed 2: RuntimeError: …``."""
    head = f"{event.state}: {printable(event.cell, 80)} seed {event.seed}"
    if event.state == "failed":
        return f"{head}: {printable(event.error or 'the trial failed', 300)}"
    value = "" if event.value is None else f": {printable(event.metric or 'metric', 60)} {event.value:.4g}"
    epoch = "" if event.epoch is None else f" at epoch {event.epoch}"
    seconds = "" if event.seconds is None else f" ({event.seconds:.1f} s)"
    return head + value + epoch + seconds


class LiveTrials:
    """The live table of trials while a sweep runs on a terminal; elsewhere (a log, CI) one line per
    trial as it ends: its cell, seed, outcome and time. ``on_event`` is the sweep's callback."""

    def __init__(self, console: Console):
        self.console = console
        self.live: Any = None  # rich.live.Live, from the first event on a terminal
        self.board: TrialBoard | None = None

    def __enter__(self) -> LiveTrials:
        return self

    def on_event(self, event: TrialEvent) -> None:
        if not self.console.is_terminal:
            if event.state in ("done", "failed") and event.trial:  # not the finished trials a resume skips
                self.console.print(trial_line(event), highlight=False, soft_wrap=True)
            return
        if self.board is None:
            from rich.live import Live

            self.board = TrialBoard()
            self.live = Live(self.board.render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        self.board.update(event)
        self.live.update(self.board.render())

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
