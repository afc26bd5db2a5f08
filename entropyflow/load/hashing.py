"""SHA-256 of checkpoint files, computed on a background thread (no torch import).

The CLI starts hashing before it imports torch, so the hash is usually ready for free; the
library asks for the same files later and gets the same task back. Hashing stops within one
16 MiB block of being cancelled (see :mod:`entropyflow.background`).
"""

from __future__ import annotations

import hashlib
import threading
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from .. import background
from ..background import Cancelled
from ..errors import CheckpointFormatError

_lock = threading.Lock()
_tasks: dict[tuple, background.Task] = {}


def _key(files: Sequence[Path]) -> tuple:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)


def sha256_file(path: Path, chunk: int = 1 << 24, cancelled: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled(f"hashing {path.name} was cancelled")
            h.update(block)
    return h.hexdigest()


def combined_digest(files: Sequence[Path], cancelled: threading.Event | None = None) -> str:
    """One file: its sha256. Several (shards): sha256 of the sorted 'name sha256' lines."""
    if len(files) == 1:
        return sha256_file(files[0], cancelled=cancelled)
    lines = sorted(f"{f.name} {sha256_file(f, cancelled=cancelled)}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def verify_zip_crcs(path: Path, cancelled: threading.Event | None = None, chunk: int = 1 << 24) -> None:
    """Read every record of a zip archive (a torch checkpoint) and check its CRC-32: a tensor
    record altered on disk would otherwise be analysed as if it were the saved weights."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as fh:  # ZipExtFile checks the CRC when it reaches the end
                    while fh.read(chunk):
                        if cancelled is not None and cancelled.is_set():
                            raise Cancelled(f"checking {path.name} was cancelled")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, zlib.error) as exc:
        # zlib.error: a deflate-compressed record (TorchScript code) whose bytes were altered
        raise CheckpointFormatError(f"{path.name} is corrupted: a record fails its zip check ({exc})") from exc


def integrity_async(files: Sequence[Path], *, sha256: bool = True, zip_crc: bool = False) -> background.Task:
    """One background task that checks the zip CRCs of ``files`` (``zip_crc``) and returns their
    combined sha256 (``sha256``, else None). Its future raises CheckpointFormatError on a bad CRC."""
    files = [Path(f) for f in files]
    digest = sha256_async(files) if sha256 else None

    def work(cancelled: threading.Event) -> str | None:
        if zip_crc:
            for f in files:
                verify_zip_crcs(f, cancelled)
        return digest.future.result() if digest is not None else None

    task = background.start(work, "entropyflow-integrity")
    if digest is not None:
        task.also_cancel(digest)
    return task


def sha256_async(files: Sequence[Path]) -> background.Task:
    """A background task for :func:`combined_digest` of ``files`` (shared between callers while
    it runs or has succeeded; a cancelled or failed one is started afresh)."""
    files = [Path(f) for f in files]
    key = _key(files)
    with _lock:
        task = _tasks.get(key)
        if task is not None and not task.cancelled.is_set() and not (task.future.done() and task.future.exception()):
            return task
        task = _tasks[key] = background.start(lambda cancelled: combined_digest(files, cancelled), "entropyflow-sha256")
    return task
