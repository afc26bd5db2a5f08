"""Running a sweep's trials on Ray Tune (the ``[sweep]`` extra; this module imports Ray).

A local Ray is started and stopped here unless ``address`` names an existing cluster. Tune's
storage is ``OUT/tune/sweep``: per-trial results are written as they arrive, so an interrupted
sweep keeps its finished trials, and :func:`run` with ``resume=True`` restores the experiment
(``Tuner.restore``) and runs only what had not finished. Trials that raise are reported with
their error; they do not stop the sweep (``FailureConfig(max_failures=0)``, no fail-fast).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ..errors import Interrupted, OptionError
from ..text import printable
from . import stats
from .events import RayOptions, TrialEvent, TrialOutcome
from .tasks import train_function

EXPERIMENT = "sweep"


ROWS = "entropyflow_rows"  # the result field that carries the epochs since the previous report (JSON)
REPORT_EVERY_S = 1.0


def _trainable(config: dict[str, Any]) -> None:
    """What Ray runs for every trial: imports the training function and calls it with the trial's
    config and a ``report`` that collects each epoch's metrics.

    Epochs reach Tune in batches, at most about once a second (and at the end): Tune's driver
    spends ~0.2 s on every result it receives (loggers, state, callbacks), so a report per epoch
    of a fast model would leave the trials waiting on the driver. Each batch rides in the result
    as JSON (``ROWS``), through Tune's own storage, so every epoch arrives on a cluster too."""
    torch.set_num_threads(int(config.get("_threads", 1)))  # one thread per CPU of the trial: reproducible sums
    train = train_function(config["_train"], config.get("_cwd"))
    started = time.perf_counter()
    stop_metric, stop_mode, patience = config.get("_stop") or (None, "min", 0)
    rule = stats.EarlyStop(int(patience), stop_mode) if stop_metric else None
    pending: list[dict[str, Any]] = []
    last = [-math.inf]

    def flush() -> None:
        if pending:
            tune.report({**pending[-1], ROWS: json.dumps(pending)})
            pending.clear()
            last[0] = time.perf_counter()

    def report(*, epoch: int, **metrics: float) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        pending.append({"epoch": int(epoch), "wall_s": time.perf_counter() - started, **values})
        stalled = rule is not None and stop_metric in values and rule.update(values[stop_metric])
        if stalled or time.perf_counter() - last[0] >= REPORT_EVERY_S:
            flush()
        if stalled:
            raise _EarlyStopped

    try:
        with contextlib.suppress(_EarlyStopped):  # the trial is complete: its metric stalled for the patience
            train(dict(config["trial"]), report)
    finally:
        flush()  # the epochs before an error too


def _rows(frame: Any) -> tuple[dict[str, Any], ...]:
    """Every epoch of a trial, from the batches its results carried."""
    if frame is None or not len(frame) or ROWS not in frame:
        return ()
    return tuple(row for batch in frame[ROWS] if isinstance(batch, str) for row in json.loads(batch))


class _EarlyStopped(BaseException):  # noqa: N818 - not an error: BaseException so that `except Exception` in a train function cannot swallow it
    """Raised from ``report`` to end a trial whose metric has stalled for the patience."""


_handler: Callable[[TrialEvent], None] | None = None  # where events go while run() runs


class _Progress(tune.Callback):
    """Forwards Tune's trial events to the handler :func:`run` was given (the CLI's live table).

    Tune pickles its callbacks with the experiment (to restore it), so the handler is looked up
    at event time instead of being held: a restored sweep reports to the handler of its own run."""

    def __init__(self, metric: str):
        self.metric = metric

    def _send(self, trial: Any, state: str, result: dict | None = None, error: str | None = None) -> None:
        if _handler is None:
            return
        cfg = trial.config.get("trial", {})
        value = (result or {}).get(self.metric)
        _handler(
            TrialEvent(
                trial.trial_id,
                str(cfg.get("cell")),
                int(cfg.get("seed", -1)),
                state,
                (result or {}).get("epoch"),
                None if value is None else float(value),
                error,
            )
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send(trial, "running")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._send(trial, "running", result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send(trial, "done", trial.last_result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send(trial, "failed", trial.last_result, error=_error_text(getattr(trial, "error_file", None)))


def _error_text(error_file: str | None) -> str:
    try:
        text = Path(error_file).read_text() if error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return printable(lines[-1] if lines else "the trial failed", 300)


@contextlib.contextmanager
def _tune_environment() -> Iterator[None]:
    """Tune's new console output prints where results are even at verbose=0; the library never
    prints, so the old reporter (silent at verbose=0) is selected while the sweep runs. Tune's own
    SIGINT handler is switched off: :func:`_graceful_stop` handles SIGINT and SIGTERM alike."""
    settings = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def _graceful_stop(hint: str) -> Iterator[None]:
    """SIGINT, SIGTERM or SIGHUP while trials run: ask Tune to stop (SIGUSR1, its graceful stop,
    which saves the experiment state so that ``--resume`` runs only what had not finished), then
    raise :class:`Interrupted` once it has; a second signal raises at once. Outside the main
    thread (where handlers cannot be set) the handlers in place are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        if received:
            raise Interrupted(signum, hint)
        received.append(signum)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Interrupted(received[0], hint)


def _init_ray(kwargs: dict[str, Any]) -> None:
    """``ray.init``, keeping this process's Python signal handlers: Ray's core installs a C++
    SIGTERM handler that aborts the process (exit 134), which would skip every cleanup."""
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main else {}
    try:
        ray.init(**kwargs)
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def _name(trial: Any) -> str:
    cfg = trial.config.get("trial", {})
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{cfg.get('cell')}-seed{cfg.get('seed')}")[:80] + f"-{trial.trial_id}"


def run(
    trials: list[dict[str, Any]],
    train: str,
    storage: Path,
    metric: str,
    ray_options: RayOptions,
    on_event: Callable[[TrialEvent], None] | None = None,
    resume: bool = False,
    stop: tuple[str, str, int] | None = None,
) -> list[TrialOutcome]:
    """Run every trial config in ``trials`` (or resume the experiment in ``storage``). ``stop``:
    (metric, mode, patience) ends each trial when its metric stalls (early stopping)."""
    storage = storage.resolve()
    experiment = storage / EXPERIMENT
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "configure_logging": True,
        }
        if ray_options.address:
            kwargs["address"] = ray_options.address
        else:
            kwargs["num_cpus"] = ray_options.cpus
        if ray_options.working_dir:
            kwargs["runtime_env"] = {"working_dir": ray_options.working_dir}
        try:
            _init_ray(kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise OptionError(
                f"cannot start or reach Ray{' at ' + ray_options.address if ray_options.address else ''}: "
                f"{printable(str(exc).strip().splitlines()[0] if str(exc).strip() else exc, 200)}"
            ) from exc
    try:
        resources = {"cpu": ray_options.cpus_per_trial, "gpu": ray_options.gpus_per_trial}
        trainable = tune.with_resources(_trainable, resources)
        callbacks: list[tune.Callback] = [_Progress(metric)]
        if resume:
            if not tune.Tuner.can_restore(str(experiment)):
                raise OptionError(f"nothing to resume in {experiment}: no Tune experiment there")
            tuner = tune.Tuner.restore(
                str(experiment), trainable=trainable, resume_unfinished=True, restart_errored=True
            )
        else:
            space = {
                "trial": tune.grid_search(trials),
                "_train": train,
                "_cwd": os.getcwd(),
                "_threads": max(1, int(ray_options.cpus_per_trial)),
                "_stop": list(stop) if stop else None,
            }
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                # reuse_actors: a worker process runs trial after trial, so torch and the train function are
                # imported once per worker, not once per trial (5.0 s → 0.7 s of overhead per trial, docs/benchmarks.md)
                tune_config=tune.TuneConfig(trial_name_creator=_name, trial_dirname_creator=_name, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=EXPERIMENT,
                    storage_path=str(storage),
                    verbose=0,
                    callbacks=callbacks,
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                ),
            )
        global _handler
        _handler = on_event
        try:
            with _tune_environment(), _graceful_stop(f"finished trials are kept in {storage}; continue with --resume"):
                grid = tuner.fit()
        finally:
            _handler = None
    finally:
        if started_here:
            ray.shutdown()
    outcomes = []
    for result in (grid[i] for i in range(len(grid))):
        cfg = (result.config or {}).get("trial", {})
        rows = _rows(result.metrics_dataframe)
        error = None
        if result.error is not None:
            error = printable(" ".join(str(result.error).split())[-300:] or type(result.error).__name__, 300)
        outcomes.append(TrialOutcome(str(cfg.get("cell")), int(cfg.get("seed", -1)), rows, error))
    return outcomes


def available() -> str:
    """Ray's version (this module imports only where Ray is installed)."""
    return getattr(ray, "__version__", "?") + f" (python {sys.version.split()[0]})"
