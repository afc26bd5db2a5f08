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

Ownership (whatever a folder's metadata says): the manifest records which command wrote the
folder and the sha256 of each file; a run replaces or removes only files of its own command's
exact names whose content still has that hash. Another command's report, a user's
file, an edited report file, a link or a folder in the way is refused with a sentence, checked by
:func:`preflight` before any work and again at the commit. Staging and backup folders are
recognised by a marker file naming them, and emptied by name, never recursively.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
import threading

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .. import strictjson
from ..atomic import write_atomic
from ..errors import OutputError, one_line
from ..text import printable
from ..vocab import PLOT_FORMATS
from ..words import cli, option

MANIFEST = ".entropyflow-manifest.json"
JOURNAL = ".entropyflow-journal.json"
STAGING_PREFIX = ".entropyflow-new-"
BACKUP_PREFIX = ".entropyflow-old-"
MARKER = ".entropyflow-folder"  # inside a staging or backup folder: its content names the folder
_TOOL = "entropyflow report folder"
MAX_METADATA_BYTES = 4 << 20  # a manifest or journal (a thousand seeds' files are ~100 KiB)


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

# The exact names each command writes: a manifest (or a journal) is believed only for these.
_FIG = "(?:" + "|".join(PLOT_FORMATS) + ")"
_NAMES = {
    "analyze": re.compile(
        rf"(?:layers|filters|seeds)\.csv|analysis\.json|report\.html|compare(?:-\d{{1,4}})?\.analysis\.json"
        rf"|(?:entropy|profile)\.{_FIG}"
    ),
    "compare": re.compile(rf"compare(?:-profile)?\.{_FIG}"),
    "track": re.compile(rf"(?:trajectory|checkpoints)\.csv|trajectory(?:-layers)?\.{_FIG}"),
    "sweep": re.compile(rf"(?:trials|summary)\.csv|summary\.json|best\.yaml|(?:learning_curves|outcomes)\.{_FIG}"),
}
COMMANDS = tuple(_NAMES)
_SHA = re.compile(r"[0-9a-f]{64}")


def writes(command: str, name: str) -> bool:
    """Whether ``command`` writes a file called ``name`` (the exact names of this version)."""
    return _NAMES[command].fullmatch(name) is not None


def command_of(names: Iterable[str]) -> str:
    """The command whose report files ``names`` are (the sets do not overlap)."""
    names = list(names)
    for command in COMMANDS:
        if names and all(writes(command, n) for n in names):
            return command
    raise ValueError(f"not the files of one entropyflow command: {sorted(names)[:5]}")


def _ours_name(name: str) -> bool:
    return name == MANIFEST or any(writes(c, name) for c in COMMANDS)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _matches(path: Path, sha: str | None) -> bool:
    """``path`` is a regular file (not a link) whose content is the one recorded as ``sha``."""
    if sha is None or path.is_symlink() or not path.is_file():
        return False
    try:
        return _sha(path) == sha
    except OSError:
        return False


def _read_manifest(out: Path) -> tuple[str, dict[str, str]] | None:
    """The command that wrote the folder and name → sha256 of its files (None without a readable
    manifest). Only names that command writes are believed."""
    f = out / MANIFEST
    if not f.is_file() or f.is_symlink():
        return None
    try:
        doc = strictjson.read(f, max_bytes=MAX_METADATA_BYTES)
        files = doc["files"]
        if doc.get("tool") != _TOOL or not isinstance(files, dict):
            raise ValueError
        command = doc.get("command")
        if command not in COMMANDS:
            raise ValueError
        return command, {
            str(k): v for k, v in files.items() if writes(command, str(k)) and isinstance(v, str) and _SHA.fullmatch(v)
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _head(f: Path, n: int = 4096) -> bytes:
    if f.is_symlink() or not f.is_file():
        return b""
    try:
        with open(f, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _previous(out: Path) -> tuple[str | None, dict[str, str]]:
    """Who wrote the folder's report, and name → sha256 of what it wrote (nobody, nothing: no manifest)."""
    return _read_manifest(out) or (None, {})


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")


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


def _marker_text(folder: Path) -> bytes:
    return f"{_TOOL}: {folder.name}\n".encode()


def _new_folder(out: Path, prefix: str) -> Path:
    """A staging or backup folder, marked as entropyflow's by a file naming it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=out))
    (path / MARKER).write_bytes(_marker_text(path))
    return path


def _is_ours(folder: Path, prefix: str) -> bool:
    """A folder entropyflow made: the prefix, a real folder, and the marker naming it inside."""
    if not folder.name.startswith(prefix) or folder.is_symlink() or not folder.is_dir():
        return False
    return _head(folder / MARKER, 1024) == _marker_text(folder)


def _remove_ours(folder: Path) -> None:
    """Remove what entropyflow put in one of its folders (report files by their names, never
    recursively), then the folder if nothing else is left in it."""
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            if p.name != MARKER and _ours_name(p.name) and (p.is_symlink() or p.is_file()):
                p.unlink()
        if [p.name for p in folder.iterdir()] == [MARKER]:
            (folder / MARKER).unlink()
            folder.rmdir()


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A staging folder inside ``out``, locked for as long as this run is alive (so that a later
    run can tell the staging folder of a killed run, which it removes, from a running one's)."""
    path = _new_folder(out, STAGING_PREFIX)
    fd = os.open(path, os.O_RDONLY)
    try:
        _flock(fd)
        yield path
    finally:
        _remove_ours(path)
        os.close(fd)


# --- the commit -----------------------------------------------------------------------------------


def _hashes(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _ours_name(k) and isinstance(v, str) and _SHA.fullmatch(v) for k, v in value.items()
    ):
        raise ValueError
    return value


def _recover(out: Path) -> None:
    """Called under the folder lock. Undo a commit that was killed half-way (its journal is still
    there) by restoring the backups, and remove what killed runs left behind. Whatever the journal
    says, only report names are touched, and only files whose content is what it records."""
    j = out / JOURNAL
    if j.is_file() and not j.is_symlink():
        try:
            doc = strictjson.read(j, max_bytes=MAX_METADATA_BYTES)
            backup = out / str(doc["backup"])
            placed, moved = _hashes(doc["placed"]), _hashes(doc["moved"])
            if doc.get("tool") != _TOOL or not _plain_name(backup.name[1:]) or backup.parent != out:
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _err(
                out, f"{JOURNAL} from an interrupted run is unreadable: remove it after checking the folder"
            ) from exc
        for name, sha in placed.items():  # a new file with no predecessor: remove it
            if name not in moved and _matches(out / name, sha):
                (out / name).unlink()
        if _is_ours(backup, BACKUP_PREFIX):
            for name, sha in moved.items():  # a predecessor moved aside: put it back (over the new file, if placed)
                there = out / name
                if _matches(backup / name, sha) and (not there.exists() or _matches(there, placed.get(name))):
                    os.replace(backup / name, there)
        j.unlink()
    for p in out.iterdir():
        if _is_ours(p, BACKUP_PREFIX):  # without a journal, backups are of completed commits
            _remove_ours(p)
        elif _is_ours(p, STAGING_PREFIX):
            fd = os.open(p, os.O_RDONLY)
            try:
                if _flock(fd, blocking=False):  # nobody holds it: its run is gone
                    _remove_ours(p)
            finally:
                os.close(fd)
    tmp = out / (JOURNAL + ".tmp")
    if tmp.is_file() and not tmp.is_symlink():
        with contextlib.suppress(OSError):
            tmp.unlink()


def _refuse(out: Path, name: str, why: str) -> OutputError:
    return _err(out, f"{printable(name)} {why}: move it away or {_another_out()}")


def _another_out() -> str:
    """``choose another --out`` on the command line, ``choose another out folder`` to Python."""
    return f"choose another {option('out')}" + ("" if cli() else " folder")


def _plan(out: Path, command: str, names: list[str]) -> list[str]:
    """The stale files of the previous report (its files the new one does not have, unchanged);
    refuses another command's report, and anything in the way that is not entropyflow's own
    unchanged file."""
    previous, owned = _previous(out)
    if previous is not None and previous != command and any((out / n).exists() for n in owned):
        raise _err(
            out,
            f"it holds the report of `entropyflow {previous}`, which `entropyflow {command}` never replaces or "
            f"deletes: {_another_out()}",
        )
    for name in [*names, MANIFEST]:
        dst = out / name
        if dst.is_symlink() or (dst.exists() and not dst.is_file()):
            kind = "a symbolic link" if dst.is_symlink() else "a folder"
            raise _refuse(out, name, f"exists there as {kind}, which entropyflow did not write and never deletes")
        if name == MANIFEST or not dst.exists():
            continue
        if name not in owned:
            raise _refuse(out, name, f"exists there and was not written by entropyflow (no record of it in {MANIFEST})")
        if not _matches(dst, owned[name]):
            raise _refuse(out, name, "was edited since entropyflow wrote it (an edited file is never replaced)")
    return [name for name, sha in owned.items() if name not in names and _matches(out / name, sha)]


def preflight(out: str | Path, command: str, names: Iterable[str]) -> Path:
    """May ``command`` write the files ``names`` into ``out``? Checked before any work (and again
    when the files are written): the folder can be written, holds no other command's report, and
    no file in the way that entropyflow did not write or that was edited since. Finishes an
    interrupted commit first, as any run on the folder does."""
    folder = check_writable(out)
    names = list(names)
    if not all(writes(command, n) for n in names):
        raise ValueError(f"{command} does not write {names}")
    if folder.is_dir():
        try:
            with _locked(folder):
                _recover(folder)
                _plan(folder, command, names)
        except OSError as exc:
            raise _err(folder, _strerror(exc)) from exc
    return folder


def _write_json(path: Path, doc: dict) -> None:
    """The journal, whole (a leftover ``JOURNAL.tmp`` of a killed run is removed by :func:`_recover`)."""
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
    write_atomic(path, data, temp=path.with_name(path.name + ".tmp"))


def manifest_bytes(files: Mapping[str, bytes], command: str | None = None) -> bytes:
    doc = {
        "tool": _TOOL,
        "command": command or command_of(files),
        "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def write_atomically(out: str | Path, files: Mapping[str, bytes], command: str | None = None) -> list[Path]:
    """Replace the report in ``out`` by ``files`` (name → bytes): all of them or none. ``command``
    (``analyze``, ``compare``, ``track``, ``sweep``; default: the one that writes these names) is
    recorded in the manifest: a folder holds one command's report."""
    out = check_writable(out)
    names = list(files)
    command = command or command_of(names)
    if not all(_plain_name(n) and writes(command, n) for n in names):
        raise ValueError(f"report file names must be plain names that {command} writes: {names}")
    created = [] if out.exists() else [p for p in [out, *out.parents] if not p.exists()]
    committed = False
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _staging(out) as staging:
            manifest = manifest_bytes(files, command)
            for name, data in [*files.items(), (MANIFEST, manifest)]:
                (staging / name).write_bytes(data)
            placed = {n: hashlib.sha256(d).hexdigest() for n, d in [*files.items(), (MANIFEST, manifest)]}
            with _locked(out):
                _recover(out)
                stale = _plan(out, command, names)
                _commit(out, staging, placed, stale)
                committed = True
    except OSError as exc:
        raise _err(out, _strerror(exc)) from exc
    finally:
        if not committed:
            for p in created:  # folders this call created, innermost first, if still empty
                with contextlib.suppress(OSError):
                    p.rmdir()
    return [out / name for name in names]


def _commit(out: Path, staging: Path, placed: dict[str, str], stale: list[str]) -> None:
    """Move the previous files aside and the new ones in (the manifest last), signals held. The
    journal records the content of each file it moves, so that recovery touches nothing else."""
    with deferred_signals():
        backup = _new_folder(out, BACKUP_PREFIX)
        try:
            moved = {n: _sha(out / n) for n in dict.fromkeys([*placed, *stale]) if (out / n).exists()}
            _write_json(out / JOURNAL, {"tool": _TOOL, "backup": backup.name, "placed": placed, "moved": moved})
            for name in moved:
                os.replace(out / name, backup / name)
            for name in placed:
                os.replace(staging / name, out / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                _recover(out)  # put the previous report back now
            _remove_ours(backup)
            raise
        (out / JOURNAL).unlink()
        _remove_ours(backup)


__all__ = ["check_writable", "preflight", "write_atomically", "deferred_signals", "command_of", "writes", "MANIFEST"]
