"""``entropyflow recommend``: a λ placement config."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app, consoles
from .errors import errors
from .options import (
    OUTPUT,
    PLACEMENT,
    Arch,
    ChannelRuleOpt,
    Debug,
    Device,
    Input,
    InputSize,
    Key,
    MaxGpuMem,
    ModelFlags,
    RandomInit,
    Seed,
    TrustCode,
    Weights,
)


@app.command()
def recommend(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="SOURCE",
            help="A saved analysis.json (or its report folder), or a model as for analyze. Default: the bundled "
            "sample.",
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
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Config file to write (.yaml, .yml or .json).", rich_help_panel=OUTPUT, metavar="FILE"
        ),
    ] = "lambda.yaml",
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="auto, first, first-k, pre-skip, empirical, largest-change, dense-first or all.",
            rich_help_panel=PLACEMENT,
            metavar="NAME",
        ),
    ] = "auto",
    k: Annotated[
        int, typer.Option("--k", help="first-k: number of leading conv layers.", rich_help_panel=PLACEMENT, metavar="N")
    ] = 1,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            help="empirical / largest-change: number of layers (empirical default: robust z-score rule).",
            rich_help_panel=PLACEMENT,
            metavar="N",
        ),
    ] = None,
    z: Annotated[
        float,
        typer.Option(
            "--z",
            help="empirical / largest-change: robust z-score threshold on the layer means (or their magnitudes).",
            rich_help_panel=PLACEMENT,
            metavar="X",
        ),
    ] = 1.0,
    lam: Annotated[
        float,
        typer.Option(
            "--lambda", help="λ2 of conv layers (the paper's best: ≥ 1e-3).", rich_help_panel=PLACEMENT, metavar="λ"
        ),
    ] = 1e-3,
    lam_dense: Annotated[
        float,
        typer.Option(
            "--lambda-dense",
            help="λ1 of dense layers (the paper's autoencoders: ≥ 1e-4).",
            rich_help_panel=PLACEMENT,
            metavar="λ",
        ),
    ] = 1e-4,
    form: Annotated[
        str,
        typer.Option(
            "--form",
            help="log (eqs. 21/23) or inverse (eqs. 24/25, stabilised).",
            rich_help_panel=PLACEMENT,
            metavar="log|inverse",
        ),
    ] = "log",
    epsilon: Annotated[
        float, typer.Option("--epsilon", help="ε of the inverse form.", rich_help_panel=PLACEMENT, metavar="ε")
    ] = 1e-4,
    per_filter: Annotated[
        str,
        typer.Option(
            "--per-filter",
            help="Per-filter λ: none, uniform (written out, to edit) or outliers (λ on the reference's low-outlier "
            "filters only; for fine-tuning).",
            rich_help_panel=PLACEMENT,
            metavar="none|uniform|outliers",
        ),
    ] = "none",
    debug: Debug = False,
) -> None:
    """A λ placement config for the entropy regularizer (the paper's Figure 7 strategy)."""
    console, err = consoles(ctx)
    flags = ModelFlags(
        arch, weights, key, random_init, seed, input_size, input, channel_rule, device, max_gpu_mem, trust_code
    )
    with errors(err, debug):
        # deliberate start-up saving: the pipeline (torch) is imported only when a command runs
        from ..recommend.placement import RecommendOptions
        from ..recommend.source import recommend_to
        from ..report.progress import ProgressDisplay
        from ..report.terminal import render_recommendation

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
        with ProgressDisplay(err, console) as progress:
            rec, path = recommend_to(
                source, out=out, analyze_options=flags.options(), options=options, progress=progress
            )
        render_recommendation(rec.config, console, path)
