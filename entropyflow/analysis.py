"""The pipeline in one call: load → walk → estimate → :class:`AnalysisResult`."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .errors import NoLayersError, OptionError
from .estimate import registry
from .estimate.dense import DEFAULT_BUDGET, DensePrefetch
from .estimate.results import AnalysisResult, ModelInfo
from .estimate.run import EstimateOptions, ProgressFn, check_estimator_options, estimate, resolve_device
from .load.model import Architectures, LoadedModel, LoadOptions, load_model
from .report import notebook  # noqa: F401 - the notebook view of the results analyze() returns
from .samples import DEFAULT_SAMPLE, default_sample_path
from .spec import MAX_INPUTS, ExampleInput, inputs_given, parse_bytes, parse_input_size
from .text import path_text, printable
from .vocab import ESTIMATORS, ChannelRule, Estimator
from .walk import Walk, effective_tensors, walk_model
from .words import arg, option, say

__all__ = ["AnalyzeOptions", "analyze", "ESTIMATORS"]


@dataclass(frozen=True)
class AnalyzeOptions(LoadOptions):
    """Every knob of :func:`analyze` (the CLI maps its flags one to one): where the weights come
    from (the :class:`LoadOptions` fields) and how they are walked and estimated.

    Values are parsed already (the CLI parses its strings with :mod:`entropyflow.spec`):
    ``input_size`` a tuple of sizes without the batch dimension, ``input`` the example inputs
    (``spec.parse_inputs('long:1x128')``), ``max_mem`` bytes (``spec.parse_bytes('4GiB')``; None:
    256 MiB). They are checked whenever the options are built, :func:`dataclasses.replace` included.
    ``input_size`` and ``input`` name the same shape: given together, they must agree."""

    input_size: tuple[int, ...] | None = None
    # one per forward argument, in order (the first is the main input, a tensor; token ids: 'long:1x128')
    input: tuple[ExampleInput, ...] | None = None
    trace: bool = True
    device: str = "auto"
    channel_rule: ChannelRule = "first"
    estimator: Estimator = "paper"
    max_mem: int | None = None  # memory budget of batched work, bytes; None: DEFAULT_BUDGET (256 MiB)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_estimator_options(self.estimator, self.channel_rule)
        object.__setattr__(self, "input_size", _parsed_size(self.input_size))
        object.__setattr__(self, "input", _parsed_inputs(self.input))
        first = self.input[0].shape if self.input else None
        if first is not None and self.input_size is not None and self.input_size != first:
            raise OptionError(
                f"input_size {'x'.join(map(str, self.input_size))} and the first input "
                f"{'x'.join(map(str, first))} disagree: give {say(cli='--input DTYPE:SHAPE', library='input=')} or "
                f"{arg('input-size')}, not both"
            )
        object.__setattr__(self, "max_mem", _parsed_budget(self.max_mem))

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The main input's size without the batch dimension (None: the model's own)."""
        return self.input[0].shape if self.input else self.input_size

    @property
    def input_dtype(self) -> str | None:
        """The main input's dtype from ``input`` (``'int64'``: token ids); None: the weights' own."""
        return self.input[0].dtype if self.input else None

    @property
    def more_inputs(self) -> tuple[ExampleInput, ...]:
        """The forward arguments after the main input: ``input``'s values after the first."""
        return self.input[1:] if self.input else ()

    @property
    def budget(self) -> int:
        """``max_mem`` in bytes."""
        return self.max_mem or DEFAULT_BUDGET

    def load_options(self) -> LoadOptions:
        return LoadOptions(**{f.name: getattr(self, f.name) for f in fields(LoadOptions)})


def _parsed_size(size: object) -> tuple[int, ...] | None:
    if size is not None and not isinstance(size, (tuple, list)):
        raise OptionError(
            f"input_size must be a tuple of sizes such as (3, 224, 224), not {printable(repr(size), 60)} "
            "(entropyflow.spec.parse_input_size reads '3x224x224')"
        )
    return parse_input_size(size)


def _parsed_inputs(inputs: object) -> tuple[ExampleInput, ...] | None:
    if inputs is None:
        return None
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise OptionError(
            f"input must be a tuple of ExampleInput, not {printable(repr(inputs), 60)} "
            "(entropyflow.spec.parse_inputs reads 'long:1x128')"
        )
    items = tuple(inputs)
    if not items:
        return None  # an empty sequence: not given
    if not all(isinstance(i, ExampleInput) for i in items):
        raise OptionError("input must hold ExampleInput values (entropyflow.spec.parse_inputs reads 'long:1x128')")
    if len(items) > MAX_INPUTS:
        raise OptionError(f"{inputs_given(len(items))}: at most {MAX_INPUTS} forward arguments")
    if items[0].is_scalar:
        raise OptionError(f"the first input ({items[0]}) is the model's main input: a tensor (DTYPE:SHAPE)")
    return items


def _parsed_budget(max_mem: object) -> int:
    if max_mem is not None and (isinstance(max_mem, bool) or not isinstance(max_mem, int)):
        raise OptionError(
            f"max_mem must be a number of bytes, not {printable(repr(max_mem), 60)} "
            "(entropyflow.spec.parse_bytes reads '4GiB')"
        )
    return parse_bytes(max_mem) or DEFAULT_BUDGET


@dataclass
class Reuse:
    """What the analyses of one training run's checkpoints share (``entropyflow track``): the Hugging
    Face architectures built from their config.json and the walks of those skeletons. Each
    checkpoint's tensors are still read, matched and estimated on their own; the results equal
    :func:`analyze`'s for each checkpoint."""

    architectures: Architectures = field(default_factory=Architectures)
    walks: dict[tuple[Any, ...], Walk] = field(default_factory=dict)


def analyze(
    model: str | nn.Module | None = None,
    options: AnalyzeOptions | None = None,
    *,
    arch: str | None = None,
    weights: str | None = None,
    key: str | None = None,
    random_init: bool = False,
    seed: int = 0,
    trust_code: bool = False,
    hash_files: bool = True,
    input_size: tuple[int, ...] | None = None,
    input: Sequence[ExampleInput] | None = None,
    trace: bool = True,
    device: str = "auto",
    channel_rule: ChannelRule = "first",
    estimator: Estimator = "paper",
    max_mem: int | None = None,
    progress: ProgressFn | None = None,
) -> AnalysisResult:
    """Analyse a model: a file path, ``torchvision:NAME``, ``timm:NAME``, ``hf:ORG/NAME``,
    ``sample:NAME``, a live ``nn.Module``, or None for the bundled sample.

    The keywords are the :class:`AnalyzeOptions` fields (parsed values: ``input_size=(3, 224, 224)``,
    ``max_mem=4 << 30``). Or pass ``options`` and leave them at their defaults: a keyword that
    differs from its default given together with ``options`` is an :class:`OptionError`.
    ``progress(stage, done, total)`` is called as the work advances."""
    given = dict(
        arch=arch, weights=weights, key=key, random_init=random_init, seed=seed, trust_code=trust_code,
        hash_files=hash_files, input_size=input_size, input=None if input is None else tuple(input), trace=trace,
        device=device, channel_rule=channel_rule, estimator=estimator, max_mem=max_mem,
    )  # fmt: skip
    return analyze_reusing(model, _options(options, given), progress=progress)


def analyze_reusing(
    model: str | nn.Module | None,
    opts: AnalyzeOptions,
    *,
    progress: ProgressFn | None = None,
    reuse: Reuse | None = None,
) -> AnalysisResult:
    """:func:`analyze` with parsed options, reusing the architecture and walk ``reuse`` holds
    (and adding to it)."""
    if model is None:
        if opts.random_init or opts.weights:
            setting = arg("random-init") if opts.random_init else arg("weights", "PATH", quote=False)
            example = say(
                cli=f"`entropyflow analyze sample:{DEFAULT_SAMPLE} {setting}`",
                library=f'analyze("sample:{DEFAULT_SAMPLE}", {setting})',
            )
            raise OptionError(
                f"{option('random-init') if opts.random_init else option('weights')} needs a model spec: with no "
                f"model argument entropyflow analyses the bundled sample file {DEFAULT_SAMPLE}.pt; for its "
                f"architecture use sample:{DEFAULT_SAMPLE}, e.g. {example}"
            )
        model = str(default_sample_path())
    if progress:
        progress("load", 0, 1)
    started: list[DensePrefetch] = []
    loaded: LoadedModel | None = None
    try:
        dev = resolve_device(opts.device)
        prefetch = registry.get(opts.estimator).dense_prefetch  # dense work that can start while the model is built
        loaded = load_model(
            model,
            opts.load_options(),
            on_tensors=(lambda t: started.append(DensePrefetch(t, dev, opts.budget))) if prefetch else None,
            architectures=reuse.architectures if reuse is not None else None,
        )
        if progress:
            progress("load", 1, 1)
            progress("trace", 0, 1)
        dtype = opts.input_dtype or loaded.input_dtype
        _check_tokens(dtype, opts.shape or loaded.input_size, loaded.max_tokens, opts.trace)
        how = (loaded.skeleton, opts.shape, opts.trace, dtype, opts.budget, opts.more_inputs if opts.input else None)
        shared = reuse is not None and any(loaded.skeleton is built[0] for built in reuse.architectures.built.values())
        walk = reuse.walks.get(how) if reuse is not None and shared else None
        if walk is None:
            walk = walk_model(
                loaded,
                opts.shape,
                opts.trace,
                getattr(torch, dtype) if dtype else None,
                loaded.extra_inputs,
                opts.budget,
                more_inputs=opts.more_inputs if opts.input else None,
            )
            if reuse is not None and shared:
                reuse.walks[how] = walk  # a skeleton built once for the run is walked once
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
        device=str(dev),
        layers=layers,
        skipped=walk.skipped,
        warnings=warnings,
        notes=loaded.notes
        + walk.notes
        + ((loaded.input_note,) if loaded.input_note and opts.trace and not opts.shape else ()),
        versions=_versions(),
    )


def _options(options: AnalyzeOptions | None, given: dict[str, Any]) -> AnalyzeOptions:
    """``options``, or the keywords as options; both at once only with the keywords at their defaults."""
    if options is None:
        return AnalyzeOptions(**given)
    changed = [name for name, value in given.items() if value != _DEFAULTS[name]]
    if changed:
        raise OptionError(
            f"analyze() takes its options as keywords or as options=, not both (also given: {', '.join(changed)})"
        )
    return options


_DEFAULTS = {f.name: f.default for f in fields(AnalyzeOptions)}


def _check_tokens(dtype: str | None, shape: tuple[int, ...] | None, limit: int | None, trace: bool) -> None:
    """Integer inputs of any shape the model accepts; for a model with a position table (``limit``:
    the config's ``max_position_embeddings``) the last axis of the token ids is at most that long."""
    if not trace or dtype is None or not dtype.startswith("int") or shape is None or limit is None:
        return
    if shape[-1] > limit:
        raise OptionError(
            f"{option('input')} asks for {shape[-1]} tokens, but the model's config allows at most {limit} positions "
            "(max_position_embeddings)"
        )


def _versions() -> tuple[tuple[str, str], ...]:
    out = [("entropyflow", __version__), ("python", platform.python_version())]
    for name in ("torch", "torchvision", "timm", "transformers", "numpy", "safetensors"):
        mod = sys.modules.get(name)
        if mod is not None:
            out.append((name, getattr(mod, "__version__", "?")))
    return tuple(out)
