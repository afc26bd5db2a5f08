"""One way to write a file whole: the bytes go to a temporary file beside it, are flushed to disk,
and the temporary file is renamed over the target. A reader sees the previous file or the new
one, never a part; any failure (an interrupt included) removes the temporary file and leaves the
target as it was.

Used for every file entropyflow replaces in place: λ configs, a report folder's journal, the
track cache, a sweep's records. (A report folder as a whole is committed by ``report.outdir``.)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def umask() -> int:
    """The process umask, without changing it where /proc tells (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes, *, temp: Path | None = None) -> None:
    """``data`` into ``path`` whole, with an ordinary file's mode (``0666 & ~umask``).

    ``temp``: the temporary file's fixed name, for a reader that recognises a leftover of a killed
    run by it (never followed if it is a link); default: a unique hidden name beside ``path``
    (``.NAME.XXXXXXXX.tmp``), so that concurrent writers never share one. Raises OSError."""
    if temp is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name.lstrip('.')}.", suffix=".tmp", dir=path.parent)
        temp = Path(name)
    else:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~umask())  # mkstemp makes it 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


__all__ = ["umask", "write_atomic"]
