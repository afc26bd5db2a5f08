"""Write a report folder atomically: every file is rendered in memory first, written into a
hidden temporary folder inside the target, then moved into place. On any error nothing new
is left behind (and a folder this call created is removed again)."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import OutputError


def check_writable(out: str | Path) -> Path:
    """Fail fast (before any analysis) when ``out`` cannot become a writable folder."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot write the report to {out}: it exists and is not a folder")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"cannot write the report to {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the report to {out}: {probe} is not writable")
    return out


def write_atomically(out: str | Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` (name → bytes) into ``out``: all of them, or none (previous files restored)."""
    out = check_writable(out)
    created = [] if out.exists() else [p for p in [out, *out.parents] if not p.exists()]
    tmp = None
    placed: list[tuple[Path, Path | None]] = []  # (destination, backup of what it replaced)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".entropyflow-", dir=out))
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        for name in files:
            dst, backup = out / name, None
            if dst.exists():
                backup = tmp / f".previous-{name}"
                os.replace(dst, backup)
            placed.append((dst, backup))
            os.replace(tmp / name, dst)
    except OSError as exc:
        for dst, backup in reversed(placed):
            try:
                dst.unlink(missing_ok=True)
                if backup is not None:
                    os.replace(backup, dst)
            except OSError:
                pass
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp = None
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                pass
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return [out / name for name in files]
