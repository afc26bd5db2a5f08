"""Mutations for the bounded fuzz tests (test_fuzz.py, test_fuzz_surfaces.py): byte flips and
truncations, zip records rewritten with valid CRCs, pickle integers set to edge values, and JSON
documents with one value replaced by a value of another type."""

from __future__ import annotations

import io
import pickletools
import random
import struct
import zipfile


def flip(data: bytes, rng: random.Random, n: int | None = None, lo: int = 0, hi: int | None = None) -> bytes:
    b = bytearray(data)
    hi = len(b) if hi is None else hi
    for _ in range(n or rng.randint(1, 8)):
        b[rng.randrange(lo, hi)] ^= rng.randint(1, 255)
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def rewrite_zip(data: bytes, edit) -> bytes:
    """The zip with its records edited by ``edit(name, bytes)`` (CRCs recomputed)."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            z.writestr(zipfile.ZipInfo(info.filename), edit(info.filename, src.read(info)))
    return out.getvalue()


EDGE_INTS = [0, 1, -1, 2, 3, 255, 65535, 2**31 - 1, -(2**31), 7, 64, 4096, 10**6]


def edit_pickle_ints(pkl: bytes, rng: random.Random) -> bytes:
    """Replace a few integer arguments (sizes, strides, offsets, keys' positions) by edge values."""
    ints = [(pos, op.name) for op, arg, pos in pickletools.genops(pkl) if op.name in ("BININT", "BININT1", "BININT2")]
    b = bytearray(pkl)
    for pos, name in rng.sample(ints, min(len(ints), rng.randint(1, 4))):
        v = rng.choice(EDGE_INTS)
        if name == "BININT":
            b[pos + 1 : pos + 5] = struct.pack("<i", v if -(2**31) <= v < 2**31 else 0)
        elif name == "BININT1":
            b[pos + 1] = v & 0xFF
        else:
            b[pos + 1 : pos + 3] = struct.pack("<H", v & 0xFFFF)
    return bytes(b)


RANDOM_VALUES = [None, 0, -1, 1e308, "x", "-inf", [], {}, [1, "a"], {"a": [1, {"b": None}]}, True, 2**70, "", [[[[]]]]]


def mutate_json(doc, rng: random.Random, depth: int = 0):
    """Replace one value somewhere in ``doc`` by a value of another type, or drop a key."""
    if isinstance(doc, dict) and doc:
        key = rng.choice(list(doc))
        if depth > 0 and rng.random() < 0.15:
            doc.pop(key)
        elif rng.random() < 0.4 or not isinstance(doc[key], (dict, list)) or not doc[key]:
            doc[key] = rng.choice(RANDOM_VALUES)
        else:
            mutate_json(doc[key], rng, depth + 1)
    elif isinstance(doc, list) and doc:
        i = rng.randrange(len(doc))
        if rng.random() < 0.4 or not isinstance(doc[i], (dict, list)) or not doc[i]:
            doc[i] = rng.choice(RANDOM_VALUES)
        else:
            mutate_json(doc[i], rng, depth + 1)
    return doc
