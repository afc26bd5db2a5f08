"""Trajectories over training: one analysis per checkpoint, the layer statistic as a matrix
(layers × checkpoints) against the random-init level, for ``entropyflow track``.

Checkpoints come from files, folders (their checkpoint files) or globs, in natural order
(``epoch_2`` before ``epoch_10``). Each analysis is cached in ``OUT/.entropyflow-cache/`` under the
sha256 of every file the checkpoint reads (a shard index and its shards) and the options that
change the numbers, so running ``track`` again analyses only new or changed checkpoints. An entry
is used only when its record (written after it) names the same sources and options and the
entry's own sha256; anything else is recomputed. A cache entry only ever supplies numbers: the
architecture, seed and input size of the random-init level come from the first checkpoint itself.
The random-init level of each layer is the mean over N seeds of the architecture (the model's own
seeds excluded as in ``--compare random``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from . import strictjson
from ._version import __version__
from .analysis import AnalyzeOptions, analyze
from .atomic import write_atomic
from .compare import MAX_SEEDS, reference_seeds
from .errors import EntropyflowError, InputNotFoundError, OptionError, OutputError
from .estimate.results import AnalysisResult
from .estimate.run import ProgressFn
from .estimate.seeds import STATISTICS
from .estimate.trajectory import Trajectory, layer_matrix
from .load.hashing import sha256_async, sha256_file
from .load.model import load_model
from .load.paths import resolve_checkpoint
from .report.jsonio import MAX_ANALYSIS_BYTES, SCHEMA, analysis_json, from_dict
from .text import printable

__all__ = ["TrackOptions", "Trajectory", "checkpoint_paths", "natural_key", "track"]

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
            raise OptionError(f"--stat must be one of {', '.join(STATISTICS)}, not {printable(self.statistic, 40)!r}")
        if not 0 <= self.seeds <= MAX_SEEDS:
            raise OptionError(f"--seeds must be from 0 to {MAX_SEEDS} (each seed is one full analysis)")
        if self.labels is not None:
            if len(self.labels) > MAX_LABEL_PATTERN:
                raise OptionError(f"--labels is longer than {MAX_LABEL_PATTERN} characters")
            try:
                re.compile(self.labels)
            except (re.error, RecursionError, OverflowError) as exc:
                raise OptionError(f"--labels is not a regular expression: {printable(exc, 120)}") from exc


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically: ``epoch_2`` < ``epoch_10``."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def checkpoint_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their checkpoint files, not recursive) and globs, naturally sorted, once each."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            inside = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES]
            if not inside:
                raise InputNotFoundError(f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) in {printable(p)}")
            found += inside
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(str(item)):
            matched = [Path(m) for m in glob.glob(str(p)) if Path(m).is_file()]
            if not matched:
                raise InputNotFoundError(f"no files match {printable(item)}")
            found += matched
        else:
            raise InputNotFoundError(f"no such file or folder: {printable(item)}")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    if len(unique) > MAX_CHECKPOINTS:
        raise OptionError(f"{len(unique)} checkpoints is more than {MAX_CHECKPOINTS}; track a subset")
    return sorted(unique, key=lambda f: natural_key(f.name) + natural_key(str(f.parent)))


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
            f"--labels {shown!r} takes more than {LABEL_SECONDS:g} s on these file names (nested repetition such as "
            "(a+)+ backtracks without end): simplify the pattern"
        ) from exc
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        raise OptionError(f"--labels {shown!r} could not be matched against the file names") from exc


def checkpoint_labels(paths: Sequence[Path], pattern: str | None) -> list[str]:
    """The file stem, or what ``pattern`` matches in the file name (its first group if it has one)."""
    if pattern is None:
        out = [p.stem for p in paths]
    else:
        found = _match_labels(pattern, [p.name for p in paths])
        for p, label in zip(paths, found, strict=True):
            if label is None:
                raise OptionError(f"--labels {printable(pattern, 60)!r} does not match {printable(p.name)}")
        out = [str(label) for label in found]
    twice = [label for label, n in Counter(out).items() if n > 1]
    if twice:
        files = [p.name for p, label in zip(paths, out, strict=True) if label == twice[0]]
        raise OptionError(
            f"checkpoint labels must be unique: {printable(twice[0], 40)!r} is the label of "
            f"{', '.join(printable(f) for f in files[:3])}" + (" (adjust --labels)" if pattern else "")
        )
    return out


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


def _cached_analysis(cache: Path, path: Path, key: str, options: AnalyzeOptions) -> tuple[AnalysisResult, Path | None]:
    """The analysis of ``path`` from the cache, or computed (with the cache entry to write)."""
    digest, weights = source_digest(path)
    entry = cache / f"{digest}-{key}.analysis.json"
    cached = _read_entry(entry, _record(entry), digest, key, weights)
    if cached is not None:
        return cached, None
    return analyze(str(path), options), entry


def _record(entry: Path) -> Path:
    return entry.with_name(entry.name.replace(".analysis.json", ".record.json"))


def _write_cache(cache: Path, fresh: dict[Path, AnalysisResult]) -> None:
    """Cache entries are written only once every checkpoint has been analysed (a failing run
    leaves no files), each atomically, its record (sources, options, the entry's sha256) last."""
    if not fresh:
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for entry, result in fresh.items():
            data = analysis_json(result)
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
            "choose another --out"
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
            raise OptionError(f"--layer {printable(name, 80)!r} is not a layer of these checkpoints")


def track(
    inputs: Sequence[str | Path],
    out: str | Path,
    options: AnalyzeOptions | None = None,
    track_options: TrackOptions | None = None,
    progress: ProgressFn | None = None,
    layers: Sequence[str] = (),
) -> Trajectory:
    """Analyse every checkpoint (from the cache where its file is unchanged) and the seeds."""
    opts = options or AnalyzeOptions()
    topts = track_options or TrackOptions()
    paths = checkpoint_paths(inputs)
    if not paths:
        raise InputNotFoundError("no checkpoints to track")
    labels = checkpoint_labels(paths, topts.labels)
    cache, key = Path(out).expanduser() / CACHE, _options_key(opts)
    _check_cache(cache)
    results: list[AnalysisResult] = []
    cached: list[bool] = []
    fresh: dict[Path, AnalysisResult] = {}
    for k, p in enumerate(paths):
        if progress:
            progress("track", k, len(paths))
        r, entry = _cached_analysis(cache, p, key, opts)
        if results:
            _same_architecture(results[0], r, paths[0], p)
        elif layers:
            _check_layers(r, layers)
        results.append(r)
        cached.append(entry is None)
        if entry is not None:
            fresh[entry] = r
    if progress:
        progress("track", len(paths), len(paths))
    _write_cache(cache, fresh)
    values, names = layer_matrix(results, topts.statistic)
    seeds: tuple[AnalysisResult, ...] = ()
    arch, own, size = _init_reference(paths[0], results[0], cached[0], opts) if topts.seeds else (None, None, None)
    if topts.seeds and arch:
        seed_opts = replace(opts, arch=None, weights=None, key=None, input_size=size, random_init=True)
        picked = reference_seeds(topts.seeds, own)  # never the run's own initialisation
        seeds = tuple(analyze(arch, replace(seed_opts, seed=s)) for s in picked)
    level = np.full(len(names), np.nan)
    band = np.full((len(names), 2), np.nan)
    if seeds:
        per_seed, _ = layer_matrix(seeds, topts.statistic, names)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a layer with no finite value stays NaN
            level = np.nanmean(per_seed, axis=1) if per_seed.size else level
            band = np.stack([np.nanmin(per_seed, axis=1), np.nanmax(per_seed, axis=1)], axis=1)
    return Trajectory(
        tuple(labels), tuple(paths), tuple(results), tuple(names), values, level, band, seeds, topts.statistic,
        tuple(cached),
    )  # fmt: skip
