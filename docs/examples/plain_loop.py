"""The plain PyTorch loop: a λ config from `entropyflow recommend`, the entropy term in the loss,
and the network's entropy profile recorded while it trains (CSV, and TensorBoard if installed).

    entropyflow recommend sample:digits_vgg --strategy first -o lambda.yaml
    python docs/examples/plain_loop.py --config lambda.yaml --epochs 10 --out runs/plain

Data: scikit-learn's digits (real 8×8 images, 80/20 split). Model: a fresh ``digits_vgg``.

The commands above run from a clone's root; from any other folder, give the script's own path
(it reads nothing relative to the working folder; ``--config`` and ``--out`` are relative to it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from entropyflow import EntropyRegularizer
from entropyflow.integrations import EntropyMonitor
from entropyflow.samples import build_sample
from entropyflow.samples.data import digits


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="a λ config from `entropyflow recommend`")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--profile-every", type=int, default=2, help="record the entropy profile every N epochs")
    ap.add_argument("--out", default="runs/plain", help="folder for entropy_profile.csv and TensorBoard events")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="stop each epoch after this many batches (tests)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, xte, ytr, yte = digits()
    xtr, xte = xtr.view(-1, 1, 8, 8), xte.view(-1, 1, 8, 8)
    torch.manual_seed(args.seed)
    model = build_sample("digits_vgg")
    reg = EntropyRegularizer.from_config(model, args.config)  # eq. 19: L_acc + Σ λ·(entropy terms)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    try:  # TensorBoard is optional: the CSV is always written
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
    except ImportError:
        writer = None
    monitor = EntropyMonitor(
        model, every=args.profile_every, input_size=(1, 8, 8), csv=out / "entropy_profile.csv", writer=writer,
        overwrite=True,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(args.seed)
    monitor.step(0)  # the initialisation's profile
    accuracy = float("nan")
    for epoch in range(1, args.epochs + 1):
        model.train()
        for step, idx in enumerate(torch.randperm(len(xtr), generator=generator).split(64)):
            if args.max_steps is not None and step >= args.max_steps:
                break
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx]) + reg()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(xte).argmax(1) == yte).float().mean())
        terms = ", ".join(f"{name} {value:+.4f}" for name, value in reg.breakdown().items())
        print(f"epoch {epoch:3d}  test accuracy {accuracy:.4f}  entropy term: {terms}")
        if writer is not None:
            writer.add_scalar("test_accuracy", accuracy, epoch)
        monitor.step(epoch)
    monitor.close()
    if writer is not None:
        writer.close()
    print(f"entropy profile every {args.profile_every} epochs: {out / 'entropy_profile.csv'}")
    return {"accuracy": accuracy, "history": monitor.history, "regularizer": reg}


if __name__ == "__main__":
    main()
