"""Per-epoch cost of the paper-scale sweep tasks' FULL-size models on this machine's CPU.

    python benchmarks/paper_tasks_bench.py [--steps 2] [--threads N] [--tasks a,b]

For each task: the model the task trains (default params), synthetic batches of the task's input
size and batch size, a warm-up step, then at least ``--steps`` timed training steps (forward,
loss, backward, optimiser step; baseline, no entropy term; small models: as many as fit in 3 s, up
to 500) and evaluation batches (forward only). The epoch time is EXTRAPOLATED from those: steps
per epoch of the real dataset's size × the mean step time, plus the validation set's batches ×
the mean evaluation time. Data loading and decoding (JPEGs for ImageNette, PNGs for the U-Net) are not included.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch
import torch.nn.functional as F

from entropyflow.sweep import paper_tasks as paper

# task → (model, input shape, batch, train size, val size, loss, optimiser); the datasets' real sizes
TASKS = {
    "mnist-autoencoder": (lambda: paper.autoencoder({}, 784), (784,), 32, 60_000, 10_000, "mse", "adam"),
    "cifar10-autoencoder": (lambda: paper.autoencoder({}, 3072), (3072,), 32, 50_000, 10_000, "mse", "adam"),
    "cifar10-cnn": (lambda: paper.cnn({}), (3, 32, 32), 32, 50_000, 10_000, "ce", "adam"),
    "imagenette-vgg16": (lambda: paper.vgg16({}), (3, 224, 224), 32, 9_469, 3_925, "ce", "sgd"),
    "imagenette-resnet50": (lambda: paper.resnet50({}), (3, 224, 224), 32, 9_469, 3_925, "ce", "sgd"),
    "segmentation-unet": (lambda: paper.unet({}), (3, 256, 256), 16, 60_000, 10_000, "mse-mask", "adam"),
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench(name: str, steps: int, timing_batch: int | None = None) -> tuple[float, float, float, int, int]:
    """(train step s, eval batch s, epoch s, parameters, steps timed) at the task's batch; with
    ``timing_batch`` timed at that batch and scaled linearly to the task's (an extrapolation)."""
    build, shape, task_batch, n_train, n_val, loss_kind, opt_kind = TASKS[name]
    batch = timing_batch or task_batch
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01) if opt_kind == "sgd" else torch.optim.Adam(model.parameters())
    x = torch.rand(batch, *shape)
    if loss_kind == "ce":
        y = torch.randint(0, 10, (batch,))
    elif loss_kind == "mse-mask":
        y = torch.cat([(torch.rand(batch, 1, *shape[1:]) > 0.5).float(), torch.ones(batch, 1, *shape[1:])], 1)
    else:
        y = x

    def loss(out: torch.Tensor) -> torch.Tensor:
        if loss_kind == "ce":
            return F.cross_entropy(out, y)
        if loss_kind == "mse-mask":
            return paper._masked_mse(out, y)
        return F.mse_loss(out, y)

    def step() -> None:
        opt.zero_grad()
        loss(model(x)).backward()
        opt.step()

    model.train()
    step()  # warm-up
    train_s, n_train_steps = timed(step, steps)
    model.eval()
    with torch.no_grad():
        model(x)
        eval_s, _ = timed(lambda: model(x), steps)
    train_s, eval_s = train_s * task_batch / batch, eval_s * task_batch / batch
    epoch = math.ceil(n_train / task_batch) * train_s + math.ceil(n_val / task_batch) * eval_s
    params = sum(p.numel() for p in model.parameters())
    return train_s, eval_s, epoch, params, n_train_steps


def timed(fn, steps: int, at_least_s: float = 3.0, at_most: int = 500) -> tuple[float, int]:
    """Mean seconds per call over ``steps`` calls, or more (up to ``at_most``) until ``at_least_s``
    have passed: small models are timed over many steps, large ones over ``steps``."""
    start, n = time.perf_counter(), 0
    while n < steps or (time.perf_counter() - start < at_least_s and n < at_most):
        fn()
        n += 1
    return (time.perf_counter() - start) / n, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    # one thread: two on a shared 2-core machine measured 30× slower (OpenMP spin waits)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--timing-batch", type=int, default=None, help="time at this batch, scale to the task's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"load average at start: {load:.1f}; machine: {cpu_name()}, {os.cpu_count()} cores "
        f"({args.threads} torch threads), {platform.platform()}, "
        f"torch {torch.__version__}; {args.steps} timed steps after one warm-up; synthetic batches"
    )
    print(
        "| task | parameters | batch | train step (s, measured) | eval batch (s, measured) | epoch on this CPU "
        "(extrapolated) | GPU |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in args.tasks.split(","):
        train_s, eval_s, epoch, params, n = bench(name, args.steps, args.timing_batch)
        batch = TASKS[name][2]
        scaled = f", timed at batch {args.timing_batch}, scaled" if args.timing_batch else ""
        hours = f"{epoch / 3600:.1f} h" if epoch >= 3600 else f"{epoch / 60:.1f} min"
        print(
            f"| {name} | {params / 1e6:.2f} M | {batch} | {train_s:.4f} ({n} steps{scaled}) | {eval_s:.4f} | "
            f"{hours} (extrapolated) | not measured in this session |",
            flush=True,
        )


if __name__ == "__main__":
    main()
