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

**The example input.** ``input_size=(3, 32, 32)`` runs the forward pass on a float tensor of that
shape (batch 1). ``input=`` takes what :func:`entropyflow.analyze` takes, as the strings the CLI's
``--input`` reads or as parsed :class:`~entropyflow.spec.ExampleInput` values: ``input="long:1x128"``
(one sequence of 128 token ids: a BERT or GPT-2 gets its geometry, so its layer totals), or one
entry per forward argument, in order (``input=("float:1x3x32x32", "int:4")``). Given together,
``input_size`` and the first ``input`` must name the same shape. Neither: no forward pass, no totals.
A transformers model whose ``config.use_cache`` is off (as a Trainer sets it for training) is traced
with the cache on, as :func:`entropyflow.analyze` traces it, and its config is put back as it was.

**Which module runs.** A model whose class does not define ``forward()`` (a LightningModule whose
``training_step`` calls ``self.net(x)``; a plain container) cannot run the example itself: the
forward pass goes through the one attribute that holds every conv and dense layer (or the one
attribute with parameters), while the layers keep the model's own names (``net.0``, as in a λ
config made from it and the regularizer's parameter names). When several attributes hold layers,
the monitor asks for ``trace_module="net"`` (an attribute path; it may also be given for a model
that has a forward, to trace a part of it); layers outside that module are profiled without totals.
"""

from __future__ import annotations

import csv as csvlib
import io
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import write_atomic
from ..errors import OptionError, OutputError, TraceError, WeightValueError
from ..estimate import EstimateOptions, estimate
from ..estimate.results import LayerResult
from ..load.model import load_model
from ..report.tables import cell
from ..spec import INPUT_DTYPES, MAX_INPUTS, ExampleInput, parse_example_input, parse_input_size
from ..text import printable
from ..walk import Walk, effective_tensors, walk_model
from ..walk.trace import check_arguments
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
    order and the output geometry (layer totals); ``input``: the example input(s) as
    :func:`entropyflow.analyze` takes them (``"long:1x128"`` for token ids, a sequence with one
    entry per forward argument, or :class:`~entropyflow.spec.ExampleInput` values). Neither walks
    the modules without a forward pass (per-position values only, no totals). ``trace_module``:
    the attribute (path) whose forward runs the example, for a model without its own ``forward()``
    whose layers are in several attributes (see the module). ``csv``: a file the monitor creates
    (refused if it exists, unless ``overwrite``) and appends one row per layer at every record;
    ``resume=STEP`` continues a CSV a monitor wrote (its header), keeping its rows for steps up to
    ``STEP`` (``continued`` is the last of them) and appending.
    ``writer``: a ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_scalar`` and
    ``add_histogram``). ``tag``: the TensorBoard prefix."""

    def __init__(
        self,
        model: nn.Module,
        every: int = 1,
        *,
        input_size: tuple[int, ...] | str | None = None,
        input: str | ExampleInput | Sequence[str | ExampleInput] | None = None,
        trace_module: str | None = None,
        csv: str | os.PathLike[str] | None = None,
        writer: Any = None,
        tag: str = "entropy",
        overwrite: bool = False,
        keep_history: bool = True,
        resume: int | None = None,
    ):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise OptionError(f"every must be a positive integer (got {printable(every, 20)})")
        self.model = model
        self.every = every
        self.writer = writer
        self.tag = tag
        self.keep_history = keep_history
        self.history: list[Profile] = []
        shape, inputs = monitor_inputs(input_size, input)
        self._walk = _walk(model, shape, inputs, trace_module)
        if not self._walk.sites:
            raise OptionError(f"{type(model).__name__} has no conv or dense layer to monitor")
        if resume is not None and (not isinstance(resume, int) or isinstance(resume, bool) or resume < 0):
            raise OptionError(f"resume must be a step, an integer >= 0 (got {printable(repr(resume), 20)})")
        self._csv_path = Path(csv) if csv is not None else None
        self.continued: int | None = None  # resume=: the last step the continued CSV already had
        if self._csv_path is not None:
            check_csv(self._csv_path, overwrite=overwrite, resume=resume is not None)
            if resume is not None and profile_csv(self._csv_path):
                kept, self.continued = _kept(self._csv_path, resume)
                try:
                    write_atomic(self._csv_path, kept.encode("utf-8"))
                except OSError as exc:
                    raise OutputError(f"cannot write {printable(self._csv_path)}: {exc.strerror or exc}") from exc
            else:
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


# -- the CSV ------------------------------------------------------------------------------------


def check_csv(path: Path, *, overwrite: bool, resume: bool = False) -> None:
    """Refuse ``path`` before any work: an existing file unless ``overwrite`` (or, with ``resume``,
    a profile CSV a monitor wrote, which is continued), a missing folder."""
    if path.exists() and not overwrite and not (resume and profile_csv(path)):
        what = "exists (not an entropy profile a monitor wrote, to continue)" if resume else "exists"
        raise OutputError(f"{printable(path)} {what}: pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {printable(path)}: no such folder")


def profile_csv(path: Path) -> bool:
    """Whether ``path`` is a file a monitor wrote: its first line is the monitor's header."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return first.rstrip("\r\n") == ",".join(COLUMNS)


def _kept(path: Path, last: int) -> tuple[str, int | None]:
    """The monitor's CSV with only its rows for steps <= ``last``, and the last step it keeps."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csvlib.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read {printable(path)} to continue it: {exc}") from exc
    kept: list[list[str]] = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            step = int(row[0])
        except (IndexError, ValueError):
            raise OutputError(
                f"{printable(path)} line {n} is not a profile row: pass overwrite=True to replace the file"
            ) from None
        if step <= last:
            kept.append(row)
    buf = io.StringIO()
    csvlib.writer(buf, lineterminator="\n").writerows([COLUMNS, *kept])
    return buf.getvalue(), (max(int(row[0]) for row in kept) if kept else None)


# -- the example input ---------------------------------------------------------------------------

_INPUT_WORDS = (
    "expected 'DTYPE:SHAPE' with the batch dimension, which is 1 (e.g. 'long:1x128': 128 token ids), or "
    "'DTYPE:NUMBER' for a scalar argument (e.g. 'int:16000')"
)


def monitor_inputs(input_size: object, input: object) -> tuple[tuple[int, ...] | None, tuple[ExampleInput, ...] | None]:
    """``input_size=`` and ``input=`` parsed and checked against each other (the rule of
    :class:`~entropyflow.analysis.AnalyzeOptions`, in library words): the main input's shape
    without the batch, and the example inputs (None: ``input`` not given)."""
    shape = _size(input_size)
    inputs = _examples(input)
    first = inputs[0].shape if inputs else None
    if inputs and first is not None and shape is not None and first != shape:
        raise OptionError(
            f"input_size {'x'.join(map(str, shape))} and input {inputs[0]} (the first forward argument) "
            "disagree: give one of input_size= and input="
        )
    return (first or shape), inputs


def _size(size: object) -> tuple[int, ...] | None:
    if size is None:
        return None
    if not isinstance(size, (tuple, list, str)):
        raise OptionError(f"input_size must be a tuple of sizes such as (3, 32, 32), not {printable(repr(size), 60)}")
    try:
        return parse_input_size(size)
    except OptionError as exc:
        raise OptionError(
            f"bad input_size {printable(repr(size), 60)}: expected 1 to 5 positive sizes without the batch "
            "dimension, such as (3, 32, 32) or '3x32x32'"
        ) from exc


def _examples(value: object) -> tuple[ExampleInput, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, ExampleInput)) else value
    if isinstance(items, bytes) or not isinstance(items, Sequence):
        raise OptionError(
            f"input must be a string such as 'long:1x128', an ExampleInput, or a sequence of them (one per forward "
            f"argument), not {printable(repr(value), 60)}"
        )
    if not items:
        return None  # an empty sequence: not given
    if len(items) > MAX_INPUTS:
        raise OptionError(f"input has {len(items)} entries: at most {MAX_INPUTS} forward arguments")
    parsed = tuple(_example(item) for item in items)
    if parsed[0].is_scalar:
        raise OptionError(
            f"the first input ({parsed[0]}) is the model's main input: a tensor, 'DTYPE:SHAPE' (e.g. 'long:1x128')"
        )
    return parsed


def _example(item: object) -> ExampleInput:
    if isinstance(item, ExampleInput):
        return item
    if not isinstance(item, str):
        raise OptionError(f"input entries are strings such as 'long:1x128' or ExampleInput, not {type(item).__name__}")
    try:
        return parse_example_input(item)
    except OptionError as exc:
        raise OptionError(
            f"bad input {printable(repr(item), 60)}: {_INPUT_WORDS}; dtypes: {', '.join(sorted(INPUT_DTYPES))}"
        ) from exc


# -- the walk: which module runs the example -------------------------------------------------------


def _walk(
    model: nn.Module, shape: tuple[int, ...] | None, inputs: tuple[ExampleInput, ...] | None, trace_module: str | None
) -> Walk:
    """The model's sites under its own names, traced with the example input when there is one."""
    loaded = replace(load_model(model), rebuild=None)  # never a real forward pass on the training model
    if trace_module is not None and not isinstance(trace_module, str):
        raise OptionError(
            f"trace_module must be an attribute name such as 'net', not {printable(repr(trace_module), 60)}"
        )
    path = _checked_path(model, trace_module) if trace_module else None
    if shape is None:
        return walk_model(loaded, None, trace=False)
    more = inputs[1:] if inputs else None
    dtype = getattr(torch, inputs[0].dtype) if inputs and inputs[0].dtype else None
    if path is None and _default_forward(model):
        untraced = walk_model(loaded, None, trace=False)
        if not untraced.sites:
            return untraced  # nothing to monitor: the caller says so
        path = _holder(model, untraced)
    if path is not None:
        target = model.get_submodule(path)
        check_arguments(target, 1 + len(more if more is not None else ()), loaded.extra_inputs)
        loaded = replace(loaded, skeleton=_Through(model, path))
    try:
        with cache_on(model):
            return walk_model(loaded, shape, True, dtype, loaded.extra_inputs, more_inputs=more)
    except TraceError as exc:  # the walk's advice is for analyze(); the monitor has its own arguments
        cause = exc.__cause__ or exc
        where = f"{type(model).__name__}.{path}" if path else type(model).__name__
        raise TraceError(
            f"the example input {_described(shape, inputs)} does not run through {where} on the meta device "
            f"({type(cause).__name__}: {printable(cause, 160)}); the monitor never runs the training model itself: "
            "pass input_size= or input= as the forward takes them (token ids: input='long:1x128'), or neither for "
            "values without totals"
        ) from exc


@contextmanager
def cache_on(model: nn.Module) -> Iterator[None]:
    """Every transformers ``config.use_cache`` in ``model`` that is False turned on while the example
    traces it (on the meta device), and put back exactly as it was afterwards (an attribute the
    config did not hold itself is removed again). A Trainer turns the cache off for training, and
    without a cache transformers' causal mask looks for packed sequences in the position ids, a
    data-dependent test the meta device cannot run; the cache changes no layer the walk finds."""
    changed: list[tuple[Any, bool]] = []  # (config, whether use_cache was its own attribute)
    seen: set[int] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None or id(config) in seen:
            continue
        seen.add(id(config))
        if getattr(config, "use_cache", None) is False:
            own = "use_cache" in vars(config) if hasattr(config, "__dict__") else True
            config.use_cache = True
            changed.append((config, own))
    try:
        yield
    finally:
        for config, own in reversed(changed):
            if own:
                config.use_cache = False
            else:
                with suppress(AttributeError):
                    delattr(config, "use_cache")


def _described(shape: tuple[int, ...], inputs: tuple[ExampleInput, ...] | None) -> str:
    if inputs:
        return ", ".join(str(i) for i in inputs)
    return "x".join(map(str, (1, *shape)))


def _checked_path(model: nn.Module, path: str) -> str:
    try:
        model.get_submodule(path)
    except AttributeError as exc:
        names = [n for n, c in model.named_children() if next(c.parameters(), None) is not None]
        raise OptionError(
            f"trace_module={path!r}: {type(model).__name__} has no such submodule (its attributes with parameters: "
            f"{', '.join(names) or 'none'})"
        ) from exc
    return path


_FRAMEWORK_FORWARDS = {("LightningModule", "lightning"), ("LightningModule", "pytorch_lightning")}


def _default_forward(model: nn.Module) -> bool:
    """Whether ``model.forward`` is nn.Module's (unimplemented) or Lightning's (which calls it)."""
    if "forward" in vars(model):
        return False
    for cls in type(model).__mro__:
        if "forward" in cls.__dict__:
            return cls is nn.Module or (cls.__name__, cls.__module__.split(".")[0]) in _FRAMEWORK_FORWARDS
    return True


def _holder(model: nn.Module, walk: Walk) -> str | None:
    """The attribute of a model without ``forward()`` to run the example through: the one whose
    weights include every layer the walk found, else the one child with parameters; an OptionError
    naming the candidates when several attributes hold layers."""
    keys = {site.weight_key for site in walk.sites}
    children = list(model.named_children())
    held = {name: keys & {f"{name}.{k}" for k in child.state_dict()} for name, child in children}
    whole = [name for name, found in held.items() if found == keys]
    if len(whole) == 1:
        return whole[0]
    with_params = [name for name, child in children if next(child.parameters(), None) is not None]
    if len(with_params) == 1:
        return with_params[0]
    candidates = [name for name, found in held.items() if found]
    shown = ", ".join(candidates[:8]) + (", …" if len(candidates) > 8 else "")
    raise OptionError(
        f"{type(model).__name__} does not define forward() and its layers are in {len(candidates)} attributes "
        f"({shown}): pass trace_module= naming the one the example input runs through (e.g. "
        f"trace_module={candidates[0] if candidates else 'net'!r}), or no input_size=/input= for values without totals"
    )


class _Through(nn.Module):
    """The children, parameters and buffers of a model without ``forward()``, registered under
    their own names (so the walk names layers as the model does), with a forward that runs the
    submodule at ``path``. Only its structure is traced, on a meta copy."""

    def __init__(self, model: nn.Module, path: str):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in model.named_buffers(recurse=False):
            self.register_buffer(name, buf)
        self.path = path
        config = getattr(model.get_submodule(path), "config", None)  # a transformers model: fused layouts
        if config is not None and getattr(model, "config", None) is None:
            self.config = config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_submodule(self.path)(*args, **kwargs)


def _encode(rows: list[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    w = csvlib.writer(buf, lineterminator="\n")
    if header:
        w.writerow(COLUMNS)
    for row in rows:
        w.writerow([cell(row[c]) for c in COLUMNS])
    return buf.getvalue()
