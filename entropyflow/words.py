"""Who is calling, and the words an error message uses for an option: the command line's flag
(``--input-size``) when the CLI is the caller, the library's keyword (``input_size=``) otherwise.

The caller is a context variable: the library by default; the CLI sets it once when it starts a
command (``cli/app.py``'s root callback) and resets it when the command ends, so a library call
made after a CLI invocation in the same process speaks library words again. Messages are built
when they are raised, with :func:`arg` / :func:`option`, never stored in constants. A text that is
saved in a result (a skipped layer's reason, a walk note in ``analysis.json``) reads the same
whoever the caller is, and so names no flag and no keyword."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

Caller = Literal["library", "cli"]
LIBRARY: Caller = "library"
CLI: Caller = "cli"

_CALLER: ContextVar[Caller] = ContextVar("entropyflow_caller", default=LIBRARY)

#: every option a message may name: its CLI flag and the library's keyword, ``=`` included (or the
#: whole setting, for a flag that switches a keyword: ``--no-trace`` is ``trace=False``). Keys are
#: the flags without their dashes.
WORDS: dict[str, tuple[str, str]] = {
    # where the weights come from (LoadOptions)
    "arch": ("--arch", "arch="),
    "weights": ("--weights", "weights="),
    "key": ("--key", "key="),
    "random-init": ("--random-init", "random_init=True"),
    "seed": ("--seed", "seed="),
    "trust-code": ("--trust-code", "trust_code=True"),
    "no-hash": ("--no-hash", "hash_files=False"),
    # walk and estimate (AnalyzeOptions)
    "input-size": ("--input-size", "input_size="),
    "input": ("--input", "input="),
    "no-trace": ("--no-trace", "trace=False"),
    "device": ("--device", "device="),
    "channel-rule": ("--channel-rule", "channel_rule="),
    "estimator": ("--estimator", "estimator="),
    "max-gpu-mem": ("--max-gpu-mem", "max_mem="),
    # a report folder (analyze_to, track_to, ReportOptions)
    "out": ("--out", "out="),
    "compare": ("--compare", "compare="),
    "seeds": ("--seeds", "seeds="),
    "plot-format": ("--plot-format", "plot_format="),
    "no-plot": ("--no-plot", "plot=False"),
    "plot-total": ("--plot-total", "total=True"),
    "no-html": ("--no-html", "html=False"),
    "labels": ("--labels", "labels="),
    # track (TrackOptions, track_to)
    "stat": ("--stat", "statistic="),
    "layer": ("--layer", "layers="),
    # recommend (RecommendOptions)
    "strategy": ("--strategy", "strategy="),
    "k": ("--k", "k="),
    "top-k": ("--top-k", "top_k="),
    "z": ("--z", "z="),
    "lambda": ("--lambda", "lam_conv="),
    "lambda-dense": ("--lambda-dense", "lam_dense="),
    "form": ("--form", "form="),
    "epsilon": ("--epsilon", "epsilon="),
    "per-filter": ("--per-filter", "per_filter="),
    # sweep (SweepRequest, RayOptions)
    "task": ("--task", "task="),
    "config": ("--config", "configs="),
    "reference": ("--reference", "reference="),
    "placements": ("--placements", "placements="),
    "lambdas": ("--lambdas", "lambdas="),
    "first-seed": ("--first-seed", "first_seed="),
    "epochs": ("--epochs", "epochs="),
    "metric": ("--metric", "metric="),
    "mode": ("--mode", "mode="),
    "target": ("--target", "target="),
    "patience": ("--patience", "patience="),
    "primary": ("--primary", "primary="),
    "param": ("--param", "params="),
    "resume": ("--resume", "resume=True"),
    "address": ("--address", "address="),
    "cpus": ("--cpus", "cpus="),
    "cpus-per-trial": ("--cpus-per-trial", "cpus_per_trial="),
    "gpus-per-trial": ("--gpus-per-trial", "gpus_per_trial="),
    "working-dir": ("--working-dir", "working_dir="),
    "retries": ("--retries", "retries="),
    "data": ("--data", "data="),
    "max-epochs": ("--max-epochs", "max_epochs="),
    "subset": ("--subset", "subset="),
    # track on Ray (ParallelOptions)
    "workers": ("--workers", "workers="),
}


def caller() -> Caller:
    """Who is calling now: ``"cli"`` inside a command of the command line, else ``"library"``."""
    return _CALLER.get()


def cli() -> bool:
    return _CALLER.get() == CLI


def enter(who: Caller) -> Callable[[], None]:
    """Make ``who`` the caller from here on; returns the function that restores the previous one."""
    if who not in (LIBRARY, CLI):
        raise ValueError(f"caller must be {LIBRARY!r} or {CLI!r}, not {who!r}")
    token = _CALLER.set(who)
    return lambda: _CALLER.reset(token)


@contextmanager
def speaking(who: Caller) -> Iterator[None]:
    """``with speaking("cli"): ...``: messages built inside use ``who``'s words."""
    leave = enter(who)
    try:
        yield
    finally:
        leave()


def arg(name: str, value: object = None, *, quote: bool = True) -> str:
    """How the caller sets option ``name`` (a key of :data:`WORDS`): ``arg("input-size")`` is
    ``--input-size`` or ``input_size=``; with a ``value``, ``arg("estimator", "paper")`` is
    ``--estimator paper`` or ``estimator="paper"`` (``quote=False`` for a placeholder such as PATH:
    ``weights=PATH``)."""
    flag, keyword = WORDS[name]
    if value is None:
        return flag if cli() else keyword
    if cli():
        return f"{flag} {value}"
    if not keyword.endswith("="):
        raise ValueError(f"{name} is a switch ({keyword}): it takes no value")
    shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) and quote else str(value)
    return f"{keyword}{shown}"


def option(name: str) -> str:
    """The option's name as a sentence uses it: ``--input-size`` or ``input_size`` (``bad input_size
    '0x3'``; a switch reads as its keyword: ``trace``)."""
    flag, keyword = WORDS[name]
    return flag if cli() else keyword.partition("=")[0]


def say(*, cli: str, library: str) -> str:
    """One of two phrasings, for a sentence whose shape differs (a command line to type, a call)."""
    return cli if _CALLER.get() == CLI else library
