"""What a sweep keeps on disk to be resumed, as plain data: the grid (``OUT/tune/entropyflow-sweep.json``)
and one JSON record per trial (``OUT/tune/trials/trial-NNNNNN.json``: its config id, the rows it
reported, whether it finished), rewritten whole as results arrive (write, fsync, rename: a crash
leaves the previous version or the new one, never half of one).

``--resume`` reads only these files, strictly (:mod:`entropyflow.strictjson`) and within size
bounds, and runs again every trial whose record does not say it finished, from its start: no
pickle that Ray Tune left in the folder is ever loaded, and no epoch of a trial is counted twice.
A record that does not belong to the grid, or does not parse, is refused with one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import strictjson
from ..atomic import write_atomic
from ..errors import OptionError, OutputError
from ..text import printable
from ..words import arg, option
from .contract import NONFINITE, checked_rows
from .events import TrialOutcome
from .spec import SweepSpec

SPEC_FILE = "entropyflow-sweep.json"
TRIALS = "trials"
SCHEMA = "entropyflow.sweep-trial/1"
MAX_SPEC_BYTES = 64 << 20  # the grid: placements of a model of thousands of layers are a few MiB
MAX_RECORD_BYTES = 64 << 20  # one trial's rows: 100,000 epochs of a few metrics are ~10 MiB
STATES = ("running", "finished", "failed")
_KEYS = {"schema", "trial", "cell", "seed", "config_id", "state", "error", "rows"}
_PLACED = "placed"  # optional: what entropyflow.sweep.regularizer placed (records before it lack the key)
MAX_PLACED_LAYERS = 100_000


@dataclass(frozen=True)
class Record:
    """One trial as the driver saw it: ``running`` (started, not ended: run again on resume),
    ``finished`` or ``failed`` (with its error)."""

    index: int  # its place in the grid (cells × seeds)
    cell: str
    seed: int
    config_id: str
    state: str = "running"
    rows: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    placed: dict[str, Any] | None = None  # the layers regularizer() chose (and the config of a resolved rule)

    def outcome(self) -> TrialOutcome:
        error = None if self.state == "finished" else self.error or "the trial did not finish"
        return TrialOutcome(self.cell, self.seed, self.rows, error, self.placed)


def record_name(index: int) -> str:
    return f"trial-{index:06d}.json"


def config_id(trial: dict[str, Any]) -> str:
    """What identifies a trial's config (its λ config's creation time left out)."""
    doc = dict(trial)
    if isinstance(doc.get("entropy"), dict):
        doc["entropy"] = {k: v for k, v in doc["entropy"].items() if k != "provenance"}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _spelled(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def record_bytes(record: Record) -> bytes:
    doc = {
        "schema": SCHEMA,
        "trial": record.index,
        "cell": record.cell,
        "seed": record.seed,
        "config_id": record.config_id,
        "state": record.state,
        "error": record.error,
        "rows": [{k: _spelled(v) for k, v in row.items()} for row in record.rows],
        _PLACED: record.placed,
    }
    return (json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8", "backslashreplace")


def write_file(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole: a temporary file beside it (``.NAME.tmp``, which
    :func:`finished` skips), flushed to disk, then renamed."""
    write_atomic(path, data, temp=path.with_name(f".{path.name}.tmp"))


# --- the grid ---------------------------------------------------------------------------------


def begin(storage: Path, train: str, spec: SweepSpec) -> None:
    """A new sweep: ``storage`` must be new or empty; the grid is saved in it."""
    out = printable(storage.parent)
    if (storage / SPEC_FILE).exists() or (storage / SPEC_FILE).is_symlink():
        raise OptionError(
            f"{out} already holds a sweep: pass {arg('resume')} to continue it, or choose another {option('out')}"
        )
    try:
        if storage.is_symlink() or (storage.exists() and (not storage.is_dir() or any(storage.iterdir()))):
            raise OptionError(
                f"{printable(storage)} is in the way: it holds files that are not an entropyflow sweep's; "
                f"choose another {option('out')}"
            )
        storage.mkdir(parents=True, exist_ok=True)
        doc = {"train": train, "fingerprint": spec.fingerprint(), "spec": spec.to_dict()}
        write_file(storage / SPEC_FILE, (json.dumps(doc, indent=1, default=str) + "\n").encode())
    except OSError as exc:
        raise OutputError(f"cannot write {printable(storage)}: {exc.strerror or exc}") from exc


def abandon(storage: Path) -> None:
    """A new sweep that could not start (Ray unreachable, a cluster that wants a token): the grid
    :func:`begin` wrote goes again, and ``storage`` too if that leaves it empty, so that the same
    command can simply be run again. Nothing else is touched: not once a trial has a record."""
    if (storage / TRIALS).exists() or (storage / TRIALS).is_symlink():
        return
    with contextlib.suppress(OSError):
        (storage / SPEC_FILE).unlink()
        storage.rmdir()  # only if empty


def check_grid(storage: Path, train: str, spec: SweepSpec) -> None:
    """``--resume``: the saved grid, read strictly, must be this sweep's (function and grid)."""
    saved = storage / SPEC_FILE
    if saved.is_symlink() or not saved.is_file():
        raise OptionError(f"nothing to resume in {printable(storage.parent)}: no {SPEC_FILE} there")
    try:
        doc = strictjson.read(saved, max_bytes=MAX_SPEC_BYTES)
    except strictjson.JSONError as exc:
        raise OptionError(f"cannot resume: {printable(saved)} is damaged ({printable(exc, 200)})") from exc
    except OSError as exc:
        raise OptionError(f"cannot resume: {printable(saved)} cannot be read ({exc.strerror or exc})") from exc
    if not (isinstance(doc, dict) and isinstance(doc.get("train"), str) and isinstance(doc.get("fingerprint"), str)):
        raise OptionError(f"cannot resume: {printable(saved)} is not an entropyflow sweep's grid")
    if doc["fingerprint"] != spec.fingerprint() or doc["train"] != train:
        raise OptionError(
            f"{option('resume')} needs the same training function and grid as the interrupted sweep "
            f"(it was {printable(doc['train'], 60)} with grid {printable(doc['fingerprint'], 20)})"
        )


# --- the trials ---------------------------------------------------------------------------------


def _refuse(path: Path | str, why: str) -> OptionError:
    return OptionError(f"cannot resume: {printable(path)} {why}")


def _read(path: Path, index: int, trial: dict[str, Any], epochs: int) -> Record:
    again = "; remove it to run that trial again"
    try:
        doc = strictjson.read(path, max_bytes=MAX_RECORD_BYTES)
    except strictjson.JSONError as exc:
        raise _refuse(path, f"is damaged ({printable(exc, 160)}){again}") from exc
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(doc, dict) or set(doc) - {_PLACED} != _KEYS or doc["schema"] != SCHEMA:
        raise _refuse(path, f"is not an entropyflow trial record{again}")
    if (doc["trial"], doc["cell"], doc["seed"], doc["config_id"]) != (
        index,
        trial["cell"],
        trial["seed"],
        config_id(trial),
    ):
        raise _refuse(path, f"belongs to another trial or grid{again}")
    if doc["state"] not in STATES or not (doc["error"] is None or isinstance(doc["error"], str)):
        raise _refuse(path, f"has an unknown state or error{again}")
    rows, problem = checked_rows(doc["rows"] if isinstance(doc["rows"], list) else [None], epochs)
    if problem is not None:
        raise _refuse(path, f"has a bad row ({problem}){again}")
    placed = doc.get(_PLACED)
    if placed is not None and not valid_placed(placed):
        raise _refuse(path, f"has a bad placement{again}")
    rec = Record(index, trial["cell"], trial["seed"], doc["config_id"], doc["state"], tuple(rows), doc["error"])
    return replace(rec, placed=placed)


def valid_placed(placed: Any) -> bool:
    """``{"layers": [names], "config": a λ config as a dict, or None}`` as a trial sends it."""
    if not isinstance(placed, dict) or set(placed) != {"layers", "config"}:
        return False
    layers = placed["layers"]
    if not isinstance(layers, list) or len(layers) > MAX_PLACED_LAYERS or not all(isinstance(n, str) for n in layers):
        return False
    return placed["config"] is None or isinstance(placed["config"], dict)


def finished(storage: Path, trials: Sequence[dict[str, Any]], epochs: int) -> dict[int, Record]:
    """``--resume``: the trials of the grid whose record says they finished (by index). Anything
    else in the records folder is refused; a temporary file of an interrupted write is skipped."""
    folder = storage / TRIALS
    if not folder.exists() and not folder.is_symlink():
        return {}
    if folder.is_symlink() or not folder.is_dir():
        raise _refuse(folder, "is not the folder of trial records entropyflow writes")
    expected = {record_name(i): i for i in range(len(trials))}
    out: dict[int, Record] = {}
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= 2 * len(trials) + 16:
                    raise _refuse(folder, f"holds more files than the sweep has trials ({len(trials)})")
                name = entry.name
                if name.startswith(".") and name.endswith(".tmp") and name[1:-4] in expected:
                    continue  # a write that a crash interrupted: ours, replaced when the trial runs again
                if name not in expected or entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    why = f"is not a trial record of this sweep: remove it, or use another {option('out')}"
                    raise _refuse(Path(entry.path), why)
                index = expected[name]
                record = _read(Path(entry.path), index, trials[index], epochs)
                if record.state == "finished":
                    out[index] = record
    except OSError as exc:
        raise _refuse(folder, f"cannot be read ({exc.strerror or exc})") from exc
    return out


class Recorder:
    """The driver's view of the trials it launches, each written to its record as it changes.
    Every batch of rows is checked against the contract (:func:`.contract.checked_rows`): the
    first bad row fails the trial with its reason, and nothing after it is kept."""

    def __init__(self, storage: Path, trials: Sequence[dict[str, Any]], epochs: int):
        self.folder = storage / TRIALS
        self.epochs = epochs
        self.ids = {(t["cell"], t["seed"]): (i, config_id(t)) for i, t in enumerate(trials)}
        self.records: dict[tuple[str, int], Record] = {}
        self.error: OSError | None = None

    def _save(self, key: tuple[str, int], record: Record) -> None:
        self.records[key] = record
        if self.error is not None:
            return
        try:
            self.folder.mkdir(exist_ok=True)
            write_file(self.folder / record_name(record.index), record_bytes(record))
        except OSError as exc:
            self.error = exc  # raised by check() once Tune has returned

    def start(self, cell: str, seed: int) -> None:
        if (cell, seed) in self.ids:
            index, cid = self.ids[(cell, seed)]
            self._save((cell, seed), Record(index, cell, seed, cid))  # a run again starts from nothing

    def add(self, cell: str, seed: int, batch: Sequence[Any], done: bool = False) -> dict[str, Any] | None:
        """A batch of rows from the trial (``done``: its last, sent when the training function
        returned); its last good row (for the live table)."""
        record = self.records.get((cell, seed))
        if record is None or record.state != "running":
            return None
        previous = record.rows[-1]["epoch"] if record.rows else None
        rows, problem = checked_rows(batch, self.epochs, previous)
        state, error = ("finished" if done else "running"), None
        if problem is not None:
            state, error = "failed", f"rejected: {problem}"
        self._save((cell, seed), replace(record, rows=record.rows + tuple(rows), state=state, error=error))
        return rows[-1] if rows else None

    def place(self, cell: str, seed: int, placed: Any) -> None:
        """What the trial's regularizer placed (ignored unless it has the shape a trial sends)."""
        record = self.records.get((cell, seed))
        if record is not None and record.state == "running" and valid_placed(placed):
            self._save((cell, seed), replace(record, placed=placed))

    def end(self, cell: str, seed: int, error: str | None = None) -> None:
        """The trial failed (``error``) or Tune let it go: without its last result (``done``) it
        stays ``running``, to be run again by ``--resume``."""
        record = self.records.get((cell, seed))
        if record is not None and record.state == "running" and error is not None:
            self._save((cell, seed), replace(record, state="failed", error=error))

    def outcomes(self, trials: Sequence[dict[str, Any]]) -> list[TrialOutcome]:
        if self.error is not None:
            raise OutputError(
                f"cannot write the trial records in {printable(self.folder)}: {self.error.strerror or self.error}"
            )
        out = []
        for t in trials:
            index, cid = self.ids[(t["cell"], t["seed"])]
            record = self.records.get((t["cell"], t["seed"]), Record(index, t["cell"], t["seed"], cid))
            out.append(record.outcome())
        return out


__all__ = ["NONFINITE", "Record", "Recorder", "abandon", "begin", "check_grid", "finished", "SPEC_FILE"]
