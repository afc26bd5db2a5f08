"""Model specs: ``torchvision:NAME[.TAG]``, ``timm:NAME[.TAG]``, ``sample:NAME`` or a file path.

Pure string handling (no torch import), so the CLI can look at a spec before the heavy imports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import OptionError, UnknownModelError
from .text import printable
from .words import option, say

ZOO_SOURCES = ("torchvision", "timm", "sample")
HF = "hf"  # hf:ORG/NAME[@REVISION], from the local Hugging Face cache
_PREFIXED = re.compile(r"([A-Za-z][A-Za-z0-9_-]+):(.*)", re.DOTALL)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``source`` is one of ZOO_SOURCES or ``"file"``."""

    source: str
    name: str
    tag: str | None = None

    @property
    def is_file(self) -> bool:
        return self.source == "file"

    def __str__(self) -> str:
        if self.is_file:
            return self.name
        if self.source == HF:
            return f"hf:{self.name}" + (f"@{self.tag}" if self.tag else "")
        return f"{self.source}:{self.name}" + (f".{self.tag}" if self.tag else "")


def parse_spec(text: str) -> ModelSpec:
    """Parse a model spec. Unknown ``prefix:`` strings that are not existing paths are errors."""
    text = str(text).strip()
    if not text:
        raise UnknownModelError("empty model spec (give a file path, torchvision:NAME, timm:NAME or sample:NAME)")
    m = _PREFIXED.fullmatch(text)
    if m and m.group(1).lower() == HF:
        repo, at, revision = m.group(2).strip().partition("@")
        if not repo:
            raise UnknownModelError(f"'{printable(text, 60)}' names no model (example: hf:openai-community/gpt2)")
        if at and not revision:
            raise OptionError(f"'{printable(text, 60)}': an empty revision after '@' is not a branch, tag or commit")
        return ModelSpec(HF, repo, revision or None)
    if m and m.group(1).lower() in ZOO_SOURCES:
        rest = m.group(2).strip()
        if not rest:
            raise UnknownModelError(f"'{text}' names no model (example: {m.group(1).lower()}:resnet50)")
        name, _, tag = rest.partition(".")
        return ModelSpec(m.group(1).lower(), name, tag or None)
    if m and not os.path.exists(text) and "/" not in m.group(1) and "\\" not in m.group(1):
        raise UnknownModelError(
            f"unknown model source '{m.group(1)}:' in '{text}' "
            "(use a file path, torchvision:NAME, timm:NAME, sample:NAME or hf:ORG/NAME)"
        )
    return ModelSpec("file", text)


def parse_input_size(text: str | tuple[int, ...] | list[int] | None) -> tuple[int, ...] | None:
    """``'3x224x224'`` → ``(3, 224, 224)``; ``'64'`` → ``(64,)`` (a vector). Sizes exclude the batch."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        raw = str(text).strip().lower().replace("×", "x").replace(",", "x")
        try:
            parts = [int(p) for p in raw.split("x")]
        except ValueError as exc:
            raise OptionError(f"{_bad('input-size', text)} (expected sizes like 3x224x224, 1x8x8 or 64)") from exc
    if not parts or len(parts) > 5 or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in parts):
        raise OptionError(f"{_bad('input-size', text)} (expected 1 to 5 positive sizes like 3x224x224)")
    if any(p > MAX_INPUT_AXIS for p in parts):
        raise OptionError(f"{_bad('input-size', text)}: each size must be at most {MAX_INPUT_AXIS:,}")
    return tuple(parts)


MAX_INPUT_AXIS = 1 << 20  # per axis; geometry is computed per output index along each axis

INPUT_DTYPES = {
    "long": "int64", "int64": "int64", "int": "int32", "int32": "int32", "float": "float32", "float32": "float32",
    "half": "float16", "float16": "float16", "bfloat16": "bfloat16", "double": "float64", "float64": "float64",
}  # fmt: skip


@dataclass(frozen=True)
class ExampleInput:
    """One positional argument of the example forward call: a tensor (``shape`` without the batch
    dimension, which is 1) or, with ``shape=None``, a Python number ``value`` (``int:16000``)."""

    dtype: str | None  # 'int64', 'float32', …; None: the weights' floating dtype
    shape: tuple[int, ...] | None = None
    value: int | float | None = None

    @property
    def is_scalar(self) -> bool:
        return self.shape is None

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}:{self.value}"
        return f"{self.dtype or 'float'}:{'x'.join(map(str, (1, *self.shape)))}"


_INPUT_HELP = (
    "expected DTYPE:SHAPE with the batch dimension, e.g. long:1x128 for 128 token ids, or DTYPE:NUMBER for a "
    "scalar argument, e.g. int:16000"
)


def parse_example_input(text: str) -> ExampleInput:
    """One ``--input``: ``'long:1x128'`` → int64 tensor of shape (1, 128) (sizes kept without the batch
    dimension, which must be 1); ``'int:16000'`` / ``'float:0.5'`` → a Python number (no ``x`` in it)."""
    dtype, sep, rest = str(text).strip().lower().partition(":")
    if not sep or dtype not in INPUT_DTYPES:
        raise OptionError(f"{_bad('input', text)} ({_INPUT_HELP}; dtypes: {', '.join(sorted(INPUT_DTYPES))})")
    canonical, rest = INPUT_DTYPES[dtype], rest.strip()
    if rest and "x" not in rest and "×" not in rest and "," not in rest:  # a scalar argument
        return ExampleInput(canonical, None, _scalar(text, canonical, rest))
    try:
        sizes = parse_input_size(rest) if rest else None
    except OptionError as exc:
        raise OptionError(f"{_bad('input', text)} (expected DTYPE:SHAPE with positive sizes, e.g. long:1x128)") from exc
    if sizes is None:
        raise OptionError(f"{_bad('input', text)}: no shape after the dtype (e.g. long:1x128)")
    if sizes[0] != 1:
        raise OptionError(f"{_bad('input', text)}: the shape starts with the batch dimension, which must be 1")
    return ExampleInput(canonical, sizes[1:])


def _scalar(text: object, dtype: str, rest: str) -> int | float:
    try:
        if dtype.startswith("int"):
            return int(rest)
        number = float(rest)
    except ValueError as exc:
        kind = "an integer" if dtype.startswith("int") else "a number"
        raise OptionError(f"{_bad('input', text)}: a scalar argument must be {kind} ({_INPUT_HELP})") from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise OptionError(f"{_bad('input', text)}: a scalar argument must be finite")
    return number


def parse_inputs(texts: str | Sequence[str] | None) -> tuple[ExampleInput, ...]:
    """``--input`` given once per forward argument, in order. The first is the model's main input
    and must be a tensor; the others may be tensors or numbers."""
    if texts is None:
        return ()
    items = [texts] if isinstance(texts, str) else list(texts)
    if len(items) > MAX_INPUTS:
        raise OptionError(f"{inputs_given(len(items))}: at most {MAX_INPUTS} forward arguments")
    parsed = tuple(parse_example_input(t) for t in items)
    if parsed and parsed[0].is_scalar:
        raise OptionError(
            f"{_bad('input', items[0])}: the first {option('input')} is the model's main input, a tensor "
            "(DTYPE:SHAPE with the batch dimension, e.g. float:1x3x224x224)"
        )
    return parsed


MAX_INPUTS = 16


def parse_input(text: str | None) -> tuple[str | None, tuple[int, ...] | None]:
    """``--input DTYPE:SHAPE``: the example input's dtype and its shape *with* the batch dimension,
    which must be 1: ``'long:1x128'`` → ``('int64', (128,))`` (one sequence of 128 token ids);
    ``'float:1x3x224x224'`` → ``('float32', (3, 224, 224))``. Returns (dtype, size without batch)."""
    if text is None:
        return None, None
    (first,) = parse_inputs(text)
    return first.dtype, first.shape


def inputs_given(count: int) -> str:
    """How many forward arguments were given, in the caller's words."""
    return say(cli=f"--input given {count} times", library=f"input= holds {count} values")


def _bad(what: str, text: object) -> str:
    """``bad --input-size '0x3'`` (or ``bad input_size '0x3'``: the caller's words)."""
    return f"bad {option(what)} '{_short(text)}'"


def _short(text: object) -> str:
    return printable(text, 60)


_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 10**3,
    "kib": 2**10,
    "m": 2**20,
    "mb": 10**6,
    "mib": 2**20,
    "g": 2**30,
    "gb": 10**9,
    "gib": 2**30,
    "t": 2**40,
    "tb": 10**12,
    "tib": 2**40,
}


def parse_bytes(text: str | int | None) -> int | None:
    """``'4GiB'`` → 4294967296, ``'512MB'`` → 512000000, ``'2G'`` → 2 GiB (a bare letter is binary)."""
    if text is None or isinstance(text, int):
        if isinstance(text, int) and text < 1:
            raise OptionError(f"bad memory budget {text} (must be positive)")
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise OptionError(f"bad memory budget '{_short(text)}' (examples: 512MiB, 4GiB, 8GB)")
    return max(1, int(float(m.group(1)) * _UNITS[unit]))
