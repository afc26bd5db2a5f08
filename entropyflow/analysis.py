"""The pipeline in one call: load → walk → estimate → :class:`AnalysisResult`."""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, fields, replace

from torch import nn

from ._version import __version__
from .errors import NoLayersError, OptionError
from .estimate import ESTIMATORS
from .estimate.dense import DEFAULT_BUDGET, DensePrefetch
from .estimate.run import CHANNEL_RULES, EstimateOptions, ProgressFn, estimate, resolve_device
from .load.model import LoadedModel, LoadOptions, load_model
from .estimate.results import AnalysisResult, ModelInfo
from .spec import parse_bytes, parse_input_size
from .text import path_text, printable
from .walk import effective_tensors, walk_model

@dataclass(frozen=True)
class AnalyzeOptions:
    """Every knob of :func:`analyze` (the CLI maps its flags one to one)."""

    arch: str | None = None
    weights: str | None = None
    key: str | None = None
    random_init: bool = False
    seed: int = 0
    trust_code: bool = False  # allow files whose loading runs code (pickled objects, TorchScript)
    hash_files: bool = True
    input_size: tuple[int, ...] | None = None
    trace: bool = True
    device: str = "auto"
    channel_rule: str = "first"
    estimator: str = "paper"
    max_mem: int | str | None = None  # memory budget of batched work ('4GiB'); default 256 MiB

    def load_options(self) -> LoadOptions:
        names = {f.name for f in fields(LoadOptions)}
        return LoadOptions(**{k: getattr(self, k) for k in names})


def analyze(model: str | nn.Module | None = None, options: AnalyzeOptions | None = None, *,
            progress: ProgressFn | None = None, **overrides) -> AnalysisResult:
    """Analyse a model: a file path, ``torchvision:NAME``, ``timm:NAME``, ``sample:NAME``, a live
    ``nn.Module``, or None for the bundled sample. ``overrides`` are :class:`AnalyzeOptions` fields."""
    opts = replace(options or AnalyzeOptions(), **overrides)
    if opts.estimator not in ESTIMATORS:
        raise OptionError(f"unknown estimator '{opts.estimator}' (available: {', '.join(ESTIMATORS)})")
    if opts.channel_rule not in CHANNEL_RULES:
        raise OptionError(f"unknown channel rule '{opts.channel_rule}' (use first or mean)")
    if opts.estimator == "spectral" and opts.channel_rule != "first":
        raise OptionError("--channel-rule mean applies to the paper estimator only (the spectral estimator uses every channel)")
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or not 0 <= opts.seed < 2**64:
        raise OptionError(f"--seed must be an integer from 0 to 2^64−1 (torch.manual_seed's range), not {printable(opts.seed, 40)}")
    opts = replace(opts, input_size=parse_input_size(opts.input_size), max_mem=parse_bytes(opts.max_mem) or DEFAULT_BUDGET)
    if model is None:
        from .samples import DEFAULT_SAMPLE, default_sample_path

        if opts.random_init or opts.weights:
            flag = "--random-init" if opts.random_init else "--weights"
            raise OptionError(f"{flag} needs a model spec: with no model argument entropyflow analyses the bundled sample "
                              f"file {DEFAULT_SAMPLE}.pt; for its architecture use sample:{DEFAULT_SAMPLE}, e.g. "
                              f"`entropyflow analyze sample:{DEFAULT_SAMPLE} {flag}{' PATH' if flag == '--weights' else ''}`")
        model = str(default_sample_path())
    if progress:
        progress("load", 0, 1)
    started: list[DensePrefetch] = []
    loaded: LoadedModel | None = None
    try:
        device = resolve_device(opts.device)
        prefetch = opts.estimator == "paper"  # the paper's dense log-determinants can start while the model is built
        loaded = load_model(model, opts.load_options(),
                            on_tensors=(lambda t: started.append(DensePrefetch(t, device, opts.max_mem))) if prefetch else None)
        if progress:
            progress("load", 1, 1)
            progress("trace", 0, 1)
        walk = walk_model(loaded, opts.input_size, opts.trace)
        if progress:
            progress("trace", 1, 1)
        if not walk.sites:
            kinds = sorted({s.module_type for s in walk.skipped})
            raise NoLayersError(f"no conv or dense layers found in {loaded.spec}" + (f" (only {', '.join(kinds[:4])})" if kinds else ""))
        tensors, walk = effective_tensors(loaded, walk)
        layers, warnings = estimate(walk, tensors, EstimateOptions(opts.channel_rule, opts.device, opts.max_mem, opts.estimator), progress,
                                    prefetch=started[0] if started else None)
        sha = loaded.integrity.future.result() if loaded.integrity is not None else None
    except BaseException:
        # nothing may keep running after a failed analysis (a thread inside a torch op at exit aborts the process)
        for p in started:
            p.stop()
        if loaded is not None and loaded.integrity is not None:
            loaded.integrity.stop()
        raise
    info = ModelInfo(
        spec=path_text(loaded.spec), description=path_text(loaded.description), format=loaded.format,
        weights=path_text(loaded.weights), files=tuple(path_text(f) for f in loaded.files), sha256=sha, arch=loaded.arch,
        input_size=walk.input_size, walk=walk.mode,
    )
    return AnalysisResult(
        model=info, estimator=opts.estimator, channel_rule=opts.channel_rule, device=str(device),
        layers=layers, skipped=walk.skipped, warnings=warnings, notes=loaded.notes + walk.notes, versions=_versions(),
    )


def _versions() -> tuple[tuple[str, str], ...]:
    out = [("entropyflow", __version__), ("python", platform.python_version())]
    for name in ("torch", "torchvision", "timm", "numpy", "safetensors"):
        mod = sys.modules.get(name)
        if mod is not None:
            out.append((name, getattr(mod, "__version__", "?")))
    return tuple(out)
