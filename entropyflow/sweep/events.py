"""What the Ray Tune runner takes and gives, without importing Ray (the CLI and the renderers use
these before, or without, the ``[sweep]`` extra)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # an existing cluster (ray://head:10001 or auto); None: start a local Ray
    cpus: int | None = None  # CPUs of the local Ray (default: all)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    working_dir: str | None = (
        None  # shipped to the cluster's workers (runtime_env) so they can import the train function
    )


@dataclass(frozen=True)
class TrialEvent:
    """What the progress display is told: a trial's state changed or it reported an epoch."""

    trial: str
    cell: str
    seed: int
    state: str  # pending | running | done | failed
    epoch: int | None = None
    value: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """One trial: its reported rows (one per epoch) and its error, if it failed."""

    cell: str
    seed: int
    rows: tuple[dict[str, Any], ...]
    error: str | None
