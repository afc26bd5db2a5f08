"""What a sweep runs: the grid of cells (λ × placement, plus the baseline λ = 0), the seeds, the
metric and its target, and the trials' configs. Pure data: no Ray, no training.

A *placement* is a λ config (which layers carry the entropy term), or a structural rule (``first``,
``pre-skip``, …) that :func:`entropyflow.sweep.regularizer` resolves on the live model inside each
trial when no reference was given; a *cell* is a placement with one λ for all its layers; the
*baseline* is the one cell without the term. Every cell runs with
the same seeds, and a seed means the same initialisation and the same batch order in every cell
(the training function's contract, see :mod:`entropyflow.sweep.contract`), so cells are compared
to the baseline seed by seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import vocab
from ..config import LambdaConfig, to_dict
from ..errors import OptionError
from ..estimate.results import AnalysisResult
from ..recommend import STRATEGIES, RecommendOptions, recommend
from ..text import printable
from ..words import arg, option

BASELINE = "baseline"
PLACEMENTS = tuple(s for s in STRATEGIES if s != "auto")  # recommend's strategies, "all" (Table 1's control) included
#: the placements that depend on the architecture only: resolved on the live model when there is no reference
STRUCTURAL = ("first", "first-k", "pre-skip", "dense-first", "all")
#: the placements that read trained weights: they need a reference (--reference)
NEEDS_WEIGHTS = tuple(s for s in PLACEMENTS if s not in STRUCTURAL)
MAX_TRIALS = 100_000

# what is compared per trial (entropyflow.sweep.summary says how each is computed)
OUTCOMES = ("final", "best", "epochs_to_target", "seconds_to_target", "stop_epoch")
LOWER_IS_BETTER_ALWAYS = frozenset({"epochs_to_target", "seconds_to_target", "stop_epoch"})


@dataclass(frozen=True)
class Rule:
    """A structural placement not yet resolved: the strategy (one of :data:`STRUCTURAL`) and the
    recommend options it needs; :func:`entropyflow.sweep.regularizer` applies it to the model the
    training function builds, in every trial."""

    strategy: str
    k: int = 1  # first-k
    form: str = "log"
    epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if self.strategy not in STRUCTURAL:
            raise OptionError(
                f"placement '{printable(self.strategy, 30)}' reads trained weights: it needs {arg('reference')} "
                f"(only {', '.join(STRUCTURAL)} are resolved on the live model)"
            )

    def to_dict(self, lam: float | None = None) -> dict[str, Any]:
        """As the trial receives it (``config["entropy"]``): ``{"rule": "first", "lambda": …, …}``."""
        doc: dict[str, Any] = {"rule": self.strategy, "k": self.k, "form": self.form, "epsilon": self.epsilon}
        return doc if lam is None else {**doc, "lambda": lam}


@dataclass(frozen=True)
class Placement:
    """A λ config computed before the sweep (``config``), or a :class:`Rule` resolved in each trial."""

    name: str
    config: LambdaConfig | None = None
    rule: Rule | None = None

    def __post_init__(self) -> None:
        if (self.config is None) == (self.rule is None):
            raise OptionError(f"placement {printable(self.name, 40)}: give a λ config or a rule, not both or neither")

    def describe(self) -> dict[str, Any]:
        return to_dict(self.config) if self.config is not None else self.rule.to_dict()  # type: ignore[union-attr]


@dataclass(frozen=True)
class Cell:
    """One λ on one placement (``placement is None``: the baseline, no entropy term)."""

    name: str
    lam: float
    placement: str | None
    config: LambdaConfig | None
    rule: Rule | None = None  # a placement resolved in the trial (config is None then)

    @property
    def entropy(self) -> dict[str, Any] | None:
        """``config["entropy"]``: the λ config, the rule with its λ, or None for the baseline."""
        if self.config is not None:
            return to_dict(self.config)
        return None if self.rule is None else self.rule.to_dict(self.lam)

    def trial_config(self, seed: int, epochs: int, params: dict[str, Any]) -> dict[str, Any]:
        """The ``config`` the training function receives (JSON-serialisable)."""
        return {
            "cell": self.name,
            "seed": seed,
            "lambda": self.lam,
            "placement": self.placement,
            "entropy": self.entropy,
            "epochs": epochs,
            "params": dict(params),
        }


@dataclass(frozen=True)
class SweepSpec:
    """The grid and what is measured. ``target``: the value of ``metric`` that counts as converged
    (reached when ≤ target for mode 'min', ≥ for 'max'); None to compare final values only.
    ``patience``: early stopping (a trial ends after ``patience`` epochs without improving its
    metric; its stopping epoch is an outcome). ``primary``: the outcome the best cell is chosen
    on (default: the epochs to the target if there is one, else the final value)."""

    lambdas: tuple[float, ...]
    placements: tuple[Placement, ...]
    seeds: tuple[int, ...]
    epochs: int
    metric: str
    mode: vocab.Mode = "min"
    target: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None
    primary: str | None = None

    def __post_init__(self) -> None:
        vocab.mode(self.mode)
        if not self.seeds:
            raise OptionError("a sweep needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise OptionError("seeds must be distinct non-negative integers")
        if self.epochs < 1:
            raise OptionError(f"{option('epochs')} must be at least 1")
        if any(not math.isfinite(lam) for lam in self.lambdas):
            raise OptionError("every λ must be a finite number")
        if any(lam != 0 for lam in self.lambdas) and not self.placements:
            raise OptionError(f"λ > 0 needs at least one placement ({arg('placements')} or {arg('config')})")
        if self.target is not None and not math.isfinite(self.target):
            raise OptionError(f"{option('target')} must be a finite number")
        if self.patience is not None and not 1 <= self.patience <= 10**6:
            raise OptionError(f"{option('patience')} must be a positive number of epochs")
        if self.primary is not None:
            vocab.check(self.primary, OUTCOMES, f"{option('primary')} outcome")
            if self.primary not in self.outcomes:
                need = arg("patience") if self.primary == "stop_epoch" else arg("target")
                raise OptionError(f"{arg('primary', self.primary)} needs {need}")
        names = [p.name for p in self.placements]
        if len(set(names)) != len(names):
            raise OptionError(f"placements are named twice: {', '.join(names)}")
        if len(self.cells) * len(self.seeds) > MAX_TRIALS:
            raise OptionError(f"the grid has {len(self.cells) * len(self.seeds):,} trials (at most {MAX_TRIALS:,})")

    @property
    def outcomes(self) -> tuple[str, ...]:
        """The outcomes this sweep measures."""
        keep = ["final", "best"]
        if self.target is not None:
            keep += ["epochs_to_target", "seconds_to_target"]
        if self.patience is not None:
            keep.append("stop_epoch")
        return tuple(keep)

    @property
    def primary_outcome(self) -> str:
        return self.primary or ("epochs_to_target" if self.target is not None else "final")

    @property
    def cells(self) -> tuple[Cell, ...]:
        """The baseline first, then every non-zero λ on every placement."""
        cells = [Cell(BASELINE, 0.0, None, None)]
        for lam in dict.fromkeys(v for v in self.lambdas if v != 0):
            for p in self.placements:
                config = None if p.config is None else with_lambda(p.config, lam)
                cells.append(Cell(f"{p.name} λ={lam:g}", float(lam), p.name, config, p.rule))
        return tuple(cells)

    def to_dict(self) -> dict[str, Any]:
        """What identifies the sweep (saved beside it; a resumed sweep must be the same)."""
        return {
            "lambdas": list(self.lambdas),
            "placements": {p.name: p.describe() for p in self.placements},
            "seeds": list(self.seeds),
            "epochs": self.epochs,
            "metric": self.metric,
            "mode": self.mode,
            "target": self.target,
            "params": self.params,
            "patience": self.patience,
            "primary": self.primary_outcome,
        }

    def fingerprint(self) -> str:
        doc = self.to_dict()
        for cfg in doc["placements"].values():
            cfg.pop("provenance", None)  # carries a creation time
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_lambda(config: LambdaConfig, lam: float) -> LambdaConfig:
    """The placement with every layer's λ set to ``lam`` (per-filter λ dropped)."""
    layers = tuple(replace(layer, lam=float(lam), filter_lambdas=None) for layer in config.layers)
    return replace(config, layers=layers)


def placements_from(
    reference: AnalysisResult, names: Sequence[str], options: RecommendOptions | None = None, model: Any = None
) -> tuple[Placement, ...]:
    """Placements computed on a reference analysis (a well-trained network of the architecture,
    the paper's Figure 7) with ``recommend``'s strategies, and ``all``."""
    base = options or RecommendOptions()
    out = []
    for name in names:
        if name not in PLACEMENTS:
            raise OptionError(f"unknown placement '{printable(name, 30)}' (use {', '.join(PLACEMENTS)})")
        out.append(Placement(name, recommend(reference, replace(base, strategy=name), model=model)))
    return tuple(out)


def rules(names: Sequence[str], options: RecommendOptions | None = None) -> tuple[Placement, ...]:
    """Structural placements with no reference: each a :class:`Rule` the trial resolves on its
    live model. ``empirical`` and ``largest-change`` read trained weights and are refused."""
    base = options or RecommendOptions()
    for name in names:
        if name not in PLACEMENTS:
            raise OptionError(f"unknown placement '{printable(name, 30)}' (use {', '.join(PLACEMENTS)})")
    weights = [name for name in names if name in NEEDS_WEIGHTS]
    if weights:
        raise OptionError(
            f"{option('placements')} {', '.join(weights)} ranks the layers of a trained network: "
            f"give {arg('reference')} (a trained model of the architecture, or its analysis.json); "
            f"{', '.join(STRUCTURAL)} need no reference "
            "(resolved on the model the training function builds)"
        )
    return tuple(Placement(name, rule=Rule(name, base.k, base.form, base.epsilon)) for name in names)


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise OptionError(f"{what} must be comma-separated numbers (got '{printable(text, 60)}')") from exc
    if not values:
        raise OptionError(f"{what} is empty")
    return values
