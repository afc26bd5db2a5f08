"""Hugging Face Trainer: `EntropyTrainer` adds a λ config's entropy term to the loss and logs it,
`EntropyMonitorCallback` records the network's entropy profile every few steps.

    pip install "entropyflow[hf]"
    python docs/examples/hf_trainer.py --out runs/hf              # ~20 s on one CPU core

Data: this repository's own documentation (``docs/*.md``, read next to this file), as bytes: a
byte-level language model, trained on the first 90 % of the blocks of 64 bytes and evaluated on
the last 10 %. Model: a fresh two-layer GPT-2 built from a config (nothing is downloaded). The λ
config comes from analysing the model with token inputs and recommending ``first``, a structural
strategy that needs no trained reference: the first dense map, the **q block** of layer 0's fused
``c_attn`` (a ``Conv1D`` holding q, k and v; the term's gradient reaches only the q columns). The
run writes ``lambda.yaml``, ``entropy_profile.csv`` (every layer, every ``--profile-every``
steps, with totals) and ``log_history.json`` (``entropy/term`` beside ``loss`` at every log) to
``--out``, and prints one line.

It shows the mechanics on a small real task; it is not evidence that the term helps (compare runs
over seeds with ``--lam 0``, which trains with the plain ``Trainer``, for that).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import transformers

import entropyflow
from entropyflow.config import save_config
from entropyflow.integrations.transformers import EntropyMonitorCallback, EntropyTrainer
from entropyflow.recommend.placement import RecommendOptions
from entropyflow.spec import parse_inputs

DOCS = Path(__file__).resolve().parent.parent  # docs/, wherever the example is run from
BLOCK = 64  # bytes per example


def corpus() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Blocks of ``BLOCK`` bytes of docs/*.md: the first 90 % to train on, the rest to evaluate."""
    data = b"\n".join(path.read_bytes() for path in sorted(DOCS.glob("*.md")))
    ids = torch.tensor(list(data[: len(data) // BLOCK * BLOCK]), dtype=torch.long).view(-1, BLOCK)
    split = int(len(ids) * 0.9)
    examples = [{"input_ids": x, "labels": x} for x in ids]
    return examples[:split], examples[split:]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/hf", help="folder for lambda.yaml, entropy_profile.csv, log_history.json")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lam", type=float, default=1e-3, help="λ of the recommended layer (0: the plain Trainer)")
    ap.add_argument("--profile-every", type=int, default=50, help="record the entropy profile every N steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (a tiny model runs fastest on one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train, test = corpus()

    torch.manual_seed(args.seed)
    config = transformers.GPT2Config(
        vocab_size=256, n_positions=BLOCK, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)

    # The λ config: analyse the model with token inputs (one sequence of BLOCK ids), recommend the first layer.
    analysis = entropyflow.analyze(model, input=parse_inputs(f"long:1x{BLOCK}"))
    options = RecommendOptions(strategy="first", lam_dense=args.lam if args.lam else 1e-4)
    lam_config = entropyflow.recommend_config(analysis, options, model=model)
    save_config(lam_config, out / "lambda.yaml")

    training = transformers.TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=args.steps, per_device_train_batch_size=16, learning_rate=args.lr,
        warmup_steps=20, logging_steps=25, eval_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
        disable_tqdm=True, seed=args.seed, per_device_eval_batch_size=64,
    )  # fmt: skip
    monitor = EntropyMonitorCallback(
        every_steps=args.profile_every, input=f"long:1x{BLOCK}", csv=out / "entropy_profile.csv", overwrite=True
    )
    common = dict(model=model, args=training, train_dataset=train, eval_dataset=test, callbacks=[monitor])
    trainer = (
        EntropyTrainer(**common, entropy=lam_config) if args.lam else transformers.Trainer(**common)
    )  # the term is added, logged per step, and left out of the evaluation loss
    trainer.train()
    metrics = trainer.evaluate()
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n", encoding="utf-8")

    terms = [h["entropy/term"] for h in trainer.state.log_history if "entropy/term" in h]
    layer = lam_config.layers[0].name
    bits = metrics["eval_loss"] / math.log(2)
    shown = f"entropy/term {terms[0]:.4g} → {terms[-1]:.4g}" if terms else "no entropy term (λ = 0)"
    print(
        f"{layer} λ={args.lam:g}: held-out loss {metrics['eval_loss']:.3f} ({bits:.2f} bits per byte; uniform: 8) "
        f"after {trainer.state.global_step} steps; {shown}; profile at steps {[p.step for p in monitor.history]}; "
        f"files in {out}"
    )
    return {"metrics": metrics, "terms": terms, "profile_steps": [p.step for p in monitor.history], "layer": layer}


if __name__ == "__main__":
    main()
