"""``entropyflow track``: the entropy pattern over training checkpoints."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .. import vocab
from ..text import printable
from .app import app, consoles, wrote
from .errors import errors
from .options import (
    ESTIMATOR,
    EVIDENCE,
    OUTPUT,
    RAY,
    Arch,
    ChannelRuleOpt,
    Debug,
    Device,
    Input,
    InputSize,
    Key,
    MaxGpuMem,
    ModelFlags,
    NoPlot,
    PlotFormat,
    Quiet,
    RandomInit,
    Seed,
    TrustCode,
    Weights,
)


@app.command()
def track(
    ctx: typer.Context,
    checkpoints: Annotated[
        list[str],
        typer.Argument(
            metavar="CHECKPOINTS",
            help="Checkpoint files, folders of checkpoints, a Hugging Face Trainer output_dir (its checkpoint-N "
            "folders), or globs ('ckpts/epoch_*.ckpt'); ordered and labelled by step when the names or "
            "trainer_state.json give one, else in natural order.",
        ),
    ],
    arch: Arch = None,
    weights: Weights = None,
    key: Key = None,
    random_init: RandomInit = False,
    seed: Seed = 0,
    input_size: InputSize = None,
    input: Input = None,
    channel_rule: ChannelRuleOpt = "first",
    device: Device = "auto",
    max_gpu_mem: MaxGpuMem = None,
    trust_code: TrustCode = False,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Folder for trajectory.csv, checkpoints.csv and the figures.",
            rich_help_panel=OUTPUT,
            metavar="DIR",
        ),
    ] = "entropyflow-track",
    stat: Annotated[
        str,
        typer.Option(
            "--stat",
            help="Layer statistic to track: median, mean or total.",
            rich_help_panel=OUTPUT,
            metavar="median|mean|total",
        ),
    ] = "median",
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Regex for the checkpoint labels (its first group), e.g. 'epoch=(\\d+)'; default: the global step "
            "(checkpoint-N, trainer_state.json, Lightning's step=N) or epoch, else file stems.",
            rich_help_panel=OUTPUT,
            metavar="REGEX",
        ),
    ] = None,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            help="Random-init seeds for each layer's level (one analysis each; 0: relative to the first).",
            rich_help_panel=EVIDENCE,
            metavar="N",
        ),
    ] = 5,
    layer: Annotated[
        list[str],
        typer.Option(
            "--layer",
            help="A layer for the lines plot (repeatable; default: the 5 that move most).",
            rich_help_panel=OUTPUT,
            metavar="NAME",
        ),
    ] = [],  # noqa: B006 - typer's default of a repeatable option, never mutated
    estimator: Annotated[
        str, typer.Option("--estimator", help="paper or spectral.", rich_help_panel=ESTIMATOR, metavar="paper|spectral")
    ] = "paper",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Analyse the checkpoints in parallel on a local Ray of N worker processes (loopback only; "
            "needs entropyflow[sweep]).",
            rich_help_panel=RAY,
            metavar="N",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Analyse them as tasks on an existing Ray cluster (ray://HEAD:10001, HOST:PORT or auto); its workers "
            "must see the checkpoints at the same paths.",
            rich_help_panel=RAY,
            metavar="ADDRESS",
        ),
    ] = None,
    working_dir: Annotated[
        str | None,
        typer.Option(
            "--working-dir",
            help="With --address: a folder shipped to the cluster's workers (Ray runtime_env).",
            rich_help_panel=RAY,
            metavar="DIR",
        ),
    ] = None,
    plot_format: PlotFormat = "png",
    no_plot: NoPlot = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """When does the entropy pattern form? One analysis per checkpoint (cached by file hash), as a heatmap."""
    console, err = consoles(ctx)
    flags = ModelFlags(
        arch, weights, key, random_init, seed, input_size, input, channel_rule, device, max_gpu_mem, trust_code
    )
    with errors(err, debug):
        # deliberate start-up saving: torch and the pipeline are imported only when a command runs
        from ..errors import IncompleteError
        from ..report import ReportOptions
        from ..report.progress import ProgressDisplay
        from ..report.terminal import render_trajectory
        from ..runs import track_to
        from ..track import ParallelOptions, TrackOptions

        options = flags.options(estimator=vocab.estimator(estimator))
        topts = TrackOptions(statistic=stat, labels=labels, seeds=seeds)
        parallel = ParallelOptions(workers=workers, address=address, working_dir=working_dir)
        report = ReportOptions(plot=not no_plot, plot_format=vocab.plot_format(plot_format), html=False)
        with ProgressDisplay(err, None if quiet else console) as progress:
            written = track_to(
                checkpoints,
                out=out,
                options=options,
                track_options=topts,
                report=report,
                layers=tuple(layer),
                progress=progress,
                parallel=parallel,
            )
        traj = written.trajectory
        if not quiet and traj is not None:
            render_trajectory(traj, console)
            for note in traj.notes:
                console.print(Text(f"note: {note}", style="dim"))
        wrote(console, written.files, written.out)
        failed = getattr(traj, "failed", ())
        for failure in failed:  # on stderr, quiet or not: what is missing from the files just written
            err.print(Text(f"failed checkpoint: {printable(failure.path.name)}: {failure.error}"), soft_wrap=True)
        if failed:
            total = len(failed) + len(traj.labels) if traj is not None else len(failed)
            raise IncompleteError(
                f"{len(failed)} of {total} checkpoints failed (named above) and are left out of the trajectory"
            )
