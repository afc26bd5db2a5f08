"""The pipeline in one call: load → walk → estimate → :class:`AnalysisResult`."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import torch
from torch import nn

from ._version import __version__
from .errors import NoLayersError, OptionError
from .estimate.dense import DEFAULT_BUDGET, DensePrefetch
from .estimate.results import AnalysisResult, ModelInfo
from .estimate.run import EstimateOptions, ProgressFn, check_estimator_options, estimate, resolve_device
from .load.model import LoadedModel, LoadOptions, load_model
from .samples import DEFAULT_SAMPLE, default_sample_path
from .spec import ExampleInput, parse_bytes, parse_input_size, parse_inputs
from .text import path_text
from .vocab import ESTIMATORS, ChannelRule, Estimator
from .walk import effective_tensors, walk_model

__all__ = ["AnalyzeOptions", "analyze", "ESTIMATORS"]


@dataclass(frozen=True)
class AnalyzeOptions(LoadOptions):
    """Every knob of :func:`analyze` (the CLI maps its flags one to one): where the weights come
    from (the :class:`LoadOptions` fields) and how they are walked and estimated. Values are
    checked and normalised when the options are built (``input_size='3x224x224'`` → a tuple,
    ``max_mem='4GiB'`` → bytes)."""

    input_size: tuple[int, ...] | str | None = None
    # '--input long:1x128': dtype and shape with the batch dimension (token ids); a sequence: one per forward
    # argument, in order ('float:1x3x224x224', 'int:16000')
    input: str | Sequence[str] | None = None
    input_dtype: str | None = None  # set from `input` ('int64', 'float32', …)
    trace: bool = True
    device: str = "auto"
    channel_rule: ChannelRule = "first"
    estimator: Estimator = "paper"
    max_mem: int | str | None = None  # memory budget of batched work ('4GiB'); default 256 MiB

    def __post_init__(self) -> None:
        super().__post_init__()
        check_estimator_options(self.estimator, self.channel_rule)
        object.__setattr__(self, "input_size", parse_input_size(self.input_size))
        if self.input is not None and not isinstance(self.input, str):
            object.__setattr__(self, "input", tuple(self.input) or None)  # hashable; empty: not given
        if self.input is not None:
            if self.input_size is not None and self.input_dtype is None:
                raise OptionError("give --input DTYPE:SHAPE or --input-size, not both")
            first = parse_inputs(self.input)[0]
            object.__setattr__(self, "input_dtype", first.dtype)
            object.__setattr__(self, "input_size", first.shape)
        object.__setattr__(self, "max_mem", parse_bytes(self.max_mem) or DEFAULT_BUDGET)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """``input_size`` as parsed (a tuple, or None for the model's own)."""
        return cast("tuple[int, ...] | None", self.input_size)

    @property
    def more_inputs(self) -> tuple[ExampleInput, ...]:
        """The forward arguments after the main input, from ``--input`` given more than once."""
        return parse_inputs(self.input)[1:]

    @property
    def budget(self) -> int:
        """``max_mem`` as parsed: bytes."""
        return cast(int, self.max_mem)

    def load_options(self) -> LoadOptions:
        return LoadOptions(**{f.name: getattr(self, f.name) for f in fields(LoadOptions)})


def analyze(
    model: str | nn.Module | None = None,
    options: AnalyzeOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    **overrides: Any,
) -> AnalysisResult:
    """Analyse a model: a file path, ``torchvision:NAME``, ``timm:NAME``, ``sample:NAME``, a live
    ``nn.Module``, or None for the bundled sample. ``overrides`` are :class:`AnalyzeOptions` fields."""
    opts = replace(options or AnalyzeOptions(), **overrides)
    if model is None:
        if opts.random_init or opts.weights:
            flag = "--random-init" if opts.random_init else "--weights"
            raise OptionError(
                f"{flag} needs a model spec: with no model argument entropyflow analyses the bundled sample "
                f"file {DEFAULT_SAMPLE}.pt; for its architecture use sample:{DEFAULT_SAMPLE}, e.g. "
                f"`entropyflow analyze sample:{DEFAULT_SAMPLE} {flag}{' PATH' if flag == '--weights' else ''}`"
            )
        model = str(default_sample_path())
    if progress:
        progress("load", 0, 1)
    started: list[DensePrefetch] = []
    loaded: LoadedModel | None = None
    try:
        device = resolve_device(opts.device)
        prefetch = opts.estimator == "paper"  # the paper's dense log-determinants can start while the model is built
        loaded = load_model(
            model,
            opts.load_options(),
            on_tensors=(lambda t: started.append(DensePrefetch(t, device, opts.budget))) if prefetch else None,
        )
        if progress:
            progress("load", 1, 1)
            progress("trace", 0, 1)
        dtype = opts.input_dtype or loaded.input_dtype
        _check_tokens(dtype, opts.shape or loaded.input_size, loaded.max_tokens, opts.trace)
        walk = walk_model(
            loaded,
            opts.shape,
            opts.trace,
            getattr(torch, dtype) if dtype else None,
            loaded.extra_inputs,
            opts.budget,
            more_inputs=opts.more_inputs if opts.input is not None else None,
        )
        if progress:
            progress("trace", 1, 1)
        if not walk.sites:
            kinds = sorted({s.module_type for s in walk.skipped})
            raise NoLayersError(
                f"no conv or dense layers found in {loaded.spec}" + (f" (only {', '.join(kinds[:4])})" if kinds else "")
            )
        tensors, walk = effective_tensors(loaded, walk)
        layers, warnings = estimate(
            walk,
            tensors,
            EstimateOptions(opts.channel_rule, opts.device, opts.budget, opts.estimator),
            progress,
            prefetch=started[0] if started else None,
        )
        sha = loaded.integrity.future.result() if loaded.integrity is not None else None
    except BaseException:
        # nothing may keep running after a failed analysis (a thread inside a torch op at exit aborts the process)
        for p in started:
            p.stop()
        if loaded is not None and loaded.integrity is not None:
            loaded.integrity.stop()
        raise
    info = ModelInfo(
        spec=path_text(loaded.spec),
        description=path_text(loaded.description),
        format=loaded.format,
        weights=path_text(loaded.weights),
        files=tuple(path_text(f) for f in loaded.files),
        sha256=sha,
        arch=loaded.arch,
        input_size=walk.input_size,
        input_dtype=dtype if walk.input_size else None,
        walk=walk.mode,
        random_init=loaded.random_init,
        seed=loaded.seed,
    )
    return AnalysisResult(
        model=info,
        estimator=opts.estimator,
        channel_rule=opts.channel_rule,
        device=str(device),
        layers=layers,
        skipped=walk.skipped,
        warnings=warnings,
        notes=loaded.notes
        + walk.notes
        + ((loaded.input_note,) if loaded.input_note and opts.trace and not opts.shape else ()),
        versions=_versions(),
    )


def _check_tokens(dtype: str | None, shape: tuple[int, ...] | None, limit: int | None, trace: bool) -> None:
    """Integer inputs of any shape the model accepts; for a model with a position table (``limit``:
    the config's ``max_position_embeddings``) the last axis of the token ids is at most that long."""
    if not trace or dtype is None or not dtype.startswith("int") or shape is None or limit is None:
        return
    if shape[-1] > limit:
        raise OptionError(
            f"--input asks for {shape[-1]} tokens, but the model's config allows at most {limit} positions "
            "(max_position_embeddings)"
        )


def _versions() -> tuple[tuple[str, str], ...]:
    out = [("entropyflow", __version__), ("python", platform.python_version())]
    for name in ("torch", "torchvision", "timm", "numpy", "safetensors"):
        mod = sys.modules.get(name)
        if mod is not None:
            out.append((name, getattr(mod, "__version__", "?")))
    return tuple(out)
