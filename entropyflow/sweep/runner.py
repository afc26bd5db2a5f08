"""A sweep in one call: build the grid, run its trials on Ray Tune, summarise, write the report.

    from entropyflow.sweep import SweepSpec, run_sweep
    result = run_sweep("mytrain:train", spec, out="sweep-report/")

Ray Tune is the ``[sweep]`` extra: without it ``import entropyflow.sweep`` (and
:func:`run_sweep`) raise :class:`~entropyflow.errors.MissingExtraError` saying how to install it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import strictjson, vocab
from ..analysis import analyze
from ..config import load_config
from ..errors import OptionError, WeightsNotCachedError
from ..extras import require
from ..recommend import RecommendOptions
from ..report import check_writable, read_analysis
from ..report.outdir import preflight, write_atomically
from ..text import printable
from ..words import arg, option
from . import datasets, ray_tune, records
from .contract import check_metric
from .events import RayOptions, TrialEvent, TrialOutcome
from .output import sweep_files
from .spec import STRUCTURAL, Placement, SweepSpec, placements_from, rules
from .summary import SweepSummary, Timing, summarize, trial_summary
from .tasks import TASKS, task, train_function

SPEC_FILE = records.SPEC_FILE


@dataclass(frozen=True)
class SweepResult:
    """What a sweep wrote: its summary, the folder and files, and the trials that failed."""

    summary: SweepSummary
    out: Path
    files: tuple[Path, ...]
    failed: tuple[str, ...]  # "cell seed N: error" for trials that raised
    notes: tuple[str, ...] = ()  # what a reader should know about how the cells were built

    @property
    def complete(self) -> bool:
        """Every trial finished: the only sweep whose exit status is 0 (the CLI exits 3 otherwise)."""
        return not self.failed


def registration_order_notes(outcomes: Sequence[Any]) -> tuple[str, ...]:
    """A note per cell whose rule was resolved in registration order in some trial: the layers a
    rule such as ``first`` takes may then not be the first the data meets."""
    cells = []
    for o in outcomes:
        config = o.placed.get("config") if o.placed else None
        params = dict((config or {}).get("strategy", {}).get("params") or {})
        if params.get("order") == "registered" and o.cell not in cells:
            cells.append(o.cell)
    return tuple(
        f"{cell}: its layers were taken in the order the modules were registered (torch.fx cannot trace the "
        "model and entropyflow.sweep.regularizer was given no input): give it input_size= or input= for the "
        "forward order"
        for cell in cells
    )


def placements(
    names: Sequence[str],
    reference: str | None,
    configs: Sequence[str | Path] = (),
    model: Any = None,
    options: RecommendOptions | None = None,
    input_size: tuple[int, ...] | None = None,
) -> tuple[Placement, ...]:
    """Placements from a reference (a saved analysis.json, a model spec analysed here, or a live
    ``model`` of the architecture for positional strategies) with recommend's strategies; with
    neither, structural rules that each trial resolves on its own model (:func:`.spec.rules`); plus
    explicit λ configs (named by their strategy; with their file's stem too where two share one)."""
    out: list[Placement] = []
    if names and reference is None and model is None:
        out += rules(names, options)  # resolved on the model the training function builds, in every trial
    elif names:
        if reference is not None and Path(reference).suffix == ".json":
            analysis = read_analysis(reference)
        elif reference is not None:
            try:
                analysis = analyze(reference)
            except WeightsNotCachedError as exc:  # its advice names analyze's options: say it in the sweep's
                if not exc.missing:
                    raise
                raise WeightsNotCachedError(
                    f"{exc.missing}; {exc.fetch}, or give {option('reference')} the analysis.json of an analysis "
                    "made where they are cached",
                    missing=exc.missing,
                    fetch=exc.fetch,
                ) from exc
        else:
            analysis = analyze(model, hash_files=False, input_size=input_size)
        out += placements_from(analysis, names, options, model=model)
    loaded = [(Path(path).stem, load_config(path)) for path in configs]
    strategies = Counter([p.name for p in out] + [cfg.strategy.name for _, cfg in loaded])
    for stem, cfg in loaded:
        # named by its placement, as recommend wrote it (a best.yaml of `first` runs as `first λ=…`), and by the
        # file too where two placements share a strategy
        name = (
            cfg.strategy.name
            if strategies[cfg.strategy.name] == 1 and cfg.strategy.name
            else f"{cfg.strategy.name} ({stem})"
        )
        out.append(Placement(printable(name, 80), cfg))
    return tuple(out)


def run_sweep(
    train: str,
    spec: SweepSpec,
    *,
    out: str | Path,
    ray_options: RayOptions | None = None,
    resume: bool = False,
    plot_format: str = "png",
    on_event: Callable[[TrialEvent], None] | None = None,
) -> SweepResult:
    """Run ``train`` (``module:function``, ``file.py:function`` or ``task:NAME``) over the grid of
    ``spec`` on Ray Tune, then write ``trials.csv``, ``summary.csv``, ``summary.json``, the figures
    and ``best.yaml`` into ``out`` (Tune's storage and the sweep's records are ``out/tune``).
    ``resume``: run only the trials whose record does not say they finished (:mod:`.records`)."""
    require("sweep")
    folder = check_writable(out)
    check_metric(spec.metric)  # a name Tune gives its own fields: refused before anything runs
    train_function(train, str(Path.cwd()))  # fails here, before Ray starts, if the function cannot be found
    options = ray_options or RayOptions()
    storage = folder / "tune"
    trials = [cell.trial_config(seed, spec.epochs, spec.params) for cell in spec.cells for seed in spec.seeds]
    if resume:
        records.check_grid(storage, train, spec)
        done = records.finished(storage, trials, spec.epochs)
    else:
        records.begin(storage, train, spec)
        done = {}
    # trials keeps the grid order (records are named by grid index); only the launch is interleaved
    todo = [trials[i] for i in launch_order(spec) if i not in done]
    if on_event is not None:
        for i, trial in enumerate(trials):
            on_event(TrialEvent("", trial["cell"], trial["seed"], "done" if i in done else "pending"))
    stop = None if spec.patience is None else (spec.metric, spec.mode, spec.patience)
    started = time.time()
    recorder = records.Recorder(storage, trials, spec.epochs)
    try:
        ran = ray_tune.run(todo, train, storage, spec.metric, options, recorder, on_event, stop) if todo else []
    except OptionError:
        if not resume:
            records.abandon(storage)  # Ray could not be reached: no trial ran, so nothing of this sweep stays
        raise
    outcomes = in_grid_order(trials, done, todo, ran)
    summaries = [trial_summary(o.cell, o.seed, o.rows, spec, o.error) for o in outcomes]
    summary = summarize(spec, summaries, timing=timing(options, len(trials)))
    provenance = {
        "train": train,
        "ray": ray_tune.available(),
        "cluster": options.address or f"local ({options.cpus or os.cpu_count()} CPUs)",
        "launch_order": LAUNCH_ORDER,
        "resources_per_trial": {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
        "torch": torch.__version__,
        "platform": platform.platform(),
        "storage": "tune (Ray Tune's experiments and the trials' records, beside this file)",
        "resumed": resume,
        "trials_run": len(todo),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1),
    }
    files = write_atomically(folder, sweep_files(summary, outcomes, provenance, plot_format))
    failed = tuple(f"{o.cell} seed {o.seed}: {o.error}" for o in outcomes if o.error)
    return SweepResult(summary, folder, tuple(files), failed, registration_order_notes(outcomes))


LAUNCH_ORDER = (
    "interleaved: seed by seed (in the grid's seed order), and within each seed every cell once, in a random "
    "order drawn from random.Random seeded with sha256(grid fingerprint/seed), so a re-run or --resume "
    "launches in the same order"
)


def launch_order(spec: SweepSpec) -> list[int]:
    """The grid indices (cells × seeds, cell-major) in the order the trials are launched: seed by
    seed, the cells of each seed shuffled by a generator fixed by the grid and the seed.

    Launching all baseline trials first would give them the fresh workers (imports, first calls)
    and the λ cells the warm ones; interleaving spreads those costs over the cells at random."""
    n_seeds = len(spec.seeds)
    fingerprint = spec.fingerprint()
    order = []
    for k, seed in enumerate(spec.seeds):
        cells = list(range(len(spec.cells)))
        random.Random(_order_seed(fingerprint, seed)).shuffle(cells)
        order += [c * n_seeds + k for c in cells]
    return order


def _order_seed(fingerprint: str, seed: int) -> int:
    # sha256, not hash(): the same on every run and Python (PYTHONHASHSEED salts str hashes)
    return int(hashlib.sha256(f"{fingerprint}/{seed}".encode()).hexdigest()[:16], 16)


def in_grid_order(
    trials: Sequence[dict[str, Any]],
    done: dict[int, records.Record],
    todo: Sequence[dict[str, Any]],
    ran: Sequence[TrialOutcome],
) -> list[TrialOutcome]:
    """The outcomes in grid order: the recorded ones by index, the ones just run (in launch
    order, as ``ray_tune.run`` returns them) by (cell, seed)."""
    by_key = {(t["cell"], t["seed"]): o for t, o in zip(todo, ran, strict=True)}
    return [done[i].outcome() if i in done else by_key[(t["cell"], t["seed"])] for i, t in enumerate(trials)]


def timing(options: RayOptions, n_trials: int) -> Timing:
    """Where the trials ran, for every wall-clock outcome's caveat."""
    if options.address:
        where = f"the Ray cluster at {options.address}, {_cpus(options.cpus_per_trial)} per trial"
        return Timing(where, None, LAUNCH_ORDER)  # how many ran at once depends on the cluster
    cpus = options.cpus or os.cpu_count() or 1
    at_once = max(1, min(n_trials, int(cpus // options.cpus_per_trial)))
    where = f"local Ray with {_cpus(cpus)}, {_cpus(options.cpus_per_trial)} per trial"
    return Timing(where, at_once, LAUNCH_ORDER)


def _cpus(n: float) -> str:
    return f"{n:g} CPU{'s' * (n > 1)}"


def task_spec(
    name: str,
    *,
    seeds: int = 10,
    first_seed: int = 0,
    epochs: int | None = None,
    lambdas: Sequence[float] | None = None,
    placement_names: Sequence[str] | None = None,
    target: float | None = None,
    params: dict[str, Any] | None = None,
    reference: str | None = None,
    max_epochs: int | None = None,
    notes: list[str] | None = None,
) -> SweepSpec:
    """The grid of a built-in task (its paper setting), with overrides. ``reference``: a trained
    model of the architecture (or its analysis.json) for the placements that read weights;
    ``max_epochs`` caps the epochs (a pilot); ``params["data"]`` is the dataset's folder, checked here.
    ``notes``: the dataset check's notes are appended to it (e.g. images left out for want of a mask)."""
    t = task(name)
    names = tuple(placement_names) if placement_names is not None else t.placements
    if placement_names is None and reference is not None:
        names += t.reference_placements  # e.g. Table 2's `empirical`, from the user's pretrained weights
    params = dict(params or {})
    if t.dataset is not None:
        found_notes = datasets.check(t.dataset, params.get("data"))  # a missing or bad dataset: one line, before Ray
        if notes is not None:
            notes.extend(found_notes)
    elif params.get("data") is not None:
        raise OptionError(
            f"the {name} task trains on scikit-learn's bundled digits: it reads no {arg('data', 'ROOT', quote=False)} "
            f"(the tasks that do: {', '.join(n for n, other in TASKS.items() if other.dataset is not None)})"
        )
    model = None
    if reference is None:
        reference = t.reference
        if t.rules_in_trial and (reference is None or any(p in params for p in t.arch_params)):
            reference = None  # structural placements resolved in each trial (no full-size model built here)
        elif reference is None or any(p in params for p in t.arch_params):
            model = t.model(params)  # positional placements only: the architecture itself is the reference
            reference = None
    options = RecommendOptions(k=2)
    if t.rules_in_trial and reference is not None:
        # structural placements depend on the architecture only: resolved in the trial on the model it builds;
        # only those that read weights come from the reference (which may be a bare analysis.json)
        weighted = [n for n in names if n not in STRUCTURAL]
        by_name = {p.name: p for p in placements(weighted, reference, options=options)} if weighted else {}
        structural = {p.name: p for p in rules([n for n in names if n in STRUCTURAL], options)}
        found = tuple(structural[n] if n in structural else by_name[n] for n in names)
    else:
        found = placements(names, reference, model=model, options=options, input_size=t.input_size)
    return SweepSpec(
        lambdas=tuple(lambdas) if lambdas is not None else t.lambdas,
        placements=found,
        seeds=tuple(range(first_seed, first_seed + seeds)),
        epochs=min(epochs or t.epochs, max_epochs or epochs or t.epochs),
        metric=t.metric,
        mode=vocab.mode(t.mode),
        target=target if target is not None else t.target,
        params=params,
        patience=t.patience,
        primary=t.primary,
    )


MAX_SEEDS = 1000
DEFAULT_LAMBDAS = (0.0, 1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class SweepRequest:
    """A sweep as the command line states it: a training function or a built-in task, and
    overrides of the grid (a task brings its paper setting; a function needs metric and epochs)."""

    train: str | None = None
    task: str | None = None
    configs: tuple[str, ...] = ()
    reference: str | None = None
    placements: tuple[str, ...] | None = None
    lambdas: tuple[float, ...] | None = None
    seeds: int = 10
    first_seed: int = 0  # seeds first_seed … first_seed + seeds - 1
    epochs: int | None = None
    metric: str | None = None
    mode: str | None = None
    target: float | None = None
    patience: int | None = None
    primary: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    plot_format: str = "png"
    data: str | None = None  # --data ROOT: the dataset's folder, as params["data"] (absolute)
    max_epochs: int | None = None  # --max-epochs: caps the epochs (a pilot)
    subset: int | None = None  # --subset N: the first N examples of each split, as params["subset"]


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values read as JSON where they parse (numbers, lists), else as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{option('param')} needs KEY=VALUE (got '{printable(item, 60)}')")
        try:
            out[key.strip()] = strictjson.loads(value)  # no NaN, no 5000-digit integers: the grid is saved as JSON
        except ValueError:
            out[key.strip()] = value
    return out


def pilot(request: SweepRequest) -> SweepRequest:
    """``--data``, ``--subset`` into the trials' params (``data`` as an absolute path: Ray's workers
    run in other folders), ``--max-epochs`` and ``--subset`` checked."""
    params = dict(request.params)
    if request.data is not None:
        params["data"] = str(Path(request.data).expanduser().resolve())
    if request.subset is not None:
        if request.subset < 1:
            raise OptionError(f"{option('subset')} must be at least 1 (examples per split)")
        params["subset"] = request.subset
    if request.max_epochs is not None and request.max_epochs < 1:
        raise OptionError(f"{option('max-epochs')} must be at least 1")
    return replace(request, params=params)


def sweep(
    request: SweepRequest,
    *,
    out: str | Path,
    ray_options: RayOptions | None = None,
    on_event: Callable[[TrialEvent], None] | None = None,
) -> SweepResult:
    """What ``entropyflow sweep`` does: build the grid the request describes, run it, report."""
    require("sweep")
    check_writable(out)
    if request.train is None and request.task is None:
        raise OptionError(
            f"give a training function (MODULE:FUNCTION or FILE.py:FUNCTION) or {arg('task', 'NAME', quote=False)}"
        )
    if request.train is not None and request.task is not None:
        raise OptionError(f"give a training function (MODULE:FUNCTION) or {arg('task', 'NAME', quote=False)}, not both")
    if not 1 <= request.seeds <= MAX_SEEDS:
        raise OptionError(f"{option('seeds')} must be from 1 to {MAX_SEEDS} (each seed is one trial per cell)")
    if not 0 <= request.first_seed <= 2**32 - MAX_SEEDS:
        raise OptionError(f"{option('first-seed')} must be from 0 to {2**32 - MAX_SEEDS}")
    vocab.plot_format(request.plot_format)
    figures = [f"learning_curves.{request.plot_format}", f"outcomes.{request.plot_format}"]
    preflight(out, "sweep", ["trials.csv", "summary.csv", "summary.json", "best.yaml", *figures])  # before any trial
    request = pilot(request)
    data_notes: list[str] = []
    if request.task is not None:
        spec = task_spec(
            request.task,
            seeds=request.seeds,
            first_seed=request.first_seed,
            epochs=request.epochs,
            lambdas=request.lambdas,
            placement_names=request.placements,
            target=request.target,
            params=request.params,
            reference=request.reference,
            max_epochs=request.max_epochs,
            notes=data_notes,
        )
        spec = replace(
            spec,
            metric=request.metric or spec.metric,
            mode=vocab.mode(request.mode or spec.mode),
            placements=spec.placements + placements((), None, request.configs),
            patience=request.patience if request.patience is not None else spec.patience,
            primary=request.primary or spec.primary,
        )
        train = f"task:{request.task}"
    else:
        assert request.train is not None
        if request.metric is None or request.epochs is None:
            raise OptionError(f"a training function needs {option('metric')} (what it reports) and {option('epochs')}")
        epochs = min(request.epochs, request.max_epochs or request.epochs)
        found = placements(request.placements or (), request.reference, request.configs)
        spec = SweepSpec(
            lambdas=request.lambdas if request.lambdas is not None else DEFAULT_LAMBDAS,
            placements=found,
            seeds=tuple(range(request.first_seed, request.first_seed + request.seeds)),
            epochs=epochs,
            metric=request.metric,
            mode=vocab.mode(request.mode or "min"),
            target=request.target,
            params=request.params,
            patience=request.patience,
            primary=request.primary,
        )
        train = request.train
    result = run_sweep(
        train,
        spec,
        out=out,
        ray_options=ray_options,
        resume=request.resume,
        plot_format=request.plot_format,
        on_event=on_event,
    )
    return replace(result, notes=(*data_notes, *result.notes)) if data_notes else result


__all__ = ["SweepResult", "SweepRequest", "run_sweep", "sweep", "task_spec", "placements", "task", "parse_params"]
