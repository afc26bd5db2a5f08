"""The estimation phase on the CPU and on CUDA, for both estimators.

torchvision resnet50 and vgg16 at 3x224x224 (random init, seed 0), built once; each analysis is
``entropyflow.analyze(module, ...)`` and the *estimation phase* is timed from the progress
callbacks (weights already in memory, trace done): what ``--device`` changes. Median of
``--repeat`` after one warm-up (CUDA context, kernels, allocator). The spectral target on a
lent H100/H200 is resnet50 < 1 s. Prints which device ran each row; without CUDA the GPU rows
are skipped with a note. Also checks that both devices give the same numbers.

    python benchmarks/device_bench.py [--models resnet50 vgg16] [--repeat 3] [--max-gpu-mem 8GiB]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, git_rev  # noqa: E402


def phase(model, estimator: str, device: str, budget: str | None):
    import torch

    import entropyflow
    from entropyflow.spec import parse_bytes

    stamps: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "estimate":
            stamps.setdefault("start", time.perf_counter())
            if done == total:
                stamps["end"] = time.perf_counter()

    result = entropyflow.analyze(
        model,
        input_size=(3, 224, 224),
        estimator=estimator,
        device=device,
        hash_files=False,
        max_mem=parse_bytes(budget),
        progress=progress,
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    end = time.perf_counter()  # dense layers finish after the last progress tick
    return end - stamps["start"], result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-gpu-mem", default=None, help="memory budget of batched work (default 256MiB)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import torchvision

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows, agreement = [], []
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)().eval()
        for estimator in ("paper", "spectral"):
            results = {}
            for device in devices:
                phase(model, estimator, device, args.max_gpu_mem)  # warm-up
                runs = []
                for _ in range(args.repeat):
                    t, results[device] = phase(model, estimator, device, args.max_gpu_mem)
                    runs.append(t)
                rows.append((name, estimator, device, statistics.median(runs), runs))
            if len(results) == 2:
                a, b = results["cpu"], results["cuda"]
                per = max(
                    float(np.max(np.abs(x.per_position - y.per_position), initial=0))
                    for x, y in zip(a.layers, b.layers, strict=True)
                )
                joint = max(
                    (
                        abs(x.joint - y.joint) / max(1.0, abs(x.joint))
                        for x, y in zip(a.layers, b.layers, strict=True)
                        if x.joint is not None
                    ),
                    default=0.0,
                )
                agreement.append((name, estimator, per, joint))

    print(f"entropyflow estimation phase, CPU vs CUDA  (git {git_rev()}, median of {args.repeat} after a warm-up)")
    for k, v in describe().items():
        print(f"  {k:14s} {v}")
    if "cuda" not in devices:
        print("  CUDA not available here: GPU rows skipped")
    print()
    print("| model | estimator | device | estimation phase s | runs (s) |")
    print("| --- | --- | --- | ---: | --- |")
    for name, est, dev, med, runs in rows:
        print(f"| {name} | {est} | {dev} | {med:.3f} | {' '.join(f'{r:.3f}' for r in runs)} |")
    if agreement:
        print("\n| model | estimator | max |Δ per position| CPU vs CUDA | max relative |Δ joint| |")
        print("| --- | --- | ---: | ---: |")
        for name, est, per, joint in agreement:
            print(f"| {name} | {est} | {per:.1e} | {joint:.1e} |")


if __name__ == "__main__":
    main()
