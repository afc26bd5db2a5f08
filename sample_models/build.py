"""Build the bundled sample checkpoints from scikit-learn's digits (real data shipped with sklearn).

    python sample_models/build.py                # writes sample_models/*.pt and README.md
    python sample_models/build.py --quick --out /tmp/samples   # a fast smoke run (tests use it)
    python sample_models/build.py --checkpoints /tmp/ckpts     # digits_vgg over its 40 epochs
                                                               # (epoch_00.pt … epoch_40.pt; not committed)

Each checkpoint is ``{'entropyflow': manifest, 'state_dict': ...}``: the manifest names the
architecture (``sample:NAME``) and input size, so ``entropyflow analyze sample_models/FILE``
needs no flags, and records how the model was trained and how well it does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from entropyflow.samples import build_sample
from entropyflow.samples.data import SPLIT_SEED, digits

HERE = Path(__file__).resolve().parent
SEED = SPLIT_SEED


def batches(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield perm[i : i + size]


def train(model, loss_fn, xtr, ytr, epochs: int, lr: float, on_epoch=None):
    """Adam, batch 64; ``on_epoch(epoch, model)`` after epoch 0 (the initialisation) and each epoch
    (it only reads the model: the trained weights are the same with or without it)."""
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if on_epoch:
        on_epoch(0, model)
    model.train()
    for epoch in range(1, epochs + 1):
        for idx in batches(len(xtr), 64, gen):
            opt.zero_grad()
            loss_fn(model, xtr[idx], ytr[idx]).backward()
            opt.step()
        if on_epoch:
            on_epoch(epoch, model)
    model.eval()
    return model


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def classifier(name: str, data, epochs: int, trained: bool = True, on_epoch=None):
    xtr, xte, ytr, yte = data

    def img(x):
        return x.view(-1, 1, 8, 8)

    torch.manual_seed(SEED)
    model = build_sample(name)
    if trained:
        train(model, lambda m, x, y: F.cross_entropy(m(img(x)), y), xtr, ytr, epochs, 3e-3, on_epoch)
    model.eval()
    metrics = {"train_accuracy": accuracy(model, img(xtr), ytr), "test_accuracy": accuracy(model, img(xte), yte)}
    task = "10-class digit classification, cross-entropy, Adam lr 3e-3, batch 64"
    return model, metrics, task


def autoencoder(data, epochs: int):
    xtr, xte, _, _ = data
    torch.manual_seed(SEED)
    model = build_sample("digits_autoencoder")
    train(model, lambda m, x, _y: F.mse_loss(m(x), x), xtr, xtr, epochs, 3e-3)
    with torch.no_grad():
        metrics = {"train_mse": float(F.mse_loss(model(xtr), xtr)), "test_mse": float(F.mse_loss(model(xte), xte))}
    return model, metrics, "reconstruction of 64-pixel digits, MSE, sigmoid activations, Adam lr 3e-3 (paper §5.2)"


def unet(data, epochs: int):
    xtr, xte, _, _ = data
    gen = torch.Generator().manual_seed(SEED)

    def noisy(x):
        return (x + 0.35 * torch.randn(x.shape, generator=gen)).view(-1, 1, 8, 8)

    def mask(x):
        return (x > 0.3).float().view(-1, 1, 8, 8)

    ntr, nte = noisy(xtr), noisy(xte)
    torch.manual_seed(SEED)
    model = build_sample("digits_unet")
    train(model, lambda m, x, y: F.binary_cross_entropy_with_logits(m(x), y), ntr, mask(xtr), epochs, 3e-3)

    def scores(x, y):
        with torch.no_grad():
            p = (model(x) > 0).float()
        inter, union = float((p * y).sum()), float(((p + y) > 0).float().sum())
        return float((p == y).float().mean()), inter / union

    (tra, tri), (tea, tei) = scores(ntr, mask(xtr)), scores(nte, mask(xte))
    metrics = {"train_pixel_accuracy": tra, "train_iou": tri, "test_pixel_accuracy": tea, "test_iou": tei}
    return (
        model,
        metrics,
        "stroke segmentation (pixel > 0.3) of digits with Gaussian noise σ=0.35, BCE, Adam lr 3e-3 (paper §5.5)",
    )


def save(out: Path, file: str, arch: str, model, metrics: dict, task: str, epochs: int, trained: bool) -> None:
    from entropyflow.samples import sample_info

    manifest = {
        "arch": f"sample:{arch}",
        "input_size": list(sample_info(arch).input_size),
        "trained": trained,
        "task": task,
        "epochs": epochs if trained else 0,
        "seed": SEED,
        "metrics": metrics,
        "data": "sklearn.datasets.load_digits (1797 images, 80/20 stratified split, random_state=0)",
        "built_by": "sample_models/build.py",
    }
    torch.save({"entropyflow": manifest, "state_dict": model.state_dict()}, out / file)


def checkpoints(folder: Path, epochs: int = 40, every: int = 1) -> list[Path]:
    """Train digits_vgg exactly as ``digits_vgg.pt`` and save ``epoch_NN.pt`` (with the manifest)
    at epoch 0 (the initialisation) and every ``every`` epochs: a training trajectory for
    ``entropyflow track``."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    data = digits()

    def keep(epoch: int, model) -> None:
        if epoch % every == 0 or epoch == epochs:
            name = f"epoch_{epoch:02d}.pt"
            save(folder, name, "digits_vgg", model, {}, "digits_vgg training trajectory", epoch, epoch > 0)
            written.append(folder / name)

    classifier("digits_vgg", data, epochs, on_epoch=keep)
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--quick", action="store_true", help="one epoch each (smoke test)")
    ap.add_argument("--checkpoints", type=Path, help="only write digits_vgg's training checkpoints into this folder")
    ap.add_argument("--every", type=int, default=1, help="with --checkpoints: every N epochs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.checkpoints:
        for path in checkpoints(args.checkpoints, 1 if args.quick else 40, args.every):
            print("wrote", path)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    data = digits()
    ep = (lambda n: 1) if args.quick else (lambda n: n)
    rows = []
    for file, arch, fn, epochs, trained in (
        ("digits_vgg.pt", "digits_vgg", lambda e: classifier("digits_vgg", data, e), ep(40), True),
        ("digits_vgg_random.pt", "digits_vgg", lambda e: classifier("digits_vgg", data, e, trained=False), 0, False),
        ("digits_resnet.pt", "digits_resnet", lambda e: classifier("digits_resnet", data, e), ep(30), True),
        ("digits_autoencoder.pt", "digits_autoencoder", lambda e: autoencoder(data, e), ep(150), True),
        ("digits_unet.pt", "digits_unet", lambda e: unet(data, e), ep(60), True),
    ):
        model, metrics, task = fn(epochs)
        save(args.out, file, arch, model, metrics, task, epochs, trained)
        rows.append((file, arch, trained, epochs, metrics))
        print(file, json.dumps(metrics))
    (args.out / "README.md").write_text(readme(rows))


def readme(rows) -> str:
    lines = [
        "# Sample models",
        "",
        "Small checkpoints trained on scikit-learn's digits (8×8 grayscale, shipped with scikit-learn) by",
        "`sample_models/build.py`; rebuild them with `python sample_models/build.py` (needs `scikit-learn`).",
        "Each file is `{'entropyflow': manifest, 'state_dict': ...}`; the manifest names the architecture",
        "(`sample:NAME`, defined in `entropyflow/samples/models.py`) and the input size, so",
        "`entropyflow analyze sample_models/FILE` gives geometry and totals with no flags.",
        "`entropyflow analyze` with no argument analyses `digits_vgg.pt`.",
        "",
        "| file | architecture | trained | epochs | metrics (train / test) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for file, arch, trained, epochs, m in rows:
        keys = sorted({k.split("_", 1)[1] for k in m})
        shown = ", ".join(f"{k} {m['train_' + k]:.4f} / {m['test_' + k]:.4f}" for k in keys)
        lines.append(
            f"| `{file}` | `sample:{arch}` | {'yes' if trained else 'no (seed 0 init)'} | {epochs} | {shown} |"
        )
    lines += [
        "",
        "`digits_vgg_random.pt` is `torch.manual_seed(0)` followed by the architecture's constructor, i.e. the same",
        "weights as `entropyflow analyze sample:digits_vgg --random-init --seed 0`: the Figure-1-style",
        "trained-versus-random pair. Data: 80/20 stratified split with `random_state=0`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
