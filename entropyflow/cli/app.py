"""The typer application, its root callback and the consoles the commands render to."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from .. import words
from .._version import __version__
from ..text import file_names, printable
from .errors import OneLineUsageErrors


def _flags_show_no_type() -> None:
    """``--help`` lists a flag as ``--no-plot``, not ``--no-plot <bool>``: typer shows every option's
    type, and a flag takes no value to type; an argument as its name alone."""
    from typer.core import TyperArgument, TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    # an argument is listed by its name (MODEL, CHECKPOINTS), which says what to give better than <str>
    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]


_flags_show_no_type()

app = typer.Typer(
    cls=OneLineUsageErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Measure how entropy flows through trained neural networks, from their weights alone.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"entropyflow {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """entropyflow: per-layer, per-filter entropy change of conv/dense layers (Meni et al.)."""
    # errors raised during this command name flags (--arch), not keywords; the library's words
    # come back when the command ends (the root context closes), so an embedding process is unchanged
    ctx.call_on_close(words.enter(words.CLI))


UNWRAPPED = 10_000  # columns of a console that is not a terminal: no line is wrapped


def console(stderr: bool = False) -> Console:
    """A console; when output is not a terminal (a pipe, a file) nothing is wrapped: tables and lines
    keep their whole width, for a script or a wide pager to read."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=UNWRAPPED if wide else None)


def consoles(ctx: typer.Context) -> tuple[Console, Console]:
    """The output and error consoles: injectable through ``ctx.obj`` (tests, embedding)."""
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    return obj.get("console") or console(), obj.get("err_console") or console(stderr=True)


def wrote(out: Console, written: Sequence[Path], out_dir: Path) -> None:
    from rich.text import Text

    names = file_names([p.name for p in written])
    out.print(Text(printable(f"wrote {names} to {out_dir}"), style="dim"), highlight=False)
