"""Time `entropyflow analyze` on a VGG16-size checkpoint against the floor.

The floor is what any tool must spend: start Python, import torch, open the checkpoint with
``torch.load(mmap=True)`` and compute the float64 log-determinants of the three dense square
parts (two 4096² LU factorisations dominate). Both are timed as whole processes, median of
``--repeat`` runs after one warm-up (page cache warm). Target: analyze ≤ 1.3 × floor.

    python benchmarks/analyze_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, git_rev  # noqa: E402

FLOOR = """
import torch
sd = torch.load({path!r}, mmap=True, weights_only=True)
for k in ("classifier.0.weight", "classifier.3.weight", "classifier.6.weight"):
    w = sd[k]; m = min(w.shape)
    torch.linalg.slogdet(w[:m, :m].double())
"""


def make_checkpoint(folder: Path) -> Path:
    path = folder / "vgg16_random.pth"
    if not path.exists():
        import torch
        import torchvision

        torch.manual_seed(0)
        torch.save(torchvision.models.vgg16().state_dict(), path)
    return path


def timed(cmd: list[str], repeat: int) -> tuple[float, list[float]]:
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        runs.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"command failed: {' '.join(cmd)}\n{r.stderr}")
    return statistics.median(runs), runs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "entropyflow-bench")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(args.workdir)
    out = args.workdir / "report"
    py = sys.executable
    quiet = ["-q", "--no-plot", "--no-html", "-o", str(out)]  # the analysis and its CSV/JSON; figures are timed apart
    cases = [
        ("floor: python + import torch + torch.load(mmap) + 3 dense slogdet", [py, "-c", FLOOR.format(path=str(ckpt))]),
        (
            "entropyflow analyze CKPT (bare state dict, no totals)",
            [py, "-m", "entropyflow", "analyze", str(ckpt), *quiet],
        ),
        (
            "entropyflow analyze CKPT --arch torchvision:vgg16",
            [py, "-m", "entropyflow", "analyze", str(ckpt), "--arch", "torchvision:vgg16", *quiet],
        ),
        (
            "entropyflow analyze CKPT --arch ... --no-hash",
            [py, "-m", "entropyflow", "analyze", str(ckpt), "--arch", "torchvision:vgg16", "--no-hash", *quiet],
        ),
        (
            "entropyflow analyze CKPT --arch ... (+ figures and report.html)",
            [py, "-m", "entropyflow", "analyze", str(ckpt), "--arch", "torchvision:vgg16", "-q", "-o", str(out)],
        ),
    ]
    results = [(name, *timed(cmd, args.repeat)) for name, cmd in cases]
    floor = results[0][1]
    print(
        f"entropyflow analyze benchmark  (git {git_rev()}, checkpoint {ckpt.stat().st_size / 2**20:.0f} MiB, median "
        f"of {args.repeat})"
    )
    for k, v in describe().items():
        print(f"  {k:14s} {v}")
    print()
    print(f"| {'case':66s} | median s | runs (s) | × floor |")
    print(f"| {'-' * 66} | -------- | -------- | ------- |")
    for name, med, runs in results:
        print(f"| {name:66s} | {med:8.2f} | {' '.join(f'{r:.2f}' for r in runs)} | {med / floor:7.2f} |")


if __name__ == "__main__":
    main()
