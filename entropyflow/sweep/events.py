"""What the Ray Tune runner takes and gives, without importing Ray (the CLI and the renderers use
these before, or without, the ``[sweep]`` extra)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError
from ..words import arg, option

MAX_CPUS = 65536  # of a local Ray, and per trial: far beyond one machine
MAX_GPUS = 1024
MAX_RETRIES = 100  # per trial: a worker that keeps dying is not going to recover


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # an existing cluster (ray://head:10001 or auto); None: start a local Ray
    cpus: int | None = None  # CPUs of the local Ray (default: all)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    working_dir: str | None = (
        None  # shipped to the cluster's workers (runtime_env) so they can import the train function
    )
    retries: int = 1  # times a trial whose Ray worker died is run again from its start (a raise is final)

    def __post_init__(self) -> None:
        """Resources are checked when the options are built (the command line's parsing), before
        Ray starts: Ray takes quantities in steps of 0.0001, and more than one GPU only whole."""
        if self.cpus is not None and (isinstance(self.cpus, bool) or not 1 <= self.cpus <= MAX_CPUS):
            raise OptionError(f"{option('cpus')} must be a whole number from 1 to {MAX_CPUS} (got {self.cpus})")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= MAX_RETRIES:
            raise OptionError(
                f"{option('retries')} must be a whole number from 0 to {MAX_RETRIES} (got {self.retries})"
            )
        cpu, gpu = self.cpus_per_trial, self.gpus_per_trial
        if not (math.isfinite(cpu) and 1e-4 <= cpu <= MAX_CPUS):
            raise OptionError(f"{option('cpus-per-trial')} must be from 0.0001 to {MAX_CPUS} (got {cpu:g})")
        if not (math.isfinite(gpu) and (gpu == 0 or 1e-4 <= gpu <= MAX_GPUS)):
            raise OptionError(f"{option('gpus-per-trial')} must be 0 or from 0.0001 to {MAX_GPUS} (got {gpu:g})")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise OptionError(
                f"{option('gpus-per-trial')} above 1 must be a whole number of GPUs (got {self.gpus_per_trial:g})"
            )
        if self.cpus is not None and self.cpus_per_trial > self.cpus:
            raise OptionError(
                f"{arg('cpus-per-trial', f'{self.cpus_per_trial:g}', quote=False)} is more than "
                f"{arg('cpus', self.cpus)}: no trial could start"
            )


@dataclass(frozen=True)
class TrialEvent:
    """What the progress display is told: a trial's state changed or it reported an epoch."""

    trial: str
    cell: str
    seed: int
    state: str  # pending | running | done | stopped (by Tune: not finished) | failed
    epoch: int | None = None
    value: float | None = None
    error: str | None = None
    seconds: float | None = None  # the trial's wall time at its latest reported epoch
    metric: str = ""  # what ``value`` is (--metric)


@dataclass(frozen=True)
class TrialOutcome:
    """One trial: its reported rows (one per epoch), its error if it failed, and what
    :func:`entropyflow.sweep.regularizer` placed in it (``{"layers": [...], "config": …}``; the
    config only for a rule resolved in the trial; None when it was not called)."""

    cell: str
    seed: int
    rows: tuple[dict[str, Any], ...]
    error: str | None
    placed: dict[str, Any] | None = None
