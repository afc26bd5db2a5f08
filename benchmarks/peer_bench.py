"""entropyflow against weightwatcher, the per-layer data-free analysis tool users run today.

Same models (torchvision vgg16 and resnet50 at random init, seed 0), same process, model built
once; each tool's analysis call is timed on that live module (median of ``--repeat`` for
entropyflow, one run for weightwatcher, whose default ``analyze()`` takes minutes):

* entropyflow paper estimator (``entropyflow.analyze(module)``: trace on meta, log|c11|, dense LU);
* entropyflow spectral estimator, when available (``estimator='spectral'``);
* weightwatcher ``WeightWatcher(model).analyze()`` (SVD of every layer's weight matrices).

weightwatcher is a benchmark extra (``pip install -e ".[bench]"``), never a runtime dependency:
without it its rows are skipped with a note.

    python benchmarks/peer_bench.py [--models vgg16 resnet50] [--repeat 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, git_rev  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (imports, allocator)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-peer", action="store_true", help="do not run weightwatcher even if installed")
    args = ap.parse_args(argv)

    import torch
    import torchvision

    import entropyflow
    from entropyflow.analysis import ESTIMATORS

    try:
        if args.skip_peer:
            raise ImportError
        logging.disable(logging.WARNING)
        warnings.filterwarnings("ignore")
        import weightwatcher as ww
    except ImportError:
        ww = None

    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)().eval()
        size = (3, 224, 224)
        paper = timed(
            lambda model=model, size=size: entropyflow.analyze(
                model, input_size=size, device=args.device, hash_files=False
            ),
            args.repeat,
        )
        spectral = None
        if "spectral" in ESTIMATORS:
            spectral = timed(
                lambda model=model, size=size: entropyflow.analyze(
                    model, input_size=size, device=args.device, estimator="spectral", hash_files=False
                ),
                max(1, args.repeat // 2),
            )
        peer = None
        if ww is not None:
            t = time.perf_counter()
            ww.WeightWatcher(model=model).analyze()
            peer = time.perf_counter() - t
        rows.append((name, paper, spectral, peer))

    print(
        f"entropyflow vs weightwatcher  (git {git_rev()}, device {args.device}, entropyflow median of {args.repeat}, "
        f"weightwatcher {'one run' if ww else 'not installed: skipped'})"
    )
    for k, v in describe().items():
        print(f"  {k:14s} {v}")
    print()

    def fmt(v):
        return "—" if v is None else f"{v:.2f}"

    def ratio(a, b):
        return "—" if a is None or b is None else (f"{b / a:,.0f}×" if b / a >= 10 else f"{b / a:.2f}×")

    print("| model | paper s | spectral s | weightwatcher s | ww / paper | ww / spectral |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, paper, spectral, peer in rows:
        print(
            f"| {name} | {fmt(paper)} | {fmt(spectral)} | {fmt(peer)} | {ratio(paper, peer)} | "
            f"{ratio(spectral, peer)} |"
        )


if __name__ == "__main__":
    main()
