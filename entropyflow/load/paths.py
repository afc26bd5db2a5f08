"""Resolve what a checkpoint path points at and sniff its format from its bytes (no torch import).

Handles single files, sharded checkpoints (``*.index.json`` or the folder holding one), and
folders with exactly one checkpoint. Empty, truncated and wrong-format files are rejected here
with one-line messages, before any heavy import or unpickling.
"""
from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointFormatError, InputNotFoundError

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pt2", ".jit", ".ts")
_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")  # pickled torch legacy magic number


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint on disk: its format and every file that makes it up."""

    path: Path
    format: str  # torch-zip | torchscript | torch-legacy | safetensors | safetensors-sharded | torch-sharded
    files: tuple[Path, ...]
    weight_map: dict[str, Path] | None = None  # sharded: tensor name -> shard file


def resolve_checkpoint(path: str | Path) -> ResolvedCheckpoint:
    """Find and sniff the checkpoint at ``path`` (file, index.json or folder)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputNotFoundError(f"no such file or folder: {p}")
    if p.is_dir():
        return resolve_checkpoint(_pick_in_folder(p))
    if p.name.endswith(".index.json"):
        return _sharded(p)
    return ResolvedCheckpoint(p, sniff(p), (p,))


def _pick_in_folder(folder: Path) -> Path:
    indexes = sorted(folder.glob("*.safetensors.index.json")) or sorted(folder.glob("*.bin.index.json"))
    if len(indexes) == 1:
        return indexes[0]
    if len(indexes) > 1:
        raise InputNotFoundError(f"folder {folder} holds several shard indexes ({', '.join(i.name for i in indexes)}): name one")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES)
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    pick = safetensors if safetensors else files
    if len(pick) == 1:
        return pick[0]
    if not pick:
        raise InputNotFoundError(
            f"folder {folder} contains no checkpoint (looked for *.safetensors, *.index.json, {', '.join('*' + s for s in CHECKPOINT_SUFFIXES[1:])})"
        )
    raise InputNotFoundError(f"folder {folder} holds several checkpoints ({', '.join(f.name for f in pick[:5])}): name one")


def _sharded(index: Path) -> ResolvedCheckpoint:
    try:
        doc = json.loads(index.read_text())
        weight_map = doc["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointFormatError(f"{index} is not a valid shard index (expected JSON with a non-empty 'weight_map')") from None
    shards = {name: index.parent / str(fname) for name, fname in weight_map.items()}
    files = tuple(sorted(set(shards.values())))
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InputNotFoundError(f"shard index {index.name} lists missing shard(s): {', '.join(missing[:3])}")
    kinds = {sniff(f) for f in files}
    if kinds == {"safetensors"}:
        fmt = "safetensors-sharded"
    elif kinds <= {"torch-zip", "torch-legacy"}:
        fmt = "torch-sharded"
    else:
        raise CheckpointFormatError(f"shards of {index.name} mix formats ({', '.join(sorted(kinds))})")
    return ResolvedCheckpoint(index, fmt, files, shards)


def sniff(f: Path) -> str:
    """The checkpoint format of one file, from its leading bytes. Raises on anything unusable."""
    size = f.stat().st_size
    if size == 0:
        raise CheckpointFormatError(f"{f} is empty (0 bytes)")
    with open(f, "rb") as fh:
        head = fh.read(4096)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _sniff_zip(f)
    if head.startswith(_LEGACY_MAGIC):
        return "torch-legacy"
    if len(head) >= 10 and head[8:9] == b"{":
        n = struct.unpack("<Q", head[:8])[0]
        if 2 <= n <= size - 8:
            _validate_safetensors(f, n, size)
            return "safetensors"
    if f.suffix == ".safetensors":
        raise CheckpointFormatError(f"{f} is not a valid safetensors file (bad header)")
    if head[:1] == b"\x80":
        raise CheckpointFormatError(f"{f} is a plain Python pickle, not a PyTorch checkpoint (entropyflow never unpickles arbitrary files)")
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        if b'"entropyflow' in head:
            raise CheckpointFormatError(f"{f} is an entropyflow output (JSON), not a checkpoint: use `entropyflow compare` or `entropyflow recommend` with it")
        raise CheckpointFormatError(f"{f} is a JSON file, not a checkpoint")
    if _looks_like_text(head):
        raise CheckpointFormatError(f"{f} is a text file, not a checkpoint")
    raise CheckpointFormatError(f"{f} is not a recognised checkpoint (expected PyTorch .pt/.pth/.bin/.ckpt, TorchScript or .safetensors)")


def _sniff_zip(f: Path) -> str:
    try:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CheckpointFormatError(f"{f} is truncated or corrupted (its zip directory cannot be read)") from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    if any(n.endswith(".pt2") or n.startswith("archive_format") or "/archive_format" in n for n in names):
        raise CheckpointFormatError(f"{f} is a torch.export archive (.pt2), which is not supported: save a state_dict or TorchScript")
    raise CheckpointFormatError(f"{f} is a zip archive but not a PyTorch checkpoint")


def _validate_safetensors(f: Path, n: int, size: int) -> None:
    with open(f, "rb") as fh:
        fh.seek(8)
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointFormatError(f"{f} is truncated or corrupted (unreadable safetensors header)") from None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    need = 8 + n + (max(ends) if ends else 0)
    if need > size:
        raise CheckpointFormatError(f"{f} is truncated: its header describes {need} bytes, the file has {size}")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b or b in (9, 10, 13) for b in head)
