"""Built-in sweep tasks: the paper's experiments at the size of scikit-learn's digits (1797 real
8×8 images shipped with scikit-learn; 80/20 stratified split, ``random_state=0``).

* ``digits-autoencoder`` (§5.2): 64 → 32 → 64 dense autoencoder, sigmoid activation, Adam, MSE;
  λ1 on the first weight matrix (``dense-first``); trained until early stopping with the paper's
  patience of 7 (at most 1500 epochs). The claim is about the stopping epoch (the paper's
  Figure 4), and the MSE at convergence; ``--target`` is the paper's "minima within 1e-2".
* ``digits-cnn`` (Table 1): a small CNN of three 3×3 convs of width 32 (Table 1's
  ``[32, 32, 32]``); λ2 on the first conv, the first two, or all (the paper's control); 30
  epochs; the claim is about the final validation accuracy.
* ``digits-unet`` (§5.5, Table 3): the bundled U-Net segmenting the strokes of noisy digits; λ2 on
  the layers with the largest entropy change of the trained bundled U-Net (``largest-change``) and
  on the layers feeding its skip concatenations (``pre-skip``, the paper's choice); 60 epochs;
  the claim ("about 10 % faster at equal accuracy") is about the epochs to reach a validation IoU
  target, fixed before the sweep from a baseline-only pilot on seeds the sweep does not use
  (``docs/reproduction.md`` gives the rule and the pilot's numbers).

At the paper's own scale, on the user's copy of the datasets (``--data ROOT``; the train functions
and models are in :mod:`.paper_tasks`, the readers in :mod:`.datasets`): ``mnist-autoencoder``,
``cifar10-autoencoder`` (§5.2), ``cifar10-cnn`` (Table 1), ``imagenette-vgg16``,
``imagenette-resnet50`` (Table 2) and ``segmentation-unet`` (Table 3); their structural
placements are resolved in each trial, and ``--reference`` adds the ones that read trained
weights (``reference_placements``). ``docs/reproduction.md`` ("On your cluster") lists every
choice the paper leaves open.

Each train function follows :mod:`entropyflow.sweep.contract`: the seed fixes the initialisation
and the batch order, the data (and the U-Net's input noise) is the same for every trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from ..samples import build_sample
from ..samples.data import SPLIT_SEED, digits
from ..text import printable
from . import paper_tasks as paper
from .contract import Report, Train, entropy_term, load_train, regularizer, seed


@dataclass(frozen=True)
class Task:
    """A built-in task: its training function and the grid that reproduces the paper's setting."""

    name: str
    claim: str  # what the paper reports for this experiment
    train: Callable[[dict[str, Any], Report], None]
    model: Callable[[dict[str, Any]], nn.Module]  # the architecture, from the trial's params
    input_size: tuple[int, ...]  # one example's shape (traces the architecture for placements)
    arch_params: tuple[str, ...]  # the params that change the architecture (then the reference no longer fits)
    reference: str | None  # a trained bundled sample of the default architecture, for value-based placements
    metric: str
    mode: str
    target: float | None
    patience: int | None  # early stopping, as the paper's experiment (None: every trial runs all epochs)
    primary: str  # the outcome the paper's claim is about
    epochs: int
    lambdas: tuple[float, ...]
    placements: tuple[str, ...]
    rules_in_trial: bool = False  # structural placements resolved in each trial (no model built for the grid)
    reference_placements: tuple[str, ...] = ()  # added to the default placements when --reference is given
    dataset: str | None = None  # what --data holds (entropyflow.sweep.datasets.check), None: bundled data


def _batches(n: int, size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, size):
        yield order[i : i + size]


def _fit(
    config: dict[str, Any],
    report: Report,
    model: nn.Module,
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]],
    lr: float,
    batch: int,
    generator: torch.Generator,
) -> None:
    xtr, ytr = data[0], data[2]
    reg = regularizer(model, config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(int(config["epochs"])):
        model.train()
        total, steps = 0.0, 0
        for idx in _batches(len(xtr), batch, generator):
            opt.zero_grad()
            base = loss(model, xtr[idx], ytr[idx])
            (base + entropy_term(reg)).backward()
            opt.step()
            total, steps = total + float(base.detach()), steps + 1
        model.eval()
        with torch.no_grad():
            metrics = evaluate(model)
        extra = {"entropy_term": float(reg().detach())} if reg is not None else {}
        report(epoch=epoch + 1, train_loss=total / steps, **metrics, **extra)


# --- digits-autoencoder (§5.2) --------------------------------------------------------------------


def _autoencoder(params: dict[str, Any]) -> nn.Module:
    return build_sample("digits_autoencoder", latent=int(params.get("latent", 32)))


def train_autoencoder(config: dict[str, Any], report: Report) -> None:
    xtr, xte, ytr, yte = digits()
    generator = seed(config)
    model = _autoencoder(config["params"])

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"val_loss": float(F.mse_loss(m(xte), xte))}

    _fit(
        config,
        report,
        model,
        lambda m, x, _y: F.mse_loss(m(x), x),
        (xtr, xte, xtr, xte),
        evaluate,
        float(config["params"].get("lr", 1e-3)),
        64,
        generator,
    )


# --- digits-cnn (Table 1) -------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Table 1's small CNN classifiers: 3×3 'same' convs with ReLU (a 2×2 max-pool after every
    second), then one dense layer."""

    def __init__(self, widths: tuple[int, ...] = (32, 32, 32), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = 1, 8
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            cin = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _cnn(params: dict[str, Any]) -> nn.Module:
    widths = tuple(int(w) for w in str(params.get("widths", "32,32,32")).split(","))
    return SmallCNN(widths)


def _fraction(hits: torch.Tensor) -> float:
    """The exact fraction of true entries (an integer count over the total, in Python floats), so
    two runs with the same number of hits give bit-identical accuracies and paired ties are ties."""
    return int(hits.sum()) / hits.numel()


def train_cnn(config: dict[str, Any], report: Report) -> None:
    xtr, xte, ytr, yte = digits()
    xtr, xte = xtr.view(-1, 1, 8, 8), xte.view(-1, 1, 8, 8)
    generator = seed(config)
    model = _cnn(config["params"])

    def evaluate(m: nn.Module) -> dict[str, float]:
        logits = m(xte)
        return {
            "val_loss": float(F.cross_entropy(logits, yte)),
            "val_acc": _fraction(logits.argmax(1) == yte),
        }

    _fit(
        config,
        report,
        model,
        lambda m, x, y: F.cross_entropy(m(x), y),
        (xtr, xte, ytr, yte),
        evaluate,
        float(config["params"].get("lr", 1e-3)),
        64,
        generator,
    )


# --- digits-unet (§5.5, Table 3) ------------------------------------------------------------------


def _unet(params: dict[str, Any]) -> nn.Module:
    return build_sample("digits_unet")


def segmentation_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noisy digits (σ = 0.35, fixed noise) and their stroke masks (pixel > 0.3), as the bundled
    U-Net was trained."""
    xtr, xte, _, _ = digits()
    noise = torch.Generator().manual_seed(SPLIT_SEED)
    ntr = (xtr + 0.35 * torch.randn(xtr.shape, generator=noise)).view(-1, 1, 8, 8)
    nte = (xte + 0.35 * torch.randn(xte.shape, generator=noise)).view(-1, 1, 8, 8)
    return ntr, nte, (xtr > 0.3).float().view(-1, 1, 8, 8), (xte > 0.3).float().view(-1, 1, 8, 8)


def train_unet(config: dict[str, Any], report: Report) -> None:
    ntr, nte, mtr, mte = segmentation_data()
    generator = seed(config)
    model = _unet(config["params"])

    def evaluate(m: nn.Module) -> dict[str, float]:
        logits = m(nte)
        pred = (logits > 0).float()
        inter, union = float((pred * mte).sum()), float(((pred + mte) > 0).float().sum())
        return {
            "val_loss": float(F.binary_cross_entropy_with_logits(logits, mte)),
            "val_iou": inter / union,
            "val_acc": _fraction(pred == mte),
        }

    _fit(
        config,
        report,
        model,
        lambda m, x, y: F.binary_cross_entropy_with_logits(m(x), y),
        (ntr, nte, mtr, mte),
        evaluate,
        float(config["params"].get("lr", 1e-3)),
        64,
        generator,
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="digits-autoencoder",
            claim="§5.2: λ1 ≥ 1e-4 on the first weight matrix cut the epochs to convergence by up to 80 % (4× faster) "
            "at marginally higher validation MSE (MNIST, CIFAR-10; latent ≥ 60 of 784 inputs)",
            train=train_autoencoder,
            model=_autoencoder,
            input_size=(64,),
            arch_params=("latent",),
            reference="sample:digits_autoencoder",
            metric="val_loss",
            mode="min",
            target=0.01,
            patience=7,
            primary="stop_epoch",
            epochs=1500,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
            placements=("dense-first",),
        ),
        Task(
            name="digits-cnn",
            claim="Table 1: λ2 on the first conv raised validation accuracy of small CNNs by +0.5 to +1.1 points "
            "(CIFAR-10, 10 replications, one-tailed t-tests significant); on all layers no gain",
            train=train_cnn,
            model=_cnn,
            input_size=(1, 8, 8),
            arch_params=("widths",),
            reference=None,
            metric="val_acc",
            mode="max",
            target=None,
            patience=None,
            primary="final",
            epochs=30,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2),
            placements=("first", "first-k", "all"),
        ),
        Task(
            name="digits-unet",
            claim="Table 3: λ2 = 1e-3…1e-2 on the layers of largest entropy change of a trained U-Net (feeding the "
            "up-path concatenations) trained about 10 % faster at equal or better accuracy (COCO)",
            train=train_unet,
            model=_unet,
            input_size=(1, 8, 8),
            arch_params=(),
            reference="sample:digits_unet",
            metric="val_iou",
            mode="max",
            target=0.777,
            patience=None,
            primary="epochs_to_target",
            epochs=60,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1),
            placements=("largest-change", "pre-skip"),
        ),
        *(
            Task(
                name=f"{data}-autoencoder",
                claim="§5.2, Figures 3–6: λ1 ≥ 1e-2 on the first weight matrix reached early stopping in 8–10 epochs, "
                "up to 4× faster, with latent ≥ 60; validation MSE within 1e-2 (slightly higher for larger λ1)",
                train=paper.train_mnist_autoencoder if data == "mnist" else paper.train_cifar10_autoencoder,
                model=partial(paper.autoencoder, features=features),
                input_size=(features,),
                arch_params=("latent",),
                reference=None,
                metric="val_loss",
                mode="min",
                target=0.01,
                patience=7,
                primary="stop_epoch",
                epochs=1000,
                lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
                placements=("dense-first",),
                rules_in_trial=True,
                dataset=data,
            )
            for data, features in (("mnist", 784), ("cifar10", 3072))
        ),
        Task(
            name="cifar10-cnn",
            claim="Table 1: λ2 on the first conv raised the validation accuracy of 1–3-block CNNs by +0.5 to +1.1 "
            "points (10 replications, one-tailed t-tests); on all layers no significant gain",
            train=paper.train_cifar10_cnn,
            model=paper.cnn,
            input_size=(3, 32, 32),
            arch_params=("widths",),
            reference=None,
            metric="val_acc",
            mode="max",
            target=None,
            patience=None,
            primary="final",
            epochs=30,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            placements=("first", "all"),
            rules_in_trial=True,
            dataset="cifar10",
        ),
        Task(
            name="imagenette-vgg16",
            claim="Table 2: VGG16 on ImageNette, λ2 on conv [1] or [1, 2]: the best validation accuracy with the "
            "term in 6 of 6 settings, +0.8 to +5.8 points over λ2 = 0 for [1]",
            train=paper.train_imagenette_vgg16,
            model=paper.vgg16,
            input_size=(3, 224, 224),
            arch_params=("dropout", "size"),
            reference=None,
            metric="val_acc",
            mode="max",
            target=None,
            patience=25,
            primary="best",
            epochs=200,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            placements=("first", "first-k"),
            rules_in_trial=True,
            dataset="imagenette",
        ),
        Task(
            name="imagenette-resnet50",
            claim="Table 2: ResNet-50 on ImageNette, λ2 on conv [1], [1, 5], pre-skip or empirical layers: the best "
            "validation accuracy with the term in 11 of 12 settings; the highest with the empirical placement",
            train=paper.train_imagenette_resnet50,
            model=paper.resnet50,
            input_size=(3, 224, 224),
            arch_params=("dropout", "size"),
            reference=None,
            metric="val_acc",
            mode="max",
            target=None,
            patience=25,
            primary="best",
            epochs=200,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            placements=("first", "first-k", "pre-skip"),
            rules_in_trial=True,
            reference_placements=("empirical",),
            dataset="imagenette",
        ),
        Task(
            name="segmentation-unet",
            claim="Table 3: a U-Net with λ2 on the layers feeding the up-path concatenations reached early stopping "
            "about 10 % sooner (λ2 = 1e-3, 1e-2) at equal or better pixel accuracy (COCO, 256×256)",
            train=paper.train_segmentation_unet,
            model=paper.unet,
            input_size=(3, 256, 256),
            arch_params=("width", "size"),
            reference=None,
            metric="val_loss",
            mode="min",
            target=None,
            patience=10,
            primary="stop_epoch",
            epochs=100,
            lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
            placements=("pre-skip",),
            rules_in_trial=True,
            reference_placements=("largest-change",),
            dataset="segmentation",
        ),
    )
}


def task(name: str) -> Task:
    """The built-in task ``name``."""
    if name not in TASKS:
        raise OptionError(f"unknown task '{printable(name, 40)}' (use {', '.join(TASKS)})")
    return TASKS[name]


def train_function(spec: str, cwd: str | None = None) -> Train:
    """The training function ``spec`` names: ``task:NAME`` for a built-in task, else
    ``module:function`` or ``file.py:function`` (:func:`entropyflow.sweep.contract.load_train`)."""
    if spec.startswith("task:"):
        return task(spec[len("task:") :]).train
    return load_train(spec, cwd)
