"""SIGTERM and SIGHUP over the command's whole life, standard library only: imported before the
CLI's heavy imports, so that a signal during start-up is recorded, never fatal."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

from ..errors import Interrupted

STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class Signals:
    """SIGTERM/SIGHUP over the command's whole life: ``received`` is the first one (the exit code is
    128 + it, whenever it came); while ``armed`` (a command runs) it also raises :class:`Interrupted`,
    once, so that the run ends through its cleanup. A second signal never interrupts that cleanup."""

    received: int | None = None
    armed = False


def on_signal(signum: int, _frame: FrameType | None) -> None:
    if Signals.received is None:
        Signals.received = signum
    if Signals.armed:
        Signals.armed = False
        raise Interrupted(signum)


def is_entry_point() -> bool:
    """Whether this process is the entropyflow command (its console script, ``python -m
    entropyflow``), not a program that imports the CLI (tests, embedding)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "entropyflow.__main__")
    return os.path.basename(getattr(main, "__file__", "") or "").partition(".")[0] == "entropyflow"


ENTRY = is_entry_point()


def record_early() -> None:
    """In the entropyflow process, before the heavy imports (~0.2 s): a signal from here on is recorded."""
    if ENTRY:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, on_signal)


def signalled(code: int) -> int:
    """``code``, or 128 + the signal received (saying so, unless the command's handler did)."""
    sig = Signals.received
    if sig is None:
        return code
    if code != 128 + sig:
        with contextlib.suppress(OSError):
            os.write(2, f"terminated ({signal.Signals(sig).name})\n".encode())
    return 128 + sig


def hard_exit(code: int) -> NoReturn:
    """End the entropyflow process now, without the interpreter's teardown (unloading torch takes
    long enough for a signal to land after Python's handlers are gone, killing the process with
    -15): exit handlers run and output is flushed first; a signal until the very end gives 128 + it."""
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # from here, a signal waits (and dies with us)
        for _ in range(2):  # a loop's backward jump runs a Python handler already tripped by a delivered signal
            pass
        Signals.received = Signals.received or min(signal.sigpending() & set(STOP_SIGNALS), default=None)
    os._exit(signalled(code))
