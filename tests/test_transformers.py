"""Issue 14: Hugging Face folders and hub ids, token inputs, fused projections, Conv1D.

Every model is built in the test from a small config (random init, no download) and saved as a
Hugging Face folder (config.json + model.safetensors)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import entropyflow
from entropyflow.errors import InputNotFoundError, OptionError
from entropyflow.estimate.paper import dense_logabsdet
from entropyflow.spec import parse_inputs

transformers = pytest.importorskip("transformers")


def save(model: nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def build(kind: str):
    T = transformers
    torch.manual_seed(0)
    if kind == "bert":
        cfg = T.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=40)  # fmt: skip
        return T.BertModel(cfg)
    if kind == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=0, eos_token_id=0
        )
        return T.GPT2LMHeadModel(cfg)
    if kind == "llama":
        cfg = T.LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=48, max_position_embeddings=512)  # fmt: skip
        return T.LlamaForCausalLM(cfg)
    if kind == "neox":
        cfg = T.GPTNeoXConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=48, max_position_embeddings=48)  # fmt: skip
        return T.GPTNeoXForCausalLM(cfg)
    if kind == "bloom":
        cfg = T.BloomConfig(vocab_size=97, hidden_size=32, n_layer=2, n_head=4)
        return T.BloomForCausalLM(cfg)
    if kind == "falcon":
        cfg = T.FalconConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             new_decoder_architecture=True, num_kv_heads=2, max_position_embeddings=48)  # fmt: skip
        return T.FalconForCausalLM(cfg)
    if kind == "phi3":
        cfg = T.Phi3Config(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, intermediate_size=48, max_position_embeddings=48,
                           pad_token_id=0, bos_token_id=0, eos_token_id=0)  # fmt: skip
        return T.Phi3ForCausalLM(cfg)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {k: save(build(k), root / k) for k in ("bert", "gpt2", "llama", "neox", "bloom", "falcon", "phi3")}


def analyse(folder: Path, **kw):
    return entropyflow.analyze(str(folder), hash_files=False, **kw)


def hook_order(model: nn.Module, tokens: int) -> list[str]:
    """The order in which dense modules (Linear, Conv1D) run in a real forward pass."""
    seen: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda mod, args, name=name: seen.append(name) if name not in seen else None)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, tokens, dtype=torch.long))
    for h in handles:
        h.remove()
    return seen


def base_names(result) -> list[str]:
    out: list[str] = []
    for layer in result.layers:
        name = layer.name
        if layer.rows is not None:  # a split of a fused projection: one module
            name = name.rsplit(".", 1)[0]
        if name not in out:
            out.append(name)
    return out


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "neox", "bloom", "falcon", "phi3"])
def test_traced_in_forward_hook_order_with_totals(folders, kind):
    result = analyse(folders[kind])
    n = result.model.input_size[0]
    assert result.model.input_dtype == "int64" and result.model.walk == "trace"
    assert base_names(result) == hook_order(build(kind), n)
    assert all(layer.traced and layer.total is not None and layer.exact for layer in result.layers)
    assert all(layer.n_positions == n for layer in result.layers if layer.name != "pooler.dense")
    assert all(math.isfinite(layer.total) for layer in result.layers)
    for layer in result.layers:  # total = tokens × log|det| exactly, per token values are logdet / m
        assert layer.total == pytest.approx(layer.n_positions * layer.logdet, rel=1e-12)
        assert layer.per_position[0] == pytest.approx(layer.logdet / layer.square, rel=1e-12)


def test_default_token_count_comes_from_the_config(folders):
    assert analyse(folders["bert"]).model.input_size == (40,)  # min(128, max_position_embeddings = 40)
    assert analyse(folders["llama"]).model.input_size == (128,)  # capped at 128


def _logdet(m: torch.Tensor) -> float:
    k = min(m.shape)
    return float(dense_logabsdet([m[:k, :k].double()])[0])


def test_gpt2_c_attn_is_a_transposed_conv1d_split_into_q_k_v(folders):
    result = analyse(folders["gpt2"])
    sd = load_file(folders["gpt2"] / "model.safetensors")
    w = sd["transformer.h.1.attn.c_attn.weight"]  # stored (in, out) = (32, 96)
    assert w.shape == (32, 96)
    for i, part in enumerate("qkv"):
        layer = result.layer(f"transformer.h.1.attn.c_attn.{part}")
        explicit = w[:, 32 * i : 32 * (i + 1)].T  # the map (out, in) of this block
        assert layer.weight_shape == (32, 32) and layer.transposed and layer.rows == (32 * i, 32 * (i + 1))
        assert layer.logdet == pytest.approx(_logdet(explicit), rel=1e-12, abs=1e-12)
    fc = result.layer("transformer.h.0.mlp.c_fc")  # Conv1D (32 → 128): the map is 128 × 32
    assert fc.weight_shape == (128, 32) and fc.transposed
    assert fc.logdet == pytest.approx(_logdet(sd["transformer.h.0.mlp.c_fc.weight"].T), rel=1e-12)


def test_conv1d_equals_an_explicit_linear_with_the_same_map():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(3)
    conv1d = Conv1D(6, 4)  # nf=6 outputs, nx=4 inputs: weight stored (4, 6)
    linear = nn.Linear(4, 6)
    with torch.no_grad():
        linear.weight.copy_(conv1d.weight.T)
        linear.bias.copy_(conv1d.bias)
    x = torch.randn(5, 4)
    assert torch.allclose(conv1d(x), linear(x))
    for estimator in ("paper", "spectral"):
        a = entropyflow.analyze(nn.Sequential(conv1d), input_size=(7, 4), estimator=estimator).layers[0]
        b = entropyflow.analyze(nn.Sequential(linear), input_size=(7, 4), estimator=estimator).layers[0]
        assert a.weight_shape == b.weight_shape == (6, 4) and a.n_positions == b.n_positions == 7
        assert np.allclose(a.per_position, b.per_position, rtol=1e-12, atol=0) and a.total == pytest.approx(b.total)


def test_neox_query_key_value_is_split_per_head(folders):
    result = analyse(folders["neox"])
    sd = load_file(folders["neox"] / "model.safetensors")
    w = sd["gpt_neox.layers.0.attention.query_key_value.weight"]  # (3·32, 32), per head [q | k | v]
    heads = w.view(4, 3, 8, 32)
    for i, part in enumerate("qkv"):
        layer = result.layer(f"gpt_neox.layers.0.attention.query_key_value.{part}")
        explicit = heads[:, i].reshape(32, 32)
        assert layer.row_period == 24 and layer.rows == (8 * i, 8 * (i + 1))
        assert layer.logdet == pytest.approx(_logdet(explicit), rel=1e-12, abs=1e-12)
    # not the old reading (the first 32 rows as one square map)
    assert result.layer("gpt_neox.layers.0.attention.query_key_value.q").logdet != pytest.approx(_logdet(w[:32]))


def test_falcon_grouped_query_layout_and_the_square_part_note(folders):
    result = analyse(folders["falcon"])
    sd = load_file(folders["falcon"] / "model.safetensors")
    w = sd["transformer.h.0.self_attention.query_key_value.weight"]  # 2 groups × (2 q heads + k + v) × 8
    groups = w.view(2, 4, 8, 32)
    q = result.layer("transformer.h.0.self_attention.query_key_value.q")
    k = result.layer("transformer.h.0.self_attention.query_key_value.k")
    assert q.weight_shape == (32, 32) and k.weight_shape == (16, 32)
    assert q.logdet == pytest.approx(_logdet(groups[:, :2].reshape(32, 32)), rel=1e-12, abs=1e-12)
    assert k.logdet == pytest.approx(_logdet(groups[:, 2].reshape(16, 32)), rel=1e-12, abs=1e-12)
    assert any("square part is W[:, :16]" in n for n in k.notes)


def test_llama_gqa_note_and_phi3_gate_up(folders):
    llama = analyse(folders["llama"])
    k = llama.layer("model.layers.0.self_attn.k_proj")
    assert k.weight_shape == (16, 32)
    assert any(n.startswith("grouped-query attention: 2 key/value head(s) for 4 query heads") for n in k.notes)
    phi = analyse(folders["phi3"])
    sd = load_file(folders["phi3"] / "model.safetensors")
    w = sd["model.layers.0.mlp.gate_up_proj.weight"]
    gate, up = phi.layer("model.layers.0.mlp.gate_up_proj.gate"), phi.layer("model.layers.0.mlp.gate_up_proj.up")
    assert gate.logdet == pytest.approx(_logdet(w[:48]), rel=1e-12) and up.logdet == pytest.approx(_logdet(w[48:]))
    assert any("fused gate/up of Phi3MLP" in n for n in gate.notes)


def test_timm_vit_qkv_is_split_into_thirds():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1)
    result = entropyflow.analyze(model, input_size=(3, 32, 32))
    w = model.blocks[0].attn.qkv.weight.detach()
    for i, part in enumerate("qkv"):
        layer = result.layer(f"blocks.0.attn.qkv.{part}")
        assert layer.logdet == pytest.approx(_logdet(w[192 * i : 192 * (i + 1)]), rel=1e-10)
        assert layer.n_positions == 17  # 16 patches + the class token


def test_input_option_sets_dtype_and_tokens(folders):
    result = analyse(folders["llama"], input=parse_inputs("long:1x24"))
    assert result.model.input_size == (24,) and result.layers[0].n_positions == 24
    with pytest.raises(OptionError, match="batch dimension"):
        analyse(folders["llama"], input=parse_inputs("long:2x24"))
    with pytest.raises(OptionError, match="DTYPE:SHAPE"):
        analyse(folders["llama"], input=parse_inputs("tokens:1x24"))


def test_hf_id_resolves_from_a_cache_folder(folders, tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snapshot / f).write_bytes((folders["llama"] / f).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = entropyflow.analyze("hf:tiny-org/tiny-llama", hash_files=False)
    direct = analyse(folders["llama"])
    assert result.model.spec == "hf:tiny-org/tiny-llama" and len(result.layers) == 15
    assert [layer.logdet for layer in result.layers] == [layer.logdet for layer in direct.layers]
    assert (
        entropyflow.analyze(f"hf:tiny-org/tiny-llama@{commit}", hash_files=False).layers[0].logdet
        == direct.layers[0].logdet
    )
    with pytest.raises(InputNotFoundError, match="hf download tiny-org/other"):
        entropyflow.analyze("hf:tiny-org/other")
    with pytest.raises(InputNotFoundError, match="no refs/v2"):
        entropyflow.analyze("hf:tiny-org/tiny-llama@v2")


def test_random_init_of_a_folder_and_compare_random(folders, tmp_path):
    from entropyflow.runs import analyze_to

    written = analyze_to(
        str(folders["gpt2"]), out=tmp_path / "r",
        options=entropyflow.AnalyzeOptions(random_init=True, seed=4, hash_files=False), compare="random", seeds=2,
    )  # fmt: skip
    assert written.reference is not None and written.reference.seeds == (0, 1)
    assert written.result.model.random_init and len(written.result.layers) == 13


def test_without_transformers_a_folder_is_analysed_bare_and_says_how_to_install(folders, monkeypatch):
    import entropyflow.load.model as model_module

    monkeypatch.setattr(model_module, "missing", lambda extra: ["transformers"])
    result = analyse(folders["llama"])
    assert result.model.walk == "state_dict"
    assert any("pip install 'entropyflow[hf]'" in n for n in result.notes)
    # one remedy, not a second note advising a torchvision architecture (issue 25)
    architecture = [n for n in result.notes if "architecture" in n]
    assert architecture[0].startswith("no architecture: its config.json needs transformers: pip install")
    assert not any("torchvision:resnet50" in n or "give the architecture" in n for n in result.notes)


def test_recommend_and_regularizer_round_trip_on_split_and_transposed_maps(folders, tmp_path):
    from entropyflow.config import load_config, save_config
    from entropyflow.recommend import RecommendOptions, recommend
    from entropyflow.regularize import EntropyRegularizer

    result = analyse(folders["neox"])
    cfg = recommend(result, RecommendOptions(strategy="dense-first", lam_dense=1.0))
    save_config(cfg, tmp_path / "lambda.yaml")
    cfg = load_config(tmp_path / "lambda.yaml")
    layer = cfg.layers[0]
    assert layer.name == "gpt_neox.layers.0.attention.query_key_value.q" and layer.row_period == 24
    model = transformers.GPTNeoXForCausalLM.from_pretrained(folders["neox"])
    reg = EntropyRegularizer.from_config(model, tmp_path / "lambda.yaml")
    assert float(reg().detach()) == pytest.approx(-result.layer(layer.name).logdet, rel=1e-6)

    gpt2 = analyse(folders["gpt2"])
    qkv = [layer for layer in gpt2.layers if layer.transposed][:1]
    cfg2 = recommend(gpt2, RecommendOptions(strategy="dense-first", lam_dense=1.0))
    assert cfg2.layers[0].transposed and cfg2.layers[0].rows == qkv[0].rows
    save_config(cfg2, tmp_path / "gpt2.yaml")
    reg2 = EntropyRegularizer.from_config(
        transformers.GPT2LMHeadModel.from_pretrained(folders["gpt2"]), tmp_path / "gpt2.yaml"
    )
    assert float(reg2().detach()) == pytest.approx(-gpt2.layer(cfg2.layers[0].name).logdet, rel=1e-6)


def test_bloom_query_key_value_is_split_per_head(folders):
    result = analyse(folders["bloom"])
    sd = load_file(folders["bloom"] / "model.safetensors")
    key = next(k for k in sd if k.endswith("h.0.self_attention.query_key_value.weight"))
    heads = sd[key].view(4, 3, 8, 32)  # BLOOM: view(heads, 3, head_dim) per token
    for i, part in enumerate("qkv"):
        layer = next(x for x in result.layers if x.name.endswith(f"h.0.self_attention.query_key_value.{part}"))
        assert layer.logdet == pytest.approx(_logdet(heads[:, i].reshape(32, 32)), rel=1e-12, abs=1e-12)


def test_w_pack_without_a_baichuan_config_is_split_by_name_with_a_note():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.W_pack = nn.Linear(16, 48, bias=False)
            self.o_proj = nn.Linear(16, 16, bias=False)

        def forward(self, x):
            q, k, v = self.W_pack(x).chunk(3, dim=-1)
            return self.o_proj(q + k + v)

    torch.manual_seed(0)
    model = nn.Sequential(Attention())
    result = entropyflow.analyze(model, input_size=(5, 16))
    w = model[0].W_pack.weight.detach()
    for i, part in enumerate("qkv"):
        layer = result.layer(f"0.W_pack.{part}")
        assert layer.logdet == pytest.approx(_logdet(w[16 * i : 16 * (i + 1)]), rel=1e-12)
        assert any("split by its name only" in n for n in layer.notes)


def test_inputs_that_cannot_run_are_refused_and_notes_follow_the_input(folders):
    with pytest.raises(OptionError, match="at most 48 positions"):
        analyse(folders["gpt2"], input=parse_inputs("long:1x1000"))
    with pytest.raises(OptionError, match="at most 48 positions"):  # the last axis holds the positions
        analyse(folders["gpt2"], input=parse_inputs("long:1x2x100"))
    grid = analyse(folders["gpt2"], input=parse_inputs("long:1x16x4"))  # ids of any shape the model takes (issue 20)
    assert grid.model.input_size == (16, 4) and all(layer.traced for layer in grid.layers)
    with pytest.raises(OptionError, match=r"^bad input 'long:1x0'"):
        analyse(folders["gpt2"], input=parse_inputs("long:1x0"))
    default = analyse(folders["gpt2"])
    assert any(n.startswith("input: 48 token ids") for n in default.notes)
    chosen = analyse(folders["gpt2"], input=parse_inputs("long:1x16"))
    assert not any(n.startswith("input:") for n in chosen.notes) and chosen.model.input_size == (16,)


def test_phi3_qkv_proj_is_split(folders):
    result = analyse(folders["phi3"])
    sd = load_file(folders["phi3"] / "model.safetensors")
    w = sd["model.layers.0.self_attn.qkv_proj.weight"]  # (4 q + 2·4 kv heads) × 8 rows
    for i, part in enumerate("qkv"):
        layer = result.layer(f"model.layers.0.self_attn.qkv_proj.{part}")
        assert layer.logdet == pytest.approx(_logdet(w[32 * i : 32 * (i + 1)]), rel=1e-12)


def test_encoder_decoder_models_are_traced_with_decoder_ids(tmp_path):
    cfg = transformers.T5Config(vocab_size=97, d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    folder = save(transformers.T5ForConditionalGeneration(cfg), tmp_path / "t5")
    result = analyse(folder, input=parse_inputs("long:1x12"))
    assert result.model.walk == "trace" and all(layer.traced for layer in result.layers)
    assert {layer.name.split(".")[0] for layer in result.layers} >= {"encoder", "decoder"}


def test_broken_configs_and_revisions_are_one_line_errors(folders, tmp_path, monkeypatch):
    from entropyflow.errors import CheckpointFormatError

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((folders["gpt2"] / "model.safetensors").read_bytes())
    (bad / "config.json").write_text('{"model_type": "gpt2", "n_emb')
    with pytest.raises(CheckpointFormatError, match="cannot read"):
        analyse(bad)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for spec in ("hf:org/tiny@", "hf:org/tiny@../refs/main"):
        with pytest.raises(OptionError, match="not a branch, tag or commit"):
            entropyflow.analyze(spec)


def test_an_attention_subclass_per_implementation_is_split_as_its_base():
    """transformers before 4.48 builds GPT2SdpaAttention (a GPT2Attention subclass) by default: its
    fused c_attn is split into q, k, v like the base class's (issue 23)."""
    from transformers.models.gpt2 import modeling_gpt2

    class GPT2SdpaAttention(modeling_gpt2.GPT2Attention):
        pass

    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=16)
    model = transformers.GPT2Model(config)
    subclass = GPT2SdpaAttention(config, layer_idx=0)
    subclass.load_state_dict(model.h[0].attn.state_dict())
    plain = entropyflow.analyze(model, input=parse_inputs("long:1x8"), hash_files=False)
    model.h[0].attn = subclass
    split = entropyflow.analyze(model, input=parse_inputs("long:1x8"), hash_files=False)
    assert [layer.name for layer in split.layers][:3] == ["h.0.attn.c_attn.q", "h.0.attn.c_attn.k", "h.0.attn.c_attn.v"]
    assert [layer.logdet for layer in split.layers] == [layer.logdet for layer in plain.layers]
