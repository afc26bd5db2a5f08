"""Lazy, read-only access to the named tensors of a checkpoint.

The estimator asks only for what it needs (``weight[:, 0]`` of a conv, the ``m × m`` square
part of a dense weight). ``torch.load(mmap=True)`` state dicts and safetensors files (single or
sharded, their headers validated by ``load.paths``) serve those slices without materialising whole tensors.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import torch

from ..errors import CheckpointFormatError
from ..text import printable
from .paths import read_safetensors_header


def _st_dtypes() -> dict[str, torch.dtype]:
    """safetensors dtype names → torch dtypes (those this torch has; the others are read as bytes
    and skipped as not floating point)."""
    names = {
        "F64": "float64",
        "F32": "float32",
        "F16": "float16",
        "BF16": "bfloat16",
        "I64": "int64",
        "I32": "int32",
        "I16": "int16",
        "I8": "int8",
        "U8": "uint8",
        "U16": "uint16",
        "U32": "uint32",
        "U64": "uint64",
        "BOOL": "bool",
        "F8_E4M3": "float8_e4m3fn",
        "F8_E5M2": "float8_e5m2",
        "F8_E4M3FNUZ": "float8_e4m3fnuz",
        "F8_E5M2FNUZ": "float8_e5m2fnuz",
        "F8_E8M0": "float8_e8m0fnu",
        "C64": "complex64",
    }
    return {k: getattr(torch, v) for k, v in names.items() if isinstance(getattr(torch, v, None), torch.dtype)}


_ST_DTYPES = _st_dtypes()


class TensorSource:
    """Named tensors with lazy access. Subclasses implement the five primitives below."""

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        """The whole tensor (mmap-backed where the format allows)."""
        raise NotImplementedError

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        """``tensor[index]`` reading only what the index selects where the format allows."""
        raise NotImplementedError

    def __contains__(self, key: object) -> bool:
        return key in set(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def origin(self, key: str) -> tuple[TensorSource, str]:
        """The source and key that actually hold ``key`` (through renaming views)."""
        return self, key

    def __len__(self) -> int:
        return len(self.keys())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self.keys()}

    def renamed(self, mapping: Mapping[str, str]) -> TensorSource:
        """A view whose keys are ``mapping``'s keys, reading ``mapping[key]`` from this source."""
        return RenamedSource(self, dict(mapping))


class DictSource(TensorSource):
    """Tensors held in a dict (a ``torch.load(mmap=True)`` state dict, or a live model's)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self._t = {k: (v.detach() if v.requires_grad else v) for k, v in tensors.items() if isinstance(v, torch.Tensor)}

    def keys(self) -> list[str]:
        return list(self._t)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._t[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._t[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self._t[key]

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        return self._t[key][index]

    def __contains__(self, key: object) -> bool:
        return key in self._t


class SafetensorsSource(TensorSource):
    """One or more safetensors files, validated by :func:`~entropyflow.load.paths.read_safetensors_header`
    (the safetensors library's own rules) and read tensor by tensor.

    Data is read with positioned reads into fresh buffers, never through a long-lived mmap:
    pages of a mapping stay in the process's resident set once touched, so scanning a sharded
    multi-GB checkpoint through one would grow the RSS to the checkpoint's size. This way the
    peak stays near the largest tensor read at once. A first-axis slice (``weight[a:b]``, the
    square part of a dense weight) reads only its rows."""

    def __init__(self, weight_map: Mapping[str, Path]):
        self._lock = threading.Lock()  # file objects are shared with the dense prefetch thread
        self._entries: dict[str, tuple[Path, int, torch.dtype, tuple[int, ...]]] = {}
        self._unsupported: dict[str, str] = {}
        self._files: dict[Path, io.RawIOBase] = {}
        for f in sorted(set(weight_map.values())):
            header, _meta = read_safetensors_header(f)  # validated: every entry lies inside the file
            for k, e in header.items():
                if weight_map.get(k, f) != f:
                    continue
                dtype = _ST_DTYPES.get(e.dtype)
                if dtype is None:  # a format dtype torch cannot hold here (F4, F6...): listed, never read
                    self._unsupported[k] = e.dtype
                    dtype = torch.uint8
                    shape: tuple[int, ...] = (e.end - e.begin,)
                else:
                    shape = e.shape
                self._entries[k] = (f, e.begin, dtype, shape)
        missing = [k for k in weight_map if k not in self._entries]
        if missing:
            raise CheckpointFormatError(
                f"shard index lists tensors absent from their shards: "
                f"{', '.join(printable(k, 60) for k in missing[:3])}"
            )

    @classmethod
    def single(cls, path: Path) -> SafetensorsSource:
        header, _meta = read_safetensors_header(path)
        return cls({k: path for k in header})

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entries[key][3]

    def dtype(self, key: str) -> torch.dtype:
        return self._entries[key][2]

    def get(self, key: str) -> torch.Tensor:
        shape = self._entries[key][3]
        return self._rows(key, 0, shape[0] if shape else 1).reshape(shape)

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        shape = self._entries[key][3]
        first = index[0] if index else slice(None)
        if shape and isinstance(first, slice) and first.step in (None, 1):
            a, b, _ = first.indices(shape[0])
            rows = self._rows(key, a, max(a, b)).reshape((max(0, b - a),) + shape[1:])
            return rows[(slice(None),) + tuple(index[1:])]
        return self.get(key)[index]

    def _rows(self, key: str, a: int, b: int) -> torch.Tensor:
        """Rows ``a:b`` along the first axis as a fresh 1-D tensor."""
        f, offset, dtype, shape = self._entries[key]
        row = torch.empty((), dtype=dtype).element_size()
        for d in shape[1:]:
            row *= d
        buf = torch.empty((b - a) * row, dtype=torch.uint8)
        with self._lock:
            fh = self._files.get(f)
            if fh is None:
                fh = self._files[f] = cast(io.RawIOBase, open(f, "rb", buffering=0))  # noqa: SIM115 - kept open
            fh.seek(offset + a * row)
            got = fh.readinto(cast(Any, buf.numpy()))  # a writable buffer over the tensor's bytes
        if got != buf.numel():
            raise CheckpointFormatError(f"{f.name} is truncated: tensor {key} ends past the end of the file")
        return buf.view(dtype)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


class RenamedSource(TensorSource):
    """A key-renaming view of another source."""

    def __init__(self, base: TensorSource, mapping: dict[str, str]):
        self._base, self._map = base, mapping

    def keys(self) -> list[str]:
        return list(self._map)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._base.shape(self._map[key])

    def dtype(self, key: str) -> torch.dtype:
        return self._base.dtype(self._map[key])

    def get(self, key: str) -> torch.Tensor:
        return self._base.get(self._map[key])

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        return self._base.get_slice(self._map[key], index)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def origin(self, key: str) -> tuple[TensorSource, str]:
        return self._base.origin(self._map[key])


class OverlaySource(TensorSource):
    """A source with some tensors replaced (e.g. effective weights of custom convs) or added (the
    effective weight of a weight-normalised layer, which the checkpoint stores as ``g`` and ``v``)."""

    def __init__(self, base: TensorSource, overrides: Mapping[str, torch.Tensor]):
        self._base, self._over = base, dict(overrides)

    def keys(self) -> list[str]:
        base = self._base.keys()
        known = set(base)
        return base + [k for k in self._over if k not in known]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._over[key].shape) if key in self._over else self._base.shape(key)

    def dtype(self, key: str) -> torch.dtype:
        return self._over[key].dtype if key in self._over else self._base.dtype(key)

    def get(self, key: str) -> torch.Tensor:
        return self._over[key] if key in self._over else self._base.get(key)

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        return self._over[key][index] if key in self._over else self._base.get_slice(key, index)

    def __contains__(self, key: object) -> bool:
        return key in self._over or key in self._base

    def origin(self, key: str) -> tuple[TensorSource, str]:
        return (self, key) if key in self._over else self._base.origin(key)
