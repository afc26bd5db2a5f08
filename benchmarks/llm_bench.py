"""A 7B-shaped checkpoint: sharded safetensors of a Llama-style config with random weights,
analysed bare and with its architecture (config.json), against the floor.

The checkpoint (about 13.5 GB in bfloat16 for 32 layers) is written to ``--workdir`` and never
committed. For each case, in a fresh process: wall time and peak RSS (GNU time). The floor is what
any tool must spend: reading every shard once, plus the float64 LU factorisation of every dense
square part (224 of 4096² for 32 layers: q, k, v, o, gate, up, down), timed here on the same
device. Peak RSS is compared with the largest tensor plus the memory budget.

    python benchmarks/llm_bench.py [--layers 32] [--workdir /tmp/llm7b] [--device auto] [--keep]

On a GPU the dense log-determinants stream to the device (``--device auto``), chunked to the
budget; CPU and GPU values must agree within 1e-9 relative (checked when a GPU is present).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import child, describe, git_rev  # noqa: E402

HIDDEN, INTER, HEADS, VOCAB = 4096, 11008, 32, 32000
SHARD_BYTES = 2 << 30


def config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "num_hidden_layers": layers,
        "vocab_size": VOCAB,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def shapes(layers: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[p + f"self_attn.{name}.weight"] = (HIDDEN, HIDDEN)
        out[p + "mlp.gate_proj.weight"] = (INTER, HIDDEN)
        out[p + "mlp.up_proj.weight"] = (INTER, HIDDEN)
        out[p + "mlp.down_proj.weight"] = (HIDDEN, INTER)
        out[p + "input_layernorm.weight"] = (HIDDEN,)
        out[p + "post_attention_layernorm.weight"] = (HIDDEN,)
    out["model.norm.weight"] = (HIDDEN,)
    out["lm_head.weight"] = (VOCAB, HIDDEN)
    return out


def write_checkpoint(folder: Path, layers: int) -> tuple[int, int]:
    """Sharded safetensors + index + config.json; returns (total bytes, largest tensor bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    size = largest = 0
    names: list[str] = []

    def flush() -> None:
        name = f"model-{len(names) + 1:05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
        names.append(name)
        shard.clear()

    pending = 0
    for key, shape in shapes(layers).items():
        t = torch.randn(shape, generator=gen).mul_(0.02) if len(shape) == 2 else torch.ones(shape)
        t = t.to(torch.bfloat16)
        nbytes = t.numel() * 2
        size, largest = size + nbytes, max(largest, nbytes)
        if pending + nbytes > SHARD_BYTES and shard:
            flush()
            pending = 0
        shard[key] = t
        pending += nbytes
    flush()
    total = len(names)
    for old, k in enumerate(names):  # model-00001-of-0000N names, as transformers writes them
        new = k.replace(".safetensors", f"-of-{total:05d}.safetensors")
        (folder / k).rename(folder / new)
        names[old] = new
        weight_map = {key: (new if v == k else v) for key, v in weight_map.items()}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": size}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text(json.dumps(config(layers)))
    return size, largest


FLOOR = """
import sys, time, torch
from pathlib import Path
from safetensors import safe_open
folder, device, n_squares = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
for f in sorted(folder.glob("*.safetensors")):
    with safe_open(str(f), "pt") as h:
        for k in h.keys():
            h.get_tensor(k).float().sum()  # read every byte once
read = time.perf_counter() - t
a = torch.randn(4096, 4096, dtype=torch.float64, device=device)
torch.linalg.slogdet(a)  # warm-up
times = []
for _ in range(6):  # the fastest of six: the floor is what the hardware can do, not a noisy average
    if device.startswith("cuda"): torch.cuda.synchronize()
    t = time.perf_counter()
    torch.linalg.slogdet(a)
    if device.startswith("cuda"): torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
lu = min(times)
print(read, lu, lu * n_squares)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "entropyflow-llm7b")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget", default="256MiB")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint (it is large)")
    args = ap.parse_args()
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    folder = args.workdir / f"llama-{args.layers}l"
    t = time.perf_counter()
    size, largest = write_checkpoint(folder, args.layers)
    written = time.perf_counter() - t
    n_squares = 7 * args.layers

    def floor_once() -> tuple[float, float, float]:
        out = child([sys.executable, "-c", FLOOR, str(folder), device, str(n_squares)])[2]
        read_s, one_s, all_s = (float(v) for v in out.split())
        return read_s, one_s, all_s

    first_floor = floor_once()
    bare = folder / "bare"
    bare.mkdir(exist_ok=True)
    for f in folder.glob("*.safetensors*"):  # the same shards without config.json (hard links: no copy)
        if not (bare / f.name).exists():
            os.link(f, bare / f.name)
    base = [sys.executable, "-m", "entropyflow", "analyze", "--device", args.device, "--max-gpu-mem", args.budget,
            "--no-plot", "--no-html", "-q", "--no-hash"]  # fmt: skip
    rows = []
    for label, target in (
        ("bare (sharded safetensors, no config.json)", bare),
        ("with architecture (config.json)", folder),
    ):
        out = args.workdir / "out"
        wall, rss, _ = child([*base, str(target), "-o", str(out)])
        doc = json.loads((out / "analysis.json").read_text())
        rows.append((label, wall, rss, doc["summary"]["layers"], doc["model"]["walk"]))
    read, lu_one, lu_all = min(first_floor, floor_once(), key=lambda f: f[0] + f[2])  # before and after the cases
    budget_mib = 256
    imports = ("import torch, entropyflow.analysis, safetensors", "import torch, entropyflow.analysis, transformers")
    baselines = [child([sys.executable, "-c", code])[1] for code in imports]  # what the imports alone hold
    floor = read + lu_all
    print(f"# 7B-shaped checkpoint: {args.layers} layers, {size / 2**30:.1f} GiB bfloat16 in shards of ≤ 2 GiB "
          f"(written in {written:.0f} s); device {device}")  # fmt: skip
    print(
        f"# floor: read every shard once {read:.1f} s + {n_squares} float64 LU of 4096² ({lu_one:.3f} s each, the "
        f"fastest of 6) {lu_all:.1f} s = {floor:.1f} s (the better of two measurements: before, after the cases)"
    )
    print(f"# largest tensor {largest / 2**20:.0f} MiB; budget {budget_mib} MiB")
    print(
        "| case | layers | walk | wall s | × floor | peak RSS MiB | baseline MiB | over baseline / (largest+budget) |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for (label, wall, rss, n, walk), base_rss in zip(rows, baselines, strict=True):
        ratio = (rss - base_rss) / (largest / 2**20 + budget_mib)
        print(
            f"| {label} | {n} | {walk} | {wall:.1f} | {wall / floor:.2f} | {rss:.0f} | {base_rss:.0f} | {ratio:.2f} |"
        )
    print(json.dumps({"machine": describe(), "git": git_rev()}))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
