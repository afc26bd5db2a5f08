"""The ``entropyflow`` command line: each command parses, makes one library call, renders.

Errors are mapped to exit codes in one place (:func:`.errors.errors` with
:func:`entropyflow.errors.exit_code`): a user error prints one line on stderr and exits 2; anything
unexpected exits 1 (traceback with ``--debug``). Heavy imports happen inside commands, after the
output folder has been checked.

    signals   SIGTERM/SIGHUP, recorded from start-up; the process's own exit
    errors    exceptions → one line and an exit code; one-line usage errors
    app       the typer app, its root callback, the consoles
    options   the shared model options as ``Annotated`` aliases, parsed into ``AnalyzeOptions``
    analyze · recommend · compare · track · sweep: one module per command
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from . import signals

signals.record_early()  # before the heavy imports below: a signal from here on is recorded, never fatal

from .. import background  # noqa: E402 - after the signal handlers, on purpose
from ..errors import EXIT_INTERNAL, exit_code  # noqa: E402
from .app import app  # noqa: E402

# isort: off
# the commands register themselves on `app`, in the order --help lists them
from . import analyze as _analyze  # noqa: E402, F401
from . import recommend as _recommend  # noqa: E402, F401
from . import compare as _compare  # noqa: E402, F401
from . import track as _track  # noqa: E402, F401
from . import sweep as _sweep  # noqa: E402, F401

# isort: on

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. SIGTERM and SIGHUP end the run like Ctrl-C does: through the
    same cleanup (no partial files, background work joined), with exit code 128 + the signal,
    whenever they come: during start-up, a command, its cleanup or the interpreter's exit."""
    previous = {}
    for sig in signals.STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread (embedded): leave the defaults
            previous[sig] = signal.signal(sig, signals.on_signal)
    code = EXIT_INTERNAL
    try:
        try:
            if signals.Signals.received is None:  # not already signalled during start-up
                signals.Signals.armed = bool(previous)
                app(args=argv, prog_name="entropyflow", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            signals.Signals.armed = False
            background.shutdown()
    except KeyboardInterrupt as exc:  # raised outside a command's own handling (while parsing, say)
        code = exit_code(exc)
    code = signals.signalled(code)
    if not signals.ENTRY:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signals.Signals.received = None
        return code
    signals.hard_exit(code)


def __getattr__(name: str) -> Any:
    if name == "_Progress":  # the progress display's old home (report.progress.ProgressDisplay)
        from ..report.progress import ProgressDisplay

        return ProgressDisplay
    raise AttributeError(f"module 'entropyflow.cli' has no attribute {name!r}")
