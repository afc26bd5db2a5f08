"""PyTorch Lightning: the `EntropyGuidance` callback adds a λ config's entropy term to the loss,
logs it per layer, and logs the network's entropy profile every few epochs.

    pip install "entropyflow[lightning]"
    entropyflow recommend sample:digits_vgg --strategy first -o lambda.yaml
    python docs/examples/lightning_digits.py --config lambda.yaml --epochs 10 --out runs/lightning

The LightningModule holds the network as ``self.model``; the config names the bare network's
layers (``features.0``): the callback finds the ``model.`` prefix itself. Metrics go to
Lightning's CSV logger (``runs/lightning/.../metrics.csv``): ``entropy/term``, per layer
``entropy/term/<layer>``, and ``entropy/profile/model.<layer>/median`` at the profiled epochs.

The commands above run from a clone's root; from any other folder, give the script's own path
(it reads nothing relative to the working folder; ``--config`` and ``--out`` are relative to it).
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from entropyflow.integrations.lightning import EntropyGuidance
from entropyflow.samples import build_sample
from entropyflow.samples.data import digits


class DigitsClassifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = build_sample("digits_vgg")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss  # EntropyGuidance adds its term to this loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main(argv: list[str] | None = None) -> pl.Trainer:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="a λ config from `entropyflow recommend`")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--profile-every", type=int, default=2)
    ap.add_argument("--out", default="runs/lightning")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (tests)")
    args = ap.parse_args(argv)

    pl.seed_everything(args.seed, verbose=False)
    xtr, xte, ytr, yte = digits()
    train = DataLoader(TensorDataset(xtr.view(-1, 1, 8, 8), ytr), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(xte.view(-1, 1, 8, 8), yte), batch_size=512)
    guidance = EntropyGuidance(args.config, profile_every=args.profile_every, input_size=(1, 8, 8))
    trainer = pl.Trainer(
        max_epochs=args.epochs, max_steps=args.max_steps, accelerator="auto", default_root_dir=args.out,
        logger=pl.loggers.CSVLogger(args.out), callbacks=[guidance], enable_checkpointing=False,
        log_every_n_steps=5,
    )  # fmt: skip
    trainer.fit(DigitsClassifier(), train, val)
    val_acc = trainer.callback_metrics.get("val_acc")  # absent when --max-steps stops before the first validation
    shown = f"{float(val_acc):.4f}" if val_acc is not None else "not measured (stopped before the first epoch's end)"
    print(f"val_acc {shown}; metrics in {trainer.logger.log_dir}")
    return trainer


if __name__ == "__main__":
    main()
