"""Background work that can always be stopped: threads are tracked, cancellable and joined.

Hashing a checkpoint and the dense log-determinant prefetch run on threads so they overlap with
loading and tracing. A thread still inside a torch op when the interpreter shuts down aborts the
process ("terminate called without an active exception"), so every task here checks its cancel
flag between bounded steps, and :func:`shutdown` (also registered with ``atexit``) cancels and
joins whatever is still running. Callers cancel their own tasks on error paths.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Cancelled(Exception):
    """Raised inside a task when it notices it was cancelled."""


class Task:
    """One background computation: a future for its result and a flag it polls."""

    def __init__(self, work: Callable[[threading.Event], Any], name: str):
        self.future: Future = Future()
        self.cancelled = threading.Event()
        self._linked: list[Task] = []
        # the thread runs in a copy of the starter's context, so that a message built on it speaks the
        # caller's words (``words``: the CLI's flags during a command, the library's keywords else)
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, work), name=name, daemon=True)

    def _run(self, work: Callable[[threading.Event], Any]) -> None:
        try:
            self.future.set_result(work(self.cancelled))
        except BaseException as exc:  # noqa: BLE001 - delivered to whoever waits on the future
            self.future.set_exception(exc)
        finally:
            _forget(self)

    def cancel(self) -> None:
        self.cancelled.set()
        for other in self._linked:
            other.cancel()

    def also_cancel(self, other: Task) -> None:
        """Cancel ``other`` too when this task is cancelled (work this one waits for)."""
        self._linked.append(other)
        if self.cancelled.is_set():
            other.cancel()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def stop(self) -> None:
        """Cancel and wait until the thread has left its current step."""
        self.cancel()
        self.join()


_lock = threading.Lock()
_running: set[Task] = set()


def _forget(task: Task) -> None:
    with _lock:
        _running.discard(task)


def start(work: Callable[[threading.Event], Any], name: str) -> Task:
    """Run ``work(cancelled)`` on a tracked daemon thread; ``work`` should return soon after
    ``cancelled`` is set (raising :class:`Cancelled` is fine)."""
    task = Task(work, name)
    with _lock:
        _running.add(task)
    task._thread.start()
    return task


def running() -> int:
    """How many tasks are still running (tests)."""
    with _lock:
        return len(_running)


def shutdown() -> None:
    """Cancel every running task and wait for all of them."""
    with _lock:
        tasks = list(_running)
    for t in tasks:
        t.cancel()
    for t in tasks:
        t.join()


atexit.register(shutdown)
