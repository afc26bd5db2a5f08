"""``EntropyGuidance``: a PyTorch Lightning callback that trains with a λ config (the
``[lightning]`` extra).

    trainer = lightning.Trainer(callbacks=[EntropyGuidance("lambda.yaml", profile_every=5,
                                                           input_size=(3, 32, 32))])
    trainer.fit(module, loaders)

* **The loss.** At ``fit`` start the callback builds an :class:`EntropyRegularizer` on the
  LightningModule (the config's layer names are matched to the module's parameters whether it
  was made from the bare network or from the LightningModule: a ``model.`` or ``net.`` prefix is
  found, and ``module.`` / ``_orig_mod.`` wrappers are handled) and wraps the module's
  ``training_step`` so that the loss it returns (a tensor, or the ``"loss"`` of a dict) has the
  entropy term added *before* Lightning scales, accumulates and back-propagates it: AMP, gradient
  accumulation and clipping see the compound loss. The wrapper is removed at the end of ``fit``.
* **The breakdown.** Every training step logs ``entropy/term`` and, per configured layer,
  ``entropy/term/<layer>`` (the λ-weighted terms, from the same forward pass as the loss; Lightning
  applies ``log_every_n_steps`` and averages them per epoch).
* **The profile.** With ``profile_every=N``, every N-th epoch (and the first) logs the per-layer
  entropy profile of the whole network (``entropy/profile/<layer>/median`` and ``…/total``) with
  :class:`~entropyflow.integrations.monitor.EntropyMonitor`, and writes it to ``profile_csv``
  when given. The example input for the layer totals is ``input_size=(3, 32, 32)`` or, as for
  :func:`entropyflow.analyze`, ``input="long:1x128"`` (token ids; one entry per forward argument);
  bad or disagreeing values are refused when the callback is made. A LightningModule that does not
  define ``forward()`` (its ``training_step`` calls ``self.net(x)``) is profiled through the
  attribute that holds its layers, under the module's own names (``net.0``); when several do,
  ``trace_module="net"`` says which.

Manual optimisation (``automatic_optimization = False``) back-propagates inside
``training_step``, where no callback can reach the loss: the callback refuses it and says to add
``callback.term()`` to the loss instead.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..extras import require

require("lightning")

import lightning.pytorch as pl  # noqa: E402 - after the check that says how to install it

from ..config import LambdaConfig, load_config  # noqa: E402
from ..errors import OptionError  # noqa: E402
from ..regularize import EntropyRegularizer  # noqa: E402
from ..regularize.regularizer import total  # noqa: E402
from ..spec import ExampleInput  # noqa: E402
from .monitor import EntropyMonitor, monitor_inputs  # noqa: E402

TAG = "entropy"


class EntropyGuidance(pl.Callback):
    """Add the entropy term of ``config`` (a λ config: path, dict or :class:`LambdaConfig`) to the
    training loss, log its per-layer breakdown, and every ``profile_every`` epochs the network's
    entropy profile (see the module). ``prefix``: as for :class:`EntropyRegularizer` (None finds it).
    ``input_size``, ``input``, ``trace_module``: the profile's example input and the module it runs
    through, as for :class:`~entropyflow.integrations.monitor.EntropyMonitor`."""

    def __init__(
        self,
        config: LambdaConfig | str | Path | dict,
        *,
        profile_every: int | None = None,
        input_size: tuple[int, ...] | str | None = None,
        input: str | ExampleInput | Sequence[str | ExampleInput] | None = None,
        trace_module: str | None = None,
        profile_csv: str | os.PathLike[str] | None = None,
        prefix: str | None = None,
        log_breakdown: bool = True,
    ):
        super().__init__()
        if not isinstance(config, (LambdaConfig, str, os.PathLike, Mapping)):
            raise OptionError(
                "EntropyGuidance needs a λ config (a YAML/JSON path, a dict or a LambdaConfig), "
                f"not {type(config).__name__}"
            )
        self.config = config if isinstance(config, LambdaConfig) else load_config(config)
        if profile_every is not None and (not isinstance(profile_every, int) or profile_every < 1):
            raise OptionError(f"profile_every must be a positive integer (got {profile_every!r})")
        self.profile_every = profile_every
        self.input_size, self.input = monitor_inputs(input_size, input)  # refused now, not at fit
        if trace_module is not None and not isinstance(trace_module, str):
            kind = type(trace_module).__name__
            raise OptionError(f"trace_module must be an attribute name such as 'net', not {kind}")
        self.trace_module = trace_module
        self.profile_csv = Path(profile_csv) if profile_csv is not None else None
        self.prefix = prefix
        self.log_breakdown = log_breakdown
        self.regularizer: EntropyRegularizer | None = None
        self.monitor: EntropyMonitor | None = None
        self._wrapped: pl.LightningModule | None = None

    # -- the loss ------------------------------------------------------------------------------
    def term(self) -> torch.Tensor:
        """The entropy term now (what the callback adds to each training loss)."""
        if self.regularizer is None:
            raise OptionError("EntropyGuidance.term() is available once fit has started")
        return self.regularizer()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not pl_module.automatic_optimization:
            raise OptionError(
                "EntropyGuidance adds its term to the loss training_step returns, which manual optimisation does "
                "not use: add callback.term() to your loss before manual_backward instead"
            )
        self.regularizer = EntropyRegularizer.from_config(pl_module, self.config, self.prefix)
        if self.profile_every is not None:
            self.monitor = EntropyMonitor(
                pl_module,
                input_size=self.input_size,
                input=self.input,
                trace_module=self.trace_module,
                csv=self.profile_csv,
                overwrite=True,
                keep_history=True,
            )
        self._wrap(pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._unwrap()

    def _wrap(self, module: pl.LightningModule) -> None:
        self._unwrap()
        original = module.training_step
        reg = self.regularizer
        assert reg is not None
        log_breakdown = self.log_breakdown

        @functools.wraps(original)
        def training_step(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            terms = reg.terms()
            term = total(terms)
            module.log(TAG + "/term", term.detach(), on_step=True, on_epoch=True)
            if log_breakdown and len(terms) > 1:
                module.log_dict({f"{TAG}/term/{name}": v.detach() for name, v in terms.items()}, on_step=True,
                                on_epoch=True)  # fmt: skip
            return _add(out, term)

        module.training_step = training_step  # type: ignore[method-assign]
        self._wrapped = module

    def _unwrap(self) -> None:
        if self._wrapped is not None:
            self._wrapped.__dict__.pop("training_step", None)  # the class's method again
            self._wrapped = None

    # -- the profile ---------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None and trainer.current_epoch == 0 and not self.monitor.history:
            self.monitor.record(0)  # the starting point (history and CSV; the loggers get epoch ends)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs completed
        if self.monitor is None or self.profile_every is None or epoch % self.profile_every:
            return
        profile = self.monitor.record(epoch)
        metrics = {}
        for layer in profile.layers:
            for what in ("median", "total"):
                value = getattr(layer, what)
                if value is not None and math.isfinite(value):
                    metrics[f"{TAG}/profile/{layer.name}/{what}"] = float(value)
        if metrics:
            pl_module.log_dict(metrics, on_step=False, on_epoch=True)


def _add(out: Any, term: torch.Tensor) -> Any:
    """The training step's output with ``term`` added to its loss."""
    if isinstance(out, torch.Tensor):
        return out + term
    if isinstance(out, dict) and isinstance(out.get("loss"), torch.Tensor):
        return {**out, "loss": out["loss"] + term}
    if out is None:
        return None  # the step was skipped (Lightning skips a None loss): nothing to add to
    raise OptionError(
        f"EntropyGuidance: training_step returned {type(out).__name__}, not a loss tensor or a dict with 'loss'"
    )
