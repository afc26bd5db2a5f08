"""Issue 20's acceptance: the model zoos, every conv/dense weight analysed or named.

Every ``torchvision.models.list_models()`` entry, one timm model per family (the smallest variant;
``TIMM_SMALLEST``, kept in step with timm by a fast test) and the Hugging Face ``model_type``s of
``HF_TYPES`` from tiny configs go through ``entropyflow.analyze(..., random_init=True)``. For each
model, an independent walk of ``named_modules()`` collects the conv/dense modules (``nn.Conv*``,
``nn.ConvTranspose*``, ``nn.Linear``, ``nn.MultiheadAttention``'s projections, transformers
``Conv1D``, timm ``CondConv2d``, transformers' fused MoE experts and top-k routers; parametrised
and weight-normalised layers are among them); each must own an analysed layer or a skipped entry,
and every analysed layer must belong to one of them (a result name belongs to the deepest module
whose name is a prefix of it: ``attn.q_proj`` of a packed MultiheadAttention, ``experts.3.down_proj``
of fused experts, ``conv.experts.0`` of a CondConv).

Speed (CI): torchvision and timm models are built on the meta device (nothing is allocated), and
the pipeline runs in-process up to the estimator, which is replaced by a stub that checks each
site's weight key resolves to a tensor of the site's shape (the numbers themselves are tested
against explicit matrices elsewhere). Hugging Face models are tiny and real: saved with
``save_pretrained`` and analysed as folders, the whole pipeline with its numbers.

``KNOWN``: failures that are open problems, each with its reason; the test asserts that exactly
these fail, so a fix shows up as a failure here until its entry is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import entropyflow
from entropyflow import analysis as analysis_module
from entropyflow.errors import TraceError
from entropyflow.estimate.results import AnalysisResult, layer_result
from entropyflow.load import zoo

pytestmark = pytest.mark.slow

# ---- the independent count ------------------------------------------------------------------------


def conv_dense_modules(model: nn.Module) -> dict[str, str]:
    """Every module holding a conv/dense weight, by name -> class name, found without entropyflow."""
    found: dict[str, str] = {}
    for name, m in model.named_modules():
        cls = type(m).__name__
        mod = type(m).__module__
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.MultiheadAttention)):
            found[name] = cls
        elif mod.startswith("transformers") and cls == "Conv1D":
            found[name] = cls  # GPT-2 style dense layer, weight stored (in, out)
        elif mod.startswith("timm") and cls == "CondConv2d":
            found[name] = cls  # one flattened kernel per expert, rows of a 2-D weight
        elif mod.startswith("transformers") and cls.endswith("Experts") and _own_params(m, min_dim=3):
            found[name] = cls  # fused MoE experts: (experts, out, in) tensors
        elif mod.startswith("transformers") and cls.endswith("Router") and _own_params(m, min_dim=2):
            found[name] = cls  # top-k router: a (experts, hidden) weight applied with F.linear
    return found


def _own_params(m: nn.Module, min_dim: int) -> bool:
    return any(p is not None and p.dim() >= min_dim for p in m._parameters.values())


def owner(name: str, modules: set[str]) -> str | None:
    """The deepest of ``modules`` whose name is ``name`` or a dotted prefix of it."""
    best: str | None = None
    for m in modules:
        if (name == m or m == "" or name.startswith(m + ".")) and (best is None or len(m) > len(best)):
            best = m
    return best


def coverage(model: nn.Module, result: AnalysisResult) -> tuple[list[str], list[str]]:
    """(conv/dense modules neither analysed nor listed, analysed layers that are not conv/dense)."""
    expected = conv_dense_modules(model)
    all_modules = {n for n, _ in model.named_modules()}
    covered: set[str] = set()
    extra: list[str] = []
    for layer in result.layers:
        o = owner(layer.name, all_modules)
        if o in expected:
            covered.add(o)
        else:
            extra.append(f"{layer.name} ({layer.module_type})")
    for skip in result.skipped:
        o = owner(skip.name, all_modules)
        if o in expected:
            covered.add(o)
    missing = [f"{n} ({c})" for n, c in expected.items() if n not in covered]
    return missing, extra


# ---- running a zoo -----------------------------------------------------------------------------------

Row = tuple[str, str, int, int, int, str, float]  # zoo, model, conv/dense modules, analysed, skipped, status, s


def run_zoo(zoo_name: str, models: list[str], analyse: Callable[[str], tuple[nn.Module, AnalysisResult]]) -> list[Row]:
    rows: list[Row] = []
    for name in models:
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, result = analyse(name)
        except Exception as exc:  # noqa: BLE001 (every failure is a row of the table)
            line = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            rows.append((zoo_name, name, -1, -1, -1, f"error {line}", time.perf_counter() - started))
            continue
        missing, extra = coverage(model, result)
        status = "ok"
        if missing:
            status = f"uncovered {len(missing)}: {', '.join(missing[:6])}"
        if extra:
            status += f"; not conv/dense {len(extra)}: {', '.join(extra[:6])}"
        count = len(conv_dense_modules(model))
        rows.append(
            (zoo_name, name, count, len(result.layers), len(result.skipped), status, time.perf_counter() - started)
        )
    return rows


def print_table(rows: list[Row]) -> None:
    print(f"\n{'zoo':<12} {'model':<34} {'conv/dense':>10} {'analysed':>8} {'skipped':>7} {'s':>6}  status")
    for z, name, count, layers, skipped, status, seconds in rows:
        print(f"{z:<12} {name:<34} {count:>10} {layers:>8} {skipped:>7} {seconds:>6.2f}  {status}")
    ok = sum(1 for r in rows if r[5] == "ok")
    print(
        f"{len(rows)} models, {ok} ok, {len(rows) - ok} failing; "
        f"{sum(max(r[3], 0) for r in rows)} layers analysed, {sum(max(r[4], 0) for r in rows)} skipped; "
        f"{sum(r[6] for r in rows):.1f} s"
    )


def check(rows: list[Row], known: dict[str, str]) -> None:
    print_table(rows)
    failing = {name: status for _, name, _, _, _, status, _ in rows if status != "ok"}
    unexpected = {n: s for n, s in failing.items() if n not in known}
    fixed = sorted(n for n in known if n not in failing and n in {r[1] for r in rows})
    assert not unexpected, "\n".join(f"{n}: {s}" for n, s in unexpected.items())
    assert not fixed, f"fixed, remove from KNOWN: {fixed}"


# ---- torchvision and timm: built on meta, the pipeline up to the estimator ---------------------------


def _stub_estimate(walk, tensors, options=None, progress=None, prefetch=None):
    layers = []
    for i, site in enumerate(walk.sites):
        weight = tensors.get(site.weight_key)  # the weight the estimator would read: it must exist
        assert isinstance(weight, torch.Tensor), site.weight_key
        layers.append(
            layer_result(i + 1, site, c11=[], per_position=np.zeros(0), totals=None, exact=None, reason="stub")
        )
    return tuple(layers), ()


INITS = ("normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_",
         "xavier_uniform_", "orthogonal_", "constant_", "zeros_", "ones_")  # fmt: skip


@contextlib.contextmanager
def no_init():
    """``torch.nn.init`` does nothing: a builder that cannot run on meta (regnet) is built on the CPU
    and turned into a meta skeleton, so the values it would draw are never used."""
    saved = {name: getattr(nn.init, name) for name in INITS}
    try:
        for name in INITS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, f in saved.items():
            setattr(nn.init, name, f)


@pytest.fixture
def meta_pipeline(monkeypatch):
    """``analyze(spec, random_init=True)`` with the model built on meta and the estimator stubbed;
    returns a function giving (the built module, the result). A model the meta device cannot run
    (detection: data-dependent ops, which the tracer runs again on a real CPU copy) is built for
    real on the CPU, as ``--random-init`` does."""
    built: dict[str, nn.Module] = {}
    real = zoo.build_random

    def build_on_meta(spec, seed):
        if built.get("real"):
            built["model"] = real(spec, seed)
        else:
            with no_init():
                built["model"] = zoo.build(spec)
        return built["model"]

    monkeypatch.setattr(zoo, "build_random", build_on_meta)
    monkeypatch.setattr(analysis_module, "estimate", _stub_estimate)

    def analyse(spec: str) -> tuple[nn.Module, AnalysisResult]:
        built.clear()
        # spectral: no background dense prefetch on meta tensors (the stub replaces both estimators)
        try:
            result = entropyflow.analyze(spec, random_init=True, hash_files=False, estimator="spectral")
        except TraceError as exc:
            if "on the CPU" not in str(exc):
                raise
            built["real"] = True
            result = entropyflow.analyze(spec, random_init=True, hash_files=False, estimator="spectral")
        return built["model"], result

    return analyse


KNOWN_TORCHVISION: dict[str, str] = {}


def test_every_torchvision_model(meta_pipeline):
    import torchvision

    names = sorted(torchvision.models.list_models())
    rows = run_zoo("torchvision", names, lambda n: meta_pipeline(f"torchvision:{n}"))
    check(rows, KNOWN_TORCHVISION)


# The smallest model (parameters, counted on meta) of each timm family (the module that registers
# it), for timm 1.0.31; regenerate with `python tests/test_zoo_coverage.py` when timm changes.
TIMM_SMALLEST: dict[str, str] = {
    "beit": "beit_base_patch16_224",
    "byoanet": "halonet_h1",
    "byobnet": "test_byobnet",
    "cait": "cait_xxs24_224",
    "coat": "coat_tiny",
    "convit": "convit_tiny",
    "convmixer": "convmixer_768_32",
    "convnext": "test_convnext",
    "cpubone": "cpubone_nano",
    "crossvit": "crossvit_tiny_240",
    "csatv2": "csatv2",
    "cspnet": "cs3darknet_focus_s",
    "cspnext": "cspnext_tiny",
    "davit": "davit_tiny",
    "deepseek_vit": "deepseek_vit_412m",
    "deit": "deit_tiny_patch16_224",
    "densenet": "densenet121",
    "dla": "dla46x_c",
    "dpn": "dpn48b",
    "edgenext": "edgenext_xx_small",
    "efficientformer": "efficientformer_l1",
    "efficientformer_v2": "efficientformerv2_s0",
    "efficientnet": "test_efficientnet",
    "efficientvim": "efficientvim_m1",
    "efficientvit_mit": "efficientvit_b0",
    "efficientvit_msra": "efficientvit_m0",
    "eva": "vit_tiny_patch16_dinov3_qkvb",
    "fasternet": "fasternet_t0",
    "fastvit": "fastvit_t8",
    "focalnet": "focalnet_tiny_srf",
    "gcvit": "gcvit_xxtiny",
    "gemma4_vit": "gemma4_vit_167m",
    "ghostnet": "ghostnet_050",
    "hardcorenas": "hardcorenas_b",
    "hgnet": "hgnetv2_b0",
    "hiera": "hiera_tiny_224",
    "hieradet_sam2": "sam2_hiera_tiny",
    "hrnet": "hrnet_w18_small",
    "iformer": "iformer_t",
    "inception_next": "inception_next_atto",
    "inception_resnet_v2": "inception_resnet_v2",
    "inception_v3": "inception_v3",
    "inception_v4": "inception_v4",
    "lcnetv2": "lcnetv2_small",
    "levit": "levit_128s",
    "lowformer": "lowformer_b0",
    "mambaout": "test_mambaout",
    "maxxvit": "test_coatnet",
    "metaformer": "poolformerv2_s12",
    "mlp_mixer": "gmlp_ti16_224",
    "mobilenetv3": "mobilenetv3_small_050",
    "mobilenetv5": "mobilenetv5_base",
    "mobilevit": "mobilevit_xxs",
    "mvitv2": "mvitv2_tiny",
    "naflexvit": "naflexvit_base_patch16_parfac_gap",
    "nasnet": "nasnetalarge",
    "nest": "nest_tiny",
    "nextvit": "nextvit_small",
    "nfnet": "test_nfnet",
    "pit": "pit_ti_224",
    "pnasnet": "pnasnet5large",
    "pvt_v2": "pvt_v2_b0",
    "qwen3_vit": "qwen3_vit_88m",
    "rdnet": "rdnet_tiny",
    "regnet": "regnetx_002",
    "repghost": "repghostnet_050",
    "repvit": "repvit_m1",
    "res2net": "res2next50",
    "resnest": "resnest14d",
    "resnet": "test_resnet",
    "resnetv2": "resnetv2_18",
    "rexnet": "rexnet_100",
    "selecsls": "selecsls42",
    "senet": "legacy_seresnet18",
    "sequencer": "sequencer2d_s",
    "shvit": "shvit_s1",
    "sknet": "skresnet18",
    "starnet": "starnet_s050",
    "swiftformer": "swiftformer_xs",
    "swin_transformer": "swin_tiny_patch4_window7_224",
    "swin_transformer_v2": "swinv2_tiny_window16_256",
    "swin_transformer_v2_cr": "swinv2_cr_tiny_224",
    "tiny_vit": "tiny_vit_5m_224",
    "tnt": "tnt_s_legacy_patch16_224",
    "tresnet": "tresnet_m",
    "twins": "twins_svt_small",
    "vgg": "vgg11",
    "visformer": "visformer_tiny",
    "vision_transformer": "test_vit",
    "vision_transformer_hybrid": "vit_tiny_r_s16_p8_224",
    "vision_transformer_relpos": "test_vit_relpos",
    "vision_transformer_sam": "samvit_base_patch16_224",
    "vitamin": "vitamin_small_224",
    "volo": "volo_d1_224",
    "vovnet": "ese_vovnet19b_slim_dw",
    "xception": "legacy_xception",
    "xception_aligned": "xception41p",
    "xcit": "xcit_nano_12_p8_224",
}

# the models issue 20 names (CondConv experts, fused 1x1-conv / linear q-k-v projections), beyond the smallest ones
TIMM_NAMED_IN_ISSUE = ("efficientnet_cc_b0_4e", "botnet26t_256", "halonet26t", "lambda_resnet26t", "coatnet_0_rw_224",
                       "efficientvit_b0", "levit_128s", "twins_svt_small", "volo_d1_224")  # fmt: skip

KNOWN_TIMM: dict[str, str] = {}


def timm_families() -> dict[str, list[str]]:
    import timm
    from timm.models import _registry

    families: dict[str, list[str]] = {}
    for name in timm.list_models():
        families.setdefault(_registry._model_to_module[name], []).append(name)
    return families


def test_timm_smallest_list_is_current():
    families = timm_families()
    assert set(TIMM_SMALLEST) == set(families)
    assert all(TIMM_SMALLEST[f] in families[f] for f in families)


def test_one_model_per_timm_family(meta_pipeline):
    names = [TIMM_SMALLEST[f] for f in sorted(TIMM_SMALLEST)]
    names += [n for n in TIMM_NAMED_IN_ISSUE if n not in names]
    rows = run_zoo("timm", names, lambda n: meta_pipeline(f"timm:{n}"))
    check(rows, KNOWN_TIMM)


# ---- Hugging Face: tiny configs, saved and analysed as folders ---------------------------------------

TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
SEQ2SEQ = dict(TEXT, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37)  # fmt: skip
AUDIO = dict(TEXT, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
             num_conv_pos_embedding_groups=2)  # fmt: skip
VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
           intermediate_size=37)  # fmt: skip
HF_TYPES: dict[str, dict] = {
    # the model_types named in issue 20
    "clip": dict(
        text_config=dict(TEXT, num_key_value_heads=4), vision_config=dict(image_size=32, patch_size=8, **{
            k: TEXT[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        }), projection_dim=16,
    ),
    "wav2vec2": dict(AUDIO),
    "whisper": dict(vocab_size=99, num_mel_bins=16, encoder_layers=1, decoder_layers=1, d_model=32,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
                    max_source_positions=40, max_target_positions=24, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2, decoder_start_token_id=0),
    "mixtral": dict(TEXT, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(TEXT, moe_intermediate_size=24, shared_expert_intermediate_size=40, num_experts=4,
                      num_experts_per_tok=2),
    # common text models
    "bert": TEXT, "roberta": TEXT, "distilbert": dict(TEXT, dim=32, n_layers=2, n_heads=4, hidden_dim=37),
    "electra": dict(TEXT, embedding_size=16), "albert": dict(TEXT, embedding_size=16),
    "deberta-v2": TEXT, "gpt2": TEXT, "gpt_bigcode": TEXT, "gpt_neox": TEXT, "bloom": dict(TEXT, n_layer=2, n_head=4),
    "opt": dict(TEXT, ffn_dim=37, word_embed_proj_dim=32), "llama": TEXT, "mistral": TEXT, "qwen2": TEXT,
    "phi3": TEXT, "gemma": dict(TEXT, head_dim=8), "falcon": dict(TEXT, new_decoder_architecture=False),
    "mpt": dict(TEXT, d_model=32, n_heads=4, n_layers=2, max_seq_len=64),
    "t5": dict(TEXT, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4),
    "bart": dict(SEQ2SEQ),
    # vision
    "vit": dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                intermediate_size=48),
    "convnext": dict(image_size=32, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
    "swin": dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[2, 2], window_size=4),
    "resnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    "mobilevit": dict(image_size=32, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32]),
    # more text, audio, vision and mixture-of-experts families
    "gptj": dict(TEXT, rotary_dim=4), "codegen": dict(TEXT, rotary_dim=4), "xlm-roberta": TEXT,
    "mobilebert": dict(TEXT, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                       num_feedforward_networks=2),
    "squeezebert": dict(TEXT, embedding_size=32, intermediate_size=48),
    "phi": TEXT, "gemma2": dict(TEXT, head_dim=8), "stablelm": TEXT,
    "starcoder2": TEXT, "olmo": TEXT, "granite": TEXT, "mamba": dict(TEXT, state_size=4, expand=2, conv_kernel=4),
    "jamba": dict(TEXT, num_experts=4, num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1,
                  attn_layer_period=2, attn_layer_offset=0, mamba_d_state=4, mamba_d_conv=4, mamba_expand=2,
                  mamba_dt_rank=4),
    "olmoe": dict(TEXT, num_experts=4, num_experts_per_tok=2),
    "qwen3_moe": dict(TEXT, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, head_dim=8),
    "mbart": dict(SEQ2SEQ), "pegasus": dict(SEQ2SEQ), "marian": dict(SEQ2SEQ, decoder_start_token_id=1),
    "mt5": dict(TEXT, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4),
    "hubert": dict(AUDIO), "wavlm": dict(AUDIO, num_buckets=32, max_bucket_distance=50),
    "dinov2": dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                   mlp_ratio=1),
    "deit": dict(VIT), "beit": dict(VIT),
    "segformer": dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                      patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                      decoder_hidden_size=16),
    "siglip": dict(text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                    num_attention_heads=4, max_position_embeddings=16), vision_config=dict(VIT)),
    "regnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8),
    "efficientnet": dict(image_size=32, width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=128),
}  # fmt: skip

KNOWN_HF: dict[str, str] = {}


def tiny_hf(model_type: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type, **HF_TYPES[model_type])
    torch.manual_seed(0)
    return transformers.AutoModel.from_config(config)


def test_hugging_face_model_types_from_tiny_configs(tmp_path):
    pytest.importorskip("transformers")

    def analyse(model_type: str) -> tuple[nn.Module, AnalysisResult]:
        model = tiny_hf(model_type)
        folder = tmp_path / model_type
        model.save_pretrained(folder)
        return model, entropyflow.analyze(str(folder), hash_files=False)

    check(run_zoo("huggingface", sorted(HF_TYPES), analyse), KNOWN_HF)


# ---- regenerating TIMM_SMALLEST ---------------------------------------------------------------------


def smallest_per_family() -> dict[str, str]:
    import timm

    out: dict[str, str] = {}
    for family, names in sorted(timm_families().items()):
        sizes = []
        for name in names:
            try:
                with torch.device("meta"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = timm.create_model(name, pretrained=False)
            except Exception:  # noqa: BLE001,S112 (a model that does not build on meta is not a candidate)
                continue
            sizes.append((sum(p.numel() for p in model.parameters()), name))
        out[family] = min(sizes)[1]
    return out


if __name__ == "__main__":
    print("TIMM_SMALLEST = {")
    for fam, name in smallest_per_family().items():
        print(f"    {fam!r}: {name!r},")
    print("}")


def test_the_coverage_check_finds_a_missing_and_a_foreign_layer():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            y = self.conv(x).flatten(2).transpose(1, 2)
            return self.head(self.attn(y, y, y)[0])

    torch.manual_seed(0)
    model = Net()
    result = entropyflow.analyze(model, input_size=(3, 6, 6), hash_files=False)
    assert [layer.name for layer in result.layers] == [
        "conv", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "head"
    ]  # fmt: skip
    assert coverage(model, result) == ([], [])
    assert coverage(model, dataclasses.replace(result, layers=result.layers[:-1])) == (["head (Linear)"], [])
    assert coverage(model, dataclasses.replace(result, layers=result.layers[4:])) == (
        ["conv (Conv2d)", "attn (MultiheadAttention)"],
        [],
    )  # attn.out_proj is a Linear of its own: it does not stand for the packed q/k/v
    assert coverage(nn.Sequential(), result)[1][0] == "conv (Conv2d)"  # analysed, not a conv/dense module
