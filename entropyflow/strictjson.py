"""JSON read from untrusted files (``config.json``, ``analysis.json``, λ configs, a sweep's own
files), parsed strictly and in bounded time and memory.

Python's :func:`json.loads` accepts what a careful reader should not: duplicate keys (the last one
silently wins), ``NaN``/``Infinity`` tokens, numbers that overflow to ``inf`` (``1e400``), integers
of any length (a 5000-digit integer raises a ``ValueError`` from ``int()``, deep inside a caller),
and nesting deep enough to exhaust the stack (a ``RecursionError``). :func:`loads` refuses each of
these with a :class:`JSONError` whose message is one line naming the problem, and
:func:`read` adds a size bound checked before a byte is read. Callers turn the ``JSONError`` into
their own error class (``ConfigError``, ``CheckpointFormatError``) with the file's name."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

#: the most digits an integer may have (a 64-bit integer has 20; Python refuses > 4300 anyway)
MAX_INT_DIGITS = 64
#: the deepest nesting of arrays and objects (real configs and analyses nest < 10 deep)
MAX_DEPTH = 100


class JSONError(ValueError):
    """A JSON document that is malformed or outside the bounds; the message is one line."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            shown = key if len(key) <= 60 else key[:59] + "…"
            raise JSONError(f"the key {json.dumps(shown)} appears twice in one object")
        out[key] = value
    return out


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONError(f"an integer with {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONError(f"the number {text[:40]} overflows a double")
    return value


def _constant(name: str) -> float:
    raise JSONError(f"{name} is not a JSON number")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str, limit: int) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (linear), so that a deeply nested
    document is refused before the recursive parser sees it."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` strictly: duplicate keys, NaN/Infinity, overflowing numbers, integers of more
    than :data:`MAX_INT_DIGITS` digits and nesting deeper than ``max_depth`` raise :class:`JSONError`."""
    if _depth(text, max_depth) > max_depth:
        raise JSONError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except JSONError:
        raise
    except RecursionError as exc:  # pragma: no cover - the depth scan comes first
        raise JSONError("nested too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError and int() limits
        raise JSONError(" ".join(str(exc).split())[:200]) from exc


def read(path: str | os.PathLike[str], *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Read and :func:`loads` a UTF-8 JSON file of at most ``max_bytes`` bytes (checked on the open
    file before reading, and again while reading, so a file that grows is still bounded).
    ``OSError`` propagates for the caller to word; every problem with the content is a :class:`JSONError`."""
    with Path(path).open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise JSONError(f"{size:,} bytes, more than the {_amount(max_bytes)} such a file may have")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JSONError(f"more than the {_amount(max_bytes)} such a file may have")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError("not UTF-8 text") from exc
    return loads(text, max_depth=max_depth)


def _amount(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} bytes"
