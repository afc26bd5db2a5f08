"""Progress of a run, drawn: library progress callbacks (``progress(stage, done, total)``) onto a
transient rich progress bar with an ETA when the console is a terminal, else one plain line per
slow phase. It draws only on the consoles it is given."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

__all__ = ["ProgressDisplay"]


class ProgressDisplay:
    """Maps library progress callbacks onto a transient rich progress bar with an ETA when
    ``console`` (stderr) is a terminal; otherwise (a log, a pipe) one plain line on ``log`` (stdout)
    per phase that took a second or more, when it finishes. stderr stays for errors: a failing run
    prints one line there."""

    LOG_AFTER_S = 1.0

    LABELS = {
        "load": "loading weights",
        "trace": "tracing on meta",
        "estimate": "estimating layers",
        "seeds": "random-init seeds (one analysis each)",
        "track": "checkpoints",
    }

    def __init__(self, console: Console, log: Console | None = None):
        self.console = log
        self.enabled = console.is_terminal
        self.bar: Any = None  # rich.progress.Progress
        self.tasks: dict[str, Any] = {}  # stage → rich TaskID
        self.started: dict[str, float] = {}
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> ProgressDisplay:
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar:
            self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.bar:
            if self.console is None:
                return
            start = self.started.setdefault(stage, time.perf_counter())
            took = time.perf_counter() - start
            if done >= total and stage not in self.tasks and took >= self.LOG_AFTER_S:
                self.tasks[stage] = None  # said once per phase
                self.console.print(
                    f"{self.LABELS.get(stage, stage)}: {done}/{total} in {took:.1f} s",
                    highlight=False,
                    markup=False,
                )
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(self.LABELS.get(stage, stage), total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)
