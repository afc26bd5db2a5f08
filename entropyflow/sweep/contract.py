"""The contract between ``entropyflow sweep`` and a training function.

    def train(config, report):
        generator = entropyflow.sweep.seed(config)          # the same seed, the same run
        model = build_my_model()                            # initialised after seed(): paired init
        reg = entropyflow.sweep.regularizer(model, config)  # None for the baseline
        for epoch in range(config["epochs"]):
            for x, y in loader(generator):                  # batch order drawn from the generator
                loss = criterion(model(x), y) + (reg() if reg is not None else 0)
                ...
            report(epoch=epoch, val_loss=...)               # once per epoch, any number of metrics

``config`` holds ``seed``, ``lambda``, ``placement`` (None for the baseline), ``entropy`` (the λ
config of the cell, as a dict, or None), ``epochs``, ``cell`` and ``params`` (what ``--param``
passed). :func:`seed` seeds Python, numpy and torch and returns a generator for the batch order,
so that every cell of a seed starts from the same weights and sees the same batches: the runs
with and without the term differ only by the term (a λ = 0 placement gives the baseline's run
bit for bit, which the tests check).
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..config import load_config
from ..errors import OptionError
from ..regularize import EntropyRegularizer
from ..text import printable


class Report(Protocol):
    def __call__(self, *, epoch: int, **metrics: float) -> None: ...


Train = Callable[[dict[str, Any], Report], None]


def seed(config: Mapping[str, Any]) -> torch.Generator:
    """Seed Python, numpy and torch with the trial's seed; a generator for data order."""
    value = int(config["seed"])
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def regularizer(model: nn.Module, config: Mapping[str, Any], prefix: str | None = None) -> EntropyRegularizer | None:
    """The cell's :class:`EntropyRegularizer` on ``model`` (None for the baseline)."""
    entropy = config.get("entropy")
    if entropy is None:
        return None
    return EntropyRegularizer.from_config(model, load_config(entropy), prefix=prefix)


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
