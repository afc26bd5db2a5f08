"""Bounded fuzzing: a few hundred mutations of real files (a state dict, a safetensors file, a
TorchScript archive, the pickle and tensor records of a torch zip, analysis.json files, shard
indexes, λ configs), each through the real command line or config loader. Every one must end
with exit 0 or 2 and never 1, a signal, a traceback or a hang. Reproducible (fixed seed)."""

from __future__ import annotations

import io
import json
import random
import struct
import time
from pathlib import Path

import pytest
import torch
import yaml
from fuzz_worker import run_cases
from mutate import edit_pickle_ints, flip, mutate_json, rewrite_zip, truncate
from safetensors.torch import save_file

import entropyflow
from entropyflow.recommend import save_config
from entropyflow.report import write_report
from entropyflow.samples import build_sample

pytestmark = pytest.mark.slow  # fuzzing: minutes of mutated files

SEED = 20261124
ANALYZE = ("-q", "--no-plot", "--no-html", "--no-hash")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    vgg = build_sample("digits_vgg").eval()
    sd = vgg.state_dict()
    torch.save(sd, d / "sd.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, d / "model.safetensors")
    torch.jit.script(vgg).save(str(d / "script.pt"))
    result = entropyflow.analyze("sample:digits_vgg")
    write_report(result, d / "report")
    small = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1)
    )
    cfg = entropyflow.recommend_config(
        entropyflow.analyze(small, input_size=(1, 8, 8), hash_files=False),
        entropyflow.recommend.RecommendOptions(strategy="first-k", k=2, per_filter="uniform"),
    )
    save_config(cfg, d / "lambda.yaml")
    return d, sd


def cases(corpus) -> list[dict]:
    d, sd = corpus
    rng = random.Random(SEED)
    out: list[dict] = []
    work = d / "cases"
    work.mkdir(exist_ok=True)

    def put(name: str, data: bytes) -> Path:
        f = work / name
        f.write_bytes(data)
        return f

    def analyze(f, *extra):
        out.append({"kind": "cli", "args": ["analyze", str(f), *ANALYZE, "-o", str(work / f"out{len(out)}"), *extra]})

    state = (d / "sd.pt").read_bytes()
    for i in range(80):
        data = truncate(state, rng) if i % 4 == 0 else flip(state, rng)
        analyze(put(f"sd{i}.pt", data), *(["--arch", "sample:digits_vgg"] if i % 2 else []))
    for i in range(80):  # pickle integers (sizes, strides, storage offsets), CRCs kept valid
        data = rewrite_zip(state, lambda name, b: edit_pickle_ints(b, rng) if name.endswith("data.pkl") else b)
        analyze(put(f"pkl{i}.pt", data), *(["--arch", "sample:digits_vgg"] if i % 2 else []))
    for i in range(60):  # tensors viewed with random shapes and strides over small storages
        storage = torch.randn(rng.randint(1, 64))
        dims = rng.choice([2, 4])
        size = [rng.choice([1, 2, 3, 8, 100, 4096]) for _ in range(dims)]
        stride = [rng.choice([0, 0, 1, 2]) for _ in range(dims)]
        try:
            t = storage.as_strided(size, stride)
        except RuntimeError:
            continue
        buf = io.BytesIO()
        torch.save({"features.0.weight": t, "classifier.3.weight": storage[:1].expand(10, 64)}, buf)
        analyze(put(f"stride{i}.pt", buf.getvalue()))
    st = (d / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", st[:8])
    header = json.loads(st[8 : 8 + n])
    for i in range(100):
        kind = i % 5
        if kind == 0:
            data = flip(st, rng, lo=0, hi=8 + n)
        elif kind == 1:
            data = truncate(st, rng)
        elif kind == 2:
            data = flip(st, rng, lo=8 + n)
        else:
            h = mutate_json(json.loads(json.dumps(header)), rng)
            raw = json.dumps(h).encode()
            data = (
                struct.pack("<Q", len(raw) if kind == 3 else rng.choice([0, len(raw) - 1, len(raw) + 7, 2**40]))
                + raw
                + st[8 + n :]
            )
        analyze(put(f"st{i}.safetensors", data), *(["--arch", "sample:digits_vgg"] if i % 2 else []))
    script = (d / "script.pt").read_bytes()
    for i in range(50):
        data = truncate(script, rng) if i % 3 == 0 else flip(script, rng)
        analyze(put(f"ts{i}.pt", data), *(["--trust-code", "--input-size", "1x8x8"] if i % 2 else []))
    shards = {
        "model-00001-of-00002.safetensors": list(sd)[: len(sd) // 2],
        "model-00002-of-00002.safetensors": list(sd)[len(sd) // 2 :],
    }
    for i in range(40):
        folder = work / f"shards{i}"
        folder.mkdir()
        for name, keys in shards.items():
            save_file({k: sd[k].contiguous() for k in keys}, folder / name)
        index = {"metadata": {}, "weight_map": {k: name for name, keys in shards.items() for k in keys}}
        if i % 3 == 2:
            shard = folder / "model-00002-of-00002.safetensors"
            shard.write_bytes(flip(shard.read_bytes(), rng))
        else:
            key = rng.choice(list(index["weight_map"]))
            index["weight_map"][key] = rng.choice(
                [
                    "../sd.pt",
                    "/etc/passwd",
                    "missing.safetensors",
                    5,
                    "",
                    None,
                    "../../" * 10 + "etc/hosts",
                    "model-00001-of-00002.safetensors",
                ]
            )
            if i % 3 == 1:
                index = mutate_json(index, rng)
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        analyze(folder, *(["--arch", "sample:digits_vgg"] if i % 2 else []))
    saved = json.loads((d / "report" / "analysis.json").read_text())
    for i in range(80):
        f = work / f"analysis{i}.json"
        if i % 5 == 0:
            f.write_text(json.dumps(saved)[: rng.randrange(10, 4000)])
        else:
            f.write_text(json.dumps(mutate_json(json.loads(json.dumps(saved)), rng)))
        if i % 2:
            out.append({"kind": "cli", "args": ["recommend", str(f), "-o", str(work / f"l{i}.yaml")]})
        else:
            out.append(
                {
                    "kind": "cli",
                    "args": ["compare", str(f), str(d / "report"), "-o", str(work / f"cmp{i}"), "--plot-format", "svg"],
                }
            )
    config = (d / "lambda.yaml").read_text()
    parsed = yaml.safe_load(config)
    for i in range(80):
        f = work / f"cfg{i}.yaml"
        if i % 4 == 0:
            lines = config.splitlines()
            lines.pop(rng.randrange(len(lines)))
            f.write_text("\n".join(lines))
        elif i % 4 == 1:
            f.write_text(yaml.safe_dump(mutate_json(json.loads(json.dumps(parsed)), rng)))
        elif i % 4 == 2:
            f.write_bytes(flip(config.encode(), rng))
        else:
            f = work / f"cfg{i}.json"
            f.write_text(json.dumps(mutate_json(json.loads(json.dumps(parsed)), rng)))
        out.append({"kind": "config", "path": str(f)})
    return out


def test_fuzz(corpus, tmp_path):
    todo = cases(corpus)
    assert len(todo) > 500
    started = time.monotonic()
    results = run_cases(todo, tmp_path, timeout=240)
    codes = [r["rc"] for r in results]
    assert (
        codes.count(2) > len(codes) // 2 and codes.count(0) > 10
    )  # mostly refused, some survivable mutations analysed
    reasons = {}
    for r in results:
        if r["rc"] == 2:
            key = " ".join(r["err"].split(":")[1:2]).strip()[:40] or r["err"][:40]
            reasons[key] = reasons.get(key, 0) + 1
    print(sorted(reasons.items(), key=lambda kv: -kv[1])[:25])
    print(
        f"fuzz: {len(todo)} cases in {time.monotonic() - started:.1f} s, exit codes {{0: {codes.count(0)}, 2: "
        f"{codes.count(2)}}}"
    )
