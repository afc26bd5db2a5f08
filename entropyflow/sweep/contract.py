"""The contract between ``entropyflow sweep`` and a training function.

    def train(config, report):
        generator = entropyflow.sweep.seed(config)          # the same seed, the same run
        model = build_my_model()                            # initialised after seed(): paired init
        reg = entropyflow.sweep.regularizer(model, config)  # None for the baseline
        for epoch in range(1, config["epochs"] + 1):
            for x, y in loader(generator):                  # batch order drawn from the generator
                loss = criterion(model(x), y) + (reg() if reg is not None else 0)
                ...
            report(epoch=epoch, val_loss=...)               # once per epoch, any number of metrics

``config`` holds ``seed``, ``lambda``, ``placement`` (None for the baseline), ``entropy`` (the λ
config of the cell, as a dict; for a structural placement swept without a reference, the rule
``{"rule": "first", "lambda": …}`` that :func:`regularizer` resolves on the model; None for the
baseline), ``epochs``, ``cell`` and ``params`` (what ``--param``
passed). :func:`seed` seeds Python, numpy and torch and returns a generator for the batch order,
so that every cell of a seed starts from the same weights and sees the same batches: the runs
with and without the term differ only by the term (a λ = 0 placement gives the baseline's run
bit for bit, which the tests check).

``report`` checks each call (:func:`report_row`): epochs are whole numbers from 0 to ``epochs``,
each reported once and in increasing order, and metrics are numbers. A call that breaks this
ends the trial as failed, with a reason naming the epoch (in words that name no option: it is
raised in a Ray worker and saved in the trial's record), rather than letting the summary count
an epoch twice or one past the budget. A NaN, an infinity or a value beyond ±1e100 is kept as
reported, but no verdict is drawn from a trial that reported one (the summary says why).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import operator
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..config import load_config, to_dict
from ..errors import OptionError
from ..regularize import EntropyRegularizer
from ..text import printable, shown
from ..words import arg, option
from .rules import resolve, rule_of


class Report(Protocol):
    def __call__(self, *, epoch: int, **metrics: float) -> None: ...


Train = Callable[[dict[str, Any], Report], None]


#: names ``report`` sets itself (the epoch, and the wall time since the trial started)
RESERVED = ("epoch", "wall_s")
#: the fields Ray Tune adds to every result (``ray.tune.result``): a metric of one of these names
#: would be read as Tune's own value (a process id, an iteration count), never the trial's
TUNE_FIELDS = (
    "done",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "iterations_since_restore",
    "timesteps_total",
    "timesteps_since_restore",
    "timesteps_this_iter",
    "episodes_total",
    "episodes_this_iter",
    "timestamp",
    "date",
    "pid",
    "hostname",
    "node_ip",
    "config",
    "trial_id",
    "experiment_id",
    "experiment_tag",
    "checkpoint_dir_name",
    "should_checkpoint",
)
#: the largest magnitude a metric may have and still be summarised (beyond it means and
#: variances overflow a double; such a value is shown, but no verdict is drawn from it)
MAX_METRIC = 1e100
#: how non-finite numbers are written in the sweep's JSON records (strict JSON has no NaN)
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class ReportError(ValueError):
    """A ``report`` call that breaks the contract; the trial fails with this one-line message."""


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return operator.index(value)
    except TypeError:
        return None


def number(value: Any) -> float | None:
    """A metric value as a float (NaN and infinities included), or None when it is not a number
    (text, None, a container, a tensor of several values, an integer beyond a double)."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):  # RuntimeError: a tensor of several values
        return None


def unusable(value: float) -> bool:
    """NaN, an infinity, or a magnitude beyond :data:`MAX_METRIC`: shown, never summarised."""
    return not math.isfinite(value) or abs(value) > MAX_METRIC


def report_row(epoch: Any, metrics: Mapping[str, Any], previous: int | None, epochs: int) -> dict[str, Any]:
    """One ``report(epoch=…, **metrics)`` call as a row, checked against the trial so far
    (``previous``: the last epoch it reported). Raises :class:`ReportError` naming the epoch."""
    e = _whole(epoch)
    if e is None:
        raise ReportError(f"report(epoch={shown(epoch, 40)}): the epoch must be a whole number")
    if e > epochs:
        raise ReportError(f"report(epoch={e}) is past the sweep's last epoch ({epochs})")
    if e < 0:
        raise ReportError(f"report(epoch={e}): epochs count from 1 (0: before training)")
    if previous is not None and e <= previous:
        raise ReportError(f"report(epoch={e}) after epoch {previous}: each epoch is reported once, in increasing order")
    row: dict[str, Any] = {"epoch": e}
    for name, value in metrics.items():
        if name in RESERVED:
            raise ReportError(f"report(epoch={e}, {name}=…): {name} is set by entropyflow; name the metric otherwise")
        v = number(value)
        if v is None:
            raise ReportError(f"report(epoch={e}, {printable(name, 40)}={shown(value, 40)}): a metric must be a number")
        row[name] = v
    return row


def check_metric(metric: str) -> None:
    """``--metric`` before anything runs: one of Ray Tune's own result fields (:data:`TUNE_FIELDS`)
    is refused with the reason."""
    if not metric or not metric.strip():
        raise OptionError(
            f"{option('metric')} needs the name of a metric the training function reports (e.g. val_loss)"
        )
    if metric in TUNE_FIELDS:
        raise OptionError(
            f"{arg('metric', printable(metric, 40), quote=False)}: that is the name of a field Ray Tune adds to "
            "every result "
            f"({metric}), not something the training function reports; report the metric under another name"
        )


def missing_metric(metric: str, row: Mapping[str, Any]) -> str | None:
    """Why a reported row cannot be compared on ``metric`` (None when it has it): what was
    reported instead, so that a typo in ``--metric`` names its fix. Built in a Ray worker or
    Tune's driver and saved with the sweep, so in words that name no option."""
    if metric in row:
        return None
    names = [printable(k, 40) for k in row if k not in RESERVED]
    given = ", ".join(names[:20]) + (", …" if len(names) > 20 else "") if names else "no metric"
    epoch = row.get("epoch")
    what = f"metric {printable(metric, 40)} is not what the training function reports"
    return f"{what}: report(epoch={epoch}) gave {given}"


def checked_rows(
    rows: Sequence[Any], epochs: int, previous: int | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows as they travel (the worker's batches, a record read back): each checked with
    :func:`report_row` after the ones before it. The good rows up to the first bad one, and the
    reason it is bad (None when all are good)."""
    good: list[dict[str, Any]] = []
    for raw in rows:
        if not isinstance(raw, dict) or "epoch" not in raw:
            return good, "a reported row is not a mapping with an epoch"
        wall = number(raw.get("wall_s", 0.0))
        if wall is None or not math.isfinite(wall) or wall < 0:
            return good, f"epoch {shown(raw['epoch'], 20)} has no valid wall time"
        metrics = {k: NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in raw.items() if k not in RESERVED}
        try:
            row = report_row(raw["epoch"], metrics, previous, epochs)
        except ReportError as exc:
            return good, str(exc)
        row["wall_s"] = wall
        good.append(row)
        previous = row["epoch"]
    return good, None


def seed(config: Mapping[str, Any]) -> torch.Generator:
    """Seed Python, numpy and torch with the trial's seed; a generator for data order."""
    value = int(config["seed"])
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


#: what :func:`regularizer` placed last in this process (the layers, and the whole λ config when it
#: resolved a rule): the sweep's worker sends it with the trial's next report, to be recorded
placed: list[dict[str, Any]] = []


def regularizer(
    model: nn.Module,
    config: Mapping[str, Any],
    prefix: str | None = None,
    *,
    input_size: tuple[int, ...] | None = None,
    input: str | Sequence[str] | None = None,
) -> EntropyRegularizer | None:
    """The cell's :class:`EntropyRegularizer` on ``model`` (None for the baseline).

    A structural placement swept without a reference (``config["entropy"]`` holds a rule) is
    resolved here on ``model``: its conv/dense layers in forward order (traced with ``input_size``
    or ``input`` when given, like ``analyze``'s; else from the model's torch.fx graph). No random
    number is drawn and no forward pass runs. The layers chosen are recorded with the trial
    (``trials.csv``'s ``layers``, ``summary.json``)."""
    entropy = config.get("entropy")
    if entropy is None:
        return None
    if isinstance(entropy, Mapping) and "rule" in entropy:
        rule, lam = rule_of(entropy)
        cfg = resolve(model, rule, lam, input_size=input_size, input=input)
        resolved = True
    else:
        cfg, resolved = load_config(entropy), False
    reg = EntropyRegularizer.from_config(model, cfg, prefix=prefix)
    placed[:] = [{"layers": [layer.name for layer in cfg.layers], "config": to_dict(cfg) if resolved else None}]
    return reg


def entropy_term(reg: EntropyRegularizer | None) -> torch.Tensor | float:
    """``reg()``, or 0 for the baseline: add it to the loss either way."""
    return reg() if reg is not None else 0.0


def load_train(spec: str, cwd: str | None = None) -> Train:
    """The training function ``spec`` names: ``module:function`` (importable, or from ``cwd``)
    or ``path/to/file.py:function``."""
    module_name, _, function = spec.rpartition(":")
    if not module_name or not function:
        raise OptionError(f"'{printable(spec, 80)}' is not MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_absolute() and cwd:
                path = Path(cwd) / path
            found = importlib.util.spec_from_file_location(f"_entropyflow_train_{path.stem}", path)
            if found is None or found.loader is None or not path.is_file():
                raise OptionError(f"no such training file: {printable(path)}")
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
        else:
            if cwd and cwd not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(module_name)
    except OptionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module can raise anything while it is imported
        raise OptionError(
            f"cannot import {printable(module_name, 80)} ({type(exc).__name__}: {printable(exc, 160)})"
        ) from exc
    train = getattr(module, function, None)
    if not callable(train):
        raise OptionError(f"{printable(module_name, 80)} has no function '{printable(function, 40)}'")
    return train
