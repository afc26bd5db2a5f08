"""The single mapping from exceptions to messages and exit codes (:func:`errors` with
:func:`entropyflow.errors.exit_code`), and one-line usage errors for bad command lines."""

from __future__ import annotations

import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ..errors import EXIT_INTERNAL, EntropyflowError, Interrupted, exit_code, one_line
from ..text import printable


class OneLineUsageErrors(TyperGroup):
    """Bad command lines (unknown option, non-numeric value...) get one line on stderr and exit 2,
    like every other bad input, instead of click's multi-line usage box."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with usage_errors():
            return super().invoke(ctx)


# typer raises the UsageError of the click it ships with (public only through BadParameter's bases)
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@contextmanager
def usage_errors() -> Iterator[None]:
    try:
        yield
    except Interrupted as stopped:  # SIGTERM/SIGHUP outside a command's own handling (parsing, a callback)
        say_interrupted(Console(stderr=True), stopped)
        raise typer.Exit(exit_code(stopped)) from None
    except _UsageError as caught:
        if type(caught).__name__ == "NoArgsIsHelpError":  # bare `entropyflow`: the help page
            raise
        exc: Any = caught  # click's UsageError: ctx, format_message(), exit_code
        where = exc.ctx.command_path if exc.ctx is not None else "entropyflow"
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(printable(one_line(exc.format_message())))} (see '{where} --help')",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exc.exit_code) from None


@contextmanager
def errors(err: Console, debug: bool) -> Iterator[None]:
    """The single mapping from exceptions to messages and exit codes."""
    try:
        yield
    except typer.Exit:
        raise
    except EntropyflowError as exc:
        if debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        err.print(f"[bold red]error:[/] {escape(printable(one_line(exc, 2000)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt as exc:
        say_interrupted(err, exc)
        raise typer.Exit(exit_code(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become exit code 1
        if debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(printable(one_line(exc, 500)))} "
            "(re-run with --debug for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def say_interrupted(err: Console, exc: KeyboardInterrupt) -> None:
    what = "interrupted"
    if isinstance(exc, Interrupted):
        what = f"{'interrupted' if exc.signum == signal.SIGINT else 'terminated'} ({exc.name})"
    hint = f": {escape(printable(exc.hint, 300))}" if isinstance(exc, Interrupted) and exc.hint else ""
    err.print(f"[bold red]{what}[/]{hint}", highlight=False)
