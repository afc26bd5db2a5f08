"""Fused projections: one stored weight that holds several dense maps, split into them.

``nn.MultiheadAttention``'s ``in_proj_weight`` is handled by the tracer itself; this module
recognises the others from the module type and the model's config (never from a name alone
without saying so), and says where the square part of a rectangular map comes from:

* timm ``Attention.qkv`` (``3·d × d``): q, k, v as contiguous thirds of the rows;
* GPT-2 ``GPT2Attention.c_attn``: a transformers ``Conv1D``, weight stored ``(in, out)``: the map
  is its transpose; q, k, v are contiguous thirds (k, v halves for cross-attention);
* GPT-NeoX / BLOOM ``query_key_value``: per head ``[q | k | v]`` (rows repeat every 3·head_dim);
* Falcon ``query_key_value``: per key/value group ``[q… | k | v]`` (new decoder architecture),
  ``[q… | k | v]`` once (multi-query), or per head like BLOOM;
* Baichuan ``W_pack``: contiguous thirds; ``gate_up_proj`` (Phi-3): gate then up, halves.

Grouped-query attention (fewer key/value heads than query heads) makes ``k_proj``/``v_proj``
rectangular: the note says which part is the square one.
"""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Any

from torch import nn

from ..load.hf import expert_parts, fused_experts
from .sites import DenseGeometry, LayerSite

NAME_ONLY = "split by its name only (no {what} config or module type recognised): check the layout"


def moe_kind(module: nn.Module) -> str | None:
    """``experts`` for transformers' fused expert tensors, ``linear`` for a mixture-of-experts router
    that holds a dense ``(experts, hidden)`` weight and applies it with ``F.linear``; else None."""
    if fused_experts(module):
        return "experts"
    return "linear" if is_router(module) else None


def is_router(module: nn.Module) -> bool:
    """A transformers top-k router (``MixtralTopKRouter``): a 2-D ``weight`` of one row per expert."""
    weight = module._parameters.get("weight")
    experts = getattr(module, "num_experts", None)
    return (
        type(module).__module__.startswith("transformers")
        and not isinstance(module, nn.Linear)
        and weight is not None
        and weight.dim() == 2
        and isinstance(experts, int)
        and weight.shape[0] == experts
    )


def expert_sites(name: str, module: nn.Module, inputs: list[tuple[int, ...]] | None, calls: int) -> list[LayerSite]:
    """One dense site per expert map of fused experts (``experts.N.gate_proj``, ``up_proj``,
    ``down_proj``), placed where the experts module runs (``inputs``: its traced input shapes).
    Routing is data-dependent: each expert's total counts every token reaching the block."""
    parts = expert_parts(name, module)
    count = len({p.expert for p in parts})
    tokens = prod(inputs[0][:-1]) if inputs else None
    routed = (
        f"routed expert of {type(module).__name__} ({count} experts): which tokens reach it depends on the data; "
        f"the total counts all {tokens} tokens entering the block"
        if tokens is not None
        else f"routed expert of {type(module).__name__} ({count} experts)"
    )
    out = []
    for p in parts:
        rows = f"rows {p.start}:{p.stop}" + (f":{p.step}" if p.step != 1 else "")
        stored = f"{p.fused}[{p.expert}]" + (".T" if p.transposed else "")
        out.append(
            LayerSite(
                p.key.removesuffix(".weight"),
                type(module).__name__,
                "linear",
                p.key,
                p.shape,
                DenseGeometry(tokens) if tokens is not None else None,
                inputs is not None,
                calls,
                notes=(f"fused expert tensors: {rows} of {stored}", routed),
            )
        )
    return out


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D``: a dense layer whose weight is stored ``(in, out)``."""
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")


def _parts(
    site: LayerSite, names: str, blocks: list[tuple[int, int]], period: int | None, note: str
) -> list[LayerSite]:
    out = []
    for part, rows in zip(names.split(","), blocks, strict=True):
        kind = f"attention_{part}" if part in ("q", "k", "v") else "linear"
        height = (rows[1] - rows[0]) * ((_map_rows(site) // period) if period else 1)
        out.append(
            replace(
                site,
                name=f"{site.name}.{part}",
                kind=kind,
                weight_shape=(height, site.weight_shape[1]),
                rows=rows,
                row_period=period,
                notes=site.notes + (note,),
            )
        )
    return out


def _map_rows(site: LayerSite) -> int:
    return site.weight_shape[0]


def _thirds(n: int) -> list[tuple[int, int]]:
    e = n // 3
    return [(0, e), (e, 2 * e), (2 * e, 3 * e)]


def _config_value(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def split(name: str, module: nn.Module, parent: nn.Module | None, config: Any, site: LayerSite) -> list[LayerSite]:
    """The dense maps ``site`` stands for (itself when it is not a fused projection; a conv, or a
    fused projection whose layout is not certain, with a note that it is analysed whole)."""
    leaf = name.rsplit(".", 1)[-1]
    ptype = type(parent).__name__ if parent is not None else ""
    # the class and its bases: transformers before 4.48 picks an attention subclass per implementation
    # (GPT2SdpaAttention, FalconFlashAttention2, ...), which fuses its weights as its base class does
    kinds = {c.__name__ for c in type(parent).__mro__} if parent is not None else set()
    pmod = type(parent).__module__ if parent is not None else ""
    model_type = str(getattr(config, "model_type", "") or "")
    rows = site.weight_shape[0]
    if is_router(module):
        note = f"router of a mixture of experts ({type(module).__name__}): one row per expert, applied with F.linear"
        return [replace(site, notes=site.notes + (note,))]
    whole = _fused_whole(name, leaf, ptype, pmod, site)
    if whole:
        return [replace(site, notes=site.notes + (whole,))]
    if leaf == "kv" and pmod.startswith("timm") and rows % 2 == 0:  # twins, volo, attention pools: (2, heads, hd)
        e = rows // 2
        return _parts(site, "k,v", [(0, e), (e, 2 * e)], None, f"fused k/v of {ptype} ({pmod}): contiguous halves")
    if leaf == "Wqkv" and "MptAttention" in kinds and rows % 3 == 0:
        return _parts(site, "q,k,v", _thirds(rows), None, "fused q/k/v of MptAttention: contiguous thirds")
    if leaf == "qkv" and pmod.startswith("timm") and rows % 3 == 0:
        return _parts(site, "q,k,v", _thirds(rows), None, f"fused q/k/v of {ptype} ({pmod}): contiguous thirds")
    if leaf == "c_attn" and "GPT2Attention" in kinds and site.transposed:
        if getattr(parent, "is_cross_attention", False) and rows % 2 == 0:
            e = rows // 2
            return _parts(site, "k,v", [(0, e), (e, 2 * e)], None, "fused k/v of GPT2Attention (cross-attention)")
        return _parts(site, "q,k,v", _thirds(rows), None, "fused q/k/v of GPT2Attention: contiguous thirds")
    if leaf == "query_key_value" and kinds & {"GPTNeoXAttention", "BloomAttention"}:
        heads = _config_value(config, "num_attention_heads", "n_head")
        if heads and rows % (3 * heads) == 0:
            hd = rows // (3 * heads)
            blocks = [(0, hd), (hd, 2 * hd), (2 * hd, 3 * hd)]
            return _parts(site, "q,k,v", blocks, 3 * hd, f"fused q/k/v of {ptype}: per head [q | k | v], {heads} heads")
    if leaf == "query_key_value" and "FalconAttention" in kinds:
        return _falcon(site, config) or [site]
    if leaf == "W_pack" and rows % 3 == 0:
        note = (
            "fused q/k/v of Baichuan's W_pack: contiguous thirds"
            if model_type.startswith("baichuan")
            else "W_pack " + NAME_ONLY.format(what="Baichuan") + "; taken as contiguous q/k/v thirds"
        )
        return _parts(site, "q,k,v", _thirds(rows), None, note)
    if leaf == "gate_up_proj" and rows % 2 == 0:
        e = rows // 2
        known = ptype == "Phi3MLP" or model_type.startswith("phi3")
        note = (
            f"fused gate/up of {ptype or model_type}: gate rows then up rows"
            if known
            else "gate_up_proj " + NAME_ONLY.format(what="Phi-3") + "; taken as gate then up halves"
        )
        return _parts(site, "gate,up", [(0, e), (e, 2 * e)], None, note)
    if leaf == "qkv_proj":
        return _phi3_qkv(site, config, ptype, model_type)
    if leaf in ("k_proj", "v_proj"):
        return [_gqa_note(site, config)]
    return [site]


WHOLE = "fused {what} of {owner}: analysed whole, as one map (its layout is not split here)"


def _fused_whole(name: str, leaf: str, ptype: str, pmod: str, site: LayerSite) -> str | None:
    """The note of a fused projection that is analysed as one map: 1×1-conv q/k/v of timm's
    attention blocks (BotNet, HaloNet, Lambda, CoAtNet, EfficientViT), LeViT's ``qkv.linear``
    (per head q, k, v of unequal sizes), GPT-BigCode's ``c_attn``."""
    owner = f"{ptype} ({pmod})" if ptype else "its parent"
    if site.is_conv and leaf in ("qkv", "kv", "qkvs") and pmod.startswith("timm"):
        return WHOLE.format(what="q/k/v" if "q" in leaf else "k/v", owner=owner)
    if site.is_conv and pmod.startswith("timm") and name.rsplit(".", 2)[-2:-1] == ["qkv"]:  # EfficientViT qkv.conv
        return WHOLE.format(what="q/k/v", owner=owner)
    if leaf == "linear" and name.rsplit(".", 2)[-2:-1] == ["qkv"] and pmod.startswith("timm"):  # LeViT
        return WHOLE.format(what="q/k/v (per head, key and value sizes differ)", owner=owner)
    if leaf == "c_attn" and ptype == "GPTBigCodeAttention":
        return WHOLE.format(what="q/k/v", owner=owner)
    return None


def _phi3_qkv(site: LayerSite, config: Any, ptype: str, model_type: str) -> list[LayerSite]:
    """Phi-3's ``qkv_proj``: q heads, then the key/value heads, contiguous (GQA-aware)."""
    heads = _config_value(config, "num_attention_heads")
    kv = _config_value(config, "num_key_value_heads") or heads
    hidden = _config_value(config, "hidden_size")
    hd = _config_value(config, "head_dim") or (hidden // heads if heads and hidden else None)
    rows = site.weight_shape[0]
    known = ptype == "Phi3Attention" or model_type.startswith("phi3")
    if not (known and heads and hd and rows == (heads + 2 * kv) * hd):
        note = "fused qkv_proj of an unrecognised layout: its value is the square part of the first rows (q) only"
        return [replace(site, notes=site.notes + (note,))]
    q, k = heads * hd, kv * hd
    blocks = [(0, q), (q, q + k), (q + k, q + 2 * k)]
    parts = _parts(site, "q,k,v", blocks, None, f"fused q/k/v of {ptype or model_type}: q heads, then k, v")
    return [_gqa_note(s, config) if s.kind != "attention_q" else s for s in parts]


def _falcon(site: LayerSite, config: Any) -> list[LayerSite] | None:
    heads = _config_value(config, "num_attention_heads")
    hidden = _config_value(config, "hidden_size")
    if not heads or not hidden:
        return None
    hd = hidden // heads
    rows = site.weight_shape[0]
    if getattr(config, "new_decoder_architecture", False):
        kv = _config_value(config, "num_kv_heads") or heads
        per = heads // kv
        period = (per + 2) * hd
        if rows != kv * period:
            return None
        blocks = [(0, per * hd), (per * hd, (per + 1) * hd), ((per + 1) * hd, (per + 2) * hd)]
        note = f"fused q/k/v of FalconAttention: per key/value group [{per} q heads | k | v], {kv} groups"
        return [
            _gqa_note(s, config) if s.kind != "attention_q" else s for s in _parts(site, "q,k,v", blocks, period, note)
        ]
    if getattr(config, "multi_query", False):
        if rows != (heads + 2) * hd:
            return None
        blocks = [(0, heads * hd), (heads * hd, (heads + 1) * hd), ((heads + 1) * hd, (heads + 2) * hd)]
        parts = _parts(site, "q,k,v", blocks, None, "fused q/k/v of FalconAttention (multi-query): q heads, then k, v")
        return [_gqa_note(s, config) if s.kind != "attention_q" else s for s in parts]
    if rows != 3 * heads * hd:
        return None
    blocks = [(0, hd), (hd, 2 * hd), (2 * hd, 3 * hd)]
    return _parts(site, "q,k,v", blocks, 3 * hd, f"fused q/k/v of FalconAttention: per head [q | k | v], {heads} heads")


def _gqa_note(site: LayerSite, config: Any) -> LayerSite:
    """Say what the square part of a grouped-query k/v map is."""
    heads = _config_value(config, "num_attention_heads", "n_head")
    kv = _config_value(config, "num_key_value_heads", "num_kv_heads")
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        kv = 1
    out, inp = site.weight_shape[0], site.weight_shape[1]
    if not heads or not kv or kv >= heads or out >= inp:
        return site
    note = (
        f"grouped-query attention: {kv} key/value head(s) for {heads} query heads, so this map is {out}×{inp}; "
        f"the paper estimator's square part is W[:, :{out}] (the first {out} of {inp} input coordinates); the "
        "spectral estimator uses all its singular values"
    )
    return replace(site, notes=site.notes + (note,))
