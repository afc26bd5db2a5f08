"""The paper's Figure 7 loop on real data: analyse a well-trained network, recommend where the
entropy loss goes, then train a fresh network of the same architecture with and without it.

    python docs/examples/train_digits.py                       # 30 epochs, 5 seeds, λ2 from the recommendation
    python docs/examples/train_digits.py --lambda 1e-2 --out runs/   # another λ2, figure and CSV in runs/

Data: scikit-learn's digits (1797 real 8×8 images, 80/20 stratified split). Model: the bundled
``sample:digits_vgg`` (4 convs + 2 dense). The reference is the bundled trained checkpoint.
Both runs of a seed start from the same initial weights and see the same batches, so the only
difference is the entropy term (seed 002's cross-entropy ``L_acc`` plus, or not, ``reg()``).

Prints per-epoch mean test accuracy and cross-entropy of both runs, the final accuracies with
the paired difference, and draws the learning curves (``train_digits.png``).

The commands above run from a clone's root; from any other folder, give the script's own path
(it reads nothing relative to the working folder; ``--config`` and ``--out`` are relative to it).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import entropyflow
from entropyflow.recommend import RecommendOptions, load_config, recommend
from entropyflow.samples import build_sample, sample_info
from entropyflow.samples.data import digits

BATCH = 64
LR = 3e-3


@dataclass
class Run:
    """One training run: per-epoch metrics (epoch 0 is the initial model)."""

    seed: int
    entropy: bool
    test_acc: list[float] = field(default_factory=list)
    train_ce: list[float] = field(default_factory=list)
    reg: list[float] = field(default_factory=list)  # the entropy term at the end of each epoch (nats × λ)
    first_log_c11: float = math.nan  # mean log|c11| of the first conv at the end


def evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train()
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def train(seed: int, config, data, epochs: int, max_steps: int | None = None) -> Run:
    """Train ``digits_vgg`` from the seed's initialisation; ``config`` None means cross-entropy only."""
    xtr, xte, ytr, yte = data
    img = lambda x: x.view(-1, 1, 8, 8)  # noqa: E731
    torch.manual_seed(seed)
    model = build_sample("digits_vgg")
    reg = entropyflow.EntropyRegularizer.from_config(model, config) if config is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    run = Run(seed, reg is not None)

    def record() -> None:
        acc, _ = evaluate(model, img(xte), yte)
        run.test_acc.append(acc)
        run.train_ce.append(evaluate(model, img(xtr), ytr)[1])
        run.reg.append(float(reg().detach()) if reg is not None else 0.0)

    record()
    steps = 0
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=gen).split(BATCH):
            opt.zero_grad()
            loss = F.cross_entropy(model(img(xtr[idx])), ytr[idx])  # L_acc (seed 002)
            if reg is not None:
                loss = loss + reg()  # + Σ λ2 L_conv terms of the recommended layers (eq. 19)
            loss.backward()
            opt.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        record()
        if max_steps is not None and steps >= max_steps:
            break
    c11 = model.features[0].weight.detach()[:, 0, 0, 0]
    run.first_log_c11 = float(torch.log(c11.abs()).mean())
    return run


def reference_config(lam: float | None, strategy: str):
    """Analyse the bundled well-trained digits_vgg and recommend a placement (Figure 7)."""
    analysis = entropyflow.analyze(str(sample_info("digits_vgg").path))
    opts = RecommendOptions(strategy=strategy, **({} if lam is None else {"lam_conv": lam}))
    return recommend(analysis, opts)


def mean_sd(values: list[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0)


def summarise(base: list[Run], ent: list[Run]) -> dict:
    """Print the learning curves and final accuracies; return the numbers printed."""
    epochs = len(base[0].test_acc)
    print(
        f"{'epoch':>5}  {'test acc (CE)':>13}  {'test acc (CE+H)':>15}  {'train CE (CE)':>13}  {'train CE (CE+H)':>15}"
    )
    for e in range(epochs):
        a = mean_sd([r.test_acc[e] for r in base])[0]
        b = mean_sd([r.test_acc[e] for r in ent])[0]
        la = mean_sd([r.train_ce[e] for r in base])[0]
        lb = mean_sd([r.train_ce[e] for r in ent])[0]
        print(f"{e:>5}  {a:>13.4f}  {b:>15.4f}  {la:>13.4f}  {lb:>15.4f}")
    fa, fb = [r.test_acc[-1] for r in base], [r.test_acc[-1] for r in ent]
    (ma, sa), (mb, sb) = mean_sd(fa), mean_sd(fb)
    md, sd = mean_sd([b - a for a, b in zip(fa, fb, strict=True)])
    se = sd / math.sqrt(len(fa)) if len(fa) > 1 else float("nan")
    print(
        f"final test accuracy over {len(fa)} seeds: CE {ma:.4f} ± {sa:.4f}, CE + entropy {mb:.4f} ± {sb:.4f}; "
        f"paired difference {md:+.4f}" + (f" ± {se:.4f} (s.e.)" if len(fa) > 1 else "")
    )
    ca, cb = mean_sd([r.first_log_c11 for r in base])[0], mean_sd([r.first_log_c11 for r in ent])[0]
    print(f"first conv, mean log|c11| at the end: CE {ca:.3f}, CE + entropy {cb:.3f} nats")
    return {
        "final_ce": ma,
        "final_entropy": mb,
        "paired_diff": md,
        "paired_se": se,
        "log_c11_ce": ca,
        "log_c11_entropy": cb,
    }


def draw(base: list[Run], ent: list[Run], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for runs, label, color in ((base, "cross-entropy", "#4C72B0"), (ent, "cross-entropy + entropy loss", "#DD8452")):
        for ax, values in zip(
            axes, ([[1 - a for a in r.test_acc] for r in runs], [r.train_ce for r in runs]), strict=True
        ):
            curves = torch.tensor(values)
            x = range(curves.shape[1])
            ax.plot(x, curves.mean(0), color=color, label=f"{label} (mean of {len(runs)} seeds)", lw=2)
            if len(runs) > 1:
                ax.fill_between(x, curves.min(0).values, curves.max(0).values, color=color, alpha=0.18, lw=0)
    axes[0].set(
        xlabel="epoch", ylabel="test error (1 − accuracy)", title="test error (band: min–max over seeds)", yscale="log"
    )
    axes[1].set(xlabel="epoch", ylabel="cross-entropy (nats)", title="training cross-entropy", yscale="log")
    axes[0].legend(loc="upper right", frameon=False)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_csv(runs: list[Run], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "entropy_loss", "epoch", "test_accuracy", "train_cross_entropy", "entropy_term"])
        for r in runs:
            for e, (a, c, h) in enumerate(zip(r.test_acc, r.train_ce, r.reg, strict=True)):
                w.writerow([r.seed, int(r.entropy), e, f"{a:.6f}", f"{c:.6f}", f"{h:.6f}"])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--lambda", dest="lam", type=float, default=None, help="λ2 (default: the recommendation's, 1e-3)")
    ap.add_argument("--strategy", default="auto", help="placement strategy for the recommendation (default auto)")
    ap.add_argument("--config", type=Path, default=None, help="use this λ config instead of recommending one")
    ap.add_argument("--max-steps", type=int, default=None, help="stop each run after this many optimiser steps")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for train_digits.png and train_digits.csv")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # deterministic and fair: both runs of a seed do the same arithmetic

    cfg = load_config(args.config) if args.config else reference_config(args.lam, args.strategy)
    layers = ", ".join(f"{layer.name} (λ={layer.lam:g})" for layer in cfg.layers)
    print(f"entropy loss: strategy {cfg.strategy.name}, form {cfg.form}, on {layers}")
    data = digits()
    base = [train(s, None, data, args.epochs, args.max_steps) for s in range(args.seeds)]
    ent = [train(s, cfg, data, args.epochs, args.max_steps) for s in range(args.seeds)]
    numbers = summarise(base, ent)
    args.out.mkdir(parents=True, exist_ok=True)
    draw(
        base,
        ent,
        args.out / "train_digits.png",
        f"digits_vgg on scikit-learn digits: cross-entropy vs. + entropy loss on {layers}, "
        f"strategy {cfg.strategy.name}",
    )
    write_csv(base + ent, args.out / "train_digits.csv")
    print(f"wrote {args.out / 'train_digits.png'} and {args.out / 'train_digits.csv'}")
    return {"base": base, "entropy": ent, "config": cfg, **numbers}


if __name__ == "__main__":
    main()
