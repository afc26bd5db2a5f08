"""sweep: close the loop from guidance to outcome. A grid of λ × placements, every cell trained
with the same seeds as the baseline (λ = 0) on Ray Tune, compared seed by seed with confidence
intervals and corrected tests (``entropyflow sweep``; the ``[sweep]`` extra).

    def train(config, report):                  # the contract (entropyflow.sweep.contract)
        gen = entropyflow.sweep.seed(config)
        model = Net()
        reg = entropyflow.sweep.regularizer(model, config)
        ...
        report(epoch=epoch, val_loss=...)

    spec = SweepSpec(lambdas=(0, 1e-3), placements=placements(["first"], "sample:digits_vgg"),
                     seeds=tuple(range(10)), epochs=30, metric="val_acc", mode="max")
    result = run_sweep("mytrain:train", spec, out="sweep-report/")
"""

from __future__ import annotations

from ..extras import require

require("sweep")  # Ray Tune: the [sweep] extra (a MissingExtraError says how to install it)

from .contract import Report, Train, entropy_term, load_train, regularizer, seed
from .events import RayOptions, TrialEvent
from .runner import SweepRequest, SweepResult, parse_params, placements, run_sweep, sweep, task_spec
from .spec import BASELINE, PLACEMENTS, Cell, Placement, SweepSpec, placements_from
from .summary import SweepSummary
from .tasks import TASKS, task, train_function

__all__ = [
    "Report",
    "Train",
    "seed",
    "regularizer",
    "entropy_term",
    "load_train",
    "SweepSpec",
    "Placement",
    "Cell",
    "placements_from",
    "placements",
    "run_sweep",
    "task_spec",
    "task",
    "SweepResult",
    "SweepSummary",
    "TASKS",
    "train_function",
    "BASELINE",
    "PLACEMENTS",
    "SweepRequest",
    "sweep",
    "parse_params",
    "RayOptions",
    "TrialEvent",
]
