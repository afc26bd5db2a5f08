"""Resolve what a checkpoint path points at and sniff its format from its bytes (no torch import).

Handles single files, sharded checkpoints (``*.index.json`` or the folder holding one), and
folders with exactly one checkpoint. Empty, truncated and wrong-format files are rejected here
with one-line messages, before any heavy import or unpickling. A safetensors header is validated
completely here (every rule the safetensors library enforces, and a size bound), so nothing
downstream ever sees a header that declares more data than the file holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path

from ..errors import CheckpointFormatError, InputNotFoundError, InputUnreadableError
from ..text import printable

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pt2", ".jit", ".ts")
# the file a Hugging Face model folder keeps its weights in, next to other .pt/.bin files in a
# Trainer's checkpoint-N folder (optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin)
MODEL_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
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
    try:
        if not p.exists():
            raise InputNotFoundError(f"no such file or folder: {printable(p)}")
        if p.is_dir():
            return resolve_checkpoint(_pick_in_folder(p))
        if not p.is_file():
            raise CheckpointFormatError(f"{printable(p)} is not a regular file (a device, pipe or socket)")
        if p.name.endswith(".index.json"):
            return _sharded(p)
        return ResolvedCheckpoint(p, sniff(p), (p,))
    except OSError as exc:  # permission denied, name too long, symlink loops, I/O errors
        raise InputUnreadableError(f"cannot read {printable(p)}: {exc.strerror or exc}") from exc


def _pick_in_folder(folder: Path) -> Path:
    indexes = sorted(folder.glob("*.safetensors.index.json")) or sorted(folder.glob("*.bin.index.json"))
    if len(indexes) == 1:
        return indexes[0]
    if len(indexes) > 1:
        raise InputNotFoundError(
            f"folder {printable(folder)} holds several shard indexes "
            f"({', '.join(printable(i.name) for i in indexes)}): name one"
        )
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES)
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    pick = safetensors if safetensors else files
    if len(pick) > 1:  # a Trainer checkpoint folder: the model's weights beside optimizer.pt, rng_state.pth, …
        pick = [f for f in pick if f.name in MODEL_WEIGHT_NAMES] or pick
    if len(pick) == 1:
        return pick[0]
    if not pick:
        raise InputNotFoundError(
            f"folder {printable(folder)} contains no checkpoint (looked for *.safetensors, *.index.json, "
            f"{', '.join('*' + s for s in CHECKPOINT_SUFFIXES[1:])})"
        )
    raise InputNotFoundError(
        f"folder {printable(folder)} holds several checkpoints ({', '.join(printable(f.name) for f in pick[:5])}): "
        "name one"
    )


MAX_INDEX_BYTES = 64 << 20


def _sharded(index: Path) -> ResolvedCheckpoint:
    name = printable(index.name)
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError
        doc = json.loads(index.read_text(encoding="utf-8"))
        weight_map = doc["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in weight_map.items()):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointFormatError(
            f"{name} is not a valid shard index (expected JSON with a non-empty 'weight_map' "
            "of tensor names to shard file names)"
        ) from exc
    folder = index.parent.resolve()
    shards: dict[str, Path] = {}
    for tensor, fname in weight_map.items():
        shard = _inside(folder, fname)
        if shard is None:
            raise CheckpointFormatError(
                f"shard index {name} points outside its folder ({printable(fname, 80)}): "
                "shards must be files next to the index"
            )
        shards[tensor] = shard
    files = tuple(sorted(set(shards.values())))
    missing = [printable(f.name) for f in files if not f.is_file()]
    if missing:
        raise InputNotFoundError(f"shard index {name} lists missing shard(s): {', '.join(missing[:3])}")
    kinds = {sniff(f) for f in files}
    if kinds == {"safetensors"}:
        fmt = "safetensors-sharded"
    elif kinds <= {"torch-zip", "torch-legacy"}:
        fmt = "torch-sharded"
    else:
        raise CheckpointFormatError(f"shards of {name} mix formats ({', '.join(sorted(kinds))})")
    return ResolvedCheckpoint(index, fmt, files, shards)


def _inside(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it stays inside ``folder`` after resolving symlinks and ``..``, else None.
    In a Hugging Face cache snapshot (``models--ORG--NAME/snapshots/COMMIT/``) a file linked into
    the same repository's ``blobs/`` counts as inside: that is the cache's own layout."""
    if os.path.isabs(name) or "\x00" in name:
        return None
    target = (folder / name).resolve()
    roots = [folder]
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--") and ".." not in name:
        roots.append((folder.parent.parent / "blobs").resolve())
    return target if any(target.is_relative_to(root) for root in roots) else None


def sniff(f: Path) -> str:
    """The checkpoint format of one file, from its leading bytes. Raises on anything unusable.

    ``torchscript`` (a zip with TorchScript code) is reported as such whatever the file's name:
    loading one runs its code, which the loader allows only with the trust flag."""
    size = f.stat().st_size
    where = printable(f)
    if size == 0:
        raise CheckpointFormatError(f"{where} is empty (0 bytes)")
    with open(f, "rb") as fh:
        head = fh.read(4096)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _sniff_zip(f)
    if head.startswith(_LEGACY_MAGIC):
        return "torch-legacy"
    if len(head) >= 10 and head[8:9] == b"{":
        read_safetensors_header(f)  # raises with the reason when the header is not valid
        return "safetensors"
    if f.suffix == ".safetensors":
        raise CheckpointFormatError(f"{where} is not a valid safetensors file (bad header)")
    if head[:1] == b"\x80":
        raise CheckpointFormatError(
            f"{where} is a plain Python pickle, not a PyTorch checkpoint (entropyflow never unpickles arbitrary files)"
        )
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        if b'"entropyflow' in head:
            raise CheckpointFormatError(
                f"{where} is an entropyflow output (JSON), not a checkpoint: use `entropyflow compare` or "
                "`entropyflow recommend` with it"
            )
        raise CheckpointFormatError(f"{where} is a JSON file, not a checkpoint")
    if _looks_like_text(head):
        raise CheckpointFormatError(f"{where} is a text file, not a checkpoint")
    raise CheckpointFormatError(
        f"{where} is not a recognised checkpoint (expected PyTorch .pt/.pth/.bin/.ckpt, TorchScript or .safetensors)"
    )


def _sniff_zip(f: Path) -> str:
    try:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(
            f"{printable(f)} is truncated or corrupted (its zip directory cannot be read)"
        ) from exc
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    if any(n.endswith(".pt2") or n.startswith("archive_format") or "/archive_format" in n for n in names):
        raise CheckpointFormatError(
            f"{printable(f)} is a torch.export archive (.pt2), which is not supported: save a state_dict or TorchScript"
        )
    raise CheckpointFormatError(f"{printable(f)} is a zip archive but not a PyTorch checkpoint")


# --- safetensors ----------------------------------------------------------------------------------

MAX_HEADER_BYTES = 16 << 20  # ~150k tensors; safetensors itself allows 100 MB, which parses into GBs of objects
# bits per element of every dtype the safetensors format defines
ST_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True)
class SafetensorsEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offsets of the tensor's bytes
    end: int


def read_safetensors_header(f: Path) -> tuple[dict[str, SafetensorsEntry], dict[str, str]]:
    """The validated tensor entries and ``__metadata__`` of a safetensors file.

    Enforces what the safetensors library does (a JSON object; each entry exactly ``dtype``,
    ``shape``, ``data_offsets``; byte sizes that match shape and dtype; tensors contiguous from
    offset 0 without overlap or gaps, ending exactly at the end of the file; string metadata),
    plus a header size bound, so a hostile header fails here with its reason and costs nothing."""
    where = printable(f)
    size = f.stat().st_size
    with open(f, "rb") as fh:
        first = fh.read(8)
        if len(first) < 8:
            raise CheckpointFormatError(f"{where} is truncated (no safetensors header)")
        (n,) = struct.unpack("<Q", first)
        if n > MAX_HEADER_BYTES:
            raise CheckpointFormatError(
                f"{where}: its safetensors header claims {n:,} bytes (entropyflow reads at most "
                f"{MAX_HEADER_BYTES >> 20} MiB of header)"
            )
        if n > size - 8:
            raise CheckpointFormatError(
                f"{where} is truncated: its safetensors header claims {n:,} bytes, the file has {size - 8:,} after "
                "the length"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointFormatError(
            f"{where}: its safetensors header is nested too deeply to be a safetensors header"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(f"{where} is truncated or corrupted (unreadable safetensors header)") from exc
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{where}: its safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointFormatError(f"{where}: its safetensors __metadata__ must map strings to strings")
    start = 8 + n
    entries: dict[str, SafetensorsEntry] = {}
    for key, info in header.items():
        k = printable(key, 80)
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointFormatError(
                f"{where}: safetensors entry '{k}' must have exactly dtype, shape and data_offsets"
            )
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in ST_DTYPE_BITS:
            raise CheckpointFormatError(
                f"{where}: safetensors entry '{k}' has an unknown dtype {printable(dtype, 20)!r}"
            )
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise CheckpointFormatError(
                f"{where}: safetensors entry '{k}' has a bad shape (a list of non-negative integers is needed)"
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise CheckpointFormatError(
                f"{where}: safetensors entry '{k}' has bad data_offsets (two increasing non-negative integers are "
                "needed)"
            )
        bits = prod(shape) * ST_DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
            raise CheckpointFormatError(
                f"{where}: safetensors entry '{k}' declares {offsets[1] - offsets[0]:,} bytes for "
                f"shape {shape} of {dtype}"
            )
        entries[key] = SafetensorsEntry(dtype, tuple(shape), start + offsets[0], start + offsets[1])
    expected = start
    for e in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if e.begin != expected:
            what = "overlap" if e.begin < expected else "leave a gap"
            raise CheckpointFormatError(f"{where}: its safetensors tensors {what} (data offsets are not contiguous)")
        expected = e.end
    if expected > size:
        raise CheckpointFormatError(
            f"{where} is truncated: its header describes {expected:,} bytes, the file has {size:,}"
        )
    if expected < size:
        raise CheckpointFormatError(f"{where} is corrupted: {size - expected:,} bytes follow its last tensor")
    return entries, meta


TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".jit", ".ts", ".tar", ".pkl", ".model")


@contextlib.contextmanager
def openable(f: Path) -> Iterator[str]:
    """A path string that C++/Rust readers (torch.load, torch.jit.load) open as a torch file:
    ``f`` itself, or a symlink to it with a plain name when ``f`` is not valid UTF-8 or its suffix
    would make torch treat it as another format (``torch.load`` reads ``*.safetensors`` as safetensors)."""
    try:
        str(f).encode("utf-8")
        plain = f.suffix.lower() in TORCH_SUFFIXES or f.suffix == ""
    except UnicodeEncodeError:
        plain = False
    if plain:
        yield str(f)
        return
    with tempfile.TemporaryDirectory(prefix="entropyflow-") as tmp:
        link = Path(tmp) / "checkpoint.pt"
        os.symlink(os.path.abspath(f), link)
        yield str(link)


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 32 or b in (9, 10, 13) for b in head)
