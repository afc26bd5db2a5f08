"""The ``entropyflow`` command line: each command parses, makes one library call, renders.

Errors are mapped to exit codes in one place (:func:`_errors` with :func:`errors.exit_code`):
a user error prints one line on stderr and exits 2; anything unexpected exits 1 (traceback with
``--debug``). Heavy imports happen inside commands, after the output folder has been checked.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import os
import signal
import sys
import traceback
from contextlib import contextmanager
from typing import Any, NoReturn

from .errors import EXIT_INTERNAL, EntropyflowError, Interrupted, OptionError, exit_code, one_line

_STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class _Signals:
    """SIGTERM/SIGHUP over the command's whole life: ``received`` is the first one (the exit code is
    128 + it, whenever it came); while ``armed`` (a command runs) it also raises :class:`Interrupted`,
    once, so that the run ends through its cleanup. A second signal never interrupts that cleanup."""

    received: int | None = None
    armed = False


def _on_signal(signum: int, _frame) -> None:
    if _Signals.received is None:
        _Signals.received = signum
    if _Signals.armed:
        _Signals.armed = False
        raise Interrupted(signum)


def _is_entry_point() -> bool:
    """Whether this process is the entropyflow command (its console script, ``python -m
    entropyflow``), not a program that imports the CLI (tests, embedding)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return spec.name == "entropyflow.__main__"
    return os.path.basename(getattr(main, "__file__", "") or "").partition(".")[0] == "entropyflow"


_ENTRY = _is_entry_point()
if _ENTRY:  # before the heavy imports below (~0.2 s): a signal from here on is recorded, never fatal
    for _sig in _STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(_sig, _on_signal)

import typer  # noqa: E402 - after the signal handlers, on purpose
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from . import vocab  # noqa: E402
from ._version import __version__  # noqa: E402
from .text import printable  # noqa: E402


class _OneLineUsageErrors(TyperGroup):
    """Bad command lines (unknown option, non-numeric value...) get one line on stderr and exit 2,
    like every other bad input, instead of click's multi-line usage box."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        with _usage_errors():
            return super().invoke(ctx)


# typer raises the UsageError of the click it ships with (public only through BadParameter's bases)
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@contextmanager
def _usage_errors():
    try:
        yield
    except Interrupted as stopped:  # SIGTERM/SIGHUP outside a command's own handling (parsing, a callback)
        _say_interrupted(Console(stderr=True), stopped)
        raise typer.Exit(exit_code(stopped)) from None
    except _UsageError as caught:
        if type(caught).__name__ == "NoArgsIsHelpError":  # bare `entropyflow`: the help page
            raise
        exc: Any = caught  # click's UsageError: ctx, format_message(), exit_code
        where = exc.ctx.command_path if exc.ctx is not None else "entropyflow"
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(printable(one_line(exc.format_message())))} (see '{where} --help')",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_OneLineUsageErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Measure how entropy flows through trained neural networks, from their weights alone.",
)


def _console(stderr: bool = False) -> Console:
    """A console; when output is not a terminal (a pipe, a file) tables get 160 columns, not 80."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=160 if wide else None)


def _consoles(ctx: typer.Context) -> tuple[Console, Console]:
    """The output and error consoles: injectable through ``ctx.obj`` (tests, embedding)."""
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    return obj.get("console") or _console(), obj.get("err_console") or _console(stderr=True)


@contextmanager
def _errors(err: Console, debug: bool):
    """The single mapping from exceptions to messages and exit codes."""
    try:
        yield
    except typer.Exit:
        raise
    except EntropyflowError as exc:
        if debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        err.print(f"[bold red]error:[/] {escape(printable(one_line(exc, 2000)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt as exc:
        _say_interrupted(err, exc)
        raise typer.Exit(exit_code(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become exit code 1
        if debug:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(printable(one_line(exc, 500)))} "
            "(re-run with --debug for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def _say_interrupted(err: Console, exc: KeyboardInterrupt) -> None:
    what = "interrupted"
    if isinstance(exc, Interrupted):
        what = f"{'interrupted' if exc.signum == signal.SIGINT else 'terminated'} ({exc.name})"
    hint = f": {escape(printable(exc.hint, 300))}" if isinstance(exc, Interrupted) and exc.hint else ""
    err.print(f"[bold red]{what}[/]{hint}", highlight=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"entropyflow {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """entropyflow: per-layer, per-filter entropy change of conv/dense layers (Meni et al.)."""


def _prefetch_hash(model: str | None, weights: str | None, enabled: bool) -> None:
    """Start hashing checkpoint files before torch is imported (hashlib releases the GIL)."""
    if not enabled:
        return
    from .load.hashing import sha256_async
    from .load.paths import resolve_checkpoint
    from .spec import parse_spec

    for text in (weights, model):
        try:
            if text and parse_spec(text).is_file:
                sha256_async(resolve_checkpoint(text).files)
        except (EntropyflowError, OSError):
            pass  # the real load reports it


class _Progress:
    """Maps library progress callbacks onto a transient rich progress bar with an ETA when stderr
    is a terminal; otherwise (a log, a pipe) one plain line on ``log`` (stdout) per phase that took
    a second or more, when it finishes. stderr stays for errors: a failing run prints one line there."""

    LOG_AFTER_S = 1.0

    LABELS = {
        "load": "loading weights",
        "trace": "tracing on meta",
        "estimate": "estimating layers",
        "seeds": "random-init seeds (one analysis each)",
        "track": "checkpoints",
    }

    def __init__(self, console: Console, log: Console | None = None):
        self.console = log
        self.enabled = console.is_terminal
        self.bar = None
        self.tasks: dict[str, Any] = {}  # stage → rich TaskID
        self.started: dict[str, float] = {}
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        import time

        if not self.bar:
            if self.console is None:
                return
            start = self.started.setdefault(stage, time.perf_counter())
            took = time.perf_counter() - start
            if done >= total and stage not in self.tasks and took >= self.LOG_AFTER_S:
                self.tasks[stage] = None  # said once per phase
                self.console.print(
                    f"{self.LABELS.get(stage, stage)}: {done}/{total} in {took:.1f} s",
                    highlight=False,
                    markup=False,
                )
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(self.LABELS.get(stage, stage), total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


# --- the options of every command that loads a model, declared once --------------------------------

_MODEL_OPTIONS = [  # (parameter, AnalyzeOptions field, type, typer option)
    (
        "arch",
        "arch",
        str | None,
        typer.Option(
            None,
            "--arch",
            help="Architecture of a bare state dict, e.g. torchvision:resnet50 (gives geometry and totals).",
        ),
    ),
    (
        "weights",
        "weights",
        str | None,
        typer.Option(None, "--weights", help="Weights file for a torchvision:/timm: spec instead of the local cache."),
    ),
    (
        "key",
        "key",
        str | None,
        typer.Option(None, "--key", help="Entry of a checkpoint dict that holds the weights (e.g. state_dict_ema)."),
    ),
    (
        "random_init",
        "random_init",
        bool,
        typer.Option(False, "--random-init", help="Random initialisation of a zoo spec (reproducible with --seed)."),
    ),
    ("seed", "seed", int, typer.Option(0, "--seed", help="Seed for --random-init (torch.manual_seed).")),
    (
        "input_size",
        "input_size",
        str | None,
        typer.Option(None, "--input-size", help="Input size without batch, e.g. 3x224x224 (default: the model's own)."),
    ),
    (
        "input",
        "input",
        list[str] | None,
        typer.Option(
            None,
            "--input",
            metavar="DTYPE:SHAPE",
            help="Example input as DTYPE:SHAPE with the batch dimension, e.g. long:1x128 (128 token ids) for "
            "transformers; default: from the model's config. Repeat it once per forward argument, in order "
            "(e.g. two frames, or int:16000 for a number).",
        ),
    ),
    (
        "channel_rule",
        "channel_rule",
        str,
        typer.Option(
            "first",
            "--channel-rule",
            help="first (paper, default) or mean over input channels (the regularizer uses the same rule).",
        ),
    ),
    (
        "device",
        "device",
        str,
        typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N: where the arithmetic runs (same numbers)."),
    ),
    (
        "max_gpu_mem",
        "max_mem",
        str | None,
        typer.Option(
            None,
            "--max-gpu-mem",
            help="Memory budget of batched work on the device, e.g. 4GiB (default 256MiB; raise it on a GPU).",
        ),
    ),
    (
        "trust_code",
        "trust_code",
        bool,
        typer.Option(
            False,
            "--trust-code",
            "--unsafe-pickle",
            help="Allow files whose loading runs code from them: pickled Python objects (a whole nn.Module) and "
            "TorchScript archives.",
        ),
    ),
]
DEBUG = typer.Option(False, "--debug", help="Show tracebacks.")


def _with_model_options(command):
    """Add the shared model options to ``command``'s parameters; it receives them as one dict of
    :class:`AnalyzeOptions` fields, ``model_options``."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "model_options"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, _field, kind, option in _MODEL_OPTIONS
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        fields = {field: kwargs.pop(name) for name, field, _kind, _option in _MODEL_OPTIONS}
        return command(**kwargs, model_options=fields)

    # the command's context and arguments, then the shared options, then the command's own options
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    first = [p for p in keyword if p.name == "ctx" or isinstance(p.default, typer.models.ArgumentInfo)]
    rest = [p for p in keyword if p not in first]
    wrapper.__signature__ = signature.replace(parameters=[*first, *shared, *rest])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(command, "__annotations__", {}), **{n: k for n, _f, k, _o in _MODEL_OPTIONS}}
    return wrapper


@app.command()
@_with_model_options
def analyze(
    ctx: typer.Context,
    model: str | None = typer.Argument(
        None,
        help="Checkpoint file or folder, torchvision:NAME[.TAG], timm:NAME[.TAG] or sample:NAME. Default: the bundled "
        "sample.",
    ),
    estimator: str = typer.Option(
        "paper", "--estimator", help="paper: log|c11| per filter (SPEC §2-3); spectral: Σ log σ, basis-invariant."
    ),
    out: str = typer.Option(
        "entropyflow-report",
        "--out",
        "-o",
        help="Folder for layers.csv, filters.csv, analysis.json, figures, report.html.",
    ),
    no_trace: bool = typer.Option(False, "--no-trace", help="Do not run the forward pass (no geometry, no totals)."),
    no_hash: bool = typer.Option(False, "--no-hash", help="Do not compute the checkpoint's sha256 for provenance."),
    compare: str | None = typer.Option(
        None,
        "--compare",
        help="Draw beside a reference: 'random' (same architecture, random init) or another model spec/file.",
    ),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        help="With --compare random: number of random initialisations (default 10; each is one more analysis of the "
        "architecture). The model's own seed is never among them.",
    ),
    plot_format: str = typer.Option("png", "--plot-format", help="png, svg or pdf for entropy.* and profile.*."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Write no figures."),
    plot_total: bool = typer.Option(
        False, "--plot-total", help="Plot per-filter totals instead of per-position values."
    ),
    labels: str = typer.Option("index", "--labels", help="x-axis labels: index (1…L) or names (dotted module names)."),
    no_html: bool = typer.Option(False, "--no-html", help="Do not write report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table (files are still written)."),
    output_format: str = typer.Option(
        "table",
        "--format",
        help="What goes to stdout: table (rich) or json (analysis.json, for scripts; files are still written).",
    ),
    debug: bool = DEBUG,
    model_options: dict | None = None,
) -> None:
    """Per-layer, per-filter entropy change of every conv/dense layer, in forward execution order."""
    console, err = _consoles(ctx)
    with _errors(err, debug):
        if output_format not in ("table", "json"):
            raise OptionError(f"--format must be table or json, not {printable(output_format, 40)!r}")
        _prefetch_hash(model, (model_options or {}).get("weights"), not no_hash)
        # deliberate start-up saving: torch and the pipeline are imported after the hashing has started
        from .analysis import AnalyzeOptions
        from .report import ReportOptions
        from .report.terminal import render_analysis
        from .runs import analyze_to

        options = AnalyzeOptions(
            **(model_options or {}), estimator=vocab.estimator(estimator), trace=not no_trace, hash_files=not no_hash
        )
        report = ReportOptions(
            plot=not no_plot,
            plot_format=vocab.plot_format(plot_format),
            total=plot_total,
            labels=vocab.label_mode(labels),
            html=not no_html,
        )
        with _Progress(err, None if output_format == "json" or quiet else console) as progress:
            written = analyze_to(out, model, options, report, compare=compare, seeds=seeds, progress=progress)
        if output_format == "json":
            from .report.jsonio import analysis_json

            console.file.write(analysis_json(written.result, written.reference).decode("utf-8", "backslashreplace"))
            console.file.flush()
            return
        if not quiet:
            render_analysis(written.result, console, written.reference)
        _wrote(console, written.files, written.out)


def _wrote(console: Console, written, out_dir) -> None:
    from rich.text import Text

    console.print(
        Text(printable(f"wrote {', '.join(p.name for p in written)} to {out_dir}"), style="dim"), highlight=False
    )


@app.command()
@_with_model_options
def recommend(
    ctx: typer.Context,
    source: str | None = typer.Argument(
        None,
        help="A saved analysis.json (or its report folder), or a model as for analyze. Default: the bundled sample.",
    ),
    out: str = typer.Option("lambda.yaml", "--out", "-o", help="Config file to write (.yaml, .yml or .json)."),
    strategy: str = typer.Option(
        "auto", "--strategy", help="auto, first, first-k, pre-skip, empirical, largest-change, dense-first or all."
    ),
    k: int = typer.Option(1, "--k", help="first-k: number of leading conv layers."),
    top_k: int | None = typer.Option(
        None, "--top-k", help="empirical / largest-change: number of layers (empirical default: robust z-score rule)."
    ),
    z: float = typer.Option(
        1.0,
        "--z",
        help="empirical / largest-change: robust z-score threshold on the layer means (or their magnitudes).",
    ),
    lam: float = typer.Option(1e-3, "--lambda", help="λ2 of conv layers (the paper's best: ≥ 1e-3)."),
    lam_dense: float = typer.Option(
        1e-4, "--lambda-dense", help="λ1 of dense layers (the paper's autoencoders: ≥ 1e-4)."
    ),
    form: str = typer.Option("log", "--form", help="log (eqs. 21/23) or inverse (eqs. 24/25, stabilised)."),
    epsilon: float = typer.Option(1e-4, "--epsilon", help="ε of the inverse form."),
    per_filter: str = typer.Option(
        "none",
        "--per-filter",
        help="Per-filter λ: none, uniform (written out, to edit) or outliers (λ on the reference's low-outlier "
        "filters only; for fine-tuning).",
    ),
    debug: bool = DEBUG,
    model_options: dict | None = None,
) -> None:
    """A λ placement config for the entropy regularizer (the paper's Figure 7 strategy)."""
    console, err = _consoles(ctx)
    with _errors(err, debug):
        # deliberate start-up saving: the pipeline (torch) is imported only when a command runs
        from .analysis import AnalyzeOptions
        from .recommend.placement import RecommendOptions
        from .recommend.source import recommend_to
        from .report.terminal import render_recommendation

        options = RecommendOptions(
            strategy=strategy,
            k=k,
            top_k=top_k,
            z=z,
            lam_conv=lam,
            lam_dense=lam_dense,
            form=form,
            epsilon=epsilon,
            per_filter=per_filter,
        )
        with _Progress(err, console) as progress:
            rec, path = recommend_to(out, source, AnalyzeOptions(**(model_options or {})), options, progress)
        render_recommendation(rec.config, console, path)


@app.command()
def compare(
    ctx: typer.Context,
    analyses: list[str] = typer.Argument(
        ..., help="Two or more analysis.json files (or report folders) to draw side by side."
    ),
    out: str = typer.Option("entropyflow-compare", "--out", "-o", help="Folder for compare.* and compare-profile.*."),
    plot_format: str = typer.Option("png", "--plot-format", help="png, svg or pdf."),
    plot_total: bool = typer.Option(
        False, "--plot-total", help="Plot per-filter totals instead of per-position values."
    ),
    labels: str = typer.Option("index", "--labels", help="x-axis labels: index (1…L) or names."),
    debug: bool = DEBUG,
) -> None:
    """Saved analyses on one axis: up to 5 as side-by-side panels (the paper's Figure 1), more as a heatmap."""
    console, err = _consoles(ctx)
    with _errors(err, debug):
        # deliberate start-up saving: matplotlib and the report modules load only when a command runs
        from .report import ReportOptions
        from .runs import compare_to

        report = ReportOptions(
            plot_format=vocab.plot_format(plot_format), total=plot_total, labels=vocab.label_mode(labels), html=False
        )
        written = compare_to(out, analyses, report)
        _wrote(console, written.files, written.out)


@app.command()
@_with_model_options
def track(
    ctx: typer.Context,
    checkpoints: list[str] = typer.Argument(
        ..., help="Checkpoint files, folders of checkpoints, or globs ('ckpts/epoch_*.ckpt'), in natural order."
    ),
    out: str = typer.Option(
        "entropyflow-track", "--out", "-o", help="Folder for trajectory.csv, checkpoints.csv and the figures."
    ),
    stat: str = typer.Option("median", "--stat", help="Layer statistic to track: median, mean or total."),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="Regex for the checkpoint labels (its first group), e.g. 'epoch=(\\d+)'; default: file stems.",
    ),
    seeds: int = typer.Option(
        5, "--seeds", help="Random-init seeds for each layer's level (one analysis each; 0: relative to the first)."
    ),
    layer: list[str] = typer.Option(
        [], "--layer", help="A layer for the lines plot (repeatable; default: the 5 that move most)."
    ),
    estimator: str = typer.Option("paper", "--estimator", help="paper or spectral."),
    plot_format: str = typer.Option("png", "--plot-format", help="png, svg or pdf."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Write no figures."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table (files are still written)."),
    debug: bool = DEBUG,
    model_options: dict | None = None,
) -> None:
    """When does the entropy pattern form? One analysis per checkpoint (cached by file hash), as a heatmap."""
    console, err = _consoles(ctx)
    with _errors(err, debug):
        # deliberate start-up saving: torch and the pipeline are imported only when a command runs
        from .analysis import AnalyzeOptions
        from .report import ReportOptions
        from .report.terminal import render_trajectory
        from .runs import track_to
        from .track import TrackOptions

        options = AnalyzeOptions(**(model_options or {}), estimator=vocab.estimator(estimator))
        topts = TrackOptions(statistic=stat, labels=labels, seeds=seeds)
        report = ReportOptions(plot=not no_plot, plot_format=vocab.plot_format(plot_format), html=False)
        with _Progress(err, None if quiet else console) as progress:
            written = track_to(out, checkpoints, options, topts, report, tuple(layer), progress)
        if not quiet and written.trajectory is not None:
            render_trajectory(written.trajectory, console)
        _wrote(console, written.files, written.out)


@app.command()
def sweep(
    ctx: typer.Context,
    train: str | None = typer.Argument(
        None, help="Your training function: MODULE:FUNCTION or FILE.py:FUNCTION (docs/training.md: the contract)."
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        help="A built-in task instead: digits-autoencoder, digits-cnn or digits-unet "
        "(the paper's experiments on digits).",
    ),
    lambdas: str | None = typer.Option(
        None,
        "--lambdas",
        help="Comma-separated λ values; 0 (the baseline) is always run. Default: the task's, else 0,1e-4,1e-3,1e-2.",
    ),
    placements: str | None = typer.Option(
        None,
        "--placements",
        help="Comma-separated recommend strategies (first, first-k, pre-skip, empirical, largest-change, "
        "dense-first, all), computed on --reference.",
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="A well-trained model of the architecture (spec or file) or its analysis.json, for --placements.",
    ),
    config: list[str] = typer.Option(
        [], "--config", help="A λ config (from recommend) as one more placement; repeat for several."
    ),
    seeds: int = typer.Option(10, "--seeds", help="Number of seeds, the same for every cell (paired comparisons)."),
    first_seed: int = typer.Option(
        0, "--first-seed", help="The first seed (seeds FIRST…FIRST+N-1): pilots, more seeds."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs per trial (the training function reads config['epochs'])."
    ),
    metric: str | None = typer.Option(None, "--metric", help="The reported metric the sweep compares (e.g. val_loss)."),
    mode: str | None = typer.Option(None, "--mode", help="min or max: which way the metric is better."),
    target: float | None = typer.Option(
        None, "--target", help="The metric value that counts as converged: epochs and time to reach it are compared."
    ),
    patience: int | None = typer.Option(
        None,
        "--patience",
        help="Early stopping: a trial ends after this many epochs without improving its metric, and the "
        "stopping epoch is compared (the paper: 7 for autoencoders).",
    ),
    primary: str | None = typer.Option(
        None,
        "--primary",
        help="The outcome the best cell is chosen on: final, best, epochs_to_target, seconds_to_target or "
        "stop_epoch (default: epochs_to_target with --target, else final).",
    ),
    param: list[str] = typer.Option(
        [], "--param", help="KEY=VALUE passed to the training function in config['params']; repeat."
    ),
    out: str = typer.Option(
        "entropyflow-sweep", "--out", "-o", help="Folder for the report; Ray Tune's storage is OUT/tune."
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="An existing Ray cluster (ray://head:10001 or auto); default: a local Ray, started and stopped here.",
    ),
    cpus: int | None = typer.Option(None, "--cpus", help="CPUs of the local Ray (default: all)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPUs (and torch threads) per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="GPUs per trial (fractions share a GPU)."),
    working_dir: str | None = typer.Option(
        None, "--working-dir", help="Shipped to a cluster's workers so that they can import your training module."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted sweep in OUT without re-running finished trials."
    ),
    retries: int = typer.Option(
        1, "--retries", help="Times a trial whose Ray worker died is run again from its start (a raise is final)."
    ),
    plot_format: str = typer.Option("png", "--plot-format", help="png, svg or pdf."),
    debug: bool = DEBUG,
) -> None:
    """Does the entropy term help your model? λ × placements × seeds on Ray Tune, paired against the baseline."""
    console, err = _consoles(ctx)
    with _errors(err, debug):
        # deliberate start-up saving: torch, the pipeline and (inside) Ray load only when the command runs
        from .sweep import RayOptions, SweepRequest, parse_params
        from .sweep import sweep as run_sweep
        from .sweep.render import render_summary
        from .sweep.spec import parse_floats

        request = SweepRequest(
            train=train,
            task=task,
            configs=tuple(config),
            reference=reference,
            placements=tuple(p.strip() for p in placements.split(",") if p.strip()) if placements else None,
            lambdas=parse_floats(lambdas, "--lambdas") if lambdas else None,
            seeds=seeds,
            first_seed=first_seed,
            epochs=epochs,
            metric=metric,
            mode=mode,
            target=target,
            patience=patience,
            primary=primary,
            params=parse_params(param),
            resume=resume,
            plot_format=plot_format,
        )
        ray_options = RayOptions(
            address=address,
            cpus=cpus,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            working_dir=working_dir,
            retries=retries,
        )
        with _LiveTrials(err) as live:
            result = run_sweep(request, out, ray_options, on_event=live.on_event)
        render_summary(result.summary, console, result.failed)
        _wrote(console, result.files, result.out)
        if not result.complete:  # exit 3: the report is written, but scripts and CI must notice
            from .errors import IncompleteError

            total = len(result.summary.spec.cells) * len(result.summary.spec.seeds)
            raise IncompleteError(f"{len(result.failed)} of {total} trials failed (the report above counts them)")


class _LiveTrials:
    """The live table of trials while a sweep runs on a terminal; elsewhere (a log, CI) one line per
    trial as it ends: its cell, seed, outcome and time."""

    def __init__(self, console: Console):
        self.console = console
        self.live: Any = None
        self.board: Any = None

    def __enter__(self) -> _LiveTrials:
        return self

    def on_event(self, event: Any) -> None:
        if not self.console.is_terminal:
            if event.state in ("done", "failed") and event.trial:  # not the finished trials a resume skips
                from .sweep.render import trial_line

                self.console.print(trial_line(event), highlight=False, soft_wrap=True)
            return
        if self.board is None:
            from rich.live import Live

            from .sweep.render import TrialBoard

            self.board = TrialBoard()
            self.live = Live(self.board.render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        self.board.update(event)
        self.live.update(self.board.render())

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. SIGTERM and SIGHUP end the run like Ctrl-C does: through the
    same cleanup (no partial files, background work joined), with exit code 128 + the signal,
    whenever they come: during start-up, a command, its cleanup or the interpreter's exit."""
    from . import background

    previous = {}
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread (embedded): leave the defaults
            previous[sig] = signal.signal(sig, _on_signal)
    code = EXIT_INTERNAL
    try:
        try:
            if _Signals.received is None:  # not already signalled during start-up
                _Signals.armed = bool(previous)
                app(args=argv, prog_name="entropyflow", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            _Signals.armed = False
            background.shutdown()
    except KeyboardInterrupt as exc:  # raised outside a command's own handling (while parsing, say)
        code = exit_code(exc)
    code = _signalled(code)
    if not _ENTRY:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _Signals.received = None
        return code
    _exit(code)


def _signalled(code: int) -> int:
    """``code``, or 128 + the signal received (saying so, unless the command's handler did)."""
    sig = _Signals.received
    if sig is None:
        return code
    if code != 128 + sig:
        with contextlib.suppress(OSError):
            os.write(2, f"terminated ({signal.Signals(sig).name})\n".encode())
    return 128 + sig


def _exit(code: int) -> NoReturn:
    """End the entropyflow process now, without the interpreter's teardown (unloading torch takes
    long enough for a signal to land after Python's handlers are gone, killing the process with
    -15): exit handlers run and output is flushed first; a signal until the very end gives 128 + it."""
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # from here, a signal waits (and dies with us)
        for _ in range(2):  # a loop's backward jump runs a Python handler already tripped by a delivered signal
            pass
        _Signals.received = _Signals.received or min(signal.sigpending() & set(_STOP_SIGNALS), default=None)
    os._exit(_signalled(code))


if __name__ == "__main__":
    sys.exit(main())
