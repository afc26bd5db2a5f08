"""`entropyflow track` serial against 2 Ray workers on this machine, and a projection for 1,000
checkpoints of a 7B model on K nodes from costs measured here.

Part 1 (one run of each, in fresh processes, what a user waits for): N checkpoints of a mid-size
model, one analysis ≈ 1–2 s here (a 4-layer MLP, 2048² bf16 weights, a bare state dict: four
float64 log-determinants each), ``track --seeds 0`` serial (with torch's default threads, and with
one) and with ``--workers 2`` (a local Ray started for the run).
Each run reports its wall time, the time to its first finished checkpoint (imports; for Ray also
its start and the workers' imports) and the steady rate after it (from the progress callback).

Part 2 (measured): the driver's sha256 rate (the cache key of every checkpoint is hashed where
``track`` runs, one file after another) and the per-GB cost of a worker task (1 CPU, 1 torch
thread: read, hash, analyse) on one Llama-7B-shaped decoder block (q, k, v, o 4096², gate and up
11008×4096, down 4096×11008; bf16, a bare state dict) and on its output head (32000×4096).
The projection (labelled as one) scales these to a 7B checkpoint (32 blocks + the head).

    python benchmarks/track_ray_bench.py [--n 24] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

RUN = """
import json, sys, time
t0 = time.perf_counter()
from entropyflow.analysis import AnalyzeOptions
from entropyflow.report import ReportOptions
from entropyflow.runs import track_to
from entropyflow.track import ParallelOptions, TrackOptions
marks = []
workers = int(sys.argv[3])
if len(sys.argv) > 4:
    import torch
    torch.set_num_threads(int(sys.argv[4]))
w = track_to(
    [sys.argv[1]], out=sys.argv[2], options=AnalyzeOptions(), track_options=TrackOptions(seeds=0),
    report=ReportOptions(plot=False), progress=lambda s, k, n: marks.append((k, time.perf_counter() - t0)),
    parallel=ParallelOptions(workers=workers) if workers else None,
)
print(json.dumps({"marks": marks, "analysed": w.trajectory.analysed, "failed": len(w.trajectory.failed)}))
"""

TASK = """
import json, sys, time, torch
torch.set_num_threads(1)
from entropyflow.analysis import analyze, AnalyzeOptions
analyze(sys.argv[1], AnalyzeOptions())  # warm-up: imports, first-call costs
t = time.perf_counter()
r = analyze(sys.argv[1], AnalyzeOptions())
print(json.dumps({"seconds": time.perf_counter() - t, "layers": len(r.layers)}))
"""


def make_checkpoints(folder: Path, n: int) -> Path:
    """``n`` checkpoints of a 4-layer MLP (2048² each, bf16, a bare state dict; 16 MiB), each a
    little further from the first."""
    import torch

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    sd = {f"layers.{i}.weight": torch.randn(2048, 2048, generator=g) / 45 for i in range(4)}
    for k in range(n):
        for w in sd.values():
            w.mul_(1.01).add_(0.001 * torch.randn(w.shape, generator=g))
        torch.save({name: w.to(torch.bfloat16) for name, w in sd.items()}, folder / f"epoch_{k:03d}.pt")
    return folder


def one_run(ck: Path, out: Path, workers: int, threads: int | None = None) -> dict:
    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    cmd = [sys.executable, "-c", RUN, str(ck), str(out), str(workers), *([str(threads)] if threads else [])]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"track failed ({workers} workers):\n{r.stderr[-3000:]}")
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    marks = [m for m in doc["marks"] if m[0] >= 1]
    first, last = marks[0][1], marks[-1][1]
    n = marks[-1][0]
    return {"wall": wall, "first": first, "steady": (last - first) / max(1, n - 1), "analysed": doc["analysed"]}


def layer_file(folder: Path, name: str, shapes: dict[str, tuple[int, int]]) -> Path:
    import torch

    path = folder / name
    if not path.exists():
        g = torch.Generator().manual_seed(0)
        sd = {k: (torch.randn(*s, generator=g) * s[1] ** -0.5).to(torch.bfloat16) for k, s in shapes.items()}
        torch.save(sd, path)
    return path


def task_cost(path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", TASK, str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"analysis of {path.name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def sha_rate(path: Path, threads: int) -> float:
    """Bytes per second hashed by ``threads`` files at once (copies of ``path``), page cache warm."""
    from concurrent.futures import ThreadPoolExecutor

    from entropyflow.load.hashing import sha256_file

    copies = [path] + [path.with_name(f"{path.stem}-copy{j}{path.suffix}") for j in range(1, threads)]
    for c in copies[1:]:
        if not c.exists():
            shutil.copyfile(path, c)
    for c in copies:
        sha256_file(c)  # page cache warm
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sha256_file, copies))
    return threads * path.stat().st_size / (time.perf_counter() - t)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24, help="checkpoints in part 1")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "entropyflow-track-ray-bench")
    ap.add_argument("--skip-projection", action="store_true")
    args = ap.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    print("machine:", ", ".join(f"{k} {v}" for k, v in machine.items()))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared VM: other jobs run too)")

    ck = make_checkpoints(work / "ck", args.n)
    size = sum(p.stat().st_size for p in ck.iterdir()) / args.n
    print(f"\n## track of {args.n} checkpoints (MLP, 4 × 2048² bf16, {size / 2**20:.1f} MiB each, paper estimator)\n")
    serial = one_run(ck, work / "out-serial", 0)
    serial1 = one_run(ck, work / "out-serial1", 0, threads=1)
    ray2 = one_run(ck, work / "out-ray", 2)
    same = all(
        (work / "out-serial" / f).read_bytes() == (work / "out-ray" / f).read_bytes()
        for f in ("trajectory.csv", "checkpoints.csv")
    )
    print("| run | wall s | first checkpoint done at s | s per checkpoint after it | serial / this |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = (
        ("serial (2 torch threads, the default here)", serial),
        ("serial, 1 torch thread", serial1),
        ("`--workers 2` (local Ray, 1 torch thread per worker)", ray2),
    )
    for name, r in rows:
        print(
            f"| {name} | {r['wall']:.1f} | {r['first']:.1f} | {r['steady']:.2f} | "
            f"{serial['wall'] / r['wall']:.2f}× (steady {serial['steady'] / r['steady']:.2f}×) |"
        )
    print(f"\ntrajectory.csv and checkpoints.csv byte-identical: {same}", end="; ")
    print(f"analysed {serial['analysed']} / {ray2['analysed']}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.skip_projection:
        return

    print("\n## per-checkpoint cost of a 7B model, measured in parts (1 CPU, 1 torch thread)\n")
    block = layer_file(
        work,
        "llama7b-block.pt",
        {
            **{f"model.layers.0.self_attn.{p}_proj.weight": (4096, 4096) for p in "qkvo"},
            "model.layers.0.mlp.gate_proj.weight": (11008, 4096),
            "model.layers.0.mlp.up_proj.weight": (11008, 4096),
            "model.layers.0.mlp.down_proj.weight": (4096, 11008),
        },
    )
    head = layer_file(work, "llama7b-head.pt", {"lm_head.weight": (32000, 4096)})
    rates = {t: sha_rate(head, t) for t in (1, 2)}
    costs = {name: task_cost(p) for name, p in (("block", block), ("head", head))}
    gb = {name: p.stat().st_size / 1e9 for name, p in (("block", block), ("head", head))}
    print("| part | GB (bf16) | layers analysed | s (read + sha256 + analyse) | s per GB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ("block", "head"):
        c = costs[name]
        print(f"| {name} | {gb[name]:.3f} | {c['layers']} | {c['seconds']:.1f} | {c['seconds'] / gb[name]:.1f} |")
    for t, rate in rates.items():
        print(f"driver sha256 rate, {t} file(s) at once (page cache warm): {rate / 1e9:.2f} GB/s")
    per_ckpt = 32 * costs["block"]["seconds"] + costs["head"]["seconds"]
    ckpt_gb = 32 * gb["block"] + gb["head"] + 32000 * 4096 * 2 / 1e9  # + the input embedding (hashed, not analysed)
    print(
        f"\nPROJECTION (not measured end to end): one 7B checkpoint ≈ 32 blocks + head: c = {per_ckpt:.0f} "
        f"CPU-s of worker time; {ckpt_gb:.1f} GB hashed by the driver for the cache key: h = {ckpt_gb:.1f} GB / "
        "driver hash rate."
    )
    print("wall(N, K nodes × W workers) ≈ N × max(h, c / (K × W)) + Ray start (the driver hashes while tasks run).")
    print("| nodes K | workers per node W | h (driver hashing 1 / 2 files at once) | projected wall, N = 1,000 |")
    print("| ---: | ---: | ---: | ---: |")
    for k, w in ((1, 2), (1, 32), (4, 32), (16, 32), (64, 32)):
        hs = [ckpt_gb * 1e9 / rates[t] for t in (1, 2)]
        walls = " / ".join(f"{1000 * max(h, per_ckpt / (k * w)) / 3600:.1f} h" for h in hs)
        print(f"| {k} | {w} | {hs[0]:.0f} s / {hs[1]:.0f} s | {walls} |")


if __name__ == "__main__":
    main()
