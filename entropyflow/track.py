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
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ._version import __version__
from .analysis import AnalyzeOptions, analyze
from .compare import reference_seeds
from .errors import InputNotFoundError, OptionError
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
        if self.seeds < 0:
            raise OptionError("--seeds must be 0 or more")
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
    return out


def _options_key(options: AnalyzeOptions) -> str:
    """What changes an analysis besides the file: every option, and the entropyflow version."""
    doc = {f.name: repr(getattr(options, f.name)) for f in fields(options) if f.name not in ("device", "hash_files")}
    doc["entropyflow"] = __version__
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _cached_analysis(cache: Path, path: Path, key: str, options: AnalyzeOptions) -> tuple[AnalysisResult, bool]:
    digest = combined_digest([path])
    entry = cache / f"{digest}-{key}.analysis.json"
    if entry.is_file():
        try:
            return read_analysis(entry), True
        except Exception:  # noqa: BLE001 - a damaged cache entry is re-computed, never trusted
            entry.unlink(missing_ok=True)
    result = analyze(str(path), options)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
    tmp.write_bytes(analysis_json(result))
    os.replace(tmp, entry)
    return result, False


def track(
    inputs: Sequence[str | Path],
    out: str | Path,
    options: AnalyzeOptions | None = None,
    track_options: TrackOptions | None = None,
    progress: ProgressFn | None = None,
) -> Trajectory:
    """Analyse every checkpoint (from the cache where its file is unchanged) and the seeds."""
    opts = options or AnalyzeOptions()
    topts = track_options or TrackOptions()
    paths = checkpoint_paths(inputs)
    if not paths:
        raise InputNotFoundError("no checkpoints to track")
    labels = checkpoint_labels(paths, topts.labels)
    cache, key = Path(out).expanduser() / CACHE, _options_key(opts)
    results, cached = [], []
    for k, p in enumerate(paths):
        if progress:
            progress("track", k, len(paths))
        r, hit = _cached_analysis(cache, p, key, opts)
        results.append(r)
        cached.append(hit)
    if progress:
        progress("track", len(paths), len(paths))
    layers: list[str] = []
    for r in results:
        layers += [layer.name for layer in r.layers if layer.name not in layers]
    values, _ = layer_matrix(results, topts.statistic, layers)
    seeds: tuple[AnalysisResult, ...] = ()
    arch = results[0].model.arch
    if topts.seeds and arch:
        seed_opts = replace(
            opts, arch=None, weights=None, key=None, input_size=results[0].model.input_size, random_init=True
        )
        picked = reference_seeds(topts.seeds, None)
        seeds = tuple(analyze(arch, replace(seed_opts, seed=s)) for s in picked)
    level = np.full(len(layers), np.nan)
    band = np.full((len(layers), 2), np.nan)
    if seeds:
        per_seed, _ = layer_matrix(seeds, topts.statistic, layers)
        with np.errstate(all="ignore"):
            level = np.nanmean(per_seed, axis=1) if per_seed.size else level
            band = np.stack([np.nanmin(per_seed, axis=1), np.nanmax(per_seed, axis=1)], axis=1)
    return Trajectory(
        tuple(labels), tuple(paths), tuple(results), tuple(layers), values, level, band, seeds, topts.statistic,
        tuple(cached),
    )  # fmt: skip
