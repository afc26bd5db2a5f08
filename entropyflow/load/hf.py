"""Hugging Face models: ``hf:ORG/NAME[@REVISION]`` from the local hub cache (never downloaded), and
folders with a ``config.json``, built with ``transformers`` (the ``[hf]`` extra) on the meta device.

The architecture class is the config's ``architectures[0]``, a PyTorch class of transformers (a
TensorFlow/Flax name is built as its PyTorch twin, with a note; an unknown one, or one whose
``model_type`` contradicts the config's, is refused; none: ``AutoModel``, with a note); custom code
(``auto_map``, e.g. Baichuan) runs only with ``--trust-code``, and transformers never asks.
``config.json`` is checked first (``hf_config``), and the build stops as soon as the model has
more modules than the checkpoint's tensors allow (``--random-init``: absolute bounds on modules
and parameters, sized on the meta device before anything is allocated). Attention is built as
``attn_implementation='eager'`` (plain matmuls, which the meta device runs; the weights and the
maps are the same). The checkpoint's tensors are matched to the architecture's parameters
(tied weights such as ``lm_head`` = ``embed_tokens`` are one parameter; the base model's prefix,
``model.``/``transformer.``, is added or stripped when that makes the keys match).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.modules import module as registry

from ..errors import (
    ArchitectureMismatchError,
    CheckpointFormatError,
    EntropyflowError,
    one_line,
)
from ..extras import require
from ..text import printable
from .hf_cache import hub_cache, resolve_hub
from .hf_config import check_config, read_config
from .source import TensorSource

__all__ = ["hub_cache", "resolve_hub", "is_hf_folder", "read_config", "build", "match", "default_input"]

DEFAULT_TOKENS = 128
MODULES_PER_TENSOR = 8  # real architectures build 1-2 modules per checkpoint tensor
MODULE_SLACK = 256
MAX_RANDOM_MODULES = 100_000  # --random-init, no checkpoint to compare with
MAX_RANDOM_PARAMETERS = 1 << 32  # --random-init builds them in memory: 16 GiB of float32


def is_hf_folder(path: Path) -> bool:
    """A folder whose ``config.json`` names a transformers model (``model_type``). A config.json
    that is not JSON is an error (a broken download), not a reason to ignore it."""
    try:
        if not (path.is_dir() and (path / "config.json").is_file()):
            return False
    except OSError:  # a name too long, a loop, no permission: not a Hugging Face folder
        return False
    return "model_type" in read_config(path)


def _torch_class(name: str) -> Any:
    """The PyTorch model class ``name`` of transformers, or None."""
    import transformers  # deliberate: the optional [hf] extra, imported only for Hugging Face models

    try:
        cls = getattr(transformers, name, None)
    except Exception:  # noqa: BLE001 - transformers' lazy module may fail to import a class it lists
        return None
    return cls if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel) else None


def _model_class(config: Any, trust_code: bool, where: str) -> tuple[Callable[..., nn.Module], str, tuple[str, ...]]:
    """How to build ``config``'s architecture, its class name, and notes for the user."""
    import transformers  # deliberate: the optional [hf] extra, imported only for Hugging Face models

    def auto() -> Callable[..., nn.Module]:
        return lambda c: transformers.AutoModel.from_config(
            c, attn_implementation="eager", trust_remote_code=trust_code
        )

    names = list(getattr(config, "architectures", None) or [])
    if not names:
        note = f"{where} names no architectures: built as AutoModel (the base model, without a task head)"
        return auto(), "AutoModel", (note,)
    name, notes = names[0], cast(tuple[str, ...], ())
    cls = _torch_class(name)
    if cls is None and getattr(config, "auto_map", None) and trust_code:
        return auto(), "AutoModel", ()  # custom code, allowed by --trust-code (refused earlier without it)
    for prefix, framework in (("TF", "TensorFlow"), ("Flax", "Flax")):
        twin = name[len(prefix) :]
        if cls is None and name.startswith(prefix) and _torch_class(twin) is not None:
            cls, notes = _torch_class(twin), (f"{where} names {name} ({framework}): built as {twin}, its PyTorch twin",)
            name = twin  # a class name of transformers: plain text
    if cls is None:
        raise ArchitectureMismatchError(
            f"{where}: architectures[0] '{printable(name, 80)}' is not a PyTorch model class of transformers "
            f"{transformers.__version__} (a newer transformers may have it; custom code needs auto_map and "
            "--trust-code)"
        )
    wanted = getattr(cls, "config_class", None)
    kind = getattr(wanted, "model_type", "") if isinstance(wanted, type) else ""
    if kind and isinstance(wanted, type) and not isinstance(config, wanted):
        raise ArchitectureMismatchError(
            f"{where}: model_type '{printable(getattr(config, 'model_type', ''), 40)}' contradicts architectures[0] "
            f"{name} (a '{printable(kind, 40)}' model): fix one of them"
        )
    return (lambda c: cls._from_config(c, attn_implementation="eager")), name, notes


def _config(folder: Path, trust_code: bool, tensors: int | None) -> Any:
    require("hf")
    import transformers  # deliberate: the optional [hf] extra, imported only for Hugging Face models

    check_config(read_config(folder), folder / "config.json", trust_code, tensors)
    try:
        with _quiet():
            return transformers.AutoConfig.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=trust_code
            )
    except Exception as exc:  # noqa: BLE001 - transformers (and custom code under --trust-code) raise anything
        if isinstance(exc, EntropyflowError):
            raise
        raise CheckpointFormatError(
            f"transformers cannot read {printable(folder / 'config.json')}: {one_line(exc, 160)}"
        ) from exc


def build(
    folder: Path, trust_code: bool = False, device: str = "meta", tensors: int | None = None
) -> tuple[nn.Module, Any, str, tuple[str, ...]]:
    """The architecture of ``folder``'s config (on ``device``), its config, the class name and
    notes. ``tensors``: how many tensors the checkpoint holds, which bounds what the config may
    declare (None: ``--random-init``, absolute bounds, checked on the meta device before anything
    is allocated)."""
    config = _config(folder, trust_code, tensors)
    make, name, notes = _model_class(config, trust_code, f"{printable(folder.name, 80)}/config.json")
    if tensors is None and device != "meta":
        with torch.random.fork_rng(devices=[]):  # a dry run, sized before memory is allocated
            _make(make, config, name, folder, "meta", tensors)
    return _make(make, config, name, folder, device, tensors).eval(), config, name, notes


def _make(make: Callable[..., nn.Module], config: Any, name: str, folder: Path, device: str, tensors: int | None):
    try:
        with torch.device(device), _quiet(), _bounded(folder, tensors):
            model = make(config)
            tie = getattr(model, "tie_weights", None)
            if callable(tie):
                tie()  # tied input/output embeddings are one parameter, as in the checkpoint
    except Exception as exc:  # noqa: BLE001 - transformers' builders raise many types for odd configs
        if isinstance(exc, EntropyflowError):
            raise
        raise ArchitectureMismatchError(
            f"transformers cannot build {name} from {printable(folder)}: {one_line(exc, 160)}"
        ) from exc
    return model


@contextlib.contextmanager
def _bounded(folder: Path, tensors: int | None) -> Iterator[None]:
    """Stop building as soon as the model has more modules than the checkpoint's tensors allow
    (or, with no checkpoint, more modules or parameters than the absolute bounds)."""
    where = printable(folder / "config.json")
    most = MAX_RANDOM_MODULES if tensors is None else MODULES_PER_TENSOR * tensors + MODULE_SLACK
    counts = {"modules": 0, "values": 0}

    def on_module(module: nn.Module, name: str, sub: nn.Module | None) -> None:
        counts["modules"] += 1
        if counts["modules"] > most:
            raise CheckpointFormatError(
                f"{where} declares a model of more than {most:,} modules: "
                + (
                    f"too many for a checkpoint of {tensors:,} tensors (the config does not describe these weights)"
                    if tensors is not None
                    else "--random-init builds at most that many"
                )
            )

    def on_tensor(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
        if tensors is None and value is not None:
            counts["values"] += value.numel()
            if counts["values"] > MAX_RANDOM_PARAMETERS:
                raise CheckpointFormatError(
                    f"{where} declares more than {MAX_RANDOM_PARAMETERS:,} parameters: --random-init builds them in "
                    f"memory (at most {MAX_RANDOM_PARAMETERS * 4 >> 30} GiB of float32); analyse a checkpoint instead"
                )

    handles = [
        registry.register_module_module_registration_hook(on_module),
        registry.register_module_parameter_registration_hook(on_tensor),
        registry.register_module_buffer_registration_hook(on_tensor),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' own log lines (config checks, init messages) are not ours to print, and its
    question whether to run custom code (asked for a nested ``auto_map``) is never put to the user."""
    from transformers import dynamic_module_utils  # deliberate: the optional [hf] extra
    from transformers.utils import logging as hf_logging  # deliberate: the optional [hf] extra

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    timeout = dynamic_module_utils.TIME_OUT_REMOTE_CODE
    dynamic_module_utils.TIME_OUT_REMOTE_CODE = 0  # never ask "run custom code? [y/N]" on the terminal: refuse
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dynamic_module_utils.TIME_OUT_REMOTE_CODE = timeout
        hf_logging.set_verbosity(level)


def _expected(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameters (tied ones once) and persistent buffers, by name."""
    out = {n: tuple(p.shape) for n, p in model.named_parameters()}  # remove_duplicate: tied weights once
    persistent = {
        f"{m}.{b}" if m else b
        for m, mod in model.named_modules()
        for b in mod._buffers
        if b not in getattr(mod, "_non_persistent_buffers_set", set())
    }
    out.update({n: tuple(b.shape) for n, b in model.named_buffers() if n in persistent})
    return out


def _renamed(model: nn.Module, keys: list[str]) -> dict[str, str] | None:
    """Keys renamed by transformers' own rules for legacy checkpoints (``embed_out.`` → ``lm_head.``,
    ``LayerNorm.gamma`` → ``.weight``), pure renames only; None when there are none or no API."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping  # deliberate: [hf] extra

        rules = [
            (re.compile(source), target)
            for rule in get_model_conversion_mapping(cast(Any, model))
            if type(rule).__name__ == "WeightRenaming"
            for source, target in zip(rule.source_patterns, rule.target_patterns, strict=False)
        ]
    except Exception:  # noqa: BLE001 - an older or newer transformers without this API: no renaming
        return None
    out: dict[str, str] = {}
    for key in keys:
        new = key
        for pattern, target in rules:
            new = pattern.sub(target, new)
        out[new] = key
    return out if any(k != v for k, v in out.items()) else None


def match(model: nn.Module, source: TensorSource, arch: str) -> tuple[TensorSource, tuple[str, ...]]:
    """``source`` renamed to the model's parameter names; missing parameters are an error, tensors
    the architecture does not have are ignored and listed."""
    expected = _expected(model)
    params = {n for n, _ in model.named_parameters()}
    keys = list(source.keys())
    prefix = getattr(model, "base_model_prefix", "") or ""
    renamed = _renamed(model, keys)
    candidates: list[tuple[str, dict[str, str]]] = [("", {k: k for k in keys})]
    if renamed:
        candidates.append(("transformers' renaming rules (legacy key names)", renamed))
    if prefix:
        candidates.append((f"strip '{prefix}.'", {k[len(prefix) + 1 :]: k for k in keys if k.startswith(prefix + ".")}))
        candidates.append((f"add '{prefix}.'", {f"{prefix}.{k}": k for k in keys}))
    best = min(candidates, key=lambda c: sum(1 for n in params if n not in c[1]))
    how, mapping = best
    missing = sorted(n for n in params if n not in mapping)
    if missing:
        raise ArchitectureMismatchError(
            f"checkpoint does not match {arch}: {len(missing)} parameter(s) missing ("
            + ", ".join(printable(m, 60) for m in missing[:3])
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            + ")"
        )
    shaped = [n for n in params if tuple(source.shape(mapping[n])) != expected[n]]
    if shaped:
        n = shaped[0]
        raise ArchitectureMismatchError(
            f"checkpoint does not match {arch}: {len(shaped)} mis-shaped ({printable(n, 60)}: checkpoint "
            f"{tuple(source.shape(mapping[n]))} vs config {expected[n]})"
        )
    keep = {n: mapping[n] for n in expected if n in mapping}
    notes: list[str] = []
    canonical = {id(p): n for n, p in model.named_parameters()}
    for n, p in model.named_parameters(remove_duplicate=False):
        if n not in keep and canonical.get(id(p)) in keep:  # a tied weight: the same tensor under its other name
            keep[n] = keep[canonical[id(p)]]
            notes.append(f"{printable(n, 60)} is tied to {printable(canonical[id(p)], 60)} (one tensor)")
    if how:
        notes.append(f"{how} on checkpoint keys to match {arch}")
    extra = sorted(set(keys) - set(keep.values()))
    if extra:
        notes.append(
            f"ignored {len(extra)} checkpoint tensor(s) the architecture does not have: "
            + ", ".join(printable(e, 60) for e in extra[:3])
            + (" …" if len(extra) > 3 else "")
        )
    return source.renamed(keep), tuple(notes)


def max_tokens(config: Any) -> int | None:
    """The longest sequence the config's position table allows (None: no limit known)."""
    text = getattr(config, "text_config", None) or config
    limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
    return int(limit) if isinstance(limit, int) and not getattr(text, "image_size", None) else None


def extra_inputs(config: Any) -> tuple[str, ...]:
    """Encoder-decoder models (T5, BART) also need decoder token ids: the same example is used."""
    return ("decoder_input_ids",) if getattr(config, "is_encoder_decoder", False) else ()


def default_input(config: Any) -> tuple[tuple[int, ...] | None, str | None, str]:
    """The example input for ``config``: token ids of a sensible length for text models, the
    image size for vision ones. Returns (size without batch, dtype, why)."""
    text = getattr(config, "text_config", None) or config
    image = getattr(config, "image_size", None)
    if getattr(text, "vocab_size", None):
        limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
        n = min(DEFAULT_TOKENS, int(limit)) if limit else DEFAULT_TOKENS
        return (n,), "int64", f"input: {n} token ids (min({DEFAULT_TOKENS}, max_position_embeddings); --input long:1xN)"
    if image:
        size = image if isinstance(image, int) else int(image[0])
        channels = getattr(config, "num_channels", 3)
        return (channels, size, size), None, f"input: {channels}x{size}x{size} from config.image_size"
    return None, None, "input size unknown from config.json: pass --input"
