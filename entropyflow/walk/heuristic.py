"""Walk a bare state dict (no architecture): layer kinds from weight shapes and names.

Heuristics (docs/method.md#bare-state-dicts):
  * ``*.weight`` with 3, 4 or 5 dims → a 1-D, 2-D or 3-D convolution (PyTorch layout; a
    transposed conv's layout gives the same per-filter values, see the docs);
  * ``*.weight`` with 2 dims → a dense layer, unless a name component looks like an embedding
    (``embed*``, ``wte``, ``wpe``, ``word_embeddings`` ...);
  * ``*.in_proj_weight`` of shape (3E, E) → MultiheadAttention's packed q, k, v;
  * everything else is listed as skipped with a reason.
Without an architecture the execution order is unknown: layers are numbered by module path in
natural order (``layer.2`` before ``layer.10``), never in the file's storage order (safetensors
stores tensors by dtype and size), and the walk says so. Totals need geometry: unavailable.
"""

from __future__ import annotations

import re
from math import prod

from ..load.source import TensorSource
from .sites import LayerSite, SkippedModule, Walk

EMBEDDING_NAME = re.compile(
    r"(^|\.)(embed\w*|\w*_embed|\w*embeddings?|emb|wte|wpe|tok_embeddings|embed_tokens|shared|lookup)(\.|$)",
    re.IGNORECASE,
)
NO_ARCH = "no architecture: pass --arch (e.g. --arch torchvision:resnet50) or embed a manifest for geometry and totals"


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
    "without the architecture the order a forward pass uses is unknown (pass --arch for it)"
)


def walk_state_dict(tensors: TensorSource) -> Walk:
    sites: list[LayerSite] = []
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    analysed: set[str] = set()
    for key in sorted(tensors.keys(), key=natural_key):
        prefix, _, param = key.rpartition(".")
        shape = tuple(tensors.shape(key))
        groups.setdefault(prefix, []).append((param, shape))
        if not tensors.dtype(key).is_floating_point:
            continue
        if param == "weight" and len(shape) in (3, 4, 5):
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
                    notes=(f"kind inferred from a {len(shape)}-D weight", NO_ARCH),
                )
            )
            analysed.add(prefix)
        elif param == "weight" and len(shape) == 2 and not EMBEDDING_NAME.search(prefix):
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
                    notes=("kind inferred from a 2-D weight", NO_ARCH),
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
                        notes=("packed q/k/v projection (MultiheadAttention)", NO_ARCH),
                    )
                )
            analysed.add(prefix)
    skipped = [
        SkippedModule(p or "(root)", "inferred", _reason(p, params), sum(prod(s) for _, s in params))
        for p, params in groups.items()
        if p not in analysed
    ]
    return Walk(tuple(sites), tuple(skipped), "state_dict", None, (NO_ARCH, ORDER_NOTE))


def _reason(prefix: str, params: list[tuple[str, tuple[int, ...]]]) -> str:
    names = {n for n, _ in params}
    if any(n.startswith(("weight_ih", "weight_hh")) for n in names):
        return "recurrent layer (weight_ih/weight_hh): not covered by the paper's estimator"
    if "running_mean" in names or any(n == "weight" and len(s) == 1 for n, s in params):
        return "1-D weight (normalisation or scale layer): not a conv/dense map"
    if any(n == "weight" and len(s) == 2 for n, s in params) and EMBEDDING_NAME.search(prefix):
        return "embedding (by name): a lookup table, not a linear map of its input"
    return f"no conv/dense weight among its tensors ({', '.join(sorted(names)[:4])})"
