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
import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from ..words import arg
from .hf_cache import hub_cache, resolve_hub
from .hf_config import check_config, read_config
from .source import TensorSource

__all__ = [
    "hub_cache",
    "resolve_hub",
    "is_hf_folder",
    "read_config",
    "build",
    "match",
    "default_input",
    "extra_inputs",
    "complete_inputs",
]

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
            f"{arg('trust-code')})"
        )
    wanted = getattr(cls, "config_class", None)
    kind = getattr(wanted, "model_type", "") if isinstance(wanted, type) else ""
    if kind and isinstance(wanted, type) and not isinstance(config, wanted):
        raise ArchitectureMismatchError(
            f"{where}: model_type '{printable(getattr(config, 'model_type', ''), 40)}' contradicts architectures[0] "
            f"{name} (a '{printable(kind, 40)}' model): fix one of them"
        )
    return (lambda c: cls._from_config(c, attn_implementation="eager", **_experts(cls))), name, notes


def _experts(cls: Any) -> dict[str, str]:
    """Fused mixture-of-experts layers run as batched matmuls (``batched_mm``: plain ops that the meta
    device runs; the default may be a grouped kernel for half precision only, or a loop over
    ``nonzero``). The weights and the maps are the same."""
    can = getattr(cls, "_can_set_experts_implementation", None)
    try:
        return {"experts_implementation": "batched_mm"} if callable(can) and can() else {}
    except Exception:  # noqa: BLE001 - a transformers without this API (or custom code): its default
        return {}


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
    model = _make(make, config, name, folder, device, tensors).eval()
    completed = complete_inputs(model, config)
    return model, config, name, notes + ((completed,) if completed else ())


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
                    else f"{arg('random-init')} builds at most that many"
                )
            )

    def on_tensor(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
        if tensors is None and value is not None:
            counts["values"] += value.numel()
            if counts["values"] > MAX_RANDOM_PARAMETERS:
                raise CheckpointFormatError(
                    f"{where} declares more than {MAX_RANDOM_PARAMETERS:,} parameters: {arg('random-init')} builds "
                    "them in "
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
    parts = model_expert_parts(model)
    per_expert = _per_expert_keys(model, keys, renamed)
    if per_expert:  # per-expert checkpoint tensors that transformers merges into fused ones: read one by one
        candidates = [(how, {**mapping, **per_expert}) for how, mapping in candidates]
    split = {p.fused for p in parts.values()}

    def absent(n: str, mapping: dict[str, str]) -> bool:
        if n in mapping:
            return False
        return n not in split or not all(k in mapping for k, p in parts.items() if p.fused == n)

    best = min(candidates, key=lambda c: sum(1 for n in params if absent(n, c[1])))
    how, mapping = best
    missing = sorted(n for n in params if absent(n, mapping))
    if missing:
        raise ArchitectureMismatchError(
            f"checkpoint does not match {arch}: {len(missing)} parameter(s) missing ("
            + ", ".join(printable(m, 60) for m in missing[:3])
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            + ")"
        )
    wanted = {**expected, **{k: p.shape for k, p in parts.items() if k in mapping and p.fused not in mapping}}
    shaped = [n for n in wanted if n in mapping and tuple(source.shape(mapping[n])) != wanted[n]]
    if shaped:
        n = shaped[0]
        raise ArchitectureMismatchError(
            f"checkpoint does not match {arch}: {len(shaped)} mis-shaped ({printable(n, 60)}: checkpoint "
            f"{tuple(source.shape(mapping[n]))} vs config {wanted[n]})"
        )
    keep = {n: mapping[n] for n in wanted if n in mapping}
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
    fused = sorted({p.fused for k, p in parts.items() if k in keep})
    if fused:
        notes.append(
            f"per-expert checkpoint tensors read as the experts of {len(fused)} fused expert tensor(s) "
            f"(transformers' conversion rules), e.g. {printable(fused[0], 60)}"
        )
    return with_experts(model, source.renamed(keep)), tuple(notes)


@dataclass(frozen=True)
class ExpertPart:
    """One expert's dense map inside transformers' fused expert tensors: ``fused[expert]`` (its
    transpose when stored ``(in, out)``), rows ``start:stop:step`` of it; analysed as the weight
    ``key`` (``….experts.N.gate_proj.weight``)."""

    key: str
    fused: str
    expert: int
    part: str  # gate_proj, up_proj, down_proj
    start: int
    stop: int
    step: int
    transposed: bool
    shape: tuple[int, int]  # the map's (outputs, inputs)


def fused_experts(module: nn.Module) -> bool:
    """transformers' fused experts: 3-D ``down_proj`` and ``gate_up_proj`` (or ``up_proj``) parameters,
    one matrix per expert along the first axis (Mixtral, Qwen2-MoE, … since transformers 5)."""
    if not type(module).__module__.startswith("transformers"):
        return False
    own = module._parameters
    up = own.get("gate_up_proj") if own.get("gate_up_proj") is not None else own.get("up_proj")
    down = own.get("down_proj")
    return up is not None and down is not None and up.dim() == 3 and down.dim() == 3 and up.shape[0] == down.shape[0]


def expert_parts(name: str, module: nn.Module) -> list[ExpertPart]:
    """Every expert's gate, up and down maps of fused experts ``module`` (named ``name``), in the
    order an expert applies them; the layout (concatenated or interleaved gate/up rows, weights
    stored transposed) is read from the module's flags (``is_concatenated``, ``is_transposed``)."""
    if not fused_experts(module):
        return []
    own = module._parameters
    transposed = bool(getattr(module, "is_transposed", False))
    fused_up = "gate_up_proj" if own.get("gate_up_proj") is not None else "up_proj"
    up, down = cast(torch.Tensor, own[fused_up]), cast(torch.Tensor, own["down_proj"])

    def dims(t: torch.Tensor) -> tuple[int, int]:
        return (t.shape[2], t.shape[1]) if transposed else (t.shape[1], t.shape[2])

    prefix = f"{name}." if name else ""
    out: list[ExpertPart] = []
    (rows, cols), (down_rows, down_cols) = dims(up), dims(down)
    for e in range(up.shape[0]):
        if fused_up == "gate_up_proj":
            half = rows // 2
            if getattr(module, "is_concatenated", True):
                spans = [("gate_proj", 0, half, 1), ("up_proj", half, 2 * half, 1)]
            else:  # interleaved: gate0, up0, gate1, up1, …
                spans = [("gate_proj", 0, 2 * half, 2), ("up_proj", 1, 2 * half, 2)]
        else:
            spans = [("up_proj", 0, rows, 1)]
        spans.append(("down_proj", 0, down_rows, 1))
        for part, start, stop, step in spans:
            fused = "down_proj" if part == "down_proj" else fused_up
            height = len(range(start, stop, step))
            width = down_cols if part == "down_proj" else cols
            out.append(
                ExpertPart(
                    f"{prefix}{e}.{part}.weight",
                    f"{prefix}{fused}",
                    e,
                    part,
                    start,
                    stop,
                    step,
                    transposed,
                    (height, width),
                )  # fmt: skip
            )
    return out


def model_expert_parts(model: nn.Module) -> dict[str, ExpertPart]:
    return {p.key: p for n, m in model.named_modules() for p in expert_parts(n, m)}


class ExpertSource(TensorSource):
    """``base`` plus one tensor per expert map of fused expert tensors (a view: nothing copied; a
    checkpoint reads one expert's slice)."""

    def __init__(self, base: TensorSource, parts: dict[str, ExpertPart]):
        self._base, self._parts = base, parts

    def keys(self) -> list[str]:
        return self._base.keys() + [k for k in self._parts if k not in self._base]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._parts[key].shape if key in self._parts else self._base.shape(key)

    def dtype(self, key: str) -> torch.dtype:
        return self._base.dtype(self._parts[key].fused) if key in self._parts else self._base.dtype(key)

    def get(self, key: str) -> torch.Tensor:
        part = self._parts.get(key)
        if part is None:
            return self._base.get(key)
        t = self._base.get_slice(part.fused, (slice(part.expert, part.expert + 1),))[0]
        return (t.T if part.transposed else t)[part.start : part.stop : part.step]

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        return self.get(key)[index] if key in self._parts else self._base.get_slice(key, index)

    def __contains__(self, key: object) -> bool:
        return key in self._parts or key in self._base

    def origin(self, key: str) -> tuple[TensorSource, str]:
        return (self, key) if key in self._parts else self._base.origin(key)


def with_experts(model: nn.Module, source: TensorSource) -> TensorSource:
    """``source`` with a tensor per expert map when ``model`` holds fused experts (else itself)."""
    parts = {k: p for k, p in model_expert_parts(model).items() if p.fused in source}
    return ExpertSource(source, parts) if parts else source


def _converters(model: nn.Module) -> list[tuple[re.Pattern[str], str, str]]:
    """transformers' rules that merge per-expert checkpoint tensors into fused ones, as (pattern of a
    per-expert key, the fused tensor's name, which part): ``.experts.*.w1.weight`` → gate_up_proj, gate."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping  # deliberate: [hf] extra

        rules = list(get_model_conversion_mapping(cast(Any, model)))
    except Exception:  # noqa: BLE001 - an older or newer transformers without this API: no conversion
        return []
    out = []
    for rule in rules:
        if type(rule).__name__ != "WeightConverter" or len(rule.target_patterns) != 1:
            continue
        target, sources = rule.target_patterns[0], list(rule.source_patterns)
        names = {"gate_up_proj": ["gate_proj", "up_proj"], "down_proj": ["down_proj"], "up_proj": ["up_proj"]}
        fused = target.rsplit(".", 1)[-1]
        parts = names.get(fused)
        if parts is None or len(parts) != len(sources) or "*" not in "".join(sources):
            continue
        for source, part in zip(sources, parts, strict=True):
            out.append((re.compile(re.escape(source).replace(r"\*", r"(\d+)") + "$"), target, part))
    return out


def _per_expert_keys(model: nn.Module, keys: list[str], renamed: dict[str, str] | None) -> dict[str, str]:
    """Expert map keys (``….experts.N.gate_proj.weight``) → checkpoint keys of the per-expert tensors
    that transformers' converters would merge into fused ones (with its renames applied first)."""
    converters = _converters(model)
    if not converters:
        return {}
    out: dict[str, str] = {}
    for new, key in (renamed or {k: k for k in keys}).items():
        for pattern, target, part in converters:
            found = pattern.search(new)
            if found:
                base = new[: found.start()] + target  # the fused tensor's name: P.experts.gate_up_proj
                out[f"{base.rsplit('.', 1)[0]}.{found.group(1)}.{part}.weight"] = key
    return out


def max_tokens(config: Any) -> int | None:
    """The longest sequence the config's position table allows (None: no limit known)."""
    text = getattr(config, "text_config", None) or config
    limit = _position_limit(text)
    return int(limit) if isinstance(limit, int) and not getattr(text, "image_size", None) else None


def _position_limit(text: Any) -> Any:
    """The config's position table size: ``max_position_embeddings``, ``n_positions`` or (MPT) ``max_seq_len``."""
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(text, name, None)
        if value:
            return value
    return None


def main_input(config: Any, model: nn.Module | None = None) -> str:
    """The forward's first input: the model's ``main_input_name`` (``pixel_values``, ``input_values``,
    ``input_features``, ``input_ids``); without a model, guessed from the config."""
    name = getattr(model, "main_input_name", None)
    if isinstance(name, str) and name:
        return name
    if getattr(config, "num_mel_bins", None):
        return "input_features"
    if getattr(config, "image_size", None) and not getattr(config, "vocab_size", None):
        return "pixel_values"
    return "input_ids"


def extra_inputs(config: Any, model: nn.Module | None = None) -> tuple[str, ...]:
    """Encoder-decoder text models (T5, BART) also need decoder token ids: the same example is used.
    A model whose main input is not token ids (Whisper) gets its decoder ids from :func:`complete_inputs`."""
    if not getattr(config, "is_encoder_decoder", False) or main_input(config, model) != "input_ids":
        return ()
    return ("decoder_input_ids",)


def _tokens(config: Any) -> int:
    limit = _position_limit(getattr(config, "text_config", None) or config)
    return min(DEFAULT_TOKENS, int(limit)) if isinstance(limit, int) and limit > 0 else DEFAULT_TOKENS


def _image(config: Any) -> tuple[tuple[int, ...], str] | None:
    """(C, H, W) (video: (T, C, H, W)) of the config's (or its vision config's) images, and where from."""
    vision = getattr(config, "vision_config", None) or config
    image = getattr(vision, "image_size", None)
    if isinstance(image, (list, tuple)) and image:
        h, w = int(image[0]), int(image[-1])
    elif isinstance(image, int) and image > 0:
        h = w = image
    else:
        return None
    channels = getattr(vision, "num_channels", None) or 3
    where = "vision_config.image_size" if vision is not config else "config.image_size"
    frames = getattr(vision, "num_frames", None)
    if isinstance(frames, int) and frames > 0:
        return (frames, channels, h, w), f"{where}, num_frames"
    return (channels, h, w), where


AUDIO_SAMPLES = 16_000  # one second of 16 kHz audio (wav2vec2, HuBERT: input_values)


def default_input(config: Any, model: nn.Module | None = None) -> tuple[tuple[int, ...] | None, str | None, str]:
    """The example input for ``config``'s model, from its ``main_input_name`` (see :func:`main_input`):
    token ids of a sensible length for text models, the image size for vision ones, one second of
    audio for ``input_values``, the mel frames Whisper expects for ``input_features``. Returns
    (size without batch, dtype, why)."""
    name = main_input(config, model)
    if name == "input_values":
        return (
            (AUDIO_SAMPLES,),
            None,
            f"input: {AUDIO_SAMPLES} audio samples (1 s at 16 kHz; another length: input float:1xN)",
        )
    if name == "input_features":
        mels = getattr(config, "num_mel_bins", None)
        positions = getattr(config, "max_source_positions", None)
        if isinstance(mels, int) and isinstance(positions, int):  # Whisper: two convs, the second of stride 2
            frames = 2 * positions
            return (mels, frames), None, f"input: {mels}x{frames} mel features (num_mel_bins x 2·max_source_positions)"
        feats = getattr(config, "input_feat_per_channel", None)
        if isinstance(feats, int):  # Speech2Text: (frames, features)
            size = (DEFAULT_TOKENS, feats * (getattr(config, "input_channels", None) or 1))
            return size, None, f"input: {size[0]}x{size[1]} filter-bank frames (input_feat_per_channel)"
        return None, None, "input size unknown from config.json: give the example input"
    image = _image(config)
    if name == "pixel_values" and image:
        return image[0], None, f"input: {'x'.join(map(str, image[0]))} from {image[1]}"
    text = getattr(config, "text_config", None) or config
    if getattr(text, "vocab_size", None):
        n = _tokens(config)
        return (
            (n,),
            "int64",
            f"input: {n} token ids (min({DEFAULT_TOKENS}, max_position_embeddings); another length: input long:1xN)",
        )
    if image:
        return image[0], None, f"input: {'x'.join(map(str, image[0]))} from {image[1]}"
    return None, None, "input size unknown from config.json: give the example input"


def _forward_names(model: nn.Module) -> list[str]:
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return []


def _completions(model: nn.Module, config: Any) -> dict[str, tuple[tuple[int, ...], torch.dtype | None, str]]:
    """The inputs besides the main one that ``model``'s forward needs, from the config: name →
    (shape with batch, dtype (None: the weights' float dtype), how it was chosen)."""
    names = _forward_names(model)
    main = main_input(config, model)
    out: dict[str, tuple[tuple[int, ...], torch.dtype | None, str]] = {}
    image = _image(config)
    if "pixel_values" in names and main != "pixel_values" and image and getattr(config, "vision_config", None):
        out["pixel_values"] = ((1, *image[0]), None, image[1])
    if "input_ids" in names and main != "input_ids" and getattr(config, "text_config", None):
        out["input_ids"] = ((1, _tokens(config)), torch.int64, "zeros, min(128, max_position_embeddings)")
    if "decoder_input_ids" in names and main != "input_ids" and getattr(config, "is_encoder_decoder", False):
        limit = getattr(config, "max_target_positions", None) or getattr(config, "max_position_embeddings", None)
        n = min(DEFAULT_TOKENS, int(limit)) if isinstance(limit, int) and limit > 0 else DEFAULT_TOKENS
        out["decoder_input_ids"] = ((1, n), torch.int64, "zeros, min(128, max_target_positions)")
    return out


def complete_inputs(model: nn.Module, config: Any) -> str | None:
    """Let ``model`` be called with its main input alone: a forward pre-hook fills the other inputs
    its forward needs from the config where the call does not give them (a dual encoder's
    ``pixel_values`` or ``input_ids``, the decoder token ids of a speech model): zeros, on the main
    input's device. Returns the note that says so (None: nothing to add)."""
    wanted = _completions(model, config)
    if not wanted:
        return None
    signature = inspect.signature(model.forward)

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        try:
            given = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            return None  # not a call we complete: the forward says what is wrong
        first = next((v for v in given.values() if isinstance(v, torch.Tensor)), None)
        if first is None:
            return None
        floats = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
        added = {
            name: torch.zeros(shape, dtype=dtype or floats, device=first.device)
            for name, (shape, dtype, _why) in wanted.items()
            if given.get(name) is None
        }
        return (args, {**kwargs, **added}) if added else None

    model.register_forward_pre_hook(hook, with_kwargs=True)
    parts = [f"{n} {'x'.join(map(str, shape))} ({why})" for n, (shape, _d, why) in wanted.items()]
    return f"the forward is also given {', '.join(parts)}"
