"""Trajectories over training: one analysis per checkpoint, the layer statistic as a matrix
(layers × checkpoints) against the random-init level, for ``entropyflow track``.

Checkpoints come from files, folders (their checkpoint files; a Hugging Face Trainer's output_dir:
its ``checkpoint-N`` folders) or globs. Without ``--labels`` they are ordered and labelled by their
global step when every one has a step (``trainer_state.json``'s ``global_step`` or ``checkpoint-N``;
Lightning's ``epoch=E-step=S.ckpt``), else by epoch, else in natural order (``epoch_2`` before
``epoch_10``) by file stem. The newest readable ``trainer_state.json`` supplies the logged losses
(untrusted: bounded, strict JSON, non-numbers dropped with a note). Hugging Face folders with one
config.json share one build and walk of the architecture (:class:`SharedArchitecture`). Each
analysis is cached in ``OUT/.entropyflow-cache/`` under the sha256 of every file the checkpoint
reads (a shard index and its shards) and the options that change the numbers, so running ``track``
again analyses only new or changed checkpoints. An entry is used only when its record (written
after it) names the same sources and options and the entry's own sha256; anything else is
recomputed. A cache entry only ever supplies numbers: the architecture, seed and input size of the
random-init level come from the first checkpoint itself. The random-init level of each layer is
the mean over N seeds of the architecture (the model's own seeds excluded as in ``--compare random``).

A checkpoint that cannot be analysed (a corrupt file, one that does not load) is left out of the
trajectory and listed in :attr:`TrackResult.failed` (its name and one-line error); the others
complete, and the command exits 3. With :class:`ParallelOptions` (``--workers N``: a local Ray of
its own, loopback only; ``--address``: a cluster) each checkpoint that the cache does not hold is
one Ray task, and so is each random-init seed. Workers return the analysis as ``analysis.json``
bytes and never write: this process checks the cache, writes its entries as results arrive (an
interrupted run keeps what finished) and builds the same trajectory, byte for byte, as a serial
run. The cache keys are still hashed here (up to :data:`HASH_AHEAD` files at once, ahead of the
tasks): on many nodes that hashing is what bounds a run (docs/benchmarks.md). Workers read the
checkpoints at the paths given here, so on a cluster they must see them under the same paths (a
shared file system); they need not see ``--out``.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import hashlib
import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import strictjson
from ._version import __version__
from .analysis import AnalyzeOptions, Reuse, analyze, analyze_reusing
from .atomic import write_atomic
from .compare import MAX_SEEDS, reference_seeds
from .errors import (
    EntropyflowError,
    InputNotFoundError,
    Interrupted,
    MissingExtraError,
    OptionError,
    OutputError,
)
from .estimate.results import AnalysisResult
from .estimate.run import ProgressFn
from .estimate.seeds import STATISTICS
from .estimate.trajectory import LossSeries, Trajectory, layer_matrix
from .extras import install_hint, missing
from .load.hashing import sha256_async, sha256_file
from .load.model import load_model
from .load.paths import MODEL_WEIGHT_NAMES, resolve_checkpoint
from .report.jsonio import MAX_ANALYSIS_BYTES, SCHEMA, analysis_json, from_dict
from .text import printable
from .words import option

__all__ = [
    "CheckpointFailure",
    "ParallelOptions",
    "SharedArchitecture",
    "TrackOptions",
    "TrackResult",
    "Trajectory",
    "checkpoint_paths",
    "natural_key",
    "track",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".tar")
CACHE = ".entropyflow-cache"
CACHE_SCHEMA = "entropyflow.track-cache/2"
MAX_CHECKPOINTS = 500
MAX_LABEL_PATTERN = 500  # characters of --labels
LABEL_SECONDS = 5.0  # the most the --labels matches of one run may take


@dataclass(frozen=True)
class TrackOptions:
    statistic: str = "median"  # the layer statistic tracked: mean, median or total
    labels: str | None = None  # a regex: its first group (or whole match) in each file name is the label
    seeds: int = 5  # random-init seeds for the level (0: none; colours relative to the first checkpoint)

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise OptionError(
                f"{option('stat')} must be one of {', '.join(STATISTICS)}, not {printable(self.statistic, 40)!r}"
            )
        if not 0 <= self.seeds <= MAX_SEEDS:
            raise OptionError(f"{option('seeds')} must be from 0 to {MAX_SEEDS} (each seed is one full analysis)")
        if self.labels is not None:
            if len(self.labels) > MAX_LABEL_PATTERN:
                raise OptionError(f"{option('labels')} is longer than {MAX_LABEL_PATTERN} characters")
            try:
                re.compile(self.labels)
            except (re.error, RecursionError, OverflowError) as exc:
                raise OptionError(f"{option('labels')} is not a regular expression: {printable(exc, 120)}") from exc


MAX_WORKERS = 1024


@dataclass(frozen=True)
class ParallelOptions:
    """Where ``track`` analyses its checkpoints: here, one after another (the default), or as Ray
    tasks (the ``[sweep]`` extra): ``workers`` worker processes of a local Ray started and stopped
    for the run (loopback only), or the cluster at ``address`` (``ray://HEAD:10001``, ``HOST:PORT``,
    ``auto``; ``workers`` then caps the tasks running at once). ``working_dir`` is shipped to the
    workers (Ray's runtime_env) where entropyflow is not installed on the cluster."""

    workers: int | None = None
    address: str | None = None
    working_dir: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            raise OptionError(f"{option('workers')} must be from 1 to {MAX_WORKERS}")
        if self.address is not None and not self.address.strip():
            raise OptionError(f"{option('address')} is empty: give ray://HEAD:10001, HOST:PORT or auto")
        if self.working_dir is not None and self.address is None:
            raise OptionError(
                f"{option('working-dir')} ships files to a cluster's workers: give it with {option('address')}"
            )

    @property
    def on_ray(self) -> bool:
        return self.workers is not None or self.address is not None


@dataclass(frozen=True)
class CheckpointFailure:
    """A checkpoint left out of the trajectory: why (one line), and the exit code its error has."""

    label: str
    path: Path
    error: str
    exit_code: int


@dataclass(frozen=True, eq=False)
class TrackResult(Trajectory):
    """The :class:`Trajectory` of the checkpoints that were analysed, and those that failed."""

    failed: tuple[CheckpointFailure, ...] = ()


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically: ``epoch_2`` < ``epoch_10``."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


RUN_FOLDER = re.compile(r"checkpoint-(\d+)")  # a Hugging Face Trainer's checkpoint folder in its output_dir
TRAINER_STATE = "trainer_state.json"
MAX_STATE_BYTES = 32 << 20  # a trainer_state.json larger than this is not read (its loss is left out)
_STEP = re.compile(r"(?:^|[-_])step=(\d{1,20})(?!\d)")  # Lightning's ModelCheckpoint names: epoch=3-step=1200
_EPOCH = re.compile(r"(?:^|[-_])epoch=(\d{1,20})(?!\d)")
_LAST = re.compile(r"last(?:-v\d+)?")  # Lightning's save_last (and its versioned copies)


def _is_checkpoint_folder(p: Path) -> bool:
    """A folder that is one checkpoint: a Trainer's ``checkpoint-N`` or a Hugging Face model folder
    (config.json beside model.safetensors, pytorch_model.bin or their shard index); a folder of
    checkpoint files that also holds some other config.json is not one."""
    if RUN_FOLDER.fullmatch(p.name):
        return True
    weights = (*MODEL_WEIGHT_NAMES, *(f"{name}.index.json" for name in MODEL_WEIGHT_NAMES))
    return (p / "config.json").is_file() and any((p / name).is_file() for name in weights)


def checkpoint_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, checkpoint folders and globs, naturally sorted, once each. A folder holding
    ``checkpoint-N`` folders (a Hugging Face Trainer's output_dir) stands for those folders; a
    ``checkpoint-N`` folder or a model folder (with config.json) is one checkpoint; any other
    folder stands for its checkpoint files (not recursive)."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            run = [d for d in p.iterdir() if RUN_FOLDER.fullmatch(d.name) and d.is_dir()]
            if run:
                found += run
                continue
            if _is_checkpoint_folder(p):
                found.append(p)
                continue
            inside = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES]
            if not inside:
                raise InputNotFoundError(
                    f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) or checkpoint-N folders in {printable(p)}"
                )
            found += inside
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(str(item)):
            matched = [Path(m) for m in glob.glob(str(p))]
            matched = [m for m in matched if m.is_file() or (m.is_dir() and _is_checkpoint_folder(m))]
            if not matched:
                raise InputNotFoundError(f"no files match {printable(item)}")
            found += matched
        else:
            raise InputNotFoundError(f"no such file or folder: {printable(item)}")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    if len(unique) > MAX_CHECKPOINTS:
        raise OptionError(f"{len(unique)} checkpoints is more than {MAX_CHECKPOINTS}; track a subset")
    return sorted(unique, key=lambda f: natural_key(f.name) + natural_key(str(f.parent)))


@dataclass(frozen=True)
class TrainerState:
    """What entropyflow reads from a Hugging Face ``trainer_state.json``: the global step and the
    logged losses (finite numbers at integer steps; anything else is dropped with a note)."""

    global_step: int | None
    loss: tuple[LossSeries, ...]


def _step(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return out


def _int_text(text: str) -> int:
    if len(text.lstrip("-")) > strictjson.MAX_INT_DIGITS:
        raise ValueError("an integer with too many digits")
    return int(text)


def _state_json(text: str) -> Any:
    """Strict JSON, except that NaN and ±Infinity (which the Trainer writes for a diverged loss or
    gradient norm) read as None, to be dropped with the other non-numbers."""
    return json.loads(
        text, object_pairs_hook=_no_duplicates, parse_int=_int_text, parse_constant=lambda _: None
    )  # fmt: skip


def read_trainer_state(path: Path, notes: list[str]) -> TrainerState | None:
    """The global step and losses of a ``trainer_state.json`` (None: there is none, or it is not
    readable, with a note). Untrusted input: bounded in size, strict JSON, wrong types dropped."""
    where = f"{printable(path.parent.name, 60)}/{TRAINER_STATE}"
    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(MAX_STATE_BYTES + 1) if size <= MAX_STATE_BYTES else b""
        if size > MAX_STATE_BYTES or len(raw) > MAX_STATE_BYTES:
            most = f"{MAX_STATE_BYTES >> 20} MiB" if MAX_STATE_BYTES % (1 << 20) == 0 else f"{MAX_STATE_BYTES:,} bytes"
            notes.append(f"{where} is larger than {most}: not read (no step or loss from it)")
            return None
        doc = _state_json(raw.decode("utf-8"))
    except OSError as exc:
        notes.append(f"{where} cannot be read ({printable(exc.strerror or exc, 80)}): no step or loss from it")
        return None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, duplicate keys, nested too deeply
        what = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        notes.append(f"{where} is {what}: no step or loss from it")
        return None
    if not isinstance(doc, dict):
        notes.append(f"{where} is not a JSON object: no step or loss from it")
        return None
    history = doc.get("log_history", [])
    if not isinstance(history, list):
        notes.append(f"{where}: its log_history is not a list: no loss from it")
        history = []
    points: dict[str, dict[int, float]] = {"loss": {}, "eval_loss": {}}
    dropped = 0
    for entry in history:
        if not isinstance(entry, dict):
            dropped += 1
            continue
        step = _step(entry.get("step"))
        for name, series in points.items():
            if name not in entry:
                continue
            value = _finite(entry[name])
            if step is None or value is None:
                dropped += 1
            else:
                series[step] = value  # a step logged twice: the later entry
    if dropped:
        notes.append(
            f"{where}: {dropped} log_history entr{'y' if dropped == 1 else 'ies'} dropped (not finite numbers at "
            "integer steps)"
        )
    loss = tuple(
        LossSeries(name, tuple(sorted(series)), tuple(series[k] for k in sorted(series)))
        for name, series in points.items()
        if series
    )
    step = _step(doc.get("global_step"))
    if "global_step" in doc and step is None:
        notes.append(f"{where}: its global_step is not a non-negative integer (the folder name is used)")
    return TrainerState(step, loss)


@dataclass(frozen=True)
class Position:
    """Where a checkpoint sits in its training run, from its name or its trainer_state.json."""

    step: int | None = None
    epoch: int | None = None
    last: bool = False  # Lightning's last.ckpt: after every numbered checkpoint
    state: TrainerState | None = None


def checkpoint_position(path: Path, notes: list[str]) -> Position:
    """A ``checkpoint-N`` folder: the global step of its trainer_state.json, else N. A Lightning
    file name: ``step=S`` and ``epoch=E`` (``epoch=3-step=1200.ckpt``), ``last.ckpt``."""
    if path.is_dir():
        state = read_trainer_state(path / TRAINER_STATE, notes)
        m = RUN_FOLDER.fullmatch(path.name)
        step = state.global_step if state is not None and state.global_step is not None else None
        return Position(step if step is not None else (int(m.group(1)) if m else None), state=state)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    if _LAST.fullmatch(stem):
        return Position(last=True)
    by_step, by_epoch = _STEP.search(stem), _EPOCH.search(stem)
    return Position(int(by_step.group(1)) if by_step else None, int(by_epoch.group(1)) if by_epoch else None)


def order_checkpoints(paths: Sequence[Path], positions: Sequence[Position]) -> tuple[list[int], list[str] | None, str]:
    """(the column order, the labels or None for file stems, the axis). By step when every
    numbered checkpoint has one, else by epoch when every one has that, else natural order;
    ``last`` goes after the numbered ones."""
    numbered = [k for k, pos in enumerate(positions) if not pos.last]
    for axis in ("step", "epoch"):
        keys = [getattr(pos, axis) for pos in positions]
        if numbered and all(keys[k] is not None for k in numbered):
            order = sorted(
                range(len(paths)), key=lambda k: (positions[k].last, keys[k] or 0, natural_key(paths[k].name))
            )
            return order, ["last" if positions[k].last else str(keys[k]) for k in order], axis
    return list(range(len(paths))), None, "checkpoint"


def run_loss(positions: Sequence[Position], notes: list[str]) -> tuple[LossSeries, ...]:
    """The losses of the newest checkpoint whose trainer_state.json was read (the longest history)."""
    states = [(pos.step or 0, k, pos.state) for k, pos in enumerate(positions) if pos.state is not None]
    if not states:
        return ()
    return max(states, key=lambda t: (t[0], t[1]))[2].loss


# Python's re has no timeout and holds the GIL while it backtracks ('^(a+)+$' against a long name
# takes minutes), so the names are matched in a child interpreter that is killed after
# LABEL_SECONDS; it imports nothing but re and json.
_MATCHER = """
import json, re, sys
job = json.loads(sys.stdin.read())
out = []
for name in job["names"]:
    m = re.search(job["pattern"], name)
    out.append(None if m is None else (m.group(1) if m.groups() else m.group(0)) or "")
sys.stdout.write(json.dumps(out))
"""


def _match_labels(pattern: str, names: list[str]) -> list[str | None]:
    """What ``pattern`` finds in each name (its first group, or the whole match), time-limited."""
    job = json.dumps({"pattern": pattern, "names": names})  # lone surrogates (non-UTF-8 names) as \uXXXX escapes
    shown = printable(pattern, 60)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _MATCHER],
            input=job, capture_output=True, text=True, timeout=LABEL_SECONDS, check=True,
        )  # fmt: skip
        return json.loads(done.stdout)
    except subprocess.TimeoutExpired as exc:
        raise OptionError(
            f"{option('labels')} {shown!r} takes more than {LABEL_SECONDS:g} s on these file names (nested "
            "repetition such as "
            "(a+)+ backtracks without end): simplify the pattern"
        ) from exc
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        raise OptionError(f"{option('labels')} {shown!r} could not be matched against the file names") from exc


def checkpoint_labels(paths: Sequence[Path], pattern: str | None) -> list[str]:
    """The file stem, or what ``pattern`` matches in the file name (its first group if it has one)."""
    if pattern is None:
        out = [p.stem for p in paths]
    else:
        found = _match_labels(pattern, [p.name for p in paths])
        for p, label in zip(paths, found, strict=True):
            if label is None:
                raise OptionError(f"{option('labels')} {printable(pattern, 60)!r} does not match {printable(p.name)}")
        out = [str(label) for label in found]
    _unique_labels(paths, out, f" (adjust {option('labels')})" if pattern else "")
    return out


def _unique_labels(paths: Sequence[Path], labels: Sequence[str], hint: str) -> None:
    twice = [label for label, n in Counter(labels).items() if n > 1]
    if twice:
        files = [p.name for p, label in zip(paths, labels, strict=True) if label == twice[0]]
        raise OptionError(
            f"checkpoint labels must be unique: {printable(twice[0], 40)!r} is the label of "
            f"{', '.join(printable(f) for f in files[:3])}{hint}"
        )


def _options_key(options: AnalyzeOptions) -> str:
    """What changes an analysis besides the file: every option, and the entropyflow version."""
    doc = {f.name: repr(getattr(options, f.name)) for f in fields(options) if f.name not in ("device", "hash_files")}
    doc["entropyflow"] = __version__
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def source_digest(path: Path) -> tuple[str, str]:
    """(the cache key's digest: every file the checkpoint reads, a shard index and its shards;
    the digest an analysis records as its sha256: the weight files). Equal for a single file."""
    resolved = resolve_checkpoint(path)
    weights = sha256_async(resolved.files).future.result()  # the analysis reuses this hash
    if resolved.path in resolved.files:
        return weights, weights
    index = sha256_file(resolved.path)
    return hashlib.sha256(f"index {index}\nfiles {weights}\n".encode()).hexdigest(), weights


def _read_entry(entry: Path, record: Path, digest: str, key: str, weights: str) -> AnalysisResult | None:
    """The cached analysis, if its record names these sources and options and its own sha256,
    and it is what it says; None otherwise (recomputed and rewritten)."""
    try:
        if entry.is_symlink() or record.is_symlink() or not record.is_file():
            return None
        rec = strictjson.read(record, max_bytes=64 << 10)
        if rec != {**rec, "schema": CACHE_SCHEMA, "sources": digest, "options": key}:
            return None
        with entry.open("rb") as f:
            raw = f.read(MAX_ANALYSIS_BYTES + 1)
        if len(raw) > MAX_ANALYSIS_BYTES or hashlib.sha256(raw).hexdigest() != rec.get("analysis_sha256"):
            return None
        doc = strictjson.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            return None
        result = from_dict(doc)
    except (OSError, ValueError, KeyError, TypeError, EntropyflowError):
        return None
    return result if result.model.sha256 in (None, weights) else None


def _lookup(cache: Path, path: Path, key: str) -> tuple[AnalysisResult | None, Path]:
    """(the cached analysis of ``path`` or None, the cache entry that holds or will hold it)."""
    digest, weights = source_digest(path)
    entry = cache / f"{digest}-{key}.analysis.json"
    return _read_entry(entry, _record(entry), digest, key, weights), entry


class SharedArchitecture:
    """The architecture of a run, built and walked once (:class:`~entropyflow.analysis.Reuse`):
    checkpoints that are Hugging Face folders with the same config.json (byte for byte) share the
    first one's skeleton (on meta) and walk; only their tensors are read and matched. The numbers
    and the recorded model are those :func:`analyze` gives for each checkpoint."""

    def __init__(self) -> None:
        self.reuse = Reuse()

    @property
    def builds(self) -> int:
        """How many architectures were built (tests count them)."""
        return self.reuse.architectures.builds

    def analyze(self, path: Path, opts: AnalyzeOptions) -> AnalysisResult:
        return analyze_reusing(str(path), opts, reuse=self.reuse)


def _record(entry: Path) -> Path:
    return entry.with_name(entry.name.replace(".analysis.json", ".record.json"))


def _write_entry(cache: Path, entry: Path, data: bytes) -> None:
    """One cache entry (``analysis.json`` bytes), written as soon as its analysis is done (an
    interrupted or partly failed run keeps what finished), atomically, its record (sources,
    options, the entry's sha256) last."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        digest, key = entry.name.removesuffix(".analysis.json").rsplit("-", 1)
        record = {"schema": CACHE_SCHEMA, "sources": digest, "options": key}
        record["analysis_sha256"] = hashlib.sha256(data).hexdigest()
        for f, content in ((entry, data), (_record(entry), json.dumps(record, sort_keys=True).encode())):
            write_atomic(f, content)
    except OSError as exc:
        raise OutputError(f"cannot write the track cache {printable(cache)}: {exc.strerror or exc}") from exc


def _check_cache(cache: Path) -> None:
    if cache.is_symlink() or (cache.exists() and not cache.is_dir()):
        raise OutputError(
            f"{printable(cache)} is a link or a file, not the track cache entropyflow keeps there: move it away or "
            f"choose another {option('out')}"
        )


def _init_reference(first: Path, result: AnalysisResult, cached: bool, opts: AnalyzeOptions):
    """(architecture, seed, input size) for the random-init level. From a fresh analysis as it is;
    for a cached one, from the checkpoint itself (loaded, not analysed): a cache entry never
    supplies a model spec to build."""
    if not cached:
        return result.model.arch, result.model.seed, result.model.input_size
    loaded = load_model(str(first), replace(opts, hash_files=False).load_options())
    if loaded.integrity is not None:
        loaded.integrity.stop()
    return loaded.arch, loaded.seed, opts.shape or loaded.input_size


def _same_architecture(first: AnalysisResult, other: AnalysisResult, a: Path, b: Path) -> None:
    """Checkpoints of one training run share their layers; anything else is refused."""
    mine = [(layer.name, layer.weight_shape) for layer in first.layers]
    theirs = [(layer.name, layer.weight_shape) for layer in other.layers]
    if mine != theirs:
        differ = next((x for x, y in zip(mine, theirs, strict=False) if x != y), None)
        where = (
            f" (first difference: {printable(differ[0], 60)})" if differ else f" ({len(mine)} vs {len(theirs)} layers)"
        )
        raise OptionError(
            f"track needs checkpoints of one architecture: {printable(b.name)} has other layers than "
            f"{printable(a.name)}{where}"
        )


def _check_layers(result: AnalysisResult, layers: Sequence[str]) -> None:
    names = {layer.name for layer in result.layers}
    for name in layers:
        if name not in names:
            raise OptionError(f"{option('layer')} {printable(name, 80)!r} is not a layer of these checkpoints")


VERSIONED = ("torchvision", "timm", "transformers", "safetensors")  # analyze records them when imported


def _imported() -> tuple[str, ...]:
    """The libraries whose versions :func:`analyze` records only when they are imported, imported here."""
    return tuple(name for name in VERSIONED if name in sys.modules)


RAY_STAGE = "starting Ray"  # the progress step of a Ray started or joined for the run
Done = Callable[[int, "AnalysisResult | None", "bytes | None", "EntropyflowError | None"], None]


def _analyse_task(spec: str, opts: AnalyzeOptions, seed: bool, imported: tuple[str, ...] = ()) -> bytes:
    """What a Ray worker runs: one checkpoint's analysis (or one random-init seed's, ``seed``) as
    ``analysis.json`` bytes. It writes nothing; an :class:`EntropyflowError` reaches the driver
    as the task's error. One torch thread: the task holds one CPU. ``imported``: the libraries the
    driver has imported, imported here too, so that the versions the analysis records (those of
    the libraries imported in its process) are the ones a serial run records."""
    global _worker_shared
    torch.set_num_threads(1)
    for name in imported:
        with contextlib.suppress(Exception):  # noqa: BLE001 - not installed on this node: its version is left out
            importlib.import_module(name)
    if seed:
        return analysis_json(analyze(spec, opts))
    if _worker_shared is None:
        _worker_shared = SharedArchitecture()  # one per worker process: a run's HF folders share their build
    return analysis_json(_worker_shared.analyze(Path(spec), opts))


_worker_shared: SharedArchitecture | None = None


class _Here:
    """Analyses in this process, one at a time, as they are submitted."""

    def __init__(self, shared: SharedArchitecture, done: Done):
        self.shared, self.done = shared, done

    def submit(self, k: int, spec: str, opts: AnalyzeOptions, seed: bool) -> None:
        try:
            result = analyze(spec, opts) if seed else self.shared.analyze(Path(spec), opts)
        except EntropyflowError as exc:
            if seed:
                raise
            self.done(k, None, None, exc)
            return
        self.done(k, result, analysis_json(result) if not seed else None, None)

    def drain(self) -> None:
        pass


class _OnRay:
    """Analyses as Ray tasks (one CPU each), at most ``cap`` at once; each result is handed to
    ``done`` in this process as it arrives. Ray is started (or joined) at the first task, so a run
    that the cache answers whole starts none. On an interruption the Ray session opened here is
    closed: a local Ray is shut down and a cluster (``address``) disconnected, and either way Ray
    ends this job's tasks with it (measured on ``ray start --head``: none left a second later, as a
    Ray Client or as a driver). Only a Ray the caller had initialised, which outlives the call, is
    sent ``ray.cancel`` for the tasks still running. Closing is preferred to cancelling because a
    cancellation that crosses a task's completion trips a check in Ray's core worker that ends this
    process (Ray 2.60, ray-project/ray#54846): once in about ten Ctrl-Cs before this was changed."""

    WAIT_S = 0.5  # ray.wait's timeout: Ctrl-C is noticed within it

    def __init__(self, parallel: ParallelOptions, done: Done, progress: ProgressFn | None = None):
        self.parallel, self.done, self.progress = parallel, done, progress
        self.cap = parallel.workers if parallel.address else None  # a local Ray has exactly `workers` CPUs
        self.stack = contextlib.ExitStack()
        self.ray: Any = None
        self.task: Any = None
        self.started_here = False
        self.pending: dict[Any, tuple[int, bool]] = {}

    def _start(self) -> None:
        # deliberate: Ray is imported only for a parallel run, once the [sweep] extra is known to be there
        import ray

        from . import raycluster

        par = self.parallel
        if self.progress:  # its own step: Ray's start-up (seconds) is not the first checkpoint's analysis
            self.progress(RAY_STAGE, 0, 1)
        self.started_here = self.stack.enter_context(raycluster.session(par.address, par.workers, par.working_dir))
        if self.progress:
            self.progress(RAY_STAGE, 1, 1)
        self.ray = ray
        self.task = ray.remote(num_cpus=1)(_analyse_task)

    def submit(self, k: int, spec: str, opts: AnalyzeOptions, seed: bool) -> None:
        if self.task is None:
            self._start()
        while self.cap is not None and len(self.pending) >= self.cap:
            self._collect()
        self.pending[self.task.remote(spec, opts, seed, _imported())] = (k, seed)

    def drain(self) -> None:
        while self.pending:
            self._collect()

    def close(self, interrupted: bool) -> None:
        try:
            if interrupted and self.ray is not None and not self.started_here:  # closing ends the job's tasks
                for ref in list(self.pending):
                    with contextlib.suppress(Exception):  # noqa: BLE001 - finished or gone already: nothing to cancel
                        self.ray.cancel(ref, force=True)
            self.pending.clear()
        finally:
            self.stack.close()

    def _collect(self) -> None:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=self.WAIT_S)
        for ref in ready:
            k, seed = self.pending.pop(ref)
            try:
                data = self.ray.get(ref)
                if not isinstance(data, bytes):
                    raise EntropyflowError(f"a Ray worker returned {type(data).__name__}, not an analysis")
                result = from_dict(strictjson.loads(data.decode("utf-8")))
            except self.ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                if not isinstance(cause, EntropyflowError) or seed:
                    raise cause from None  # a bug (or a seed's error) stops the run, as it would here
                self.done(k, None, None, cause)
                continue
            except self.ray.exceptions.RayError as exc:  # the worker died (killed, out of memory), the node left
                why = printable(" ".join(str(exc).split())[:300] or type(exc).__name__, 300)
                error = EntropyflowError(f"the Ray worker analysing it ended before it finished: {why}")
                if seed:
                    raise error from exc
                self.done(k, None, None, error)
                continue
            except (ValueError, EntropyflowError) as exc:  # not analysis.json (a different entropyflow on the cluster)
                error = EntropyflowError(f"a Ray worker returned no readable analysis: {printable(exc, 200)}")
                if seed:
                    raise error from exc
                self.done(k, None, None, error)
                continue
            self.done(k, result, data, None)


@contextlib.contextmanager
def _runner(
    parallel: ParallelOptions, shared: SharedArchitecture, done: Done, progress: ProgressFn | None = None
) -> Iterator[_Here | _OnRay]:
    """Where the analyses run: here, or as Ray tasks (Ray started or joined when needed, and left)."""
    if not parallel.on_ray:
        yield _Here(shared, done)
        return
    runner = _OnRay(parallel, done, progress)
    interrupted = True
    try:
        yield runner
        interrupted = False
    finally:
        runner.close(interrupted)


HASH_AHEAD = 8  # checkpoints hashed at once ahead of the one being looked up (a parallel run)


def _prefetch_digest(paths: Sequence[Path], k: int) -> None:
    """Start hashing checkpoint ``k`` on a background thread (:func:`source_digest` then finds the
    task running or done); a checkpoint that cannot be resolved is reported when it is looked up."""
    if k < len(paths):
        with contextlib.suppress(EntropyflowError, OSError):
            sha256_async(resolve_checkpoint(paths[k]).files)


def _interrupted(exc: KeyboardInterrupt, cache: Path) -> Interrupted:
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    if not (cache.is_dir() and any(cache.glob("*.record.json"))):
        return Interrupted(signum, "no checkpoint had finished, so nothing was cached")
    return Interrupted(
        signum, f"the checkpoints analysed so far are cached in {cache}; the same command again analyses only the rest"
    )


def track(
    inputs: Sequence[str | Path],
    out: str | Path,
    options: AnalyzeOptions | None = None,
    track_options: TrackOptions | None = None,
    progress: ProgressFn | None = None,
    layers: Sequence[str] = (),
    *,
    parallel: ParallelOptions | None = None,
) -> TrackResult:
    """Analyse every checkpoint (from the cache where its file is unchanged) and the seeds: here,
    or as Ray tasks (``parallel``), with the same result. A checkpoint that fails is left out and
    listed in ``failed``; when every one fails, the first one's error is raised."""
    opts = options or AnalyzeOptions()
    topts = track_options or TrackOptions()
    par = parallel or ParallelOptions()
    if par.on_ray and missing("sweep"):
        raise MissingExtraError(
            f"track on Ray ({option('workers')}, {option('address')}) needs "
            f"{' and '.join(missing('sweep'))}, which is not installed: "
            f"{install_hint('sweep')}"
        )
    paths = checkpoint_paths(inputs)
    if not paths:
        raise InputNotFoundError("no checkpoints to track")
    notes: list[str] = []
    positions = [checkpoint_position(p, notes) for p in paths]
    axis, named = "checkpoint", None
    if topts.labels is None:
        order, named, axis = order_checkpoints(paths, positions)
        paths, positions = [paths[k] for k in order], [positions[k] for k in order]
        if named is not None:
            _unique_labels(paths, named, f" (give {option('labels')} to label them by name)")
    labels = named if named is not None else checkpoint_labels(paths, topts.labels)
    loss = run_loss(positions, notes)
    shared = SharedArchitecture()
    cache, key = Path(out).expanduser() / CACHE, _options_key(opts)
    _check_cache(cache)
    n = len(paths)
    results: list[AnalysisResult | None] = [None] * n
    cached = [False] * n
    errors: dict[int, EntropyflowError] = {}
    entries: dict[int, Path] = {}
    seeds_by_index: dict[int, AnalysisResult] = {}

    def finished() -> None:
        if progress:
            progress("track", len(errors) + sum(r is not None for r in results), n)

    def done(k: int, result: AnalysisResult | None, data: bytes | None, error: EntropyflowError | None) -> None:
        if k < 0:  # a random-init seed
            assert result is not None
            seeds_by_index[-k - 1] = result
            return
        if error is not None:
            errors[k] = error
        else:
            assert result is not None and data is not None
            _write_entry(cache, entries[k], data)
            results[k] = result
            if not par.on_ray:  # in order here: a run of mixed architectures stops at the first other one
                _check_run(results, paths, layers, only=k)
        finished()

    seeds: tuple[AnalysisResult, ...] = ()
    # on Ray the cache keys (sha256 of every checkpoint, here) would bound the run: hashed ahead, on threads
    ahead = min(HASH_AHEAD, os.cpu_count() or 1) if par.on_ray else 0
    try:
        with _runner(par, shared, done, progress) as runner:
            finished()
            for k in range(ahead):
                _prefetch_digest(paths, k)
            for k, p in enumerate(paths):
                _prefetch_digest(paths, k + ahead)
                try:
                    hit, entries[k] = _lookup(cache, p, key)
                except EntropyflowError as exc:
                    done(k, None, None, exc)
                    continue
                if hit is not None:
                    results[k], cached[k] = hit, True
                    finished()
                else:
                    runner.submit(k, str(p), opts, False)
            runner.drain()
            ok = [k for k in range(n) if results[k] is not None]
            if not ok:
                raise _naming(errors[min(errors)], paths[min(errors)])
            _check_run(results, paths, layers)
            first, first_result = ok[0], results[ok[0]]
            assert first_result is not None
            reference = _init_reference(paths[first], first_result, cached[first], opts) if topts.seeds else None
            if reference is not None and not reference[0]:
                notes.append(
                    f"no random-init level: {paths[first].name} does not say which architecture it is, so no random "
                    "initialisation of it can be built (give its architecture to compare against one); colours are "
                    "relative to the first checkpoint"
                )
            if reference is not None and reference[0]:
                arch, own, size = reference
                seed_opts = replace(opts, arch=None, weights=None, key=None, input_size=size, random_init=True)
                picked = reference_seeds(topts.seeds, own)  # never the run's own initialisation
                for j, s in enumerate(picked):
                    runner.submit(-j - 1, str(arch), replace(seed_opts, seed=s), True)
                runner.drain()
                seeds = tuple(seeds_by_index[j] for j in range(len(picked)))
    except KeyboardInterrupt as exc:
        raise _interrupted(exc, cache) from exc
    kept = [k for k in range(n) if results[k] is not None]
    analysed = [r for r in results if r is not None]
    values, names = layer_matrix(analysed, topts.statistic)
    level = np.full(len(names), np.nan)
    band = np.full((len(names), 2), np.nan)
    if seeds:
        per_seed, _ = layer_matrix(seeds, topts.statistic, names)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a layer with no finite value stays NaN
            level = np.nanmean(per_seed, axis=1) if per_seed.size else level
            band = np.stack([np.nanmin(per_seed, axis=1), np.nanmax(per_seed, axis=1)], axis=1)
    steps = tuple(getattr(pos, axis) if axis != "checkpoint" else pos.step for pos in positions)
    failed = tuple(
        CheckpointFailure(labels[k], paths[k], " ".join(str(errors[k]).split()), errors[k].exit_code)
        for k in sorted(errors)
    )
    return TrackResult(
        tuple(labels[k] for k in kept), tuple(paths[k] for k in kept), tuple(analysed), tuple(names), values, level,
        band, seeds, topts.statistic, tuple(cached[k] for k in kept), tuple(steps[k] for k in kept) if steps else (),
        axis, loss, tuple(notes), failed,
    )  # fmt: skip


def _naming(exc: EntropyflowError, path: Path) -> EntropyflowError:
    """``exc`` with the checkpoint it is about in front, unless it names it already (an --arch that
    does not fit says which file)."""
    text = str(exc)
    if path.name in text:
        return exc
    named = copy.copy(exc)
    named.args = (f"{printable(path.name)}: {text}",)
    return named


def _check_run(
    results: Sequence[AnalysisResult | None], paths: Sequence[Path], layers: Sequence[str], only: int | None = None
) -> None:
    """The analysed checkpoints, in order, share the first one's layers (and it holds ``layers``);
    ``only``: check that one alone (just analysed)."""
    ok = [k for k, r in enumerate(results) if r is not None]
    if not ok:
        return
    first = results[ok[0]]
    assert first is not None
    if layers and only in (None, ok[0]):
        _check_layers(first, layers)
    for k in ok[1:] if only is None else [only] if only != ok[0] else []:
        other = results[k]
        assert other is not None
        _same_architecture(first, other, paths[ok[0]], paths[k])
