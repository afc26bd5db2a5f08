"""Hugging Face models: ``hf:ORG/NAME[@REVISION]`` from the local hub cache (never downloaded), and
folders with a ``config.json``, built with ``transformers`` (the ``[hf]`` extra) on the meta device.

The architecture class is the config's ``architectures[0]`` (else ``AutoModel``); custom code
(``auto_map``, e.g. Baichuan) runs only with ``--trust-code``. Attention is built as
``attn_implementation='eager'`` (plain matmuls, which the meta device runs; the weights and the
maps are the same). The checkpoint's tensors are matched to the architecture's parameters
(tied weights such as ``lm_head`` = ``embed_tokens`` are one parameter; the base model's prefix,
``model.``/``transformer.``, is added or stripped when that makes the keys match).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..errors import (
    ArchitectureMismatchError,
    CheckpointFormatError,
    InputNotFoundError,
    OptionError,
    UntrustedCodeError,
    one_line,
)
from ..extras import require
from ..text import printable
from .source import TensorSource

__all__ = ["hub_cache", "resolve_hub", "is_hf_folder", "read_config", "build", "match", "default_input"]

MAX_CONFIG_BYTES = 4 << 20
DEFAULT_TOKENS = 128
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def hub_cache() -> Path:
    """Where ``huggingface_hub`` keeps models: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def resolve_hub(repo: str, revision: str | None = None) -> Path:
    """The snapshot folder of ``repo`` at ``revision`` (a branch, tag or commit; default main) in
    the local cache. Never downloads: a missing model is an error that says how to fetch it."""
    if not _REPO.fullmatch(repo):
        raise OptionError(f"hf:{printable(repo, 80)} is not a Hugging Face repository id (ORG/NAME)")
    cache = hub_cache()
    folder = cache / f"models--{repo.replace('/', '--')}"
    if revision is not None and (not revision or ".." in revision.split("/") or revision.startswith("/")):
        raise OptionError(f"hf:{printable(repo, 80)}@{printable(revision, 40)}: not a branch, tag or commit")
    rev = revision or "main"
    fetch = f"huggingface-cli download {repo}" + (f" --revision {rev}" if revision else "")
    if not folder.is_dir():
        raise InputNotFoundError(
            f"hf:{repo} is not in the local Hugging Face cache ({printable(cache)}); entropyflow never downloads: "
            f"fetch it with `{fetch}` (or set HF_HUB_CACHE), or pass a local folder with config.json"
        )
    commit = rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None
    if commit is None:
        ref = folder / "refs" / rev
        if not ref.is_file():
            raise InputNotFoundError(
                f"hf:{repo}@{rev} is not in the local Hugging Face cache (no refs/{printable(rev)} in "
                f"{printable(folder)}); fetch it with `{fetch}`"
            )
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        raise InputNotFoundError(f"hf:{repo}@{rev}: the cache has no snapshot {commit[:12]}; fetch it with `{fetch}`")
    return snapshot


def is_hf_folder(path: Path) -> bool:
    """A folder whose ``config.json`` names a transformers model (``model_type``). A config.json
    that is not JSON is an error (a broken download), not a reason to ignore it."""
    try:
        if not (path.is_dir() and (path / "config.json").is_file()):
            return False
    except OSError:  # a name too long, a loop, no permission: not a Hugging Face folder
        return False
    return "model_type" in read_config(path)


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointFormatError(f"{printable(path)} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"cannot read {printable(path)}: {one_line(exc, 120)}") from exc
    if not isinstance(doc, dict):
        raise CheckpointFormatError(f"{printable(path)} is not a JSON object")
    return doc


def _model_class(config: Any, trust_code: bool) -> tuple[Callable[..., nn.Module], str]:
    import transformers  # deliberate: the optional [hf] extra, imported only for Hugging Face models

    names = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, names[0], None) if names else None
    if cls is not None:
        return (lambda c: cls._from_config(c, attn_implementation="eager")), names[0]
    if getattr(config, "auto_map", None) and not trust_code:
        raise UntrustedCodeError(
            "config.json names custom model code (auto_map): building it runs the repository's Python; pass "
            "--trust-code if you trust it"
        )
    auto = transformers.AutoModel
    return (lambda c: auto.from_config(c, attn_implementation="eager", trust_remote_code=trust_code)), "AutoModel"


def _config(folder: Path, trust_code: bool) -> Any:
    require("hf")
    import transformers  # deliberate: the optional [hf] extra, imported only for Hugging Face models

    raw = read_config(folder)
    if raw.get("auto_map") and not trust_code:
        raise UntrustedCodeError(
            f"{printable(folder / 'config.json')} names custom model code (auto_map): building it runs the "
            "repository's Python; pass --trust-code if you trust it"
        )
    try:
        with _quiet():
            return transformers.AutoConfig.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=trust_code
            )
    except Exception as exc:  # noqa: BLE001 - transformers (and custom code under --trust-code) raise anything
        if isinstance(exc, UntrustedCodeError):
            raise
        raise CheckpointFormatError(
            f"transformers cannot read {printable(folder / 'config.json')}: {one_line(exc, 160)}"
        ) from exc


def build(folder: Path, trust_code: bool = False, device: str = "meta") -> tuple[nn.Module, Any, str]:
    """The architecture of ``folder``'s config (on ``device``), its config, and the class name."""
    config = _config(folder, trust_code)
    make, name = _model_class(config, trust_code)
    try:
        with torch.device(device), _quiet():
            model = make(config)
            tie = getattr(model, "tie_weights", None)
            if callable(tie):
                tie()  # tied input/output embeddings are one parameter, as in the checkpoint
    except Exception as exc:  # noqa: BLE001 - transformers' builders raise many types for odd configs
        raise ArchitectureMismatchError(
            f"transformers cannot build {name} from {printable(folder)}: {one_line(exc, 160)}"
        ) from exc
    return model.eval(), config, name


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' own log lines (config checks, init messages) are not ours to print."""
    from transformers.utils import logging as hf_logging  # deliberate: the optional [hf] extra

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
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
