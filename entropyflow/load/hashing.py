"""SHA-256 of checkpoint files, computed on a background thread (no torch import).

The CLI starts hashing before it imports torch, so the hash is usually ready for free; the
library asks for the same files later and gets the same future back.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

_lock = threading.Lock()
_futures: dict[tuple, Future] = {}


def _key(files: Sequence[Path]) -> tuple:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def combined_digest(files: Sequence[Path]) -> str:
    """One file: its sha256. Several (shards): sha256 of the sorted 'name sha256' lines."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = sorted(f"{f.name} {sha256_file(f)}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def sha256_async(files: Sequence[Path]) -> Future:
    """A future for :func:`combined_digest` of ``files`` (shared between callers)."""
    files = [Path(f) for f in files]
    key = _key(files)
    with _lock:
        fut = _futures.get(key)
        if fut is not None:
            return fut
        fut = Future()
        _futures[key] = fut

    def work() -> None:
        try:
            fut.set_result(combined_digest(files))
        except BaseException as exc:  # reported to whoever waits on the future
            fut.set_exception(exc)

    threading.Thread(target=work, name="entropyflow-sha256", daemon=True).start()
    return fut
