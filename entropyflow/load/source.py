"""Lazy, read-only access to the named tensors of a checkpoint.

The estimator asks only for what it needs (``weight[:, 0]`` of a conv, the ``m × m`` square
part of a dense weight). ``torch.load(mmap=True)`` state dicts and safetensors files (single or
sharded, opened with ``safe_open``) serve those slices without materialising whole tensors.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import torch

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
}


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
    """One or more safetensors files read lazily through ``safe_open`` (mmap)."""

    def __init__(self, weight_map: Mapping[str, Path]):
        from safetensors import safe_open

        self._lock = threading.Lock()  # handles are shared with the dense prefetch thread
        self._handles = {f: safe_open(str(f), framework="pt", device="cpu") for f in sorted(set(weight_map.values()))}
        self._where: dict[str, object] = {}
        for f, h in self._handles.items():
            for k in h.keys():
                if weight_map.get(k, f) == f:
                    self._where[k] = h
        missing = [k for k in weight_map if k not in self._where]
        if missing:
            from ..errors import CheckpointFormatError

            raise CheckpointFormatError(f"shard index lists tensors absent from their shards: {', '.join(missing[:3])}")

    @classmethod
    def single(cls, path: Path) -> SafetensorsSource:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as h:
            names = list(h.keys())
        return cls({k: path for k in names})

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._where[key].get_slice(key).get_shape())

    def dtype(self, key: str) -> torch.dtype:
        dt = _ST_DTYPES.get(self._where[key].get_slice(key).get_dtype())
        return dt if dt is not None else torch.uint8

    def get(self, key: str) -> torch.Tensor:
        with self._lock:
            return self._where[key].get_tensor(key)

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        with self._lock:
            return self._where[key].get_slice(key)[index]

    def __contains__(self, key: object) -> bool:
        return key in self._where


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
    """A source with some tensors replaced (e.g. effective weights of custom convs)."""

    def __init__(self, base: TensorSource, overrides: Mapping[str, torch.Tensor]):
        self._base, self._over = base, dict(overrides)

    def keys(self) -> list[str]:
        return self._base.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._over[key].shape) if key in self._over else self._base.shape(key)

    def dtype(self, key: str) -> torch.dtype:
        return self._over[key].dtype if key in self._over else self._base.dtype(key)

    def get(self, key: str) -> torch.Tensor:
        return self._over[key] if key in self._over else self._base.get(key)

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        return self._over[key][index] if key in self._over else self._base.get_slice(key, index)

    def __contains__(self, key: object) -> bool:
        return key in self._base

    def origin(self, key: str) -> tuple[TensorSource, str]:
        return (self, key) if key in self._over else self._base.origin(key)
