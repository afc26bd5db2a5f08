"""Text taken from untrusted input (checkpoint keys, file names, analysis.json fields) made safe
to render: control characters become visible escapes (no ``ESC[2J`` reaches a terminal), and
anything rendered from checkpoint metadata is bounded in size however the object is built
(a 3 KB pickle of shared tuples can describe a string of gigabytes)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# C0/C1 controls, DEL, the bidirectional overrides/isolates that reorder displayed text, and lone
# surrogates (the bytes of a file name that is not UTF-8, as Python's filesystem decoding keeps them)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def _escape(m: re.Match) -> str:
    c = ord(m.group(0))
    if 0xDC80 <= c <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def path_text(path: object) -> str:
    """A file name as text that can always be encoded (JSON, CSV, a terminal): the bytes of a name
    that is not UTF-8 become ``\\xNN`` escapes instead of lone surrogates."""
    s = str(path)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def printable(text: object, limit: int | None = None) -> str:
    """``text`` with every control or direction-changing character written as ``\\xNN``/``\\uNNNN``
    (tabs and newlines included: rendered text is one line), cut to ``limit`` characters."""
    s = _UNSAFE.sub(_escape, str(text))
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def brief(obj: object, limit: int = 60, depth: int = 2) -> str:
    """A bounded description of a value read from a checkpoint: numbers and short strings as
    themselves, containers by type and length (``tuple[3]``), never expanding shared structure."""
    if isinstance(obj, bool) or obj is None:
        return str(obj)
    if isinstance(obj, (int, float)):
        text = repr(obj)
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if isinstance(obj, str):
        return printable(obj, limit)
    if isinstance(obj, (bytes, bytearray)):
        return f"{type(obj).__name__}[{len(obj)}]"
    if isinstance(obj, (list, tuple, dict, set, frozenset)):
        n = len(obj)
        if depth <= 0 or n > 4:
            return f"{type(obj).__name__}[{n}]"
        items = obj.items() if isinstance(obj, dict) else obj
        parts: list[str] = []
        for item in items:
            part = (
                f"{shown(item[0], 20, depth - 1)}: {shown(item[1], 20, depth - 1)}"
                if isinstance(obj, dict)
                else shown(item, 20, depth - 1)
            )
            parts.append(part)
        text = {"list": "[{}]", "tuple": "({})", "dict": "{{{}}}"}.get(type(obj).__name__, type(obj).__name__ + "({})")
        out = text.format(", ".join(parts))
        return out if len(out) <= limit else f"{type(obj).__name__}[{n}]"
    return printable(type(obj).__name__, limit)


def shown(value: object, limit: int = 60, depth: int = 2) -> str:
    """Like :func:`brief`, with strings quoted (a value in an error message: ``'one'`` vs ``1``)."""
    if isinstance(value, str):
        return repr(printable(value, limit))
    return brief(value, limit, depth)


def number_ranges(numbers: Iterable[int | None]) -> str:
    """Integers as runs, in the order given: ``1–1000`` for a thousand seeds, ``0, 2–4, 9``; a
    missing number (an analysis without a seed) is written ``None`` and ends a run."""
    runs: list[tuple[int, int] | None] = []
    for n in numbers:
        last = runs[-1] if runs else None
        if n is not None and last is not None and n == last[1] + 1:
            runs[-1] = (last[0], n)
        else:
            runs.append(None if n is None else (n, n))
    return ", ".join(
        "None"
        if r is None
        else str(r[0])
        if r[0] == r[1]
        else f"{r[0]}, {r[1]}"
        if r[1] == r[0] + 1
        else f"{r[0]}–{r[1]}"
        for r in runs
    )


_NUMBER = re.compile(r"\d+")


def file_names(names: Sequence[str], keep: int = 3) -> str:
    """File names for a "wrote …" line: a run of more than ``keep`` names that differ only in one
    number (``compare-1.analysis.json`` … ``compare-1000.analysis.json``) is written as its first
    and last name and a count, in place of the first of them."""
    groups: dict[str, list[str]] = {}
    for name in names:
        if len(_NUMBER.findall(name)) == 1:
            groups.setdefault(_NUMBER.sub("#", name), []).append(name)
    shown: list[str] = []
    for name in names:
        group = groups.get(_NUMBER.sub("#", name)) if len(_NUMBER.findall(name)) == 1 else None
        if group is None or len(group) <= keep:
            shown.append(name)
        elif name == group[0]:
            shown.append(f"{group[0]} … {group[-1]} ({len(group)} files)")
    return ", ".join(shown)
