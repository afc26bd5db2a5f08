"""Refuse pickle bombs before anything unpickles them.

A checkpoint's pickle can reuse one object many times through its memo: ``x = (x, x)`` 34 times
takes 1.8 KB and stands for 2³⁴ tuples. Even the weights-only unpickler builds such objects
quickly, but hashing one (a dict key) or printing one expands it: minutes of CPU or gigabytes.
This module reads the pickle's opcodes without executing any (``pickletools.genops``), builds the
graph of which object contains which, and computes how many objects each one expands to when
shared references are followed; a pickle in which any object expands past a bound is refused.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path
from typing import IO

from ..errors import CheckpointFormatError
from ..text import printable

MAX_PICKLE_BYTES = 32 << 20  # the pickle part of a checkpoint (tensor data is stored beside it): ~200k tensors
EXPANSION_FLOOR = 10_000_000  # objects any one object may expand to, at least
EXPANSION_PER_OPCODE = 16  # ... or this many per opcode of the pickle, whichever is larger

_SCALARS = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
    "NONE",
    "NEWTRUE",
    "NEWFALSE",
    "FLOAT",
    "BINFLOAT",
    "EMPTY_LIST",
    "EMPTY_DICT",
    "EMPTY_TUPLE",
    "EMPTY_SET",
    "GLOBAL",
    "PERSID",
    "EXT1",
    "EXT2",
    "EXT4",
    "NEXT_BUFFER",
    "INST",
}
_MARK = object()


class _Bad(Exception):
    pass


def _scan(stream: IO[bytes]) -> tuple[int, int]:
    """(largest expansion, number of opcodes) of one pickle read from ``stream`` up to STOP."""
    children: list[list[int] | None] = []  # node id → contained node ids (None: a leaf)
    stack: list[object] = []
    memo: dict[int, int] = {}

    def node(kids: list[int] | None) -> int:
        children.append(kids)
        return len(children) - 1

    def container() -> list[int]:
        top = pop_peek(stack)
        if children[top] is None:
            children[top] = []
        return children[top]  # type: ignore[return-value]

    def pop_mark() -> list[int]:
        items: list[int] = []
        while stack:
            top = stack.pop()
            if top is _MARK:
                return items[::-1]
            items.append(top)  # type: ignore[arg-type]
        raise _Bad("MARK missing")

    def pop() -> int:
        if not stack or stack[-1] is _MARK:
            raise _Bad("stack underflow")
        return stack.pop()  # type: ignore[return-value]

    ops = 0
    for op, arg, _pos in pickletools.genops(stream):
        ops += 1
        name = op.name
        if name in ("PROTO", "FRAME", "READONLY_BUFFER"):
            continue
        if name == "STOP":
            break
        if name == "INST":
            pop_mark()
            stack.append(node(None))
        elif name in _SCALARS:
            stack.append(node(None))
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ"):
            stack.append(node(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(node(items))
        elif name == "APPEND":
            v = pop()
            container().append(v)
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            items = pop_mark()
            container().extend(items)
        elif name == "SETITEM":
            v, k = pop(), pop()
            container().extend((k, v))
        elif name == "STACK_GLOBAL":
            pop(), pop()
            stack.append(node(None))
        elif name in ("REDUCE", "NEWOBJ"):
            args, fn = pop(), pop()
            stack.append(node([fn, args]))
        elif name == "NEWOBJ_EX":
            kw, args, cls = pop(), pop(), pop()
            stack.append(node([cls, args, kw]))
        elif name == "BUILD":
            state = pop()
            container().append(state)
        elif name == "BINPERSID":
            stack.append(node([pop()]))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[_int(arg)] = pop_peek(stack)
        elif name == "MEMOIZE":
            memo[len(memo)] = pop_peek(stack)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if _int(arg) not in memo:
                raise _Bad("memo key missing")
            stack.append(memo[_int(arg)])
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(pop_peek(stack))
        else:
            raise _Bad(f"opcode {name}")
    return _largest_expansion(children), ops


def _int(arg: object) -> int:
    if not isinstance(arg, int):
        raise _Bad("memo index is not an integer")
    return arg


def pop_peek(stack: list[object]) -> int:
    if not stack or stack[-1] is _MARK:
        raise _Bad("stack underflow")
    return stack[-1]  # type: ignore[return-value]


def _largest_expansion(children: list[list[int] | None]) -> int:
    """Max over nodes of 1 + Σ expansions of its children (shared children counted each time they
    occur; a reference back to an enclosing node counts 1), iteratively (no recursion limit)."""
    size = [0] * len(children)
    state = [0] * len(children)  # 0 new, 1 open, 2 done
    largest = 0
    for root in range(len(children)):
        if state[root]:
            continue
        if children[root] is None:
            size[root], state[root] = 1, 2
            largest = max(largest, 1)
            continue
        todo = [root]
        while todo:
            n = todo[-1]
            kids = children[n] or ()
            if state[n] == 0:
                state[n] = 1
                todo.extend(c for c in kids if state[c] == 0)
                continue
            todo.pop()
            if state[n] == 2:
                continue
            total = 1
            for c in kids:
                total += size[c] if state[c] == 2 else 1
            size[n] = total
            state[n] = 2
            largest = max(largest, total)
    return largest


def check_pickles(f: Path, zipped: bool) -> None:
    """Raise CheckpointFormatError when the pickle(s) of a torch checkpoint expand past the bound.
    Unreadable pickles are left to the loader, which reports them as corrupted."""
    name = printable(f.name)
    try:
        if zipped:
            with zipfile.ZipFile(f) as z:
                records = [i for i in z.infolist() if i.filename.endswith("data.pkl")]
                if not records:
                    return
                if records[0].file_size > MAX_PICKLE_BYTES:
                    raise CheckpointFormatError(
                        f"{name}: its pickle is {records[0].file_size:,} bytes (entropyflow reads "
                        f"at most {MAX_PICKLE_BYTES >> 20} MiB of pickle)"
                    )
                streams: list[IO[bytes]] = [io.BytesIO(z.read(records[0]))]
            passes = 1
        else:
            streams = [open(f, "rb")]  # noqa: SIM115 - closed below
            passes = 4  # the legacy format: magic, protocol, system info, then the object
        try:
            for stream in streams:
                for _ in range(passes):
                    largest, ops = _scan(stream)
                    bound = max(EXPANSION_FLOOR, EXPANSION_PER_OPCODE * ops)
                    if largest > bound:
                        raise CheckpointFormatError(
                            f"{name}: its pickle of {ops:,} opcodes builds an object that expands to more than "
                            f"{bound:,} objects through shared references (a pickle bomb); refused before unpickling"
                        )
        finally:
            for stream in streams:
                stream.close()
    except CheckpointFormatError:
        raise
    except (_Bad, ValueError, EOFError, OSError, zipfile.BadZipFile, RecursionError, MemoryError, KeyError, IndexError):
        return  # not a well-formed pickle: torch.load reports it as corrupted
