"""A structural placement resolved on the live model, inside the trial.

Without ``--reference``, ``first``, ``first-k``, ``pre-skip``, ``dense-first`` and ``all`` reach the
trial as a rule (:class:`.spec.Rule`); :func:`entropyflow.sweep.regularizer` calls :func:`resolve`
on the model the training function built. The layers are the model's own conv/dense layers
(walked without a forward pass unless an example input is given), in forward order: traced with
the example input, else from the model's ``torch.fx`` graph, else in the order the modules were
registered (the config's rationale says which). Resolving draws no random number and runs no
forward pass on the model: the trials of a seed stay paired.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn

from ..analysis import analyze
from ..config import LambdaConfig, Strategy
from ..errors import OptionError, TraceError, one_line
from ..estimate.results import AnalysisResult
from ..recommend import RecommendOptions, recommend
from ..recommend.skips import GraphError
from ..spec import ExampleInput, parse_inputs
from ..text import brief, printable
from .spec import Rule

ORDERS = {
    "traced": "in forward order (traced with the example input)",
    "fx": "in forward order (from the model's torch.fx graph)",
    "registered": "in the order the modules were registered (no example input was given and torch.fx cannot "
    "trace the model: pass input= to entropyflow.sweep.regularizer for the forward order)",
}


def rule_of(entropy: Mapping[str, Any]) -> tuple[Rule, float]:
    """The rule and λ of a trial's ``config["entropy"]`` that holds one (``{"rule": …}``)."""
    try:
        rule = Rule(str(entropy["rule"]), int(entropy.get("k", 1)), str(entropy.get("form", "log")))
        rule = replace(rule, epsilon=float(entropy.get("epsilon", rule.epsilon)))
        lam = float(entropy["lambda"])
    except (KeyError, TypeError, ValueError) as exc:
        raise OptionError(f"config['entropy'] holds no usable placement rule ({printable(exc, 80)})") from exc
    return rule, lam


def resolve(
    model: nn.Module,
    rule: Rule,
    lam: float,
    *,
    input_size: tuple[int, ...] | None = None,
    input: str | Sequence[str] | Sequence[ExampleInput] | None = None,
) -> LambdaConfig:
    """The λ config ``rule`` selects on ``model`` (every layer at ``lam``)."""
    given = [input] if isinstance(input, str) else list(input or ())
    inputs = tuple(v if isinstance(v, ExampleInput) else parse_inputs(str(v))[0] for v in given)
    traced = input_size is not None or bool(inputs)
    with _random_untouched():
        try:
            analysis = analyze(
                model,
                hash_files=False,
                trace=traced,
                input_size=input_size,
                input=inputs or None,
                device="cpu" if not _on_cuda(model) else "auto",
            )
        except TraceError as exc:  # analyze's advice names its own arguments: say it in regularizer()'s
            raise TraceError(_untraceable(exc, input_size, given)) from exc
        order = "traced"
        if not traced:
            analysis, order = _forward_order(model, analysis)
        options = RecommendOptions(
            strategy=rule.strategy, k=rule.k, form=rule.form, epsilon=rule.epsilon, lam_conv=lam, lam_dense=lam
        )
        try:
            config = recommend(analysis, options, model=model)
        except (GraphError, OptionError) as exc:
            if rule.strategy != "pre-skip":
                raise
            why = one_line(exc.__cause__ or exc, 200)  # without recommend's advice, which names other strategies
            raise type(exc)(
                f"placement pre-skip cannot be resolved on the model the training function built ({why}): without "
                "a reference, sweep first, first-k, dense-first or all instead"
            ) from exc
    why = f"Resolved in the trial on the model the training function built, layers {ORDERS[order]}. "
    strategy = config.strategy
    return replace(
        config,
        strategy=Strategy(
            strategy.name, strategy.params + (("resolved", "in the trial"), ("order", order)), why + strategy.rationale
        ),
    )


def _untraceable(exc: TraceError, input_size: tuple[int, ...] | None, given: Sequence[object]) -> str:
    """Why the rule could not be resolved on a traced model, and what :func:`regularizer` takes instead."""
    cause = exc.__cause__
    why = f"{type(cause).__name__}: {one_line(cause, 160)}" if cause is not None else one_line(exc, 200)
    tried = f"input_size={input_size}" if input_size is not None else f"input={printable(brief(list(given)), 80)}"
    return (
        f"cannot trace the model the training function built with {tried} ({why}): give "
        "entropyflow.sweep.regularizer(model, config, ...) the input_size= or input= (token ids: input='long:1x128') "
        "its forward takes, or neither to take the layers in torch.fx or registration order"
    )


def _on_cuda(model: nn.Module) -> bool:
    return any(p.is_cuda for p in model.parameters())


def _forward_order(model: nn.Module, analysis: AnalysisResult) -> tuple[AnalysisResult, str]:
    """The layers sorted by the order the fx graph calls their modules (registration order kept
    where fx cannot trace the model, or for a module it does not call)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - fx raises many types; all mean 'cannot trace': registration order
        return analysis, "registered"
    rank: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            rank.setdefault(str(node.target), len(rank))
        elif node.op == "get_attr":  # a functional use of a weight (F.linear(x, self.w))
            rank.setdefault(str(node.target).rsplit(".", 1)[0], len(rank))

    def position(name: str) -> int:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the layer's module, or the nearest enclosing one fx calls
            found = rank.get(".".join(parts[:i]))
            if found is not None:
                return found
        return len(rank)

    layers = sorted(analysis.layers, key=lambda layer: position(layer.name))
    return replace(analysis, layers=tuple(layers)), "fx"


@contextlib.contextmanager
def _random_untouched() -> Iterator[None]:
    """Python's, numpy's and torch's generators (CUDA's too) as they were: the trial's seed draws
    the same numbers with and without a placement resolved."""
    state_py, state_np = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(state_py)
    np.random.set_state(state_np)
