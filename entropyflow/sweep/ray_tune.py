"""Running a sweep's trials on Ray Tune (the ``[sweep]`` extra; this module imports Ray).

A local Ray is started and stopped here unless ``address`` names an existing cluster. Each run is
a new Tune experiment in ``OUT/tune`` (``sweep``, then ``resume-1``, ``resume-2``… for the runs
that resume it): Tune's own files, pickles included, are written there but never read back. What a
resume needs is what the driver records as results arrive (:mod:`.records`). A trial whose Ray
worker dies is run again from its start up to ``RayOptions.retries`` times (Tune's
``max_failures``); a trial whose training function raises fails at once (the same seed would
raise again). A failed trial is reported with its whole error message and does not stop the sweep
(no fail-fast). A report without ``--metric`` does: the sweep stops at once and says
what was reported (:class:`_MetricCheck`).

The local Ray started here listens on the loopback interface only: its GCS, raylet, object
manager and workers accept no connection from another machine (how Ray is started or joined, and
the token probe of a cluster, are :mod:`entropyflow.raycluster`'s, shared with ``track``).
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ..errors import Interrupted, OptionError
from ..raycluster import LOOPBACK
from ..raycluster import auth_problem as _auth_problem
from ..raycluster import check_loopback as _check_loopback
from ..raycluster import init_ray as _init_ray
from ..raycluster import loopback_only as _loopback_only
from ..raycluster import restore_environ as _restore_environ
from ..text import printable
from ..words import arg, option
from . import contract, stats
from .contract import ReportError, missing_metric, report_row
from .events import RayOptions, TrialEvent, TrialOutcome
from .records import Recorder
from .tasks import train_function

EXPERIMENT = "sweep"
MAX_RUNS = 1000  # resume-1 … resume-999


ROWS = "entropyflow_rows"  # the result field that carries the epochs since the previous report (JSON)
DONE = "entropyflow_done"  # set on the last result of a trial whose training function returned
FAILED = "entropyflow_failed"  # the whole error of a trial whose training function raised (not retried)
PLACED = "entropyflow_placed"  # what entropyflow.sweep.regularizer placed in the trial (JSON), sent once
REPORT_EVERY_S = 1.0


def _trainable(config: dict[str, Any]) -> None:
    """What Ray runs for every trial: imports the training function and calls it with the trial's
    config and a ``report`` that checks each epoch's row (:func:`.contract.report_row`) and
    collects it.

    Epochs reach Tune in batches, at most about once a second (and at the end): Tune's driver
    spends ~0.2 s on every result it receives (loggers, state, callbacks), so a report per epoch
    of a fast model would leave the trials waiting on the driver. Each batch rides in the result
    as JSON (``ROWS``, the result's only field, so no metric name can collide with Tune's), through
    Tune's own storage, so every epoch arrives on a cluster too. A call that breaks the contract
    raises :class:`.contract.ReportError`, and so does every later call and the end of the
    trial, even if the training function catches the first. An exception ends the trial with a
    last result that carries it whole (``FAILED``): Tune retries only a worker that died."""
    torch.set_num_threads(int(config.get("_threads", 1)))  # one thread per CPU of the trial: reproducible sums
    train = train_function(config["_train"], config.get("_cwd"))
    trial = dict(config["trial"])
    epochs = int(trial["epochs"])
    started = time.perf_counter()
    metric = config.get("_metric")
    stop_metric, stop_mode, patience = config.get("_stop") or (None, "min", 0)
    rule = stats.EarlyStop(int(patience), stop_mode) if stop_metric else None
    pending: list[dict[str, Any]] = []
    last = [-math.inf]
    previous: list[int] = []
    broken: list[ReportError] = []

    contract.placed.clear()
    sent: list[str] = []

    def placed() -> dict[str, str]:
        """The placement, the first time a report can carry it (or when it changed)."""
        if not contract.placed:
            return {}
        text = json.dumps(contract.placed[-1])
        if sent and sent[-1] == text:
            return {}
        sent.append(text)
        return {PLACED: text}

    def flush(done: bool = False) -> None:
        if pending or done or (contract.placed and not sent):
            tune.report({ROWS: json.dumps(pending), **placed(), **({DONE: True} if done else {})})
            pending.clear()
            last[0] = time.perf_counter()

    def report(*, epoch: int, **metrics: float) -> None:
        if broken:
            raise broken[0]
        try:
            row = report_row(epoch, metrics, previous[-1] if previous else None, epochs)
        except ReportError as exc:
            broken.append(exc)
            raise
        previous.append(row["epoch"])
        pending.append({**row, "wall_s": time.perf_counter() - started})
        problem = missing_metric(metric, row) if metric else None
        if problem is not None:  # the driver stops the sweep when it sees this row (_MetricCheck)
            flush()
            broken.append(ReportError(problem))
            raise broken[0]
        value = row.get(stop_metric) if stop_metric else None
        stalled = rule is not None and value is not None and rule.update(value)
        if stalled or time.perf_counter() - last[0] >= REPORT_EVERY_S:
            flush()
        if stalled:
            raise _EarlyStopped

    try:
        with contextlib.suppress(_EarlyStopped):  # the trial is complete: its metric stalled for the patience
            train(trial, report)
        if broken:  # the training function caught the error and went on: the trial still fails
            raise broken[0]
        entropy = trial.get("entropy")
        if isinstance(entropy, dict) and "rule" in entropy and not contract.placed:
            # a rule is built only by regularizer(): without the call the cell trained as the baseline
            raise ReportError(
                "the training function never called entropyflow.sweep.regularizer(model, config), which builds "
                f"this cell's entropy term (placement {printable(entropy['rule'], 40)}, resolved on the model): it "
                "trained without the term, so its result would be the baseline's"
            )
    except Exception as exc:  # noqa: BLE001 - the user's function can raise anything: the trial fails with it
        # a raise is the seed's own outcome (the same seed raises again): reported, whole, and not retried;
        # only a worker that dies (nothing of this runs) is run again (--retries)
        tune.report({ROWS: json.dumps(pending), **placed(), FAILED: failure_text(exc)})
        return
    except BaseException:
        flush()  # the epochs before an interruption too
        raise
    flush(done=True)  # only this makes the trial's record "finished" (a trial Tune stops is not)


def failure_text(exc: BaseException) -> str:
    """An exception raised by a trial as one whole line: its type and every line of its message
    (a contract violation as ``rejected: …``)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ReportError):
        return printable("rejected: " + text, ERROR_LIMIT)
    return printable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, ERROR_LIMIT)


class _EarlyStopped(BaseException):  # noqa: N818 - not an error: BaseException so that `except Exception` in a train function cannot swallow it
    """Raised from ``report`` to end a trial whose metric has stalled for the patience."""


class _MetricCheck(tune.Stopper):
    """Stops the whole experiment at the first reported row without ``--metric`` (a typo would
    otherwise train every trial and compare nothing), and tells the driver what was reported. It
    runs where Tune's driver runs: on the cluster in client mode (``ray://``)."""

    def __init__(self, metric: str, sink: Any = None):
        self.metric = metric
        self.sink = sink
        self.missing: str | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        try:
            batch = json.loads(result.get(ROWS) or "[]")
        except (TypeError, ValueError):
            return False  # not what _trainable sends: the recorder refuses it
        for row in batch if isinstance(batch, list) else []:
            if isinstance(row, dict) and "epoch" in row:
                problem = missing_metric(self.metric, row)
                if problem is not None:
                    if self.missing is None:
                        self.missing = problem
                        _deliver(self.sink, ("missing", problem))
                    return True
        return False

    def stop_all(self) -> bool:
        return self.missing is not None


class _Driver:
    """The sweep's side of Tune's events: records every trial's rows and end
    (:class:`.records.Recorder`, what ``--resume`` reads) and tells the handler (the CLI's live
    table). Events come straight from Tune's callback on a local Ray, and through a queue from the
    cluster in client mode, where Tune's driver runs remotely (:func:`_drain`)."""

    def __init__(self, recorder: Recorder, handler: Callable[[TrialEvent], None] | None, metric: str):
        self.recorder, self.handler, self.metric = recorder, handler, metric
        self.missing: str | None = None

    def _send(
        self, trial: str, key: tuple[str, int], state: str, row: dict | None = None, error: str | None = None
    ) -> None:
        if self.handler is None:
            return
        row = row or {}
        seconds = row.get("wall_s")
        event = TrialEvent(trial, key[0], key[1], state, row.get("epoch"), row.get(self.metric), error)
        self.handler(replace(event, seconds=seconds if isinstance(seconds, float) else None, metric=self.metric))

    def apply(self, event: tuple) -> None:
        kind = event[0]
        if kind == "missing":
            self.missing = self.missing or str(event[1])
            return
        trial, key = str(event[1]), (str(event[2][0]), int(event[2][1]))
        if kind == "start":
            self.recorder.start(*key)
            self._send(trial, key, "running")
        elif kind == "result":
            batch, done, failed = event[3], bool(event[4]), event[5]
            batch = batch if isinstance(batch, list) else [None]
            if len(event) > 6 and event[6] is not None:
                self.recorder.place(*key, event[6])
            row = self.recorder.add(*key, batch, done=done)
            if failed is not None:  # the training function raised: the trial's end, with its error
                error = printable(failed, ERROR_LIMIT)
                self.recorder.end(*key, error=error)
                self._send(trial, key, "failed", row, error=error)
            else:
                self._send(trial, key, "running", row)
        elif kind == "complete":
            record = self.recorder.records.get(key)
            if record is not None and record.state == "failed":
                return  # it raised: said when its last result came (FAILED)
            self.recorder.end(*key)
            finished = record is not None and self.recorder.records[key].state == "finished"
            last = record.rows[-1] if record is not None and record.rows else None
            self._send(trial, key, "done" if finished else "stopped", last)  # stopped: by Tune, run again on --resume
        elif kind == "error":
            error = printable(str(event[3]), ERROR_LIMIT)
            self.recorder.end(*key, error=error)
            self._send(trial, key, "failed", error=error)


_driver: _Driver | None = None  # where events go while run() runs on a local Ray


def _deliver(sink: Any, event: tuple) -> None:
    """An event to the driver: directly on a local Ray (``sink`` None), through the queue actor
    in client mode."""
    if sink is None:
        if _driver is not None:
            _driver.apply(event)
    else:
        sink.put(event)


class _Progress(tune.Callback):
    """Forwards Tune's trial events to the sweep's driver (:class:`_Driver`). Tune pickles its
    callbacks with the experiment (and, in client mode, runs them on the cluster), so the driver
    is reached through :func:`_deliver`, never held."""

    def __init__(self, metric: str, sink: Any = None):
        self.metric = metric
        self.sink = sink

    def _emit(self, kind: str, trial: Any, *rest: Any) -> None:
        _deliver(self.sink, (kind, trial.trial_id, _key(trial), *rest))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit("start", trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        try:
            batch = json.loads(result.get(ROWS) or "[]")
        except (TypeError, ValueError):
            batch = [None]  # not what _trainable sends: refused as a bad row
        try:
            placed = json.loads(result[PLACED]) if PLACED in result else None
        except (TypeError, ValueError):
            placed = None
        self._emit("result", trial, batch, bool(result.get(DONE)), result.get(FAILED), placed)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit("complete", trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit("error", trial, _error_text(getattr(trial, "error_file", None)))


def _key(trial: Any) -> tuple[str, int]:
    cfg = trial.config.get("trial", {})
    return str(cfg.get("cell")), int(cfg.get("seed", -1))


ERROR_TAIL = 1 << 20  # bytes of Tune's error file read: its last failure, whole
ERROR_LIMIT = 2000  # characters of an error message kept (one line)
_FAILURE = re.compile(r"^Failure # \d+ \(occurred at [^)]*\)$", re.M)
_FRAME = re.compile(r'^\s+File "')  # a frame of a traceback: its code lines follow, indented


def error_message(text: str) -> str:
    """The whole message of a trial's last failure in Tune's error file: what follows the last
    frame of its traceback (the exception and every line of its message), or the whole failure
    where there is no traceback (Ray's account of a dead worker), joined into one line, without
    the class path of a contract violation."""
    blocks = _FAILURE.split(text)
    lines = [line.rstrip() for line in blocks[-1].splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if _FRAME.match(line)]
    start = frames[-1] + 1 if frames else 0
    while frames and start < len(lines) and lines[start][:1].isspace():
        start += 1  # the frame's code line (and its ^^^^ marks)
    message = " ".join(line.strip() for line in lines[start:])
    head, sep, rest = message.partition(f"{ReportError.__name__}: ")
    if sep and (not head or head.endswith(".")):
        message = "rejected: " + rest
    return printable(message or "the trial failed", ERROR_LIMIT)


def _error_text(error_file: str | None) -> str:
    """:func:`error_message` of the trial's error file (Tune's text file from this run)."""
    try:
        with open(error_file or "", "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - ERROR_TAIL))
            text = f.read().decode("utf-8", "replace")
            if size > ERROR_TAIL:
                text = text.partition("\n")[2]  # from the first whole line
    except OSError:
        text = ""
    return error_message(text)


@contextlib.contextmanager
def _tune_environment() -> Iterator[None]:
    """Tune's new console output prints where results are even at verbose=0; the library never
    prints, so the old reporter (silent at verbose=0) is selected while the sweep runs. Tune's own
    SIGINT handler is switched off: :func:`_graceful_stop` handles SIGINT and SIGTERM alike. Tune
    logs every failed trial with its traceback; the sweep reports them itself (one line each), so
    Tune's loggers are quiet below CRITICAL while it runs."""
    settings = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    loggers = [logging.getLogger(name) for name in ("ray.tune", "ray.air", "ray.train")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


def _tune_stop() -> None:
    """Tune's own graceful stop on a local Ray: SIGUSR1 to this process, where Tune's driver runs
    (it ends the running trials and returns from ``fit``)."""
    os.kill(os.getpid(), signal.SIGUSR1)


@contextlib.contextmanager
def _graceful_stop(hint: str, first: Callable[[], None] | None = None) -> Iterator[list[int]]:
    """SIGINT, SIGTERM or SIGHUP while trials run: ``first()`` asks Tune to stop, then
    :class:`Interrupted` is raised once it has; a second signal raises at once. The list of
    signals received is yielded (client mode polls it). Outside the main thread (where handlers
    cannot be set) the handlers in place are kept."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, _frame: Any) -> None:
        if received:
            raise Interrupted(signum, hint)
        received.append(signum)
        if first is not None:
            first()

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Interrupted(received[0], hint)


def _client_mode() -> bool:
    """Connected through Ray Client (``ray://``): Tune's driver then runs on the cluster."""
    return bool(ray.util.client.ray.is_connected())


def _queue() -> Any:
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})


POLL_S = 0.2  # how often the client drains the queue of events (and notices a signal)
STOP_WAIT_S = 30.0  # how long the client waits for the killed experiment to end before leaving it


def _drain(sink: Any, driver: _Driver) -> None:
    """Every event in the queue, in order, to the driver."""
    from ray.util.queue import Empty

    while True:
        try:
            events = sink.get_nowait_batch(max(1, sink.qsize()))
        except Empty:
            return
        for event in events:
            driver.apply(event)


def _fit_remotely(tuner: Any, sink: Any, driver: _Driver, hint: str) -> None:
    """Client mode: Tune's driver is an actor on the cluster (``Tuner.fit`` waits for it), so the
    fit waits in a thread while this one drains the events (the records and the live table keep
    up) and watches for a signal. A first SIGINT/SIGTERM/SIGHUP kills the remote experiment (its
    trials are owned by it and end with it), records what had arrived, and raises
    :class:`Interrupted` with the resume hint; the trials that had not finished run again on
    ``--resume``."""
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            tuner.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
            failure.append(exc)

    thread = threading.Thread(target=fit, name="entropyflow-tune-client", daemon=True)
    stopped_at: float | None = None
    with _graceful_stop(hint) as received:
        thread.start()
        while thread.is_alive():
            _drain(sink, driver)
            if received and stopped_at is None:
                stopped_at = time.monotonic()
                remote = getattr(tuner, "_remote_tuner", None)  # Tune's actor that runs the experiment
                if remote is not None:
                    with contextlib.suppress(Exception):  # noqa: BLE001 - already gone: nothing to stop
                        ray.kill(remote)
            if stopped_at is not None and time.monotonic() - stopped_at > STOP_WAIT_S:
                break  # ray.shutdown() below ends the session and what it owns
            time.sleep(POLL_S)
        _drain(sink, driver)
        with contextlib.suppress(Exception):  # noqa: BLE001 - the queue's actor ends with the session anyway
            ray.kill(sink.actor)
    if failure and not received and driver.missing is None:
        raise failure[0]


def _name(trial: Any) -> str:
    cfg = trial.config.get("trial", {})
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{cfg.get('cell')}-seed{cfg.get('seed')}")[:80] + f"-{trial.trial_id}"


def experiment_name(storage: Path) -> str:
    """A Tune experiment folder that does not exist yet: nothing Tune finds in it can be stale."""
    for k in range(MAX_RUNS):
        name = EXPERIMENT if k == 0 else f"resume-{k}"
        if not os.path.lexists(storage / name):
            return name
    raise OptionError(
        f"{printable(storage)} holds {MAX_RUNS} runs of this sweep already: choose another {option('out')}"
    )


def _check_fits(ray_options: RayOptions) -> None:
    """On a local Ray, a trial that asks for more than there is would wait for ever."""
    have = ray.cluster_resources()
    for what, want, flag in (
        ("CPU", ray_options.cpus_per_trial, option("cpus-per-trial")),
        ("GPU", ray_options.gpus_per_trial, option("gpus-per-trial")),
    ):
        if want > have.get(what, 0.0):
            raise OptionError(
                f"{flag} {want:g} is more than the local Ray has ({have.get(what, 0.0):g} {what}s): "
                f"lower it{', or raise ' + option('cpus') if what == 'CPU' else ''}"
            )


def run(
    trials: list[dict[str, Any]],
    train: str,
    storage: Path,
    metric: str,
    ray_options: RayOptions,
    recorder: Recorder,
    on_event: Callable[[TrialEvent], None] | None = None,
    stop: tuple[str, str, int] | None = None,
) -> list[TrialOutcome]:
    """Run every trial config in ``trials`` as a new Tune experiment in ``storage``, each recorded
    by ``recorder`` as it reports. ``stop``: (metric, mode, patience) ends each trial when its
    metric stalls (early stopping)."""
    storage = storage.resolve()
    name = experiment_name(storage)
    started_here = not ray.is_initialized()
    environ = dict(os.environ)  # Ray sets RAY_CLIENT_MODE, RAY_AUTH_MODE, PYTHONBREAKPOINT… in this process
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
            kwargs["address"] = "local"  # a Ray of its own: never one that `ray start` left running
            kwargs["num_cpus"] = ray_options.cpus
            kwargs["_node_ip_address"] = LOOPBACK
        if ray_options.working_dir:
            kwargs["runtime_env"] = {"working_dir": ray_options.working_dir}
        refused = _auth_problem(ray_options.address) if ray_options.address else None
        if refused is not None:
            raise OptionError(refused)
        try:
            with _loopback_only() if not ray_options.address else contextlib.nullcontext():
                _init_ray(kwargs)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            raise OptionError(
                f"cannot start or reach Ray{' at ' + ray_options.address if ray_options.address else ''}: "
                # whole: Ray puts the cause on the lines after the first
                f"{printable(' '.join(str(exc).split()) or type(exc).__name__, 600)}"
            ) from exc
    try:
        if started_here and not ray_options.address:
            _check_loopback()
            _check_fits(ray_options)
        resources = {"cpu": ray_options.cpus_per_trial, "gpu": ray_options.gpus_per_trial}
        trainable = tune.with_resources(_trainable, resources)
        space = {
            "trial": tune.grid_search(trials),
            "_train": train,
            "_cwd": os.getcwd(),
            "_threads": max(1, int(ray_options.cpus_per_trial)),
            "_stop": list(stop) if stop else None,
            "_metric": metric,
        }
        client = _client_mode()
        sink = _queue() if client else None  # Tune's driver runs on the cluster: its events come through a queue
        check = _MetricCheck(metric, sink)
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            # reuse_actors: a worker process runs trial after trial, so torch and the train function are
            # imported once per worker, not once per trial (5.0 s → 0.7 s of overhead per trial, docs/benchmarks.md)
            tune_config=tune.TuneConfig(trial_name_creator=_name, trial_dirname_creator=_name, reuse_actors=True),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                callbacks=[_Progress(metric, sink)],
                stop=check,
                failure_config=tune.FailureConfig(max_failures=ray_options.retries, fail_fast=False),
            ),
        )
        driver = _Driver(recorder, on_event, metric)
        hint = f"finished trials are kept in {storage}; continue with {arg('resume')}"
        global _driver
        _driver = driver
        try:
            with _tune_environment():
                if client:
                    _fit_remotely(tuner, sink, driver, hint)
                else:
                    with _graceful_stop(hint, _tune_stop):
                        tuner.fit()
        finally:
            _driver = None
        if driver.missing is not None:
            raise OptionError(
                f"{driver.missing}: the sweep stopped at that report; name one of those with {option('metric')} "
                f"(and a new {option('out')}, or remove {printable(storage.parent)})"
            )
    finally:
        if started_here:
            ray.shutdown()
            _restore_environ(environ)
    return recorder.outcomes(trials)


def available() -> str:
    """Ray's version (this module imports only where Ray is installed)."""
    return getattr(ray, "__version__", "?") + f" (python {sys.version.split()[0]})"
