"""A training function for `entropyflow sweep` (the contract: ``train(config, report)``).

    pip install "entropyflow[sweep]"
    entropyflow sweep docs/examples/sweep_train.py:train --reference sample:digits_vgg \
        --placements first,all --lambdas 0,1e-3,1e-2 --seeds 10 --epochs 20 \
        --metric val_acc --mode max -o sweep-report/

``config`` carries the trial's seed, its λ placement (``entropy``, None for the baseline), the
epochs and ``params`` (``--param KEY=VALUE``). ``entropyflow.sweep.seed(config)`` seeds
everything and returns the generator for the batch order, so a seed is the same initialisation
and the same batches in every cell: the cells differ from the baseline only by the term.

From a clone's root as above; from elsewhere, give this file's own path before ``:train``
(a relative path is read from the folder the sweep is started in).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import entropyflow.sweep as sweep
from entropyflow.samples import build_sample
from entropyflow.samples.data import digits


def train(config: dict, report: sweep.Report) -> None:
    xtr, xte, ytr, yte = digits()
    xtr, xte = xtr.view(-1, 1, 8, 8), xte.view(-1, 1, 8, 8)
    generator = sweep.seed(config)  # before the model is built: the seed fixes the initialisation
    model = build_sample("digits_vgg")
    reg = sweep.regularizer(model, config)  # None for the baseline
    opt = torch.optim.Adam(model.parameters(), lr=float(config["params"].get("lr", 3e-3)))
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        for idx in torch.randperm(len(xtr), generator=generator).split(64):
            opt.zero_grad()
            (F.cross_entropy(model(xtr[idx]), ytr[idx]) + sweep.entropy_term(reg)).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(xte)
        report(epoch=epoch, val_acc=float((logits.argmax(1) == yte).float().mean()),
               val_loss=float(F.cross_entropy(logits, yte)))  # fmt: skip
