"""Progress of a run, drawn: library progress callbacks (``progress(stage, done, total)``) onto a
transient rich progress bar, one row per running stage with its own ETA, when stderr is a
terminal; otherwise plain log lines on stderr (a stage's first line once it has run a second, or
ten while it has not moved, then one at most every ``LOG_EVERY_S``, and one when it ends).
Nothing goes to stdout: that is for the table or JSON. It draws only on the console it is given."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

__all__ = ["ProgressDisplay"]


@dataclass
class _Stage:
    key: str
    label: str
    started: float
    done: int = 0
    total: int = 1
    said: float | None = None  # when its last line was written (piped)
    finished: bool = False
    first_at: float | None = None  # when the first part was done (what came before: start-up, not a part's cost)
    first_done: int = 0
    task: Any = None  # rich TaskID


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressDisplay:
    """Maps library progress callbacks onto a transient rich progress bar when ``console``
    (stderr) is a terminal; otherwise onto log lines on ``console``. ``log``: None keeps a piped
    run silent (``--quiet``, ``--format json``); any console turns the lines on (they still go to
    stderr). A stage called again after it finished (one analysis per seed) starts over; stages
    called while ``seeds`` or ``track`` runs are labelled with the item they belong to."""

    LOG_AFTER_S = 1.0  # a stage that has moved gets lines once it has run this long (fast ones stay silent)
    LOG_IDLE_S = 10.0  # one that has not moved yet (loading, tracing: one call at each end), once it has run this long
    LOG_EVERY_S = 10.0  # at most one line per stage this often while it runs
    HEARTBEAT_S = 0.5  # how often a piped display looks at stages that call rarely (loading, one long SVD)

    LABELS = {
        "load": "loading weights",
        "trace": "tracing on meta",
        "scan": "checking weights for NaN/inf",
        "conv": "conv layers",
        "dense": "dense log-determinants",
        "spectral conv": "spectral conv FFTs",
        "spectral dense": "spectral dense svdvals",
        "estimate": "estimating layers",
        "seeds": "random-init seeds (one analysis each)",
        "track": "checkpoints",
        "write": "rendering figures, writing files",
    }
    COUNTED = {"seeds": "seeds", "track": "checkpoints"}  # shown as done/total; others as %
    OUTER = ("seeds", "track")  # stages whose items are whole analyses

    def __init__(self, console: Console, log: Console | None = None, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.enabled = console.is_terminal
        self.logging = not self.enabled and log is not None
        self.clock = clock
        self.stages: dict[str, _Stage] = {}
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.bar: Any = None  # rich.progress.Progress
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeElapsedColumn(),
                TextColumn("eta {task.fields[eta]}"),
                console=console,
                transient=True,
            )

    def __enter__(self) -> ProgressDisplay:
        if self.bar:
            self.bar.__enter__()
        if self.bar or self.logging:
            self.thread = threading.Thread(target=self._beat, name="entropyflow-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.bar:
            self.bar.__exit__(*exc)

    def _beat(self) -> None:
        while not self.stop.wait(self.HEARTBEAT_S):
            self.heartbeat()

    def heartbeat(self) -> None:
        """Bring stages that have not called lately up to date: the bar's ETAs (a terminal), the lines
        due (piped)."""
        with self.lock:
            now = self.clock()
            for stage in list(self.stages.values()):
                if stage.finished:
                    continue
                if self.bar:
                    self.bar.update(stage.task, eta=self._eta(stage, now))
                else:
                    self._line(stage, now)

    def _label(self, stage: str) -> str:
        label = self.LABELS.get(stage, stage)
        if stage in self.OUTER:
            return label
        for outer in self.OUTER:
            run = self.stages.get(outer)
            if run is not None and not run.finished:
                return f"{self.COUNTED[outer][:-1]} {min(run.done + 1, run.total)}/{run.total}: {label}"
        return label

    def _amount(self, key: str, stage: _Stage) -> str:
        if key in self.COUNTED:
            return f"{stage.done}/{stage.total} {self.COUNTED[key]}"
        return f"{100 * stage.done // max(1, stage.total)}%"

    def _eta(self, stage: _Stage, now: float) -> str:
        if stage.done >= stage.total:
            return _clock(0)
        if stage.done <= 0:
            return "?"
        if stage.key in self.COUNTED and stage.first_at is not None and stage.done > stage.first_done:
            # whole analyses: the rate since the first was done, so that a start-up (Ray's, each worker's imports)
            # before the first result does not inflate every later estimate
            per = (now - stage.first_at) / (stage.done - stage.first_done)
            return _clock(per * (stage.total - stage.done))
        elapsed = now - stage.started
        return _clock(elapsed * (stage.total - stage.done) / stage.done)

    def _line(self, stage: _Stage, now: float) -> None:
        elapsed = now - stage.started
        if stage.finished:
            if stage.said is not None or elapsed >= self.LOG_AFTER_S:
                self._print(f"{stage.label}: done in {elapsed:.1f} s")
            return
        first = self.LOG_AFTER_S if stage.done > 0 else self.LOG_IDLE_S
        due = elapsed >= first if stage.said is None else now - stage.said >= self.LOG_EVERY_S
        if not due:
            return
        stage.said = now
        if stage.total == 1 and stage.key not in self.COUNTED:  # a step without parts: how long so far
            self._print(f"{stage.label}: {_clock(elapsed)} elapsed")
        else:
            amount = self._amount(stage.key, stage)
            self._print(f"{stage.label}: {amount}, {_clock(elapsed)} elapsed, eta {self._eta(stage, now)}")

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.bar and not self.logging:
            return
        with self.lock:
            now = self.clock()
            run = self.stages.get(stage)
            if run is None or run.finished or done < run.done:  # a new run of this stage
                if run is not None and run.task is not None:
                    self.bar.remove_task(run.task)
                run = self.stages[stage] = _Stage(stage, self._label(stage), now)
            run.done, run.total = max(0, done), max(1, total)
            run.finished = done >= total
            if run.first_at is None and run.done > 0:
                run.first_at, run.first_done = now, run.done
            if self.bar:
                fields = {"amount": self._amount(stage, run), "eta": self._eta(run, now)}
                if run.task is None:
                    run.task = self.bar.add_task(run.label, total=run.total, **fields)
                self.bar.update(run.task, completed=run.done, total=run.total, visible=not run.finished, **fields)
            else:
                self._line(run, now)
