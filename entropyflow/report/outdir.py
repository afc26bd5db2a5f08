"""Write a report folder as a whole: all of the new files, or none of them, and never a file the
tool did not write.

The protocol (docs/output.md, "How a report is written"):

1. Every file is rendered in memory first, then written into a staging folder inside the target
   (``OUT/.entropyflow-new-*``).
2. Under an exclusive lock on ``OUT`` (concurrent runs commit one after the other), a journal
   names the staging and backup folders, then each file the report replaces is moved into the
   backup folder and the new file renamed into place; files of the previous report that the new
   one does not have (``entropy.png`` after a run with ``--plot-format svg``) move to the backup
   too. The manifest ``OUT/.entropyflow-manifest.json`` then records the new set, and only after
   that are the journal and the backups removed.
3. SIGINT/SIGTERM/SIGHUP arriving during step 2 are held until it is complete (it takes
   milliseconds), so an interrupted run leaves either the previous report or the new one. If the
   process is killed outright (SIGKILL, power loss), the next run finds the journal and restores
   the previous report before doing anything else.

Ownership: the tool replaces or removes only files its manifest lists (or, for folders written
before manifests existed, files recognisable as an entropyflow report). Anything else in the
way, a folder named ``analysis.json`` or a user's own ``layers.csv``, is refused with a sentence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import OutputError, one_line
from ..text import printable

MANIFEST = ".entropyflow-manifest.json"
JOURNAL = ".entropyflow-journal.json"
STAGING_PREFIX = ".entropyflow-new-"
BACKUP_PREFIX = ".entropyflow-old-"
_TOOL = "entropyflow report folder"


def _err(out: Path, why: str) -> OutputError:
    return OutputError(f"cannot write the report to {printable(out)}: {why}")


def _strerror(exc: OSError) -> str:
    return exc.strerror or one_line(exc, 120)


def check_writable(out: str | Path) -> Path:
    """Fail fast (before any analysis) when ``out`` cannot become a writable folder."""
    if str(out).strip() == "":
        raise OutputError("the output folder name is empty (give a folder, e.g. -o entropyflow-report)")
    out = Path(out).expanduser()
    try:
        if out.exists() and not out.is_dir():
            raise _err(out, "it exists and is not a folder")
        probe = out
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise _err(out, f"{printable(probe)} is a file, not a folder")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise _err(out, f"{printable(probe)} is not writable")
        _check_name_lengths(out)
    except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES while probing
        raise _err(out, _strerror(exc)) from exc
    return out


def _check_name_lengths(out: Path) -> None:
    limit = 255
    with contextlib.suppress(OSError, AttributeError):
        probe = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
        limit = os.pathconf(probe, "PC_NAME_MAX")
    longest = max((len(os.fsencode(part)) for part in out.parts), default=0)
    if longest + len(STAGING_PREFIX) + 16 > limit:  # the staging folder's name must fit beside it
        raise _err(out, f"a folder name is too long ({longest} bytes; the limit here is {limit})")


# --- ownership ------------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(out: Path) -> dict[str, str]:
    """name → sha256 of the files the previous run wrote (empty when there is no manifest)."""
    f = out / MANIFEST
    if not f.is_file() or f.is_symlink():
        return {}
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
        files = doc["files"]
        if doc.get("tool") != _TOOL or not isinstance(files, dict):
            raise ValueError
        return {str(k): str(v) for k, v in files.items() if _plain_name(str(k))}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return {}


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")


_LEGACY_SIGNATURES = {
    ".json": (b'"schema": "entropyflow.analysis/',),
    ".csv": (b"index,name,kind,module_type,", b"layer_index,layer_name,kind,filter,"),
    ".html": (b"<title>entropyflow:",),
}
_LEGACY_FIGURES = (".png", ".svg", ".pdf")


def _legacy_owned(out: Path, names: list[str]) -> set[str]:
    """Files of a report written before manifests existed, recognised by their content; figures
    only alongside a recognised file (an image alone proves nothing)."""
    owned = set()
    for name in names:
        f = out / name
        sig = _LEGACY_SIGNATURES.get(f.suffix)
        if sig and f.is_file() and not f.is_symlink():
            with contextlib.suppress(OSError), open(f, "rb") as fh:
                head = fh.read(4096)
                if any(s in head for s in sig):
                    owned.add(name)
    if owned:
        owned |= {
            n for n in names if Path(n).suffix in _LEGACY_FIGURES and (out / n).is_file() and not (out / n).is_symlink()
        }
    return owned


def _report_like(name: str) -> bool:
    stem = name.split(".", 1)[0]
    return stem in (
        "layers",
        "filters",
        "analysis",
        "entropy",
        "profile",
        "report",
        "compare",
        "compare-profile",
    ) or name.startswith("compare-")


# --- signals --------------------------------------------------------------------------------------


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them (main thread only:
    Python runs signal handlers there, so other threads are never interrupted mid-block)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, lambda s, _f: received.append(s))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


# --- locking --------------------------------------------------------------------------------------


def _flock(fd: int, blocking: bool = True) -> bool:
    if fcntl is None:  # not POSIX: no locks (documented)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder itself (POSIX flock): concurrent runs commit one at a time."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        _flock(fd)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A staging folder inside ``out``, locked for as long as this run is alive (so that a later
    run can tell the staging folder of a killed run, which it removes, from a running one's)."""
    path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    fd = os.open(path, os.O_RDONLY)
    try:
        _flock(fd)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


# --- the commit -----------------------------------------------------------------------------------


def _recover(out: Path) -> None:
    """Called under the folder lock. Undo a commit that was killed half-way (its journal is still
    there) by restoring the backups, and remove what killed runs left behind."""
    j = out / JOURNAL
    if j.is_file():
        try:
            doc = json.loads(j.read_text(encoding="utf-8"))
            backup = out / str(doc["backup"])
            placed, moved = [str(n) for n in doc["placed"]], {str(n) for n in doc["moved"]}
            if not backup.name.startswith(BACKUP_PREFIX) or not all(map(_journal_name, [*placed, *moved])):
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise _err(
                out, f"{JOURNAL} from an interrupted run is unreadable: remove it after checking the folder"
            ) from exc
        for name in placed:  # a new file with no predecessor: remove it
            if name not in moved and (out / name).is_file() and not (out / name).is_symlink():
                (out / name).unlink()
        for name in moved:  # a predecessor moved aside: put it back (over the new file, if placed)
            if (backup / name).is_file():
                os.replace(backup / name, out / name)
        j.unlink()
    for p in out.glob(BACKUP_PREFIX + "*"):  # without a journal, backups are of completed commits
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(STAGING_PREFIX + "*"):
        if p.is_dir() and not p.is_symlink():
            fd = os.open(p, os.O_RDONLY)
            try:
                if _flock(fd, blocking=False):  # nobody holds it: its run is gone
                    shutil.rmtree(p, ignore_errors=True)
            finally:
                os.close(fd)
    with contextlib.suppress(OSError):
        (out / (JOURNAL + ".tmp")).unlink()


def _journal_name(name: str) -> bool:
    return name == MANIFEST or _plain_name(name)


def _plan(out: Path, names: list[str]) -> list[str]:
    """The stale files of the previous report (its files the new one does not have); refuses
    anything in the way that the tool did not write."""
    owned = _read_manifest(out)
    if not owned and out.is_dir():
        legacy = _legacy_owned(out, [p.name for p in out.iterdir() if _report_like(p.name)])
        owned = {n: _sha(out / n) for n in legacy}
    for name in [*names, MANIFEST]:
        dst = out / name
        if dst.is_symlink() or (dst.exists() and not dst.is_file()):
            kind = "a symbolic link" if dst.is_symlink() else "a folder"
            raise _err(
                out,
                f"{printable(name)} exists there as {kind}, which entropyflow did not write and never "
                "deletes: move it away or choose another --out",
            )
        if name != MANIFEST and dst.exists() and name not in owned:
            raise _err(
                out,
                f"{printable(name)} exists there and was not written by entropyflow (no record of it in "
                f"{MANIFEST}): move it away or choose another --out",
            )
    stale = []
    for name, sha in owned.items():
        f = out / name
        if name in names or not f.is_file() or f.is_symlink():
            continue
        with contextlib.suppress(OSError):
            if _sha(f) == sha:  # a file the user has changed since is left alone
                stale.append(name)
    return stale


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def manifest_bytes(files: Mapping[str, bytes]) -> bytes:
    doc = {"tool": _TOOL, "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def write_atomically(out: str | Path, files: Mapping[str, bytes]) -> list[Path]:
    """Replace the report in ``out`` by ``files`` (name → bytes): all of them or none."""
    out = check_writable(out)
    names = list(files)
    if not all(_plain_name(n) for n in names):
        raise ValueError(f"report file names must be plain names: {names}")
    created = [] if out.exists() else [p for p in [out, *out.parents] if not p.exists()]
    committed = False
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _staging(out) as staging:
            for name, data in files.items():
                (staging / name).write_bytes(data)
            (staging / MANIFEST).write_bytes(manifest_bytes(files))
            with _locked(out):
                _recover(out)
                stale = _plan(out, names)
                _commit(out, staging, [*names, MANIFEST], stale)
                committed = True
    except OSError as exc:
        raise _err(out, _strerror(exc)) from exc
    finally:
        if not committed:
            for p in created:  # folders this call created, innermost first, if still empty
                with contextlib.suppress(OSError):
                    p.rmdir()
    return [out / name for name in names]


def _commit(out: Path, staging: Path, placed: list[str], stale: list[str]) -> None:
    """Move the previous files aside and the new ones in (the manifest last), signals held."""
    with deferred_signals():
        backup = Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX, dir=out))
        moved = [n for n in dict.fromkeys([*placed, *stale]) if (out / n).exists()]
        try:
            _write_json(out / JOURNAL, {"backup": backup.name, "placed": placed, "moved": moved})
            for name in moved:
                os.replace(out / name, backup / name)
            for name in placed:
                os.replace(staging / name, out / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                _recover(out)  # put the previous report back now
            shutil.rmtree(backup, ignore_errors=True)
            raise
        (out / JOURNAL).unlink()
        shutil.rmtree(backup, ignore_errors=True)


__all__ = ["check_writable", "write_atomically", "deferred_signals", "MANIFEST"]
