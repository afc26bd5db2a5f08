"""Find the state dict inside a loaded checkpoint object and clean its keys.

Handles bare state dicts, training checkpoints that wrap them (``state_dict``, ``model``,
``model_state_dict``, ``state_dict_ema`` ...), Lightning checkpoints, and an optional
``entropyflow`` manifest that names the architecture and input size (see docs/formats.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import CheckpointFormatError
from ..text import brief, printable
from ..words import arg

V = TypeVar("V")  # the values of a state dict (tensors, or names standing for them)

CONTAINER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "state_dict_ema",
    "model_ema",
    "ema",
    "module",
    "net",
    "network",
)
_ORIG_MOD = re.compile(r"(^|\.)_orig_mod\.")


@dataclass(frozen=True)
class Unwrapped:
    state_dict: dict[str, torch.Tensor] | None  # None when the checkpoint holds a module
    module: Any  # an nn.Module (only with --trust-code), else None
    where: str  # e.g. "['state_dict']" or "" for a bare state dict
    description: str
    manifest: dict | None
    notes: tuple[str, ...]


def is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def clean_key(key: str) -> tuple[str, frozenset[str]]:
    """One key without wrapper prefixes: ``module.`` (DataParallel/DDP, leading, repeated) and
    ``_orig_mod.`` (torch.compile, anywhere). Returns the key and the prefixes it lost."""
    stripped = set()
    while True:
        if key.startswith("module."):
            key = key[len("module.") :]
            stripped.add("module.")
        elif _ORIG_MOD.search(key):
            key = _ORIG_MOD.sub(r"\1", key)
            stripped.add("_orig_mod.")
        else:
            return key, frozenset(stripped)


def clean_state_dict(sd: Mapping[str, V]) -> tuple[dict[str, V], tuple[str, ...]]:
    """Strip ``module.`` (DataParallel/DDP, leading) and ``_orig_mod.`` (torch.compile) prefixes."""
    out: dict[str, V] = {}
    stripped: set[str] = set()
    for k, v in sd.items():
        new, lost = clean_key(k)
        stripped |= lost
        if new in out:  # stripping would merge two keys: keep the originals
            return dict(sd), ()
        out[new] = v
    notes = (f"stripped key prefixes: {', '.join(sorted(stripped))}",) if stripped else ()
    return out, notes


def read_manifest(obj: Mapping) -> dict | None:
    """The optional ``entropyflow`` manifest: ``{'arch': 'timm:resnet50', 'input_size': [3, 224, 224]}``."""
    m = obj.get("entropyflow")
    if m is None:
        return None
    if not isinstance(m, Mapping):
        raise CheckpointFormatError("the checkpoint's 'entropyflow' manifest must be a dict")
    arch, size = m.get("arch"), m.get("input_size")
    if arch is not None and not isinstance(arch, str):
        raise CheckpointFormatError("the checkpoint's 'entropyflow' manifest: 'arch' must be a model spec string")
    if size is not None and not (isinstance(size, (list, tuple)) and all(isinstance(s, int) and s > 0 for s in size)):
        raise CheckpointFormatError(
            "the checkpoint's 'entropyflow' manifest: 'input_size' must be a list of positive ints"
        )
    return dict(m)


def _describe(obj: Mapping) -> str:
    """A short description; every value comes from the file, so each is rendered bounded (a tiny
    pickle of shared tuples can stand for a string of gigabytes)."""
    if "pytorch-lightning_version" in obj or "lightning_version" in obj:
        ver = obj.get("pytorch-lightning_version") or obj.get("lightning_version")
        return (
            f"Lightning checkpoint (version {brief(ver, 20)}, epoch {brief(obj.get('epoch', '?'), 20)}, "
            f"step {brief(obj.get('global_step', '?'), 20)})"
        )
    return "checkpoint dict"


def _keys(obj: Mapping, n: int = 8) -> str:
    keys = [brief(k, 40) for k in list(obj)[:n]]
    return ", ".join(keys) + (f" and {len(obj) - n} more" if len(obj) > n else "")


def unwrap_checkpoint(obj: Any, key: str | None = None) -> Unwrapped:
    """Locate the weights in a loaded checkpoint object."""
    if isinstance(obj, nn.Module):
        return Unwrapped(None, obj, "", "pickled nn.Module", None, ())
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(
            f"the checkpoint holds a {printable(type(obj).__name__, 60)}, not a state dict or a dict containing one"
        )
    manifest = read_manifest(obj)
    if key is not None:
        if key not in obj:
            raise CheckpointFormatError(f"the checkpoint has no key '{printable(key, 60)}' (keys: {_keys(obj)})")
        inner = obj[key]
        if isinstance(inner, nn.Module):
            return Unwrapped(None, inner, f"['{key}']", f"pickled nn.Module under '{key}'", manifest, ())
        if not is_state_dict(inner):
            raise CheckpointFormatError(f"the checkpoint's '{printable(key, 60)}' entry is not a state dict")
        return Unwrapped(dict(inner), None, f"['{key}']", _describe(obj), manifest, ())
    if is_state_dict(obj):
        return Unwrapped(dict(obj), None, "", "state dict", manifest, ())
    candidates = [k for k in CONTAINER_KEYS if k in obj and (is_state_dict(obj[k]) or isinstance(obj[k], nn.Module))]
    if not candidates:
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if len(tensors) >= 1 and len(tensors) >= len(obj) - 2 and "entropyflow" not in obj:
            dropped = [brief(k, 40) for k in obj if k not in tensors]
            return Unwrapped(
                tensors,
                None,
                "",
                "state dict",
                manifest,
                (f"ignored non-tensor entries: {', '.join(dropped)}",) if dropped else (),
            )
        raise CheckpointFormatError(
            f"the checkpoint is a dict without a state dict (keys: {_keys(obj)}); "
            f"pass {arg('key', 'NAME', quote=False)} to pick one"
        )
    pick = candidates[0]
    notes = (
        # a note saved in the result: the same words whoever the caller, naming no option
        (f"also found {', '.join(candidates[1:])}: pick one of them by its key to analyse it instead",)
        if len(candidates) > 1
        else ()
    )
    inner = obj[pick]
    if isinstance(inner, nn.Module):
        return Unwrapped(None, inner, f"['{pick}']", f"pickled nn.Module under '{pick}'", manifest, notes)
    return Unwrapped(dict(inner), None, f"['{pick}']", _describe(obj), manifest, notes)
