"""Read a checkpoint file into named tensors without running pickled code.

``torch.load`` is always called with ``weights_only=True``; a checkpoint that needs arbitrary
globals (a pickled ``nn.Module``, exotic objects) is refused with the names of those globals,
unless the caller passes ``unsafe_pickle=True``. TorchScript archives are read with
``torch.jit.load`` (TorchScript code, not Python pickles); safetensors are opened lazily.
"""
from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointFormatError, UnsafePickleError, one_line
from .paths import ResolvedCheckpoint, resolve_checkpoint
from .source import DictSource, SafetensorsSource, TensorSource
from .state_dict import clean_state_dict, read_manifest, unwrap_checkpoint


@dataclass(frozen=True)
class RawCheckpoint:
    """What a checkpoint file holds: tensors (+ manifest), a pickled module, or a TorchScript module."""

    resolved: ResolvedCheckpoint
    description: str
    tensors: TensorSource | None = None
    module: Any = None  # nn.Module from a full pickle (unsafe_pickle only)
    script: Any = None  # torch.jit.ScriptModule
    manifest: dict | None = None
    notes: tuple[str, ...] = ()


def read_checkpoint(path: str | Path, *, unsafe_pickle: bool = False, key: str | None = None) -> RawCheckpoint:
    r = resolve_checkpoint(path)
    if r.format == "safetensors":
        return _safetensors(r, SafetensorsSource.single(r.files[0]), "safetensors file")
    if r.format == "safetensors-sharded":
        return _safetensors(r, SafetensorsSource(r.weight_map), f"sharded safetensors ({len(r.files)} shards)")
    if r.format == "torchscript":
        script = _jit_load(r.files[0])
        return RawCheckpoint(r, "TorchScript archive", DictSource(script.state_dict()), script=script)
    if r.format == "torch-sharded":
        merged: dict[str, torch.Tensor] = {}
        for f in r.files:
            merged.update(unwrap_checkpoint(_torch_load(f, unsafe_pickle), key).state_dict or {})
        sd, notes = clean_state_dict(merged)
        return RawCheckpoint(r, f"sharded PyTorch checkpoint ({len(r.files)} shards)", DictSource(sd), notes=notes)
    obj = _torch_load(r.files[0], unsafe_pickle)
    u = unwrap_checkpoint(obj, key)
    notes = u.notes + ((f"weights read from {u.where}",) if u.where else ())
    if u.module is not None:
        return RawCheckpoint(r, u.description, DictSource(u.module.state_dict()), module=u.module, manifest=u.manifest, notes=notes)
    sd, cleaned = clean_state_dict(u.state_dict)
    return RawCheckpoint(r, u.description, DictSource(sd), manifest=u.manifest, notes=notes + cleaned)


def _safetensors(r: ResolvedCheckpoint, src: SafetensorsSource, description: str) -> RawCheckpoint:
    keys = src.keys()
    sd_like = {k: k for k in keys}
    cleaned, notes = clean_state_dict(sd_like)  # values are the original key names here
    tensors = src.renamed(cleaned) if notes else src
    return RawCheckpoint(r, description, tensors, manifest=_safetensors_manifest(r.files[0]), notes=notes)


def _safetensors_manifest(f: Path) -> dict | None:
    """An ``entropyflow`` manifest stored as a JSON string in the safetensors metadata."""
    from safetensors import safe_open

    with safe_open(str(f), framework="pt", device="cpu") as h:
        meta = h.metadata() or {}
    raw = meta.get("entropyflow")
    if raw is None:
        return None
    try:
        return read_manifest({"entropyflow": json.loads(raw)})
    except ValueError:
        raise CheckpointFormatError(f"{f}: the 'entropyflow' metadata entry is not valid JSON") from None


def _unsafe_globals(f: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(f)))
    except Exception:  # older torch, or a legacy-format file: fall back to the error text
        return []


def _torch_load(f: Path, unsafe_pickle: bool) -> Any:
    mmap = zipfile.is_zipfile(f)
    try:
        return torch.load(str(f), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        bad = _unsafe_globals(f) if mmap else []
        text = str(exc)
        if not bad:
            bad = sorted(set(w.strip(" .,;") for w in text.split("GLOBAL ")[1:] for w in [w.split()[0]]))
        if not bad and "Unsupported" not in text and "not an allowed global" not in text:
            raise CheckpointFormatError(f"{f} is truncated or corrupted ({one_line(text, 120)})") from None
        if unsafe_pickle:
            return _unsafe_load(f, mmap)
        bad = sorted(set(bad), key=lambda g: (g.startswith(("torch.", "collections.", "builtins.")), g))
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        what = "a pickled nn.Module" if any(g.startswith("torch.nn.modules.") for g in bad) else "pickled Python objects"
        raise UnsafePickleError(
            f"{f.name} contains {what} ({shown or 'unknown globals'}) that would run code when loaded; "
            "entropyflow loads weights only. If you trust the file, pass --unsafe-pickle, "
            "or re-save it with torch.save(model.state_dict(), PATH)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointFormatError(f"{f} is truncated or corrupted ({one_line(exc, 120)})") from None


def _unsafe_load(f: Path, mmap: bool) -> Any:
    try:
        return torch.load(str(f), map_location="cpu", weights_only=False, mmap=mmap)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise CheckpointFormatError(f"{f.name} pickles a class that cannot be imported here ({one_line(exc, 120)})") from None


def _jit_load(f: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(f), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as exc:
        raise CheckpointFormatError(f"{f} is not a loadable TorchScript archive ({one_line(exc, 120)})") from None
