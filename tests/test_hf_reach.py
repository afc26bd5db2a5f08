"""Issue 20, Hugging Face reach: non-text models get the inputs their forward takes (CLIP, wav2vec2,
Whisper, ViT), fused mixture-of-experts tensors are analysed expert by expert (Mixtral, Qwen2-MoE,
from a checkpoint and under --random-init), and fused projections are split or say they are whole.
Every model is built here from a tiny config (random init, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import entropyflow
from entropyflow.load import hf
from entropyflow.spec import parse_inputs

transformers = pytest.importorskip("transformers")


def tiny(kind: str) -> nn.Module:
    T = transformers
    torch.manual_seed(0)
    if kind == "clip":
        text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                    max_position_embeddings=20, bos_token_id=0, eos_token_id=2, pad_token_id=1)  # fmt: skip
        vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                      num_attention_heads=4)  # fmt: skip
        return T.CLIPModel(T.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    if kind == "wav2vec2":
        cfg = T.Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=37, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)  # fmt: skip
        return T.Wav2Vec2Model(cfg)
    if kind == "whisper":
        cfg = T.WhisperConfig(vocab_size=99, num_mel_bins=16, encoder_layers=1, decoder_layers=1, d_model=32,
                              encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                              decoder_ffn_dim=37, max_source_positions=40, max_target_positions=24, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, decoder_start_token_id=0)  # fmt: skip
        return T.WhisperForConditionalGeneration(cfg)
    if kind == "vit":
        cfg = T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=48)  # fmt: skip
        return T.ViTModel(cfg)
    if kind == "mixtral":
        cfg = T.MixtralConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                              num_key_value_heads=2, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
                              max_position_embeddings=64)  # fmt: skip
        return T.MixtralForCausalLM(cfg)
    if kind == "qwen2_moe":
        cfg = T.Qwen2MoeConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=2, intermediate_size=48, moe_intermediate_size=24,
                               shared_expert_intermediate_size=40, num_experts=4, num_experts_per_tok=2,
                               max_position_embeddings=64)  # fmt: skip
        return T.Qwen2MoeForCausalLM(cfg)
    raise ValueError(kind)


KINDS = ("clip", "wav2vec2", "whisper", "vit", "mixtral", "qwen2_moe")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_reach")
    out = {}
    for kind in KINDS:
        tiny(kind).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def analyse(folder: Path, **kw):
    return entropyflow.analyze(str(folder), hash_files=False, **kw)


def dense_or_conv(model: nn.Module) -> list[str]:
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) or type(m).__name__ == "Conv1D"
    ]


def hook_order(model: nn.Module, inputs: dict) -> list[str]:
    seen: list[str] = []
    handles = [
        model.get_submodule(n).register_forward_pre_hook(lambda mod, a, n=n: seen.append(n) if n not in seen else None)
        for n in dense_or_conv(model)
    ]
    with torch.no_grad():
        model.eval()(**inputs)
    for h in handles:
        h.remove()
    return seen


REAL_INPUTS = {  # what entropyflow feeds each model by default, for a real forward pass with hooks
    "clip": lambda: {"input_ids": torch.zeros(1, 20, dtype=torch.long), "pixel_values": torch.zeros(1, 3, 32, 32)},
    "wav2vec2": lambda: {"input_values": torch.zeros(1, 16000)},
    "whisper": lambda: {"input_features": torch.zeros(1, 16, 80), "decoder_input_ids": torch.zeros(1, 24).long()},
    "vit": lambda: {"pixel_values": torch.zeros(1, 3, 32, 32)},
}


@pytest.mark.parametrize(
    ("kind", "size", "dtype", "note"),
    [
        ("clip", (20,), "int64", "the forward is also given pixel_values 1x3x32x32 (vision_config.image_size)"),
        ("wav2vec2", (16000,), "float32", None),
        ("whisper", (16, 80), "float32", "the forward is also given decoder_input_ids 1x24"),
        ("vit", (3, 32, 32), "float32", None),
    ],
)
def test_non_text_models_get_the_inputs_their_forward_takes(folders, kind, size, dtype, note):
    result = analyse(folders[kind])
    model = tiny(kind)
    assert result.model.input_size == size and result.model.walk == "trace"
    assert (result.model.input_dtype or "float32") == dtype
    if note:
        assert any(n.startswith(note) for n in result.notes)
    names = [layer.name for layer in result.layers]
    assert all(layer.traced for layer in result.layers)
    expected = dense_or_conv(model)
    skipped = {s.name: s.reason for s in result.skipped}
    assert set(names) | (set(skipped) & set(expected)) == set(expected)  # every conv/dense: analysed or listed
    for name in set(expected) - set(names):
        assert "parametrized" in skipped[name] or "weight norm" in skipped[name]  # wav2vec2's pos_conv_embed
    order = [n for n in hook_order(model, REAL_INPUTS[kind]()) if n in names]
    assert names == order


def test_whisper_float_input_is_not_passed_as_decoder_ids(folders):
    result = analyse(folders["whisper"], input=parse_inputs("float:1x16x80"))
    decoder = [layer for layer in result.layers if layer.name.startswith("model.decoder.")]
    assert result.model.input_size == (16, 80) and decoder
    for layer in decoder:  # token ids (24 of them), not the float features, reach the decoder
        cross = "encoder_attn.k_proj" in layer.name or "encoder_attn.v_proj" in layer.name
        assert layer.n_positions == (40 if cross else 24), layer.name  # cross-attention k/v: 40 encoder positions


def _square_logdet(m: torch.Tensor) -> float:
    k = min(m.shape)
    return torch.linalg.slogdet(m.double()[:k, :k]).logabsdet.item()


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe"])
@pytest.mark.parametrize("random_init", [False, True])
def test_fused_experts_are_analysed_per_expert_against_explicit_matrices(folders, kind, random_init):
    result = analyse(folders[kind], random_init=random_init, seed=3)
    if random_init:  # the same builder, the same seed: the same weights
        torch.manual_seed(3)
        model = hf.build(folders[kind], device="cpu")[0]
    else:
        model = tiny(kind)
    experts = model.model.layers[0].mlp.experts
    gate_up, down = experts.gate_up_proj.detach(), experts.down_proj.detach()
    inter = down.shape[2]
    names = [layer.name for layer in result.layers]
    prefix = "model.layers.0.mlp"
    assert names.index(f"{prefix}.gate") < names.index(f"{prefix}.experts.0.gate_proj")
    for e in range(4):
        for part, matrix in (
            ("gate_proj", gate_up[e, :inter]),
            ("up_proj", gate_up[e, inter:]),
            ("down_proj", down[e]),
        ):
            layer = result.layer(f"{prefix}.experts.{e}.{part}")
            assert layer.kind == "linear" and layer.exact and layer.traced
            assert layer.logdet == pytest.approx(_square_logdet(matrix), rel=1e-10, abs=1e-10)
            assert layer.total == pytest.approx(64 * layer.logdet, rel=1e-12)
    router = result.layer(f"{prefix}.gate")
    weight = model.model.layers[0].mlp.gate.weight.detach()
    assert router.logdet == pytest.approx(_square_logdet(weight), rel=1e-10)
    assert not any("MixtralExperts" in s.module_type or "TopKRouter" in s.module_type for s in result.skipped)


def test_fused_projections_are_split_or_say_they_are_whole(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.MptConfig(d_model=32, n_heads=4, n_layers=1, vocab_size=97, max_seq_len=32, expansion_ratio=2)
    mpt = transformers.MptForCausalLM(cfg)
    mpt.save_pretrained(tmp_path / "mpt")
    result = analyse(tmp_path / "mpt")
    w = mpt.transformer.blocks[0].attn.Wqkv.weight.detach()
    for i, part in enumerate("qkv"):  # MPT: chunk(3) of the output, contiguous thirds
        layer = result.layer(f"transformer.blocks.0.attn.Wqkv.{part}")
        assert layer.notes[-1] == "fused q/k/v of MptAttention: contiguous thirds"
        assert layer.logdet == pytest.approx(_square_logdet(w[32 * i : 32 * (i + 1)]), rel=1e-10)

    timm = pytest.importorskip("timm")
    from timm.layers import AttentionPoolLatent
    from timm.layers.bottleneck_attn import BottleneckAttn

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = BottleneckAttn(16, 16, feat_size=(4, 4), num_heads=2)
            self.pool = AttentionPoolLatent(16, num_heads=2)

        def forward(self, x):
            return self.pool(self.attn(x).flatten(2).transpose(1, 2))

    model = Pooled()
    result = entropyflow.analyze(model, input_size=(16, 4, 4))
    kv = model.pool.kv.weight.detach()
    for i, part in enumerate("kv"):  # (B, N, 2, heads, head_dim): contiguous halves
        layer = result.layer(f"pool.kv.{part}")
        assert layer.notes[-1] == "fused k/v of AttentionPoolLatent (timm.layers.attention_pool): contiguous halves"
        assert layer.logdet == pytest.approx(_square_logdet(kv[16 * i : 16 * (i + 1)]), rel=1e-10)
    qkv = result.layer("attn.qkv")
    assert qkv.notes[-1] == (
        "fused q/k/v of BottleneckAttn (timm.layers.bottleneck_attn): analysed whole, as one map (its layout is not "
        "split here)"
    )
    assert timm is not None
