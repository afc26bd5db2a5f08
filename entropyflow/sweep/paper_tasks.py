"""The paper's experiments at their own scale (§5.2–5.5), on the user's copy of the datasets.

``--data ROOT`` reaches the trial as ``config["params"]["data"]`` (:mod:`.datasets` reads it,
never downloading); ``--subset N`` as ``params["subset"]`` (the first N examples of each split
in a permutation fixed once for all trials); ``params["amp"]`` turns mixed precision on.
Every detail the paper leaves open is chosen here and listed in ``docs/reproduction.md`` ("On
your cluster"); the defaults follow Keras's where the paper's wording follows Keras's (its early
stopping, ``ReduceLROnPlateau`` and "20 % random rotation / zoom" layers).

A trial runs on ``cuda`` when it was given a GPU (Ray sets ``CUDA_VISIBLE_DEVICES``), with
deterministic algorithms on (:func:`device`): the same seed gives the same initialisation (drawn
on the CPU, then moved) and the same batch order (a CPU generator) on either device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from ..samples.models import DigitsAutoencoder, double_conv
from ..text import printable
from . import datasets
from .contract import Report, entropy_term, regularizer, seed

#: the permutation that chooses ``--subset``'s examples: the same for every trial and seed
SUBSET_SEED = 20240905
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- the trial's device, params, data order ------------------------------------------------------------


def device() -> torch.device:
    """``cuda`` when the trial sees a GPU, with deterministic algorithms (cuBLAS workspace
    ``:4096:8``, cuDNN's autotuner off), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts, in this process
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return torch.device("cuda")


def _param(params: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    value = params.get(name, default)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        out = kind(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"param {name}={printable(value, 30)}: not a {kind.__name__}") from exc
    if kind in (int, float) and not (math.isfinite(out) and out > 0):
        raise OptionError(f"param {name}={printable(value, 30)}: must be a positive number")
    return out


def subset(n: int, params: dict[str, Any]) -> torch.Tensor:
    """The indices of a split that a trial uses: all ``n``, or with ``subset`` the first N of a
    permutation fixed by :data:`SUBSET_SEED` (the same examples in every trial)."""
    if params.get("subset") is None:
        return torch.arange(n)
    k = _param(params, "subset", None, int)
    return torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))[: min(k, n)]


def batches(n: int, size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Positions 0 … n-1 in the order the trial's generator draws, in batches of ``size``."""
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, size):
        yield order[i : i + size]


class EarlyStopping:
    """Keras's rule: stop once ``patience`` epochs in a row did not improve the best value by
    more than ``min_delta``."""

    def __init__(self, patience: int, mode: str = "min", min_delta: float = 0.0):
        self.patience, self.sign, self.min_delta = patience, 1.0 if mode == "min" else -1.0, min_delta
        self.best = math.inf
        self.wait = 0

    def update(self, value: float) -> bool:
        v = self.sign * value
        if v < self.best - self.min_delta:
            self.best, self.wait = v, 0
        else:
            self.wait += 1
        return self.wait >= self.patience


@dataclass
class Loop:
    """What one task's training loop needs: the model, the optimiser, how a batch is drawn and scored."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    n_train: int
    batch: int
    train_batch: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[nn.Module], dict[str, float]]
    scheduler: Any = None  # ReduceLROnPlateau, stepped on ``plateau_metric``
    plateau_metric: str | None = None
    stopper: EarlyStopping | None = None  # the paper's own stopping rule where the sweep's cannot state it
    stop_metric: str | None = None


def run(
    config: dict[str, Any],
    report: Report,
    loop: Loop,
    dev: torch.device,
    input_size: tuple[int, ...],
    generator: torch.Generator,
) -> None:
    """Train ``config["epochs"]`` epochs (or until ``loop.stopper`` ends it), reporting once per
    epoch; ``generator`` (from :func:`.contract.seed`, drawn before the model was built) orders
    the batches and draws the augmentations."""
    reg = regularizer(loop.model, config, input_size=input_size)
    loop.model.to(dev)
    amp = _param(config["params"], "amp", False, bool)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dev.type == "cuda")
    for epoch in range(1, int(config["epochs"]) + 1):
        loop.model.train()
        total, steps = 0.0, 0
        for idx in batches(loop.n_train, loop.batch, generator):
            x, y = loop.train_batch(idx, generator)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loop.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, enabled=amp):
                base = loop.loss(loop.model(x), y)
            term = entropy_term(reg)  # in full precision: log-determinants do not survive float16
            scaler.scale(base.float() + term).backward()
            scaler.step(loop.optimizer)
            scaler.update()
            total, steps = total + float(base.detach()), steps + 1
        loop.model.eval()
        with torch.no_grad():
            metrics = loop.evaluate(loop.model)
        extra = {"entropy_term": float(reg().detach())} if reg is not None else {}
        report(epoch=epoch, train_loss=total / steps, **metrics, **extra)
        if loop.scheduler is not None and loop.plateau_metric is not None:
            loop.scheduler.step(metrics[loop.plateau_metric])
        if loop.stopper is not None and loop.stop_metric is not None and loop.stopper.update(metrics[loop.stop_metric]):
            break


def _chunks(n: int, size: int = 256) -> Iterator[torch.Tensor]:
    for i in range(0, n, size):
        yield torch.arange(i, min(n, i + size))


def _fraction(hits: int, total: int) -> float:
    return hits / total  # an integer count over the total: equal counts give bit-identical values


# --- §5.2: dense autoencoders (MNIST, CIFAR-10) ----------------------------------------------------------


def autoencoder(params: dict[str, Any], features: int) -> nn.Module:
    """Input → dense(latent) → sigmoid → dense(input) → sigmoid (the bundled digits autoencoder's
    architecture at the dataset's size; ``latent``: the paper's 20, 60, …, 260)."""
    return DigitsAutoencoder(latent=_param(params, "latent", 100, int), features=features)


def _autoencoder_task(config: dict[str, Any], report: Report, which: str) -> None:
    params = config["params"]
    dev = device()
    xtr, _, xte, _ = datasets.mnist(params.get("data")) if which == "mnist" else datasets.cifar10(params.get("data"))
    xtr, xte = xtr[subset(len(xtr), params)], xte[subset(len(xte), params)]
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)  # uint8: 1/4 of the memory until a batch is used
    features = xtr.shape[1]
    generator = seed(config)  # then the model: the same initialisation for every cell of a seed
    model = autoencoder(params, features)
    xte_dev = xte.to(dev)

    def evaluate(m: nn.Module) -> dict[str, float]:
        sse = 0.0
        for idx in _chunks(len(xte_dev)):
            x = xte_dev[idx].float() / 255
            sse += float(F.mse_loss(m(x), x, reduction="sum"))
        return {"val_loss": sse / xte_dev.numel()}

    loop = Loop(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=_param(params, "lr", 1e-3, float)),
        n_train=len(xtr),
        batch=_param(params, "batch", 32, int),
        train_batch=lambda idx, _g: (xtr[idx].float() / 255, xtr[idx].float() / 255),
        loss=F.mse_loss,
        evaluate=evaluate,
    )
    run(config, report, loop, dev, (features,), generator)


def train_mnist_autoencoder(config: dict[str, Any], report: Report) -> None:
    _autoencoder_task(config, report, "mnist")


def train_cifar10_autoencoder(config: dict[str, Any], report: Report) -> None:
    _autoencoder_task(config, report, "cifar10")


# --- §5.3, Table 1: small CNNs on CIFAR-10 --------------------------------------------------------------


class PaperCNN(nn.Module):
    """1–3 blocks of (3×3 conv, stride 1, 'valid' padding → leaky ReLU (slope 0.3) → 2×2 max-pool,
    stride 2), then a dense softmax classifier (the softmax is in the cross-entropy)."""

    def __init__(self, widths: Sequence[int] = (32, 32, 32), num_classes: int = 10, size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for width in widths:
            layers += [nn.Conv2d(cin, width, 3), nn.LeakyReLU(0.3), nn.MaxPool2d(2, 2)]
            cin, size = width, (size - 2) // 2
        if size < 1:
            raise OptionError(f"{len(widths)} conv blocks leave no pixels of a 32×32 image")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def cnn(params: dict[str, Any]) -> nn.Module:
    text = str(params.get("widths", "32,32,32")).strip("[]() ")
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as exc:
        raise OptionError(f"param widths={printable(text, 30)}: comma-separated conv widths (e.g. 32,32)") from exc
    if not 1 <= len(widths) <= 3 or any(not 1 <= w <= 4096 for w in widths):
        raise OptionError("param widths: 1 to 3 conv widths of 1 … 4096 (Table 1: 32, 64, 128)")
    return PaperCNN(widths)


def _classify(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    logits = m(x)
    return float(F.cross_entropy(logits.float(), y, reduction="sum")), int((logits.argmax(1) == y).sum())


def train_cifar10_cnn(config: dict[str, Any], report: Report) -> None:
    params = config["params"]
    dev = device()
    xtr, ytr, xte, yte = datasets.cifar10(params.get("data"))
    keep_tr, keep_te = subset(len(xtr), params), subset(len(xte), params)
    xtr, ytr, xte, yte = xtr[keep_tr], ytr[keep_tr], xte[keep_te].to(dev), yte[keep_te].to(dev)
    generator = seed(config)  # then the model: the same initialisation for every cell of a seed
    model = cnn(params)

    def evaluate(m: nn.Module) -> dict[str, float]:
        loss, hits = 0.0, 0
        for idx in _chunks(len(xte)):
            dl, dh = _classify(m, xte[idx].float() / 255, yte[idx])
            loss, hits = loss + dl, hits + dh
        return {"val_loss": loss / len(xte), "val_acc": _fraction(hits, len(xte))}

    loop = Loop(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=_param(params, "lr", 1e-3, float)),
        n_train=len(xtr),
        batch=_param(params, "batch", 32, int),
        train_batch=lambda idx, _g: (xtr[idx].float() / 255, ytr[idx]),
        loss=F.cross_entropy,
        evaluate=evaluate,
    )
    run(config, report, loop, dev, (3, 32, 32), generator)


# --- §5.4, Table 2: VGG16 and ResNet-50 on ImageNette ---------------------------------------------------


class PoolTo7(nn.Module):
    """VGG's adaptive average pool to 7×7 written with operations whose CUDA backward is
    deterministic (``adaptive_avg_pool2d``'s is not): identity at 7×7 (224-pixel inputs), a
    broadcast from 1×1, an average pool when the side is a multiple of 7."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) == (7, 7):
            return x
        if (h, w) == (1, 1):
            return x.expand(*x.shape[:-2], 7, 7)
        if h % 7 == 0 and w % 7 == 0:
            return F.avg_pool2d(x, (h // 7, w // 7))
        return F.adaptive_avg_pool2d(x, 7)


class GlobalAvgPool(nn.Module):
    """ResNet's global average pool as a mean (deterministic on CUDA, unlike adaptive_avg_pool2d's backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1), keepdim=True)


def vgg16(params: dict[str, Any]) -> nn.Module:
    """torchvision's VGG16 (random initialisation, never pretrained weights) with 10 outputs;
    dropout 0.5 between its dense layers with ``dropout=true`` (Table 2's third setting), else none."""
    import torchvision  # the model zoo is imported when a Table 2 task builds its model

    drop = 0.5 if _param(params, "dropout", False, bool) else 0.0
    model = torchvision.models.vgg16(weights=None, num_classes=10, dropout=drop)
    model.avgpool = PoolTo7()
    return model


def resnet50(params: dict[str, Any]) -> nn.Module:
    """torchvision's ResNet-50 (random initialisation) with 10 outputs; with ``dropout=true``,
    dropout 0.5 before its one dense layer (``fc`` becomes ``fc.1``)."""
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=10)
    model.avgpool = GlobalAvgPool()
    if _param(params, "dropout", False, bool):
        model.fc = nn.Sequential(nn.Dropout(0.5), model.fc)
    return model


def augment(x: torch.Tensor, generator: torch.Generator, rotation: float = 0.2, zoom: float = 0.2) -> torch.Tensor:
    """Table 2's augmentation, as Keras's layers state it: a horizontal flip with probability ½,
    a rotation by up to ``rotation`` of a full turn either way (RandomRotation(0.2): ±72°) and a
    zoom in or out by up to ``zoom`` (RandomZoom(0.2)), reflecting at the borders; every draw from
    the trial's generator."""
    n = len(x)
    flip = torch.rand(n, generator=generator) < 0.5
    angle = (torch.rand(n, generator=generator) * 2 - 1) * rotation * 2 * math.pi
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * zoom
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, torch.zeros(n)], 1), torch.stack([sin * sign, cos, torch.zeros(n)], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _imagenette(config: dict[str, Any], report: Report, build: Callable[[dict[str, Any]], nn.Module]) -> None:
    params = config["params"]
    dev = device()
    train, val = datasets.image_folder(params.get("data"))
    size = _param(params, "size", 224, int)
    keep_tr, keep_va = subset(len(train.paths), params), subset(len(val.paths), params)
    train_paths, train_labels = [train.paths[int(i)] for i in keep_tr], train.labels[keep_tr]
    val_paths, val_labels = [val.paths[int(i)] for i in keep_va], val.labels[keep_va]
    do_augment = _param(params, "augment", False, bool)
    batch = _param(params, "batch", 32, int)
    generator = seed(config)  # then the model: the same initialisation for every cell of a seed
    model = build(params)

    def train_batch(idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = datasets.load_images([train_paths[int(i)] for i in idx], size)
        if do_augment:
            x = augment(x, generator)
        return _normalize(x), train_labels[idx]

    def evaluate(m: nn.Module) -> dict[str, float]:
        loss, hits = 0.0, 0
        for idx in _chunks(len(val_paths), batch):
            x = _normalize(datasets.load_images([val_paths[int(i)] for i in idx], size)).to(dev)
            dl, dh = _classify(m, x, val_labels[idx].to(dev))
            loss, hits = loss + dl, hits + dh
        return {"val_loss": loss / len(val_paths), "val_acc": _fraction(hits, len(val_paths))}

    optimizer = torch.optim.SGD(
        model.parameters(), lr=_param(params, "lr", 0.01, float), momentum=float(params.get("momentum", 0.0))
    )
    # "divided by 10 upon 10 epochs with no [improvement] in validation accuracy": Keras's patience 10 is
    # torch's 9 (torch lowers the rate once more than `patience` epochs in a row did not improve)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=9)
    loop = Loop(model, optimizer, len(train_paths), batch, train_batch, F.cross_entropy, evaluate, scheduler, "val_acc")
    run(config, report, loop, dev, (3, size, size), generator)


def train_imagenette_vgg16(config: dict[str, Any], report: Report) -> None:
    _imagenette(config, report, vgg16)


def train_imagenette_resnet50(config: dict[str, Any], report: Report) -> None:
    _imagenette(config, report, resnet50)


# --- §5.5, Table 3: U-Net segmentation -------------------------------------------------------------------


class UNet(nn.Module):
    """Ronneberger et al.'s U-Net with 'same' padding (Keras implementations such as the paper's
    source, Chopra's): four down steps of two 3×3 convs and a 2×2 max-pool (widths w, 2w, 4w,
    8w, bottleneck 16w; w = 64 in the original), four up steps of a 2×2 transposed conv,
    concatenation with the down path's output and two 3×3 convs, and a 1×1 conv to one sigmoid
    output (a binary mask)."""

    def __init__(self, width: int = 64, in_channels: int = 3):
        super().__init__()
        w = [width * 2**i for i in range(5)]
        self.down = nn.ModuleList([double_conv(in_channels, w[0])] + [double_conv(w[i], w[i + 1]) for i in range(3)])
        self.bottleneck = double_conv(w[3], w[4])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(4))])
        self.up = nn.ModuleList([double_conv(2 * w[i], w[i]) for i in reversed(range(4))])
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for upconv, block, skip in zip(self.ups, self.up, reversed(skips), strict=True):
            x = block(torch.cat([upconv(x), skip], dim=1))
        return torch.sigmoid(self.head(x))


def unet(params: dict[str, Any]) -> nn.Module:
    return UNet(width=_param(params, "width", 64, int))


def _masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the sigmoid output against the binary mask over the pixels that are not void."""
    fg, valid = target[:, :1], target[:, 1:]
    return ((pred.float() - fg) ** 2 * valid).sum() / valid.sum().clamp(min=1)


def train_segmentation_unet(config: dict[str, Any], report: Report) -> None:
    params = config["params"]
    dev = device()
    train, val = datasets.segmentation(params.get("data"))
    size = _param(params, "size", 256, int)
    if size % 16:
        raise OptionError(f"param size={size}: the U-Net's four down steps need a multiple of 16")
    keep_tr, keep_va = subset(len(train.images), params), subset(len(val.images), params)
    batch = _param(params, "batch", 16, int)
    generator = seed(config)  # then the model: the same initialisation for every cell of a seed
    model = unet(params)

    def train_batch(idx: torch.Tensor, _g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return datasets.load_pairs(train, [int(keep_tr[i]) for i in idx], size)

    def evaluate(m: nn.Module) -> dict[str, float]:
        sse, hits, inter, union, pixels = 0.0, 0, 0, 0, 0
        for chunk in _chunks(len(keep_va), batch):
            x, t = datasets.load_pairs(val, [int(keep_va[i]) for i in chunk], size)
            x, t = x.to(dev), t.to(dev)
            p = m(x).float()
            fg, valid = t[:, :1] > 0.5, t[:, 1:] > 0.5
            pred = p > 0.5
            sse += float((((p - t[:, :1]) ** 2) * valid).sum())
            hits += int(((pred == fg) & valid).sum())
            inter += int((pred & fg & valid).sum())
            union += int(((pred | fg) & valid).sum())
            pixels += int(valid.sum())
        return {
            "val_loss": sse / max(pixels, 1),
            "val_acc": _fraction(hits, max(pixels, 1)),
            "val_iou": _fraction(inter, union) if union else 1.0,
        }

    loop = Loop(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=_param(params, "lr", 1e-3, float)),
        n_train=len(keep_tr),
        batch=batch,
        train_batch=train_batch,
        loss=_masked_mse,
        evaluate=evaluate,
        # "early stopping with a minimum loss change of 0.01 for 10 training epochs" (the sweep's own rule has no
        # minimum change: this one ends the trial first, and the sweep's stop_epoch is then its last epoch)
        stopper=EarlyStopping(_param(params, "patience", 10, int), "min", float(params.get("min_delta", 0.01))),
        stop_metric="val_loss",
    )
    run(config, report, loop, dev, (3, size, size), generator)
