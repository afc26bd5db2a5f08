"""Hugging Face ``transformers.Trainer``: the entropy term in the training loss, its per-layer
breakdown in ``log_history``, and the network's entropy profile every N steps (the ``[hf]`` extra).

    trainer = EntropyTrainer(model=model, args=args, train_dataset=train, entropy="lambda.yaml",
                             callbacks=[EntropyMonitorCallback(every_steps=50, input="long:1x128",
                                                               csv="entropy_profile.csv")])
    trainer.train()

* **The loss.** :class:`EntropyTrainer` is a ``Trainer`` that builds an :class:`EntropyRegularizer`
  on the model it trains (the config's layer names are matched to the model's parameters: a
  config made from ``BertModel`` applies to ``BertForSequenceClassification``, whose names start
  with ``bert.``; ``module.`` / ``_orig_mod.`` wrappers are handled) and adds the term to every
  micro-batch's loss at the one place every transformers version back-propagates it
  (``accelerator.backward``), so AMP loss scaling and gradient accumulation see it. Each
  optimiser step gets the gradient of ``task loss + term`` exactly once, whatever the version
  does to the loss for gradient accumulation (4.45 divides every loss by the accumulation steps;
  4.57 and 5.x leave a loss normalised by ``num_items_in_batch`` as it is and divide the others):
  with ``n`` micro-batches each adds ``term / n`` after the Trainer's own scaling, so
  ``gradient_accumulation_steps=2`` with batches of 2 trains as one batch of 4 wherever a plain
  ``Trainer`` does (not 4.46, nor 5.x heads that ignore ``num_items_in_batch``, such as BERT's
  classifier: huggingface/transformers#47688; the term is still counted once there). Evaluation
  and prediction losses are the task's alone.
* **Logged.** Every training log (``logging_steps``) gets ``entropy/term`` and, when the config
  has several layers, ``entropy/term/<layer>`` (λ included): their means over the optimiser
  steps since the previous log, each the value the step's backward pass used. ``loss`` stays the
  task loss that ``Trainer`` reports; the objective is their sum.
* **The profile.** :class:`EntropyMonitorCallback` records the per-layer entropy profile of the
  whole network (:class:`~entropyflow.integrations.monitor.EntropyMonitor`) when training starts,
  every ``every_steps`` global steps and when it ends, on the main process only, to ``csv``.

Not supported: parameters that a sharding engine replaces (FSDP, DeepSpeed ZeRO-3: the configured
weight is no longer a whole parameter of the model), and the SageMaker model-parallel and apex
paths, which do not back-propagate through ``accelerator.backward`` (refused with a sentence).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..extras import require

require("hf")

import transformers  # noqa: E402 - after the check that says how to install it

from ..config import LambdaConfig, load_config  # noqa: E402
from ..errors import ConfigError, OptionError  # noqa: E402
from ..regularize import EntropyRegularizer  # noqa: E402
from ..regularize.regularizer import total, unwrap  # noqa: E402
from ..spec import ExampleInput  # noqa: E402
from ..text import printable  # noqa: E402
from .monitor import EntropyMonitor, Profile, check_csv, monitor_inputs  # noqa: E402

TAG = "entropy"


class EntropyTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose training loss has the entropy term of ``entropy`` (a λ
    config: path, dict or :class:`LambdaConfig`) added, and whose training logs carry the term
    (see the module). ``entropy_prefix``: as ``prefix`` for :class:`EntropyRegularizer` (None
    finds it). Every other argument is ``Trainer``'s."""

    def __init__(
        self,
        *args: Any,
        entropy: LambdaConfig | str | Path | dict[str, Any],
        entropy_prefix: str | None = None,
        **kwargs: Any,
    ):
        if not isinstance(entropy, (LambdaConfig, str, os.PathLike, Mapping)):
            raise OptionError(
                f"EntropyTrainer needs entropy=, a λ config (a YAML/JSON path, a dict or a LambdaConfig), "
                f"not {printable(repr(entropy), 60)}"
            )
        self.entropy_config = entropy if isinstance(entropy, LambdaConfig) else load_config(entropy)
        self.entropy_prefix = entropy_prefix
        self.regularizer: EntropyRegularizer | None = None
        self._regularized: nn.Module | None = None
        self._entropy_sums: dict[str, torch.Tensor] = {}
        self._entropy_steps = 0.0
        super().__init__(*args, **kwargs)
        if self.model is not None:  # model_init trainers build theirs in train(): checked there
            self._entropy_regularizer()

    # -- the loss ------------------------------------------------------------------------------
    def _entropy_regularizer(self) -> EntropyRegularizer:
        """The regularizer of the model being trained (rebuilt when ``model_init`` made a new one)."""
        if self.model is None:
            raise OptionError("EntropyTrainer has no model yet (pass model= or model_init=)")
        model = unwrap(self.model)
        if self.regularizer is None or self._regularized is not model:
            try:
                self.regularizer = EntropyRegularizer.from_config(model, self.entropy_config, self.entropy_prefix)
            except ConfigError as exc:  # the regularizer's words are its own argument's: prefix=
                raise ConfigError(_PREFIX.sub("entropy_prefix=", str(exc))) from exc
            self._regularized = model
        return self.regularizer

    def entropy_term(self) -> torch.Tensor:
        """The entropy term now, for the model being trained (what one optimiser step adds)."""
        return self._entropy_regularizer()()

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        reg = self._entropy_regularizer()
        accelerator = self.accelerator
        backward = accelerator.backward  # the Trainer's one call per micro-batch, after its own scaling
        own = vars(accelerator).get("backward")  # an instance attribute already there (put back after)
        called = []

        def entropy_backward(loss: torch.Tensor, **kw: Any) -> Any:
            terms = reg.terms()
            term = total(terms)
            share = 1.0 / self._micro_batches()
            self._accumulate(terms, term, share)
            # accelerate divides what it is given by its own accumulation steps (4.45): undo it for the term
            called.append(True)
            return backward(loss + term.to(loss.dtype) * (share * _accelerator_steps(accelerator)), **kw)

        accelerator.backward = entropy_backward
        try:
            out: torch.Tensor = super().training_step(model, inputs, *args, **kwargs)
        finally:
            if own is None:
                del accelerator.backward  # the class's method again
            else:
                accelerator.backward = own
        if not called:
            raise OptionError(
                "EntropyTrainer: this Trainer set-up (SageMaker model parallelism or apex) does not back-propagate "
                "through accelerator.backward, so the entropy term cannot be added: use transformers.Trainer and "
                "add trainer.entropy_term() to the loss in your own compute_loss"
            )
        return out

    def _micro_batches(self) -> int:
        """How many micro-batches make this optimiser step (the last of an epoch may have fewer)."""
        n = getattr(self, "current_gradient_accumulation_steps", None)  # set per step by newer versions (4.57, 5.x)
        if not isinstance(n, int) or n < 1:
            n = self.args.gradient_accumulation_steps
        return max(int(n), 1)

    # -- the breakdown -------------------------------------------------------------------------
    def _accumulate(self, terms: dict[str, torch.Tensor], term: torch.Tensor, share: float) -> None:
        values = {f"{TAG}/term": term}
        if len(terms) > 1:
            values.update({f"{TAG}/term/{name}": v for name, v in terms.items()})
        for key, v in values.items():
            v = v.detach().double() * share
            self._entropy_sums[key] = self._entropy_sums[key] + v if key in self._entropy_sums else v
        self._entropy_steps += share

    def entropy_logs(self) -> dict[str, float]:
        """The means since the last training log (what the next one will carry), and start again."""
        if not self._entropy_steps:
            return {}
        out = {key: float(v) / self._entropy_steps for key, v in self._entropy_sums.items()}
        self._entropy_sums, self._entropy_steps = {}, 0.0
        return out

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log (evaluation logs are eval_*; the run's summary is train_loss)
            logs = {**logs, **self.entropy_logs()}
        super().log(logs, *args, **kwargs)


_PREFIX = re.compile(r"(?<![\w.])prefix=")  # EntropyRegularizer's argument, which EntropyTrainer calls entropy_prefix=


def _accelerator_steps(accelerator: Any) -> int:
    """The accumulation steps by which ``accelerator.backward`` divides a loss (1 unless the Trainer
    left accumulation to accelerate, as 4.45 does; DeepSpeed scales in its own engine)."""
    if str(getattr(accelerator, "distributed_type", "")).upper().endswith("DEEPSPEED"):
        return 1
    steps = getattr(accelerator, "gradient_accumulation_steps", 1)
    return steps if isinstance(steps, int) and steps >= 1 else 1


class EntropyMonitorCallback(transformers.TrainerCallback):
    """Record the network's per-layer entropy profile with :class:`EntropyMonitor` when training
    starts, every ``every_steps`` global steps and at its end (main process only).

    ``input``: the example input as the CLI's ``--input`` reads it (``"long:1x128"``: one
    sequence of 128 token ids) or :class:`~entropyflow.spec.ExampleInput` values; ``input_size``:
    one float example's shape without the batch (CNNs). Either gives the layer totals; neither,
    per-position values only (bad values are refused when the callback is made). ``csv``: the file
    to write (refused when the callback is made if it exists, unless ``overwrite``; a run resumed
    from a checkpoint continues the profile a callback wrote there, keeping its rows up to the
    resumed step); ``writer``: a TensorBoard ``SummaryWriter``. The records are in
    ``callback.history``."""

    def __init__(
        self,
        every_steps: int,
        *,
        input: str | ExampleInput | Sequence[str | ExampleInput] | None = None,
        input_size: tuple[int, ...] | str | None = None,
        csv: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        writer: Any = None,
    ):
        if not isinstance(every_steps, int) or isinstance(every_steps, bool) or every_steps < 1:
            raise OptionError(f"every_steps must be a positive integer (got {every_steps!r})")
        self.every_steps = every_steps
        self.input_size, self.input = monitor_inputs(input_size, input)  # refused now, not when training starts
        self.csv = Path(csv) if csv is not None else None
        if self.csv is not None:  # before any work; a resumed run's own profile is continued (on_train_begin)
            check_csv(self.csv, overwrite=overwrite, resume=True)
        self.overwrite = overwrite
        self.writer = writer
        self.monitor: EntropyMonitor | None = None
        self._last: int | None = None

    @property
    def history(self) -> list[Profile]:
        """The records so far, in order."""
        return self.monitor.history if self.monitor is not None else []

    def _record(self, step: int) -> None:
        if self.monitor is not None and step != self._last:
            self.monitor.record(step)
            self._last = step

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        if model is None:
            raise OptionError("EntropyMonitorCallback: the Trainer passed no model to on_train_begin")
        model = unwrap(model)
        step = int(state.global_step)
        resume = step if step > 0 else None  # a resumed run: continue the profile this callback wrote
        self.monitor = EntropyMonitor(
            model, every=1, input=self.input, input_size=self.input_size, csv=self.csv,
            overwrite=self.overwrite, writer=self.writer, resume=resume,
        )  # fmt: skip
        self._last = self.monitor.continued if self.monitor.continued == step else None  # recorded before
        self._record(step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step % self.every_steps == 0:
            self._record(state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._record(state.global_step)
        if self.monitor is not None:
            self.monitor.close()
