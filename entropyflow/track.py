"""Trajectories over training: one analysis per checkpoint, the layer statistic as a matrix
(layers × checkpoints) against the random-init level, for ``entropyflow track``.

Checkpoints come from files, folders (their checkpoint files) or globs, in natural order
(``epoch_2`` before ``epoch_10``). Each analysis is cached in ``OUT/.entropyflow-cache/`` under the
file's sha256 and the options that change the numbers, so running ``track`` again analyses only
new or changed checkpoints. The random-init level of each layer is the mean over N seeds of the
architecture (the model's own seeds excluded as in ``--compare random``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ._version import __version__
from .analysis import AnalyzeOptions, analyze
from .compare import MAX_SEEDS, reference_seeds
from .errors import InputNotFoundError, OptionError, OutputError
from .estimate.results import AnalysisResult
from .estimate.run import ProgressFn
from .estimate.seeds import STATISTICS
from .estimate.trajectory import Trajectory, layer_matrix
from .load.hashing import combined_digest
from .report.jsonio import analysis_json, read_analysis
from .text import printable

__all__ = ["TrackOptions", "Trajectory", "checkpoint_paths", "natural_key", "track"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".tar")
CACHE = ".entropyflow-cache"
MAX_CHECKPOINTS = 500


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
            try:
                re.compile(self.labels)
            except re.error as exc:
                raise OptionError(f"--labels is not a regular expression: {exc}") from exc


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


def checkpoint_labels(paths: Sequence[Path], pattern: str | None) -> list[str]:
    """The file stem, or what ``pattern`` matches in the file name (its first group if it has one)."""
    out = []
    for p in paths:
        if pattern is None:
            out.append(p.stem)
            continue
        m = re.search(pattern, p.name)
        if m is None:
            raise OptionError(f"--labels {printable(pattern, 60)!r} does not match {printable(p.name)}")
        out.append(m.group(1) if m.groups() else m.group(0))
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


def _cached_analysis(cache: Path, path: Path, key: str, options: AnalyzeOptions) -> tuple[AnalysisResult, Path | None]:
    """The analysis of ``path`` from the cache, or computed (with the cache entry to write)."""
    digest = combined_digest([path])
    entry = cache / f"{digest}-{key}.analysis.json"
    if entry.is_file():
        try:
            return read_analysis(entry), None
        except Exception:  # noqa: BLE001 - a damaged cache entry is re-computed (and rewritten), never trusted
            pass
    return analyze(str(path), options), entry


def _write_cache(cache: Path, fresh: dict[Path, AnalysisResult]) -> None:
    """Cache entries are written only once every checkpoint has been analysed (a failing run
    leaves no files), each atomically."""
    if not fresh:
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for entry, result in fresh.items():
            tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
            tmp.write_bytes(analysis_json(result))
            os.replace(tmp, entry)
    except OSError as exc:
        raise OutputError(f"cannot write the track cache {printable(cache)}: {exc.strerror or exc}") from exc


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
    arch = results[0].model.arch
    if topts.seeds and arch:
        seed_opts = replace(
            opts, arch=None, weights=None, key=None, input_size=results[0].model.input_size, random_init=True
        )
        picked = reference_seeds(topts.seeds, results[0].model.seed)  # never the run's own initialisation
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
