"""Walk a bare state dict (no architecture): layer kinds from weight shapes and names.

Heuristics (docs/method.md#bare-state-dicts):
  * ``*.weight`` with 3, 4 or 5 dims → a 1-D, 2-D or 3-D convolution (PyTorch layout; a
    transposed conv's layout gives the same per-filter values, see the docs);
  * ``*.weight`` with 2 dims → a dense layer, unless a name component looks like an embedding
    (``embed*``, ``wte``, ``wpe``, ``word_embeddings`` ...);
  * ``*.in_proj_weight`` of shape (3E, E) → MultiheadAttention's packed q, k, v;
  * ``weight_g``/``weight_v`` and ``parametrizations.weight.original0``/``original1`` → a
    weight-normalised layer, analysed through its effective weight ``g · v / ‖v‖``;
  * a 2-D weight of a module named like a norm (``layernorm``, ``ln_f``, ``bn1``), with a bias of
    its own shape, or of shape (1, n) without a (1,)-bias beside it → a normalisation's scale, skipped;
  * everything else is listed as skipped with a reason.
Without an architecture the execution order is unknown: layers are numbered by module path in
natural order (``layer.2`` before ``layer.10``), never in the file's storage order (safetensors
stores tensors by dtype and size), and the walk says so. Totals need geometry: unavailable.
"""

from __future__ import annotations

import re
from math import prod

from ..load.source import TensorSource
from .effective import WeightNorm, weight_norm_of
from .sites import LayerSite, SkippedModule, Walk

EMBEDDING_NAME = re.compile(
    r"(^|\.)(embed\w*|\w*_embed|\w*embeddings?|emb|wte|wpe|tok_embeddings|embed_tokens|shared|lookup)(\.|$)",
    re.IGNORECASE,
)
NORM_NAME = re.compile(r"\w*norm\w*|ln(_\w+)?|ln\d*|\w+_ln\d*|bn\d*|gn\d*", re.IGNORECASE)
# saved with the results (layer and walk notes): the same words whoever the caller (no flag, no keyword)
NO_ARCH = (
    "no architecture: give the state dict its architecture (arch, e.g. torchvision:resnet50) or embed a "
    "manifest for geometry and totals"
)


def natural_key(name: str) -> tuple:
    """Sort key for dotted module paths with numbers compared as numbers: ``layer.2`` < ``layer.10``."""
    out: list[tuple[int, int | str]] = []
    for part in name.split("."):
        for i, tok in enumerate(re.split(r"(\d+)", part)):
            if tok:
                out.append((0, int(tok)) if i % 2 else (1, tok))
        out.append((-1, ""))  # a component boundary sorts before any continuation
    return tuple(out)


ORDER_NOTE = (
    "layers are numbered in module-name order (natural sort of the dotted paths), not in execution order: "
    "without the architecture the order a forward pass uses is unknown (give the architecture for it)"
)


def no_arch(remedy: str | None = None) -> str:
    """The note of a walk without an architecture: ``remedy`` when the load knows what would give
    one (a Hugging Face folder without transformers), else :data:`NO_ARCH`."""
    return f"no architecture: {remedy}" if remedy else NO_ARCH


def walk_state_dict(tensors: TensorSource, remedy: str | None = None) -> Walk:
    sites: list[LayerSite] = []
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    analysed: set[str] = set()
    shapes = {k: tuple(tensors.shape(k)) for k in tensors}
    for key in sorted(shapes, key=natural_key):
        prefix, _, param = key.rpartition(".")
        shape = shapes[key]
        groups.setdefault(prefix, []).append((param, shape))
        if not tensors.dtype(key).is_floating_point:
            continue
        wn = _weight_norm(prefix, param, shapes)
        if wn is not None:  # weight_g/weight_v, parametrizations.weight.original0/1: the effective weight
            owner = wn.weight_key[: -len(".weight")] if wn.weight_key != "weight" else ""
            kind = f"conv{len(wn.shape) - 2}d" if len(wn.shape) in (3, 4, 5) else "linear"
            if len(wn.shape) in (2, 3, 4, 5) and (kind != "linear" or not _norm_like(owner, wn.shape, shapes)):
                sites.append(
                    LayerSite(
                        owner or "weight",
                        "inferred",
                        kind,
                        wn.weight_key,
                        wn.shape,
                        None,
                        False,
                        inferred=True,
                        notes=(f"kind inferred from a {len(wn.shape)}-D weight", wn.note, no_arch(remedy)),
                    )
                )
                analysed.update({owner, prefix})
        elif param == "weight" and len(shape) in (3, 4, 5):
            sites.append(
                LayerSite(
                    prefix or "weight",
                    "inferred",
                    f"conv{len(shape) - 2}d",
                    key,
                    shape,
                    None,
                    False,
                    inferred=True,
                    notes=(f"kind inferred from a {len(shape)}-D weight", no_arch(remedy)),
                )
            )
            analysed.add(prefix)
        elif (
            param == "weight"
            and len(shape) == 2
            and not EMBEDDING_NAME.search(prefix)
            and not _norm_like(prefix, shape, shapes)
        ):
            sites.append(
                LayerSite(
                    prefix or "weight",
                    "inferred",
                    "linear",
                    key,
                    shape,
                    None,
                    False,
                    inferred=True,
                    notes=("kind inferred from a 2-D weight", no_arch(remedy)),
                )
            )
            analysed.add(prefix)
        elif param == "in_proj_weight" and len(shape) == 2 and shape[0] == 3 * shape[1]:
            e = shape[1]
            for i, part in enumerate("qkv"):
                sites.append(
                    LayerSite(
                        f"{prefix}.{part}_proj" if prefix else f"{part}_proj",
                        "inferred",
                        f"attention_{part}",
                        key,
                        (e, e),
                        None,
                        False,
                        rows=(i * e, (i + 1) * e),
                        inferred=True,
                        notes=("packed q/k/v projection (MultiheadAttention)", no_arch(remedy)),
                    )
                )
            analysed.add(prefix)
    skipped = [
        SkippedModule(p or "(root)", "inferred", _reason(p, params, shapes), sum(prod(s) for _, s in params))
        for p, params in groups.items()
        if p not in analysed
    ]
    order = ORDER_NOTE if remedy is None else ORDER_NOTE.replace(" (give the architecture for it)", "")
    return Walk(tuple(sites), tuple(skipped), "state_dict", None, (no_arch(remedy), order))


def _weight_norm(prefix: str, param: str, shapes: dict[str, tuple[int, ...]]) -> WeightNorm | None:
    """The weight norm whose direction ``v`` is this tensor (one site per weight-normalised layer)."""
    if param == "weight_v":
        wn = weight_norm_of(prefix, shapes)
    elif param == "original1" and prefix.endswith("parametrizations.weight"):
        wn = weight_norm_of(prefix[: -len("parametrizations.weight")].rstrip("."), shapes)
    else:
        return None
    full = f"{prefix}.{param}" if prefix else param
    return wn if wn is not None and wn.v_key == full else None


def _norm_like(prefix: str, shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why a 2-D weight is a normalisation's elementwise scale rather than a dense map, or None:
    its module is named like a norm (``layernorm``, ``norm1``, ``ln_f``, ``bn``), or its bias has
    the weight's own shape (an elementwise affine, e.g. ``nn.LayerNorm([1, 264])``), or it is a
    ``(1, n)`` weight with no bias of shape ``(1,)`` beside it (a dense map with one output would
    have one, unless built without a bias: ambiguous without the architecture)."""
    dot = f"{prefix}." if prefix else ""
    bias = shapes.get(dot + "bias")
    if NORM_NAME.fullmatch(prefix.rpartition(".")[2]):
        return f"2-D weight of a module named like a normalisation layer ({prefix.rpartition('.')[2]})"
    if bias is not None and tuple(bias) == tuple(shape):
        return (
            "2-D weight with a bias of its own shape: an elementwise affine (normalisation or scale), not a dense map"
        )
    if shape[0] == 1 and bias is None:
        return (
            "(1, n) weight without a bias of shape (1,): a normalisation's elementwise scale (e.g. "
            "nn.LayerNorm([1, n])) or a bias-free one-output dense map, ambiguous without the architecture"
        )
    return None


def _reason(prefix: str, params: list[tuple[str, tuple[int, ...]]], shapes: dict[str, tuple[int, ...]]) -> str:
    names = {n for n, _ in params}
    if any(n.startswith(("weight_ih", "weight_hh")) for n in names):
        return "recurrent layer (weight_ih/weight_hh): not covered by the paper's estimator"
    two_d = next((s for n, s in params if n == "weight" and len(s) == 2), None)
    if two_d is not None and not EMBEDDING_NAME.search(prefix) and (why := _norm_like(prefix, two_d, shapes)):
        return f"{why}: not measured"
    if "running_mean" in names or any(n == "weight" and len(s) == 1 for n, s in params):
        return "1-D weight (normalisation or scale layer): not a conv/dense map"
    if any(n == "weight" and len(s) == 2 for n, s in params) and EMBEDDING_NAME.search(prefix):
        return "embedding (by name): a lookup table, not a linear map of its input"
    kernel = next(((n, s) for n, s in params if len(s) in (3, 4, 5) and "weight" not in n), None)
    if kernel is not None and not any(n == "weight" for n in names):
        return (
            f"no tensor named 'weight' (a {len(kernel[1])}-D {kernel[0]}): a buffer such as a fixed basis or a custom "
            "module's kernel, which the state dict alone cannot tell apart from a conv weight; not analysed"
        )
    return f"no conv/dense weight among its tensors ({', '.join(sorted(names)[:4])})"
