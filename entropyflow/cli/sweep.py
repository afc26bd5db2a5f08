"""``entropyflow sweep``: λ × placements × seeds on Ray Tune, paired against the baseline."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .app import app, consoles, wrote
from .errors import errors
from .options import GRID, MEASURE, OUTPUT, RAY, Debug, PlotFormat


@app.command()
def sweep(
    ctx: typer.Context,
    train: Annotated[
        str | None,
        typer.Argument(
            metavar="TRAIN",
            help="Your training function: MODULE:FUNCTION or FILE.py:FUNCTION (docs/training.md: the contract).",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="A built-in task instead: digits-autoencoder, digits-cnn, digits-unet (the paper's experiments on "
            "digits), or mnist-autoencoder, cifar10-autoencoder, cifar10-cnn, imagenette-vgg16, imagenette-resnet50, "
            "segmentation-unet (at the paper's scale, with --data).",
            rich_help_panel=GRID,
            metavar="NAME",
        ),
    ] = None,
    lambdas: Annotated[
        str | None,
        typer.Option(
            "--lambdas",
            help="Comma-separated λ values; 0 (the baseline) is always run. Default: the task's, else "
            "0,1e-4,1e-3,1e-2.",
            rich_help_panel=GRID,
            metavar="L,...",
        ),
    ] = None,
    placements: Annotated[
        str | None,
        typer.Option(
            "--placements",
            help="Comma-separated recommend strategies (first, first-k, pre-skip, empirical, largest-change, "
            "dense-first, all): empirical and largest-change are computed on --reference; the others depend on the "
            "architecture only and, without --reference, are resolved in each trial on the model it builds.",
            rich_help_panel=GRID,
            metavar="S,...",
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="A well-trained model of the architecture (spec or file) or its analysis.json, for --placements.",
            rich_help_panel=GRID,
            metavar="SPEC",
        ),
    ] = None,
    config: Annotated[
        list[str],
        typer.Option(
            "--config",
            help="A λ config (from recommend) as one more placement; repeat for several.",
            rich_help_panel=GRID,
            metavar="FILE",
        ),
    ] = [],  # noqa: B006 - typer's default of a repeatable option, never mutated
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            help="Number of seeds, the same for every cell (paired comparisons).",
            rich_help_panel=GRID,
            metavar="N",
        ),
    ] = 10,
    first_seed: Annotated[
        int,
        typer.Option(
            "--first-seed",
            help="The first seed (seeds FIRST…FIRST+N-1): pilots, more seeds.",
            rich_help_panel=GRID,
            metavar="K",
        ),
    ] = 0,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Epochs per trial (the training function reads config['epochs']).",
            rich_help_panel=GRID,
            metavar="N",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="The reported metric the sweep compares (e.g. val_loss).",
            rich_help_panel=MEASURE,
            metavar="NAME",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="min or max: which way the metric is better.", rich_help_panel=MEASURE, metavar="min|max"
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            "--target",
            help="The metric value that counts as converged: epochs and time to reach it are compared.",
            rich_help_panel=MEASURE,
            metavar="V",
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            "--patience",
            help="Early stopping: a trial ends after this many epochs without improving its metric, and the "
            "stopping epoch is compared (the paper: 7 for autoencoders).",
            rich_help_panel=MEASURE,
            metavar="P",
        ),
    ] = None,
    primary: Annotated[
        str | None,
        typer.Option(
            "--primary",
            help="The outcome the best cell is chosen on: final, best, epochs_to_target, seconds_to_target or "
            "stop_epoch (default: epochs_to_target with --target, else final).",
            rich_help_panel=MEASURE,
            metavar="OUTCOME",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The dataset's folder for a paper-scale task (MNIST/, cifar-10-batches-py/, an ImageFolder tree, "
            "images/ + masks/ or VOCdevkit/); never downloaded. Passed as config['params']['data'].",
            rich_help_panel=GRID,
            metavar="ROOT",
        ),
    ] = None,
    max_epochs: Annotated[
        int | None,
        typer.Option(
            "--max-epochs",
            help="Cap every trial's epochs (a pilot run before the paper's full length).",
            rich_help_panel=GRID,
            metavar="N",
        ),
    ] = None,
    subset: Annotated[
        int | None,
        typer.Option(
            "--subset",
            help="Use the first N examples of each split, in a permutation fixed for all trials (a pilot); "
            "config['params']['subset'].",
            rich_help_panel=GRID,
            metavar="N",
        ),
    ] = None,
    param: Annotated[
        list[str],
        typer.Option(
            "--param",
            help="KEY=VALUE passed to the training function in config['params']; repeat.",
            rich_help_panel=GRID,
            metavar="KEY=VALUE",
        ),
    ] = [],  # noqa: B006 - typer's default of a repeatable option, never mutated
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Folder for the report; Ray Tune's storage is OUT/tune.",
            rich_help_panel=OUTPUT,
            metavar="DIR",
        ),
    ] = "entropyflow-sweep",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="An existing Ray cluster (ray://head:10001 or auto); default: a local Ray, started and stopped here.",
            rich_help_panel=RAY,
            metavar="ADDRESS",
        ),
    ] = None,
    cpus: Annotated[
        int | None,
        typer.Option("--cpus", help="CPUs of the local Ray (default: all).", rich_help_panel=RAY, metavar="N"),
    ] = None,
    cpus_per_trial: Annotated[
        float,
        typer.Option("--cpus-per-trial", help="CPUs (and torch threads) per trial.", rich_help_panel=RAY, metavar="N"),
    ] = 1.0,
    gpus_per_trial: Annotated[
        float,
        typer.Option(
            "--gpus-per-trial", help="GPUs per trial (fractions share a GPU).", rich_help_panel=RAY, metavar="N"
        ),
    ] = 0.0,
    working_dir: Annotated[
        str | None,
        typer.Option(
            "--working-dir",
            help="Shipped to a cluster's workers so that they can import your training module.",
            rich_help_panel=RAY,
            metavar="DIR",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted sweep in OUT without re-running finished trials.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            help="Times a trial whose Ray worker died is run again from its start (a raise is final).",
            rich_help_panel=RAY,
            metavar="N",
        ),
    ] = 1,
    plot_format: PlotFormat = "png",
    debug: Debug = False,
) -> None:
    """Does the entropy term help your model? λ × placements × seeds on Ray Tune, paired against the baseline."""
    console, err = consoles(ctx)
    with errors(err, debug):
        # deliberate start-up saving: torch, the pipeline and (inside) Ray load only when the command runs
        from ..sweep import RayOptions, SweepRequest, parse_params
        from ..sweep import sweep as run_sweep
        from ..sweep.render import LiveTrials, render_summary
        from ..sweep.spec import parse_floats

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
            data=data,
            max_epochs=max_epochs,
            subset=subset,
        )
        ray_options = RayOptions(
            address=address,
            cpus=cpus,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            working_dir=working_dir,
            retries=retries,
        )
        with LiveTrials(err) as live:
            result = run_sweep(request, out=out, ray_options=ray_options, on_event=live.on_event)
        render_summary(result.summary, console, result.failed)
        for note in result.notes:
            console.print(Text(f"note: {note}", style="dim"), highlight=False)
        wrote(console, result.files, result.out)
        if not result.complete:  # exit 3: the report is written, but scripts and CI must notice
            from ..errors import IncompleteError

            total = len(result.summary.spec.cells) * len(result.summary.spec.seeds)
            raise IncompleteError(f"{len(result.failed)} of {total} trials failed (the report above counts them)")
