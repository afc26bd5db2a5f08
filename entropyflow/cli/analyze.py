"""``entropyflow analyze``: the report folder of one model."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import vocab
from ..errors import EntropyflowError, OptionError
from ..text import printable
from .app import app, consoles, wrote
from .errors import errors
from .options import (
    ESTIMATOR,
    EVIDENCE,
    OUTPUT,
    Arch,
    ChannelRuleOpt,
    Debug,
    Device,
    Input,
    InputSize,
    Key,
    MaxGpuMem,
    ModelFlags,
    Quiet,
    RandomInit,
    Seed,
    TrustCode,
    Weights,
)


def _prefetch_hash(model: str | None, weights: str | None, enabled: bool) -> None:
    """Start hashing checkpoint files before torch is imported (hashlib releases the GIL)."""
    if not enabled:
        return
    from ..load.hashing import sha256_async
    from ..load.paths import resolve_checkpoint
    from ..spec import parse_spec

    for text in (weights, model):
        try:
            if text and parse_spec(text).is_file:
                sha256_async(resolve_checkpoint(text).files)
        except (EntropyflowError, OSError):
            pass  # the real load reports it


@app.command()
def analyze(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Argument(
            metavar="MODEL",
            help="What to analyse: a checkpoint file (.pt/.pth/.ckpt/.bin/.safetensors, a TorchScript archive), "
            "a folder (a Hugging Face model folder with config.json, sharded safetensors, a run's checkpoints), "
            "torchvision:NAME[.TAG], timm:NAME[.TAG], hf:ORG/NAME (from the local Hugging Face cache) or "
            "sample:NAME. Default: the bundled sample.",
        ),
    ] = None,
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
    estimator: Annotated[
        str,
        typer.Option(
            "--estimator",
            metavar="paper|spectral",
            help="paper: log|c11| per filter (docs/method.md, Convolutions); spectral: Σ log σ, basis-invariant.",
            rich_help_panel=ESTIMATOR,
        ),
    ] = "paper",
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            metavar="random|SPEC",
            help="Draw beside a reference: 'random' (same architecture, random init) or another model spec/file.",
            rich_help_panel=EVIDENCE,
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            metavar="N",
            help="With --compare random: number of random initialisations (default 10; each is one more analysis "
            "of the architecture). The model's own seed is never among them.",
            rich_help_panel=EVIDENCE,
        ),
    ] = None,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder for layers.csv, filters.csv, analysis.json, figures, report.html.",
            rich_help_panel=OUTPUT,
        ),
    ] = "entropyflow-report",
    no_trace: Annotated[
        bool,
        typer.Option(
            "--no-trace", help="Do not run the forward pass (no geometry, no totals).", rich_help_panel=ESTIMATOR
        ),
    ] = False,
    no_hash: Annotated[
        bool,
        typer.Option(
            "--no-hash", help="Do not compute the checkpoint's sha256 for provenance.", rich_help_panel=OUTPUT
        ),
    ] = False,
    plot_format: Annotated[
        str,
        typer.Option(
            "--plot-format",
            metavar="png|svg|pdf",
            help="png, svg or pdf for entropy.* and profile.*.",
            rich_help_panel=OUTPUT,
        ),
    ] = "png",
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Write no figures.", rich_help_panel=OUTPUT)] = False,
    plot_total: Annotated[
        bool,
        typer.Option(
            "--plot-total", help="Plot per-filter totals instead of per-position values.", rich_help_panel=OUTPUT
        ),
    ] = False,
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            metavar="index|names",
            help="x-axis labels: index (1…L) or names (dotted module names).",
            rich_help_panel=OUTPUT,
        ),
    ] = "index",
    no_html: Annotated[
        bool, typer.Option("--no-html", help="Do not write report.html.", rich_help_panel=OUTPUT)
    ] = False,
    quiet: Quiet = False,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="table|json",
            help="What goes to stdout: table (rich) or json (analysis.json, for scripts; files are still written).",
            rich_help_panel=OUTPUT,
        ),
    ] = "table",
    debug: Debug = False,
) -> None:
    """Per-layer, per-filter entropy change of every conv/dense layer, in forward execution order."""
    console, err = consoles(ctx)
    flags = ModelFlags(
        arch, weights, key, random_init, seed, input_size, input, channel_rule, device, max_gpu_mem, trust_code
    )
    with errors(err, debug):
        if output_format not in ("table", "json"):
            raise OptionError(f"--format must be table or json, not {printable(output_format, 40)!r}")
        _prefetch_hash(model, weights, not no_hash)
        # deliberate start-up saving: torch and the pipeline are imported after the hashing has started
        from ..report import ReportOptions
        from ..report.progress import ProgressDisplay
        from ..report.terminal import render_analysis
        from ..runs import analyze_to

        options = flags.options(estimator=vocab.estimator(estimator), trace=not no_trace, hash_files=not no_hash)
        report = ReportOptions(
            plot=not no_plot,
            plot_format=vocab.plot_format(plot_format),
            total=plot_total,
            labels=vocab.label_mode(labels),
            html=not no_html,
        )
        with ProgressDisplay(err, None if output_format == "json" or quiet else console) as progress:
            written = analyze_to(
                model, out=out, options=options, report=report, compare=compare, seeds=seeds, progress=progress
            )
        if output_format == "json":
            from ..report.jsonio import analysis_json

            console.file.write(analysis_json(written.result, written.reference).decode("utf-8", "backslashreplace"))
            console.file.flush()
            return
        if not quiet:
            render_analysis(written.result, console, written.reference)
        wrote(console, written.files, written.out)
