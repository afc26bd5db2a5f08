"""The options every command that loads a model shares, declared once as ``Annotated`` aliases,
and their parsing: the CLI turns strings ('3x224x224', '4GiB', 'long:1x128') into the parsed values
:class:`~entropyflow.analysis.AnalyzeOptions` holds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ..errors import OptionError
from ..spec import parse_bytes, parse_input_size, parse_inputs

if TYPE_CHECKING:
    from ..analysis import AnalyzeOptions
    from ..vocab import ChannelRule, Estimator

# the panels --help groups the options in, the same in every command
MODEL = "Model: what is analysed"
ESTIMATOR = "Estimator: how it is measured"
EVIDENCE = "Evidence: what it is compared with"
OUTPUT = "Output"
PLACEMENT = "Placement: where the term goes and how strong"
GRID = "Grid: what is trained"
MEASURE = "Measure: what is compared"
RAY = "Ray: where the work runs"

Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        metavar="SPEC",
        help="Architecture of a bare state dict, e.g. torchvision:resnet50 (gives geometry and totals).",
        rich_help_panel=MODEL,
    ),
]
Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        metavar="PATH",
        help="Weights file for a torchvision:/timm: spec instead of the local cache.",
        rich_help_panel=MODEL,
    ),
]
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        metavar="NAME",
        help="Entry of a checkpoint dict that holds the weights (e.g. state_dict_ema).",
        rich_help_panel=MODEL,
    ),
]
RandomInit = Annotated[
    bool,
    typer.Option(
        "--random-init", help="Random initialisation of a zoo spec (reproducible with --seed).", rich_help_panel=MODEL
    ),
]
Seed = Annotated[
    int, typer.Option("--seed", metavar="N", help="Seed for --random-init (torch.manual_seed).", rich_help_panel=MODEL)
]
InputSize = Annotated[
    str | None,
    typer.Option(
        "--input-size",
        metavar="CxHxW",
        help="Input size without batch, e.g. 3x224x224 (default: the model's own).",
        rich_help_panel=MODEL,
    ),
]
Input = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        metavar="DTYPE:SHAPE",
        help="Example input as DTYPE:SHAPE with the batch dimension, e.g. long:1x128 (128 token ids) for "
        "transformers; default: from the model's config. Repeat it once per forward argument, in order "
        "(e.g. two frames, or int:16000 for a number).",
        rich_help_panel=MODEL,
    ),
]
ChannelRuleOpt = Annotated[
    str,
    typer.Option(
        "--channel-rule",
        metavar="first|mean",
        help="first (paper, default) or mean over input channels (the regularizer uses the same rule).",
        rich_help_panel=ESTIMATOR,
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="auto|cpu|cuda[:N]",
        help="auto, cpu, cuda or cuda:N: where the arithmetic runs (same numbers).",
        rich_help_panel=ESTIMATOR,
    ),
]
MaxGpuMem = Annotated[
    str | None,
    typer.Option(
        "--max-gpu-mem",
        metavar="BYTES",
        help="Memory budget of batched work on the device, e.g. 4GiB (default 256MiB; raise it on a GPU).",
        rich_help_panel=ESTIMATOR,
    ),
]
TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        "--unsafe-pickle",
        help="Allow files whose loading runs code from them: pickled Python objects (a whole nn.Module) and "
        "TorchScript archives.",
        rich_help_panel=MODEL,
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.", rich_help_panel=OUTPUT)]
PlotFormat = Annotated[
    str, typer.Option("--plot-format", metavar="png|svg|pdf", help="png, svg or pdf.", rich_help_panel=OUTPUT)
]
NoPlot = Annotated[bool, typer.Option("--no-plot", help="Write no figures.", rich_help_panel=OUTPUT)]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Do not print the table (files are still written).", rich_help_panel=OUTPUT),
]


@dataclass(frozen=True)
class ModelFlags:
    """The shared model options as given on the command line (strings, before parsing)."""

    arch: str | None = None
    weights: str | None = None
    key: str | None = None
    random_init: bool = False
    seed: int = 0
    input_size: str | None = None
    input: list[str] | None = None
    channel_rule: str = "first"
    device: str = "auto"
    max_gpu_mem: str | None = None
    trust_code: bool = False

    def options(self, estimator: Estimator = "paper", trace: bool = True, hash_files: bool = True) -> AnalyzeOptions:
        """The parsed :class:`AnalyzeOptions`, checked in the order of the flags' meaning: the load
        options, the estimator, the input size, the inputs, the memory budget."""
        # deliberate start-up saving: the pipeline (torch) is imported only when a command runs
        from ..analysis import AnalyzeOptions

        channel_rule = cast("ChannelRule", self.channel_rule)  # checked by AnalyzeOptions
        opts = AnalyzeOptions(
            arch=self.arch,
            weights=self.weights,
            key=self.key,
            random_init=self.random_init,
            seed=self.seed,
            trust_code=self.trust_code,
            hash_files=hash_files,
            trace=trace,
            device=self.device,
            channel_rule=channel_rule,
            estimator=estimator,
        )
        size = parse_input_size(self.input_size)
        if self.input and size is not None:
            raise OptionError("give --input DTYPE:SHAPE or --input-size, not both")
        inputs = parse_inputs(self.input) if self.input else None
        return replace(opts, input_size=size, input=inputs, max_mem=parse_bytes(self.max_gpu_mem))
