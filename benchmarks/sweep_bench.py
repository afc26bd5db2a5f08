"""What Ray Tune costs a sweep: start-up, and per-trial overhead against a plain loop.

The same trials (a small CNN on scikit-learn's digits, ``--epochs`` epochs each, the baseline
and one λ cell over ``--seeds`` seeds) run three ways:

* **plain**: one process calls the training function for each trial, one after the other (what
  a hand-written loop over seeds would do; one torch thread, as each sweep trial has);
* **sweep, 1 CPU**: ``run_sweep`` with a local Ray of one CPU, so trials also run one at a
  time: the difference to *plain* is Ray's start-up plus its per-trial overhead;
* **sweep, all CPUs**: the same with every core (what a user gets by default).

Ray start-up (``ray.init`` to ready, and ``ray.shutdown``) is timed on its own. Prints a table
and the machine.

    python benchmarks/sweep_bench.py [--seeds 4] [--epochs 3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, git_rev  # noqa: E402


def plain(spec, train) -> float:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    for cell in spec.cells:
        for seed in spec.seeds:
            train(cell.trial_config(seed, spec.epochs, spec.params), lambda **_: None)
    return time.perf_counter() - started


def swept(spec, cpus: int) -> float:
    from entropyflow.sweep import RayOptions, run_sweep

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run_sweep("task:digits-cnn", spec, out=Path(folder) / "out", ray_options=RayOptions(cpus=cpus))
        return time.perf_counter() - started


def ray_startup(cpus: int) -> tuple[float, float]:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    up = time.perf_counter() - started
    started = time.perf_counter()
    ray.shutdown()
    return up, time.perf_counter() - started


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)

    import os

    from entropyflow.sweep import task_spec
    from entropyflow.sweep.tasks import TASKS

    spec = task_spec("digits-cnn", seeds=args.seeds, epochs=args.epochs, lambdas=(0.0, 1e-3), placement_names=["first"])
    n = len(spec.cells) * len(spec.seeds)
    cores = os.cpu_count() or 1
    train = TASKS["digits-cnn"].train
    plain(spec, train)  # warm-up: imports, the digits data, allocator
    rows = {"plain": [], "sweep, 1 CPU": [], f"sweep, {cores} CPUs": [], "ray start": [], "ray stop": []}
    for _ in range(args.repeat):
        rows["plain"].append(plain(spec, train))
        rows["sweep, 1 CPU"].append(swept(spec, 1))
        rows[f"sweep, {cores} CPUs"].append(swept(spec, cores))
        up, down = ray_startup(cores)
        rows["ray start"].append(up)
        rows["ray stop"].append(down)
    med = {k: statistics.median(v) for k, v in rows.items()}

    print(f"# entropyflow sweep overhead  (git {git_rev()})")
    for k, v in describe().items():
        print(f"#   {k}: {v}")
    print(f"# {n} trials (digits-cnn: baseline and first λ=1e-3, {args.seeds} seeds, {args.epochs} epochs each); "
          f"median of {args.repeat}")  # fmt: skip
    print()
    print("| run | wall (s) | per trial (s) | ratio to plain |")
    print("| --- | --- | --- | --- |")
    for k in ("plain", "sweep, 1 CPU", f"sweep, {cores} CPUs"):
        print(f"| {k} | {med[k]:.1f} | {med[k] / n:.2f} | {med[k] / med['plain']:.2f} |")
    print()
    overhead = (med["sweep, 1 CPU"] - med["ray start"] - med["ray stop"] - med["plain"]) / n
    trial = med["plain"] / n
    print("| cost | s | ratio to the plain loop |")
    print("| --- | --- | --- |")
    print(f"| Ray start-up | {med['ray start']:.1f} | {med['ray start'] / med['plain']:.2f} of all {n} trials |")
    print(f"| Ray shutdown | {med['ray stop']:.1f} | {med['ray stop'] / med['plain']:.2f} of all {n} trials |")
    per = f"{overhead / trial:.2f} of one trial ({trial:.2f} s)"
    print(f"| Tune per trial (1 CPU, start-up excluded) | {overhead:.2f} | {per} |")


if __name__ == "__main__":
    main()
