"""The load entry point, :func:`load_model`, from a spec (or a live module) to named tensors plus
whatever structure the source provides (an eager skeleton on ``meta``, a TorchScript module, or
nothing for a bare state dict)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..background import Task
from ..errors import ArchitectureMismatchError, OptionError, one_line
from ..extras import install_hint, missing, require
from ..spec import HF, ModelSpec, parse_spec
from ..text import printable
from ..words import arg, option
from . import hf, zoo
from .arch import NumClassesMismatch, match_state_dict
from .checkpoint import RawCheckpoint, read_checkpoint
from .hashing import integrity_async, sha256_file
from .source import DictSource, TensorSource

__all__ = ["LoadOptions", "LoadedModel", "load_model", "TensorSource"]


@dataclass(frozen=True)
class LoadOptions:
    """Where the weights come from and what loading them may do: the architecture of a bare state dict
    (``arch``), a weights file for a zoo spec, the checkpoint entry (``key``), a seeded random init, whether
    code in a file may run (``trust_code``) and whether files are hashed for provenance."""

    arch: str | None = None  # architecture spec for a bare state dict
    weights: str | None = None  # weights file for a zoo spec (instead of the cache)
    key: str | None = None  # which entry of a checkpoint dict holds the weights
    random_init: bool = False
    seed: int = 0
    trust_code: bool = False  # allow files whose loading runs code (pickled objects, TorchScript)
    hash_files: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise OptionError(
                f"{option('seed')} must be an integer from 0 to 2^64−1 (torch.manual_seed's range), not "
                f"{printable(self.seed, 40)}"
            )


@dataclass(frozen=True)
class LoadedModel:
    """Named tensors plus the structure to trace them with."""

    spec: str
    description: str
    format: str
    tensors: TensorSource
    skeleton: nn.Module | None = None  # eager architecture (meta device or live)
    script: Any = None  # torch.jit.ScriptModule
    input_size: tuple[int, ...] | None = None
    arch: str | None = None
    weights: str = ""
    files: tuple[Path, ...] = ()
    integrity: Task | None = field(default=None, compare=False)  # zip CRC check + sha256 (see load.hashing)
    notes: tuple[str, ...] = ()
    # the architecture as a real CPU module holding these weights, for models the meta device
    # cannot run (data-dependent code such as detection heads); None when there is no structure
    rebuild: Callable[[], nn.Module] | None = field(default=None, compare=False)
    random_init: bool = False
    input_dtype: str | None = None  # the example input's dtype when it is not the weights' ('int64': token ids)
    seed: int | None = None  # the torch.manual_seed of the initialisation, when known (random init, a manifest)
    input_note: str | None = None  # how the default example input was chosen (said when it is used)
    max_tokens: int | None = None  # the longest token sequence the model's config allows
    # why a state dict has no architecture here and what gives it one, when the load knows better than the
    # generic advice (a Hugging Face folder without transformers installed); saved in the walk's notes
    arch_remedy: str | None = None
    extra_inputs: tuple[str, ...] = ()  # keyword inputs that take the same example (decoder_input_ids)
    input_count: int = 1  # positional forward arguments that take the example input (optical flow: 2 frames)


TensorsHook = Callable[[TensorSource], None]


@dataclass
class Architectures:
    """Hugging Face architectures built once and reused: the checkpoints of one training run share
    their config.json, so ``entropyflow track`` builds its skeleton (on meta) once. Keyed by the
    sha256 of config.json and the number of tensors (which decides the build's tied weights)."""

    built: dict[tuple[str, int], tuple[nn.Module, Any, str, tuple[str, ...]]] = field(default_factory=dict)
    builds: int = 0  # how many were built (tests count them)

    def get(self, folder: Path, trust_code: bool, tensors: int) -> tuple[nn.Module, Any, str, tuple[str, ...]]:
        key = (sha256_file(folder / "config.json"), tensors)
        if key not in self.built:
            self.built[key] = hf.build(folder, trust_code, tensors=tensors)
            self.builds += 1
        return self.built[key]


def _not_a_model(model: object) -> str:
    """What to pass instead of ``model`` (a library caller's value that is no model spec), in one line."""
    if isinstance(model, Mapping):
        return (
            f"a mapping ({type(model).__name__} of {len(model)} entries: a state dict?) is not a model: load it into "
            "its module (module.load_state_dict(sd)) and pass the nn.Module, or save it with torch.save and pass the "
            f"file's path with {arg('arch', 'NAME')}"
        )
    return (
        "the model must be a spec string (a file or folder path, torchvision:NAME, timm:NAME, hf:ORG/NAME, "
        f"sample:NAME), an os.PathLike or an nn.Module, not {type(model).__name__}"
    )


def load_model(
    model: str | ModelSpec | nn.Module,
    options: LoadOptions | None = None,
    *,
    on_tensors: TensorsHook | None = None,
    architectures: Architectures | None = None,
) -> LoadedModel:
    """Load a model from a spec string (file path, ``torchvision:NAME``, ``timm:NAME``,
    ``sample:NAME``) or wrap a live ``nn.Module``. Never downloads; never unpickles code unless
    ``options.trust_code``. ``on_tensors`` is called with the checkpoint's tensors as soon as
    they are open, before any architecture is built (to start work early). ``architectures``:
    Hugging Face skeletons to reuse (one run's checkpoints), built here when missing."""
    opts = options or LoadOptions()
    if isinstance(model, nn.Module):
        return _from_module(model, "nn.Module (in memory)", type(model).__name__, opts)
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, (str, ModelSpec)):
        raise OptionError(_not_a_model(model))
    spec = model if isinstance(model, ModelSpec) else parse_spec(model)
    if spec.source == HF:
        return _from_hf(hf.resolve_hub(spec.name, spec.tag), opts, str(spec), on_tensors, architectures)
    if spec.is_file and hf.is_hf_folder(Path(spec.name).expanduser()):
        return _from_hf(Path(spec.name).expanduser(), opts, spec.name, on_tensors, architectures)
    if spec.is_file:
        if opts.weights or opts.random_init:
            raise OptionError(
                f"{option('weights')} and {option('random-init')} apply to torchvision:/timm:/sample: specs, "
                "not to files"
            )
        return _from_file(spec, Path(spec.name), opts, on_tensors=on_tensors)
    if opts.arch:
        raise OptionError(
            f"{option('arch')} applies to state-dict files; for a zoo spec use {arg('weights', 'PATH', quote=False)}"
        )
    zoo.check_spec(spec)
    if opts.weights:
        return _from_file(
            ModelSpec("file", opts.weights), Path(opts.weights), opts, arch=str(spec), on_tensors=on_tensors
        )
    if opts.random_init:
        real = zoo.build_random(spec, opts.seed)
        size, count, why = zoo.default_input(spec, real)  # the input the model is built for (not its weights')
        loaded = _from_module(real, str(spec), f"{spec} (random init)", opts, input_size=size)
        return replace(
            loaded,
            arch=str(spec),
            weights=f"random init (torch.manual_seed({opts.seed}))",
            format="zoo",
            random_init=True,
            seed=opts.seed,
            input_count=count,
            input_note=why,
        )
    f, origin = zoo.pretrained_file(spec)
    return _from_file(
        ModelSpec("file", str(f)),
        f,
        opts,
        arch=str(spec),
        zoo_pretrained=True,
        weights_origin=origin,
        spec_text=str(spec),
        on_tensors=on_tensors,
    )


def _from_hf(
    folder: Path,
    opts: LoadOptions,
    spec_text: str,
    on_tensors: TensorsHook | None,
    architectures: Architectures | None = None,
) -> LoadedModel:
    """A Hugging Face model folder: the architecture from config.json (transformers, on meta), the
    weights from its safetensors (sharded too) or its pickle-free ``pytorch_model.bin``."""
    if opts.arch:
        raise OptionError(
            f"{option('arch')} does not apply to a Hugging Face folder: its config.json gives the architecture"
        )
    if opts.weights:
        raise OptionError(f"{option('weights')} does not apply to a Hugging Face folder")
    if missing("hf"):
        if opts.random_init:
            require("hf")
        loaded = _from_file(ModelSpec("file", str(folder)), folder, opts, spec_text=spec_text, on_tensors=on_tensors)
        remedy = f"its config.json needs transformers: {install_hint('hf')} to build it (order, geometry, totals)"
        return replace(loaded, arch_remedy=remedy)
    if opts.random_init:
        torch.manual_seed(opts.seed)
        real, config, cls, built = hf.build(folder, opts.trust_code, device="cpu")
        size, dtype, why = hf.default_input(config, real)
        loaded = _from_module(real, spec_text, f"{cls} from {folder.name}/config.json (random init)", opts, size)
        return replace(
            loaded, arch=spec_text, weights=f"random init (torch.manual_seed({opts.seed}))", format="hf", notes=built,
            tensors=hf.with_experts(real, loaded.tensors),
            random_init=True, input_dtype=dtype, input_note=why, seed=opts.seed, max_tokens=hf.max_tokens(config),
            extra_inputs=hf.extra_inputs(config, real),
        )  # fmt: skip
    raw = read_checkpoint(folder, trust_code=opts.trust_code, key=opts.key)
    if on_tensors is not None:
        on_tensors(raw.tensors)
    if architectures is not None:
        skeleton, config, cls, built = architectures.get(folder, opts.trust_code, len(raw.tensors))
    else:
        skeleton, config, cls, built = hf.build(folder, opts.trust_code, tensors=len(raw.tensors))
    tensors, notes = hf.match(skeleton, raw.tensors, f"{cls} ({folder.name}/config.json)")
    size, dtype, why = hf.default_input(config, skeleton)
    files = raw.resolved.files
    check = integrity_async(files, sha256=True) if opts.hash_files else None

    def rebuild() -> nn.Module:  # a real CPU copy, only when the meta device cannot run the model
        real = hf.build(folder, opts.trust_code, device="cpu", tensors=len(raw.tensors))[0]
        real.load_state_dict({k: tensors.get(k) for k in tensors}, strict=False)
        return real

    return LoadedModel(
        spec=spec_text,
        description=f"{cls} from {folder.name}/config.json ({raw.description})",
        format=raw.resolved.format,
        tensors=tensors,
        skeleton=skeleton,
        input_size=size,
        input_dtype=dtype,
        arch=spec_text,
        weights=f"{raw.description} ({raw.resolved.path.name})",
        files=files,
        integrity=check,
        notes=raw.notes + built + notes,
        rebuild=rebuild,
        input_note=why,
        max_tokens=hf.max_tokens(config),
        extra_inputs=hf.extra_inputs(config, skeleton),
    )


def _from_module(module: nn.Module, spec: str, description: str, opts: LoadOptions, input_size=None) -> LoadedModel:
    return LoadedModel(
        spec=spec,
        description=description,
        format="nn.Module",
        tensors=DictSource(module.state_dict()),
        skeleton=module,
        input_size=input_size,
        weights="live module weights",
        rebuild=lambda: module,
    )


def _classifier(skeleton: nn.Module) -> tuple[str, ...]:
    last = [n for n, m in skeleton.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    return (last[-1],) if last else ()


def _from_file(
    spec: ModelSpec,
    path: Path,
    opts: LoadOptions,
    *,
    arch: str | None = None,
    zoo_pretrained: bool = False,
    weights_origin: str | None = None,
    spec_text: str | None = None,
    on_tensors: TensorsHook | None = None,
) -> LoadedModel:
    raw = read_checkpoint(path, trust_code=opts.trust_code, key=opts.key)
    if on_tensors is not None:
        on_tensors(raw.tensors)
    files = raw.resolved.files
    zipped = raw.resolved.format in ("torch-zip", "torch-sharded") and raw.script is None
    check = integrity_async(files, sha256=opts.hash_files, zip_crc=zipped) if (opts.hash_files or zipped) else None
    base = LoadedModel(
        spec=spec_text or str(spec),
        description=raw.description,
        format=raw.resolved.format,
        tensors=raw.tensors,
        files=files,
        integrity=check,
        weights=weights_origin or f"{raw.description} ({raw.resolved.path.name})",
        notes=raw.notes,
    )
    if raw.script is not None:
        if arch or opts.arch:
            raise OptionError(
                f"{option('arch')} does not apply to a TorchScript archive (it carries its own architecture)"
            )
        return replace(base, description="TorchScript archive", script=raw.script)
    if raw.module is not None:
        if arch or opts.arch:
            raise OptionError(
                f"{option('arch')} does not apply to a pickled nn.Module (it carries its own architecture)"
            )
        module = raw.module
        return replace(
            base,
            description=f"pickled {type(module).__name__} (loaded trusting its code)",  # saved: no flag, no keyword
            skeleton=module,
            rebuild=lambda: module,
        )
    manifest = raw.manifest or {}
    arch = arch or opts.arch or manifest.get("arch")
    input_size = tuple(manifest["input_size"]) if manifest.get("input_size") else None
    seed = manifest.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**64:
        base = replace(base, seed=seed)  # the initialisation it was trained from (sample_models manifests)
    if not arch:
        return replace(base, input_size=input_size)
    arch_spec = parse_spec(arch)
    if arch_spec.is_file:
        raise OptionError(f"{option('arch')} must be a torchvision:, timm: or sample: spec, not a file ({arch})")
    zoo.check_spec(arch_spec)
    skeleton, tensors, notes, rebuild = _match(arch_spec, raw, zoo_pretrained)
    size, count, why = zoo.default_input(arch_spec, skeleton)
    return replace(
        base,
        description=f"{raw.description} as {arch_spec}",
        tensors=tensors,
        skeleton=skeleton,
        arch=str(arch_spec),
        input_size=input_size or size,
        input_count=count,
        input_note=None if input_size else why,
        rebuild=rebuild,
        notes=base.notes + notes,
    )


def _real(arch_spec: ModelSpec, tensors: TensorSource, num_classes: int | None) -> Callable[[], nn.Module]:
    """Build the architecture on the CPU (its own init fills buffers the file lacks) and load the
    checkpoint's tensors into it."""

    def rebuild() -> nn.Module:
        module = zoo.build(arch_spec, device="cpu", num_classes=num_classes)
        own = module.state_dict()
        module.load_state_dict({k: tensors.get(k) for k in own if k in tensors}, strict=True)
        return module

    return rebuild


def _match(arch_spec: ModelSpec, raw: RawCheckpoint, zoo_pretrained: bool):
    if zoo_pretrained and arch_spec.source == "torchvision":
        sd = {k: raw.tensors.get(k) for k in raw.tensors}
        keys = list(sd)
        try:
            skeleton = zoo.build_pretrained_torchvision(arch_spec, sd)
        except RuntimeError as exc:
            raise ArchitectureMismatchError(f"cached weights do not match {arch_spec}: {one_line(exc, 200)}") from exc
        # torchvision's builder may rename legacy keys in place (densenet); otherwise keep the source
        return (
            skeleton,
            raw.tensors if list(sd) == keys else DictSource(sd),
            (),
            lambda: zoo.build_pretrained_torchvision(arch_spec, dict(sd), device="cpu"),
        )
    skeleton = zoo.build(arch_spec)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    try:
        m = match_state_dict(expected, raw.tensors, str(arch_spec), _classifier(skeleton))
    except NumClassesMismatch as nc:
        try:
            skeleton = zoo.build(arch_spec, num_classes=nc.num_classes)
        except TypeError:  # the builder has no num_classes: report the plain mismatch
            match_state_dict(expected, raw.tensors, str(arch_spec))
            raise
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        m = match_state_dict(expected, raw.tensors, str(arch_spec))
        return (
            skeleton,
            m.tensors,
            m.notes + (f"built {arch_spec} with num_classes={nc.num_classes} to match the checkpoint",),
            _real(arch_spec, m.tensors, nc.num_classes),
        )
    return skeleton, m.tensors, m.notes, _real(arch_spec, m.tensors, None)
