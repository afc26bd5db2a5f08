"""How analyze scales: time and peak memory vs model size, and a large sharded checkpoint.

1. torchvision resnet18 → resnet152 and vgg11 → vgg19 (random init, seed 0), each saved once as
   safetensors, then ``entropyflow analyze FILE --arch torchvision:NAME`` in a fresh process:
   wall time, peak RSS (ru_maxrss of the child), and the in-process estimation phase of the paper
   estimator (median of 5 after a warm-up) against the number of filters (the cost must grow linearly with filters; the
   printed fit gives µs per filter and R²).
2. A synthetic sharded safetensors checkpoint of several GB (``--shard-gb``, float32 dense
   weights with a small square part) analysed bare: peak RSS must stay near the largest tensor
   plus a fixed overhead, not near the checkpoint size (tensors are streamed with mmap).

    python benchmarks/scaling_bench.py [--synthetic-gb 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import child, describe, git_rev  # noqa: E402

MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg13", "vgg16", "vgg19"]

PHASE = """
import json, statistics, sys, time, torch, entropyflow
def once():
    stamps = {}
    def progress(stage, done, total):
        stamps.setdefault(stage + '_start', time.perf_counter())
        if done == total:
            stamps[stage + '_end'] = time.perf_counter()
    r = entropyflow.analyze(sys.argv[1], arch=sys.argv[2], hash_files=False, progress=progress)
    return stamps["estimate_end"] - stamps["estimate_start"], r
once()  # warm-up
runs = [once() for _ in range(5)]
r = runs[-1][1]
print(json.dumps({"estimate_s": statistics.median(t for t, _ in runs),
                  "filters": sum(l.filters for l in r.layers), "layers": len(r.layers)}))
"""


def save_model(name: str, folder: Path) -> Path:
    path = folder / f"{name}.safetensors"
    if not path.exists():
        import torch
        import torchvision
        from safetensors.torch import save_file

        torch.manual_seed(0)
        sd = {k: v.contiguous() for k, v in getattr(torchvision.models, name)().state_dict().items()}
        save_file(sd, str(path))
    return path


def synthetic(folder: Path, gb: float) -> tuple[Path, int, int]:
    """Shards of (16384, 1024) float32 'dense' weights (64 MiB each) with an index.json."""
    import torch
    from safetensors.torch import save_file

    out = folder / f"synthetic-{gb:g}gb"
    index = out / "model.safetensors.index.json"
    n = max(1, int(gb * 1024 / 64))
    per_shard = 8
    if not index.exists():
        out.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(0)
        weight_map = {}
        for s in range(0, n, per_shard):
            shard = f"model-{s // per_shard + 1:05d}.safetensors"
            tensors = {
                f"layers.{i}.weight": torch.randn(16384, 1024, generator=g) / 32
                for i in range(s, min(n, s + per_shard))
            }
            save_file(tensors, str(out / shard))
            weight_map.update({k: shard for k in tensors})
        index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    total = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    return index, total, 16384 * 1024 * 4


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "entropyflow-bench")
    ap.add_argument("--synthetic-gb", type=float, default=3.0)
    ap.add_argument("--models", nargs="+", default=MODELS)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    py = sys.executable

    rows = []
    for name in args.models:
        path = save_model(name, args.workdir)
        wall, rss, _ = child(
            [
                py,
                "-m",
                "entropyflow",
                "analyze",
                str(path),
                "--arch",
                f"torchvision:{name}",
                "-q",
                "--no-plot",
                "--no-html",
                "-o",
                str(args.workdir / "report"),
            ]
        )
        _, _, out = child([py, "-c", PHASE, str(path), f"torchvision:{name}"])
        phase = json.loads(out.strip().splitlines()[-1])
        rows.append(
            (name, path.stat().st_size / 2**20, phase["layers"], phase["filters"], wall, rss, phase["estimate_s"])
        )

    index, total, largest = synthetic(args.workdir, args.synthetic_gb)
    s_wall, s_rss, _ = child(
        [
            py,
            "-m",
            "entropyflow",
            "analyze",
            str(index),
            "-q",
            "--no-plot",
            "--no-html",
            "-o",
            str(args.workdir / "report"),
        ]
    )
    base_wall, base_rss, _ = child([py, "-c", "import torch, entropyflow.analysis"])

    print(f"entropyflow scaling benchmark  (git {git_rev()})")
    for k, v in describe().items():
        print(f"  {k:14s} {v}")
    print()
    print(
        "| model | checkpoint MiB | layers | filters | analyze wall s | peak RSS MiB | estimate phase s | µs / filter |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, mib, layers, filters, wall, rss, est in rows:
        print(
            f"| {name} | {mib:.0f} | {layers} | {filters} | {wall:.2f} | {rss:.0f} | {est:.3f} | "
            f"{est / filters * 1e6:.1f} |"
        )
    resnets = [r for r in rows if r[0].startswith("resnet")]
    if len(resnets) >= 2:
        import numpy as np

        x = np.array([r[3] for r in resnets], float)
        y = np.array([r[6] for r in resnets], float)
        slope, icpt = np.polyfit(x, y, 1)
        r2 = 1 - ((y - (slope * x + icpt)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        print(
            f"\nresnet estimate phase vs filters: {slope * 1e6:.2f} µs per filter + {icpt * 1e3:.1f} ms, R² = {r2:.3f}"
        )
    print(
        f"\nsynthetic sharded safetensors: {total / 2**30:.2f} GiB in {len(list(index.parent.glob('*.safetensors')))} "
        "shards, "
        f"largest tensor {largest / 2**20:.0f} MiB"
    )
    print(
        f"  analyze wall {s_wall:.2f} s, peak RSS {s_rss:.0f} MiB; baseline (python + import torch + entropyflow) "
        f"{base_rss:.0f} MiB → overhead above baseline {s_rss - base_rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
