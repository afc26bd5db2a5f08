"""Read a checkpoint file into named tensors without running code from it.

``torch.load`` is always called with ``weights_only=True``; a checkpoint that needs arbitrary
globals (a pickled ``nn.Module``, exotic objects) is refused with the names of those globals.
A TorchScript archive is code too (loading it runs its ``__setstate__``, and analysing it runs
its ``forward``), so it is refused as well. Both load only with ``trust_code=True``
(``--trust-code``, alias ``--unsafe-pickle``). Safetensors are read lazily. Any failure to parse
the bytes of an untrusted file is a :class:`CheckpointFormatError`, never an internal error, and
a tensor that declares far more data than its file holds (zero or overlapping strides) is refused
before anything reads it.
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

from ..errors import CheckpointFormatError, UnsafePickleError, UntrustedCodeError, one_line
from ..text import printable
from ..words import arg
from .hashing import verify_zip_crcs
from .paths import ResolvedCheckpoint, openable, read_safetensors_header, resolve_checkpoint
from .pickle_scan import check_pickles
from .source import DictSource, SafetensorsSource, TensorSource
from .state_dict import clean_state_dict, read_manifest, unwrap_checkpoint


@dataclass(frozen=True)
class RawCheckpoint:
    """What a checkpoint file holds: tensors (+ manifest), a pickled module, or a TorchScript module."""

    resolved: ResolvedCheckpoint
    description: str
    tensors: TensorSource
    module: Any = None  # nn.Module from a full pickle (trust_code only)
    script: Any = None  # torch.jit.ScriptModule
    manifest: dict | None = None
    notes: tuple[str, ...] = ()


def read_checkpoint(path: str | Path, *, trust_code: bool = False, key: str | None = None) -> RawCheckpoint:
    r = resolve_checkpoint(path)
    if r.format == "safetensors":
        return _safetensors(r, SafetensorsSource.single(r.files[0]), "safetensors file")
    if r.format == "safetensors-sharded":
        assert r.weight_map is not None  # a sharded checkpoint always has one
        return _safetensors(r, SafetensorsSource(r.weight_map), f"sharded safetensors ({len(r.files)} shards)")
    if r.format == "torchscript":
        if not trust_code:
            raise UntrustedCodeError(
                f"{printable(r.files[0].name)} is a TorchScript archive: loading it runs the TorchScript code it "
                "contains "
                "(its __setstate__ and methods can write files and call other ops). If you trust the file, pass "
                f"{arg('trust-code')}; "
                "otherwise export the weights with torch.save(model.state_dict(), PATH)"
            )
        verify_zip_crcs(r.files[0])
        script = _jit_load(r.files[0])
        return RawCheckpoint(r, "TorchScript archive", DictSource(script.state_dict()), script=script)
    if r.format == "torch-sharded":
        merged: dict[str, torch.Tensor] = {}
        for f in r.files:
            merged.update(unwrap_checkpoint(_torch_load(f, trust_code), key).state_dict or {})
        _check_sizes(merged, sum(f.stat().st_size for f in r.files))
        sd, notes = clean_state_dict(merged)
        return RawCheckpoint(r, f"sharded PyTorch checkpoint ({len(r.files)} shards)", DictSource(sd), notes=notes)
    obj = _torch_load(r.files[0], trust_code)
    u = unwrap_checkpoint(obj, key)
    notes = u.notes + ((f"weights read from {u.where}",) if u.where else ())
    if u.module is not None:
        return RawCheckpoint(
            r, u.description, DictSource(u.module.state_dict()), module=u.module, manifest=u.manifest, notes=notes
        )
    assert u.state_dict is not None  # unwrap_checkpoint returns a module or a state dict
    _check_sizes(u.state_dict, r.files[0].stat().st_size)
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
    _entries, meta = read_safetensors_header(f)
    raw = meta.get("entropyflow")
    if raw is None:
        return None
    try:
        return read_manifest({"entropyflow": json.loads(raw)})
    except (ValueError, RecursionError) as exc:
        raise CheckpointFormatError(f"{printable(f.name)}: the 'entropyflow' metadata entry is not valid JSON") from exc


EXPANSION_LIMIT = 16  # a tensor may declare at most this many times its file's bytes (plus the slack below)
EXPANSION_SLACK = 64 << 20


def _check_sizes(sd: dict, file_bytes: int) -> None:
    """Refuse tensors whose logical size is far beyond the file's (zero or overlapping strides:
    a 2 KB file can declare a 7 GB conv weight that any full read would materialise)."""
    limit = EXPANSION_LIMIT * file_bytes + EXPANSION_SLACK
    for k, t in sd.items():
        if isinstance(t, torch.Tensor):
            logical = t.numel() * t.element_size()
            if logical > limit:
                raise CheckpointFormatError(
                    f"tensor {printable(k, 80)} declares {t.numel():,} elements ({logical / 2**30:.1f} GiB) in a file "
                    "of "
                    f"{file_bytes:,} bytes (zero or overlapping strides, shape {list(t.shape)}, stride "
                    f"{list(t.stride())}): "
                    "not real weights; refused"
                )


def _unsafe_globals(f: str, zipped: bool) -> list[str]:
    if not zipped:
        return []
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(f))
    except Exception:  # noqa: BLE001 - a corrupted archive: fall back to the error text
        return []


_UNSAFE_MARKERS = ("Unsupported global", "not an allowed global", "Unsupported class", "GLOBAL ")


def _torch_load(f: Path, trust_code: bool) -> Any:
    zipped = zipfile.is_zipfile(f)
    name = printable(f.name)
    check_pickles(f, zipped)  # a pickle bomb is refused before anything unpickles it
    with openable(f) as path:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
        except pickle.UnpicklingError as exc:
            text = str(exc)
            bad = _unsafe_globals(path, zipped)
            if not bad and not any(m in text for m in _UNSAFE_MARKERS):
                raise CheckpointFormatError(
                    f"{name} is truncated or corrupted ({printable(one_line(text, 120))})"
                ) from exc
            if trust_code:
                return _unsafe_load(path, name, zipped)
            if not bad:
                bad = sorted(
                    set(w.strip(" .,;") for w in text.split("GLOBAL ")[1:] for w in [w.split()[0]] if w.split())
                )
            bad = sorted(set(bad), key=lambda g: (g.startswith(("torch.", "collections.", "builtins.")), g))
            shown = ", ".join(printable(g, 80) for g in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            what = (
                "a pickled nn.Module"
                if any(g.startswith("torch.nn.modules.") for g in bad)
                else "pickled Python objects"
            )
            raise UnsafePickleError(
                f"{name} contains {what} ({shown or 'unknown globals'}) that would run code when loaded; "
                f"entropyflow loads weights only. If you trust the file, pass {arg('trust-code')}, "
                "or re-save it with torch.save(model.state_dict(), PATH)"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file means a corrupted file
            raise CheckpointFormatError(
                f"{name} is truncated or corrupted ({type(exc).__name__}: {printable(one_line(exc, 120))})"
            ) from exc


def _unsafe_load(path: str, name: str, zipped: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=zipped)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise CheckpointFormatError(
            f"{name} pickles a class that cannot be imported here ({printable(one_line(exc, 120))})"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - code from the (trusted) file failed: the file's problem
        raise CheckpointFormatError(
            f"loading {name} with {arg('trust-code')} failed ({type(exc).__name__}: {printable(one_line(exc, 120))})"
        ) from exc


def _jit_load(f: Path) -> Any:
    try:
        with warnings.catch_warnings(), openable(f) as path:
            warnings.simplefilter("ignore")
            return torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch.jit raises many types for a damaged archive
        raise CheckpointFormatError(
            f"{printable(f.name)} is not a loadable TorchScript archive ({type(exc).__name__}: "
            f"{printable(one_line(exc, 120))})"
        ) from exc
