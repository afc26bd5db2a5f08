"""``EntropyMonitor``: the per-layer entropy profile of a live model while it trains.

    monitor = EntropyMonitor(model, every=5, input_size=(1, 8, 8), csv="entropy_profile.csv",
                             writer=SummaryWriter("runs/x"))       # the writer is optional
    for epoch in range(epochs):
        train_one_epoch(model)
        monitor.step(epoch)                                         # records every 5th epoch
    monitor.close()

The model is walked once (geometry traced on the meta device, as ``entropyflow analyze`` does);
every record then runs the paper's estimator on the module's current weights, read through
``model.state_dict()`` at that moment: no weight is copied or kept between records, and
``model.to(device)`` or an optimiser that swaps tensors is always seen. A record reads the
``c11`` taps of every conv and computes the float64 ``log|det|`` of every dense layer's square
part, on the device the weights are on.

Each record is one row per layer in the CSV (``step``, the layer, the statistics of its
per-filter values in nats per output position, and the layer total where the geometry gives
one), and, with a TensorBoard ``SummaryWriter``, the scalars ``entropy/<layer>/median``,
``…/mean`` and ``…/total`` and the histogram ``entropy/<layer>`` of the per-filter values.
"""

from __future__ import annotations

import csv as csvlib
import io
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import OptionError, OutputError, WeightValueError
from ..estimate import EstimateOptions, estimate
from ..estimate.results import LayerResult
from ..load.model import load_model
from ..report.tables import cell
from ..spec import parse_input_size
from ..text import printable
from ..walk import effective_tensors, walk_model
from ..warn import warn

COLUMNS = ["step", "index", "name", "kind", "filters", "mean", "median", "q1", "q3", "min", "max", "n_neginf", "total"]


@dataclass(frozen=True)
class LayerProfile:
    """One layer at one record: the statistics of its per-filter entropy change (nats per output
    position; ``-inf`` filters are counted in ``n_neginf``, not averaged) and the layer total
    (nats over all output positions, summed over filters; None without geometry)."""

    index: int
    name: str
    kind: str
    filters: int
    mean: float | None
    median: float | None
    q1: float | None
    q3: float | None
    min: float | None
    max: float | None
    n_neginf: int
    total: float | None
    values: np.ndarray  # per filter (paper estimator: log|c11|, dense: log|det W_sq| / m)

    def row(self, step: int) -> dict[str, Any]:
        return {"step": step, **{c: getattr(self, c) for c in COLUMNS[1:]}}


@dataclass(frozen=True)
class Profile:
    """Every analysed layer of the model at one step; ``error`` when the weights held NaN or inf."""

    step: int
    layers: tuple[LayerProfile, ...]
    error: str | None = None

    def by_name(self) -> dict[str, LayerProfile]:
        return {layer.name: layer for layer in self.layers}


def _profile(layer: LayerResult) -> LayerProfile:
    s = layer.summary
    return LayerProfile(
        layer.index, layer.name, layer.kind, layer.filters, s.mean, s.median, s.q1, s.q3, s.min, s.max,
        s.n_neginf, layer.total, layer.per_position,
    )  # fmt: skip


class EntropyMonitor:
    """Record the per-layer entropy profile of ``model`` every ``every`` steps (see the module).

    ``input_size``: one example's shape without the batch (e.g. ``(3, 32, 32)``), for the layer
    order and the output geometry (layer totals); None walks the modules without a forward
    pass (per-position values only, no totals). ``csv``: a file the monitor creates (refused if
    it exists, unless ``overwrite``) and appends one row per layer at every record. ``writer``:
    a ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_scalar`` and
    ``add_histogram``). ``tag``: the TensorBoard prefix."""

    def __init__(
        self,
        model: nn.Module,
        every: int = 1,
        *,
        input_size: tuple[int, ...] | str | None = None,
        csv: str | os.PathLike[str] | None = None,
        writer: Any = None,
        tag: str = "entropy",
        overwrite: bool = False,
        keep_history: bool = True,
    ):
        if not isinstance(every, int) or every < 1:
            raise OptionError(f"every must be a positive integer (got {printable(every, 20)})")
        self.model = model
        self.every = every
        self.writer = writer
        self.tag = tag
        self.keep_history = keep_history
        self.history: list[Profile] = []
        shape = parse_input_size(input_size)
        loaded = replace(load_model(model), rebuild=None)  # never a real forward pass on the training model
        self._walk = walk_model(loaded, shape, trace=shape is not None)
        if not self._walk.sites:
            raise OptionError(f"{type(model).__name__} has no conv or dense layer to monitor")
        self._csv_path = Path(csv) if csv is not None else None
        if self._csv_path is not None:
            if self._csv_path.exists() and not overwrite:
                raise OutputError(f"{printable(self._csv_path)} exists: pass overwrite=True to replace it")
            if not self._csv_path.parent.is_dir():
                raise OutputError(f"cannot write {printable(self._csv_path)}: no such folder")
            self._write(_encode([], header=True), mode="w")

    @property
    def layers(self) -> tuple[str, ...]:
        """The monitored layers, in forward order."""
        return tuple(site.name for site in self._walk.sites)

    def step(self, step: int) -> Profile | None:
        """Record when ``step`` is a multiple of ``every`` (the first step, 0, always records)."""
        return self.record(step) if step % self.every == 0 else None

    def record(self, step: int) -> Profile:
        """The profile now (recorded, written and logged whatever ``every`` says)."""
        loaded = replace(load_model(self.model), rebuild=None)  # the module's tensors now, by reference
        tensors, walk = effective_tensors(loaded, self._walk)
        params = next(self.model.parameters(), None)
        device = str(params.device) if params is not None and params.device.type == "cuda" else "cpu"
        try:
            results, _ = estimate(walk, tensors, EstimateOptions(device=device))
            profile = Profile(int(step), tuple(_profile(r) for r in results))
        except WeightValueError as exc:  # a diverged run: recorded as such, training is not stopped
            warn(f"entropy profile at step {step}: {exc}", stacklevel=2)
            profile = Profile(int(step), (), str(exc))
        if self.keep_history:
            self.history.append(profile)
        if self._csv_path is not None:
            self._write(_encode([layer.row(profile.step) for layer in profile.layers], header=False), mode="a")
        if self.writer is not None:
            self._log(profile)
        return profile

    def _write(self, data: str, mode: str) -> None:
        assert self._csv_path is not None
        try:
            with open(self._csv_path, mode, encoding="utf-8", newline="") as f:
                f.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write {printable(self._csv_path)}: {exc.strerror or exc}") from exc

    def _log(self, profile: Profile) -> None:
        for layer in profile.layers:
            for what in ("median", "mean", "total"):
                value = getattr(layer, what)
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(f"{self.tag}/{layer.name}/{what}", value, profile.step)
            finite = layer.values[np.isfinite(layer.values)]
            if finite.size:
                self.writer.add_histogram(f"{self.tag}/{layer.name}", finite, profile.step)

    def close(self) -> None:
        """Flush the writer (the CSV is closed after every record)."""
        if self.writer is not None and hasattr(self.writer, "flush"):
            self.writer.flush()

    def __enter__(self) -> EntropyMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode(rows: list[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    w = csvlib.writer(buf, lineterminator="\n")
    if header:
        w.writerow(COLUMNS)
    for row in rows:
        w.writerow([cell(row[c]) for c in COLUMNS])
    return buf.getvalue()
